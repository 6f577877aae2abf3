"""Options of the compression stage (one frozen dataclass; stdlib + spaceport.core.config only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from spaceport.core.errors import ConfigInvalid


@dataclass(frozen=True)
class CompressConfig:
    """How `spaceport compress` turns a splat (PLY, SPZ, SOG or model.tar.gz) into scene.sog / sog/ / scene.spz."""

    sh_degree: int = 3
    """Highest spherical-harmonics degree kept (0-3); bands above it are dropped before encoding."""

    size_budget_mb: float | None = None
    """Upper bound for scene.sog in MB (10^6 bytes). When the encoded file is larger, SH bands are
    dropped first (3 -> 0), then the least visible Gaussians (opacity x area), until it fits."""

    write_spz: bool = True
    """Also write scene.spz (Niantic SPZ) from the same cleaned splat."""

    spz_version: int = 4
    """SPZ version of scene.spz: 4 (ZSTD streams, Niantic's current format and splat-transform's
    default) or 3 (one gzip stream, for readers that predate v4)."""

    sh_palette: str = "auto"
    """Entries of the SOG spherical-harmonics palette (k-means centroids). "splat-transform" uses its
    rule, min(64, 2^floor(log2(N / 1024))) x 1024; a number (1-65536) fixes it; "auto" picks the
    smallest power of two from 1024 up to splat-transform's size whose palette keeps the view-dependent
    colour error within `sh_palette_max_error` (else splat-transform's size): splats whose higher
    SH bands carry little get a small palette, noisy ones the full one."""

    sh_palette_max_error: float = 0.5
    """For sh_palette=auto: largest opacity-weighted RMS error, in 8-bit colour levels (1/255),
    that the palette may add to the view-dependent colour (averaged over view directions)."""

    kmeans_iterations: int = 10
    """Lloyd iterations of the SH palette k-means (splat-transform's default is 10)."""

    webp_method: int = 4
    """Lossless WebP effort 0-6 (Pillow's `method`); 4 is libwebp's default lossless setting."""

    min_log_scale: float = -30.0
    """Gaussians with a log-scale below this on every axis are degenerate (invisible) and dropped."""

    max_log_scale: float = 12.0
    """Gaussians with a log-scale above this on any axis are degenerate (sky-sized blobs) and dropped."""

    max_gaussians: int = 8_000_000
    """Refuse inputs with more Gaussians than this. Peak memory measured at 200k SH3 Gaussians:
    ~250 MB (torch) + ~1.9 KB per Gaussian (arrays, encode temporaries, k-means copies), so the
    default bounds a run at ~15 GB; ~0.3 KB per Gaussian at SH0."""

    evaluate_quality: bool = True
    """Render the original and the decoded splats and record PSNR/SSIM in compress.json."""

    quality_views: int = 8
    """Number of views rendered for the quality cost (held-out cameras first, else an orbit)."""

    quality_resolution: int = 320
    """Longest side in pixels of the quality renders (cameras are scaled down to it)."""

    quality_seconds: float = 20.0
    """Time budget of the quality measurement, seconds: a probe render of 1/16 of the first view
    sets the crop (whole views, a centred quarter or sixteenth) whose renders fit, then views are
    measured in order while their measured cost fits; the first always is (compress.json records
    views, crop and seconds). A CPU render of a 500k-Gaussian splat takes ~2 s on 2 quiet cores
    and up to ~40 s on loaded ones, almost independent of resolution (docs/compress.md)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the k-means runs: auto picks CUDA when torch sees a GPU, else all CPU cores."""

    seed: int = 0
    """Seed of the k-means initialisation (output is deterministic for a given seed)."""

    def __post_init__(self) -> None:
        if not 0 <= self.sh_degree <= 3:
            raise ConfigInvalid(f"sh_degree={self.sh_degree} must be 0, 1, 2 or 3")
        if self.spz_version not in (3, 4):
            raise ConfigInvalid(f"spz_version={self.spz_version} must be 3 or 4")
        if self.size_budget_mb is not None and self.size_budget_mb <= 0:
            raise ConfigInvalid(f"size_budget_mb={self.size_budget_mb} must be positive")
        if self.sh_palette not in ("auto", "splat-transform") and not (
                self.sh_palette.isdigit() and 1 <= int(self.sh_palette) <= 65536):
            raise ConfigInvalid(f"sh_palette={self.sh_palette!r} must be auto, splat-transform or a number 1..65536")
        if not self.sh_palette_max_error > 0:
            raise ConfigInvalid(f"sh_palette_max_error={self.sh_palette_max_error} must be positive")
        if self.kmeans_iterations < 1:
            raise ConfigInvalid("kmeans_iterations must be at least 1")
        if not 0 <= self.webp_method <= 6:
            raise ConfigInvalid(f"webp_method={self.webp_method} must be in 0..6")
        if self.max_gaussians < 1:
            raise ConfigInvalid("max_gaussians must be at least 1")
        if not self.quality_seconds > 0:
            raise ConfigInvalid(f"quality_seconds={self.quality_seconds} must be positive")
        if self.quality_views < 1 or self.quality_resolution < 16:
            raise ConfigInvalid("quality_views must be >= 1 and quality_resolution >= 16")


#: Named overrides of the defaults. "fast" is the CPU demo/test preset.
PRESETS: dict[str, dict[str, str]] = {
    "fast": {"kmeans_iterations": "4", "quality_views": "4", "quality_resolution": "160", "webp_method": "2"},
    "default": {},
    "quality": {"kmeans_iterations": "20", "quality_views": "16", "quality_resolution": "512", "webp_method": "6"},
}
