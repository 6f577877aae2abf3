"""The pycolmap phases of the SfM stage, run only as a worker process (``python -m spaceport.stages.sfm.colmap_steps JOB``).

Importing pycolmap makes the next PNG write of Pillow in the same process abort (pycolmap's
bundled zlib), so :func:`spaceport.stages.sfm.pipeline.run_sfm` never imports this module: it starts
it as a separate process with a job JSON and reads a result JSON back. As a second line of
defence this module imports Pillow's PNG codec before pycolmap (the order that is safe).

Each phase is a small function taking and returning paths (hloc style) and prints one
progress line. The job and the result are models (:mod:`spaceport.stages.sfm.worker_io`); a failure
goes back as a :class:`~spaceport.core.errors.FailureRecord`.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import PIL.Image  # must load before pycolmap: see the module docstring
import PIL.PngImagePlugin  # noqa: F401

import pycolmap  # isort: skip

from spaceport.core.errors import SfmFailed, SpaceportError
from spaceport.core.summaries import (
    CameraInfo,
    CameraPrior,
    PrincipalPointRefinement,
    SfmAttempt,
    SfmValidation,
    Upright,
)
from spaceport.geometry import upright
from spaceport.local import progress
from spaceport.stages.sfm import validate
from spaceport.stages.sfm.retrieval import retrieval_pairs
from spaceport.stages.sfm.worker_io import SfmJob, SfmWorkerResult


def _quiet() -> None:
    """Keep pycolmap's INFO chatter off stderr; warnings and errors still show."""
    with contextlib.suppress(AttributeError):  # older bindings
        pycolmap.logging.minloglevel = 1


def extract(database: Path, images: Path, names: list[str], job: SfmJob) -> Path:
    """SIFT features of ``names`` into a new ``database``."""
    cfg = job.config
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = cfg.camera_model
    opts = pycolmap.FeatureExtractionOptions()
    opts.num_threads = job.threads
    opts.max_image_size = cfg.max_side
    opts.sift.max_num_features = cfg.max_features
    # AUTO, SINGLE or PER_IMAGE, decided from the upload by spaceport.stages.sfm.ingest.camera_mode
    mode = getattr(pycolmap.CameraMode, job.camera_mode)
    pycolmap.extract_features(database, images, image_names=names, camera_mode=mode,
                              reader_options=reader, extraction_options=opts, device=pycolmap.Device.auto)
    return database


def camera_priors(database: Path) -> list[CameraPrior]:
    """The cameras feature extraction made: size, starting focal length (pixels) and whether it is a
    prior from EXIF (else COLMAP's guess, 1.2 x the longer side), for sfm.json."""
    db = pycolmap.Database.open(database)
    try:
        counts: dict[int, int] = {}
        for im in db.read_all_images():
            counts[im.camera_id] = counts.get(im.camera_id, 0) + 1
        return [CameraPrior(width=int(c.width), height=int(c.height), focal=round(float(c.params[0]), 2),
                            from_exif=bool(c.has_prior_focal_length), images=counts.get(c.camera_id, 0))
                for c in db.read_all_cameras()]
    finally:
        db.close()


def match(database: Path, matcher: str, job: SfmJob) -> int:
    """Match image pairs chosen by ``matcher`` and verify them geometrically; returns verified pairs."""
    cfg = job.config
    opts = pycolmap.FeatureMatchingOptions()
    opts.num_threads = job.threads
    if matcher == "exhaustive":
        pycolmap.match_exhaustive(database, matching_options=opts, device=pycolmap.Device.auto)
    elif matcher == "sequential":
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = cfg.sequential_overlap
        pairing.quadratic_overlap = True
        pairing.loop_detection = False  # needs a vocabulary tree file
        pycolmap.match_sequential(database, matching_options=opts, pairing_options=pairing, device=pycolmap.Device.auto)
    elif matcher == "retrieval":
        pairs = retrieval_pairs(database, cfg.retrieval_neighbors, seed=cfg.seed)
        pairs_file = database.with_suffix(".pairs.txt")
        pairs_file.write_text("".join(f"{a} {b}\n" for a, b in pairs))
        pairing = pycolmap.ImportedPairingOptions()
        pairing.match_list_path = pairs_file
        pycolmap.match_image_pairs(database, matching_options=opts, pairing_options=pairing, device=pycolmap.Device.auto)
    else:
        raise ValueError(f"unknown matcher {matcher!r}")
    db = pycolmap.Database.open(database)
    try:
        return int(db.num_verified_image_pairs())
    finally:
        db.close()


def map_images(database: Path, images: Path, out: Path, mapper: str, job: SfmJob) -> tuple[Path | None, int, list[int]]:
    """Reconstruct; write the model with the most registered images to ``out/best``.

    Returns (model dir or None, its registered images, registered images of every model the
    mapper made, largest first: two large models mean two unconnected groups of images).
    """
    out.mkdir(parents=True, exist_ok=True)
    cfg = job.config
    seed = cfg.seed
    if mapper == "incremental":
        opts = pycolmap.IncrementalPipelineOptions()
        opts.num_threads = job.threads
        opts.random_seed = seed
        recs = pycolmap.incremental_mapping(database, images, out, options=opts)
    elif mapper == "global":
        opts = pycolmap.GlobalPipelineOptions()
        opts.num_threads = job.threads
        opts.random_seed = seed
        # Global positioning and bundle adjustment on a subset of tracks that still gives every
        # image this many; retriangulation afterwards brings back the rest of the points.
        mapper_opts = opts.mapper
        mapper_opts.track_required_tracks_per_view = cfg.global_tracks_per_view
        opts.mapper = mapper_opts
        recs = pycolmap.global_mapping(database, images, out, options=opts)
    else:
        raise ValueError(f"unknown mapper {mapper!r}")
    if not recs:
        return None, 0, []
    sizes = sorted((int(r.num_reg_images()) for r in recs.values()), reverse=True)
    best = max(recs.values(), key=lambda r: r.num_reg_images())
    model = out / "best"
    model.mkdir(parents=True, exist_ok=True)
    best.write(model)
    return model, int(best.num_reg_images()), sizes


def orient(model: Path) -> Upright:
    """Turn the model in place so its cameras' mean up direction is the world's up (-Y, see
    :mod:`spaceport.geometry.upright`): everything downstream (splat, cameras.json, viewer) is then upright.
    Returns the up direction found and the rotation applied (new_from_old), for sfm.json."""
    rec = pycolmap.Reconstruction(model)
    rotations = np.stack([im.cam_from_world().rotation.matrix() for im in rec.images.values() if im.has_pose])
    up = upright.world_up(rotations)
    rotation = upright.rotation_to_up(up)
    rec.transform(pycolmap.Sim3d(1.0, pycolmap.Rotation3d(rotation), np.zeros(3)))
    rec.write(model)
    return Upright(found_up=[round(float(v), 6) for v in up], rotation=rotation.round(9).tolist())


def undistort(model: Path, images: Path, out: Path, job: SfmJob) -> Path:
    """Undistort to PINHOLE: ``out/images`` and ``out/sparse/0/*.bin``."""
    tmp = out / "_undistorted"
    if tmp.exists():
        shutil.rmtree(tmp)
    pycolmap.undistort_images(tmp, model, images, output_type="COLMAP", num_threads=job.threads)
    for sub in ("images", "sparse"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    shutil.move(str(tmp / "images"), str(out / "images"))
    (out / "sparse" / "0").mkdir(parents=True)
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        shutil.move(str(tmp / "sparse" / name), str(out / "sparse" / "0" / name))
    shutil.rmtree(tmp)
    return out / "sparse" / "0"


def refine_principal_point(model: Path, job: SfmJob) -> PrincipalPointRefinement:
    """One more bundle adjustment of ``model`` that also refines each camera's principal point.

    The mappers keep the principal point at the image centre (COLMAP's default). Refining it at
    the end halved the centre error on fountain-P11 and herzjesu-P8 (bench/results/sfm_accuracy.md),
    where it settled ~9 px from the centre as in the laser-scan calibration. On a ring orbit the
    principal point trades off against the cameras' common tilt and drifts (1.8-4.2% of the height on
    the synthetic orbit, rotations 2 degrees off), so the result is kept only if every principal point
    stays within ``max_principal_point_offset`` of the centre; otherwise the model is left as mapped.
    """
    cfg = job.config
    rec = pycolmap.Reconstruction(model)
    opts = pycolmap.BundleAdjustmentOptions()
    opts.refine_principal_point = True
    opts.print_summary = False
    pycolmap.bundle_adjustment(rec, opts)
    offsets = []
    for cam in rec.cameras.values():
        offsets.append(max(abs(cam.principal_point_x - cam.width / 2) / cam.width,
                           abs(cam.principal_point_y - cam.height / 2) / cam.height))
    kept = max(offsets) <= cfg.max_principal_point_offset
    if kept:
        rec.write(model)
    return PrincipalPointRefinement(kept=kept, offset=round(max(offsets), 5), limit=cfg.max_principal_point_offset)


def _check(model: Path, database: Path, job: SfmJob) -> SfmValidation:
    """Validation verdict of one attempt's model (see spaceport.stages.sfm.validate)."""
    return validate.validate(model, database, job.names if job.media == "video" else None)


def _pick(attempts: list[SfmAttempt], min_registered: int) -> int | None:
    """Index of the attempt to keep: enough images and validated (the best such), else the one with most images."""
    made = [i for i, a in enumerate(attempts) if a.validation is not None]
    good = [i for i in made if attempts[i].registered >= min_registered and attempts[i].validation.passed]  # type: ignore[union-attr]
    if good:
        return max(good, key=lambda i: validate.score(attempts[i].validation))  # type: ignore[arg-type]
    return max(made, key=lambda i: attempts[i].registered, default=None)


def _attempt(i: int, matcher: str, mapper: str, features: Path, matched: dict[str, int], job: SfmJob,
             timings: dict[str, float]) -> tuple[SfmAttempt, Path | None]:
    """Match (once per matcher), map and validate one (matcher, mapper) attempt; the attempt and its model."""
    database = job.work / f"{matcher}.db"
    match_seconds = None
    if matcher not in matched:
        shutil.copyfile(features, database)
        start = time.perf_counter()
        matched[matcher] = match(database, matcher, job)
        match_seconds = round(time.perf_counter() - start, 3)
        timings["match"] = round(timings.get("match", 0) + match_seconds, 3)
        progress.emit("sfm", phase="match", matcher=matcher, seconds=match_seconds, verified_pairs=matched[matcher])
    start = time.perf_counter()
    model, registered, sizes = map_images(database, job.images, job.work / f"model_{i}", mapper, job)
    map_seconds = round(time.perf_counter() - start, 3)
    timings["map"] = round(timings.get("map", 0) + map_seconds, 3)
    progress.emit("sfm", phase="map", mapper=mapper, seconds=map_seconds, registered=registered, images=len(job.names))
    verdict = None
    if model is not None:
        start = time.perf_counter()
        verdict = _check(model, database, job)
        timings["validate"] = round(timings.get("validate", 0) + time.perf_counter() - start, 3)
        progress.emit("sfm", phase="validate", mapper=mapper, passed=int(verdict.passed),
                      failed=",".join(verdict.failed) or "-",
                      triangulation_deg=verdict.figures.median_triangulation_deg,
                      baseline_ratio=verdict.figures.baseline_depth_ratio)
    attempt = SfmAttempt(matcher=matcher, mapper=mapper, verified_pairs=matched[matcher], registered=registered,
                         match_seconds=match_seconds, map_seconds=map_seconds, models=sizes, validation=verdict,
                         planar_or_panoramic_pairs=validate.planar_or_panoramic_pairs(database))
    return attempt, model


def _finish(best: Path, job: SfmJob, timings: dict[str, float]) -> dict:
    """Refine, measure, turn upright and undistort the kept model; the result's numbers of it."""
    found: dict = {}
    if job.config.refine_principal_point:
        with progress.phase("sfm", "refine", timings):
            found["principal_point"] = refine_principal_point(best, job)
    rec = pycolmap.Reconstruction(best)
    cam = next(iter(rec.cameras.values()))
    found.update(
        points=int(rec.num_points3D()),
        mean_reprojection_error=float(rec.compute_mean_reprojection_error()),
        mean_track_length=float(rec.compute_mean_track_length()),
        camera=CameraInfo(model=str(cam.model.name), params=[float(p) for p in cam.params], width=int(cam.width),
                          height=int(cam.height)))
    with progress.phase("sfm", "orient", timings):
        found["upright"] = orient(best)
    with progress.phase("sfm", "undistort", timings):
        undistort(best, job.images, job.out, job)
    return found


def run(job: SfmJob) -> SfmWorkerResult:
    """Extract once, then try each (matcher, mapper) in ``job.attempts`` until a model registers enough images and validates."""
    _quiet()
    pycolmap.set_random_seed(job.config.seed)
    timings: dict[str, float] = {}
    features = job.work / "features.db"
    features.unlink(missing_ok=True)
    with progress.phase("sfm", "extract", timings, images=len(job.names)):
        extract(features, job.images, job.names, job)
    priors = camera_priors(features)
    attempts: list[SfmAttempt] = []
    matched: dict[str, int] = {}
    models: dict[int, Path] = {}
    for i, (matcher, mapper) in enumerate(job.attempts):
        attempt, model = _attempt(i, matcher, mapper, features, matched, job, timings)
        attempts.append(attempt)
        if model is not None:
            models[i] = model
            if attempt.registered >= job.min_registered and attempt.validation.passed:  # type: ignore[union-attr]
                break
    chosen = _pick(attempts, job.min_registered)
    if chosen is None:
        return SfmWorkerResult(timings=timings, attempts=attempts, camera_priors=priors)
    best, kept = models[chosen], attempts[chosen]
    names = sorted(img.name for img in pycolmap.Reconstruction(best).images.values() if img.has_pose)
    found: dict = {}
    if kept.registered >= job.min_registered and kept.validation.passed:  # type: ignore[union-attr]
        found = _finish(best, job, timings)  # else the parent raises TooFewRegistered or SfmDegenerate
    return SfmWorkerResult(timings=timings, attempts=attempts, chosen=chosen, camera_priors=priors,
                           registered=kept.registered, registered_names=names, validation=kept.validation, **found)


def main(job_path: str) -> int:
    job = SfmJob.model_validate_json(Path(job_path).read_text())
    try:
        result = run(job)
    except SpaceportError as exc:
        result = SfmWorkerResult(failure=exc.record("sfm"))
    except Exception as exc:  # a pycolmap crash: the parent raises it as SfmFailed
        err = SfmFailed(f"pycolmap failed: {type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        result = SfmWorkerResult(failure=err.record("sfm"))
    job.result.write_text(result.model_dump_json(indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
