"""CPU compositing: the torch compositor against the numba kernels, side by side, on a real capture.

A 'fast'-preset trainer on the monstree SfM output (149x199 px) grows its Gaussians with the
numba compositor; when it passes each of ``--sizes`` it measures, with 1 torch thread:
  * compositing alone (forward + backward of ``composite`` on one view's projected Gaussians),
  * whole training steps (``Trainer.step``: projection, SH, compositing, loss, backward, Adam,
    densification),
for both compositors interleaved rep by rep, so both see the same machine load. CPU seconds
(``time.process_time``) and wall seconds; the machine is shared, so CPU seconds are the figure to
read. Also the numba kernels' first-call compile time (empty cache, fresh process) and the largest
difference between the two compositors' images and gradients at each size.

    python bench/composite.py [--sfm /work/exp/mt/sfm] [--sizes 5000,30000,60000] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import ROOT, cpu_model, mem_gib, write_table

COMPOSITORS = ("torch", "numba")


def compile_seconds() -> dict[str, float]:
    """First call of the kernels (float32 forward + backward) in a fresh process with an empty numba cache."""
    code = (
        "import time, torch; t = time.perf_counter()\n"
        "from spaceport.stages.train import composite_numba as N\n"
        "t_import = time.perf_counter() - t\n"
        "m = torch.tensor([[4.0, 4.0]], requires_grad=True)\n"
        "con = torch.tensor([[0.5, 0.0, 0.5]]); o = torch.tensor([0.5]); c = torch.ones(1, 3)\n"
        "t = time.perf_counter()\n"
        "img, a = N.composite_fused(m, con, o, c, torch.zeros(3), torch.zeros(1, dtype=torch.long),\n"
        "                           torch.tensor([0, 1]), 8, 8, 8)\n"
        "(img.sum() + a.sum()).backward()\n"
        "print(t_import, time.perf_counter() - t)\n"
    )
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        for label in ("empty cache", "warm cache"):
            res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            t_import, t_first = (float(x) for x in res.stdout.split())
            out[label] = t_import + t_first
    return out


def composite_inputs(trainer, view):
    """One view's compositor inputs, as ``rasterization_cpu`` builds them (leaves that take gradients)."""
    import math

    import torch

    from spaceport.stages.train import rasterize as R

    p = trainer.params
    vm = torch.as_tensor(view.world_to_camera, dtype=torch.float32)
    K = torch.as_tensor(view.K, dtype=torch.float32)
    with torch.no_grad():
        radii, m2d, depths, conics, _ = R.project(p["means"], p["quats"], torch.exp(p["scales"]),
                                                  torch.sigmoid(p["opacities"]), vm, K, view.width, view.height)
        tw, th = math.ceil(view.width / R.CPU_TILE), math.ceil(view.height / R.CPU_TILE)
        gauss, offsets = R.intersect_tiles(m2d, radii, depths, tw, th, R.CPU_TILE)
        ids, local = torch.unique(gauss, return_inverse=True)
        cols = torch.cat([p["sh0"], p["shN"]], 1)
        col = R._colors_for(cols, 0, ids, p["means"], vm, trainer.sh_degree_at(trainer.steps_done))
    leaves = [x.detach().clone().requires_grad_(True) for x in (m2d[ids], conics[ids], torch.sigmoid(
        p["opacities"])[ids], col)]
    return leaves, (trainer.background, local, offsets, view.width, view.height, R.CPU_TILE), len(gauss)


def time_composite(leaves, rest, compositor: str, target) -> tuple[float, float, list]:
    from spaceport.stages.train import rasterize as R

    for x in leaves:
        x.grad = None
    c0, w0 = time.process_time(), time.perf_counter()
    img, alpha = R.composite(*leaves, *rest, compositor=compositor)
    ((img - target).abs().mean() + alpha.mean()).backward()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return cpu, wall, [img.detach(), alpha.detach()] + [x.grad.clone() for x in leaves]


def time_step(trainer, compositor: str) -> tuple[float, float]:
    os.environ["SPACEPORT_COMPOSITOR"] = compositor
    c0, w0 = time.process_time(), time.perf_counter()
    trainer.step()
    return time.process_time() - c0, time.perf_counter() - w0


def measure(trainer, reps: int) -> dict:
    import torch

    view = trainer.train_views[0]
    leaves, rest, n_isect = composite_inputs(trainer, view)
    target = torch.from_numpy(view.image)
    comp = {c: [] for c in COMPOSITORS}
    outs = {}
    for _ in range(reps):
        for c in COMPOSITORS:
            cpu, wall, out = time_composite(leaves, rest, c, target)
            comp[c].append((cpu, wall))
            outs[c] = out
    diffs = [float((a - b).abs().max() / b.abs().max().clamp(min=1e-30)) for a, b in zip(outs["numba"],
                                                                                         outs["torch"], strict=True)]
    step = {c: [] for c in COMPOSITORS}
    for _ in range(reps):
        for c in COMPOSITORS:
            step[c].append(time_step(trainer, c))
    os.environ["SPACEPORT_COMPOSITOR"] = "numba"
    med = lambda xs, i: sorted(x[i] for x in xs)[len(xs) // 2]  # noqa: E731
    return {
        "gaussians": len(trainer.params["means"]), "visible": len(leaves[0]), "intersections": n_isect,
        "composite": {c: {"cpu_s": med(v, 0), "wall_s": med(v, 1)} for c, v in comp.items()},
        "step": {c: {"cpu_s": med(v, 0), "wall_s": med(v, 1)} for c, v in step.items()},
        "max_rel_diff": dict(zip(["image", "alpha", "means2d", "conics", "opacities", "colors"], diffs,
                                 strict=True)),
    }


def run(sfm: Path, sizes: list[int], reps: int) -> list[dict]:
    import torch

    from spaceport.stages.train.config import config_for
    from spaceport.stages.train.trainer import Trainer

    os.environ["SPACEPORT_COMPOSITOR"] = "numba"
    cfg = config_for("fast", {"steps": "3000", "refine_every": "50", "refine_start": "100",
                              "refine_stop": "2500", "max_gaussians": str(max(sizes)), "checkpoint_every": "0",
                              "log_every": "1000", "cpu_threads": "1"})
    trainer = Trainer(sfm, cfg)
    torch.set_num_threads(1)
    rows = []
    for size in sizes:
        while len(trainer.params["means"]) < size * 0.97 and trainer.steps_done < cfg.optim.steps:
            trainer.step()
        row = measure(trainer, reps)
        row["step_index"] = trainer.steps_done
        row["size"] = f"{trainer.train_views[0].width}x{trainer.train_views[0].height}"
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def table(rows: list[dict], compile_s: dict[str, float], size: str, reps: int) -> list[str]:
    load = os.getloadavg()[0]
    lines = [
        "# CPU compositing: torch compositor vs numba kernels",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {mem_gib():.0f} GiB, load average {load:.1f} "
        f"at the end (shared machine: read the CPU seconds). 1 torch thread, numba 1 thread.",
        f"Scene: monstree ({size} px), 'fast' preset grown with the numba compositor; medians of {reps} "
        "interleaved reps. `python bench/composite.py`",
        "",
        "| Gaussians (visible) | intersections | composite fwd+bwd CPU s torch | numba | speed-up "
        "| whole step CPU s torch | numba | speed-up | wall s step torch / numba |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ct, cn = r["composite"]["torch"]["cpu_s"], r["composite"]["numba"]["cpu_s"]
        st, sn = r["step"]["torch"]["cpu_s"], r["step"]["numba"]["cpu_s"]
        lines.append(f"| {r['gaussians']} ({r['visible']}) | {r['intersections']} | {ct:.3f} | {cn:.3f} | "
                     f"{ct / cn:.1f}x | {st:.3f} | {sn:.3f} | {st / sn:.1f}x | "
                     f"{r['step']['torch']['wall_s']:.3f} / {r['step']['numba']['wall_s']:.3f} |")
    lines += ["", "Largest difference numba vs torch (relative to the largest value), float32:", "",
              "| Gaussians | image | alpha | d means2d | d conics | d opacities | d colors |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r["max_rel_diff"]
        lines.append(f"| {r['gaussians']} | " + " | ".join(f"{v:.1e}" for v in d.values()) + " |")
    lines += ["", "First call of the numba kernels (import + compile/load, float32 forward + backward), "
              f"fresh process: empty cache {compile_s['empty cache']:.1f} s, warm cache "
              f"{compile_s['warm cache']:.1f} s (wall).", ""]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sfm", type=Path, default=Path("/work/exp/mt/sfm"))
    ap.add_argument("--sizes", default="5000,30000,60000")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "composite.md"))
    args = ap.parse_args()
    compile_s = compile_seconds()
    rows = run(args.sfm, [int(s) for s in args.sizes.split(",")], args.reps)
    Path(args.out).with_suffix(".json").write_text(json.dumps({"rows": rows, "compile_s": compile_s}, indent=1))
    write_table(table(rows, compile_s, rows[0]["size"], args.reps), args.out)


if __name__ == "__main__":
    main()
