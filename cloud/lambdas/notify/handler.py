"""Success/failure email for a finished job. A send failure is logged and recorded, never raised."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from spaceport.cloud import notify, records, settings
from spaceport.cloud.runtime import Clients, logger
from spaceport.core.summaries import JobRecord, Notification


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    clients = Clients(settings.load())
    job_id = event["job_id"]
    # The event's record is what the record step returned (or, when that step failed, the raw
    # error under ``raw_error``); the stored record fills in what it lacks (the address, the source).
    event_record = dict(event.get("record") or {})
    raw_error = event_record.pop("raw_error", None)
    stored = clients.store.get(job_id)
    base = stored.model_dump(mode="json") if stored else {"job_id": job_id, "status": "FAILED"}
    record = JobRecord.model_validate({**base, **event_record})
    if raw_error is not None:
        # The record step failed too: the stage's raw Step Functions error, read the same way.
        record = record.model_copy(update={"status": "FAILED", "failure": records.describe_failure(raw_error)})
    outcome = notify.send(record, settings=clients.settings, s3=clients.s3, ses=clients.ses, sns=clients.sns)
    if outcome.get("error"):
        logger.error("notification failed", extra={"job_id": job_id, **outcome})
    else:
        logger.info("notification", extra={"job_id": job_id, **outcome})
    if stored is not None:
        clients.store.save(record.model_copy(update={"notify": Notification(**outcome),
                                                     "updated_at": records.now_iso()}))
    return outcome
