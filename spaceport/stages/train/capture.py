"""Figures of the capture itself, measured where training has the images and cameras, for the
quality gate: how sharp the photos are, how near the held-out views are to the training views, and
what a trivial render (each held-out photo's mean colour) scores.

None of them depends on how long training ran, so the gate can tell a bad capture from a short
run. Units: sharpness in 1/px² at :data:`SHARPNESS_PX`; offsets in widest training gaps (see
:func:`held_out_offsets`); PSNR in dB.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spaceport.core.summaries import CaptureFigures
from spaceport.geometry.imaging import psnr_db
from spaceport.stages.train.data import View

#: Rec. 601 luma weights: sharpness is measured on brightness, where blur shows.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: Longer side, pixels, at which sharpness is measured: the frame's structure, above pixel noise.
SHARPNESS_PX = 256
#: Smallest angular neighbour spacing, degrees: cameras that all look one way (a forward-facing
#: capture) would otherwise make any turn look like a huge step.
MIN_ANGLE_SPACING_DEG = 2.0


def sharpness(image: np.ndarray, size: int = SHARPNESS_PX) -> float:
    """Energy of the Laplacian over energy of the gradient of an ``[H, W]`` or ``[H, W, 3]`` image in
    [0, 1], box-averaged first to at most ``size`` pixels on its longer side; 1/px² at that size.

    Independent of contrast, brightness and the training resolution. Photos in focus score about 4
    and up, heavily blurred ones below 1 (measured on the real captures: ``bench/results/gate.md``);
    a flat image (no gradient) scores 0. At full resolution sensor noise, JPEG blocks and 8-bit steps
    in smooth blurred areas outweigh the detail (a blurred photo measured sharper than its original
    there), so the measure looks at the frame's structure, not at pixel noise.
    """
    g = np.asarray(image, dtype=np.float32)
    if g.ndim == 3:
        g = g @ LUMA
    h, w = g.shape
    if max(h, w) > size:
        from PIL import Image as PILImage

        f = size / max(h, w)
        g = np.asarray(PILImage.fromarray(g, mode="F").resize((max(1, round(w * f)), max(1, round(h * f))),
                                                             PILImage.Resampling.BOX))
    g = g.astype(np.float64)
    p = np.pad(g, 1, mode="edge")
    # Central differences and the 5-point Laplacian on the same grid.
    gx = (p[1:-1, 2:] - p[1:-1, :-2]) / 2
    gy = (p[2:, 1:-1] - p[:-2, 1:-1]) / 2
    lap = p[1:-1, 2:] + p[1:-1, :-2] + p[2:, 1:-1] + p[:-2, 1:-1] - 4 * g
    grad = float(np.mean(gx * gx + gy * gy))
    return float(np.mean(lap * lap)) / grad if grad > 0 else 0.0


def mean_colour_psnr(image: np.ndarray) -> float:
    """PSNR in dB of the image's own mean colour (per channel) against the image: what a render
    that knew nothing but the average colour would score. Held-out PSNR above it is what the splat
    learned, comparable across scenes."""
    img = np.asarray(image, dtype=np.float64).reshape(-1, np.asarray(image).shape[-1])
    return psnr_db(float(np.mean((img - img.mean(0)) ** 2)))


def _centre_and_axis(world_to_camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w2c = np.asarray(world_to_camera, dtype=np.float64)
    r = w2c[:3, :3]
    return -r.T @ w2c[:3, 3], r[2]  # OpenCV: the optical axis is the camera's +z, row 2 of R


def held_out_offsets(train: Sequence[np.ndarray], test: Sequence[np.ndarray]) -> list[float]:
    """For each held-out camera (4x4 world-to-camera), its offset from the nearest training camera
    over the widest gap between neighbouring training cameras.

    Offsets count steps of the typical spacing between neighbouring training cameras: the median,
    over training cameras, of the distance to the nearest other one, and likewise of the angle
    between optical axes (at least :data:`MIN_ANGLE_SPACING_DEG`). The offset between two cameras is
    the larger of their distance and their angle, each in steps. The widest gap is the largest,
    over training cameras, of the offset to their nearest other training camera. Below 1 the
    held-out view sits among the training views as they sit among each other; above 1 it lies in a
    gap wider than any the training views leave, which the held-out PSNR then measures instead of
    the splat.
    """
    if len(train) < 2 or not test:
        return []
    tc, ta = map(np.array, zip(*(_centre_and_axis(m) for m in train), strict=True))
    dist = np.linalg.norm(tc[:, None] - tc[None], axis=2)
    ang = np.degrees(np.arccos(np.clip(ta @ ta.T, -1.0, 1.0)))
    np.fill_diagonal(dist, np.inf)
    np.fill_diagonal(ang, np.inf)
    step_d = float(np.median(dist.min(1))) or 1.0  # cameras at one place: any distance is a step
    step_a = max(float(np.median(ang.min(1))), MIN_ANGLE_SPACING_DEG)
    widest = float(np.maximum(dist / step_d, ang / step_a).min(1).max()) or 1.0
    out = []
    for m in test:
        c, a = _centre_and_axis(m)
        d = np.linalg.norm(tc - c, axis=1) / step_d
        t = np.degrees(np.arccos(np.clip(ta @ a, -1.0, 1.0))) / step_a
        out.append(float(np.min(np.maximum(d, t))) / widest)
    return out


def capture_figures(views: Sequence[View]) -> CaptureFigures:
    """The gate's capture figures of the training views: sharpness of every image (training
    resolution), the farthest held-out camera's offset from the training cameras, and the held-out
    photos' mean-colour PSNR (both None when nothing is held out)."""
    train = [v for v in views if v.split == "train"]
    test = [v for v in views if v.split == "test"]
    sharp = [sharpness(v.image) for v in views]
    offsets = held_out_offsets([v.world_to_camera for v in train], [v.world_to_camera for v in test])
    far = int(np.argmax(offsets)) if offsets else None
    return CaptureFigures(
        sharpness=round(float(np.median(sharp)), 4),
        sharpness_min=round(float(np.min(sharp)), 4),
        held_out_offset=None if far is None else round(offsets[far], 3),
        held_out_farthest=None if far is None else test[far].name,
        baseline_psnr=round(float(np.mean([mean_colour_psnr(v.image) for v in test])), 4) if test else None,
    )
