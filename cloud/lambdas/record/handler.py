"""Job record steps of the state machine: ``progress``, ``retry``, ``succeeded``, ``failed`` and
``notify_failed``.

- ``progress`` (before Publish) stores the stages done so far and the quality gate's verdict, so
  ``jobs/<id>/job.json`` holds per-stage seconds and cost, and whether the splat is below target,
  when the publish job reads it.
- ``retry`` (a SageMaker stage was caught) decides whether to run the stage again: only a job
  that failed inside SageMaker for lack of capacity, within the ASL's policy; it returns the
  plan with that stage's attempt and job name bumped (spaceport.cloud.records.plan_retry).
- ``failed`` turns the caught ``{"Error", "Cause"}`` into the failure record the email and the Fail
  state use (the stage is the first with no result; the record comes from the SageMaker job's
  FailureReason/ExitMessage through spaceport.core.errors.parse_failure). After every stage ran on a
  splat below the quality gate, the error is the workflow's own QualityBelowTarget: the record
  then fails at the gate with its miss and lists the published report (records.below_target).

Records are :class:`spaceport.core.summaries.JobRecord`; the state machine gets them as JSON.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from spaceport.cloud import records, settings
from spaceport.cloud.runtime import Clients, logger
from spaceport.core.plan import ExecutionPlan
from spaceport.core.summaries import Notification


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    clients = Clients(settings.load())
    plan, action = ExecutionPlan.model_validate(event["plan"]), event["action"]
    record = clients.store.get(plan.job_id) or records.new_record(plan)
    if action == "retry":
        decision = records.plan_retry(plan, event.get("results"), event.get("error"), event.get("policy", {}))
        log = {k: v for k, v in decision.items() if k != "plan"}
        logger.info("stage failure classified", extra={"job_id": plan.job_id, **log})
        if decision["retry"]:
            clients.store.save(records.retried(record, decision, event.get("error")))
        return decision
    if action == "progress":
        record = records.progress(record, plan, event.get("results", {}))
    elif action == "succeeded":
        record = records.succeeded(record, plan, event.get("results", {}))
    elif action == "failed":
        record = records.failed(record, plan, event.get("results"), event.get("error"))
    elif action == "notify_failed":
        failure = records.describe_failure(event.get("error"))
        record = record.model_copy(update={
            "notify": Notification(sent=False, error=f"{failure.error}: {failure.reason}"),
            "updated_at": records.now_iso()})
    else:
        raise ValueError(f"unknown record action {action!r}")
    clients.store.save(record)
    logger.info("job record", extra={"job_id": record.job_id, "status": record.status, "action": action})
    return record.model_dump(mode="json")
