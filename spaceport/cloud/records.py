"""The job record: one DynamoDB item per job, mirrored to ``jobs/<job_id>/job.json``.

The record (:class:`~spaceport.core.summaries.JobRecord`, the same model the local runner writes) says
where a job stands (``QUEUED`` -> ``RUNNING`` -> ``SUCCEEDED`` | ``FAILED``, or ``REJECTED`` before
it started), what it produced (the stage graph's products), its metrics, per-stage times and an
estimated cost, and on failure the failure record (error, reason, fix) the email quotes. The
functions that build records are pure; :class:`JobStore` does the I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from spaceport.cloud import quota, sagemaker_errors
from spaceport.cloud.cost import stage_cost_usd
from spaceport.core.errors import ERRORS, FailureRecord, QualityBelowTarget, StageFailed, parse_failure
from spaceport.core.graph import JOB_KINDS, PRODUCTS
from spaceport.core.plan import (
    MAX_ATTEMPTS,
    ExecutionPlan,
    GateStage,
    ProcessingStage,
    TrainingStage,
    stage_job_name,
)
from spaceport.core.summaries import Duplicate, GateResult, JobRecord, Retry, StageRecord
from spaceport.stages import gate

TERMINAL = ("SUCCEEDED", "FAILED", "REJECTED")


#: Keys of a SageMaker Describe*Job result (as opposed to a failure record or another payload).
_JOB_KEYS = ("FailureReason", "ExitMessage", "TrainingJobStatus", "ProcessingJobStatus")


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


def stage_summary(stage: str, result: Mapping[str, Any], spec: ProcessingStage | TrainingStage) -> StageRecord:
    """Seconds, billable seconds, instance type and estimated cost of one SageMaker stage (``result``:
    its Describe*Job answer)."""
    instance = result.get("ResourceConfig", {}).get("InstanceType") or spec.cluster.instance_type
    count = spec.cluster.instance_count
    if JOB_KINDS.get(stage) == "training":
        start, end = _seconds(result.get("TrainingStartTime")), _seconds(result.get("TrainingEndTime"))
    else:
        start, end = _seconds(result.get("ProcessingStartTime")), _seconds(result.get("ProcessingEndTime"))
    seconds = round(end - start, 1) if start is not None and end is not None else None
    if result.get("TrainingTimeInSeconds") is not None:
        seconds = float(result["TrainingTimeInSeconds"])
    billable = result.get("BillableTimeInSeconds")
    billable = float(billable) if billable is not None else seconds
    return StageRecord(
        status="done",
        job_name=result.get("TrainingJobName") or result.get("ProcessingJobName") or spec.job_name,
        instance_type=instance, seconds=seconds, billable_seconds=billable,
        cost_usd=stage_cost_usd(instance, billable, count) if billable is not None else None)


def training_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The final value of each metric definition, from DescribeTrainingJob's FinalMetricDataList."""
    return {m["MetricName"]: float(m["Value"]) for m in result.get("FinalMetricDataList", []) or []
            if "MetricName" in m and "Value" in m}


def failed_stage(plan: ExecutionPlan, results: Mapping[str, Any]) -> str:
    """The first stage in the plan's order with no result: the one that failed."""
    for stage in plan.order:
        if stage not in (results or {}):
            return stage
    return "record"


def _failure_text(error: Mapping[str, Any] | None) -> tuple[str, str, list[str]]:
    """``(error name, the line that explains it, the job's failure texts)``.

    The last item is empty unless ``Cause`` is a SageMaker job description (a job that ran and
    failed, as opposed to an API error when creating it).
    """
    error = error or {}
    name, cause = str(error.get("Error", "StageFailed")), str(error.get("Cause", "") or "")
    text, job_texts = cause, []
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
            if isinstance(inner, dict) and any(k in inner for k in _JOB_KEYS):
                doc = inner  # a SageMaker job description relayed by a Lambda
        if "errorType" not in doc:
            # Processing jobs put our line in ExitMessage; training jobs in FailureReason.
            text = str(doc.get("ExitMessage") or doc.get("FailureReason") or cause)
            job_texts = [str(doc[k]) for k in ("ExitMessage", "FailureReason") if doc.get(k)]
            if not job_texts and any(k in doc for k in ("TrainingJobStatus", "ProcessingJobStatus")):
                job_texts = [cause]
    return name, text, job_texts


def classify(error: Mapping[str, Any] | None) -> tuple[bool, str]:
    """``(retry, why)`` for a caught SageMaker stage error: whether waiting can help, decided from its cause.

    Retried: a quota other running jobs hold (spaceport.cloud.quota; a quota too small for one job
    never is), throttling and server faults at job creation, and a job that failed inside SageMaker
    for lack of capacity or on SageMaker's side (spaceport.cloud.sagemaker_errors). Never retried: a
    validation error at creation (bad image, parameter, instance type, permission), and a typed
    Spaceport error in the job's failure text, which decides whatever else the text says (bad input).
    """
    name, text, job_texts = _failure_text(error)
    limit = quota.parse(name, text)
    if limit is not None:
        return limit.transient, (f"quota '{limit.quota}' in use by other jobs" if limit.transient
                                 else f"quota '{limit.quota}' is {limit.limit}")
    sdk = sagemaker_errors.parse_sdk_error(name, text)
    if sdk is not None:
        return sdk.transient, f"{sdk.code} at job creation"
    for text in job_texts:
        known = parse_failure(text).error
        if known != StageFailed.__name__:
            retry = known in ERRORS and ERRORS[known].retryable
            return retry, f"{known} in the job's failure text"
    if any(sagemaker_errors.job_failure_transient(t) for t in job_texts):
        return True, "capacity or an internal error inside SageMaker"
    return False, f"{name} is not transient"


def retry_delay_s(attempt: int, policy: Mapping[str, Any]) -> int:
    """Seconds to wait before attempt ``attempt + 1``: ``interval_s * backoff_rate**(attempt-1)``, capped."""
    interval = float(policy.get("interval_s", 120))
    rate = float(policy.get("backoff_rate", 2.0))
    cap = float(policy.get("max_delay_s", 1800))
    return int(min(cap, interval * rate ** max(0, attempt - 1)))


def plan_retry(plan: ExecutionPlan, results: Mapping[str, Any] | None, error: Mapping[str, Any] | None,
               policy: Mapping[str, Any]) -> dict[str, Any]:
    """Decide whether the workflow runs the failed stage again (:func:`classify`).

    Returns ``{"retry": False, "stage", "why"}`` or ``{"retry": True, "stage", "attempt",
    "wait_s", "job_name", "why", "plan"}`` where ``plan`` is the execution input's plan with the stage's
    ``attempt`` and ``job_name`` bumped (SageMaker rejects a reused job name). ``policy``:
    ``max_attempts`` (total runs of one stage, first included), ``interval_s``, ``backoff_rate``,
    ``max_delay_s``.
    """
    stage = failed_stage(plan, results or {})
    if stage not in JOB_KINDS:
        return {"retry": False, "stage": stage, "why": "not a SageMaker stage"}
    retry, why = classify(error)
    if not retry:
        return {"retry": False, "stage": stage, "why": why}
    spec = plan.stages[stage]
    assert not isinstance(spec, GateStage)  # a SageMaker stage (JOB_KINDS)
    attempt = spec.attempt
    max_attempts = min(int(policy.get("max_attempts", 3)), MAX_ATTEMPTS)
    if attempt >= max_attempts:
        return {"retry": False, "stage": stage, "why": f"{why}: {attempt} of {max_attempts} attempts used"}
    job_name = stage_job_name(plan.job_id, stage, attempt + 1)
    bumped = spec.model_copy(update={"attempt": attempt + 1, "job_name": job_name})
    new_plan = plan.model_copy(update={"stages": {**plan.stages, stage: bumped}})
    return {"retry": True, "stage": stage, "attempt": attempt + 1, "wait_s": retry_delay_s(attempt, policy),
            "job_name": job_name, "why": why, "plan": new_plan.dump()}


def below_target(error: Mapping[str, Any] | None) -> FailureRecord | None:
    """The gate's failure record (reason, fix, numbers) when ``error`` is what the workflow's
    BelowTarget state passes on after Publish (``Error`` QualityBelowTarget, ``Cause`` the gate's
    verdict as JSON), else None."""
    if (error or {}).get("Error") != QualityBelowTarget.__name__:
        return None
    try:
        verdict = GateResult.model_validate_json(str(error.get("Cause") or ""))
    except ValidationError:
        return None
    miss = gate.miss(verdict)
    return miss.record(gate.STAGE.name) if miss is not None else None


def describe_failure(error: Mapping[str, Any] | None, stage: str | None = None) -> FailureRecord:
    """The failure record of a Step Functions ``{"Error", "Cause"}``.

    ``Cause`` is a SageMaker job description whose FailureReason/ExitMessage holds the stage's
    failure record line (maybe behind ``AlgorithmError:``), a Lambda error payload
    (``errorType``/``errorMessage``), or plain text; :func:`spaceport.core.errors.parse_failure` reads it.
    An untyped failure takes its name from the Step Functions error (capacity and throttling
    errors become :class:`~spaceport.core.errors.CapacityError`); a request SageMaker refused at job
    creation becomes :class:`~spaceport.core.errors.JobRejected` with the setting to fix.
    """
    miss = below_target(error)
    if miss is not None:
        return miss
    name, text, _job = _failure_text(error)
    limit = quota.parse(name, text)
    if limit is not None and not limit.transient:
        return limit.error().record(stage)
    sdk = sagemaker_errors.parse_sdk_error(name, text) if limit is None else None
    if sdk is not None and not sdk.transient:
        return sagemaker_errors.rejected(sdk, stage, JOB_KINDS.get(stage or "")).record(stage)
    if sdk is not None:
        text = sdk.message or sdk.code
    record = parse_failure(text)
    if record.error == StageFailed.__name__:
        if name in ERRORS:
            record = record.model_copy(update={"error": name, "fix": ERRORS[name].default_fix})
        elif limit is not None or sdk is not None or sagemaker_errors.job_failure_transient(text):
            # Still short of capacity (or throttled) after the workflow's last attempt.
            record = record.model_copy(update={"error": "CapacityError", "fix": ERRORS["CapacityError"].default_fix})
        elif name not in ("States.TaskFailed", "States.ALL", ""):
            record = record.model_copy(update={"error": name.replace(".", "")})
    return record.model_copy(update={"stage": stage or record.stage})


def new_record(plan: ExecutionPlan, *, status: str = "QUEUED", at: str | None = None) -> JobRecord:
    """The first record of a job, from its plan (``$.plan`` of the execution input)."""
    at = at or now_iso()
    # The image (by digest) each container stage runs, as the plan fixed it for the whole job.
    images = {name: stage.image for name, stage in plan.stages.items() if stage.kind != "gate" and stage.image}
    return JobRecord(job_id=plan.job_id, status=status, source_uri=plan.source_uri, email=plan.email,
                     preset=plan.preset, prefix=plan.prefix, images=images, created_at=at, updated_at=at)


def rejected_record(job_id: str, source_uri: str, email: str | None, *, at: str | None = None) -> JobRecord:
    """The record of an upload refused before a plan was made."""
    at = at or now_iso()
    return JobRecord(job_id=job_id, status="REJECTED", source_uri=source_uri, email=email, created_at=at,
                     updated_at=at)


def gate_verdict(results: Mapping[str, Any]) -> GateResult | None:
    """The QualityGate state's verdict in the workflow's results (``quality_gate.value``), if it ran."""
    value = ((results or {}).get(gate.STAGE.name) or {}).get("value")
    return GateResult.model_validate(value) if value is not None else None


def _stage_table(plan: ExecutionPlan, results: Mapping[str, Any]) -> dict[str, StageRecord]:
    stages = {}
    for stage, spec in plan.stages.items():
        if isinstance(spec, GateStage):
            verdict = gate_verdict(results)
            if verdict is not None:
                stages[stage] = gate.stage_record(verdict)
        elif isinstance((results or {}).get(stage), Mapping):
            stages[stage] = stage_summary(stage, results[stage], spec)
    return stages


def _total_cost(stages: Mapping[str, StageRecord]) -> float:
    return round(sum(s.cost_usd or 0.0 for s in stages.values()), 4)


def _key(uri: str) -> str:
    return uri.split("/", 3)[3] if uri.startswith("s3://") else uri


def _update(record: JobRecord, plan: ExecutionPlan, results: Mapping[str, Any], at: str | None,
            **changes: Any) -> JobRecord:
    stages = _stage_table(plan, results)
    verdict = gate_verdict(results)
    if verdict is not None:
        changes["quality_gate"] = verdict
    return record.model_copy(update=dict(updated_at=at or now_iso(), stages=stages, cost_usd=_total_cost(stages),
                                         metrics=training_metrics(results.get("train") or {}), **changes))


def succeeded(record: JobRecord, plan: ExecutionPlan, results: Mapping[str, Any],
              *, at: str | None = None) -> JobRecord:
    """The final record of a job whose every stage ran and passed the quality gate."""
    return _update(record, plan, results, at, status="SUCCEEDED", outputs=_outputs(plan, results))


def _outputs(plan: ExecutionPlan, results: Mapping[str, Any]) -> dict[str, str]:
    """What a job whose every stage ran produced: the stage graph's products (bucket keys) and the
    training job's model artifact."""
    prefix = _key(plan.prefix)
    outputs = {product.name: f"{prefix}{sd.folder}/{product.file}" for sd, product in PRODUCTS}
    model = (results.get("train") or {}).get("ModelArtifacts", {}).get("S3ModelArtifacts", "")
    if model:
        outputs["model"] = _key(model)
    return outputs


def progress(record: JobRecord, plan: ExecutionPlan, results: Mapping[str, Any],
             *, at: str | None = None) -> JobRecord:
    """The record of a running job with the stages done so far (what the publish stage reads)."""
    return _update(record, plan, results, at)


def retried(record: JobRecord, decision: Mapping[str, Any], error: Mapping[str, Any] | None,
            *, at: str | None = None) -> JobRecord:
    """The record after the workflow chose to run a stage again (``decision`` from :func:`plan_retry`)."""
    failure = describe_failure(error)
    retry = Retry(stage=decision["stage"], attempt=decision["attempt"], job_name=decision["job_name"],
                  wait_s=decision["wait_s"], error=failure.error, reason=failure.reason, at=at or now_iso())
    return record.model_copy(update={"retries": [*record.retries, retry], "updated_at": at or now_iso()})


def failed(record: JobRecord, plan: ExecutionPlan, results: Mapping[str, Any] | None,
           error: Mapping[str, Any] | None, *, at: str | None = None) -> JobRecord:
    """The final record of a job that stopped at a stage, with its failure record; or of a job whose
    every stage ran on a splat below the quality gate (:func:`below_target`): that one failed at the
    gate, and its outputs (the report and viewer, marked below target) are there to be linked."""
    results = results or {}
    miss = below_target(error)
    if miss is not None:
        return _update(record, plan, results, at, status="FAILED", stage=miss.stage, failure=miss,
                       outputs=_outputs(plan, results))
    stage = failed_stage(plan, results)
    return _update(record, plan, results, at, status="FAILED", stage=stage, failure=describe_failure(error, stage))


class JobStore:
    """Job records in DynamoDB (``job_id`` key) and as ``jobs/<id>/job.json`` in the bucket (without
    the e-mail address: :meth:`JobRecord.public`).

    The item holds the record as JSON (``record``) and, in an attribute of its own, the upload
    events it covered (``duplicates``): start_job appends to that list while the workflow rewrites
    the record, so neither write can lose the other's.
    """

    def __init__(self, *, table: Any, s3: Any, bucket: str) -> None:
        self.table, self.s3, self.bucket = table, s3, bucket

    def get(self, job_id: str) -> JobRecord | None:
        item = self.table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        if not item:
            return None
        record = JobRecord.model_validate_json(item["record"])
        seen = [Duplicate.model_validate_json(d) for d in item.get("duplicates", [])]
        return record.model_copy(update={"duplicates": seen}) if seen else record

    def _item(self, record: JobRecord) -> dict[str, Any]:
        return {"job_id": record.job_id, "status": record.status, "updated_at": record.updated_at,
                "record": record.model_copy(update={"duplicates": []}).model_dump_json()}

    def create(self, record: JobRecord) -> bool:
        """Store a new record; False (and nothing written) when the job already has one."""
        try:
            self.table.put_item(Item=self._item(record), ConditionExpression="attribute_not_exists(job_id)")
        except self.table.meta.client.exceptions.ConditionalCheckFailedException:
            return False
        self._mirror(record)
        return True

    def save(self, record: JobRecord, *, if_status: str | None = None) -> bool:
        """Store ``record`` (its ``duplicates`` stay as stored); with ``if_status``, only while the stored
        status is still that (no race with a faster writer). Returns whether it was written."""
        item = self._item(record)
        names = {"#s": "status", "#u": "updated_at", "#r": "record"}
        values = {":status": item["status"], ":u": item["updated_at"], ":r": item["record"]}
        kwargs: dict[str, Any] = {}
        if if_status is not None:
            kwargs["ConditionExpression"] = "#s = :if"
            values[":if"] = if_status
        try:
            self.table.update_item(Key={"job_id": record.job_id}, UpdateExpression="SET #s = :status, #u = :u, #r = :r",
                                   ExpressionAttributeNames=names, ExpressionAttributeValues=values, **kwargs)
        except self.table.meta.client.exceptions.ConditionalCheckFailedException:
            return False
        self._mirror(self.get(record.job_id) or record)
        return True

    def note_duplicate(self, job_id: str, duplicate: Duplicate) -> JobRecord | None:
        """Add ``duplicate`` to the job's ``duplicates`` (an atomic append); the updated record."""
        self.table.update_item(
            Key={"job_id": job_id}, ConditionExpression="attribute_exists(job_id)",
            UpdateExpression="SET #d = list_append(if_not_exists(#d, :none), :one)",
            ExpressionAttributeNames={"#d": "duplicates"},
            ExpressionAttributeValues={":none": [], ":one": [duplicate.model_dump_json()]})
        record = self.get(job_id)
        if record is not None:
            self._mirror(record)
        return record

    def _mirror(self, record: JobRecord) -> None:
        # The publish job reads job.json to build the report, which is shared by link: the user's
        # address stays in the table only (the notify step reads it from there).
        doc = record.public()
        if not doc.get("duplicates"):
            # Absent rather than empty: a stage image built before the field existed still reads it.
            doc.pop("duplicates", None)
        self.s3.put_object(Bucket=self.bucket, Key=f"jobs/{record.job_id}/{JobRecord.FILE}",
                           Body=json.dumps(doc, indent=2, sort_keys=True).encode(),
                           ContentType="application/json")
