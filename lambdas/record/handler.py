"""Job record steps of the state machine: ``succeeded``, ``failed`` and ``notify_failed``.

``failed`` turns the caught ``{"Error", "Cause"}`` into the typed error the email and the Fail
state use (the stage is the first with no result; the reason comes from the SageMaker job's
FailureReason/ExitMessage through spaceport.errors.parse_failure).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from spaceport.aws import records, settings
from spaceport.aws.runtime import Clients, logger


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    clients = Clients(settings.load())
    plan, action = event["plan"], event["action"]
    record = clients.store.get(plan["job_id"]) or records.new_record(plan)
    if action == "succeeded":
        record = records.succeeded(record, plan, event.get("results", {}))
    elif action == "failed":
        record = records.failed(record, plan, event.get("results"), event.get("error"))
    elif action == "notify_failed":
        failure = records.describe_failure(event.get("error"))
        record["notify"] = {"sent": False, "error": f"{failure['error']}: {failure['reason']}"}
        record["updated_at"] = records.now_iso()
    else:
        raise ValueError(f"unknown record action {action!r}")
    clients.store.save(record)
    logger.info("job record", extra={"job_id": record["job_id"], "status": record["status"], "action": action})
    return record
