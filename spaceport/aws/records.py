"""The job record: one DynamoDB item per job, mirrored to ``jobs/<job_id>/job.json``.

The record says where a job stands (``QUEUED`` -> ``RUNNING`` -> ``SUCCEEDED`` | ``FAILED``, or
``REJECTED`` before it started), what it produced, its metrics, per-stage times and an estimated
cost, and on failure the typed error (name, reason, fix) the email quotes. The functions that
build records are pure; :class:`JobStore` does the I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from spaceport.aws.cost import stage_cost_usd
from spaceport.errors import ERRORS, parse_failure
from spaceport.plan import JOB_KINDS, STAGES

TERMINAL = ("SUCCEEDED", "FAILED", "REJECTED")
_KNOWN = re.compile(r"\b(" + "|".join(sorted(ERRORS, key=len, reverse=True)) + r"):")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _seconds(value: Any) -> float | None:
    """A Step Functions/SageMaker timestamp (epoch ms, epoch s or ISO text) as epoch seconds."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return value / 1000.0 if value > 1e11 else float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def stage_summary(stage: str, result: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """Seconds, billable seconds, instance type and estimated cost of one SageMaker stage."""
    cluster = spec.get("cluster", {})
    instance = result.get("ResourceConfig", {}).get("InstanceType") or cluster.get("InstanceType", "")
    count = int(cluster.get("InstanceCount", 1))
    if JOB_KINDS.get(stage) == "training":
        start, end = _seconds(result.get("TrainingStartTime")), _seconds(result.get("TrainingEndTime"))
    else:
        start, end = _seconds(result.get("ProcessingStartTime")), _seconds(result.get("ProcessingEndTime"))
    seconds = round(end - start, 1) if start is not None and end is not None else None
    if result.get("TrainingTimeInSeconds") is not None:
        seconds = float(result["TrainingTimeInSeconds"])
    billable = result.get("BillableTimeInSeconds")
    billable = float(billable) if billable is not None else seconds
    return {
        "job_name": result.get("TrainingJobName") or result.get("ProcessingJobName") or spec.get("job_name", ""),
        "instance_type": instance,
        "seconds": seconds,
        "billable_seconds": billable,
        "cost_usd": stage_cost_usd(instance, billable, count) if billable is not None else None,
    }


def training_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The final value of each metric definition, from DescribeTrainingJob's FinalMetricDataList."""
    return {m["MetricName"]: float(m["Value"]) for m in result.get("FinalMetricDataList", []) or []
            if "MetricName" in m and "Value" in m}


def failed_stage(plan: Mapping[str, Any], results: Mapping[str, Any]) -> str:
    """The first stage in the plan's order with no result: the one that failed."""
    for stage in plan.get("order", STAGES):
        if stage not in (results or {}):
            return stage
    return "record"


def describe_failure(error: Mapping[str, Any] | None) -> dict[str, str]:
    """Turn a Step Functions ``{"Error", "Cause"}`` into ``{"error", "reason", "fix", "cause"}``.

    ``Cause`` is a Lambda error payload (``errorType``/``errorMessage``), a SageMaker job
    description (``FailureReason``/``ExitMessage`` holding our ``ClassName: reason fix`` line,
    maybe behind ``AlgorithmError:``), or plain text.
    """
    error = error or {}
    name, cause = str(error.get("Error", "StageFailed")), str(error.get("Cause", "") or "")
    text = cause
    try:
        doc = json.loads(cause)
    except (ValueError, TypeError):
        doc = None
    if isinstance(doc, dict):
        if "errorType" in doc:
            text = f"{doc['errorType']}: {doc.get('errorMessage', '')}"
            try:
                inner = json.loads(doc.get("errorMessage", ""))
            except (ValueError, TypeError):
                inner = None
            if isinstance(inner, dict):
                doc = inner
        if "errorType" not in doc:
            # Processing jobs put our line in ExitMessage; training jobs in FailureReason.
            text = str(doc.get("ExitMessage") or doc.get("FailureReason") or cause)
    match = _KNOWN.search(text)
    if match:
        text = text[match.start():]
        text = re.sub(r",? exit code: ?\d+\s*$", "", text)
    parsed_name, message = parse_failure(text)
    if parsed_name == "StageFailed" and name in ERRORS:
        parsed_name = name
    if parsed_name == "StageFailed" and ("ResourceLimitExceeded" in name or "Throttl" in name):
        parsed_name = "CapacityError"
    elif parsed_name == "StageFailed" and name not in ("States.TaskFailed", "States.ALL"):
        parsed_name = name.replace(".", "") or "StageFailed"
    cls = ERRORS.get(parsed_name)
    fix = cls.default_fix if cls else "Check the job logs in CloudWatch, or try again."
    if cls and message.endswith(fix):
        message = message[: -len(fix)].strip()
    elif cls and parsed_name in text and ". " in message.rstrip("."):
        # Our one-line form is "Name: reason. fix." -- the last sentence is the fix.
        message, fix = message.rstrip(".").rsplit(". ", 1)
        message, fix = message + ".", fix + "."
    reason = message or "The stage failed without a reason."
    return {"error": parsed_name, "reason": reason, "fix": fix, "cause": f"{reason} {fix}".strip()[:1024]}


def new_record(plan: Mapping[str, Any], *, status: str = "QUEUED", at: str | None = None) -> dict[str, Any]:
    """The first record of a job, from the plan's execution input (``plan`` of to_execution_input)."""
    at = at or now_iso()
    return {
        "job_id": plan["job_id"],
        "status": status,
        "source_uri": plan.get("source_uri"),
        "email": plan.get("email"),
        "preset": plan.get("preset"),
        "prefix": plan.get("prefix"),
        "created_at": at,
        "updated_at": at,
        "stages": {},
        "metrics": {},
        "outputs": {},
    }


def _stage_table(plan: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, Any]:
    stages = {}
    for stage, spec in plan.get("stages", {}).items():
        if stage in JOB_KINDS and isinstance((results or {}).get(stage), Mapping):
            stages[stage] = stage_summary(stage, results[stage], spec)
    return stages


def _total_cost(stages: Mapping[str, Any]) -> float:
    return round(sum(s.get("cost_usd") or 0.0 for s in stages.values()), 4)


def _key(uri: str) -> str:
    return uri.split("/", 3)[3] if uri.startswith("s3://") else uri


def succeeded(record: Mapping[str, Any], plan: Mapping[str, Any], results: Mapping[str, Any],
              *, at: str | None = None) -> dict[str, Any]:
    """The final record of a job whose every stage ran."""
    out = dict(record)
    stages = _stage_table(plan, results)
    prefix = _key(plan["prefix"])
    model = (results.get("train") or {}).get("ModelArtifacts", {}).get("S3ModelArtifacts", "")
    out.update(
        status="SUCCEEDED",
        updated_at=at or now_iso(),
        stages=stages,
        cost_usd=_total_cost(stages),
        metrics=training_metrics(results.get("train") or {}),
        outputs={
            "sog": f"{prefix}compressed/scene.sog",
            "spz": f"{prefix}compressed/scene.spz",
            "report": f"{prefix}report/index.html",
            "viewer": f"{prefix}report/viewer.html",
            "ply": f"{prefix}report/splat.ply",
            "model": _key(model) if model else "",
        },
    )
    return out


def failed(record: Mapping[str, Any], plan: Mapping[str, Any], results: Mapping[str, Any] | None,
           error: Mapping[str, Any] | None, *, at: str | None = None) -> dict[str, Any]:
    """The final record of a job that stopped at a stage, with its typed error."""
    out = dict(record)
    results = results or {}
    stages = _stage_table(plan, results)
    out.update(
        status="FAILED",
        updated_at=at or now_iso(),
        stage=failed_stage(plan, results),
        stages=stages,
        cost_usd=_total_cost(stages),
        metrics=training_metrics(results.get("train") or {}),
        **describe_failure(error),
    )
    return out


class JobStore:
    """Job records in DynamoDB (``job_id`` key) and as ``jobs/<id>/job.json`` in the bucket."""

    def __init__(self, *, table: Any, s3: Any, bucket: str) -> None:
        self.table, self.s3, self.bucket = table, s3, bucket

    def get(self, job_id: str) -> dict[str, Any] | None:
        item = self.table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        return json.loads(item["record"]) if item else None

    def _item(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {"job_id": record["job_id"], "status": record["status"], "updated_at": record["updated_at"],
                "record": json.dumps(record, sort_keys=True, default=str)}

    def create(self, record: Mapping[str, Any]) -> bool:
        """Store a new record; False (and nothing written) when the job already has one."""
        try:
            self.table.put_item(Item=self._item(record), ConditionExpression="attribute_not_exists(job_id)")
        except self.table.meta.client.exceptions.ConditionalCheckFailedException:
            return False
        self._mirror(record)
        return True

    def save(self, record: Mapping[str, Any], *, if_status: str | None = None) -> bool:
        """Store ``record``; with ``if_status``, only while the stored status is still that (no race
        with a faster writer). Returns whether it was written."""
        kwargs: dict[str, Any] = {}
        if if_status is not None:
            kwargs = {"ConditionExpression": "#s = :s", "ExpressionAttributeNames": {"#s": "status"},
                      "ExpressionAttributeValues": {":s": if_status}}
        try:
            self.table.put_item(Item=self._item(record), **kwargs)
        except self.table.meta.client.exceptions.ConditionalCheckFailedException:
            return False
        self._mirror(record)
        return True

    def _mirror(self, record: Mapping[str, Any]) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=f"jobs/{record['job_id']}/job.json",
                           Body=json.dumps(record, indent=2, sort_keys=True, default=str).encode(),
                           ContentType="application/json")
