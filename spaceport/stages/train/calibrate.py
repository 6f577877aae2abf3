"""Time a few real training steps of this capture on this machine: the numbers a budget rests on.

At each candidate resolution (:func:`spaceport.stages.train.budget.downscales`) the Gaussians made from
the sparse points take ``STEPS`` timed optimisation steps (render, L1 + D-SSIM loss, backward,
Adam) after one untimed warm-up, then ``GROWTH`` times as many Gaussians shaped like a trained
splat's (:func:`_grown`, :data:`REFINED_SHRINK`, :data:`REFINED_OPACITY`): two points of the line
``seconds = fixed + per_gaussian * N``. Nothing is kept: the probes train throw-away copies.
Finer resolutions are skipped once the calibration has used ``MAX_SHARE`` of the budget, or once
their pixels need more Gaussians than the plan would give
(:func:`spaceport.stages.train.budget.gaussians_for`). On the CPU the first probe also times one
thread against all of them and keeps the faster (a budgeted run is timing-dependent anyway, so it
gives up the one-thread bit-for-bit reproducibility that fixed-step runs keep).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from spaceport.local import progress
from spaceport.stages.train import budget
from spaceport.stages.train.config import TrainConfig

STEPS = 3
GROWTH = 4
#: Share of the budget calibration may take before it stops trying finer resolutions.
MAX_SHARE = 0.06
#: The grown probe's Gaussians are this many times smaller than their spacing gives, and this opaque:
#: what a step costs depends on how many pixels each Gaussian covers and how soon a pixel's
#: transmittance runs out, and a trained splat's Gaussians are flatter and more decisive than fresh
#: ones. Fitted to six trained splats (monstree, fountain-P11, herzjesu-P8 and the demo at 149-199 px,
#: monstree and fountain at 298-398 px; 55-60k Gaussians): the line through such a probe predicted
#: each splat's step cost at 0.85-1.18x the measured, where fresh copies (their spacing's size, the
#: initial opacity) predicted 1.44-2.46x (bench/results/train_budget.md).
REFINED_SHRINK = 1.5
REFINED_OPACITY = 0.6


def _points(model, cfg: TrainConfig, views) -> tuple[np.ndarray, np.ndarray]:
    """The points training starts from (the trainer's own rule: sparse points, sky, under the cap)."""
    from spaceport.stages.train.gaussians import initial_points

    centres = np.stack([np.linalg.inv(v.world_to_camera)[:3, 3] for v in views])
    scale = float(np.linalg.norm(centres - centres.mean(0), axis=1).max() * 1.1) or 1.0
    return initial_points(model.points.xyz, model.points.rgb, centres, scale, sky=cfg.optim.sky_points,
                          cap=cfg.densify.max_gaussians, seed=cfg.runtime.seed)


def _grown(xyz: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``GROWTH`` times as many points, as refinement makes them: each point's copies drawn around it
    within its own size (the distance to its nearest points), so the Gaussians made from them are
    smaller and overlap as a refined splat's do. (Copies stacked in place would be GROWTH-fold opaque
    stacks that stop each pixel early: the compositor's early termination made such a probe cheaper
    than the one it grew from, and the plan took Gaussians for free.)"""
    from spaceport.stages.train.gaussians import knn_scale

    spread = knn_scale(xyz)[:, None]
    return np.concatenate([xyz + rng.normal(size=xyz.shape) * spread for _ in range(GROWTH)])


def _time_steps(xyz, rgb, views, cfg: TrainConfig, device: torch.device, refined: bool = False) -> float:
    """Median wall seconds of one optimisation step (:func:`time_params`) of Gaussians at the points; ``refined``:
    Gaussians shaped like a trained splat's instead of fresh ones."""
    from spaceport.stages.train.gaussians import init_params

    params = init_params(xyz, rgb, cfg.optim, device)
    if refined:
        with torch.no_grad():
            params["scales"] -= math.log(REFINED_SHRINK)
            params["opacities"].fill_(math.log(REFINED_OPACITY / (1 - REFINED_OPACITY)))
    return time_params(params, views, cfg, device)


def time_params(params, views, cfg: TrainConfig, device: torch.device, steps: int = STEPS) -> float:
    """Median wall seconds of one optimisation step of ``params`` (render, L1 + D-SSIM, backward, Adam)
    over ``steps`` steps after an untimed warm-up, at most SH degree 1 (what the budget's runs start with)."""
    from spaceport.stages.train.gaussians import make_optimizers, render
    from spaceport.stages.train.metrics import ssim

    optimizers = make_optimizers(params, cfg.optim, 1.0)
    bg = torch.zeros(3, device=device)
    sh = min(1, cfg.optim.sh_degree)
    lam = cfg.optim.ssim_lambda
    times = []
    for i in range(steps + 1):
        view = views[i % len(views)]
        gt = torch.from_numpy(view.image).to(device)
        t = time.perf_counter()
        img, _ = render(params, view, sh, bg, cfg.optim.antialiased)
        loss = (1 - lam) * torch.abs(img - gt).mean() + lam * (1 - ssim(img, gt))
        loss.backward()
        float(loss.detach())
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def pick_threads(xyz, rgb, views, cfg: TrainConfig) -> int:
    """1 or all of this machine's CPU threads, whichever trains a step faster here and now: on an idle
    machine two threads are ~1.5x faster, on a busy one a single thread is (OpenMP threads spin while
    they wait for a core). Leaves torch set to the choice."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if available < 2:
        torch.set_num_threads(1)
        return 1
    timed = {}
    for n in (1, available):
        torch.set_num_threads(n)
        timed[n] = _time_steps(xyz, rgb, views, cfg, torch.device("cpu"))
    best = min(timed, key=timed.__getitem__)
    torch.set_num_threads(best)
    progress.emit("train", phase="calibrate", threads=best, **{f"step_s_{n}_threads": round(t, 4) for n, t in timed.items()})
    return best


def calibrate(input_dir: Path, cfg: TrainConfig, budget_s: float, device: torch.device,
              ) -> tuple[list[budget.Probe], budget.Capture, int]:
    """Probe each candidate resolution (coarsest first) until calibration has used its share; on the
    CPU, first pick the thread count (returned; 0 on CUDA)."""
    from spaceport.stages.train.data import load_model, load_views

    start = time.perf_counter()
    model = load_model(Path(input_dir) / cfg.data.model_dir)
    cam = next(iter(model.cameras.values()))
    probes: list[budget.Probe] = []
    capture = None
    rng = np.random.default_rng(cfg.runtime.seed)
    threads = 0
    for ds in budget.downscales(cam.width, cam.height):
        if probes and time.perf_counter() - start > MAX_SHARE * budget_s:
            break
        if capture is not None and budget.gaussians_for(cam.width // ds, cam.height // ds, capture) is None:
            break  # too many pixels for the Gaussians its photos constrain: choose() would not train there
        t_load = time.perf_counter()
        views = load_views(model, Path(input_dir) / cfg.data.images_dir, cfg.data.test_every, ds)
        load_s = time.perf_counter() - t_load
        train_views = [v for v in views if v.split == "train"] or views
        xyz, rgb = _points(model, cfg, views)
        if capture is None:
            capture = budget.Capture(train_images=len(train_views), test_images=len(views) - len(train_views),
                                     start_gaussians=len(xyz))
            if device.type == "cpu" and cfg.runtime.cpu_threads != 0:
                threads = pick_threads(xyz, rgb, train_views, cfg)
        small = _time_steps(xyz, rgb, train_views, cfg, device)
        grown = _grown(xyz, rng)
        large = _time_steps(grown, np.concatenate([rgb] * GROWTH), train_views, cfg, device, refined=True)
        n0, n1 = len(xyz), len(grown)
        per = max(0.0, (large - small) / (n1 - n0))
        probe = budget.Probe(downscale=ds, width=views[0].width, height=views[0].height,
                             fixed_s=round(max(small - per * n0, 0.2 * small), 6), per_gaussian_s=per,
                             load_s=round(load_s, 3))
        probes.append(probe)
        progress.emit("train", phase="calibrate", downscale=ds, width=probe.width, height=probe.height,
                      step_s=round(small, 4), step_s_4x=round(large, 4), gaussians=n0)
    assert capture is not None
    return probes, capture, threads


def plan_budget(input_dir: Path, cfg: TrainConfig, device: torch.device, started: float,
                ) -> tuple[TrainConfig, budget.BudgetPlan]:
    """Calibrate, choose, and announce: the options that fit ``cfg.minutes`` and the plan they came from.

    ``started`` is the stage's ``time.perf_counter()`` at its start (the budget counts from there)."""
    from spaceport.core.config import from_strings

    budget_s = cfg.runtime.minutes * 60.0
    probes, capture, threads = calibrate(input_dir, cfg, budget_s, device)
    plan = budget.choose(budget_s, capture, probes, spent_s=time.perf_counter() - started)
    chosen = plan.options(cfg.optim.sh_degree)
    if threads:
        chosen["cpu_threads"] = str(threads)
    cfg = from_strings(TrainConfig, chosen, base=cfg)
    finish = time.strftime("%H:%M:%S", time.localtime(time.time() + plan.expected_s - plan.spent_s))
    progress.emit("train", phase="plan", minutes=cfg.runtime.minutes, downscale=plan.downscale, width=plan.width,
                  height=plan.height, steps=plan.steps, max_gaussians=plan.max_gaussians, epochs=plan.epochs,
                  **({"threads": threads} if threads else {}), **({"early": 1} if plan.finishes_early else {}),
                  expected_s=round(plan.expected_s, 1), finish_at=finish)
    return cfg, plan


def announce_estimate(input_dir: Path, cfg: TrainConfig, device: torch.device) -> float:
    """For a fixed-step run on the CPU: time its steps, print the expected duration and the budget
    option, and return the expected seconds of the loop."""
    from spaceport.stages.train.data import load_model, load_views

    model = load_model(Path(input_dir) / cfg.data.model_dir)
    views = load_views(model, Path(input_dir) / cfg.data.images_dir, cfg.data.test_every, cfg.data.downscale)
    train_views = [v for v in views if v.split == "train"] or views
    xyz, rgb = _points(model, cfg, views)
    small = _time_steps(xyz, rgb, train_views, cfg, device)
    big = _time_steps(_grown(xyz, np.random.default_rng(cfg.runtime.seed)), np.concatenate([rgb] * GROWTH),
                      train_views, cfg, device, refined=True)
    per = max(0.0, (big - small) / ((GROWTH - 1) * len(xyz)))
    probe = budget.Probe(cfg.data.downscale, views[0].width, views[0].height, max(small - per * len(xyz), 0.2 * small), per)
    capture = budget.Capture(len(train_views), len(views) - len(train_views), len(xyz))
    steps = cfg.optim.steps
    peak = min(cfg.densify.max_gaussians, budget.PEAK_GROWTH * len(xyz))
    expected = budget.estimate_s(steps, probe, capture, peak, min(cfg.densify.refine_stop, steps))
    progress.emit("train", phase="estimate", steps=steps, width=probe.width, height=probe.height,
                  expected_s=round(expected, 1), expected=budget.human(expected),
                  hint=f"fit_a_time_budget_with_--minutes_N_(default_on_CPU:_{budget.DEFAULT_CPU_MINUTES:g})")
    return expected
