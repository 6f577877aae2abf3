"""The training loop: sparse points -> Gaussians -> gsplat strategy + Adam -> splat.ply and metrics.json.

Reads top to bottom: load views, initialise, (resume), optimise, evaluate, export. Units: steps are
images seen; times in seconds; PSNR in dB; memory in MiB.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spaceport import progress
from spaceport.errors import ConfigInvalid, GpuKernelFailed, OutOfMemory, TrainingDiverged
from spaceport.files import atomic_path
from spaceport.splat import SH_C0, Splat, write_ply
from spaceport.summaries import TrainMetrics, write_summary
from spaceport.train.config import TrainConfig
from spaceport.train.data import View, cameras_json, load_model, load_views
from spaceport.train.metrics import psnr, ssim
from spaceport.train.rasterize import rasterization, tune_malloc

STAGE = "train"
CHECKPOINT = "checkpoint.pt"
#: A fixed-step CPU run longer than this prints its calibrated estimate and the budget option first.
ESTIMATE_ABOVE_STEPS = 1000
LPIPS_NOTE = "not computed: LPIPS needs pretrained network weights, which are not available offline at run time"


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigInvalid("device=cuda but no CUDA GPU is available", "Use device=auto or cpu")
        return torch.device("cuda")
    if cfg.strategy == "mcmc":
        raise ConfigInvalid("strategy=mcmc needs a CUDA GPU (gsplat's relocation kernel)",
                            "Use strategy=default (or the 'fast'/'default' preset) on CPU")
    return torch.device("cpu")


def knn_scale(xyz: np.ndarray) -> np.ndarray:
    """Mean distance of each point to its 3 nearest neighbours (the usual 3DGS initial size)."""
    from scipy.spatial import cKDTree

    if len(xyz) < 2:
        return np.full(len(xyz), 0.01)
    k = min(4, len(xyz))
    dist, _ = cKDTree(xyz).query(xyz, k=k)
    d = dist[:, 1:].mean(1)
    return np.maximum(d, 1e-7)


def sky_points(n: int, centre: np.ndarray, radius: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points spread evenly (Fibonacci) on a sphere around the scene, mid-grey: SfM never
    triangulates the sky or far background, so without these the splat has nothing to paint it with."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5**0.5) * i + np.random.default_rng(seed).uniform(0, 2 * np.pi)
    r = np.sqrt(1 - z * z)
    xyz = centre + radius * np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)
    return xyz, np.full((n, 3), 128, dtype=np.uint8)


def init_params(points_xyz: np.ndarray, points_rgb: np.ndarray, cfg: TrainConfig,
                device: torch.device) -> torch.nn.ParameterDict:
    """Gaussians at the sparse points: isotropic, kNN-sized, coloured by the points, low opacity."""
    n = len(points_xyz)
    scales = np.log(knn_scale(points_xyz) * cfg.init_scale)[:, None].repeat(3, 1)
    quats = np.zeros((n, 4))
    quats[:, 0] = 1.0
    sh0 = (points_rgb / 255.0 - 0.5) / SH_C0
    k = (cfg.sh_degree + 1) ** 2 - 1
    t = {
        "means": points_xyz, "scales": scales, "quats": quats,
        "opacities": np.full(n, math.log(cfg.init_opacity / (1 - cfg.init_opacity))),
        "sh0": sh0[:, None, :], "shN": np.zeros((n, k, 3)),
    }
    return torch.nn.ParameterDict(
        {name: torch.nn.Parameter(torch.as_tensor(v, dtype=torch.float32, device=device)) for name, v in t.items()})


def make_optimizers(params: torch.nn.ParameterDict, cfg: TrainConfig, scene_scale: float,
                    ) -> dict[str, torch.optim.Optimizer]:
    lrs = {"means": cfg.means_lr * scene_scale, "scales": cfg.scales_lr, "quats": cfg.quats_lr,
           "opacities": cfg.opacities_lr, "sh0": cfg.sh0_lr, "shN": cfg.shN_lr}
    # eps 1e-15 as gsplat's simple_trainer: the gradients of tiny Gaussians are tiny too. Fused on CUDA (one
    # kernel per parameter instead of several, as simple_trainer); the CPU path keeps torch's default.
    return {name: torch.optim.Adam([{"params": params[name], "lr": lr, "name": name}], eps=1e-15,
                                   fused=params[name].is_cuda or None)
            for name, lr in lrs.items()}


def make_strategy(cfg: TrainConfig) -> Any:
    from gsplat.strategy import DefaultStrategy, MCMCStrategy

    if cfg.strategy == "mcmc":
        return MCMCStrategy(cap_max=cfg.max_gaussians, refine_start_iter=cfg.refine_start,
                            refine_stop_iter=cfg.refine_stop, refine_every=cfg.refine_every)
    return DefaultStrategy(refine_start_iter=cfg.refine_start, refine_stop_iter=cfg.refine_stop,
                           refine_every=cfg.refine_every, reset_every=cfg.reset_every or 10**9,
                           grow_grad2d=cfg.grow_grad2d)


def render(params: torch.nn.ParameterDict, view: View, sh_degree: int, background: torch.Tensor,
           ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Render ``params`` from ``view``: ``[H, W, 3]`` and gsplat's info dict."""
    device = params["means"].device
    viewmat = torch.as_tensor(view.world_to_camera, dtype=torch.float32, device=device)[None]
    K = torch.as_tensor(view.K, dtype=torch.float32, device=device)[None]
    colors = torch.cat([params["sh0"], params["shN"]], 1)
    img, _, info = rasterization(
        params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
        colors, viewmat, K, view.width, view.height, sh_degree=sh_degree, backgrounds=background[None])
    return img[0], info


def to_splat(params: torch.nn.ParameterDict) -> Splat:
    p = {k: v.detach().float().cpu().numpy() for k, v in params.items()}
    return Splat(p["means"], p["scales"], p["quats"], p["opacities"], p["sh0"][:, 0, :], p["shN"])


def check_finite(params: torch.nn.ParameterDict, step: int, what: str = "the Gaussians") -> None:
    for name, p in params.items():
        if not torch.isfinite(p).all():
            raise TrainingDiverged(f"{what} became NaN/Inf ({name}) at step {step}; no splat was written",
                                   step=step, parameter=name)


def _is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def _oom(exc: BaseException, cfg: TrainConfig, n: int) -> OutOfMemory:
    return OutOfMemory(
        f"Ran out of memory with {n} Gaussians at {cfg.downscale}x downscale ({type(exc).__name__})",
        f"Lower max_gaussians (now {cfg.max_gaussians}) or raise downscale (now {cfg.downscale}), "
        "or use an instance with more memory", gaussians=n)


def _is_cuda_error(exc: BaseException) -> bool:
    """A failed CUDA call or kernel (torch raises AcceleratorError/RuntimeError "CUDA error: ...")."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("CUDA error" in text or "CUDA kernel errors" in text)


def _cuda_failure(exc: BaseException, step: int, phase: str) -> GpuKernelFailed:
    """The typed error for a CUDA failure: which step, and which kernel (the innermost gsplat call on
    the stack, else the loop phase; CUDA errors surface at the next launch or sync)."""
    kernel = phase
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        module = frame.f_globals.get("__name__", "")
        if module.split(".")[0] == "gsplat":
            kernel = f"{module}.{frame.f_code.co_qualname}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return GpuKernelFailed(f"CUDA failed at training step {step} in {kernel} ({phase}): {first}",
                           step=step, kernel=kernel, phase=phase)


def _save_checkpoint(path: Path, step: int, params, optimizers, strategy_state, gen, order, cfg, elapsed,
                     history: list[dict]) -> None:
    data = {
        "step": step, "order": list(order), "config": asdict(cfg), "seconds": elapsed, "history": list(history),
        "params": {k: v.detach().cpu() for k, v in params.items()},
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "strategy_state": {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in strategy_state.items()},
        "rng": torch.get_rng_state(), "gen": gen.get_state(),
    }
    with atomic_path(path) as tmp:  # a spot interruption never leaves half a checkpoint
        torch.save(data, tmp)


def _resumable(cfg: TrainConfig, saved: dict) -> bool:
    """A checkpoint is reused only if it was made with the same options (the step count may differ)."""
    now = asdict(cfg)
    return {k: v for k, v in saved.items() if k != "steps"} == {k: v for k, v in now.items() if k != "steps"}


def evaluate(params, views: list[View], sh_degree: int, background: torch.Tensor,
             ) -> tuple[float, float, list[tuple[View, np.ndarray]]]:
    """Mean PSNR and SSIM over ``views`` (rendered images returned too)."""
    ps, ss, renders = [], [], []
    with torch.no_grad():
        for v in views:
            img, _ = render(params, v, sh_degree, background)
            img = img.clamp(0, 1).cpu()
            gt = torch.from_numpy(v.image)
            ps.append(psnr(img, gt))
            ss.append(float(ssim(img, gt)))
            renders.append((v, img.numpy()))
    return float(np.mean(ps)), float(np.mean(ss)), renders


def train(input_dir: Path, out_dir: Path, cfg: TrainConfig, checkpoint_dir: Path | None = None,
          stop_after: int | None = None) -> dict[str, Any]:
    """Train a splat from ``input_dir`` (sparse model + images) into ``out_dir``; returns metrics.json's dict.

    ``checkpoint_dir`` enables resume: a checkpoint made with the same options is loaded and
    training continues from its step. ``stop_after`` ends the run after that step without
    exporting (as if the machine were interrupted), for tests.
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    device = _device(cfg)
    malloc_tuned = tune_malloc() if device.type == "cpu" else False
    if device.type == "cpu" and cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)
    # A time budget: calibrate the step cost here, choose what fits, stop the loop at the deadline.
    budget_plan, deadline = None, None
    if cfg.minutes:
        from spaceport.train.calibrate import plan_budget

        cfg, budget_plan, _ = plan_budget(input_dir, cfg, device, t_start)
        deadline = t_start + cfg.minutes * 60.0 - budget_plan.tail_s
    elif device.type == "cpu" and cfg.steps > ESTIMATE_ABOVE_STEPS:
        from spaceport.train.calibrate import announce_estimate

        announce_estimate(input_dir, cfg, device)  # no silent multi-hour start
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    with progress.phase(STAGE, "load", timings):
        model = load_model(input_dir / cfg.model_dir)
        views = load_views(model, input_dir / cfg.images_dir, cfg.test_every, cfg.downscale)
    train_views = [v for v in views if v.split == "train"]
    test_views = [v for v in views if v.split == "test"] or train_views
    centres = np.stack([np.linalg.inv(v.world_to_camera)[:3, 3] for v in views])
    scene_scale = float(np.linalg.norm(centres - centres.mean(0), axis=1).max() * 1.1) or 1.0

    xyz, rgb = model.points.xyz, model.points.rgb
    finite = np.isfinite(xyz).all(1)
    xyz, rgb = xyz[finite], rgb[finite]
    if cfg.sky_points:
        # a shell well outside both the cameras and the triangulated points
        centre = centres.mean(0)
        reach = max(scene_scale, float(np.percentile(np.linalg.norm(xyz - centre, axis=1), 95)))
        sky_xyz, sky_rgb = sky_points(cfg.sky_points, centre, 3.0 * reach, cfg.seed)
        xyz, rgb = np.concatenate([xyz, sky_xyz]), np.concatenate([rgb, sky_rgb])
    if len(xyz) > cfg.max_gaussians:  # start under the cap: keep an even subsample
        keep = np.random.default_rng(cfg.seed).choice(len(xyz), cfg.max_gaussians, replace=False)
        xyz, rgb = xyz[np.sort(keep)], rgb[np.sort(keep)]
    params = init_params(xyz, rgb, cfg, device)
    optimizers = make_optimizers(params, cfg, scene_scale)
    strategy = make_strategy(cfg)
    strategy.check_sanity(params, optimizers)
    strategy_state = (strategy.initialize_state(scene_scale=scene_scale) if cfg.strategy == "default"
                      else strategy.initialize_state())
    gen = torch.Generator().manual_seed(cfg.seed)  # image order
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    start_step, prior_seconds, resumed_order = 0, 0.0, []
    history: list[dict] = []  # metrics.json's curve: every progress line, kept across a resume
    ckpt_path = checkpoint_dir / CHECKPOINT if checkpoint_dir else None
    if ckpt_path and ckpt_path.is_file():
        saved = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if _resumable(cfg, saved["config"]):
            for k, v in saved["params"].items():
                params[k] = torch.nn.Parameter(v.to(device))
            optimizers = make_optimizers(params, cfg, scene_scale)
            for k, o in optimizers.items():
                o.load_state_dict(saved["optimizers"][k])
            strategy_state = {k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                              for k, v in saved["strategy_state"].items()}
            torch.set_rng_state(saved["rng"])
            gen.set_state(saved["gen"])
            start_step, prior_seconds = int(saved["step"]), float(saved["seconds"])
            resumed_order = saved["order"]
            history = list(saved.get("history", []))
            progress.emit(STAGE, phase="resume", step=start_step)
        else:
            progress.emit(STAGE, phase="resume", skipped="options_differ")

    gamma = 0.01 ** (1.0 / cfg.steps)  # positions' learning rate decays to 1% at the last step
    means_lr0 = cfg.means_lr * scene_scale
    eval_bg = torch.full((3,), 1.0 if cfg.background == "white" else 0.0, device=device)
    images = {v.name: torch.from_numpy(v.image).to(device) for v in train_views}
    order: list[int] = list(resumed_order)  # the epoch in progress (image indices still to visit)

    last_psnr, loss_v, step = float("nan"), float("nan"), start_step
    stopped_early, phase = False, "start"
    t_loop = time.perf_counter()
    t_log, step_log = t_loop, start_step  # the rate since the last progress line feeds the ETA
    try:
        for step in range(start_step, cfg.steps):
            if not order:
                order = torch.randperm(len(train_views), generator=gen).tolist()
            view = train_views[order.pop(0)]
            gt = images[view.name]
            sh_now = min(step // cfg.sh_degree_interval, cfg.sh_degree)
            bg = eval_bg
            for group in optimizers["means"].param_groups:
                group["lr"] = means_lr0 * gamma**step

            phase = "rasterize"  # what the step is doing, for a CUDA failure's record
            img, info = render(params, view, sh_now, bg)
            l1 = torch.abs(img - gt).mean()
            loss = (1 - cfg.ssim_lambda) * l1 + cfg.ssim_lambda * (1 - ssim(img, gt))
            if cfg.opacity_reg:
                loss = loss + cfg.opacity_reg * torch.sigmoid(params["opacities"]).mean()
            if cfg.scale_reg:
                loss = loss + cfg.scale_reg * torch.exp(params["scales"]).mean()
            strategy.step_pre_backward(params, optimizers, strategy_state, step, info)
            phase = "backward"
            loss.backward()
            loss_v = float(loss.detach())  # the step's one host sync, after backward as in gsplat's simple_trainer
            if not math.isfinite(loss_v):
                raise TrainingDiverged(f"The loss became {loss_v} at step {step + 1}; no splat was written",
                                       step=step + 1)
            # DefaultStrategy reads the screen-space gradient (nothing visible from this view: none); MCMC never
            # retains it, and reading .grad of that non-leaf only draws a warning (seen on the GPU run)
            if cfg.strategy == "default" and info["means2d"].grad is None:
                info["means2d"].grad = torch.zeros_like(info["means2d"])
            phase = "optimizer"
            for opt in optimizers.values():
                opt.step()
                opt.zero_grad(set_to_none=True)
            phase = "densify"
            if cfg.strategy == "mcmc":
                strategy.step_post_backward(params, optimizers, strategy_state, step, info,
                                            lr=means_lr0 * gamma**step)
            else:
                strategy.step_post_backward(params, optimizers, strategy_state, step, info, packed=False)
                _enforce_cap(params, optimizers, strategy_state, cfg.max_gaussians)
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                last_psnr = psnr(img.detach(), gt)
                now = time.perf_counter()
                rate = (now - t_log) / max(1, done - step_log)
                t_log, step_log = now, done
                point = {"step": done, "loss": round(loss_v, 5), "psnr": round(last_psnr, 3),
                         "num_gaussians": len(params["means"])}
                history.append(point)
                eta = rate * (cfg.steps - done)
                if budget_plan is not None and deadline is not None:
                    eta = min(eta * budget_plan.growth_ahead(done, len(params["means"])), deadline - now)
                    eta += budget_plan.tail_s
                progress.emit(STAGE, **point, eta_s=round(max(0.0, eta), 1))
            if cfg.target_psnr is not None and done % cfg.eval_every == 0 and done < cfg.steps:
                test_psnr, _, _ = evaluate(params, test_views, min(done // cfg.sh_degree_interval, cfg.sh_degree),
                                           eval_bg)
                history.append({"step": done, "test_psnr": round(test_psnr, 3)})
                progress.emit(STAGE, **history[-1])
                if test_psnr >= cfg.target_psnr:
                    stopped_early = True
                    step += 1
                    break
            if ckpt_path and cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.steps:
                check_finite(params, done)
                _save_checkpoint(ckpt_path, done, params, optimizers, strategy_state, gen, order, cfg,
                                 prior_seconds + time.perf_counter() - t_start, history)
            if stop_after is not None and done >= stop_after:
                return {"interrupted_at": done}
            if deadline is not None and done < cfg.steps and time.perf_counter() >= deadline:
                stopped_early = True  # out of time: evaluate and export what there is
                progress.emit(STAGE, phase="deadline", step=done, minutes=cfg.minutes)
                step += 1
                break
        else:
            step = cfg.steps
    except (RuntimeError, MemoryError) as exc:
        if _is_oom(exc):
            raise _oom(exc, cfg, len(params["means"])) from exc
        if _is_cuda_error(exc):
            raise _cuda_failure(exc, step + 1, phase) from exc
        raise
    timings["optimise"] = round(time.perf_counter() - t_loop, 3)
    check_finite(params, step)

    with progress.phase(STAGE, "evaluate", timings):
        sh_final = min(step // cfg.sh_degree_interval, cfg.sh_degree) if stopped_early else cfg.sh_degree
        test_psnr, test_ssim, renders = evaluate(params, test_views, sh_final, eval_bg)
        train_psnr, _, _ = evaluate(params, train_views[:8], sh_final, eval_bg)
    if not math.isfinite(test_psnr):
        raise TrainingDiverged(f"The held-out renders are not finite at step {step}; no splat was written")

    with progress.phase(STAGE, "export", timings):
        out_dir.mkdir(parents=True, exist_ok=True)
        splat = to_splat(params)
        if sh_final < cfg.sh_degree:
            splat = splat.with_sh_degree(sh_final)
        ply_bytes = write_ply(splat, out_dir / "splat.ply")
        (out_dir / "cameras.json").write_text(json.dumps(cameras_json(views), indent=1))
        _write_renders(out_dir / "renders", renders)

    seconds = round(prior_seconds + time.perf_counter() - t_start, 3)
    metrics = {
        "test_psnr": round(test_psnr, 4), "test_ssim": round(test_ssim, 5), "lpips": None, "lpips_note": LPIPS_NOTE,
        "train_psnr": round(train_psnr, 4), "num_gaussians": len(splat), "steps": step,
        "stopped_early": stopped_early, "target_psnr": cfg.target_psnr, "sh_degree": splat.sh_degree,
        "held_out": [v.name for v in views if v.split == "test"] if cfg.test_every else [],
        "evaluated_on": "test" if cfg.test_every else "train (no images held out: test_every=0)",
        "train_images": len(train_views), "width": views[0].width, "height": views[0].height,
        "splat_bytes": ply_bytes, "device": device.type, "strategy": cfg.strategy,
        "resumed_from_step": start_step or None, "malloc_tuned": malloc_tuned,
        "budget": None if budget_plan is None else {
            "minutes": cfg.minutes, "expected_s": round(budget_plan.expected_s, 1), "planned_steps": cfg.steps,
            "stopped_at_deadline": stopped_early and cfg.target_psnr is None},
        "seconds": {**timings, "total": seconds}, "seconds_per_step": round(timings["optimise"] / max(1, step - start_step), 4),
        "peak_memory_mb": round(progress.peak_rss_mb(), 1),
        "peak_cuda_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None,
        "config": asdict(cfg),
        "history": history,
    }
    write_summary(TrainMetrics.model_validate(metrics), out_dir)
    if ckpt_path and ckpt_path.is_file():
        ckpt_path.unlink()  # finished: a later run with the same options starts afresh
    if checkpoint_dir and checkpoint_dir.parent == out_dir and checkpoint_dir.is_dir() and not any(
            checkpoint_dir.iterdir()):
        checkpoint_dir.rmdir()  # the local default (OUT/checkpoints) leaves no empty folder behind
    progress.emit(STAGE, final=1, test_psnr=round(test_psnr, 3), test_ssim=round(test_ssim, 4),
                  num_gaussians=len(splat), seconds=seconds)
    return metrics


def _enforce_cap(params, optimizers, state, cap: int) -> None:
    """Keep at most ``cap`` Gaussians by removing the most transparent ones (DefaultStrategy has no cap)."""
    n = len(params["means"])
    if n <= cap:
        return
    from gsplat.strategy.ops import remove

    with torch.no_grad():
        order = torch.argsort(params["opacities"].detach(), stable=True)
        mask = torch.zeros(n, dtype=torch.bool, device=params["means"].device)
        mask[order[: n - cap]] = True
    remove(params, optimizers, state, mask)


def _write_renders(folder: Path, renders: list[tuple[View, np.ndarray]]) -> None:
    """``<stem>_render.png`` beside ``<stem>_gt.png`` for every held-out view."""
    from PIL import Image as PILImage

    folder.mkdir(parents=True, exist_ok=True)
    for view, img in renders:
        stem = Path(view.name).with_suffix("").as_posix().replace("/", "_")
        PILImage.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).save(folder / f"{stem}_render.png")
        PILImage.fromarray((view.image * 255 + 0.5).astype(np.uint8)).save(folder / f"{stem}_gt.png")
