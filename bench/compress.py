"""Benchmark: `spaceport compress` against `splat-transform -g cpu` (3.7.0) on the same PLYs, side by side.

Inputs, made fresh in every run:

- a real trained splat: `spaceport sfm` + `spaceport train --preset fast --sh-degree 2` on
  captures/fountain-P11 (11 photos; a few minutes on 2 CPU cores);
- that splat grown to 500k Gaussians, SH2 (:func:`tests.support.synthetic_splats.upscaled`: each
  trained Gaussian split into ~21 children sampled inside it, colours/SH/opacity blended with a
  neighbour), the size of a real 500k SH2 splat, which CPU training cannot reach here;
- synthetic splats (:func:`tests.support.synthetic_splats.synthetic_splat`), by default 3M SH3
  (the size of a full GPU training, ~740 MB PLY).

For each, both tools write a bundled .sog from the same splat.ply: spaceport end to end with its
default preset (SOG + SPZ + the time-budgeted quality measurement), splat-transform with `-g cpu`
under a time limit (a case it does not finish prints "> N s"). Recorded: wall seconds and peak RSS
of each process, .sog bytes, and PSNR/SSIM of renders of each decoded .sog (both by our decoder,
which the tests show agrees with splat-transform's reader) against renders of the uncompressed
splat from the same views (cropped to a centred window above 200k Gaussians: CPU renders of large
splats take minutes).

    nice -n 10 python bench/compress.py [--sizes 3000000] [--degrees 3] [--timeout 300]

Writes bench/results/compress.md (the table, the machine, the goals, what was skipped and why).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import CAPTURES, ROOT, cpu_model, mem_gib

from spaceport.core.summaries import CompressSummary, TrainMetrics, read_summary
from spaceport.geometry.splat import read_ply, write_ply
from spaceport.stages.compress.quality import cameras_from_json, crop_view, orbit_cameras, render_all, ssim
from spaceport.stages.compress.sog import decode_sog
from tests.support.synthetic_splats import synthetic_splat, upscaled

CAPTURE = CAPTURES / "fountain-P11" / "images"
#: The compression goals this bench reports met or missed (seconds, MB; bench only, never tests).
GOAL_500K_S, GOAL_500K_MB, GOAL_3M_MB = 60.0, 3 * 1024, 16 * 1024

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


def machine() -> str:
    cpu, mem = cpu_model(), mem_gib()
    import torch

    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} logical cores, {mem:.0f} GiB RAM, {gpu}; Linux {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__}, node {node}; "
            f"load average at start {load} (the cores are shared with other jobs, so seconds are noisy)")


def train_real(work: Path, timeout: float) -> Path:
    """A real splat: `spaceport sfm` + `spaceport train` (fast preset, SH2) on fountain-P11; returns the train folder."""
    if not CAPTURE.is_dir():
        raise SystemExit(f"{CAPTURE} is missing: the bench needs the repository's captures/")
    py = [sys.executable, "-m", "spaceport"]
    for cmd in ([*py, "sfm", str(CAPTURE), "--out", str(work / "sfm"), "--preset", "fast"],
                [*py, "train", str(work / "sfm"), "--out", str(work / "train"), "--preset", "fast",
                 "--sh-degree", "2", "--sh-degree-interval", "150"]):
        r = timed(cmd, timeout)
        if not r["ok"]:
            raise SystemExit(f"making the real splat failed: {' '.join(cmd)}: {r['why']}")
        print(json.dumps({"made": cmd[3], **r}), flush=True)
    return work / "train"


def views_for(splat, cams: Path | None, count: int, resolution: int) -> tuple[list, float]:
    """The bench's views and the crop of the compared renders (a centred quarter above 200k Gaussians)."""
    views = (cameras_from_json(cams, count, resolution) if cams is not None and cams.is_file()
             else orbit_cameras(splat, count, resolution))
    if len(splat) <= 200_000:
        return views, 1.0
    return [crop_view(views[0], 0.25)[0]], 0.25


def scores(ref: list, splat, views: list) -> dict:
    renders = render_all(splat, views)
    mse = sum(float(((r.astype("float64") - g) ** 2).mean()) for r, g in zip(renders, ref, strict=True)) / len(ref)
    return {"psnr": round(10 * math.log10(1 / max(mse, 1e-12)), 3), "ssim": round(sum(ssim(r, g) for r, g in zip(renders, ref, strict=True))
                                                      / len(ref), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="3000000", help="synthetic splat sizes (comma-separated; empty for none)")
    ap.add_argument("--degrees", default="3")
    ap.add_argument("--upscale", type=int, default=500_000, help="Gaussians of the upscaled real splat (0: none)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds allowed to splat-transform per case")
    ap.add_argument("--ours-timeout", type=float, default=1800.0)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--real-from", type=Path, default=None,
                    help="reuse this earlier training folder (splat.ply + cameras.json) instead of training now")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "compress.md")
    args = ap.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    desc = machine()
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="bench-compress-") as tmp:
        tmp = Path(tmp)
        train = args.real_from or train_real(tmp / "real", args.ours_timeout)
        real = read_ply(train / "splat.ply")
        metrics = read_summary(TrainMetrics, train / "metrics.json") if (train / "metrics.json").is_file() else None
        cases = [("trained", real, train / "cameras.json")]
        if args.upscale:
            cases.append((f"trained, upscaled x{args.upscale / len(real):.1f}", upscaled(real, args.upscale, seed=1),
                          train / "cameras.json"))
        for n in [int(x) for x in args.sizes.split(",") if x]:
            for d in [int(x) for x in args.degrees.split(",") if x]:
                cases.append(("synthetic", (n, d), None))
        for scene, splat, cams in cases:
            if isinstance(splat, tuple):
                splat = synthetic_splat(*splat, seed=sum(splat))
            n, d = len(splat), splat.sh_degree
            case = tmp / f"n{n}_sh{d}"
            case.mkdir()
            ply_bytes = write_ply(splat, case / "splat.ply")
            if cams is not None and cams.is_file():
                (case / "cameras.json").write_bytes(cams.read_bytes())
            ours = timed([sys.executable, "-m", "spaceport", "compress", str(case / "splat.ply"), "--out",
                          str(case / "ours")], args.ours_timeout)
            theirs = timed(["node", str(SPLAT_TRANSFORM), "-w", "-q", "-g", "cpu", str(case / "splat.ply"),
                            str(case / "theirs.sog")], args.timeout)
            views, crop = views_for(splat, case / "cameras.json" if cams else None, args.views, args.resolution)
            ref = render_all(splat, views)
            row = {"scene": scene, "n": n, "degree": d, "ply_bytes": ply_bytes, "ours": ours, "theirs": theirs,
                   "views": f"{len(views)} x {'cameras.json' if cams else 'orbit'}" + (f", crop {crop}" if crop < 1 else "")}
            if ours["ok"]:
                summary = read_summary(CompressSummary, case / "ours" / "compress.json")
                ours.update(bytes=summary.outputs.sog, spz_bytes=summary.outputs.spz,
                            phases={k: v for k, v in summary.seconds.items() if k != "sog_steps"},
                            steps=summary.seconds["sog_steps"],
                            sh_palette=summary.sh_palette.model_dump() if summary.sh_palette else None,
                            quality=summary.quality.model_dump() if summary.quality else None,
                            bytes_per_attribute=summary.bytes_per_attribute)
                ours.update(scores(ref, decode_sog(case / "ours" / "scene.sog"), views))
            if theirs["ok"]:
                theirs["bytes"] = (case / "theirs.sog").stat().st_size
                theirs.update(scores(ref, decode_sog(case / "theirs.sog"), views))
            else:
                notes.append(f"splat-transform on {scene} N={n}, SH{d}: not finished ({theirs['why']}); its "
                             f"seconds are a lower bound and its bytes/PSNR are unknown.")
            print(json.dumps(row), flush=True)
            rows.append(row)
            del splat
    write_table(args, started, desc, rows, notes, train, metrics)


def write_table(args, started: str, desc: str, rows: list, notes: list, train: Path, metrics: dict) -> None:
    made = (f"reused from `{args.real_from}` (an earlier `spaceport train` run, see notes)" if args.real_from else
            "trained in this run: `spaceport sfm captures/fountain-P11/images --preset fast`, then "
            "`spaceport train --preset fast --sh-degree 2 --sh-degree-interval 150`")
    lines = [
        "# Compression benchmark: spaceport vs splat-transform",
        "",
        f"Run {started} with `nice -n 10 python bench/compress.py {' '.join(sys.argv[1:])}`.",
        "",
        f"Machine: {desc}.",
        "",
        f"Real splat: {made} ({rows[0]['n']} Gaussians, SH{rows[0]['degree']}; test PSNR "
        f"{metrics.test_psnr if metrics else '?'} dB vs the held-out photos). The upscaled row grows it with "
        "`tests.support.synthetic_splats.upscaled` (children sampled inside each trained Gaussian, scales shrunk "
        "by the cube root of the factor, colour/SH/opacity blended with a neighbour). Synthetic rows: "
        "`synthetic_splat(N, degree)` (SH bands partly i.i.d. noise). spaceport: `spaceport compress` end to end, "
        "default preset (SOG + SPZ v4 + quality measurement with a 20 s budget); splat-transform 3.7.0 `-g cpu`, "
        f"SOG only, limited to {args.timeout:.0f} s. Seconds: wall clock of the whole process; peak MB: max RSS. "
        "PSNR/SSIM: renders of each decoded .sog vs renders of the uncompressed splat (same views).",
        "",
        "| scene | N | SH | PLY MB | spaceport s | splat-transform s | spaceport peak MB | splat-transform peak MB "
        "| spaceport .sog MB | splat-transform .sog MB | PLY/ours | PSNR ours / theirs dB | SSIM ours / theirs | views |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        o, t = r["ours"], r["theirs"]
        cells = [r["scene"], r["n"], r["degree"], f"{r['ply_bytes'] / 1e6:.1f}",
                 f"{o['seconds']:.1f}" if o["ok"] else f"failed ({o['why']})",
                 f"{t['seconds']:.1f}" if t["ok"] else f"> {t['seconds']:.0f} (not finished)",
                 o.get("peak_mb", "-"), t.get("peak_mb", "-"),
                 f"{o['bytes'] / 1e6:.3f}" if o.get("bytes") else "-", f"{t['bytes'] / 1e6:.3f}" if t.get("bytes") else "-",
                 f"{r['ply_bytes'] / o['bytes']:.1f}" if o.get("bytes") else "-",
                 f"{o.get('psnr', '-')} / {t.get('psnr', '-')}", f"{o.get('ssim', '-')} / {t.get('ssim', '-')}", r["views"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "spaceport phases (s), SOG steps (s), SH palette and quality measurement (from compress.json):", ""]
    for r in rows:
        o = r["ours"]
        if o["ok"]:
            lines.append(f"- {r['scene']} N={r['n']} SH{r['degree']}: phases {o['phases']}; steps {o['steps']}; "
                         f"palette {o['sh_palette']}; quality {o['quality']}")
    lines += ["", "Goals:", ""]
    for r in rows:
        o = r["ours"]
        if not o["ok"]:
            continue
        label = f"{r['scene']} N={r['n']} SH{r['degree']}"
        if r["n"] == args.upscale and r["degree"] == 2:
            ok = o["seconds"] <= GOAL_500K_S and o["peak_mb"] <= GOAL_500K_MB
            lines.append(f"- {label}: {o['seconds']:.1f} s end to end (goal <= {GOAL_500K_S:.0f} s), peak "
                         f"{o['peak_mb']:.0f} MB (goal <= {GOAL_500K_MB} MB): {'met' if ok else 'NOT met'}")
        elif r["n"] >= 2_000_000:
            lines.append(f"- {label}: peak {o['peak_mb']:.0f} MB (goal <= {GOAL_3M_MB} MB, the compress job's "
                         f"ml.c5.2xlarge): {'met' if o['peak_mb'] <= GOAL_3M_MB else 'NOT met'}; {o['seconds']:.1f} s")
    if notes:
        lines += ["", "Skipped or unfinished:", ""] + [f"- {x}" for x in notes]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"machine": desc, "started": started, "rows": rows}, indent=1))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
