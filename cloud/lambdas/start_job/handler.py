"""start_job: an object under uploads/ (EventBridge), a folder's quiet timer (SQS) or a direct JSON
request. The work is in :mod:`spaceport.cloud.intake`."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from spaceport.cloud import intake, settings
from spaceport.cloud.runtime import Clients, logger


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    clients = Clients(settings.load())
    if event.get("source") == "aws.s3":
        return intake.on_object_event(event, clients)
    if "Records" in event:
        # Timer messages: a failure raises, so SQS delivers them again (every step is idempotent).
        return {"batches": [intake.on_timer(t, clients) for t in intake.timers(event)]}
    try:
        req = intake.StartRequest.model_validate(event)
    except (ValidationError, ValueError) as exc:
        logger.warning("bad request", extra={"error": str(exc)})
        return {"status": "rejected", "error": "InputInvalid", "reason": str(exc).splitlines()[0]}
    return intake.on_request(req, clients)
