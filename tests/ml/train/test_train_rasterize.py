"""The tile-culled CPU rasterizer against a dense per-pixel reference built on gsplat's torch projection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spaceport.stages.train.rasterize import (
    ALPHA_MAX,
    ALPHA_MIN,
    T_MIN,
    rasterization,
    rasterization_cpu,
    rasterization_dense,
    render_splat,
)


def random_scene(n: int, seed: int, sh_degree: int | None = None, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5) * torch.tensor([3.0, 2.4, 2.0], dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.exp(torch.rand(n, 3, generator=g, dtype=dtype) * 2.5 - 4.0)
    opacities = torch.rand(n, generator=g, dtype=dtype) * 0.98 + 0.01
    if sh_degree is None:
        colors = torch.rand(n, 3, generator=g, dtype=dtype)
    else:
        colors = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g, dtype=dtype) * 0.3
    # two cameras looking at the cloud from z = -4 (one rotated about y)
    vm = torch.eye(4, dtype=dtype).repeat(2, 1, 1)
    vm[:, 2, 3] = 4.0
    a = 0.3
    vm[1, :3, :3] = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]],
                                 dtype=dtype)
    K = torch.tensor([[60.0, 0, 31.0], [0, 60.0, 23.5], [0, 0, 1]], dtype=dtype).repeat(2, 1, 1)
    return means, quats, scales, opacities, colors, vm, K


@pytest.mark.parametrize(("sh_degree", "seed"), [(None, 0), (3, 1), (1, 2)])
def test_forward_matches_dense_reference(sh_degree, seed):
    means, quats, scales, opac, colors, vm, K = random_scene(300, seed, sh_degree)
    bg = torch.tensor([[0.1, 0.2, 0.3], [1.0, 1.0, 1.0]], dtype=means.dtype)
    img, alpha, info = rasterization_cpu(means, quats, scales, opac, colors, vm, K, 64, 48,
                                         sh_degree=sh_degree, backgrounds=bg)
    ref, ref_alpha = rasterization_dense(means, quats, scales, opac, colors, vm, K, 64, 48,
                                         sh_degree=sh_degree, backgrounds=bg)
    assert img.shape == (2, 48, 64, 3) and alpha.shape == (2, 48, 64, 1)
    assert info["means2d"].shape == (2, 300, 2) and info["radii"].shape == (2, 300, 2)
    assert (alpha > 0.5).float().mean() > 0.3  # the scene covers a good part of the image
    torch.testing.assert_close(img, ref, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(alpha, ref_alpha, atol=1e-9, rtol=1e-9)


def test_gradients_match_dense_reference():
    inputs = list(random_scene(120, 3, sh_degree=2))
    for t in inputs[:5]:
        t.requires_grad_(True)
    means, quats, scales, opac, colors, vm, K = inputs
    target = torch.rand(2, 48, 64, 3, dtype=means.dtype, generator=torch.Generator().manual_seed(9))
    img, _, _ = rasterization_cpu(means, quats, scales, opac, colors, vm, K, 64, 48, sh_degree=2)
    grads = torch.autograd.grad(((img - target) ** 2).sum(), inputs[:5])
    ref, _ = rasterization_dense(means, quats, scales, opac, colors, vm, K, 64, 48, sh_degree=2)
    ref_grads = torch.autograd.grad(((ref - target) ** 2).sum(), inputs[:5])
    for name, a, b in zip(["means", "quats", "scales", "opacities", "colors"], grads, ref_grads, strict=True):
        assert b.abs().max() > 0, name
        torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-6, msg=name)


def test_means2d_gradient_is_populated_for_strategies():
    means, quats, scales, opac, colors, vm, K = random_scene(80, 4, dtype=torch.float32)
    means.requires_grad_(True)
    img, _, info = rasterization(means, quats, scales, opac, colors, vm[:1], K[:1], 64, 48)
    info["means2d"].retain_grad()
    img.sum().backward()
    g = info["means2d"].grad
    assert g.shape == (1, 80, 2)
    visible = (info["radii"][0] > 0).all(-1)
    assert (g[0][~visible] == 0).all() and (g[0][visible].abs().sum(-1) > 0).float().mean() > 0.8


def sequential_pixel(x, y, means2d, conics, opac, colors, depths, bg):
    """gsplat's CUDA forward kernel for one pixel, literally: a loop with early exits."""
    T, out = 1.0, np.zeros(3)
    for i in np.argsort(depths, kind="stable"):
        dx, dy = x + 0.5 - means2d[i, 0], y + 0.5 - means2d[i, 1]
        a, b, c = conics[i]
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = min(ALPHA_MAX, opac[i] * math.exp(-sigma))
        if sigma < 0 or alpha < ALPHA_MIN:
            continue
        if T * (1 - alpha) <= T_MIN:
            break
        out += alpha * T * colors[i]
        T *= 1 - alpha
    return out + T * bg


def test_compositing_matches_the_kernel_loop_including_early_stop():
    means, quats, scales, opac, colors, vm, K = random_scene(200, 5)
    opac = opac * 0 + 0.995  # nearly opaque: many pixels stop early
    bg = torch.tensor([[0.5, 0.25, 0.75]], dtype=means.dtype)
    img, _, info = rasterization_cpu(means, quats, scales, opac, colors, vm[:1], K[:1], 64, 48, backgrounds=bg)
    vis = (info["radii"][0] > 0).all(-1).numpy()
    args = [info["means2d"][0].detach().numpy()[vis], info["conics"][0].detach().numpy()[vis],
            opac.numpy()[vis], colors.numpy()[vis], info["depths"][0].detach().numpy()[vis], bg[0].numpy()]
    rng = np.random.default_rng(0)
    for x, y in zip(rng.integers(0, 64, 40), rng.integers(0, 48, 40), strict=True):
        np.testing.assert_allclose(img[0, y, x].numpy(), sequential_pixel(x, y, *args), atol=1e-9)


def test_culling_near_plane_and_offscreen():
    means, quats, scales, opac, colors, vm, K = random_scene(50, 6)
    means = means.clone()
    means[:10, 2] = -4.5  # behind the camera
    means[10:20, 0] = 50.0  # far off to the side
    _, _, info = rasterization_cpu(means, quats, scales, opac, colors, vm[:1], K[:1], 64, 48)
    assert (info["radii"][0, :20] == 0).all()
    assert (info["radii"][0, 20:] > 0).all(-1).float().mean() > 0.8


def test_render_splat_contract():
    from spaceport.geometry.splat import Splat

    means, quats, scales, opac, colors, vm, K = random_scene(100, 7, sh_degree=1, dtype=torch.float32)
    splat = Splat(means.numpy(), np.log(scales.numpy()), quats.numpy(),
                  np.log(opac.numpy() / (1 - opac.numpy())), colors[:, 0].numpy(), colors[:, 1:].numpy())
    img = render_splat(splat, K[0].numpy(), vm[0].numpy(), 64, 48, background=(1, 1, 1))
    assert img.shape == (48, 64, 3) and img.dtype == np.float32
    assert img.min() >= 0.0 and img.max() <= 1.0
    ref, _ = rasterization_dense(means, quats, scales, opac, colors, vm[:1], K[:1], 64, 48, sh_degree=1,
                                 backgrounds=torch.ones(1, 3))
    np.testing.assert_allclose(img, ref[0].clamp(0, 1).numpy(), atol=2e-5)
    empty = render_splat(splat.subset(np.zeros(100, bool)), K[0].numpy(), vm[0].numpy(), 8, 6,
                         background=(0.2, 0.4, 0.6))
    np.testing.assert_allclose(empty, np.broadcast_to([0.2, 0.4, 0.6], (6, 8, 3)), atol=1e-7)


def test_render_splat_renders_an_antialiased_splat_as_it_was_trained():
    """A splat tagged antialiased is rendered in gsplat's antialiased mode (the compress stage's quality
    renders and the report use render_splat): its sub-pixel Gaussians fade instead of swelling."""
    from dataclasses import replace

    from spaceport.geometry.splat import Splat

    means, quats, scales, opac, colors, vm, K = random_scene(200, 11, sh_degree=0, dtype=torch.float32)
    scales = scales * 0.05
    splat = Splat(means.numpy(), np.log(scales.numpy()), quats.numpy(),
                  np.log(opac.numpy() / (1 - opac.numpy())), colors[:, 0].numpy(), colors[:, 1:].numpy())
    for tagged, mode in ((False, "classic"), (True, "antialiased")):
        img = render_splat(replace(splat, antialiased=tagged), K[0].numpy(), vm[0].numpy(), 64, 48)
        ref, _, _ = rasterization_cpu(means, quats, scales, opac, colors, vm[:1], K[:1], 64, 48, sh_degree=0,
                                      rasterize_mode=mode)
        np.testing.assert_allclose(img, ref[0].clamp(0, 1).numpy(), atol=1e-6)
    dim = render_splat(replace(splat, antialiased=True), K[0].numpy(), vm[0].numpy(), 64, 48).mean()
    assert dim < 0.5 * render_splat(splat, K[0].numpy(), vm[0].numpy(), 64, 48).mean()


def test_nothing_visible_gives_background_and_zero_gradients():
    means, quats, scales, opac, colors, vm, K = random_scene(30, 8, dtype=torch.float32)
    means = (means - torch.tensor([0.0, 0.0, 10.0])).requires_grad_(True)  # all behind the camera
    bg = torch.tensor([[0.3, 0.6, 0.9]])
    img, alpha, info = rasterization(means, quats, scales, opac, colors, vm[:1], K[:1], 64, 48, backgrounds=bg)
    torch.testing.assert_close(img, bg.view(1, 1, 1, 3).expand(1, 48, 64, 3))
    assert (alpha == 0).all() and (info["radii"] == 0).all()


def test_antialiased_mode_matches_dense_reference():
    means, quats, scales, opac, colors, vm, K = random_scene(200, 10)
    scales = scales * 0.2  # small Gaussians: the compensation matters
    img, _, _ = rasterization_cpu(means, quats, scales, opac, colors, vm, K, 64, 48, rasterize_mode="antialiased")
    ref, _ = rasterization_dense(means, quats, scales, opac, colors, vm, K, 64, 48, rasterize_mode="antialiased")
    classic, _, _ = rasterization_cpu(means, quats, scales, opac, colors, vm, K, 64, 48)
    torch.testing.assert_close(img, ref, atol=1e-9, rtol=1e-9)
    assert (img - classic).abs().max() > 1e-2
