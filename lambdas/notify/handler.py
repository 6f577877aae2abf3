"""Success/failure email for a finished job. A send failure is logged and recorded, never raised."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from spaceport.aws import notify, records, settings
from spaceport.aws.runtime import Clients, logger


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    clients = Clients(settings.load())
    job_id = event["job_id"]
    # The stored record is the truth; the event's copy covers a record step that failed.
    record = clients.store.get(job_id) or dict(event.get("record") or {"job_id": job_id})
    outcome = notify.send(record, settings=clients.settings, s3=clients.s3, ses=clients.ses, sns=clients.sns)
    if outcome.get("error"):
        logger.error("notification failed", extra={"job_id": job_id, **outcome})
    else:
        logger.info("notification", extra={"job_id": job_id, **outcome})
    if "status" in record and "updated_at" in record:
        record["notify"] = outcome
        record["updated_at"] = records.now_iso()
        clients.store.save(record)
    return outcome
