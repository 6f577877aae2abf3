"""The numba compositor against the torch one: images, gradients, edge cases, determinism, fallback."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spaceport.core.errors import ConfigInvalid
from spaceport.stages.train import rasterize as R
from tests.ml.train.test_train_rasterize import random_scene

pytest.importorskip("numba")


def camera_inputs(n: int, seed: int, width: int = 64, height: int = 48, dtype=torch.float64, opacity=None,
                  scale: float = 1.0):
    """One camera's compositor inputs (leaves taking gradients) and tile lists, as rasterization_cpu builds them."""
    means, quats, scales, opac, colors, vm, K = random_scene(n, seed, dtype=dtype)
    K = K[0].clone()
    K[0, 2], K[1, 2] = width / 2, height / 2
    K[0, 0] = K[1, 1] = 60.0 * width / 64
    if opacity is not None:
        opac = torch.full_like(opac, opacity)
    radii, m2d, depths, conics, _ = R.project(means, quats, scales * scale, opac, vm[0], K, width, height)
    tw, th = math.ceil(width / R.CPU_TILE), math.ceil(height / R.CPU_TILE)
    gauss, offsets = R.intersect_tiles(m2d, radii, depths, tw, th, R.CPU_TILE)
    ids, local = torch.unique(gauss, return_inverse=True)
    bg = torch.tensor([0.2, 0.5, 0.7], dtype=dtype)
    leaves = [x[ids].detach().clone().requires_grad_(True) for x in (m2d, conics, opac, colors)] + [
        bg.requires_grad_(True)]
    return leaves, (local, offsets, width, height, R.CPU_TILE)


def run(leaves, lists, compositor: str, seed: int = 0):
    """Image, alpha and the gradients of a loss on both, for every input."""
    for x in leaves:
        x.grad = None
    img, alpha = R.composite(*leaves, *lists, compositor=compositor)
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(img.shape, generator=g, dtype=img.dtype)
    weight = torch.rand(alpha.shape, generator=g, dtype=img.dtype)
    (((img - target) ** 2).sum() + (alpha * weight).sum()).backward()
    return [img.detach(), alpha.detach()] + [x.grad.clone() for x in leaves]


NAMES = ["image", "alpha", "means2d", "conics", "opacities", "colors", "background"]


def assert_same(ours, ref, rtol: float) -> None:
    """Every output within ``rtol`` of the reference's largest value (image and alpha absolutely)."""
    for name, a, b in zip(NAMES, ours, ref, strict=True):
        assert a.shape == b.shape, name
        scale = 1.0 if name in ("image", "alpha") else float(b.abs().max())
        assert scale > 0, name
        err = float((a - b).abs().max())
        assert err <= rtol * scale, f"{name}: max difference {err:.3g} vs {rtol * scale:.3g}"


@pytest.mark.parametrize(("seed", "dtype", "rtol"), [(0, torch.float64, 1e-9), (1, torch.float64, 1e-9),
                                                     (2, torch.float32, 1e-5), (3, torch.float32, 1e-5)])
def test_images_and_gradients_match_the_torch_compositor(seed, dtype, rtol):
    leaves, lists = camera_inputs(400, seed, dtype=dtype)
    ours, ref = run(leaves, lists, "numba"), run(leaves, lists, "torch")
    assert (ref[1] > 0.5).float().mean() > 0.3  # the Gaussians cover a good part of the image
    assert_same(ours, ref, rtol if dtype == torch.float64 else 1e-4)
    assert float((ours[0] - ref[0]).abs().max()) <= rtol and float((ours[1] - ref[1]).abs().max()) <= rtol


def test_real_capture_sized_case():
    """149x199 px (monstree's training size) with 20,000 Gaussians, in float32 as the trainer runs."""
    leaves, lists = camera_inputs(20_000, 11, width=149, height=199, dtype=torch.float32, scale=0.5)
    assert len(lists[0]) > 100_000  # intersections: the scale the trainer composites
    assert_same(run(leaves, lists, "numba"), run(leaves, lists, "torch"), 1e-4)


def test_early_termination_and_the_clamp_match():
    """Opaque, large Gaussians: most pixels stop at T <= 1e-4, and Gaussians clamp at 0.999 near their centres."""
    leaves, lists = camera_inputs(300, 5, opacity=1.0, scale=3.0)
    m2d, con, opac = (x.detach() for x in leaves[:3])
    ys, xs = torch.meshgrid(torch.arange(48.0, dtype=m2d.dtype) + 0.5, torch.arange(64.0, dtype=m2d.dtype) + 0.5,
                            indexing="ij")
    dx, dy = xs.reshape(-1, 1) - m2d[:, 0], ys.reshape(-1, 1) - m2d[:, 1]
    raw = opac * torch.exp(-(0.5 * (con[:, 0] * dx * dx + con[:, 2] * dy * dy) + con[:, 1] * dx * dy))
    assert (raw >= R.ALPHA_MAX).sum() > 20  # pixel-Gaussian pairs clamped
    ours, ref = run(leaves, lists, "numba"), run(leaves, lists, "torch")
    assert (ref[1] > 1 - 2e-4).float().mean() > 0.3  # pixels that stopped early
    assert_same(ours, ref, 1e-9)


def test_empty_tiles_and_no_gaussians_give_the_background():
    leaves, lists = camera_inputs(60, 6)
    gauss, offsets, width, height, tile = lists
    with torch.no_grad():  # move every Gaussian into the left half: the right half's tiles are empty
        leaves[0][:, 0] = leaves[0][:, 0] * 0.25
    tw = math.ceil(width / tile)
    keep = torch.cat([gauss[offsets[t]:offsets[t + 1]] if t % tw < tw // 2 - 1 else gauss[:0]
                      for t in range(len(offsets) - 1)])
    counts = torch.tensor([int(offsets[t + 1] - offsets[t]) if t % tw < tw // 2 - 1 else 0
                           for t in range(len(offsets) - 1)])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts, 0)])
    lists = (keep, offsets, width, height, tile)
    ours, ref = run(leaves, lists, "numba"), run(leaves, lists, "torch")
    assert_same(ours, ref, 1e-9)
    right = ours[0][:, width // 2:]
    torch.testing.assert_close(right, leaves[4].detach().expand_as(right), atol=0, rtol=0)
    assert (ours[1][:, width // 2:] == 0).all()

    none = (gauss[:0], torch.zeros_like(offsets), width, height, tile)
    img, alpha, *grads = run(leaves, none, "numba")
    torch.testing.assert_close(img, leaves[4].detach().expand_as(img), atol=0, rtol=0)
    assert (alpha == 0).all() and all((g == 0).all() for g in grads[:4]) and (grads[4] != 0).all()


def test_gaussian_centred_off_screen_still_paints_its_edge():
    leaves, lists = camera_inputs(1, 7, scale=0.0)
    with torch.no_grad():  # one round Gaussian centred 3 px left of the image, reaching ~8 px in
        leaves[0][:] = torch.tensor([[-3.0, 20.0]])
        leaves[1][:] = torch.tensor([[0.02, 0.0, 0.02]])
        leaves[2][:] = 0.9
    m2d = leaves[0].detach()[None]
    radii = torch.tensor([[12, 12]], dtype=torch.int32)
    gauss, offsets = R.intersect_tiles(m2d[0], radii, torch.ones(1), 8, 6, R.CPU_TILE)
    lists = (gauss, offsets, 64, 48, R.CPU_TILE)
    ours, ref = run(leaves, lists, "numba"), run(leaves, lists, "torch")
    assert (ours[1][:, :4] > 0.1).any() and (ours[1][:, 20:] == 0).all()
    assert_same(ours, ref, 1e-9)


def test_two_runs_and_thread_counts_are_bit_for_bit_equal():
    leaves, lists = camera_inputs(500, 8, dtype=torch.float32, opacity=0.9)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        first, second = run(leaves, lists, "numba"), run(leaves, lists, "numba")
        torch.set_num_threads(2)  # the parallel kernels where numba has 2 threads or more
        parallel = run(leaves, lists, "numba")
    finally:
        torch.set_num_threads(threads)
    for name, a, b, c in zip(NAMES, first, second, parallel, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c), name


def test_compositor_choice_env_and_fallback(monkeypatch):
    means, quats, scales, opac, colors, vm, K = random_scene(100, 9)
    monkeypatch.setenv("SPACEPORT_COMPOSITOR", "torch")
    torch_img = R.rasterization_cpu(means, quats, scales, opac, colors, vm[:1], K[:1], 64, 48)[0]
    monkeypatch.setenv("SPACEPORT_COMPOSITOR", "numba")
    numba_img = R.rasterization_cpu(means, quats, scales, opac, colors, vm[:1], K[:1], 64, 48)[0]
    torch.testing.assert_close(numba_img, torch_img, atol=1e-9, rtol=0)
    assert not torch.equal(numba_img, torch_img)  # two different code paths did run

    monkeypatch.setenv("SPACEPORT_COMPOSITOR", "cuda")
    with pytest.raises(ConfigInvalid, match="'cuda'") as err:
        R.rasterization_cpu(means, quats, scales, opac, colors, vm[:1], K[:1], 64, 48)
    assert "SPACEPORT_COMPOSITOR" in err.value.fix

    # numba missing: the torch compositor runs, and says so once
    monkeypatch.setenv("SPACEPORT_COMPOSITOR", "numba")
    monkeypatch.setitem(R._FUSED, "module", None)
    fallback = R.rasterization_cpu(means, quats, scales, opac, colors, vm[:1], K[:1], 64, 48)[0]
    assert torch.equal(fallback, torch_img)


def test_missing_numba_falls_back_to_torch(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    import spaceport.stages.train

    monkeypatch.delitem(sys.modules, "spaceport.stages.train.composite_numba", raising=False)
    monkeypatch.delattr(spaceport.stages.train, "composite_numba", raising=False)
    monkeypatch.setattr(R, "_FUSED", {})
    assert R.fused_compositor() is None
    assert "compositor=torch reason=ModuleNotFoundError" in capsys.readouterr().out
    leaves, lists = camera_inputs(50, 10)
    np.testing.assert_array_equal(run(leaves, lists, "numba")[0].numpy(), run(leaves, lists, "torch")[0].numpy())


def test_cache_goes_to_a_user_cache_when_the_package_folder_is_read_only(monkeypatch, tmp_path):
    from pathlib import Path

    from spaceport.stages.train import composite_numba as N

    package = Path(N.__file__).parent
    real_access = N.os.access
    monkeypatch.setattr(N.os, "access", lambda p, mode: Path(p) != package and real_access(p, mode))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    N._cache_dir()
    assert N.os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "cache" / "spaceport" / "numba")
    assert (tmp_path / "cache" / "spaceport" / "numba").is_dir()

    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere/else")  # the user's choice wins
    N._cache_dir()
    assert N.os.environ["NUMBA_CACHE_DIR"] == "/somewhere/else"
