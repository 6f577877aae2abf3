"""Fused CPU compositing: numba loops over each pixel's depth-sorted list, with early termination.

The same maths as :func:`spaceport.stages.train.rasterize.composite_tiles` (and gsplat's
``RasterizeToPixels3DGSFwd.cu``/``Bwd.cu``): α = min(0.999, o·exp(-σ)), skip α < 1/255, stop
(exclusively) before T would reach 1e-4; the backward passes no gradient through the clamp, the
skip or the stop. The torch compositor visits every pixel-Gaussian pair of a padded block many
times; these loops visit each pair once, skip by σ before the exp where the pair is surely below
1/255, and stop a pixel at the T limit.

Determinism: tiles run in parallel (``prange``), each tile on one thread, writing only its own
pixels and its own rows of per-intersection gradients, which are then summed per Gaussian in
intersection order by one thread. So the outputs are the same bit for bit for any thread count.

The kernels are compiled on first use (``cache=True``: once per machine and dtype). Importing
this module needs numba; :mod:`spaceport.stages.train.rasterize` falls back to the torch compositor
where it is missing.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path


def _cache_dir() -> None:
    """Point numba's cache at a user cache when this package's folder is read-only (installed images).

    Numba caches next to the source; with no writable place it refuses ``cache=True`` outright.
    Must run before numba is imported (it reads ``NUMBA_CACHE_DIR`` once).
    """
    if os.environ.get("NUMBA_CACHE_DIR") or os.access(Path(__file__).parent, os.W_OK):
        return
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    for root in (base, Path(tempfile.gettempdir())):
        target = root / "spaceport" / "numba"
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(target, os.W_OK):
            os.environ["NUMBA_CACHE_DIR"] = str(target)
            return


_cache_dir()

import numba  # noqa: E402  (after the cache folder is chosen)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from numba import njit, prange  # noqa: E402
from torch import Tensor  # noqa: E402

from spaceport.stages.train.rasterize import ALPHA_MAX, ALPHA_MIN, T_MIN  # noqa: E402

#: σ beyond log(255 o) + this margin means α < 1/255 whatever the rounding: skipped before the exp
SKIP_MARGIN = 1e-6
#: gradient row per intersection: d/d(mx, my, a, b, c, o), then d/d colour channels
_ROW = 6

_SERIAL = {"cache": True, "error_model": "numpy", "nogil": True}
_PARALLEL = {**_SERIAL, "parallel": True}


@njit(**_SERIAL)
def _skip_thresholds(opac):
    out = np.empty(opac.shape[0], np.float64)
    for g in range(opac.shape[0]):
        out[g] = math.log(max(float(opac[g]), 1e-30) / ALPHA_MIN) + SKIP_MARGIN
    return out


@njit(**_SERIAL)
def _tile_pixels(t, width, height, tile, tile_w):
    """Tile t's pixel centres (row-major, ``tile²``) and whether each lies inside the image."""
    x0, y0 = (t % tile_w) * tile, (t // tile_w) * tile
    n = tile * tile
    xs, ys = np.empty(n), np.empty(n)
    inside = np.empty(n, np.bool_)
    for p in range(n):
        px, py = x0 + p % tile, y0 + p // tile
        xs[p], ys[p] = px + 0.5, py + 0.5
        inside[p] = px < width and py < height
    return xs, ys, inside


@njit(**_SERIAL)
def _forward_tile(t, means2d, conics, opac, colors, gauss, offsets, width, height, tile, tile_w, skip,
                  rgb, T_out, last):
    """Tile t's pixels of ``rgb [H,W,ch]`` (background excluded), ``T_out [H,W]`` and ``last [H,W]`` (entries used).

    Gaussian by Gaussian, each over the tile's pixels still running (the per-pixel arithmetic is
    gsplat's, in the same order); the tile stops when every pixel has reached the T limit.
    """
    ch = colors.shape[1]
    s, e = offsets[t], offsets[t + 1]
    if s == e:
        return
    xs, ys, running = _tile_pixels(t, width, height, tile, tile_w)
    n_px = tile * tile
    T = np.ones(n_px)
    acc = np.zeros((n_px, ch))
    n_used = np.full(n_px, e - s)
    alive = running.sum()
    for k in range(s, e):
        g = gauss[k]
        mx, my, o, sk = means2d[g, 0], means2d[g, 1], opac[g], skip[g]
        a, b, c = conics[g, 0], conics[g, 1], conics[g, 2]
        for p in range(n_px):
            if not running[p]:
                continue
            dx, dy = xs[p] - mx, ys[p] - my
            sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
            if sigma > sk:
                continue
            alpha = min(ALPHA_MAX, o * math.exp(-sigma))
            if alpha < ALPHA_MIN:
                continue
            nxt = T[p] * (1.0 - alpha)
            if nxt <= T_MIN:
                running[p] = False
                n_used[p] = k - s
                alive -= 1
                continue
            w = alpha * T[p]
            for q in range(ch):
                acc[p, q] += w * colors[g, q]
            T[p] = nxt
        if alive == 0:
            break
    x0, y0 = (t % tile_w) * tile, (t // tile_w) * tile
    for p in range(n_px):
        px, py = x0 + p % tile, y0 + p // tile
        if px < width and py < height:
            T_out[py, px] = T[p]
            last[py, px] = n_used[p]
            for q in range(ch):
                rgb[py, px, q] = acc[p, q]


@njit(**_SERIAL)
def _backward_tile(t, means2d, conics, opac, colors, gauss, offsets, width, height, tile, tile_w, skip,
                   rgb, T_out, last, g_rgb, g_T, rows):
    """Tile t's per-intersection gradient rows (summed over its pixels in row-major order).

    In forward order, like the torch compositor: with total = Σ_i w_i c_i·g + T_end g_T and
    behind_i = total - Σ_{j<=i} w_j c_j·g, dL/d(log o - σ)_i = w_i c_i·g - behind_i α_i/(1 - α_i).
    """
    ch = colors.shape[1]
    s = offsets[t]
    if s == offsets[t + 1]:
        return
    xs, ys, inside = _tile_pixels(t, width, height, tile, tile_w)
    n_px = tile * tile
    x0, y0 = (t % tile_w) * tile, (t // tile_w) * tile
    T, cum, total = np.ones(n_px), np.zeros(n_px), np.zeros(n_px)
    gr = np.zeros((n_px, ch))
    end = np.zeros(n_px, np.int64)  # pixels outside the image use no entry
    for p in range(n_px):
        if inside[p]:
            px, py = x0 + p % tile, y0 + p // tile
            end[p] = s + last[py, px]
            total[p] = T_out[py, px] * g_T[py, px]
            for q in range(ch):
                gr[p, q] = g_rgb[py, px, q]
                total[p] += rgb[py, px, q] * gr[p, q]
    for k in range(s, end.max()):
        g = gauss[k]
        mx, my, o, sk = means2d[g, 0], means2d[g, 1], opac[g], skip[g]
        a, b, c = conics[g, 0], conics[g, 1], conics[g, 2]
        # Σ over pixels of dL/d(log o - σ) times 1, dx, dy, dx², dx dy, dy²: the row follows from them
        s0 = sx = sy = sxx = sxy = syy = 0.0
        for p in range(n_px):
            if k >= end[p]:
                continue
            dx, dy = xs[p] - mx, ys[p] - my
            sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
            if sigma > sk:
                continue
            raw = o * math.exp(-sigma)
            alpha = min(ALPHA_MAX, raw)
            if alpha < ALPHA_MIN:
                continue
            w = alpha * T[p]
            cg = 0.0
            for q in range(ch):
                cg += colors[g, q] * gr[p, q]
                rows[k, _ROW + q] += w * gr[p, q]
            term = w * cg
            cum[p] += term
            if raw < ALPHA_MAX:  # no gradient through the clamp
                g_q = term - (total[p] - cum[p]) * alpha / (1.0 - alpha)
                s0 += g_q
                sx += g_q * dx
                sy += g_q * dy
                sxx += g_q * dx * dx
                sxy += g_q * dx * dy
                syy += g_q * dy * dy
            T[p] *= 1.0 - alpha
        # σ = ½a dx² + ½c dy² + b dx dy with dx = x - mx;  dL/dσ = -g_q, dσ/dmx = -(a dx + b dy)
        rows[k, 0] = a * sx + b * sy
        rows[k, 1] = c * sy + b * sx
        rows[k, 2] = -0.5 * sxx
        rows[k, 3] = -sxy
        rows[k, 4] = -0.5 * syy
        rows[k, 5] = s0 / o


# One tile per iteration: serial drivers for one thread (no thread pool, whose OpenMP workers would
# spin beside torch's), parallel ones for more. Separate functions, so numba caches each on its own.
@njit(**_SERIAL)
def _forward_serial(args):
    for t in range(args[5].shape[0] - 1):
        _forward_tile(t, *args)


@njit(**_PARALLEL)
def _forward_parallel(args):
    for t in prange(args[5].shape[0] - 1):
        _forward_tile(t, *args)


@njit(**_SERIAL)
def _backward_serial(args):
    for t in range(args[5].shape[0] - 1):
        _backward_tile(t, *args)


@njit(**_PARALLEL)
def _backward_parallel(args):
    for t in prange(args[5].shape[0] - 1):
        _backward_tile(t, *args)


@njit(cache=True, error_model="numpy")
def _reduce(rows, gauss, out):
    """Σ of the rows per Gaussian, in intersection order (one thread: the same sums for any thread count)."""
    for k in range(rows.shape[0]):
        g = gauss[k]
        for j in range(rows.shape[1]):
            out[g, j] += rows[k, j]


def _parallel() -> bool:
    """Whether to run the parallel drivers, on as many numba threads as torch was given (at most numba's pool)."""
    n = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if n > 1:
        numba.set_num_threads(n)
    return n > 1


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class _Composite(torch.autograd.Function):
    """``(rgb [H,W,ch] without background, T [H,W])`` of one camera, differentiable in the Gaussians."""

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, gauss, offsets, width, height, tile):
        dtype = means2d.dtype
        tile_w = math.ceil(width / tile)
        arrays = [_np(x) for x in (means2d, conics, opacities, colors)]
        g_np, off_np = _np(gauss), _np(offsets)
        skip = _skip_thresholds(arrays[2])
        rgb = torch.zeros(height, width, colors.shape[-1], dtype=dtype)
        T = torch.ones(height, width, dtype=dtype)
        last = np.zeros((height, width), np.int64)
        args = (*arrays, g_np, off_np, width, height, tile, tile_w, skip, rgb.numpy(), T.numpy(), last)
        (_forward_parallel if _parallel() else _forward_serial)(args)
        ctx.state = (arrays, g_np, off_np, width, height, tile, tile_w, skip, last)
        ctx.save_for_backward(rgb, T)
        return rgb, T

    @staticmethod
    def backward(ctx, g_rgb, g_T):
        rgb, T = ctx.saved_tensors
        arrays, g_np, off_np, width, height, tile, tile_w, skip, last = ctx.state
        g_rgb = torch.zeros_like(rgb) if g_rgb is None else g_rgb
        g_T = torch.zeros_like(T) if g_T is None else g_T
        ch = rgb.shape[-1]
        rows = np.zeros((len(g_np), _ROW + ch), rgb.numpy().dtype)  # entries past every stop stay 0
        args = (*arrays, g_np, off_np, width, height, tile, tile_w, skip, rgb.numpy(), T.numpy(), last,
                _np(g_rgb), _np(g_T), rows)
        (_backward_parallel if _parallel() else _backward_serial)(args)
        out = np.zeros((len(arrays[0]), _ROW + ch), rows.dtype)
        _reduce(rows, g_np, out)
        grads = torch.from_numpy(out)
        needs = ctx.needs_input_grad
        return (grads[:, 0:2] if needs[0] else None, grads[:, 2:5] if needs[1] else None,
                grads[:, 5] if needs[2] else None, grads[:, _ROW:] if needs[3] else None,
                None, None, None, None, None)


def composite_fused(
    means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor, background: Tensor,
    gauss: Tensor, offsets: Tensor, width: int, height: int, tile: int,
) -> tuple[Tensor, Tensor]:
    """:func:`~spaceport.stages.train.rasterize.composite_tiles` with the numba kernels: ``colors [H,W,ch]``, ``alphas [H,W,1]``."""
    dtype = means2d.dtype
    rgb, T = _Composite.apply(means2d, conics.to(dtype), opacities.to(dtype), colors.to(dtype), gauss, offsets,
                              int(width), int(height), int(tile))
    return rgb + T[..., None] * background.to(dtype), 1.0 - T[..., None]
