"""A plain gsplat training loop with gsplat's ``simple_trainer`` defaults: the peer our `default` preset is measured against.

Written after ``examples/simple_trainer.py`` of nerfstudio-project/gsplat (Apache-2.0, the 1.5.x
series; its ``Config`` defaults, ``create_splats_with_optimizers`` and ``Runner.train``), keeping
only what a default run does:

* Gaussians at the SfM points; log-scale = log of the root-mean-square distance to the 3 nearest
  points; quaternions uniform in [0, 1)^4 (``torch.rand``); opacity 0.1; SH band 0 from the point
  colours, higher bands 0; ``set_random_seed(42)``;
* one Adam per parameter (eps 1e-15, fused on CUDA) with lr means 1.6e-4 x scene scale, scales 5e-3,
  quats 1e-3, opacities 5e-2, sh0 2.5e-3, shN 2.5e-3/20; the positions' lr decays to 1% by the last
  step (``ExponentialLR``, stepped after the optimisers);
* ``DefaultStrategy()`` with its own defaults, ``packed=False``, classic rasterization, black
  background; one image per step, reshuffled every epoch; SH bands added every 1000 steps;
* loss = lerp(L1, 1 - SSIM, 0.2).

Left out (not part of a default run, or not available offline): the viewer, tensorboard,
checkpoints, trajectory videos, LPIPS. Two substitutions: ``fused_ssim`` (a separate CUDA package)
becomes :func:`spaceport.stages.train.metrics.ssim` (same 11x11 sigma-1.5 window, 'valid' padding), and the
world is not normalised (a similarity transform changes neither the images nor, with the means
learning rate scaled by the scene scale, the optimisation). The split, images and held-out metrics
are spaceport's (:func:`spaceport.stages.train.data.load_views`; :func:`spaceport.stages.train.metrics.psnr` and
``ssim`` on renders clamped to [0, 1], as the trainer scores its own), so both loops see the same
pixels and are scored by the same metrics. Progress lines (``stage=reference step=...``, the
trainer's format via :func:`spaceport.local.progress.emit`) let a run that is stopped early still say how
far it got.

On CPU it runs through spaceport's CPU rasterizer (for the toy-size test); on CUDA it calls
``gsplat.rasterization`` directly.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: simple_trainer's Config defaults that a default run uses (learning rates before the scene scale)
DEFAULTS: dict[str, Any] = {
    "sh_degree": 3, "sh_degree_interval": 1000, "init_opa": 0.1, "init_scale": 1.0, "ssim_lambda": 0.2,
    "near_plane": 0.01, "far_plane": 1e10, "means_lr": 1.6e-4, "scales_lr": 5e-3, "opacities_lr": 5e-2,
    "quats_lr": 1e-3, "sh0_lr": 2.5e-3, "shN_lr": 2.5e-3 / 20, "test_every": 8, "seed": 42,
}
STAGE = "reference"


def _rms_knn3(xyz: np.ndarray) -> np.ndarray:
    """Root-mean-square distance of each point to its 3 nearest neighbours (simple_trainer's init size)."""
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(xyz).query(xyz, k=4)
    return np.sqrt((dist[:, 1:] ** 2).mean(1))


def create_splats(xyz: np.ndarray, rgb: np.ndarray, scene_scale: float, device: torch.device,
                  ) -> tuple[torch.nn.ParameterDict, dict[str, torch.optim.Optimizer]]:
    """simple_trainer's ``create_splats_with_optimizers`` for ``init_type='sfm'`` and batch size 1."""
    from spaceport.geometry.splat import SH_C0

    d = DEFAULTS
    points = torch.from_numpy(np.asarray(xyz, dtype=np.float32))
    rgbs = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0)
    dist = torch.from_numpy(_rms_knn3(np.asarray(xyz, dtype=np.float64)).astype(np.float32))
    scales = torch.log(dist.clamp_min(1e-7) * d["init_scale"]).unsqueeze(-1).repeat(1, 3)
    n = len(points)
    quats = torch.rand((n, 4))
    opacities = torch.logit(torch.full((n,), d["init_opa"]))
    colors = torch.zeros((n, (d["sh_degree"] + 1) ** 2, 3))
    colors[:, 0, :] = (rgbs - 0.5) / SH_C0  # rgb_to_sh
    params = [("means", points, d["means_lr"] * scene_scale), ("scales", scales, d["scales_lr"]),
              ("quats", quats, d["quats_lr"]), ("opacities", opacities, d["opacities_lr"]),
              ("sh0", colors[:, :1, :], d["sh0_lr"]), ("shN", colors[:, 1:, :], d["shN_lr"])]
    splats = torch.nn.ParameterDict({name: torch.nn.Parameter(v) for name, v, _ in params}).to(device)
    fused = device.type == "cuda"
    optimizers = {name: torch.optim.Adam([{"params": splats[name], "lr": lr, "name": name}], eps=1e-15,
                                         betas=(0.9, 0.999), fused=fused)
                  for name, _, lr in params}
    return splats, optimizers


def evaluate_views(splats: torch.nn.ParameterDict, views: list, sh_degree: int, rasterization: Any,
                   raster_kwargs: dict[str, Any]) -> tuple[float, float]:
    """Mean PSNR and SSIM over ``views``: renders on black, clamped to [0, 1], against the images."""
    from spaceport.stages.train.metrics import psnr, ssim

    ps, ss = [], []
    dev = splats["means"].device
    with torch.no_grad():
        colors = torch.cat([splats["sh0"], splats["shN"]], 1)
        for v in views:
            viewmat = torch.as_tensor(v.world_to_camera, dtype=torch.float32, device=dev)[None]
            K = torch.as_tensor(v.K, dtype=torch.float32, device=dev)[None]
            img, _, _ = rasterization(
                splats["means"], splats["quats"], torch.exp(splats["scales"]), torch.sigmoid(splats["opacities"]),
                colors, viewmat, K, v.width, v.height, sh_degree=sh_degree, near_plane=DEFAULTS["near_plane"],
                far_plane=DEFAULTS["far_plane"], **raster_kwargs)
            img = img[0].clamp(0, 1).cpu()
            gt = torch.from_numpy(v.image)
            ps.append(psnr(img, gt))
            ss.append(float(ssim(img, gt)))
    return float(np.mean(ps)), float(np.mean(ss))


def train_reference(scene: Path, steps: int, *, seed: int = DEFAULTS["seed"], test_every: int = DEFAULTS["test_every"],
                    model_dir: str = "sparse/0", images_dir: str = "images", downscale: int = 1,
                    device: str = "auto", strategy_overrides: dict[str, Any] | None = None, log_every: int = 100,
                    ) -> dict[str, Any]:
    """Train ``steps`` steps with the plain loop; held-out PSNR/SSIM (spaceport's metrics), times, memory, count."""
    from gsplat.strategy import DefaultStrategy

    from spaceport.local import progress
    from spaceport.stages.train.data import load_model, load_views
    from spaceport.stages.train.metrics import ssim

    t_start = time.perf_counter()
    dev = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
    d = DEFAULTS
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if dev.type == "cpu":
        torch.set_num_threads(1)  # as spaceport's cpu_threads default: reproducible, and fastest on a shared machine
    if dev.type == "cuda":
        from gsplat import rasterization

        raster_kwargs: dict[str, Any] = {"packed": False, "absgrad": False, "sparse_grad": False,
                                         "rasterize_mode": "classic"}
    else:
        from spaceport.stages.train.rasterize import rasterization_cpu as rasterization

        raster_kwargs = {}

    model = load_model(scene / model_dir)
    views = load_views(model, scene / images_dir, test_every, downscale)
    train_v = [v for v in views if v.split == "train"]
    test_v = [v for v in views if v.split == "test"] or train_v
    # Parser.scene_scale: the largest camera distance from the cameras' mean; Runner multiplies by 1.1
    centres = np.stack([np.linalg.inv(v.world_to_camera)[:3, 3] for v in views])
    scene_scale = float(np.linalg.norm(centres - centres.mean(0), axis=1).max()) * 1.1
    xyz, rgb = model.points.xyz, model.points.rgb
    finite = np.isfinite(xyz).all(1)
    splats, optimizers = create_splats(xyz[finite], rgb[finite], scene_scale, dev)
    strategy = DefaultStrategy(**(strategy_overrides or {}))
    strategy.check_sanity(splats, optimizers)
    state = strategy.initialize_state(scene_scale=scene_scale)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizers["means"], gamma=0.01 ** (1.0 / steps))
    images = [torch.from_numpy(v.image).to(dev) for v in train_v]
    cams = [(torch.as_tensor(v.world_to_camera, dtype=torch.float32, device=dev)[None],
             torch.as_tensor(v.K, dtype=torch.float32, device=dev)[None]) for v in train_v]
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    order: list[int] = []
    t_loop = time.perf_counter()
    for step in range(steps):
        if not order:  # DataLoader(shuffle=True): a fresh permutation every epoch
            order = torch.randperm(len(train_v)).tolist()
        i = order.pop()
        viewmat, K = cams[i]
        pixels = images[i][None]
        sh_now = min(step // d["sh_degree_interval"], d["sh_degree"])
        renders, _, info = rasterization(
            splats["means"], splats["quats"], torch.exp(splats["scales"]), torch.sigmoid(splats["opacities"]),
            torch.cat([splats["sh0"], splats["shN"]], 1), viewmat, K, train_v[i].width, train_v[i].height,
            sh_degree=sh_now, near_plane=d["near_plane"], far_plane=d["far_plane"], **raster_kwargs)
        strategy.step_pre_backward(splats, optimizers, state, step, info)
        l1 = F.l1_loss(renders, pixels)
        ssim_loss = 1.0 - ssim(renders, pixels)
        loss = torch.lerp(l1, ssim_loss, d["ssim_lambda"])
        loss.backward()
        loss_v = loss.item()  # simple_trainer prints the loss every step (one sync per step, as ours)
        if info["means2d"].grad is None:  # CPU path with nothing in view: no screen-space gradient
            info["means2d"].grad = torch.zeros_like(info["means2d"])
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        scheduler.step()
        strategy.step_post_backward(splats, optimizers, state, step, info, packed=False)
        if log_every and ((step + 1) % log_every == 0 or step + 1 == steps):
            progress.emit(STAGE, step=step + 1, loss=round(loss_v, 5), num_gaussians=len(splats["means"]))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    loop_s = time.perf_counter() - t_loop

    t_eval = time.perf_counter()
    test_psnr, test_ssim = evaluate_views(splats, test_v, d["sh_degree"], rasterization, raster_kwargs)
    eval_s = time.perf_counter() - t_eval
    return {
        "run": "reference", "steps": steps, "seed": seed, "test_psnr": test_psnr, "test_ssim": test_ssim,
        "num_gaussians": len(splats["means"]), "loop_s": loop_s, "eval_s": eval_s,
        "total_s": time.perf_counter() - t_start, "seconds_per_step": loop_s / max(1, steps),
        "peak_cuda_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None,
        "device": dev.type, "width": train_v[0].width, "height": train_v[0].height,
        "train_images": len(train_v), "test_images": len(test_v) if test_every else 0,
        "held_out": [v.name for v in views if v.split == "test"], "finite": bool(math.isfinite(test_psnr)),
    }
