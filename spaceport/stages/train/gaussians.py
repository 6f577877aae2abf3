"""The Gaussians as tensors: made from the sparse points, given Adam optimisers, rendered, capped, exported.

Pure functions of tensors and configs, as gsplat's ``create_splats_with_optimizers`` and
``strategy/ops.py``: the loop in :mod:`spaceport.stages.train.trainer` calls them. Parameter names are
gsplat's (``means``, ``scales`` as logs, ``quats``, ``opacities`` as logits, ``sh0``, ``shN``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from spaceport.core.errors import TrainingDiverged
from spaceport.geometry.splat import SH_C0, Splat
from spaceport.stages.train.config import OptimConfig
from spaceport.stages.train.data import View
from spaceport.stages.train.rasterize import rasterization


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


def initial_points(xyz: np.ndarray, rgb: np.ndarray, camera_centres: np.ndarray, scene_scale: float, *,
                   sky: int, cap: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The points the Gaussians start from: the finite sparse points, ``sky`` points on a shell well
    outside both the cameras and the points, then an even subsample if that is more than ``cap``."""
    finite = np.isfinite(xyz).all(1)
    xyz, rgb = xyz[finite], rgb[finite]
    if sky:
        centre = camera_centres.mean(0)
        reach = max(scene_scale, float(np.percentile(np.linalg.norm(xyz - centre, axis=1), 95)))
        sky_xyz, sky_rgb = sky_points(sky, centre, 3.0 * reach, seed)
        xyz, rgb = np.concatenate([xyz, sky_xyz]), np.concatenate([rgb, sky_rgb])
    if len(xyz) > cap:  # start under the cap
        keep = np.sort(np.random.default_rng(seed).choice(len(xyz), cap, replace=False))
        xyz, rgb = xyz[keep], rgb[keep]
    return xyz, rgb


def init_params(points_xyz: np.ndarray, points_rgb: np.ndarray, optim: OptimConfig,
                device: torch.device | str = "cpu") -> torch.nn.ParameterDict:
    """Gaussians at the sparse points: isotropic, kNN-sized, coloured by the points, low opacity, with
    room for every SH band from the start (bands are switched on later, as gsplat)."""
    n = len(points_xyz)
    degree = optim.sh_degree
    scales = np.log(knn_scale(points_xyz) * optim.init_scale)[:, None].repeat(3, 1)
    quats = np.zeros((n, 4))
    quats[:, 0] = 1.0
    sh0 = (points_rgb / 255.0 - 0.5) / SH_C0
    t = {
        "means": points_xyz, "scales": scales, "quats": quats,
        "opacities": np.full(n, math.log(optim.init_opacity / (1 - optim.init_opacity))),
        "sh0": sh0[:, None, :], "shN": np.zeros((n, (degree + 1) ** 2 - 1, 3)),
    }
    return torch.nn.ParameterDict(
        {name: torch.nn.Parameter(torch.as_tensor(v, dtype=torch.float32, device=device)) for name, v in t.items()})


def make_optimizers(params: torch.nn.ParameterDict, optim: OptimConfig, scene_scale: float,
                    ) -> dict[str, torch.optim.Optimizer]:
    """One Adam per parameter, as gsplat's strategies expect (they edit each optimiser's state on
    split, clone and prune)."""
    # eps 1e-15 as gsplat's simple_trainer: the gradients of tiny Gaussians are tiny too. Fused on CUDA (one
    # kernel per parameter instead of several, as simple_trainer); the CPU path keeps torch's default.
    return {name: torch.optim.Adam([{"params": params[name], "lr": lr, "name": name}], eps=1e-15,
                                   fused=params[name].is_cuda or None)
            for name, lr in optim.learning_rates(scene_scale).items()}


def render(params: torch.nn.ParameterDict, view: View, sh_degree: int, background: torch.Tensor,
           antialiased: bool = False) -> tuple[torch.Tensor, dict[str, Any]]:
    """Render ``params`` from ``view``: ``[H, W, 3]`` and gsplat's info dict (``antialiased``: gsplat's
    ``rasterize_mode="antialiased"``, :attr:`OptimConfig.antialiased`)."""
    device = params["means"].device
    viewmat = torch.as_tensor(view.world_to_camera, dtype=torch.float32, device=device)[None]
    K = torch.as_tensor(view.K, dtype=torch.float32, device=device)[None]
    colors = torch.cat([params["sh0"], params["shN"]], 1)
    img, _, info = rasterization(
        params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]),
        colors, viewmat, K, view.width, view.height, sh_degree=sh_degree, backgrounds=background[None],
        rasterize_mode="antialiased" if antialiased else "classic")
    return img[0], info


def enforce_cap(params: torch.nn.ParameterDict, optimizers: dict[str, torch.optim.Optimizer],
                state: dict[str, Any], cap: int) -> None:
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


def check_finite(params: torch.nn.ParameterDict, step: int) -> None:
    """Raise TrainingDiverged if any parameter holds NaN or Inf."""
    for name, p in params.items():
        if not torch.isfinite(p).all():
            raise TrainingDiverged(f"the Gaussians became NaN/Inf ({name}) at step {step}; no splat was written",
                                   step=step, parameter=name)


def to_splat(params: torch.nn.ParameterDict, antialiased: bool = False) -> Splat:
    """The Gaussians as a :class:`~spaceport.geometry.splat.Splat` (numpy, on the CPU)."""
    p = {k: v.detach().float().cpu().numpy() for k, v in params.items()}
    return Splat(p["means"], p["scales"], p["quats"], p["opacities"], p["sh0"][:, 0, :], p["shN"], antialiased)
