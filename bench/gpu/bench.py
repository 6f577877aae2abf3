"""GPU proof (issue 14): our `default` preset against a plain gsplat loop on one real capture, then `quality` (MCMC).

    python bench/gpu/bench.py --scene SFM_OUTPUT --steps 3000 --out OUT [--deadline UNIX_TIME]
                              [--runs reference,default,quality] [--capture NAME] [--notes-json FILE]

SFM_OUTPUT is an SfM stage output (sparse/0 + images/). Every run trains the same images, split
(every 8th image held out) and number of steps at the images' own resolution and is scored by the same
code (spaceport.train.trainer.evaluate_views: mean held-out PSNR/SSIM at SH degree 3):

* ``reference``: bench/gpu/reference.py, gsplat's simple_trainer defaults in a plain loop;
* ``default``/``quality``: ``spaceport.train.trainer.train`` with that preset, only ``steps`` overridden.

Each run is its own process, so the CUDA allocator's peak counter, the caches and any crash belong to
that run alone. OUT/results.json and OUT/gpu.md are rewritten after every run, so a device call that
times out still returns the finished rows. A run that would not finish before --deadline (estimated as
1.25x the previous run's wall time) is skipped and marked so, never half-reported.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RUNS = ("reference", "default", "quality")
LABELS = {
    "reference": "plain gsplat loop (simple_trainer defaults)",
    "default": "spaceport train, `default` preset",
    "quality": "spaceport train, `quality` preset (MCMC)",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", type=Path, required=True, help="SfM output folder (sparse/0 + images/)")
    ap.add_argument("--model-dir", default="sparse/0")
    ap.add_argument("--images-dir", default="images")
    ap.add_argument("--capture", default=None, help="Name of the capture, for the table (default: the folder name)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--downscale", type=int, default=1, help="1 = the images' own resolution")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--runs", default=",".join(RUNS), help="Comma-separated, in order: " + ", ".join(RUNS))
    ap.add_argument("--out", type=Path, required=True, help="Where results.json and gpu.md go (nothing else)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/spaceport-bench-gpu"),
                    help="Scratch for the runs' splats and renders (kept out of --out)")
    ap.add_argument("--deadline", type=float, default=None, help="Unix time by which every run must be done")
    ap.add_argument("--notes-json", type=Path, default=None,
                    help="JSON object of extra facts for the header (compile seconds, test summary, driver)")
    ap.add_argument("--worker", choices=RUNS, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.run_list = [r.strip() for r in args.runs.split(",") if r.strip()]
    bad = [r for r in args.run_list if r not in RUNS]
    if bad or not args.run_list:
        ap.error(f"--runs: unknown run(s) {bad or args.runs!r}; choose from {', '.join(RUNS)}")
    if args.steps < 1 or args.downscale < 1:
        ap.error("--steps and --downscale must be at least 1")
    return args


def environment() -> dict[str, Any]:
    """Versions and device of this process (called in the workers, so the parent never touches CUDA)."""
    import platform

    import torch

    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version()}
    try:
        import gsplat

        env["gsplat"] = gsplat.__version__
    except ImportError:
        env["gsplat"] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), sm_count=p.multi_processor_count)
    return env


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One run in this process; the dict the table reads."""
    sys.path.insert(0, str(ROOT))
    if args.worker == "reference":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from reference import train_reference

        row = train_reference(args.scene, args.steps, model_dir=args.model_dir, images_dir=args.images_dir,
                              downscale=args.downscale, device=args.device)
    else:
        from spaceport.train.config import config_for
        from spaceport.train.trainer import train

        cfg = config_for(args.worker, {"steps": str(args.steps), "model_dir": args.model_dir,
                                       "images_dir": args.images_dir, "downscale": str(args.downscale),
                                       "device": args.device, "checkpoint_every": "0"})
        t = time.perf_counter()
        m = train(args.scene, args.work / args.worker, cfg).model_dump()
        seconds = m.get("seconds", {})
        row = {"run": args.worker, "steps": m["steps"], "test_psnr": m["test_psnr"], "test_ssim": m["test_ssim"],
               "num_gaussians": m["num_gaussians"], "loop_s": seconds.get("optimise"),
               "eval_s": seconds.get("evaluate"), "total_s": time.perf_counter() - t,
               "seconds_per_step": m.get("seconds_per_step"), "peak_cuda_memory_mb": m.get("peak_cuda_memory_mb"),
               "device": m["device"], "width": m["width"], "height": m["height"],
               "train_images": m["train_images"], "test_images": len(m.get("held_out") or []) or None}
    row["env"] = environment()
    return row


def _fmt(v: Any, spec: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def goals(rows: dict[str, dict]) -> list[str]:
    """The issue's goals, each with the measured numbers and met / missed (only where both runs finished)."""
    ref, ours, mcmc = rows.get("reference"), rows.get("default"), rows.get("quality")
    out = []
    if ref and ours and "test_psnr" in ref and "test_psnr" in ours:
        d = ours["test_psnr"] - ref["test_psnr"]
        t = ours["loop_s"] / ref["loop_s"]
        out.append(f"- `default` reaches the plain loop's held-out PSNR within 0.1 dB: {d:+.2f} dB -> "
                   f"{'met' if d >= -0.1 else 'missed'}.")
        out.append(f"- `default` in <= 1.0x the plain loop's training time (stretch 0.8x): {t:.2f}x -> "
                   f"{'met (stretch met)' if t <= 0.8 else 'met' if t <= 1.0 else 'missed'}.")
        if ours.get("peak_cuda_memory_mb") and ref.get("peak_cuda_memory_mb"):
            m = ours["peak_cuda_memory_mb"] / ref["peak_cuda_memory_mb"]
            out.append(f"- `default` peak GPU memory no higher than the plain loop's: {m:.2f}x -> "
                       f"{'met' if m <= 1.0 else 'missed'}.")
    if mcmc and ours and "test_psnr" in mcmc and "test_psnr" in ours:
        d = mcmc["test_psnr"] - ours["test_psnr"]
        out.append(f"- `quality` (MCMC) runs and beats `default`'s PSNR at equal steps: {d:+.2f} dB -> "
                   f"{'met' if d > 0 else 'missed'}.")
    return out or ["- No pair of finished runs to compare."]


def render_markdown(rows: dict[str, dict], order: list[str], capture: str, notes: dict[str, Any]) -> str:
    """bench/results/gpu.md: header (device, versions), one row per run, the goals, the notes."""
    done = [rows[r] for r in order if r in rows and "test_psnr" in rows[r]]
    env = done[0]["env"] if done else {}
    first = done[0] if done else {}
    ref = rows.get("reference") if rows.get("reference", {}).get("loop_s") else None
    lines = ["# GPU training benchmark (bench/gpu/run.sh)", ""]
    lines.append(f"Device: {env.get('gpu', 'no CUDA device')}"
                 + (f" ({env.get('gpu_memory_gib')} GiB, {env.get('sm_count')} SMs)" if env.get("gpu") else "")
                 + f"; torch {env.get('torch')}, CUDA {env.get('cuda')}, gsplat {env.get('gsplat')}, "
                   f"Python {env.get('python')}.")
    for key, value in notes.items():
        lines.append(f"{key}: {value}.")
    if first:
        lines += ["", f"Scene: `{capture}`, SfM output at {first['width']}x{first['height']} (no downscale), "
                      f"{first['train_images']} training / {first.get('test_images') or '?'} held-out images "
                      f"(every 8th), {first['steps']} steps per run, one image per step.", ""]
    lines += ["| run | steps | held-out PSNR (dB) | SSIM | Gaussians | train loop s | s/step | whole run s "
              "| peak GPU MiB | loop time vs plain | PSNR vs plain (dB) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in order:
        r = rows.get(name)
        if r is None:
            continue
        if "test_psnr" not in r:
            lines.append(f"| {LABELS[name]} | {r.get('status', 'not run')} |  |  |  |  |  |  |  |  |  |")
            continue
        vs_t = f"{r['loop_s'] / ref['loop_s']:.2f}x" if ref else "n/a"
        vs_p = f"{r['test_psnr'] - ref['test_psnr']:+.2f}" if ref else "n/a"
        lines.append(f"| {LABELS[name]} | {r['steps']} | {_fmt(r['test_psnr'], '.2f')} | {_fmt(r['test_ssim'], '.4f')} "
                     f"| {r['num_gaussians']} | {_fmt(r['loop_s'], '.1f')} | {_fmt(r['seconds_per_step'], '.4f')} "
                     f"| {_fmt(r['total_s'], '.1f')} | {_fmt(r['peak_cuda_memory_mb'], '.0f')} | {vs_t} | {vs_p} |")
    lines += ["", "Goals (issue 14):", "", *goals(rows), "",
              "Train loop s: the optimisation loop alone (wall clock, synchronised); whole run s: the process's "
              "call, including loading the images, the held-out evaluation and (ours) the export and a training-view "
              "evaluation. Peak GPU MiB: torch.cuda.max_memory_allocated from the start of the loop to the end of "
              "the evaluation. Held-out PSNR/SSIM: spaceport.train.metrics on the clamped renders, mean over the "
              "held-out images.", ""]
    return "\n".join(lines)


def run_all(args: argparse.Namespace) -> dict[str, dict]:
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    notes = json.loads(args.notes_json.read_text()) if args.notes_json and args.notes_json.is_file() else {}
    capture = args.capture or args.scene.name
    rows: dict[str, dict] = {}
    last_wall = None
    for name in args.run_list:
        remaining = args.deadline - time.time() if args.deadline else None
        if remaining is not None and remaining < max(30.0, 1.25 * (last_wall or 0.0)):
            rows[name] = {"run": name, "status": f"skipped: {remaining:.0f} s left before the deadline"}
        else:
            result = args.work / f"{name}.json"
            result.unlink(missing_ok=True)
            cmd = [sys.executable, __file__, "--worker", name, "--result", str(result), "--scene", str(args.scene),
                   "--model-dir", args.model_dir, "--images-dir", args.images_dir, "--steps", str(args.steps),
                   "--downscale", str(args.downscale), "--device", args.device, "--out", str(args.out),
                   "--work", str(args.work)]
            t = time.perf_counter()
            print(f"bench: {name} ({args.steps} steps) ...", flush=True)
            try:
                proc = subprocess.run(cmd, timeout=None if remaining is None else remaining - 5)
                ok = proc.returncode == 0 and result.is_file()
                rows[name] = json.loads(result.read_text()) if ok else {
                    "run": name, "status": f"failed (exit {proc.returncode}; see the log)"}
            except subprocess.TimeoutExpired:
                rows[name] = {"run": name, "status": "stopped at the deadline"}
            last_wall = time.perf_counter() - t
        print(f"bench: {name}: {json.dumps(rows[name])}", flush=True)
        (args.out / "results.json").write_text(json.dumps(rows, indent=1))
        (args.out / "gpu.md").write_text(render_markdown(rows, args.run_list, capture, notes))
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        row = worker(args)
        args.result.write_text(json.dumps(row))
        return
    run_all(args)
    print((args.out / "gpu.md").read_text())


if __name__ == "__main__":
    main()
