"""Options of the SfM stage (one frozen dataclass) and its presets.

Imported by the Lambdas, the plan and the CDK app: stdlib and spaceport.core.config/errors only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from spaceport.core.errors import ConfigInvalid


@dataclass(frozen=True)
class SfmConfig:
    """Everything the SfM stage can be told; every field has a CLI flag and a hyperparameter."""

    max_side: int = 1600
    """Images whose longer side exceeds this many pixels are downscaled to it before SfM."""
    min_images: int = 5
    """Fewer usable images (or sharp video frames) than this fails with TooFewImages."""
    video_frames: int = 120
    """How many frames to sample from a video (one per equal time window, the sharpest)."""
    video_fps: float = 0.0
    """If above 0, sample this many frames per second of video instead of video_frames."""
    min_sharpness: float = 15.0
    """Frames whose sharpness (variance of the Laplacian of the grey image at <= 640 px, 0-255 scale) is below this are blurry and dropped."""
    matcher: Literal["auto", "exhaustive", "sequential", "retrieval"] = "auto"
    """Which image pairs to match: auto picks sequential for video, exhaustive for small sets, retrieval (a vocabulary built from the upload's own SIFT features) for large ones."""
    exhaustive_max_images: int = 40
    """auto matches every pair up to this many images, and uses retrieval above it."""
    retrieval_neighbors: int = 12
    """Retrieval: each image is matched with this many most similar images."""
    sequential_overlap: int = 8
    """Sequential (video): each frame is matched with this many following frames (plus quadratic steps)."""
    mapper: Literal["auto", "incremental", "global"] = "auto"
    """Mapper: incremental (COLMAP) or global (GLOMAP); auto picks global from global_min_images images up (see pipeline.choose)."""
    global_min_images: int = 100
    """auto uses the global mapper for at least this many images, incremental below; a global model that fails validation falls back to incremental."""
    global_tracks_per_view: int = 100
    """Global mapper: solve poses with only enough tracks to give each image this many, then retriangulate all (3x faster mapping at 120 views, same accuracy)."""
    min_registered_fraction: float = 0.7
    """Below this fraction of usable images registered, retry with the other mapper/matcher, then fail with TooFewRegistered."""
    max_features: int = 8192
    """Maximum SIFT features per image."""
    camera_model: Literal["SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV"] = "SIMPLE_RADIAL"
    """COLMAP camera model estimated before undistortion (the output is always PINHOLE)."""
    refine_principal_point: bool = True
    """A final bundle adjustment also refines the principal point (the mappers keep it at the image centre): halved the median camera-centre error on fountain-P11 (6.0 -> 2.8 mm) and herzjesu-P8 (8.0 -> 3.9 mm) against their laser scans."""
    max_principal_point_offset: float = 0.015
    """The refined principal point is kept only within this fraction of the image width/height from the centre: the laser-scanned captures measured 0.6-1.0% at full size (as their calibration), 1.3% at 768 px; on the synthetic ring orbit, where it trades off against the common camera tilt, it drifted to 4.2% (incremental) and 1.8% (global) and cost 2 degrees of rotation."""
    single_camera: Literal["auto"] | bool = "auto"
    """Camera grouping: auto shares one camera among images with the same size and EXIF make/model/focal (COLMAP's AUTO mode; a video is one camera); true forces one camera for all; false gives each image its own."""
    num_threads: int = 0
    """CPU threads for pycolmap; 0 means all cores this process may use."""
    seed: int = 0
    """Random seed for RANSAC and the mappers, for repeatable runs."""
    max_extracted_mb: int = 20480
    """A zip that would extract to more than this many MiB is refused as a zip bomb."""
    max_files: int = 20000
    """A zip with more entries than this is refused as a zip bomb."""
    keep_work: bool = False
    """Keep the working folder (database, raw model) in the output for debugging."""

    def __post_init__(self) -> None:
        positive = ("max_side", "min_images", "video_frames", "exhaustive_max_images", "retrieval_neighbors",
                    "sequential_overlap", "global_min_images", "max_features", "max_extracted_mb", "max_files")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigInvalid(f"{name}={getattr(self, name)} must be at least 1", f"Set {name} to a positive number")
        if self.min_images < 2:
            raise ConfigInvalid(f"min_images={self.min_images} must be at least 2", "SfM needs two or more views")
        if not 0.0 <= self.max_principal_point_offset <= 0.5:
            raise ConfigInvalid(f"max_principal_point_offset={self.max_principal_point_offset} must be in [0, 0.5]")
        if not 0.0 < self.min_registered_fraction <= 1.0:
            raise ConfigInvalid(f"min_registered_fraction={self.min_registered_fraction} must be in (0, 1]")
        if self.video_fps < 0 or self.min_sharpness < 0 or self.num_threads < 0:
            raise ConfigInvalid("video_fps, min_sharpness and num_threads must not be negative")


#: Overrides of the defaults, as strings. "fast" is the CPU demo/test preset (and a CPU run's with no
#: flags). Its 8,192 features (the default's) against 2,048: monstree SfM 32.5 s against 18.3 s on the idle
#: 2-core machine, and the splat trained on it 21.75/21.83 dB held out against 21.36/21.51 (two seeds).
PRESETS: dict[str, dict[str, str]] = {
    "fast": {"max_side": "800", "video_frames": "40", "retrieval_neighbors": "10"},
    "default": {},
    "quality": {"max_side": "3200", "max_features": "16384", "exhaustive_max_images": "120",
                "retrieval_neighbors": "25", "min_registered_fraction": "0.8"},
}
