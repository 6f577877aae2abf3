"""QualityGate state: the gate's verdict on the trained splat (held-out PSNR >= min_psnr,
Gaussians <= max_gaussians, and the capture checks), as :class:`~spaceport.core.summaries.GateResult`.

Reads ``metrics.json`` from the training job's model artifact (``model.tar.gz`` on S3, streamed:
the PLY in it is skipped, never held) and applies the same gate as the local runner,
:mod:`spaceport.stages.gate` (pure; bundled with this handler). A miss is a verdict, not an error: the
workflow still compresses and publishes the splat, marked below target, then fails the job with
``QualityBelowTarget``. A model artifact with no valid ``metrics.json`` raises ``ModelInvalid``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from spaceport.cloud import settings
from spaceport.cloud.runtime import Clients, logger
from spaceport.core.config import from_strings
from spaceport.core.errors import failures_as_records
from spaceport.core.summaries import GateResult
from spaceport.stages import gate


def verdict(thresholds: dict[str, Any], training: dict[str, Any], s3: Any) -> GateResult:
    """The gate's numbers and whether the splat passed; raises ModelInvalid when the model artifact
    holds no valid metrics.json.

    ``thresholds`` is the plan's gate options (every :class:`~spaceport.stages.gate.QualityTargets`
    field the job resolved, as strings); a field it lacks keeps its default."""
    targets = from_strings(gate.QualityTargets, thresholds)
    uri = training["ModelArtifacts"]["S3ModelArtifacts"]
    bucket, key = uri[len("s3://"):].split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        metrics = gate.metrics_from_model_tarball(body, uri)
    finally:
        body.close()
    return gate.evaluate(metrics, targets)


@logger.inject_lambda_context(clear_state=True)
@failures_as_records
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = verdict(event["thresholds"], event["training"], Clients(settings.load()).s3)
    logger.info("quality gate passed" if result.passed else "quality gate: below target", extra=result.model_dump())
    return result.model_dump()
