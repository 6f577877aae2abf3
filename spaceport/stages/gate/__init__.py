"""The quality gate stage between training and compression, shared by the local runner and AWS.

A trained splat passes when its held-out PSNR reaches the target and its Gaussian count stays
within the cap. The numbers come from the training stage's ``metrics.json``
(:class:`~spaceport.core.summaries.TrainMetrics`): a local train folder, or the ``model.tar.gz`` the
SageMaker training job wrote (streamed, never the whole PLY in memory). Pure Python: the
QualityGate Lambda imports this module. ("Quality" elsewhere means the compression's
render-quality measurement, :mod:`spaceport.stages.compress.quality`.)
"""

from __future__ import annotations

import math
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from spaceport.core.errors import ModelInvalid, QualityBelowTarget
from spaceport.core.stage import Input, StageDef, StagePaths
from spaceport.core.summaries import GateResult, StageRecord, TrainMetrics, parse_summary, read_summary


@dataclass(frozen=True)
class QualityTargets:
    """What a trained splat must reach to be compressed and published."""

    min_psnr: float = 0.0
    """Held-out PSNR in dB the splat must reach (0 disables the check)."""
    max_gaussians: int = 0
    """Largest number of Gaussians allowed (0 disables the check)."""


def evaluate(metrics: TrainMetrics, targets: QualityTargets) -> GateResult:
    """Compare training metrics against the targets; never raises for a miss."""
    psnr, count = metrics.test_psnr, metrics.num_gaussians
    psnr_ok = targets.min_psnr <= 0 or (math.isfinite(psnr) and psnr >= targets.min_psnr)
    count_ok = targets.max_gaussians <= 0 or count <= targets.max_gaussians
    return GateResult(passed=psnr_ok and count_ok, test_psnr=psnr, num_gaussians=count,
                      min_psnr=targets.min_psnr, max_gaussians=targets.max_gaussians)


def miss(result: GateResult) -> QualityBelowTarget | None:
    """The gate's verdict as its typed error (what missed and by how much, the numbers as details),
    or None when the splat passed."""
    if result.passed:
        return None
    misses = []
    if result.min_psnr > 0 and not result.test_psnr >= result.min_psnr:
        misses.append(f"held-out PSNR {result.test_psnr:.2f} dB is below the target {result.min_psnr:.2f} dB")
    if result.max_gaussians > 0 and result.num_gaussians > result.max_gaussians:
        misses.append(f"{result.num_gaussians} Gaussians exceed the cap of {result.max_gaussians}")
    return QualityBelowTarget("; ".join(misses), **result.model_dump())


def check(metrics: TrainMetrics, targets: QualityTargets) -> GateResult:
    """Evaluate the gate and raise :class:`QualityBelowTarget` when the splat misses it."""
    result = evaluate(metrics, targets)
    error = miss(result)
    if error is not None:
        raise error
    return result


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
    return f"PSNR {n['test_psnr']:.2f} ≥ {n['min_psnr']}"


#: No container: the local runner runs the gate in-process; on AWS the QualityGate Lambda reads
#: the same ``metrics.json`` from the training job's ``model.tar.gz``. The thresholds are the
#: deployment's (:class:`spaceport.core.plan.PlanSettings`), overridable per request.
STAGE = StageDef("quality_gate", "gate", "Quality gate", run, inputs=(Input("model", "train", "model_tarball"),),
                 config=QualityTargets, summary=GateResult, describe=describe)
