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
    # The event's record is what the record step returned (or, when that step failed, the raw
    # error); the stored record fills in what it lacks (the address, the source).
    record = {**(clients.store.get(job_id) or {"job_id": job_id}), **(event.get("record") or {})}
    if record.get("status") == "FAILED" and not record.get("reason"):
        # The raw Step Functions error of a failed record step: make it readable the same way.
        record.update(records.describe_failure({"Error": record.get("error"), "Cause": record.get("cause")}))
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
