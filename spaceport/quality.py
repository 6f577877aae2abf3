"""The quality gate between training and compression, shared by the local runner and AWS.

A trained splat passes when its held-out PSNR reaches the target and its Gaussian count stays
within the cap. The numbers come from the training stage's ``metrics.json`` (locally) or from
its final stdout line ``stage=train final=1 test_psnr=.. num_gaussians=..`` (the SageMaker
metric definitions read that line, and the state machine's Choice compares them). Pure Python:
the Lambdas import this module.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spaceport.errors import ModelInvalid, QualityBelowTarget


@dataclass(frozen=True)
class QualityTargets:
    """What a trained splat must reach to be compressed and published."""

    min_psnr: float = 0.0
    """Held-out PSNR in dB the splat must reach (0 disables the check)."""
    max_gaussians: int = 0
    """Largest number of Gaussians allowed (0 disables the check)."""


@dataclass(frozen=True)
class GateResult:
    """The numbers the gate compared, for the job record and the report."""

    passed: bool
    test_psnr: float
    num_gaussians: int
    min_psnr: float
    max_gaussians: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _number(metrics: dict[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = metrics.get(key)
        if value is None:
            continue
        try:
            return float(value)
        except (TypeError, ValueError):
            continue
    return None


def evaluate(metrics: dict[str, Any], targets: QualityTargets) -> GateResult:
    """Compare training metrics against the targets; never raises for a miss."""
    psnr = _number(metrics, "test_psnr", "psnr")
    count = _number(metrics, "num_gaussians", "gaussians")
    if psnr is None or count is None:
        missing = [n for n, v in (("test_psnr", psnr), ("num_gaussians", count)) if v is None]
        raise ModelInvalid(
            f"the training metrics lack {', '.join(missing)}",
            "Re-run the training stage; its metrics.json must hold test_psnr and num_gaussians",
        )
    psnr_ok = targets.min_psnr <= 0 or (math.isfinite(psnr) and psnr >= targets.min_psnr)
    count_ok = targets.max_gaussians <= 0 or count <= targets.max_gaussians
    return GateResult(psnr_ok and count_ok, psnr, int(count), targets.min_psnr, targets.max_gaussians)


def check(metrics: dict[str, Any], targets: QualityTargets) -> GateResult:
    """Evaluate the gate and raise :class:`QualityBelowTarget` when the splat misses it."""
    result = evaluate(metrics, targets)
    if result.passed:
        return result
    misses = []
    if targets.min_psnr > 0 and not result.test_psnr >= targets.min_psnr:
        misses.append(f"held-out PSNR {result.test_psnr:.2f} dB is below the target {targets.min_psnr:.2f} dB")
    if targets.max_gaussians > 0 and result.num_gaussians > targets.max_gaussians:
        misses.append(f"{result.num_gaussians} Gaussians exceed the cap of {targets.max_gaussians}")
    raise QualityBelowTarget("; ".join(misses), **result.to_dict())


def check_file(metrics_json: Path, targets: QualityTargets) -> GateResult:
    """:func:`check` on a training stage's ``metrics.json``."""
    try:
        metrics = json.loads(Path(metrics_json).read_text())
    except FileNotFoundError as exc:
        raise ModelInvalid(f"{metrics_json} does not exist", "Run the training stage first") from exc
    except json.JSONDecodeError as exc:
        raise ModelInvalid(f"{metrics_json} is not valid JSON", "Re-run the training stage") from exc
    return check(metrics, targets)


def parse_final_line(text: str) -> dict[str, str]:
    """The last ``stage=train final=1 ...`` line in a training log, as a dict (empty if none)."""
    from spaceport.progress import parse_line

    found: dict[str, str] = {}
    for line in text.splitlines():
        fields = parse_line(line)
        if fields and fields.get("stage") == "train" and fields.get("final") in ("1", "True", "true"):
            found = fields
    return found
