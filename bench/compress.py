"""Benchmark: `spaceport compress` against `splat-transform -g cpu` (3.7.0) on the same PLYs, side by side.

For each synthetic scene (N Gaussians, SH degree D; see spaceport.compress.synthetic) both tools
write a bundled .sog from the same splat.ply in one run; we record wall seconds and peak memory of
each process, the .sog bytes, and the PSNR/SSIM of renders of each decoded .sog (both decoded by
our decoder, which the tests show agrees with splat-transform's reader) against renders of the
uncompressed splat from a fixed orbit. splat-transform runs under a per-case timeout; a case it
does not finish is reported as such, with the time it was given as a lower bound.

    nice -n 10 python bench/compress.py [--sizes 20000,200000] [--degrees 0,3] [--timeout 420]

Writes bench/results/compress.md (the table, the machine, what was skipped and why).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model, mem_gib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spaceport.compress.quality import cameras_from_json, compare, orbit_cameras, render_all  # noqa: E402
from spaceport.compress.sog import decode_sog  # noqa: E402
from spaceport.compress.synthetic import synthetic_splat  # noqa: E402
from spaceport.splat import read_ply, write_ply  # noqa: E402

SPLAT_TRANSFORM = ROOT / "node_modules" / "@playcanvas" / "splat-transform" / "bin" / "cli.mjs"


def timed(cmd: list[str], timeout: float) -> dict:
    """Run under /usr/bin/time -v; wall seconds, peak RSS (MB), and whether it finished.

    The command runs in its own process group, so a timeout kills the tool itself and not just
    /usr/bin/time (which would leave node holding the pipes and the wait hanging).
    """
    t = time.perf_counter()
    proc = subprocess.Popen(["/usr/bin/time", "-v", *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"ok": False, "seconds": round(time.perf_counter() - t, 1), "why": f"timeout after {timeout:.0f} s"}
    seconds = time.perf_counter() - t
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    if proc.returncode != 0:
        return {"ok": False, "seconds": round(seconds, 1), "why": err.strip().splitlines()[-1][:200]}
    return {"ok": True, "seconds": round(seconds, 2), "peak_mb": round(int(m.group(1)) / 1024, 1) if m else None}


def ground_truth(folder: Path, views: list) -> list | None:
    """The photos of the views, resized to the render size (None when any is missing)."""
    import numpy as np
    from PIL import Image

    out = []
    for v in views:
        path = folder / v.name
        if not path.is_file():
            return None
        with Image.open(path) as im:
            out.append(np.asarray(im.convert("RGB").resize((v.width, v.height), Image.LANCZOS), np.float32) / 255)
    return out


def psnr_vs(renders: list, gt: list) -> float:
    import numpy as np

    mse = float(np.mean([np.mean((r - g) ** 2) for r, g in zip(renders, gt, strict=True)]))
    return round(10 * np.log10(1 / max(mse, 1e-12)), 3)


def machine() -> str:
    cpu, mem = cpu_model(), mem_gib()
    import torch

    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} logical cores, {mem:.0f} GiB RAM, {gpu}; Linux {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__}, node {node}; "
            f"load average at start {load} (the cores are shared with other jobs, so seconds are noisy)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,200000")
    ap.add_argument("--degrees", default="0,3")
    ap.add_argument("--timeout", type=float, default=420.0, help="seconds allowed to splat-transform per case")
    ap.add_argument("--views", type=int, default=3)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--ply", type=Path, action="append", default=[],
                    help="also race on this (trained) splat.ply; its cameras.json is used when beside it")
    ap.add_argument("--images", type=Path, default=None,
                    help="ground-truth images named as in cameras.json: adds PSNR vs ground truth for --ply cases")
    ap.add_argument("--reuse-theirs", type=Path, default=None,
                    help="a previous results .json: reuse its splat-transform result for synthetic cases with the "
                         "same N, degree and PLY bytes (same seeded input) instead of running node again")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "compress.md")
    args = ap.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    desc = machine()
    rows, notes = [], []
    previous = json.loads(args.reuse_theirs.read_text()) if args.reuse_theirs else None
    with tempfile.TemporaryDirectory(prefix="bench-compress-") as tmp:
        cases = [(n, d, None) for n in [int(x) for x in args.sizes.split(",") if x]
                 for d in [int(x) for x in args.degrees.split(",") if x]]
        cases += [(None, None, p) for p in args.ply]
        for n, d, given in cases:
            case = Path(tmp) / (f"n{n}_sh{d}" if given is None else f"ply_{given.parent.name}")
            case.mkdir()
            if given is None:
                splat = synthetic_splat(n, d, seed=n + d)
                ply_bytes = write_ply(splat, case / "splat.ply")
            else:
                splat = read_ply(given)
                n, d = len(splat), splat.sh_degree
                ply_bytes = given.stat().st_size
                (case / "splat.ply").symlink_to(given.resolve())
            ours = timed([sys.executable, "-m", "spaceport", "compress", str(case / "splat.ply"), "--out",
                          str(case / "ours"), "--evaluate-quality", "false", "--write-spz", "false"], 1800)
            reused = None
            if previous is not None and given is None:
                reused = next((r for r in previous["rows"] if r["n"] == n and r["degree"] == d
                               and r["ply_bytes"] == ply_bytes and r.get("scene", "synthetic") == "synthetic"), None)
            if reused is not None:
                theirs = {**reused["theirs"], "reused": f"{args.reuse_theirs.name} ({previous.get('started', 'earlier run')})"}
            else:
                theirs = timed(["node", str(SPLAT_TRANSFORM), "-w", "-q", "-g", "cpu", str(case / "splat.ply"),
                                str(case / "theirs.sog")], args.timeout)
            cams = given.parent / "cameras.json" if given is not None else None
            views = (cameras_from_json(cams, args.views, args.resolution) if cams and cams.is_file()
                     else orbit_cameras(splat, args.views, args.resolution))
            ref = render_all(splat, views)
            row = {"n": n, "degree": d, "ply_bytes": ply_bytes, "ours": ours, "theirs": theirs,
                   "scene": "synthetic" if given is None else f"trained ({given})",
                   "views": "orbit" if not (cams and cams.is_file()) else "cameras.json"}
            gt = ground_truth(args.images, views) if given is not None and args.images else None
            if gt is not None:
                row["gt_psnr_uncompressed"] = psnr_vs(ref, gt)
            if ours["ok"]:
                summary = json.loads((case / "ours" / "compress.json").read_text())
                ours["bytes"] = summary["outputs"]["scene.sog"]
                ours["steps"] = summary["seconds"]["sog_steps"]
                ours["sh_palette"] = summary.get("sh_palette")
                ours["bytes_per_attribute"] = summary["bytes_per_attribute"]
                decoded = decode_sog(case / "ours" / "scene.sog")
                ours.update(compare(ref, decoded, views))
                if gt is not None:
                    ours["gt_psnr"] = psnr_vs(render_all(decoded, views), gt)
            if reused is not None:
                notes.append(f"splat-transform on synthetic N={n}, SH{d}: not re-run; its result is reused from "
                             f"{theirs['reused']} (same seeded input, {ply_bytes} PLY bytes, same views).")
            elif theirs["ok"]:
                theirs["bytes"] = (case / "theirs.sog").stat().st_size
                decoded = decode_sog(case / "theirs.sog")
                theirs.update(compare(ref, decoded, views))
                if gt is not None:
                    theirs["gt_psnr"] = psnr_vs(render_all(decoded, views), gt)
            if not theirs["ok"]:
                notes.append(f"splat-transform on N={n}, SH{d}: not finished ({theirs['why']}); its seconds "
                             f"are a lower bound and its bytes/PSNR are unknown.")
            print(json.dumps(row), flush=True)
            rows.append(row)

    lines = [
        "# Compression benchmark: spaceport vs splat-transform",
        "",
        f"Run {started} with `nice -n 10 python bench/compress.py {' '.join(sys.argv[1:])}`.",
        "",
        f"Machine: {desc}.",
        "",
        "Scenes: `spaceport.compress.synthetic.synthetic_splat(N, degree)` (Gaussians on noisy surfaces; "
        "higher SH bands are partly i.i.d. noise, so the SH palette compresses worse than on a trained scene). "
        "Both tools write a bundled `.sog` from the same `splat.ply`: spaceport with its default preset "
        "(10 k-means iterations, WebP method 4, `sh_palette=auto`), splat-transform 3.7.0 with "
        "`-g cpu` (its SOG writer needs a GPU adapter otherwise) and its defaults. Seconds are wall-clock for "
        "the whole process (interpreter start-up, PLY read, encode, write). PSNR/SSIM: renders of the decoded "
        f".sog vs renders of the uncompressed splat, {args.views} orbit views at {args.resolution} px "
        "(spaceport.train.rasterize on the CPU).",
        "",
        "| scene | N | SH | PLY MB | spaceport s | splat-transform s | speed-up | spaceport MB | splat-transform MB "
        "| size ours/theirs | PLY/ours | PSNR ours dB | PSNR theirs dB | SSIM ours | SSIM theirs | peak MB ours / theirs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        o, t = r["ours"], r["theirs"]
        o_s = f"{o['seconds']:.2f}" if o["ok"] else "failed"
        t_s = f"{t['seconds']:.1f}" if t["ok"] else f"> {t['seconds']:.0f} (not finished)"
        if t.get("reused"):
            t_s += " (reused†)"
        speed = (t["seconds"] / o["seconds"]) if o["ok"] else None
        speed_s = (f"{speed:.1f}x" if t["ok"] else f"> {speed:.0f}x") if speed else "-"
        ob, tb = o.get("bytes"), t.get("bytes")
        cells = [r.get("scene", "synthetic").split(" (")[0], r["n"], r["degree"], f"{r['ply_bytes'] / 1e6:.2f}", o_s, t_s, speed_s,
                 f"{ob / 1e6:.3f}" if ob else "-", f"{tb / 1e6:.3f}" if tb else "-",
                 f"{ob / tb:.3f}" if ob and tb else "-", f"{r['ply_bytes'] / ob:.1f}" if ob else "-",
                 o.get("psnr", "-"), t.get("psnr", "-"), o.get("ssim", "-"), t.get("ssim", "-"),
                 f"{o.get('peak_mb', '-')} / {t.get('peak_mb', '-')}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if any(r["theirs"].get("reused") for r in rows):
        lines += ["", "† splat-transform not re-run for this row: its seconds, bytes, PSNR and SSIM are from "
                  f"{next(r['theirs']['reused'] for r in rows if r['theirs'].get('reused'))}, on the same seeded "
                  "input PLY and the same views."]
    lines += ["", "Spaceport encoder step seconds, SH palette choice and SOG bytes per attribute (from compress.json):", ""]
    for r in rows:
        if r["ours"]["ok"]:
            pal = r["ours"].get("sh_palette")
            pal_s = (f"; palette {pal['entries']} entries ({pal['policy']}; colour error levels tried "
                     f"{pal['tried']})" if pal else "")
            lines.append(f"- {r.get('scene', 'synthetic').split(' (')[0]} N={r['n']}, SH{r['degree']}: "
                         f"{r['ours']['steps']}{pal_s}; bytes {r['ours'].get('bytes_per_attribute')}")
    lines += ["", "Goals (issue #4), per case:", ""]
    for r in rows:
        o, t = r["ours"], r["theirs"]
        if not o["ok"]:
            continue
        label = f"{r.get('scene', 'synthetic').split(' (')[0]} N={r['n']} SH{r['degree']}"
        parts = []
        if r["degree"] == 3:
            speed = t["seconds"] / o["seconds"]
            parts.append(f"speed-up {'>' if not t['ok'] else ''}{speed:.1f}x (goal >= 10x: "
                         f"{'met' if speed >= 10 else ('met as a lower bound' if not t['ok'] else 'NOT met')})")
        if t["ok"]:
            parts.append(f"size ours/theirs {o['bytes'] / t['bytes']:.3f} (goal <= 1.05: "
                         f"{'met' if o['bytes'] <= 1.05 * t['bytes'] else 'NOT met'})")
            parts.append(f"PSNR ours - theirs {o['psnr'] - t['psnr']:+.2f} dB (goal >= 0: "
                         f"{'met' if o['psnr'] >= t['psnr'] else 'NOT met'})")
        ratio = r["ply_bytes"] / o["bytes"]
        parts.append(f"PLY/SOG {ratio:.1f}x (goal >= 15x: {'met' if ratio >= 15 else 'NOT met'}; PSNR vs the "
                     f"uncompressed render {o['psnr']:.1f} dB)")
        if "gt_psnr_uncompressed" in r and "gt_psnr" in o:
            loss = r["gt_psnr_uncompressed"] - o["gt_psnr"]
            parts.append(f"PSNR vs ground-truth photos: uncompressed {r['gt_psnr_uncompressed']:.2f} dB, ours "
                         f"{o['gt_psnr']:.2f} dB" + (f", theirs {t['gt_psnr']:.2f} dB" if "gt_psnr" in t else "")
                         + f" -> loss {loss:.2f} dB (goal <= 0.5: {'met' if loss <= 0.5 else 'NOT met'})")
        lines.append(f"- {label}: " + "; ".join(parts))
    if notes:
        lines += ["", "Skipped or unfinished:", ""] + [f"- {x}" for x in notes]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    (args.out.with_suffix(".json")).write_text(json.dumps({"machine": desc, "started": started, "rows": rows}, indent=1))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
