"""Fixture stage outputs written from the HELPERS.md contracts (not from the stages' code),
so the runner, report and viewer are tested without running SfM, training or compression."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from spaceport import colmap
from spaceport.splat import Splat, write_ply

DATA = Path(__file__).parent / "data"
SPHERE_SOG = DATA / "sphere.sog"


def _orbit_cameras(n: int = 12, radius: float = 3.0, size: tuple[int, int] = (64, 48)) -> list[dict]:
    """Cameras on a circle in the x-z plane looking at the origin (OpenCV convention, y down)."""
    cams = []
    w, h = size
    K = [[60.0, 0, w / 2], [0, 60.0, h / 2], [0, 0, 1]]
    for i in range(n):
        a = 2 * math.pi * i / n
        c = np.array([radius * math.sin(a), -0.5, -radius * math.cos(a)])
        z = -c / np.linalg.norm(c)
        x = np.cross([0, 1, 0], z)
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        R = np.stack([x, y, z])
        w2c = np.eye(4)
        w2c[:3, :3] = R
        w2c[:3, 3] = -R @ c
        cams.append({"name": f"view_{i:03d}.png", "split": "test" if i % 8 == 0 else "train",
                     "width": w, "height": h, "K": K, "world_to_camera": w2c.tolist()})
    return cams


def write_sfm(out: Path, cams: list[dict]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    cam = colmap.Camera(1, "PINHOLE", cams[0]["width"], cams[0]["height"], np.array([60.0, 60.0, 32.0, 24.0]))
    images = {}
    for i, c in enumerate(cams, start=1):
        w2c = np.array(c["world_to_camera"])
        images[i] = colmap.Image(i, colmap.rotmat_to_qvec(w2c[:3, :3]), w2c[:3, 3], 1, c["name"])
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(300, 3)) * 0.5
    pts = colmap.Points3D(np.arange(1, 301), xyz, rng.integers(0, 255, (300, 3)).astype(np.uint8),
                          np.full(300, 0.5), np.full(300, 3))
    colmap.write_model_binary(colmap.Model({1: cam}, images, pts), out / "sparse" / "0")
    (out / "images").mkdir(exist_ok=True)
    for c in cams:
        PILImage.new("RGB", (c["width"], c["height"]), (90, 120, 150)).save(out / "images" / c["name"])
    (out / "sfm.json").write_text(json.dumps({
        "input_images": len(cams), "usable_images": len(cams), "registered_images": len(cams),
        "points": 300, "mean_reprojection_error": 0.42, "matcher": "exhaustive", "mapper": "incremental",
        "seconds": {"extract": 1.0, "match": 2.0, "map": 3.0, "total": 6.5}, "peak_memory_mb": 321.0,
    }))
    return out


def write_train(out: Path, cams: list[dict], psnr: float = 24.5, gaussians: int = 3000) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    n = 50
    write_ply(Splat(rng.normal(size=(n, 3)).astype(np.float32), np.full((n, 3), -3.0, np.float32),
                    np.tile(np.float32([1, 0, 0, 0]), (n, 1)), np.zeros(n, np.float32),
                    rng.normal(size=(n, 3)).astype(np.float32), np.zeros((n, 0, 3), np.float32)), out / "splat.ply")
    history = [{"step": s, "loss": 0.2 * math.exp(-s / 300) + 0.01, "psnr": 12 + 12 * (1 - math.exp(-s / 300))}
               for s in range(0, 1001, 50)]
    (out / "metrics.json").write_text(json.dumps({
        "test_psnr": psnr, "test_ssim": 0.81, "num_gaussians": gaussians, "steps": 1000, "history": history,
        "seconds": {"train": 40.0, "eval": 2.0, "total": 43.0}, "peak_memory_mb": 900.0,
    }))
    (out / "cameras.json").write_text(json.dumps({"cameras": cams}))
    (out / "renders").mkdir(exist_ok=True)
    for c in cams:
        if c["split"] == "test":
            stem = Path(c["name"]).stem
            PILImage.new("RGB", (64, 48), (200, 50, 50)).save(out / "renders" / f"{stem}_render.png")
            PILImage.new("RGB", (64, 48), (50, 200, 50)).save(out / "renders" / f"{stem}_gt.png")
    return out


def write_compressed(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SPHERE_SOG, out / "scene.sog")
    (out / "scene.spz").write_bytes(b"\0" * 2000)
    (out / "compress.json").write_text(json.dumps({
        "input_bytes": 204414, "sog_bytes": SPHERE_SOG.stat().st_size, "spz_bytes": 2000, "ratio": 6.4,
        "num_gaussians": 3000, "quality": {"psnr": 41.2, "ssim": 0.99},
        "seconds": {"encode": 0.5, "total": 0.8}, "peak_memory_mb": 250.0,
    }))
    return out


@pytest.fixture
def cams() -> list[dict]:
    return _orbit_cameras()


@pytest.fixture
def job_dir(tmp_path: Path, cams: list[dict]) -> Path:
    """A job folder with every stage's fixture output."""
    root = tmp_path / "job"
    write_sfm(root / "sfm", cams)
    write_train(root / "train", cams)
    write_compressed(root / "compressed")
    return root
