"""The compression stage: read -> clean -> (fit the size budget) -> SOG + SPZ -> quality -> compress.json."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from spaceport.core.config import to_strings
from spaceport.core.errors import CompressionFailed
from spaceport.core.files import write_atomic
from spaceport.core.summaries import (
    Budget,
    BudgetAttempt,
    CompressInput,
    CompressOutputs,
    CompressQuality,
    CompressSummary,
    GaussianCounts,
    PerFormat,
    write_summary,
)
from spaceport.geometry.splat import Splat
from spaceport.local import progress

from .config import CompressConfig
from .inputs import clean, locate, read_splat
from .sog import SogImages, decode_sog, encode_sog
from .spz import decode_spz, encode_spz

STAGE = "compress"
#: Bytes of float32 state held per Gaussian by degree (splat arrays: 14 + 3*K floats).
BYTES_PER_GAUSSIAN = {d: 4 * (14 + 3 * ((d + 1) ** 2 - 1)) for d in range(4)}
ZIP_OVERHEAD_PER_FILE = 100  # local header + central directory entry for a short name


def _bundle_estimate(images: SogImages) -> int:
    sizes = images.bytes_by_file()
    return sum(sizes.values()) + ZIP_OVERHEAD_PER_FILE * len(sizes) + 22


def _importance(s: Splat) -> np.ndarray:
    """Visibility proxy for decimation: opacity x area of the two largest axes."""
    sc = np.sort(s.scales, axis=1)
    return 1 / (1 + np.exp(-s.opacities.astype(np.float64))) * np.exp(sc[:, 1] + sc[:, 2])


def fit_budget(splat: Splat, cfg: CompressConfig, encode) -> tuple[Splat, SogImages, list[BudgetAttempt]]:
    """Encode, dropping SH bands then the least visible Gaussians until the .sog fits the budget."""
    attempts: list[BudgetAttempt] = []
    current = splat
    budget = None if cfg.size_budget_mb is None else cfg.size_budget_mb * 1e6
    ranking = None
    for _ in range(12):
        images = encode(current)
        size = _bundle_estimate(images)
        attempts.append(BudgetAttempt(sh_degree=current.sh_degree, gaussians=len(current), sog_bytes=size))
        if budget is None or size <= budget:
            return current, images, attempts
        if current.sh_degree > 0:
            current = current.with_sh_degree(current.sh_degree - 1)
            continue
        if ranking is None:
            ranking = np.argsort(-_importance(splat.with_sh_degree(0)), kind="stable")
        # Bytes scale ~linearly with count; aim 3% under to absorb the meta/zip constant.
        keep = int(len(current) * budget / size * 0.97)
        if keep < 1:
            break
        current = splat.with_sh_degree(0).subset(np.sort(ranking[:keep]))
    raise CompressionFailed(f"scene.sog cannot be made smaller than {cfg.size_budget_mb} MB "
                            f"(smallest tried: {attempts[-1].sog_bytes / 1e6:.3f} MB)",
                            "Raise --size-budget-mb", attempts=[a.model_dump() for a in attempts])


def run(input_path: Path, out: Path, cfg: CompressConfig) -> CompressSummary:
    """Compress ``input_path`` (splat.ply, model.tar.gz or a folder) into ``out``; returns the summary."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=out, prefix=".work-") as work:
        max_bytes = cfg.max_gaussians * (BYTES_PER_GAUSSIAN[3] + 64)
        with progress.phase(STAGE, "read", timings):
            src = locate(Path(input_path), Path(work), max_bytes)
            raw = read_splat(src, max_gaussians=cfg.max_gaussians)
        source = CompressInput(path=str(input_path), format=src.format, bytes=src.input_bytes,
                               ply_bytes=src.path.stat().st_size if src.format == "ply" else None,
                               sh_degree=raw.sh_degree)
        with progress.phase(STAGE, "clean", timings):
            cleaned, counts = clean(raw, min_log_scale=cfg.min_log_scale, max_log_scale=cfg.max_log_scale)
            del raw
        progress.emit(STAGE, gaussians=counts.input, kept=counts.kept, dropped_nonfinite=counts.dropped_nonfinite,
                      dropped_degenerate=counts.dropped_degenerate)
        final, images, attempts, quality = _encode(cleaned, out, src.cameras, cfg, timings)
    timings["total"] = round(time.perf_counter() - t0, 3)
    summary = _summary(source, counts, final, images, attempts, quality, out, cfg, timings)
    write_summary(summary, out)
    progress.emit(STAGE, final=1, sog_bytes=summary.outputs.sog, spz_bytes=summary.outputs.spz or 0,
                  ratio=summary.ratio.sog, psnr=quality.formats["sog"].psnr if quality else "", seconds=timings["total"])
    return summary


def _encode(cleaned: Splat, out: Path, cameras: Path | None, cfg: CompressConfig, timings: dict[str, float],
            ) -> tuple[Splat, SogImages, list[BudgetAttempt], CompressQuality | None]:
    """scene.sog and sog/ (within the size budget), scene.spz, and the decoded formats' quality."""
    target = cleaned.with_sh_degree(min(cfg.sh_degree, cleaned.sh_degree))

    def encode(s: Splat) -> SogImages:
        return encode_sog(s, iterations=cfg.kmeans_iterations, palette=cfg.sh_palette,
                          palette_max_error=cfg.sh_palette_max_error,
                          webp_method=cfg.webp_method, device=cfg.device, seed=cfg.seed)

    with progress.phase(STAGE, "encode_sog", timings):
        final, images, attempts = fit_budget(target, cfg, encode)
        images.write_bundle(out / "scene.sog")
        images.write_dir(out / "sog")
    if images.palette and images.palette["target_met"] is False:
        pal = images.palette
        progress.emit(STAGE, warning="sh_palette_target_missed", target=pal["max_error_levels"],
                      achieved=pal["colour_error_levels"], cap=pal["cap"])
    if cfg.write_spz:
        with progress.phase(STAGE, "encode_spz", timings):
            write_atomic(out / "scene.spz", encode_spz(final, cfg.spz_version))
    quality = None
    if cfg.evaluate_quality:
        with progress.phase(STAGE, "quality", timings):
            quality = measure_quality(cleaned, out, cameras, cfg)
        for fmt, q in quality.formats.items():
            progress.emit(STAGE, format=fmt, psnr=q.psnr, ssim=q.ssim)
    return final, images, attempts, quality


def _summary(source: CompressInput, counts: GaussianCounts, final: Splat, images: SogImages,
             attempts: list[BudgetAttempt], quality: CompressQuality | None, out: Path, cfg: CompressConfig,
             timings: dict[str, float]) -> CompressSummary:
    n = len(final)
    sog = (out / "scene.sog").stat().st_size
    spz = (out / "scene.spz").stat().st_size if cfg.write_spz else None
    return CompressSummary(
        input=source,
        gaussians=counts.model_copy(update={"kept": n, "dropped_for_budget": counts.kept - n}),
        sh_degree=final.sh_degree,
        outputs=CompressOutputs(sog=sog, sog_dir=sum(images.bytes_by_file().values()), spz=spz),
        ratio=PerFormat(sog=round(source.bytes / sog, 2), spz=round(source.bytes / spz, 2) if spz else None),
        bytes_per_attribute=_attribute_bytes(images),
        sh_palette=images.palette,
        bytes_per_gaussian=PerFormat(sog=round(sog / n, 3), spz=round(spz / n, 3) if spz else None),
        budget=Budget(size_budget_mb=cfg.size_budget_mb, attempts=attempts),
        quality=quality,
        seconds={**timings, "sog_steps": images.seconds},
        peak_memory_mb=round(progress.peak_rss_mb(), 1),
        config=to_strings(cfg))


def _attribute_bytes(images: SogImages) -> dict[str, int]:
    sizes = images.bytes_by_file()
    groups = {"means": ["means_l.webp", "means_u.webp"], "quats": ["quats.webp"], "scales": ["scales.webp"],
              "sh0_opacity": ["sh0.webp"], "shN": ["shN_centroids.webp", "shN_labels.webp"], "meta": ["meta.json"]}
    return {k: sum(sizes.get(f, 0) for f in files) for k, files in groups.items()}


def measure_quality(original: Splat, out: Path, cameras: Path | None, cfg: CompressConfig) -> CompressQuality:
    """PSNR/SSIM of renders of the decoded SOG/SPZ against renders of the cleaned original (time-budgeted)."""
    from .quality import cameras_from_json, measure, orbit_cameras

    if cameras is not None:
        views, source = cameras_from_json(cameras, cfg.quality_views, cfg.quality_resolution), "cameras.json"
    else:
        views, source = orbit_cameras(original, cfg.quality_views, cfg.quality_resolution), "orbit"
    decoded = {"sog": decode_sog(out / "scene.sog")}
    if (out / "scene.spz").exists() and cfg.write_spz:
        decoded["spz"] = decode_spz(out / "scene.spz")
    result = measure(original, decoded, views, cfg.quality_seconds)
    return CompressQuality(camera_source=source, resolution=[views[0].width, views[0].height], **result)
