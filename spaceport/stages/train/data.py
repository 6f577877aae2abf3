"""The training views: a COLMAP model read with spaceport.geometry.colmap (never pycolmap) and its images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spaceport.core.errors import EmptyInput, InputInvalid, ModelInvalid, TooFewImages
from spaceport.core.summaries import CamerasFile, CameraView
from spaceport.geometry.colmap import Model, read_model
from spaceport.geometry.exif import exif_camera, exif_exposure


@dataclass
class View:
    """One registered image at training resolution, with its full-resolution camera."""

    name: str
    split: str  # "train" | "test"
    image: np.ndarray  # (H, W, 3) float32 in [0, 1], downscaled
    K: np.ndarray  # (3, 3) at training resolution
    world_to_camera: np.ndarray  # (4, 4) OpenCV
    full_K: np.ndarray  # (3, 3) at the image's own resolution
    full_size: tuple[int, int]  # (width, height)
    exposure: float | None = None
    """Exposure time x ISO / f-number² from the photo's EXIF (None: not recorded), see
    :mod:`spaceport.stages.train.exposure`."""
    camera: str = ""
    """The photo's EXIF make and model (exposures are compared within one camera)."""

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


def load_model(model_dir: Path) -> Model:
    """Read the sparse model; a missing or empty one raises ModelInvalid / EmptyInput."""
    if not model_dir.is_dir():
        raise ModelInvalid(f"No sparse model folder at {model_dir}",
                           "Pass the SfM stage's output folder (it holds sparse/0 and images/), or set model_dir")
    model = read_model(model_dir)
    if not model.images:
        raise EmptyInput(f"The sparse model in {model_dir} has no registered images",
                         "Run the SfM stage again with more overlapping photos")
    if len(model.points) == 0:
        raise EmptyInput(f"The sparse model in {model_dir} has no 3D points to start the Gaussians from",
                         "Run the SfM stage again; it must triangulate points")
    return model


def load_views(model: Model, images_dir: Path, test_every: int, downscale: int) -> list[View]:
    """Every registered image, sorted by name; every ``test_every``-th one (0, N, 2N, ...) is held out."""
    from PIL import Image as PILImage

    if not images_dir.is_dir():
        raise InputInvalid(f"No images folder at {images_dir}", "Pass the SfM stage's output folder")
    images = sorted(model.images.values(), key=lambda im: im.name)
    missing = [im.name for im in images if not (images_dir / im.name).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputInvalid(f"{len(missing)} of {len(images)} registered images are missing from {images_dir}: {shown}",
                           "Keep the SfM output's images/ folder next to sparse/", missing=len(missing))
    if len(images) < 2:
        raise TooFewImages(f"Only {len(images)} registered image; training needs at least 2",
                           "Upload more photos of the scene from different viewpoints", images=len(images))
    views = []
    for i, im in enumerate(images):
        cam = model.cameras.get(im.camera_id)
        if cam is None:
            raise ModelInvalid(f"Image {im.name} refers to camera {im.camera_id}, which the model does not have")
        if cam.model not in ("PINHOLE", "SIMPLE_PINHOLE"):
            raise ModelInvalid(f"Camera {cam.id} is {cam.model}; training needs undistorted PINHOLE cameras",
                               "Use the SfM stage's undistorted output")
        with PILImage.open(images_dir / im.name) as pil:
            exif = pil.getexif()
            exposure, camera = exif_exposure(exif), exif_camera(exif)
            pil = pil.convert("RGB")
            if pil.size != (cam.width, cam.height):
                raise ModelInvalid(f"{im.name} is {pil.size[0]}x{pil.size[1]} but its camera is "
                                   f"{cam.width}x{cam.height}")
            w, h = cam.width // downscale, cam.height // downscale
            if w < 8 or h < 8:
                raise InputInvalid(f"downscale={downscale} leaves {im.name} at {w}x{h} pixels",
                                   "Use a smaller downscale")
            if downscale > 1:
                pil = pil.resize((w, h), PILImage.Resampling.BOX)
            image = np.asarray(pil, dtype=np.float32) / 255.0
        full_K = cam.K()
        K = full_K.copy()
        K[:2] /= downscale  # pixel edges stay aligned: x' = x / f
        split = "test" if test_every and i % test_every == 0 else "train"
        views.append(View(im.name, split, image, K, im.world_to_camera(), full_K, (cam.width, cam.height),
                          exposure, camera))
    if not any(v.split == "train" for v in views):
        raise TooFewImages("No images left to train on after holding out test views", "Set test_every=0")
    return views


def cameras_json(views: list[View]) -> CamerasFile:
    """The shared cameras.json document (full-resolution intrinsics, OpenCV world-to-camera)."""
    return CamerasFile(cameras=[
        CameraView(name=v.name, split=v.split, width=v.full_size[0], height=v.full_size[1],
                   K=np.asarray(v.full_K, dtype=float).tolist(),
                   world_to_camera=np.asarray(v.world_to_camera, dtype=float).tolist())
        for v in views
    ])
