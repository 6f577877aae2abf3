"""The quality cost of compression: renders of the decoded splat against renders of the original.

Cameras are the training stage's held-out ones (``cameras.json``, split "test" first), scaled so
the longest side is ``resolution`` pixels; without them, a fixed orbit around the splat's bounds.
Rendering is the training stage's rasterizer (:func:`spaceport.train.rasterize.render_splat`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spaceport.errors import ModelInvalid
from spaceport.imaging import look_at, psnr_db
from spaceport.splat import Splat


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
    try:
        cams = json.loads(Path(path).read_text())["cameras"]
        test = [c for c in cams if c.get("split") == "test"] or cams
        pick = [test[i] for i in np.linspace(0, len(test) - 1, min(count, len(test))).round().astype(int)]
        views = []
        for c in pick:
            K, w, h = _scaled(np.asarray(c["K"], float), int(c["width"]), int(c["height"]), resolution)
            views.append(View(str(c.get("name", "")), K, np.asarray(c["world_to_camera"], np.float64), w, h))
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ModelInvalid(f"{Path(path).name} is not a valid cameras.json ({exc})") from exc
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
    from spaceport.train.rasterize import render_splat

    return [render_splat(splat, v.K, v.world_to_camera, v.width, v.height) for v in views]


def compare(reference: list[np.ndarray], splat: Splat, views: list[View]) -> dict:
    """PSNR (dB, from the mean MSE over views) and mean SSIM of ``splat``'s renders against ``reference``."""
    renders = render_all(splat, views)
    mse = np.mean([np.mean((r.astype(np.float64) - ref) ** 2) for r, ref in zip(renders, reference, strict=True)])
    value = psnr_db(mse)
    return {"psnr": round(value, 3), "ssim": round(float(np.mean([ssim(r, ref) for r, ref in
                                                                   zip(renders, reference, strict=True)])), 4)}
