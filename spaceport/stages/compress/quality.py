"""The quality cost of compression: renders of the decoded splat against renders of the original.

Cameras are the training stage's held-out ones (``cameras.json``, split "test" first), scaled so
the longest side is ``resolution`` pixels; without them, a fixed orbit around the splat's bounds.
Rendering is the training stage's rasterizer (:func:`spaceport.stages.train.rasterize.render_splat`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spaceport.core.errors import ModelInvalid
from spaceport.core.summaries import CamerasFile, read_summary
from spaceport.geometry.imaging import look_at, psnr_db
from spaceport.geometry.splat import Splat


@dataclass
class View:
    name: str
    K: np.ndarray
    world_to_camera: np.ndarray
    width: int
    height: int


def _scaled(K: np.ndarray, width: int, height: int, resolution: int) -> tuple[np.ndarray, int, int]:
    s = min(1.0, resolution / max(width, height))
    K = np.array(K, np.float64).copy()
    K[:2] *= s
    return K, max(1, round(width * s)), max(1, round(height * s))


def cameras_from_json(path: Path, count: int, resolution: int) -> list[View]:
    """Up to ``count`` views from cameras.json, held-out ("test") ones first, evenly spaced."""
    cams = read_summary(CamerasFile, Path(path)).cameras
    if not cams:
        raise ModelInvalid(f"{path} lists no cameras", "Re-run the training stage; it writes cameras.json")
    test = [c for c in cams if c.split == "test"] or cams
    views = []
    for i in np.linspace(0, len(test) - 1, min(count, len(test))).round().astype(int):
        c = test[i]
        K, w, h = _scaled(np.asarray(c.K, float), c.width, c.height, resolution)
        views.append(View(c.name, K, np.asarray(c.world_to_camera, np.float64), w, h))
    return views


def orbit_cameras(splat: Splat, count: int, resolution: int) -> list[View]:
    """A ring of cameras 20 degrees above the splat's centre, at a distance that frames its core.

    Bounds are the 2nd-98th percentiles of the means so a few floaters do not shrink the scene.
    """
    lo, hi = np.percentile(splat.means, [2, 98], axis=0)
    centre = (lo + hi) / 2
    radius = max(float(np.linalg.norm(hi - lo)) / 2, 1e-3)
    fov = math.radians(60)
    dist = radius / math.sin(fov / 2) * 1.1
    w, h = resolution, max(16, resolution * 3 // 4)
    f = (w / 2) / math.tan(fov / 2)
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
    up = np.array([0.0, 0.0, 1.0])  # the orbit axis; any fixed axis gives a deterministic ring
    views = []
    for i in range(count):
        a = 2 * math.pi * i / count
        el = math.radians(20)
        eye = centre + dist * np.array([math.cos(a) * math.cos(el), math.sin(a) * math.cos(el), math.sin(el)])
        views.append(View(f"orbit_{i:02d}", K, look_at(eye, centre, up), w, h))
    return views


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=2, data_range=1.0))


def render_all(splat: Splat, views: list[View]) -> list[np.ndarray]:
    from spaceport.stages.train.rasterize import render_splat

    return [render_splat(splat, v.K, v.world_to_camera, v.width, v.height) for v in views]


def compare(reference: list[np.ndarray], splat: Splat, views: list[View]) -> dict:
    """PSNR (dB, from the mean MSE over views) and mean SSIM of ``splat``'s renders against ``reference``."""
    renders = render_all(splat, views)
    mse = np.mean([np.mean((r.astype(np.float64) - ref) ** 2) for r, ref in zip(renders, reference, strict=True)])
    value = psnr_db(mse)
    return {"psnr": round(value, 3), "ssim": round(float(np.mean([ssim(r, ref) for r, ref in
                                                                   zip(renders, reference, strict=True)])), 4)}


#: Smallest share of a view's pixels the budgeted measurement crops the decoded renders to.
MIN_CROP = 1 / 16


def crop_view(view: View, fraction: float) -> tuple[View, tuple[slice, slice]]:
    """The centred sub-window holding ``fraction`` of the view's pixels, as a camera, and its slice of the image.

    A render of the sub-window camera equals that slice of the full render (each pixel depends
    only on the Gaussians whose footprint covers it), at the cost of the Gaussians inside it.
    Offsets are multiples of 8 px and sides at least 16 px (SSIM's window needs 7).
    """
    side = math.sqrt(max(min(fraction, 1.0), 0.0))
    w, h = max(16, round(view.width * side)), max(16, round(view.height * side))
    w, h = min(w, view.width), min(h, view.height)
    x0, y0 = (view.width - w) // 2 // 8 * 8, (view.height - h) // 2 // 8 * 8
    K = view.K.copy()
    K[0, 2] -= x0
    K[1, 2] -= y0
    return View(view.name, K, view.world_to_camera, w, h), (slice(y0, y0 + h), slice(x0, x0 + w))


#: Crops the budgeted measurement chooses from (shares of a view's pixels), largest first.
CROPS = (1.0, 0.25, MIN_CROP)


def measure(original: Splat, decoded: dict[str, Splat], views: list[View], budget_s: float) -> dict:
    """PSNR/SSIM of each decoded splat's renders against the original's, within a time budget.

    The cost is probed first: the original is rendered for the smallest window of the first view
    (:data:`MIN_CROP` of its pixels, centred). A whole view is assumed to cost that time over the
    window's share (an upper bound: the per-Gaussian projection is paid once per render,
    whatever the window), and the largest of :data:`CROPS` whose renders (the original's and one
    per format) fit the budget left is used for every view; at the smallest the probe is the
    original's render. Views are then taken in order (held-out cameras first) while their
    measured cost still fits; the first always counts. A cropped render is compared with the same
    window of the original's. What was measured (views, crop, seconds) is recorded, so a partial
    measurement is never presented as a full one. On a GPU the renders are gsplat's CUDA kernels
    (:func:`spaceport.stages.train.rasterize.render_splat`).
    """
    import time

    from spaceport.stages.train.rasterize import render_splat

    def render(splat: Splat, view: View) -> np.ndarray:
        return render_splat(splat, view.K, view.world_to_camera, view.width, view.height)

    t0 = time.perf_counter()
    probe_view = crop_view(views[0], MIN_CROP)[0]
    probe = render(original, probe_view)
    whole = (time.perf_counter() - t0) / MIN_CROP
    left = budget_s - (time.perf_counter() - t0)
    crop = next((c for c in CROPS if whole * c * (1 + len(decoded)) <= left), MIN_CROP)
    errors: dict[str, list[tuple[float, float]]] = {f: [] for f in decoded}
    per_view, used = 0.0, 0
    for i, view in enumerate(views):
        if i and time.perf_counter() - t0 + per_view > budget_s:
            break
        t = time.perf_counter()
        target = crop_view(view, crop)[0] if crop < 1.0 else view
        ref = probe if i == 0 and crop == MIN_CROP else render(original, target)
        for fmt, splat in decoded.items():
            img = render(splat, target)
            errors[fmt].append((float(np.mean((img.astype(np.float64) - ref) ** 2)), ssim(img, ref)))
        per_view = time.perf_counter() - t
        used += 1
    formats = {}
    for fmt, pairs in errors.items():
        mse = float(np.mean([m for m, _ in pairs]))
        formats[fmt] = {"psnr": round(psnr_db(mse), 3),
                        "ssim": round(float(np.mean([s for _, s in pairs])), 4)}
    return {"views": used, "views_planned": len(views), "crop": round(crop, 4), "budget_seconds": budget_s,
            "seconds": round(time.perf_counter() - t0, 3), "formats": formats}
