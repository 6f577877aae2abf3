"""Fixture stage outputs built from the summary models the stages write (spaceport.core.summaries),
so the runner, report and viewer are tested without running SfM, training or compression. The
numbers are made up; the shapes are the stages' own (a model that changes changes them here)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from spaceport.core.summaries import (
    CameraInfo,
    CompressSummary,
    ExposureFit,
    IngestSummary,
    SfmAttempt,
    SfmSummary,
    TrainMetrics,
    TrainStep,
    write_summary,
)
from spaceport.geometry import colmap
from spaceport.geometry.imaging import look_at
from spaceport.geometry.splat import Splat, write_ply
from spaceport.stages.compress.spz import encode_spz
from tests.support.synthetic_splats import synthetic_splat

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
        w2c = look_at(c, np.zeros(3), up=np.array([0.0, -1.0, 0.0]))  # world up is -y here
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
    n = len(cams)
    cam_info = CameraInfo(model="PINHOLE", width=cams[0]["width"], height=cams[0]["height"],
                          params=[60.0, 60.0, 32.0, 24.0])
    write_summary(SfmSummary(
        input="upload", input_kind="images", input_images=n, usable_images=n, corrupt_images=0,
        registered_images=n, registered_fraction=1.0, points=300, mean_reprojection_error=0.42,
        mean_track_length=3.0, matcher="exhaustive", mapper="incremental",
        auto={"matcher": True, "mapper": True}, fallback=False,
        first_choice={"matcher": "exhaustive", "mapper": "incremental"},
        attempts=[SfmAttempt(matcher="exhaustive", mapper="incremental", verified_pairs=66, registered=n,
                             match_seconds=2.0, map_seconds=3.0)],
        camera_before_undistortion=cam_info, camera=cam_info,
        ingest=IngestSummary(kind="images", media="images", images_dir="images", input_files=n, corrupt=0, skipped_other=0,
                             downscaled=0, exif_rotated=0, frames_decoded=0, frames_blurry=0, sharpness=[],
                             usable=n),
        threads=2, config={"max_side": "800"}, seconds={"extract": 1.0, "match": 2.0, "map": 3.0, "total": 6.5},
        peak_memory_mb=321.0), out)
    return out


def write_train(out: Path, cams: list[dict], psnr: float = 24.5, gaussians: int = 3000,
                exposure: ExposureFit | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    n = 50
    write_ply(Splat(rng.normal(size=(n, 3)).astype(np.float32), np.full((n, 3), -3.0, np.float32),
                    np.tile(np.float32([1, 0, 0, 0]), (n, 1)), np.zeros(n, np.float32),
                    rng.normal(size=(n, 3)).astype(np.float32), np.zeros((n, 0, 3), np.float32)), out / "splat.ply")
    history = [TrainStep(step=s, loss=0.2 * math.exp(-s / 300) + 0.01, psnr=12 + 12 * (1 - math.exp(-s / 300)),
                         num_gaussians=gaussians) for s in range(50, 1001, 50)]
    write_summary(TrainMetrics(
        test_psnr=psnr, test_ssim=0.81, train_psnr=psnr + 1, num_gaussians=gaussians, steps=1000,
        stopped_early=False, sh_degree=0, held_out=[c["name"] for c in cams if c["split"] == "test"],
        evaluated_on="test", train_images=sum(c["split"] == "train" for c in cams), width=64, height=48,
        splat_bytes=(out / "splat.ply").stat().st_size, device="cpu", strategy="default", malloc_tuned=False,
        seconds={"optimise": 40.0, "evaluate": 2.0, "total": 43.0}, seconds_per_step=0.04, peak_memory_mb=900.0,
        config={"steps": "1000"}, history=history, exposure=exposure), out)
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
    spz = encode_spz(synthetic_splat(3000, 0))
    (out / "scene.spz").write_bytes(spz)
    sog = SPHERE_SOG.stat().st_size
    write_summary(CompressSummary.model_validate({
        "input": {"path": "splat.ply", "bytes": 204414, "ply_bytes": 204414, "sh_degree": 0},
        "gaussians": {"input": 3000, "kept": 3000, "dropped_nonfinite": 0, "dropped_degenerate": 0,
                      "dropped_for_budget": 0},
        "sh_degree": 0, "outputs": {"scene.sog": sog, "sog/": sog, "scene.spz": len(spz)},
        "ratio": {"sog": round(204414 / sog, 2), "spz": round(204414 / len(spz), 2)},
        "bytes_per_attribute": {"means": sog // 2}, "bytes_per_gaussian": {"sog": sog / 3000, "spz": len(spz) / 3000},
        "budget": {"attempts": [{"sh_degree": 0, "gaussians": 3000, "sog_bytes": sog}]},
        "quality": {"views": 8, "camera_source": "orbit", "resolution": [64, 48],
                    "formats": {"sog": {"psnr": 41.2, "ssim": 0.99}, "spz": {"psnr": 44.0, "ssim": 0.995}}},
        "seconds": {"encode_sog": 0.5, "total": 0.8}, "peak_memory_mb": 250.0, "config": {"sh_degree": "0"},
    }), out)
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
