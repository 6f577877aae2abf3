"""The quality gate stage between training and compression, shared by the local runner and AWS.

A trained splat passes when its capture is sound (enough training views, sharp photos, held-out
views among the training views, renders that line up with the photos) and its held-out PSNR
reaches the target and its Gaussian count stays within the cap. The numbers come from the training stage's ``metrics.json``
(:class:`~spaceport.summaries.TrainMetrics`): a local train folder, or the ``model.tar.gz`` the
SageMaker training job wrote (streamed, never the whole PLY in memory). Pure Python: the
QualityGate Lambda imports this module. ("Quality" elsewhere means the compression's
render-quality measurement, :mod:`spaceport.compress.quality`.)
"""

from __future__ import annotations

import math
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from spaceport.errors import ModelInvalid, QualityBelowTarget
from spaceport.stage import Input, StageDef, StagePaths
from spaceport.summaries import GateResult, TrainMetrics, parse_summary, read_summary


@dataclass(frozen=True)
class QualityTargets:
    """What a trained splat and its capture must reach to be compressed and published.

    The capture checks read figures that do not depend on how long training ran
    (:class:`~spaceport.summaries.CaptureFigures`); their defaults pass every real capture in
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
    """Lowest median photo sharpness (:func:`spaceport.train.capture.sharpness`, 1/px² at 256 pixels):
    photos in focus score 4 and up, heavily blurred ones below 0.5."""
    max_held_out_offset: float = 1.3
    """Farthest a held-out view may sit from the training views, over the widest gap between
    neighbouring training views (covered views: below 1); beyond it the held-out PSNR measures a gap
    in the capture, not the splat."""
    min_psnr_gain: float = 2.0
    """dB the held-out PSNR must rise above the held-out photos' mean-colour PSNR: less means the
    renders do not line up with the photos (camera poses SfM got wrong)."""


@dataclass(frozen=True)
class Miss:
    """One check the splat missed: its name, what was wrong (with the figure and its limit), what to do."""

    check: str
    reason: str
    fix: str


def misses(metrics: TrainMetrics, targets: QualityTargets) -> list[Miss]:
    """Every check ``metrics`` misses, the capture's own first (they explain the PSNR ones)."""
    t, cap, psnr = targets, metrics.capture, metrics.test_psnr
    out = []
    if t.min_train_views > 0 and metrics.train_images < t.min_train_views:
        out.append(Miss("train_views", f"only {metrics.train_images} photos were left to train on, fewer than "
                        f"{t.min_train_views}", "Take more photos around the subject, each overlapping its "
                        "neighbours by about two thirds"))
    if cap is not None and t.min_sharpness > 0 and not cap.sharpness >= t.min_sharpness:
        out.append(Miss("sharpness", f"the photos are blurred (median sharpness {cap.sharpness:.2f}, in focus "
                        f"is {t.min_sharpness:.2f} and up)", "Retake them in focus and holding still, with a "
                        "faster shutter (more light), or pick the sharp frames"))
    if cap is not None and cap.held_out_offset is not None and t.max_held_out_offset > 0 \
            and not cap.held_out_offset <= t.max_held_out_offset:
        out.append(Miss("held_out_offset", f"held-out photo {cap.held_out_farthest} is {cap.held_out_offset:.2f} "
                        "times as far from the nearest training photo as the widest gap between neighbouring "
                        f"training photos (limit {t.max_held_out_offset:.2f}), so the capture leaves a gap there",
                        f"Take more photos between {cap.held_out_farthest} and the others, each a small step "
                        "from the last"))
    gain = _gain(metrics)
    if gain is not None and t.min_psnr_gain > 0 and not gain >= t.min_psnr_gain:
        out.append(Miss("psnr_gain", f"held-out PSNR {psnr:.2f} dB is only {gain:.2f} dB above a flat image of "
                        f"each photo's mean colour (at least {t.min_psnr_gain:.2f} dB): the renders do not line "
                        "up with the photos, so the camera poses are likely wrong", "Check the camera plot in the "
                        "report; retake with more overlap and texture so SfM places every photo"))
    if t.min_psnr > 0 and not (math.isfinite(psnr) and psnr >= t.min_psnr):
        out.append(Miss("psnr", f"held-out PSNR {psnr:.2f} dB is below the target {t.min_psnr:.2f} dB",
                        QualityBelowTarget.default_fix))
    if t.max_gaussians > 0 and metrics.num_gaussians > t.max_gaussians:
        out.append(Miss("gaussians", f"{metrics.num_gaussians} Gaussians exceed the cap of {t.max_gaussians}",
                        "Lower max_gaussians in training, or raise the cap"))
    return out


def _gain(metrics: TrainMetrics) -> float | None:
    base = metrics.capture.baseline_psnr if metrics.capture is not None else None
    if base is None or metrics.evaluated_on != "test":
        return None  # nothing held out: a gain over the training photos says nothing of new views
    return round(metrics.test_psnr - base, 4)  # NaN for a NaN PSNR: its check fails


def evaluate(metrics: TrainMetrics, targets: QualityTargets, found: list[Miss] | None = None) -> GateResult:
    """Compare training metrics against the targets; never raises for a miss."""
    found = misses(metrics, targets) if found is None else found
    cap = metrics.capture
    return GateResult(
        passed=not found, failed=[m.check for m in found], test_psnr=metrics.test_psnr,
        num_gaussians=metrics.num_gaussians, min_psnr=targets.min_psnr, max_gaussians=targets.max_gaussians,
        train_views=metrics.train_images, min_train_views=targets.min_train_views,
        sharpness=cap.sharpness if cap else None, min_sharpness=targets.min_sharpness,
        held_out_offset=cap.held_out_offset if cap else None, held_out_farthest=cap.held_out_farthest if cap else None,
        max_held_out_offset=targets.max_held_out_offset, psnr_gain=_gain(metrics), min_psnr_gain=targets.min_psnr_gain)


def check(metrics: TrainMetrics, targets: QualityTargets) -> GateResult:
    """Evaluate the gate and raise :class:`QualityBelowTarget` when the splat misses it: each miss's
    reason, and each one's fix."""
    found = misses(metrics, targets)
    result = evaluate(metrics, targets, found)
    if result.passed:
        return result
    fixes = list(dict.fromkeys(m.fix for m in found))
    raise QualityBelowTarget("; ".join(m.reason for m in found), ". ".join(fixes), **result.model_dump())


@dataclass(frozen=True)
class Figure:
    """One check of a gate result as the report shows it: the figure against its limit."""

    check: str
    label: str
    figure: str
    limit: str
    passed: bool


#: Per check: label, the GateResult field holding the figure, its limit's field, whether the figure
#: must reach the limit (else stay within it), and its format.
_SHOWN = (("train_views", "training views", "train_views", "min_train_views", True, "{:d}"),
          ("sharpness", "photo sharpness (1/px²)", "sharpness", "min_sharpness", True, "{:.2f}"),
          ("held_out_offset", "held-out offset (widest training gaps)", "held_out_offset", "max_held_out_offset",
           False, "{:.2f}"),
          ("psnr_gain", "held-out PSNR above mean colour (dB)", "psnr_gain", "min_psnr_gain", True, "{:.2f}"),
          ("psnr", "held-out PSNR (dB)", "test_psnr", "min_psnr", True, "{:.2f}"),
          ("gaussians", "Gaussians", "num_gaussians", "max_gaussians", False, "{:d}"))


def figures(result: GateResult) -> list[Figure]:
    """Every check the gate ran on ``result`` (limit set, figure present), in the gate's order. A record
    without the list of missed checks (an older version's) is judged from its figures."""
    out = []
    for check_, label, key, limit_key, at_least, form in _SHOWN:
        value, limit = getattr(result, key), getattr(result, limit_key)
        if value is None or not limit > 0:
            continue
        ok = (value >= limit if at_least else value <= limit) if math.isfinite(value) else False
        if result.failed:
            ok = check_ not in result.failed
        out.append(Figure(check_, label, form.format(value) if math.isfinite(value) else str(value),
                          ("≥ " if at_least else "≤ ") + (f"{limit:g}" if isinstance(limit, float) else f"{limit:d}"),
                          ok))
    return out


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
#: deployment's (:class:`spaceport.plan.PlanSettings`), overridable per request.
STAGE = StageDef("quality_gate", "gate", "Quality gate", run, inputs=(Input("model", "train", "model_tarball"),),
                 config=QualityTargets, summary=GateResult, describe=describe)
