"""Image metrics used in the loss and on the held-out views: PSNR and SSIM (Wang et al. 2004)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from spaceport.geometry.imaging import psnr_db


def psnr(img: Tensor, ref: Tensor) -> float:
    """PSNR in dB of images in [0, 1] (any shape)."""
    return psnr_db(float(torch.mean((img.clamp(0, 1) - ref) ** 2)))


def _window(size: int = 11, sigma: float = 1.5, dtype: torch.dtype = torch.float32,
            device: torch.device | str = "cpu") -> Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def ssim(img: Tensor, ref: Tensor) -> Tensor:
    """Mean SSIM of ``[H, W, C]`` (or ``[B, H, W, C]``) images in [0, 1]; differentiable.

    11×11 Gaussian window (σ = 1.5), valid region only, C1 = 0.01², C2 = 0.03²: the values of
    skimage's ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1)`` up to its border handling.
    """
    if img.dim() == 3:
        img, ref = img[None], ref[None]
    x = img.permute(0, 3, 1, 2)
    y = ref.permute(0, 3, 1, 2)
    ch = x.shape[1]
    g = _window(dtype=x.dtype, device=x.device)  # on the images' device: CUDA images need a CUDA window
    wx = g.view(1, 1, 1, -1).repeat(ch, 1, 1, 1)
    wy = g.view(1, 1, -1, 1).repeat(ch, 1, 1, 1)

    def blur(t: Tensor) -> Tensor:  # separable Gaussian, depthwise
        return F.conv2d(F.conv2d(t, wx, groups=ch), wy, groups=ch)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean()
