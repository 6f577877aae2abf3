"""Training-stage benchmark: our CPU rasterizer against the straightforward reference, side by side.

CPU part (always): the same training loop (Adam, L1 + D-SSIM, fixed Gaussians from the demo
scene's points, no densification so both do identical work) with
  * ours: elementwise projection + tile-culled fused compositing (spaceport.stages.train.rasterize),
  * reference: gsplat's torch projection (``_fully_fused_projection``) + dense per-pixel compositing,
each in its own process (so malloc settings and thread counts are clean), reporting CPU and wall
seconds per step and the held-out PSNR after the same steps; plus projection alone (ours vs gsplat's
batched einsums) and the 'fast' preset end to end on the demo scene (24 views 640x480).
The GPU comparison (our stage against a plain gsplat loop on a real capture) is bench/gpu/run.sh.

    python bench/train.py [--steps 40] [--out bench/results/train.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORK = Path(os.environ.get("BENCH_WORK", "/tmp/spaceport-bench-train"))
MALLOC_TUNED = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def scene_dir() -> Path:
    scene = WORK / "demo"
    if not (scene / "gt" / "sparse" / "0" / "points3D.txt").is_file():
        from spaceport.scenes import make_scene

        make_scene(scene, views=24, size=(640, 480), seed=0)
    return scene


def machine() -> str:
    import torch

    cpu = cpu_model()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"{cpu}, {os.cpu_count()} logical CPUs, load average {load:.1f} at start; GPU: {gpu}; "
            f"torch {torch.__version__}, Python {platform.python_version()}, {platform.system()} {platform.release()}")


# ---------------------------------------------------------------- worker: one training loop
def worker(renderer: str, steps: int, downscale: int, threads: int) -> dict:
    import numpy as np
    import torch

    from spaceport.stages.train import rasterize as R
    from spaceport.stages.train.config import config_for
    from spaceport.stages.train.data import load_model, load_views
    from spaceport.stages.train.gaussians import init_params
    from spaceport.stages.train.metrics import psnr, ssim

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    scene = scene_dir()
    model = load_model(scene / "gt" / "sparse" / "0")
    views = load_views(model, scene / "images", 8, downscale)
    train_v = [v for v in views if v.split == "train"]
    test_v = [v for v in views if v.split == "test"]
    cfg = config_for("fast", {"model_dir": "gt/sparse/0"})
    params = init_params(model.points.xyz, model.points.rgb, cfg.optim, torch.device("cpu"))
    opt = torch.optim.Adam([{"params": [p], "lr": lr} for p, lr in zip(
        params.values(), list(cfg.optim.learning_rates(5).values()),
        strict=True)], eps=1e-15)

    def render(view):
        vm = torch.as_tensor(view.world_to_camera, dtype=torch.float32)[None]
        K = torch.as_tensor(view.K, dtype=torch.float32)[None]
        args = (params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
                torch.cat([params["sh0"], params["shN"]], 1), vm, K, view.width, view.height)
        if renderer == "dense":
            return R.rasterization_dense(*args, sh_degree=1)[0][0]
        return R.rasterization_cpu(*args, sh_degree=1)[0][0]

    def step(i):
        v = train_v[i % len(train_v)]
        gt = torch.from_numpy(v.image)
        img = render(v)
        loss = 0.8 * (img - gt).abs().mean() + 0.2 * (1 - ssim(img, gt))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    with torch.no_grad():
        first = render(test_v[0]).numpy()
    np.save(WORK / f"first_{renderer}.npy", first)
    step(0)  # warm-up (allocator, first-touch pages)
    c0, w0 = time.process_time(), time.perf_counter()
    for i in range(1, steps):
        step(i)
    cpu_s = (time.process_time() - c0) / (steps - 1)
    wall_s = (time.perf_counter() - w0) / (steps - 1)
    with torch.no_grad():
        test_psnr = float(np.mean([psnr(render(v).clamp(0, 1), torch.from_numpy(v.image)) for v in test_v]))
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s_per_step": cpu_s, "wall_s_per_step": wall_s, "test_psnr": test_psnr,
            "gaussians": len(params["means"]), "size": f"{train_v[0].width}x{train_v[0].height}",
            "minor_faults_per_step": ru.ru_minflt / steps, "peak_rss_mb": ru.ru_maxrss / 1024}


def run_worker(renderer: str, steps: int, downscale: int, threads: int, tuned: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_TUNED}
    env["SPACEPORT_MALLOC_TUNE"] = "0"  # the env vars below are the only malloc setting in play
    if tuned:
        env.update(MALLOC_TUNED)
    out = subprocess.run([sys.executable, __file__, "--worker", renderer, "--steps", str(steps),
                          "--downscale", str(downscale), "--threads", str(threads)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def projection_bench(n: int = 200_000, reps: int = 5) -> dict:
    """Projection forward+backward: ours (elementwise + one GEMM) against gsplat's torch reference."""
    import torch
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    from spaceport.stages.train.rasterize import project

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    means = (torch.rand(n, 3, generator=g) - 0.5) * 4
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.05
    opac = torch.rand(n, generator=g)
    vm = torch.eye(4)
    vm[2, 3] = 5
    K = torch.tensor([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    ps = [t.requires_grad_(True) for t in (means, quats, scales)]

    def ours():
        _, m2, _, con, _ = project(means, quats, scales, opac, vm, K, 320, 240)
        (m2.sum() + con.sum()).backward()

    def ref():
        cov, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
        _, m2, _, con, _ = _fully_fused_projection(means, cov, vm[None], K[None], 320, 240)
        (m2.sum() + con.sum()).backward()

    result = {}
    for name, fn in (("ours", ours), ("gsplat_torch", ref)):
        fn()
        t = time.process_time()
        for _ in range(reps):
            fn()
        result[name] = (time.process_time() - t) / reps
        for p in ps:
            p.grad = None
    return result


def fast_preset_run() -> dict:
    """`spaceport train` with --preset fast on the demo scene, as a user runs it."""
    import resource

    from spaceport.core.summaries import TrainMetrics, read_summary

    out = WORK / "fast"
    t = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = subprocess.run([sys.executable, "-m", "spaceport", "train", str(scene_dir()), "--out", str(out),
                          "--preset", "fast", "--model-dir", "gt/sparse/0"], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    metrics = read_summary(TrainMetrics, out / "metrics.json")
    final = run.stdout.strip().splitlines()[-1]
    return {"wall_s": wall, "cpu_s": cpu, "metrics": metrics, "final_line": final}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=["ours", "dense"])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--downscale", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "train.md")
    ap.add_argument("--skip-fast", action="store_true")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.downscale, args.threads)))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    scene_dir()
    desc = machine()
    runs = [
        ("ours: tiles + fused compositing, 1 thread, malloc tuned", "ours", 1, True),
        ("ours, 1 thread, glibc default malloc", "ours", 1, False),
        ("ours, 2 threads, malloc tuned", "ours", 2, True),
        ("reference: gsplat torch projection + dense compositing, 1 thread, malloc tuned", "dense", 1, True),
    ]
    results = {}
    for label, renderer, threads, tuned in runs:
        results[label] = run_worker(renderer, args.steps, args.downscale, threads, tuned)
        print(label, results[label], flush=True)
    import numpy as np

    diff = float(np.abs(np.load(WORK / "first_ours.npy") - np.load(WORK / "first_dense.npy")).max())
    ref = results[runs[-1][0]]
    proj = projection_bench()
    lines = [
        "# Training stage benchmark (bench/train.py)", "",
        f"Machine: {desc}.", "",
        f"## CPU rasterizer vs the straightforward reference ({args.steps} steps, same loop, "
        f"{ref['size']} px, {ref['gaussians']} Gaussians, SH degree 1)", "",
        f"Identical images: max |ours - reference| on the first held-out render = {diff:.2e}.", "",
        "| path | CPU s/step | wall s/step | speed-up (CPU) | held-out PSNR (dB) | minor faults/step | peak RSS MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, *_ in runs:
        r = results[label]
        lines.append(f"| {label} | {r['cpu_s_per_step']:.3f} | {r['wall_s_per_step']:.3f} | "
                     f"{ref['cpu_s_per_step'] / r['cpu_s_per_step']:.1f}x | {r['test_psnr']:.2f} | "
                     f"{r['minor_faults_per_step']:.0f} | {r['peak_rss_mb']:.0f} |")
    lines += ["", "## Projection alone (200k Gaussians, means2d + conics, forward + backward, 1 thread)", "",
              "| projection | CPU s | speed-up |", "|---|---|---|",
              f"| ours (elementwise + one GEMM) | {proj['ours']:.3f} | {proj['gsplat_torch'] / proj['ours']:.1f}x |",
              f"| gsplat `_fully_fused_projection` (batched einsum) | {proj['gsplat_torch']:.3f} | 1.0x |"]
    if not args.skip_fast:
        fast = fast_preset_run()
        m = fast["metrics"]
        lines += ["", "## `spaceport train --preset fast` on the demo scene (24 views 640x480, downscale 4)", "",
                  "| process wall s | process CPU s | stage seconds | steps | s/step | held-out PSNR | SSIM | Gaussians "
                  "| peak RSS MiB |",
                  "|---|---|---|---|---|---|---|---|---|",
                  f"| {fast['wall_s']:.1f} | {fast['cpu_s']:.1f} | {m.seconds['total']:.1f} | {m.steps} | {m.seconds_per_step:.3f} | "
                  f"{m.test_psnr:.2f} | {m.test_ssim:.3f} | {m.num_gaussians} | {m.peak_memory_mb:.0f} |",
                  "", f"Final line: `{fast['final_line']}`"]
    lines += ["", "## GPU", "", "The GPU comparison (our stage vs a plain gsplat loop, MCMC) is bench/gpu/run.sh; results in "
              "bench/results/gpu.md."]
    lines += ["", "CPU and wall times are per step after one warm-up step; the machine is shared, so wall "
              "times include waiting for a core (CPU times do not).", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
