"""QualityGate state: held-out PSNR >= min_psnr and Gaussians <= max_gaussians, else QualityBelowTarget.

Reads the metrics SageMaker parsed from the train stage's final progress line
(``FinalMetricDataList`` of the training job, see spaceport.plan.METRIC_DEFINITIONS) and applies
the same gate as the local runner: :mod:`spaceport.quality` (pure; bundled with this handler).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from spaceport import quality
from spaceport.aws.records import training_metrics
from spaceport.aws.runtime import logger


def check(thresholds: dict[str, Any], training: dict[str, Any]) -> dict[str, Any]:
    """The gate's numbers when it passes; raises QualityBelowTarget (with the numbers) when not,
    or ModelInvalid when training reported no held-out PSNR or Gaussian count."""
    targets = quality.QualityTargets(min_psnr=float(thresholds["min_psnr"]),
                                     max_gaussians=int(thresholds["max_gaussians"]))
    return quality.check(training_metrics(training), targets).to_dict()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = check(event["thresholds"], event["training"])
    logger.info("quality gate passed", extra=result)
    return result
