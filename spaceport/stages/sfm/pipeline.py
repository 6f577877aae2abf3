"""The SfM stage from upload to ``sparse/0`` + ``images/`` + ``sfm.json``.

Phases: ingest (this process: Pillow, PyAV) -> extract, match, map, undistort (a worker process
running :mod:`spaceport.stages.sfm.colmap_steps`, because importing pycolmap breaks later PNG writes in
the importing process) -> summary (this process, NumPy COLMAP reader).
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import spaceport
from spaceport.core.config import to_strings
from spaceport.core.errors import OutOfMemory, SfmDegenerate, SfmFailed, TooFewRegistered
from spaceport.core.summaries import (
    AutoChoice,
    CameraInfo,
    MatcherMapper,
    SfmAttempt,
    SfmSummary,
    write_summary,
)
from spaceport.geometry import colmap
from spaceport.local import progress
from spaceport.stages.sfm import validate
from spaceport.stages.sfm.config import SfmConfig
from spaceport.stages.sfm.ingest import Ingested, camera_mode, ingest
from spaceport.stages.sfm.worker_io import SfmJob, SfmWorkerResult


def choose(media: Literal["images", "video"], images: int, config: SfmConfig) -> tuple[str, str]:
    """The (matcher, mapper) that ``auto`` picks for ``images`` photos or video frames (``media``, as ingested).

    What decided it (bench/results/sfm.md, bench/results/sfm_accuracy.md, bench/results/sfm_collapse.md):

    - Mapper: on the laser-scanned fountain-P11 and herzjesu-P8 the two mappers were equally
      accurate (median centre error 6.0 vs 6.2 mm and 8.0 vs 7.7 mm; 2.8-3.9 mm for both with the
      principal point refined), and global mapping is the faster one (3x at 120 synthetic views).
      But the global mapper is the one seen to collapse a real 50-frame capture intermittently,
      and incremental mapping costs little next to matching below ~100 images. So ``auto`` maps
      incrementally below ``global_min_images`` (100) and globally from there, where its speed
      counts; any model that fails validation falls back to the other mapper (plan_attempts).
    - Matcher: accuracy was not at stake in matching fewer pairs (retrieval + global at 120 views:
      centre RMSE 0.025% of the radius vs 0.032% exhaustive, 7x faster matching), so video keeps
      sequential matching and large sets (above ``exhaustive_max_images``) retrieval.
    """
    matcher = config.matcher
    if matcher == "auto":
        if media == "video":
            matcher = "sequential"  # frames are in temporal order: neighbours overlap
        elif images <= config.exhaustive_max_images:
            matcher = "exhaustive"
        else:
            matcher = "retrieval"
    mapper = config.mapper
    if mapper == "auto":
        mapper = "global" if images >= config.global_min_images else "incremental"
    return matcher, mapper


def plan_attempts(media: Literal["images", "video"], images: int, config: SfmConfig) -> list[tuple[str, str]]:
    """The first choice, then the fallbacks tried in order while too few images register or the model fails validation."""
    matcher, mapper = choose(media, images, config)
    other = "incremental" if mapper == "global" else "global"
    attempts = [(matcher, mapper), (matcher, other)]
    if matcher != "exhaustive":
        attempts.append(("exhaustive", "incremental"))
    return attempts


def threads(config: SfmConfig) -> int:
    if config.num_threads > 0:
        return config.num_threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


#: The module run as the pycolmap worker (``python -m WORKER_MODULE job.json``).
WORKER_MODULE = "spaceport.stages.sfm.colmap_steps"


def _run_worker(job: SfmJob) -> SfmWorkerResult:
    """Run the pycolmap phases in a fresh interpreter and return its result (its failure re-raised)."""
    job_file = job.work / "job.json"
    job_file.write_text(job.model_dump_json(indent=1))
    log = job.work / "colmap.log"
    # the worker must import this same spaceport package, wherever it was imported from
    root = str(Path(spaceport.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])]))
    with open(log, "w") as err:
        proc = subprocess.run([sys.executable, "-m", WORKER_MODULE, str(job_file)],
                              stdout=None, stderr=err, env=env, check=False)
    if proc.returncode != 0 or not job.result.exists():
        tail = log.read_text(errors="replace")[-2000:]
        if proc.returncode == -signal.SIGKILL:  # what the kernel's OOM killer sends
            raise OutOfMemory("The pycolmap worker was killed, most likely out of memory",
                              "Lower max_side or max_features, or use an instance with more memory", tail=tail)
        raise SfmFailed(f"The pycolmap worker exited with code {proc.returncode}", tail=tail)
    result = SfmWorkerResult.model_validate_json(job.result.read_text())
    if result.failure is not None:
        raise result.failure.to_error()
    return result


def _tried(attempts: list[SfmAttempt]) -> str:
    return "; ".join(f"{a.matcher}+{a.mapper}: {a.registered} registered"
                     + (f", failed {'/'.join(a.validation.failed)}" if a.validation and a.validation.failed else "")
                     for a in attempts)


def _too_few(result: SfmWorkerResult, names: list[str], min_registered: int, config: SfmConfig) -> TooFewRegistered:
    """TooFewRegistered listing the images left out and, when the matches show it, why."""
    usable = len(names)
    left_out = sorted(set(names) - set(result.registered_names))
    groups = max((a.models for a in result.attempts), key=lambda m: sum(n >= 3 for n in m), default=[])
    groups = [n for n in groups if n >= 3]
    rotation = max((a.planar_or_panoramic_pairs or 0.0 for a in result.attempts), default=0.0)
    why, fix = "", None
    if len(groups) > 1:  # the images show unrelated scenes
        why = (f"; the images form {len(groups)} unconnected groups ({', '.join(map(str, groups))} images), "
               "as if they showed unrelated scenes")
        fix = "Upload photos of one scene per job, taken while walking around it with about 70% overlap between " \
              "neighbouring views"
    elif rotation >= validate.MOSTLY_ROTATION:
        why = (f"; {rotation:.0%} of the matched image pairs are related by a pure rotation or a plane "
               "(too little parallax: the camera turned on the spot or stood still)")
        fix = validate.fix_for(["baseline"])
    shown = ", ".join(left_out[:12]) + (f" and {len(left_out) - 12} more" if len(left_out) > 12 else "")
    return TooFewRegistered(
        f"SfM registered only {result.registered} of {usable} usable images "
        f"(need {min_registered}, {config.min_registered_fraction:.0%}){why}; left out: {shown or 'all'} "
        f"(tried {_tried(result.attempts)})",
        fix,
        registered=result.registered, usable=usable, required=min_registered,
        attempts=[a.model_dump(mode="json") for a in result.attempts], left_out=left_out, groups=groups,
    )


def _raise_if_unusable(result: SfmWorkerResult, names: list[str], min_registered: int, config: SfmConfig) -> None:
    """TooFewRegistered (listing the images left out) or SfmDegenerate (saying what the capture lacked)."""
    if result.registered < min_registered:
        raise _too_few(result, names, min_registered, config)
    verdict = result.validation
    assert verdict is not None  # enough images registered: the worker kept a validated model
    if not verdict.passed:
        raise SfmDegenerate(
            f"Every reconstruction of the {len(names)} images failed validation, so none is used: "
            f"{verdict.problems[0]} (tried {_tried(result.attempts)})",
            validate.fix_for(verdict.failed),
            validation=verdict.model_dump(mode="json"), attempts=[a.model_dump(mode="json") for a in result.attempts],
        )


def _summary(source: Path, out: Path, ing: Ingested, job: SfmJob, result: SfmWorkerResult,
             config: SfmConfig) -> dict:
    """The fields of ``sfm.json`` from the undistorted model in ``out`` and the worker's result."""
    model = colmap.read_model(out / "sparse" / "0")
    (_cam_id, cam), *_ = model.cameras.items()
    assert result.chosen is not None and result.camera is not None  # _raise_if_unusable passed
    first, chosen = result.attempts[0], result.attempts[result.chosen]
    return dict(
        input=str(source), input_kind=ing.kind, input_images=ing.input_files, usable_images=ing.usable,
        corrupt_images=ing.corrupt, registered_images=len(model.images),
        registered_fraction=round(len(model.images) / ing.usable, 4),
        # which usable images SfM could not place (ingest's names: folders joined by "__")
        unregistered_images=sorted(set(ing.names) - {im.name for im in model.images.values()}),
        points=len(model.points), mean_reprojection_error=round(result.mean_reprojection_error or 0.0, 4),
        mean_track_length=round(result.mean_track_length or 0.0, 3), matcher=chosen.matcher, mapper=chosen.mapper,
        auto=AutoChoice(matcher=config.matcher == "auto", mapper=config.mapper == "auto"),
        fallback=result.chosen != 0, first_choice=MatcherMapper(matcher=first.matcher, mapper=first.mapper),
        attempts=result.attempts, validation=result.validation, camera_before_undistortion=result.camera,
        # the final principal-point refinement: kept, or dropped as a drift (colmap_steps.refine_principal_point)
        principal_point=result.principal_point,
        camera=CameraInfo(model=cam.model, width=cam.width, height=cam.height, params=[float(p) for p in cam.params]),
        camera_mode=job.camera_mode, camera_priors=result.camera_priors,
        # the model was turned so the cameras' mean up is -Y (spaceport.geometry.upright): the up direction SfM
        # found, and the rotation applied to it (new_from_old world)
        upright=result.upright, cameras=len(model.cameras), ingest=ing.summary(), threads=job.threads,
        config=to_strings(config))


def run_sfm(source: str | Path, out: str | Path, config: SfmConfig | None = None) -> SfmSummary:
    """Run the whole stage; returns the ``sfm.json`` summary. Raises typed errors on bad input or failure."""
    config = config or SfmConfig()
    source, out = Path(source), Path(out)
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    work = out / "_work"
    # a failed run must not leave an earlier run's results looking current
    for stale in (work, out / "sparse", out / "images"):
        if stale.exists():
            shutil.rmtree(stale)
    (out / SfmSummary.FILE).unlink(missing_ok=True)
    work.mkdir()
    timings: dict[str, float] = {}
    try:
        with progress.phase("sfm", "ingest", timings):
            ing = ingest(source, work, config)
        progress.emit("sfm", phase="ingested", kind=ing.kind, usable=ing.usable, corrupt=ing.corrupt,
                      blurry_windows=ing.frames_blurry)
        job = SfmJob(work=work, images=ing.images_dir, out=out, names=ing.names, media=ing.media, config=config,
                     camera_mode=camera_mode(ing, config), threads=threads(config),
                     attempts=plan_attempts(ing.media, ing.usable, config),
                     min_registered=math.ceil(config.min_registered_fraction * ing.usable), result=work / "result.json")
        result = _run_worker(job)
        timings.update(result.timings)
        _raise_if_unusable(result, ing.names, job.min_registered, config)
        with progress.phase("sfm", "summary", timings):
            fields = _summary(source, out, ing, job, result, config)
    finally:
        if not config.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    timings["total"] = round(time.perf_counter() - start, 3)
    summary = SfmSummary(**fields, seconds=timings, peak_memory_mb=round(progress.peak_rss_mb(), 1))
    write_summary(summary, out)
    progress.emit("sfm", final=1, registered=summary.registered_images, usable=summary.usable_images,
                  points=summary.points, reproj_error=summary.mean_reprojection_error,
                  matcher=summary.matcher, mapper=summary.mapper, seconds=timings["total"])
    return summary
