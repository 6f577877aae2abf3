"""The quality gate stage between training and compression, shared by the local runner and AWS.

A trained splat passes when its capture is sound (enough training views, sharp photos, held-out
views among the training views, renders that line up with the photos) and its held-out PSNR
reaches the target and its Gaussian count stays within the cap. The numbers come from the training stage's ``metrics.json``
(:class:`~spaceport.core.summaries.TrainMetrics`): a local train folder, or the ``model.tar.gz`` the
SageMaker training job wrote (streamed, never the whole PLY in memory). Pure Python: the
QualityGate Lambda imports this module. ("Quality" elsewhere means the compression's
render-quality measurement, :mod:`spaceport.stages.compress.quality`.)
"""

from __future__ import annotations

import math
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from spaceport.core.errors import ModelInvalid, QualityBelowTarget
from spaceport.core.stage import Input, StageDef, StagePaths
from spaceport.core.summaries import GateResult, StageRecord, TrainMetrics, parse_summary, read_summary


@dataclass(frozen=True)
class QualityTargets:
    """What a trained splat and its capture must reach to be compressed and published.

    The capture checks read figures that do not depend on how long training ran
    (:class:`~spaceport.core.summaries.CaptureFigures`); their defaults pass every real capture in
    ``captures/`` and fail the bad variants made from them (``bench/results/gate.md``, with the
    margins). A limit of 0 switches its check off.
    """

    min_psnr: float = 0.0
    """Held-out PSNR in dB the splat must reach (0 disables the check)."""
    max_gaussians: int = 0
    """Largest number of Gaussians allowed (0 disables the check)."""
    min_train_views: int = 4
    """Fewest training views (photos not held out): fewer cannot place the scene's surfaces. Four is
    what the smallest capture SfM accepts (``min_images`` 5, one held out) leaves."""
    min_sharpness: float = 1.3
    """Lowest median photo sharpness (:func:`spaceport.stages.train.capture.sharpness`, 1/px² at 256 pixels):
    photos in focus score 4 and up, heavily blurred ones below 0.5."""
    max_held_out_offset: float = 1.3
    """Farthest a held-out view may sit from the training views, over the widest gap between
    neighbouring training views (covered views: below 1); beyond it the held-out PSNR measures a gap
    in the capture, not the splat."""
    min_psnr_gain: float = 2.0
    """dB the held-out PSNR must rise above the held-out photos' mean-colour PSNR: less means the
    renders do not line up with the photos (camera poses SfM got wrong)."""


@dataclass(frozen=True)
class Check:
    """One check of the gate: the :class:`GateResult` fields of its figure and its limit, whether the
    figure must reach the limit (else stay within it), how the report labels and formats it, and
    what a miss says (from the result alone: the Lambda's verdict crosses to the record as one) and
    what to do."""

    name: str
    figure: str
    limit: str
    at_least: bool
    label: str
    form: str
    reason: Callable[[GateResult], str]
    fix: Callable[[GateResult], str]


#: Every check, in the order a miss is reported: the capture's own first (they explain the PSNR ones).
CHECKS = (
    Check("train_views", "train_views", "min_train_views", True, "training views", "{:d}",
          lambda g: f"only {g.train_views} photos were left to train on, fewer than {g.min_train_views}",
          lambda g: "Take more photos around the subject, each overlapping its neighbours by about two thirds"),
    Check("sharpness", "sharpness", "min_sharpness", True, "photo sharpness (1/px²)", "{:.2f}",
          lambda g: f"the photos are blurred (median sharpness {g.sharpness:.2f}, in focus is "
                    f"{g.min_sharpness:.2f} and up)",
          lambda g: "Retake them in focus and holding still, with a faster shutter (more light), or pick the "
                    "sharp frames"),
    Check("held_out_offset", "held_out_offset", "max_held_out_offset", False, "held-out offset (widest training gaps)",
          "{:.2f}",
          lambda g: f"held-out photo {g.held_out_farthest} is {g.held_out_offset:.2f} times as far from the nearest "
                    "training photo as the widest gap between neighbouring training photos (limit "
                    f"{g.max_held_out_offset:.2f}), so the capture leaves a gap there",
          lambda g: f"Take more photos between {g.held_out_farthest} and the others, each a small step from the last"),
    Check("psnr_gain", "psnr_gain", "min_psnr_gain", True, "held-out PSNR above mean colour (dB)", "{:.2f}",
          lambda g: f"held-out PSNR {g.test_psnr:.2f} dB is only {g.psnr_gain:.2f} dB above a flat image of each "
                    f"photo's mean colour (at least {g.min_psnr_gain:.2f} dB): the renders do not line up with the "
                    "photos, so the camera poses are likely wrong",
          lambda g: "Check the camera plot in the report; retake with more overlap and texture so SfM places "
                    "every photo"),
    Check("psnr", "test_psnr", "min_psnr", True, "held-out PSNR (dB)", "{:.2f}",
          lambda g: f"held-out PSNR {g.test_psnr:.2f} dB is below the target {g.min_psnr:.2f} dB",
          lambda g: QualityBelowTarget.default_fix),
    Check("gaussians", "num_gaussians", "max_gaussians", False, "Gaussians", "{:d}",
          lambda g: f"{g.num_gaussians} Gaussians exceed the cap of {g.max_gaussians}",
          lambda g: "Lower max_gaussians in training, or raise the cap"),
)


def _applies(c: Check, result: GateResult) -> bool:
    """A check runs when its limit is set and its figure was measured (a metrics.json without capture
    figures, or with nothing held out, skips those checks)."""
    return getattr(result, c.figure) is not None and getattr(result, c.limit) > 0


def _meets(c: Check, result: GateResult) -> bool:
    value, limit = getattr(result, c.figure), getattr(result, c.limit)
    return bool(value >= limit if c.at_least else value <= limit)  # NaN meets nothing


def _gain(metrics: TrainMetrics) -> float | None:
    base = metrics.capture.baseline_psnr if metrics.capture is not None else None
    if base is None or metrics.evaluated_on != "test":
        return None  # nothing held out: a gain over the training photos says nothing of new views
    return round(metrics.test_psnr - base, 4)  # NaN for a NaN PSNR: its check fails


def evaluate(metrics: TrainMetrics, targets: QualityTargets) -> GateResult:
    """Compare training metrics against the targets; never raises for a miss."""
    cap = metrics.capture
    figures_ = GateResult(
        passed=True, test_psnr=metrics.test_psnr, num_gaussians=metrics.num_gaussians, min_psnr=targets.min_psnr,
        max_gaussians=targets.max_gaussians, train_views=metrics.train_images, min_train_views=targets.min_train_views,
        sharpness=cap.sharpness if cap else None, min_sharpness=targets.min_sharpness,
        held_out_offset=cap.held_out_offset if cap else None, held_out_farthest=cap.held_out_farthest if cap else None,
        max_held_out_offset=targets.max_held_out_offset, psnr_gain=_gain(metrics), min_psnr_gain=targets.min_psnr_gain)
    failed = [c.name for c in CHECKS if _applies(c, figures_) and not _meets(c, figures_)]
    return figures_.model_copy(update={"passed": not failed, "failed": failed})


def _missed(result: GateResult) -> list[Check]:
    """The checks ``result`` missed: its list, or for an older version's record (no list) its figures."""
    if result.passed:
        return []
    if result.failed:
        return [c for c in CHECKS if c.name in result.failed]
    return [c for c in CHECKS if _applies(c, result) and not _meets(c, result)]


def miss(result: GateResult) -> QualityBelowTarget | None:
    """The gate's verdict as its typed error (each miss's reason with its figure and limit, each one's
    fix, the numbers as details), or None when the splat passed."""
    if result.passed:
        return None
    found = _missed(result)
    fixes = list(dict.fromkeys(c.fix(result) for c in found))
    return QualityBelowTarget("; ".join(c.reason(result) for c in found) or "the quality gate failed",
                              ". ".join(fixes) or None, **result.model_dump())


def check(metrics: TrainMetrics, targets: QualityTargets) -> GateResult:
    """Evaluate the gate and raise :class:`QualityBelowTarget` when the splat misses it."""
    result = evaluate(metrics, targets)
    error = miss(result)
    if error is not None:
        raise error
    return result


@dataclass(frozen=True)
class Figure:
    """One check of a gate result as the report shows it: the figure against its limit."""

    check: str
    label: str
    figure: str
    limit: str
    passed: bool


def figures(result: GateResult) -> list[Figure]:
    """Every check the gate ran on ``result`` (limit set, figure present), in the gate's order."""
    missed = {c.name for c in _missed(result)}
    out = []
    for c in CHECKS:
        if not _applies(c, result):
            continue
        value, limit = getattr(result, c.figure), getattr(result, c.limit)
        shown = c.form.format(value) if math.isfinite(value) else str(value)
        out.append(Figure(c.name, c.label, shown, ("≥ " if c.at_least else "≤ ") + (f"{limit:g}" if isinstance(limit, float) else str(limit)),
                          c.name not in missed))
    return out


def stage_record(result: GateResult, seconds: float | None = None) -> StageRecord:
    """The gate's entry in the job record, on either runner: passed or failed, its numbers, and for a
    miss the failure record (reason, fix) the report's below-target notice quotes."""
    error = miss(result)
    return StageRecord(status="failed" if error else "passed", seconds=seconds, numbers=result.headline(),
                       failure=error.record(STAGE.name) if error else None)


def check_file(metrics_json: Path, targets: QualityTargets) -> GateResult:
    """:func:`check` on a training stage's ``metrics.json``."""
    return check(read_summary(TrainMetrics, metrics_json), targets)


def metrics_from_model_tarball(stream: BinaryIO, name: str = "model.tar.gz") -> TrainMetrics:
    """``metrics.json`` of a SageMaker model artifact, read from a (non-seekable) stream.

    The tarball is read member by member (``r|*``) until ``metrics.json`` turns up, so a large
    ``splat.ply`` before it is skipped, never held in memory.
    """
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if member.isfile() and PurePosixPath(member.name).parts[-1:] == ("metrics.json",):
                    f = tar.extractfile(member)
                    assert f is not None  # a regular file always has a stream
                    return parse_summary(TrainMetrics, f.read(), f"{name}:metrics.json")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ModelInvalid(f"{name} is not a readable tarball ({exc})", "Re-run the training stage") from exc
    raise ModelInvalid(f"{name} holds no metrics.json", "Re-run the training stage; it writes metrics.json")


def run(targets: QualityTargets, paths: StagePaths) -> GateResult:
    """The gate on the training output in ``paths.input()`` (a folder holding ``metrics.json``)."""
    return check_file(paths.input() / TrainMetrics.FILE, targets)


def describe(n: dict) -> str:
    """The gate's progress-line numbers: the PSNR against its target, and any check it missed."""
    text = f"PSNR {n['test_psnr']:.2f} ≥ {n['min_psnr']}"
    return f"{text}; missed {n['failed']}" if n.get("failed") else text


#: No container: the local runner runs the gate in-process; on AWS the QualityGate Lambda reads
#: the same ``metrics.json`` from the training job's ``model.tar.gz``. The thresholds are the
#: deployment's (:class:`spaceport.core.plan.PlanSettings`), overridable per request.
STAGE = StageDef("quality_gate", "gate", "Quality gate", run, inputs=(Input("model", "train", "model_tarball"),),
                 config=QualityTargets, summary=GateResult, describe=describe)
