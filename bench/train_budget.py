"""Quality against training time, ours and OpenSplat's CPU build side by side, and how honest our ETA is.

For each capture (the real ones in ../shared/captures and the demo scene) the SfM stage runs once
(``--sfm-preset``, default ``fast``, what a CPU run with no flags uses) and both trainers start from
that output: the same cameras, points and images.

- ours: ``spaceport train SFM --preset fast --minutes M`` for each budget M (a separate run each:
  the plan differs per budget). Held-out PSNR is the mean over our held-out views (every 8th);
  the PSNR on OpenSplat's validation view is read from our render of it (``renders/``); when ours
  trained finer than the coarsest size (``held_out_coarse``), that render is also box-downscaled to
  the coarsest size and scored there, beside OpenSplat's render at that size.
- OpenSplat (built by bench/opensplat_build.sh): one run per capture, ``--cpu -d D
  --num-downscales 0 --val-image V --val-render DIR``, stopped at the largest budget; it renders
  the validation view every 10 steps, so its PSNR at each budget is that of the last render
  written before the budget ran out (scored against our copy of the photo, box-downscaled to the
  render's size). Its validation view V is our first held-out view; it trains on every other
  image, ours on 7 of every 8.
- ETA: every progress line of our runs carries ``eta_s``; the error of the predicted finish
  against the real finish is reported at 10%, 25%, 50% and 75% of the run, and the largest.

The whole grid (every capture, 5/10/20/40 minutes) is ~10 hours of one 2-core machine; cells run
with ``--captures`` / ``--budgets`` / ``--trainers`` and land in a JSON file that later calls add to,
then ``--table`` writes the markdown. Wall-time budgets measured on a busy machine are upper
bounds on time (each process got a fraction of a core): the load is recorded per cell.

    nice -n 10 python bench/train_budget.py --captures monstree --budgets 5,10 [--trainers ours,opensplat]
        [--work /tmp/spaceport-bench-budget] [--json bench/results/train_budget.json]
    python bench/train_budget.py --table [--out bench/results/train_budget.md]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from machine import cpu_model, mem_gib, write_table

from spaceport.core.summaries import TrainMetrics, read_summary

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT.parent / "shared" / "captures"
if not CAPTURES.is_dir():
    CAPTURES = Path("/work/shared/captures")
ALL = ("monstree", "fountain-P11", "herzjesu-P8", "demo")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "SPACEPORT_LOG_FORMAT": "json"}


def run(argv: list[str], log: Path, timeout: float | None = None) -> int:
    with log.open("w") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=ENV, cwd=ROOT, start_new_session=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            return -1


def sfm_output(cap: str, work: Path, preset: str) -> Path:
    """The SfM stage's output for ``cap`` (made once). The demo scene trains on its exact cameras."""
    out = work / cap / "sfm"
    if (out / "sparse" / "0").is_dir():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    if cap == "demo":
        scene = work / cap / "scene"
        if not (scene / "images").is_dir():
            run([sys.executable, "-m", "spaceport", "demo-scene", "--out", str(scene)], work / cap / "scene.log")
        (out / "sparse").mkdir(parents=True)
        os.symlink(scene / "gt" / "sparse" / "0", out / "sparse" / "0")
        os.symlink(scene / "images", out / "images")
        return out
    src = CAPTURES / cap / "images" if (CAPTURES / cap / "images").is_dir() else CAPTURES / cap
    code = run([sys.executable, "-m", "spaceport", "sfm", str(src), "--out", str(out), "--preset", preset],
               work / cap / "sfm.log")
    if code != 0:
        raise SystemExit(f"sfm failed on {cap}: {work / cap / 'sfm.log'}")
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)) / 255.0**2
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def score(render: Path, photo: Path, size: tuple[int, int] | None = None) -> float:
    """PSNR of a render against its photo, box-downscaled to the render's size (or both to ``size``:
    a render at a finer size is scored beside one made at ``size``)."""
    from PIL import Image

    with Image.open(render) as r, Image.open(photo) as p:
        r = r.convert("RGB")
        if size is not None and r.size != size:
            r = r.resize(size, Image.Resampling.BOX)
        p = p.convert("RGB").resize(r.size, Image.Resampling.BOX)
        return psnr(np.asarray(r), np.asarray(p))


def eta_errors(events: list[dict], end_t: float) -> dict[str, float]:
    """Error of the predicted finish (t + eta_s) against the real one, in % of the time left then."""
    lines = [e for e in events if "eta_s" in e and "t" in e]
    if not lines:
        return {}
    start = min(e["t"] for e in events if "t" in e)
    out: dict[str, float] = {}
    worst = 0.0
    for e in lines:
        left = end_t - e["t"]
        if left > 0:
            worst = max(worst, abs(e["t"] + float(e["eta_s"]) - end_t) / left * 100)
    for frac in (0.1, 0.25, 0.5, 0.75):
        at = start + frac * (end_t - start)
        e = min(lines, key=lambda x: abs(x["t"] - at))
        left = end_t - e["t"]
        out[f"{int(frac * 100)}%"] = round((e["t"] + float(e["eta_s"]) - end_t) / left * 100, 1) if left > 0 else 0.0
    out["worst"] = round(worst, 1)
    return out


def ours(cap: str, sfm: Path, minutes: float, work: Path) -> dict:
    out = work / cap / f"ours_{minutes:g}"
    shutil.rmtree(out, ignore_errors=True)
    log = work / cap / f"ours_{minutes:g}.log"
    load = os.getloadavg()[0]
    t0 = time.time()
    cpu0 = os.times()
    code = run([sys.executable, "-m", "spaceport", "train", str(sfm), "--out", str(out), "--preset", "fast",
                "--minutes", f"{minutes:g}"], log)
    end = time.time()
    if code != 0:
        raise SystemExit(f"training failed: {log}")
    cpu = sum(os.times()[2:4]) - sum(cpu0[2:4])
    events = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    plan = next(e for e in events if e.get("phase") == "plan")
    m = read_summary(TrainMetrics, out / "metrics.json")
    first = m.held_out[0]
    stem = Path(first).with_suffix("").as_posix().replace("/", "_")
    view = score(out / "renders" / f"{stem}_render.png", out / "renders" / f"{stem}_gt.png")
    coarse = m.held_out_coarse
    view_coarse = (score(out / "renders" / f"{stem}_render.png", out / "renders" / f"{stem}_gt.png",
                         (coarse.width, coarse.height)) if coarse else view)
    return {"capture": cap, "trainer": "ours", "minutes": minutes, "wall_s": round(end - t0, 1),
            "cpu_s": round(cpu, 1), "load_start": round(load, 1), "load_end": round(os.getloadavg()[0], 1),
            "test_psnr": m.test_psnr, "test_ssim": m.test_ssim, "val_view": first, "val_psnr": round(view, 2),
            "val_psnr_coarse": round(view_coarse, 2),
            "size": f"{m.width}x{m.height}",
            "coarse_psnr": m.held_out_coarse.psnr if m.held_out_coarse else None,
            "coarse_size": f"{m.held_out_coarse.width}x{m.held_out_coarse.height}" if m.held_out_coarse else None,
            "steps": m.steps, "planned_steps": plan["steps"], "downscale": plan["downscale"],
            "gaussians": m.num_gaussians, "expected_s": plan["expected_s"],
            "stage_s": m.seconds["total"],
            "eta": eta_errors(events, next((e["t"] for e in events if e.get("final")), end))}


def opensplat(cap: str, sfm: Path, budgets: list[float], work: Path, binary: Path, val: str, downscale: int) -> list[dict]:
    renders = work / cap / "opensplat_val"
    shutil.rmtree(renders, ignore_errors=True)
    renders.mkdir(parents=True)
    project = work / cap / "opensplat_project"  # COLMAP layout: sparse/0 + images
    if not project.exists():
        project.mkdir()
        model = (sfm / "sparse" / "0").resolve()
        if (model / "cameras.bin").is_file():
            os.symlink(model.parent, project / "sparse")
        else:  # OpenSplat reads binary models only (the demo scene's exact cameras are text)
            from spaceport.geometry.colmap import read_model, write_model_binary

            (project / "sparse" / "0").mkdir(parents=True)
            write_model_binary(read_model(model), project / "sparse" / "0")
        os.symlink((sfm / "images").resolve(), project / "images")
    torch_lib = Path(__import__("torch").__file__).parent / "lib"
    env = {**ENV, "LD_LIBRARY_PATH": str(torch_lib)}
    load = os.getloadavg()[0]
    t0 = time.time()
    log = work / cap / "opensplat.log"
    with log.open("w") as f:
        proc = subprocess.Popen([str(binary), str(project), "-n", "100000", "--cpu", "-d", str(downscale),
                                 "--num-downscales", "0", "--val-image", val, "--val-render", str(renders),
                                 "-o", str(work / cap / "opensplat.ply")], stdout=f, stderr=subprocess.STDOUT,
                                env=env, cwd=work / cap, start_new_session=True)
        try:
            proc.wait(timeout=max(budgets) * 60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
    photo = sfm / "images" / val
    rows = []
    pngs = sorted(renders.glob("*.png"), key=lambda p: int(p.stem))
    for m in budgets:
        done = [p for p in pngs if p.stat().st_mtime <= t0 + m * 60]
        last = done[-1] if done else None
        rows.append({"capture": cap, "trainer": "opensplat", "minutes": m, "load_start": round(load, 1),
                     "load_end": round(os.getloadavg()[0], 1), "val_view": val,
                     "val_psnr": round(score(last, photo), 2) if last else None,
                     "steps": int(last.stem) if last else 0, "downscale": downscale})
    return rows


def table(rows: list[dict], out: Path) -> None:
    lines = ["# Training to a time budget: held-out PSNR against wall time, ours and OpenSplat (CPU)", "",
             f"Machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {mem_gib():.0f} GiB; shared with other "
             "work (1-minute load average per cell below: wall times under load are upper bounds).", "",
             "Command: `python bench/train_budget.py` (see its docstring for the method).", "",
             "| capture | minutes | ours held-out PSNR (mean) | ours PSNR on val view | OpenSplat PSNR on val view "
             "| ours steps (planned) | OpenSplat steps | ours downscale | ours Gaussians | load start/end |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    keys = sorted({(r["capture"], r["minutes"]) for r in rows})
    for cap, m in keys:
        o = next((r for r in rows if r["capture"] == cap and r["minutes"] == m and r["trainer"] == "ours"), None)
        s = next((r for r in rows if r["capture"] == cap and r["minutes"] == m and r["trainer"] == "opensplat"), None)

        def g(r, k, fmt="{}"):
            return fmt.format(r[k]) if r and r.get(k) is not None else "not run"

        loads = "; ".join(f"{r['trainer']} {r['load_start']}/{r['load_end']}" for r in (o, s) if r)
        steps = f"{o['steps']} ({o['planned_steps']})" if o else "not run"
        coarse = f" ({o['coarse_psnr']:.2f} at {o['coarse_size']})" if o and o.get("coarse_psnr") is not None else ""
        view = (f" ({o['val_psnr_coarse']:.2f} at {o['coarse_size']})"
                if o and o.get("coarse_psnr") is not None and o.get("val_psnr_coarse") is not None else "")
        lines.append(f"| {cap} | {m:g} | {g(o, 'test_psnr', '{:.2f}')}{coarse} | {g(o, 'val_psnr', '{:.2f}')}{view} | "
                     f"{g(s, 'val_psnr', '{:.2f}')} | {steps} | {g(s, 'steps')} | {g(o, 'downscale')} | "
                     f"{g(o, 'gaussians')} | {loads} |")
    lines += ["", "## ETA accuracy (ours)", "",
              "Predicted finish (time of the progress line + its `eta_s`) against the real end of the stage, in % "
              "of the time that was left at that line; the plan's expected seconds against the stage's real seconds.",
              "", "| capture | minutes | plan expected s | stage s | at 10% | at 25% | at 50% | at 75% | worst |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["trainer"] == "ours":
            e = r["eta"]
            lines.append(f"| {r['capture']} | {r['minutes']:g} | {r['expected_s']} | {r['stage_s']} | "
                         f"{e.get('10%')} | {e.get('25%')} | {e.get('50%')} | {e.get('75%')} | {e.get('worst')} |")
    write_table(lines, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captures", default=",".join(ALL))
    ap.add_argument("--budgets", default="5,10,20,40")
    ap.add_argument("--trainers", default="ours,opensplat")
    ap.add_argument("--sfm-preset", default="fast")
    ap.add_argument("--opensplat-downscale", type=int, default=4)
    ap.add_argument("--work", type=Path, default=Path("/tmp/spaceport-bench-budget"))
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "train_budget.json")
    ap.add_argument("--table", action="store_true", help="only write the markdown table from --json")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "train_budget.md")
    args = ap.parse_args()
    rows = json.loads(args.json.read_text()) if args.json.is_file() else []
    if args.table:
        table(rows, args.out)
        return
    budgets = [float(b) for b in args.budgets.split(",")]

    def save(new: list[dict]) -> None:
        nonlocal rows
        keep = [r for r in rows if not any((r["capture"], r["trainer"], r["minutes"]) ==
                                          (n["capture"], n["trainer"], n["minutes"]) for n in new)]
        rows = keep + new
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
        print(json.dumps(new), flush=True)

    for cap in args.captures.split(","):
        sfm = sfm_output(cap, args.work, args.sfm_preset)
        if "ours" in args.trainers:
            for m in budgets:
                save([ours(cap, sfm, m, args.work)])
        if "opensplat" in args.trainers:
            binary = Path(subprocess.run([str(ROOT / "bench" / "opensplat_build.sh"), str(args.work / "opensplat")],
                                         capture_output=True, text=True, check=True,
                                         env={**os.environ, "PYTHON": sys.executable}).stdout.split()[-1])
            from spaceport.geometry.colmap import read_model

            names = sorted(im.name for im in read_model(sfm / "sparse" / "0").images.values())
            # Scored at the resolution ours trained at for the shortest budget (PSNR depends on it).
            mine = sorted((r for r in rows if r["capture"] == cap and r["trainer"] == "ours"), key=lambda r: r["minutes"])
            ds = mine[0]["downscale"] if mine else args.opensplat_downscale
            save(opensplat(cap, sfm, budgets, args.work, binary, names[0], ds))


if __name__ == "__main__":
    main()
