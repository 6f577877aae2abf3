"""Figures of the capture itself, measured where training has the images and cameras, for the
quality gate: how sharp the photos are, how near the held-out views are to the training views, and
what a trivial render (each held-out photo's mean colour) scores.

None of them depends on how long training ran, so the gate can tell a bad capture from a short
run. Units: pixels at the training resolution; distances in neighbour spacings (see
:func:`held_out_offsets`); PSNR in dB.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spaceport.imaging import psnr_db
from spaceport.summaries import CaptureFigures

#: Rec. 601 luma weights: sharpness is measured on brightness, where blur shows.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: Smallest angular neighbour spacing, degrees: cameras that all look one way (a forward-facing
#: capture) would otherwise make any turn look like a huge step.
MIN_ANGLE_SPACING_DEG = 2.0


def sharpness(image: np.ndarray) -> float:
    """Energy of the Laplacian over energy of the gradient of an ``[H, W]`` or ``[H, W, 3]`` image, 1/px².

    Independent of contrast and brightness; a blur of width s pixels brings it to about 1/s² at most,
    while a photo in focus at its own resolution scores about 5 (measured on the real captures at the
    ``fast`` preset's resolution). A flat image (no gradient) scores 0.
    """
    g = np.asarray(image, dtype=np.float64)
    if g.ndim == 3:
        g = g @ LUMA.astype(np.float64)
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
    """For each held-out camera (4x4 world-to-camera), how many neighbour steps it is from the
    nearest training camera.

    A step is the typical spacing between neighbouring training cameras: the median, over training
    cameras, of the distance to the nearest other one, and likewise of the angle between optical
    axes (at least :data:`MIN_ANGLE_SPACING_DEG`). The offset to a training camera is the larger
    of its distance and its angle, each in steps; a held-out view's figure is the smallest over
    the training cameras. About 1 means it sits between training views like they sit between each
    other; 2 and more means a gap the training views do not cover.
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
    out = []
    for m in test:
        c, a = _centre_and_axis(m)
        d = np.linalg.norm(tc - c, axis=1) / step_d
        t = np.degrees(np.arccos(np.clip(ta @ a, -1.0, 1.0))) / step_a
        out.append(float(np.min(np.maximum(d, t))))
    return out


def capture_figures(images: Sequence[np.ndarray], train_cameras: Sequence[np.ndarray],
                    test_cameras: Sequence[np.ndarray], test_images: Sequence[np.ndarray]) -> CaptureFigures:
    """The gate's capture figures: sharpness of every image (training resolution), the held-out
    cameras' offsets from the training cameras, and the held-out photos' mean-colour PSNR."""
    sharp = [sharpness(im) for im in images]
    offsets = held_out_offsets(train_cameras, test_cameras)
    return CaptureFigures(
        sharpness=round(float(np.median(sharp)), 4),
        sharpness_min=round(float(np.min(sharp)), 4),
        held_out_offset=round(max(offsets), 3) if offsets else None,
        baseline_psnr=round(float(np.mean([mean_colour_psnr(im) for im in test_images])), 4) if test_images else None,
    )
