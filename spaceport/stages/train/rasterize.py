"""Differentiable 3DGS rasterization: gsplat's CUDA kernels on a GPU, a tile-culled compositor on CPU.

:func:`rasterization` has gsplat's signature and semantics (packed=False, classic or antialiased
mode, pinhole cameras) and returns ``(colors [C,H,W,3], alphas [C,H,W,1], info)``. On CUDA it is
``gsplat.rasterization``. On CPU it reproduces the CUDA kernels step by step:

* projection (``ProjectionEWA3DGSFused.cu``): EWA with the Jacobian's x/y clamped to 1.3x the
  field of view, ``eps2d`` (0.3 px²) low-pass, near/far culling, opacity-aware radius
  ``min(3.33, sqrt(2 ln(255 o)))`` σ, culling of opacity < 1/255 and of boxes off the image;
* colour from SH with gsplat's ``_spherical_harmonics`` (``clamp_min(sh + 0.5, 0)``);
* compositing (``RasterizeToPixels3DGSFwd.cu``): front to back per tile, in depth order,
  α = min(0.999, o·exp(-σ)), skip α < 1/255 (σ < 0 cannot occur: the conic is positive definite),
  stop (exclusively) once T would reach 1e-4,
  background weighted by the final T.

Compositing runs in numba kernels (:mod:`spaceport.stages.train.composite_numba`: each pixel's list once,
with the early stop; several times faster, bench/results/composite.md) unless numba is missing or
``SPACEPORT_COMPOSITOR=torch``; :func:`composite_tiles` below is the torch reference they are tested against.

Projection is written elementwise (one GEMM for the view rotation) instead of gsplat's batched
3×3 einsums (1.5× faster with torch 2.13, see bench/results/train.md). The torch compositor gathers each tile's depth-sorted
Gaussians into a padded ``[tiles, pixels, K]`` block (8×8 tiles: the image does not depend on the
tile size, and small tiles waste fewer pixel-Gaussian pairs), tiles bucketed by list length so padding stays
small, and K processed in slices that carry the transmittance so memory stays bounded.
"""

from __future__ import annotations

import ctypes
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

ALPHA_MAX = 0.999  # gsplat's clamp (the Inria rasterizer uses 0.99)
ALPHA_MIN = 1.0 / 255.0  # ALPHA_THRESHOLD in gsplat's Common.h
T_MIN = 1e-4  # a pixel is done when T would fall to this
TILE = 16
#: tile edge of the CPU compositor (px): tiles only bound work here, the image does not depend on it
CPU_TILE = 8
#: elements (tiles x tile² px x Gaussians) composited per slice: bounds the autograd memory per slice
SLICE_ELEMENTS = 1 << 22


def tune_malloc() -> bool:
    """Keep freed tensor memory in glibc's heap instead of returning it to the OS on every free.

    PyTorch's CPU allocator is plain malloc; step after step the same large blocks are freed and
    reallocated, and with glibc's defaults each one is an mmap/munmap pair whose page faults cost
    more than the arithmetic. Raising the mmap and trim thresholds (the same as the
    ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` environment variables, but settable after
    start) removes them; bench/train.py measures the effect. Returns False where it is not glibc.
    """
    if os.environ.get("SPACEPORT_MALLOC_TUNE", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = libc.mallopt(m_mmap_threshold, 32 << 20) == 1  # glibc's ceiling on 64-bit (HEAP_MAX / 2)
    ok &= libc.mallopt(m_trim_threshold, 1 << 30) == 1
    return bool(ok)


def quat_scale_to_camera_factor(quats: Tensor, scales: Tensor, R_view: Tensor) -> Tensor:
    """``R_view @ R(q) @ diag(s)`` for every Gaussian, ``[N, 3, 3]``: the camera-space covariance factor.

    Σ_c = F Fᵀ. Written as elementwise ops plus one ``[3N,3] @ [3,3]`` GEMM instead of batched 3×3 matmuls.
    """
    q = F.normalize(quats, p=2, dim=-1)
    w, x, y, z = q.unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)
    M = R * scales[:, None, :]  # columns scaled: M[:, i, j] = R_ij s_j
    # (R_view M)ᵀ = Mᵀ R_viewᵀ: rows of Mᵀ stacked into one [3N, 3] matrix, one GEMM.
    return (M.transpose(1, 2).reshape(-1, 3) @ R_view.T).reshape(-1, 3, 3).transpose(1, 2)


def project(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, viewmat: Tensor, K: Tensor,
    width: int, height: int, *, eps2d: float = 0.3, near_plane: float = 0.01, far_plane: float = 1e10,
    radius_clip: float = 0.0, antialiased: bool = False,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """Project N Gaussians into one pinhole camera like gsplat's fused projection kernel.

    Returns ``radii [N,2] int32`` (0 = culled), ``means2d [N,2]`` (px), ``depths [N]``,
    ``conics [N,3]`` (inverse 2D covariance a, b, c) and ``compensations [N]`` (antialiased only).
    """
    R_view, t_view = viewmat[:3, :3], viewmat[:3, 3]
    means_c = means @ R_view.T + t_view
    tx, ty, tz = means_c.unbind(-1)
    fx, fy, cx, cy = (float(v) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    # Jacobian evaluated at the mean clamped to 1.3x the field of view (as gsplat and Inria do).
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_xp, lim_xn = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_yp, lim_yn = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    rz = 1.0 / tz
    u = torch.clamp(tx * rz, -lim_xn, lim_xp)
    v = torch.clamp(ty * rz, -lim_yn, lim_yp)
    Fc = quat_scale_to_camera_factor(quats, scales, R_view)  # [N,3,3]
    # rows of J @ F: J = [[fx/z, 0, -fx u/z], [0, fy/z, -fy v/z]]
    T0 = (fx * rz)[:, None] * (Fc[:, 0, :] - u[:, None] * Fc[:, 2, :])
    T1 = (fy * rz)[:, None] * (Fc[:, 1, :] - v[:, None] * Fc[:, 2, :])
    a = (T0 * T0).sum(-1)
    b = (T0 * T1).sum(-1)
    c = (T1 * T1).sum(-1)
    det_orig = a * c - b * b
    a = a + eps2d
    c = c + eps2d
    det = a * c - b * b
    comp = torch.sqrt(torch.clamp(det_orig / det.clamp(min=1e-10), min=0.0)) if antialiased else None
    inv_det = 1.0 / det.clamp(min=1e-10)
    conics = torch.stack([c * inv_det, -b * inv_det, a * inv_det], dim=-1)
    means2d = torch.stack([fx * tx * rz + cx, fy * ty * rz + cy], dim=-1)

    with torch.no_grad():
        op = opacities * comp if comp is not None else opacities
        extend = torch.sqrt(2.0 * torch.log(op.clamp(min=ALPHA_MIN) / ALPHA_MIN)).clamp(max=3.33)
        rx = torch.ceil(extend * torch.sqrt(a.clamp(min=0)))
        ry = torch.ceil(extend * torch.sqrt(c.clamp(min=0)))
        mx, my = means2d[:, 0], means2d[:, 1]
        valid = (tz >= near_plane) & (tz <= far_plane) & (det > 0) & (op >= ALPHA_MIN)
        valid &= (rx > radius_clip) | (ry > radius_clip)
        valid &= (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        radii = torch.stack([rx, ry], dim=-1) * valid[:, None]
    return radii.int(), means2d, tz, conics, comp


def intersect_tiles(
    means2d: Tensor, radii: Tensor, depths: Tensor, tile_w: int, tile_h: int, tile: int = TILE
) -> tuple[Tensor, Tensor]:
    """Tile lists: ``(gaussian index per intersection sorted by (tile, depth), offsets [tiles+1])``.

    Vectorised version of gsplat's ``_isect_tiles`` (which loops in Python) with the same tile
    ranges: ``floor((m - r)/16) .. ceil((m + r)/16)`` clamped to the grid.
    """
    with torch.no_grad():
        ids = torch.nonzero((radii > 0).all(-1)).squeeze(1)
        ids = ids[torch.argsort(depths[ids], stable=True)]
        m = means2d[ids] / tile
        r = radii[ids].float() / tile
        lo = torch.floor(m - r).long()
        hi = torch.ceil(m + r).long()
        lo[:, 0].clamp_(0, tile_w)
        hi[:, 0].clamp_(0, tile_w)
        lo[:, 1].clamp_(0, tile_h)
        hi[:, 1].clamp_(0, tile_h)
        span = hi - lo
        counts = span[:, 0] * span[:, 1]
        total = int(counts.sum())
        owner = torch.repeat_interleave(torch.arange(len(ids)), counts)
        start = torch.cumsum(counts, 0) - counts
        local = torch.arange(total) - start[owner]
        wx = span[owner, 0]
        tile_ids = (lo[owner, 1] + local // wx) * tile_w + lo[owner, 0] + local % wx
        tile_ids, order = torch.sort(tile_ids, stable=True)  # stable: depth order kept within a tile
        gauss = ids[owner[order]]
        offsets = torch.zeros(tile_w * tile_h + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(torch.bincount(tile_ids, minlength=tile_w * tile_h), 0)
    return gauss, offsets


class _CompositeSlice(torch.autograd.Function):
    """Front-to-back compositing of one K-slice of a bucket of tiles, with a hand-written backward.

    ``log(o) - σ`` is a quadratic in the pixel position, so for all pixels of a tile at once it is
    one GEMM: ``feat [P,6] @ coef [B,6,k]`` with ``feat = (x², y², xy, x, y, 1)`` in tile-centred
    pixel coordinates (small numbers, so float32 keeps ~1e-5 absolute precision) and ``coef``
    built differentiably from the conic, the 2D mean and the opacity; α = min(0.999, exp(that)).
    The backward mirrors gsplat's kernel: no gradient through the 0.999 clamp, the 1/255 skip or
    the T stop. Passes over the ``[B, P, k]`` block are kept few: they are the CPU cost.
    """

    @staticmethod
    def forward(ctx, coef, colors, T0, feat):
        raw = torch.exp(torch.matmul(feat, coef))  # o·exp(-σ), [B, P, k]
        alpha = torch.where(raw >= ALPHA_MIN, torch.clamp_max(raw, ALPHA_MAX), 0.0)
        del raw
        Tk = torch.cumprod(1 - alpha, -1).mul_(T0[..., None])  # T after each Gaussian
        # the pixel stops before the Gaussian that would take T to <= 1e-4 (monotone along k)
        done = Tk <= T_MIN
        alpha.masked_fill_(done, 0.0)
        Tk.masked_fill_(done, 2.0)  # done entries have α = 0, so their T is never used
        T_end = torch.minimum(Tk.amin(-1), T0)
        T_before = torch.cat([T0[..., None], Tk[..., :-1]], -1)
        w = alpha * T_before
        rgb = torch.bmm(w, colors)
        ctx.save_for_backward(alpha, w, T_end, T0, colors, feat)
        return rgb, T_end

    @staticmethod
    def backward(ctx, g_rgb, g_T):
        alpha, w, T_end, T0, colors, feat = ctx.saved_tensors
        g_T = torch.zeros_like(T_end) if g_T is None else g_T
        g_colors = torch.bmm(w.transpose(1, 2), g_rgb)
        term = torch.bmm(g_rgb, colors.transpose(1, 2)).mul_(w)  # w_i c_i·dL/drgb, [B, P, k]
        total = term.sum(-1) + T_end * g_T  # the background / later slices see T_end
        g_T0 = total / T0
        # behind_i = Σ_{j>i} w_j c_j·g + T_end g_T;  dL/dα_i = T_i c_i·g - behind_i / (1 - α_i)
        # and with α = exp(log o - σ):  dL/d(log o - σ) = α dL/dα = term_i - behind_i α_i / (1 - α_i)
        behind = torch.cumsum(term, -1).neg_().add_(total[..., None])
        g_q = term.sub_(behind.mul_(alpha).div_(1 - alpha))
        g_q.masked_fill_(alpha >= ALPHA_MAX, 0.0)  # clamped: no gradient (α = 0 entries give 0 already)
        g_coef = torch.matmul(feat.transpose(-1, -2), g_q)  # [B, 6, k]
        return g_coef, g_colors, g_T0, None


def composite_tiles(
    means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor, background: Tensor,
    gauss: Tensor, offsets: Tensor, width: int, height: int, tile: int = TILE,
) -> tuple[Tensor, Tensor]:
    """Front-to-back alpha compositing of each tile's depth-sorted list (gsplat's forward kernel, in torch).

    Returns ``colors [H,W,ch]`` and ``alphas [H,W,1]``; differentiable in every Gaussian input.
    """
    dtype = means2d.dtype
    tile_w, tile_h = math.ceil(width / tile), math.ceil(height / tile)
    n_tiles = tile_w * tile_h
    ch = colors.shape[-1]
    counts = offsets[1:] - offsets[:-1]
    busy = torch.nonzero(counts).squeeze(1)
    busy = busy[torch.argsort(counts[busy], stable=True)]  # similar lengths together: little padding
    yy, xx = torch.meshgrid(torch.arange(tile, dtype=dtype), torch.arange(tile, dtype=dtype), indexing="ij")
    half = tile / 2.0
    px, py = xx.flatten() + 0.5 - half, yy.flatten() + 0.5 - half  # tile-centred pixel centres
    feat = torch.stack([px * px, py * py, px * py, px, py, torch.ones_like(px)], -1)  # [P, 6]
    px_count = tile * tile

    out_rgb, out_T, out_tiles = [], [], []
    i = 0
    counts_l = counts[busy].tolist()
    while i < len(busy):
        # grow the bucket while its padded block [B, tile², Kmax] stays within budget (min one tile)
        kmax = counts_l[i]
        j = i + 1
        while j < len(busy) and (j - i + 1) * px_count * min(counts_l[j], 4096) <= SLICE_ELEMENTS:
            kmax = counts_l[j]
            j += 1
        tiles = busy[i:j]
        B = len(tiles)
        centre = torch.stack([(tiles % tile_w) * tile, (tiles // tile_w) * tile], -1).to(dtype) + half
        T = torch.ones(B, px_count, dtype=dtype)
        rgb = torch.zeros(B, px_count, ch, dtype=dtype)
        kslice = max(1, SLICE_ELEMENTS // (B * px_count))
        ar = torch.arange(kmax)
        start, count = offsets[tiles], counts[tiles]
        for k0 in range(0, kmax, kslice):
            k = ar[k0:k0 + kslice]
            inside = k[None, :] < count[:, None]  # [B, k]
            g = gauss[torch.where(inside, start[:, None] + k[None, :], 0)]
            m = means2d[g] - centre[:, None, :]  # [B, k, 2]
            con = conics[g]
            a, b, c = con[..., 0], con[..., 1], con[..., 2]
            mx, my = m[..., 0], m[..., 1]
            # σ(x, y) = ½a(x-mx)² + ½c(y-my)² + b(x-mx)(y-my), expanded in (x², y², xy, x, y, 1);
            # log(o) - σ with padding entries pushed to exp(-1e4) = 0
            const = torch.where(inside, torch.log(opacities[g]) - (0.5 * a * mx * mx + 0.5 * c * my * my
                                                                   + b * mx * my), -1e4)
            coef = torch.stack([-0.5 * a, -0.5 * c, -b, a * mx + b * my, c * my + b * mx, const], 1)  # [B, 6, k]
            d_rgb, T = _CompositeSlice.apply(coef, colors[g], T, feat)
            rgb = rgb + d_rgb
        out_rgb.append(rgb)
        out_T.append(T)
        out_tiles.append(tiles)
        i = j

    full_rgb = background.to(dtype).expand(n_tiles, px_count, ch)
    full_T = torch.ones(n_tiles, px_count, dtype=dtype)
    if out_tiles:
        idx = torch.cat(out_tiles)
        T_busy = torch.cat(out_T)
        rgb_busy = torch.cat(out_rgb) + T_busy[..., None] * background.to(dtype)
        full_rgb = full_rgb.index_copy(0, idx, rgb_busy)
        full_T = full_T.index_copy(0, idx, T_busy)

    def to_image(x: Tensor) -> Tensor:
        x = x.reshape(tile_h, tile_w, tile, tile, -1).permute(0, 2, 1, 3, 4)
        return x.reshape(tile_h * tile, tile_w * tile, -1)[:height, :width]

    return to_image(full_rgb), 1.0 - to_image(full_T[..., None])


_FUSED: dict[str, Any] = {}


def fused_compositor() -> Any:
    """The numba compositor module, or None where numba is missing or fails to import (then torch composites)."""
    if "module" not in _FUSED:
        try:
            from spaceport.stages.train import composite_numba
        except Exception as exc:  # numba missing or broken: the torch path is always there
            print(f"stage=train phase=rasterize compositor=torch reason={type(exc).__name__}", flush=True)
            composite_numba = None
        _FUSED["module"] = composite_numba
    return _FUSED["module"]


def composite(
    means2d: Tensor, conics: Tensor, opacities: Tensor, colors: Tensor, background: Tensor,
    gauss: Tensor, offsets: Tensor, width: int, height: int, tile: int = TILE, compositor: str | None = None,
) -> tuple[Tensor, Tensor]:
    """Composite one camera's tiles with the numba kernels (``compositor="numba"``, the default) or
    :func:`composite_tiles` (``"torch"``, the reference); ``SPACEPORT_COMPOSITOR`` sets the default.

    Both give the same image and gradients (to rounding); numba is several times faster on CPU
    (bench/results/composite.md). Without numba the torch path runs.
    """
    choice = compositor or os.environ.get("SPACEPORT_COMPOSITOR", "numba")
    if choice not in ("numba", "torch"):
        from spaceport.core.errors import ConfigInvalid

        raise ConfigInvalid(f"The CPU compositor must be 'numba' or 'torch', got {choice!r}",
                            fix="Set SPACEPORT_COMPOSITOR (or compositor=) to 'numba' or 'torch', or unset it.")
    fused = fused_compositor() if choice == "numba" else None
    fn = fused.composite_fused if fused is not None else composite_tiles
    return fn(means2d, conics, opacities, colors, background, gauss, offsets, width, height, tile)


def _colors_for(colors: Tensor, cam: int, ids: Tensor, means: Tensor, viewmat: Tensor,
                sh_degree: int | None) -> Tensor:
    """Per-Gaussian RGB for the visible ``ids`` of one camera (SH evaluated like gsplat)."""
    if sh_degree is None:
        return (colors[cam] if colors.dim() == 3 else colors)[ids]
    from gsplat.cuda._torch_impl import _spherical_harmonics

    campos = -viewmat[:3, :3].T @ viewmat[:3, 3]
    dirs = means[ids] - campos
    return torch.clamp_min(_spherical_harmonics(sh_degree, dirs, colors[ids]) + 0.5, 0.0)


def rasterization_cpu(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
    viewmats: Tensor, Ks: Tensor, width: int, height: int, *, near_plane: float = 0.01,
    far_plane: float = 1e10, radius_clip: float = 0.0, eps2d: float = 0.3, sh_degree: int | None = None,
    backgrounds: Tensor | None = None, rasterize_mode: str = "classic", tile_size: int = CPU_TILE,
    compositor: str | None = None,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """The CPU path of :func:`rasterization` (gsplat's arguments and outputs; ``compositor``: see :func:`composite`)."""
    C = viewmats.shape[0]
    aa = rasterize_mode == "antialiased"
    proj = [project(means, quats, scales, opacities, viewmats[c], Ks[c], width, height, eps2d=eps2d,
                    near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip, antialiased=aa)
            for c in range(C)]
    # means2d is one [C, N, 2] tensor upstream of everything, so gsplat's strategies can read its grad
    means2d = torch.stack([p[1] for p in proj])
    radii = torch.stack([p[0] for p in proj])
    depths = torch.stack([p[2] for p in proj])
    conics = torch.stack([p[3] for p in proj])
    tile_w, tile_h = math.ceil(width / tile_size), math.ceil(height / tile_size)
    renders, alphas = [], []
    for c in range(C):
        gauss, offsets = intersect_tiles(means2d[c], radii[c], depths[c], tile_w, tile_h, tile_size)
        ids, local = torch.unique(gauss, return_inverse=True)
        op = opacities[ids] * proj[c][4][ids] if aa else opacities[ids]
        col = _colors_for(colors, c, ids, means, viewmats[c], sh_degree)
        bg = backgrounds[c] if backgrounds is not None else torch.zeros(col.shape[-1], dtype=means.dtype)
        img, alpha = composite(means2d[c][ids], conics[c][ids], op, col, bg, local, offsets,
                               width, height, tile_size, compositor)
        renders.append(img)
        alphas.append(alpha)
    info = {
        "means2d": means2d, "radii": radii, "depths": depths, "conics": conics, "width": width,
        "height": height, "n_cameras": C, "tile_size": tile_size, "gaussian_ids": None,
    }
    return torch.stack(renders), torch.stack(alphas), info


def rasterization(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
    viewmats: Tensor, Ks: Tensor, width: int, height: int, **kwargs: Any,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """gsplat's ``rasterization`` on CUDA tensors, :func:`rasterization_cpu` otherwise.

    Inputs as gsplat takes them: activated ``scales`` (not log), ``opacities`` in [0, 1], ``colors``
    ``[N,3]`` or SH coefficients ``[N,K,3]`` with ``sh_degree``; ``viewmats`` world-to-camera (OpenCV).
    """
    if means.is_cuda:
        from gsplat import rasterization as gsplat_rasterization

        return gsplat_rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                                    packed=False, **kwargs)
    return rasterization_cpu(means, quats, scales, opacities, colors, viewmats, Ks, width, height, **kwargs)


def rasterization_dense(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
    viewmats: Tensor, Ks: Tensor, width: int, height: int, *, sh_degree: int | None = None,
    backgrounds: Tensor | None = None, near_plane: float = 0.01, far_plane: float = 1e10,
    eps2d: float = 0.3, pixel_chunk: int = 4096, rasterize_mode: str = "classic",
) -> tuple[Tensor, Tensor]:
    """The straightforward reference: gsplat's torch projection, then every pixel against every Gaussian.

    No tiles, no culling beyond gsplat's radii; the same per-pixel rules (α clamp, 1/255 skip,
    T ≤ 1e-4 stop). Used by the tests as ground truth and by bench/train.py as the baseline.
    """
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    aa = rasterize_mode == "antialiased"
    radii, means2d, depths, conics, comp = _fully_fused_projection(
        means, covars, viewmats, Ks, width, height, eps2d=eps2d, near_plane=near_plane, far_plane=far_plane,
        calc_compensations=aa)
    ys, xs = torch.meshgrid(torch.arange(height, dtype=means.dtype), torch.arange(width, dtype=means.dtype),
                            indexing="ij")
    pix = torch.stack([xs.flatten(), ys.flatten()], -1) + 0.5
    renders, alphas = [], []
    for c in range(viewmats.shape[0]):
        ids = torch.nonzero((radii[c] > 0).all(-1)).squeeze(1)
        ids = ids[torch.argsort(depths[c][ids], stable=True)]
        col = _colors_for(colors, c, ids, means, viewmats[c], sh_degree)
        m, con, op = means2d[c][ids], conics[c][ids], opacities[ids]
        if aa:  # antialiased: opacity times the low-pass filter's energy compensation
            op = op * comp[c][ids]
        bg = backgrounds[c] if backgrounds is not None else torch.zeros(col.shape[-1], dtype=means.dtype)
        rows, acc = [], []
        for p0 in range(0, pix.shape[0], pixel_chunk):
            d = pix[p0:p0 + pixel_chunk, None, :] - m[None]
            dx, dy = d[..., 0], d[..., 1]
            sigma = 0.5 * (con[:, 0] * dx * dx + con[:, 2] * dy * dy) + con[:, 1] * dx * dy
            alpha = torch.clamp_max(op * torch.exp(-sigma), ALPHA_MAX)
            alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_MIN), alpha, 0.0)
            with torch.no_grad():
                done = torch.cumprod(1 - alpha, -1) <= T_MIN
            alpha = alpha.masked_fill(done, 0.0)
            Tk = torch.cumprod(1 - alpha, -1)
            T_before = torch.cat([torch.ones_like(Tk[:, :1]), Tk[:, :-1]], -1)
            rows.append((alpha * T_before) @ col + Tk[:, -1:] * bg)
            acc.append(1 - Tk[:, -1:])
        renders.append(torch.cat(rows).reshape(height, width, -1))
        alphas.append(torch.cat(acc).reshape(height, width, 1))
    return torch.stack(renders), torch.stack(alphas)


def splat_tensors(splat: Any, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """A :class:`spaceport.geometry.splat.Splat` as activated rasterization inputs (scales exp'd, opacities sigmoid'd)."""
    t = {k: torch.from_numpy(np.ascontiguousarray(getattr(splat, k), dtype=np.float32)).to(device)
         for k in ("means", "scales", "quats", "opacities", "sh0", "shN")}
    return {
        "means": t["means"], "quats": t["quats"], "scales": torch.exp(t["scales"]),
        "opacities": torch.sigmoid(t["opacities"]), "colors": torch.cat([t["sh0"][:, None, :], t["shN"]], 1),
    }


def render_splat(
    splat: Any, K: np.ndarray, world_to_camera: np.ndarray, width: int, height: int,
    sh_degree: int | None = None, background: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Render a splat from one camera: ``(H, W, 3)`` float32 in [0, 1] (CUDA when available, else CPU),
    antialiased when the splat was trained so."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    degree = splat.sh_degree if sh_degree is None else min(int(sh_degree), splat.sh_degree)
    with torch.no_grad():
        t = splat_tensors(splat, device)
        viewmat = torch.as_tensor(np.asarray(world_to_camera, dtype=np.float32), device=device)[None]
        Kt = torch.as_tensor(np.asarray(K, dtype=np.float32), device=device)[None]
        bg = torch.as_tensor(np.asarray(background, dtype=np.float32), device=device)[None]
        if len(splat) == 0:
            img = bg[0].expand(int(height), int(width), 3)
        else:
            img = rasterization(t["means"], t["quats"], t["scales"], t["opacities"], t["colors"], viewmat, Kt,
                                int(width), int(height), sh_degree=degree, backgrounds=bg,
                                rasterize_mode="antialiased" if splat.antialiased else "classic")[0][0]
        return img.clamp(0.0, 1.0).float().cpu().numpy()
