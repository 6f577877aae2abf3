"""How well the budget's calibration predicts what a step of a trained splat costs.

A budget is planned from a line ``seconds = fixed + per_gaussian * N`` through two timed probes
(:mod:`spaceport.stages.train.calibrate`): the initial Gaussians, and ``GROWTH`` times as many. The
plan's expected time and the ETA's growth factor rest on that line at the splat's final size. This
script takes splats that runs of ``bench/train_budget.py`` trained (``WORK/<capture>/ours_<M>/``,
beside the SfM output they trained on), times steps of each on its own training views at its own
size, and prints the line's prediction at its Gaussian count over the measured cost, for the probe
as calibrated (grown Gaussians shaped like a trained splat's) and for fresh copies (their spacing's
size, the initial opacity: the probe before 2026-12-05). 1.0 is exact; above 1 the plan overestimates.

    python bench/calibration.py [--work /tmp/spaceport-bench-budget] [--threads 2] [--out bench/results/calibration.md]

Timings: run it on an idle machine (it measures wall time with ``--threads`` torch threads).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from machine import cpu_model, mem_gib, write_table

from spaceport.core.summaries import TrainMetrics, read_summary
from spaceport.geometry.splat import read_ply
from spaceport.stages.train import calibrate
from spaceport.stages.train.config import config_for
from spaceport.stages.train.data import load_model, load_views
from spaceport.stages.train.gaussians import init_params

ROOT = Path(__file__).resolve().parents[1]


def trained_step_s(path: Path, views: list, cfg) -> tuple[float, int]:
    """Median wall seconds of an optimisation step of the splat at ``path`` (as training takes them)."""
    splat = read_ply(path)
    params = init_params(splat.means, np.zeros((len(splat.means), 3)), cfg.optim)
    with torch.no_grad():
        params["scales"][:] = torch.from_numpy(splat.scales)
        params["quats"][:] = torch.from_numpy(splat.quats)
        params["opacities"][:] = torch.from_numpy(splat.opacities)
        params["sh0"][:] = torch.from_numpy(splat.sh0)[:, None, :]
    return calibrate.time_params(params, views, cfg, torch.device("cpu"), steps=calibrate.STEPS + 2), len(splat.means)


def measure(run: Path) -> dict:
    metrics = read_summary(TrainMetrics, run / "metrics.json")
    options = metrics.config
    cfg = config_for("fast", {k: options[k] for k in ("model_dir", "downscale", "antialiased") if k in options})
    sfm = run.parent / "sfm"
    model = load_model(sfm / cfg.data.model_dir)
    views = [v for v in load_views(model, sfm / "images", cfg.data.test_every, cfg.data.downscale) if v.split == "train"]
    xyz, rgb = calibrate._points(model, cfg, views)
    small = calibrate._time_steps(xyz, rgb, views, cfg, torch.device("cpu"))
    grown = calibrate._grown(xyz, np.random.default_rng(0))
    measured, n = trained_step_s(run / "splat.ply", views, cfg)
    row = {"capture": run.parent.name, "run": run.name, "size": f"{views[0].width}x{views[0].height}",
           "start_gaussians": len(xyz), "trained_gaussians": n, "start_step_s": round(small, 4),
           "trained_step_s": round(measured, 4)}
    for name, refined in (("calibrated", True), ("fresh", False)):
        large = calibrate._time_steps(grown, np.concatenate([rgb] * calibrate.GROWTH), views, cfg,
                                      torch.device("cpu"), refined=refined)
        per = max(0.0, (large - small) / (len(grown) - len(xyz)))
        fixed = max(small - per * len(xyz), 0.2 * small)
        row[f"{name}_ratio"] = round((fixed + per * n) / measured, 3)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/spaceport-bench-budget"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "calibration.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for run in sorted(args.work.glob("*/ours_*")):
        if (run / "splat.ply").is_file() and (run.parent / "sfm").is_dir():
            rows.append(measure(run))
            print(json.dumps(rows[-1]), flush=True)
    cols = ["capture", "run", "size", "start_gaussians", "trained_gaussians", "start_step_s", "trained_step_s",
            "calibrated_ratio", "fresh_ratio"]
    lines = ["# The calibration's line against trained splats' step cost\n",
             f"Machine: {cpu_model()}, {args.threads} torch threads, {mem_gib():.0f} GiB. `python bench/calibration.py`:",
             "predicted step seconds at the trained splat's Gaussian count over the measured (1.0: exact).\n",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    ratios = [r["calibrated_ratio"] for r in rows]
    if ratios:
        lines.append(f"\nCalibrated probe: {min(ratios):.2f}-{max(ratios):.2f}x; fresh copies: "
                     f"{min(r['fresh_ratio'] for r in rows):.2f}-{max(r['fresh_ratio'] for r in rows):.2f}x.")
    write_table(lines, args.out)


if __name__ == "__main__":
    main()
