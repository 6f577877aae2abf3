"""QualityGate state: held-out PSNR >= min_psnr and Gaussians <= max_gaussians, else QualityBelowTarget.

Reads the metrics SageMaker parsed from the train stage's final progress line
(``FinalMetricDataList`` of the training job, see spaceport.plan.METRIC_DEFINITIONS).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from spaceport.aws.records import training_metrics
from spaceport.aws.runtime import logger
from spaceport.errors import QualityBelowTarget


def check(thresholds: dict[str, Any], training: dict[str, Any]) -> dict[str, float]:
    """The metrics when they pass; raises QualityBelowTarget (with the numbers) when not."""
    metrics = training_metrics(training)
    min_psnr, cap = float(thresholds["min_psnr"]), int(thresholds["max_gaussians"])
    psnr, count = metrics.get("test_psnr"), metrics.get("num_gaussians")
    if psnr is None or count is None:
        raise QualityBelowTarget("Training reported no held-out PSNR or Gaussian count",
                                 "Check the training log for its final line", metrics=metrics)
    if psnr < min_psnr:
        raise QualityBelowTarget(f"Held-out PSNR is {psnr:.2f} dB, below the {min_psnr:.2f} dB target",
                                 psnr=psnr, min_psnr=min_psnr)
    if count > cap:
        raise QualityBelowTarget(f"The splat has {int(count):,} Gaussians, over the cap of {cap:,}",
                                 "Lower max_gaussians or raise the densification threshold",
                                 num_gaussians=count, max_gaussians=cap)
    return {"test_psnr": psnr, "num_gaussians": count, "min_psnr": min_psnr, "max_gaussians": cap}


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, float]:
    result = check(event["thresholds"], event["training"])
    logger.info("quality gate passed", extra=result)
    return result
