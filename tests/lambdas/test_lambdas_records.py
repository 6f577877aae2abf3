"""Pure parts of the job record and the quality gate."""

import json

import pytest
from lambdas_support import load_handler, plan_for

from spaceport.aws import records
from spaceport.errors import (
    CapacityError,
    ConfigInvalid,
    CorruptArchive,
    QualityBelowTarget,
    StageFailed,
    TrainingDiverged,
)
from spaceport.plan import ExecutionPlan


def _line(cls, reason, fix=None, **details):
    """The failure record line a stage (contract.write_failure) or a Lambda (failures_as_records) writes."""
    return cls(reason, fix, **details).record().line()

#: SageMaker's CreateTrainingJob error, as Step Functions puts it in the Cause.
_LIMIT = ("The account-level service limit '{q}' is {limit} Instances, with current utilization of {used} Instances "
          "and a request delta of 1 Instances. Please use AWS Service Quotas to request an increase for this quota. "
          "(Service: AmazonSageMaker; Status Code: 400; Error Code: ResourceLimitExceeded; Request ID: 1a2b)")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        # Training job: FailureReason carries the failure record behind SageMaker's prefix.
        ({"Error": "States.TaskFailed", "Cause": json.dumps({"TrainingJobStatus": "Failed", "FailureReason":
          f"AlgorithmError: {_line(TrainingDiverged, 'Loss became NaN at step 812', 'Lower means_lr', step=812)}"
          ", exit code: 2"})},
         ("TrainingDiverged", "Loss became NaN at step 812.", "Lower means_lr.", {"step": 812})),
        # Processing job: ExitMessage carries it (written by contract.write_failure).
        ({"Error": "States.TaskFailed", "Cause": json.dumps({"FailureReason": "AlgorithmError: See job logs",
          "ExitMessage": _line(CorruptArchive, "The zip cannot be read")})},
         ("CorruptArchive", "The zip cannot be read.", CorruptArchive.default_fix, {})),
        # A Lambda raising a Spaceport error (its message is the record line).
        ({"Error": "QualityBelowTarget", "Cause": json.dumps({"errorType": "QualityBelowTarget",
          "errorMessage": _line(QualityBelowTarget, "Held-out PSNR is 18.00 dB", "Capture more views")})},
         ("QualityBelowTarget", "Held-out PSNR is 18.00 dB.", "Capture more views.", {})),
        # A reason that ends with a question keeps it: nothing is split at full stops any more.
        ({"Error": "States.TaskFailed", "Cause": json.dumps({"FailureReason": "AlgorithmError: See job logs",
          "ExitMessage": _line(ConfigInvalid, "Unknown train option 'stpes'. Did you mean 'steps'?",
                               "Use an option listed by --help")})},
         ("ConfigInvalid", "Unknown train option 'stpes'. Did you mean 'steps'?", "Use an option listed by --help.",
          {})),
        # A zero quota: one sentence naming the instance type and the quota to request.
        ({"Error": "SageMaker.ResourceLimitExceededException",
          "Cause": _LIMIT.format(q="ml.g5.2xlarge for training job usage", limit=0, used=0)},
         ("QuotaExceeded", "SageMaker cannot start an ml.g5.2xlarge: this account's quota 'ml.g5.2xlarge for "
          "training job usage' is 0.", "Request at least 1 for 'ml.g5.2xlarge for training job usage' in Service "
          "Quotas (Amazon SageMaker), then upload again.", None)),
        # SageMaker's own "Name: message" text, and capacity errors that outlived their retries.
        ({"Error": "States.TaskFailed", "Cause": json.dumps({"TrainingJobStatus": "Failed", "FailureReason":
          "CapacityError: Unable to provision requested ML compute capacity."})},
         ("CapacityError", "Unable to provision requested ML compute capacity.", CapacityError.default_fix, {})),
        ({"Error": "SageMaker.ResourceLimitExceededException", "Cause": "limit is 0"},
         ("CapacityError", "limit is 0.", CapacityError.default_fix, {})),
        ({"Error": "States.TaskFailed", "Cause": "something odd"},
         ("StageFailed", "something odd.", StageFailed.default_fix, {})),
    ],
)
def test_describe_failure(error, expected):
    got = records.describe_failure(error, "train")
    name, reason, fix, details = expected
    assert (got.error, got.reason, got.fix, got.stage) == (name, reason, fix, "train")
    if details is not None:
        assert got.details == details


def test_failed_stage_is_first_without_result():
    plan = plan_for("sp-x-0123456789abcdef", "s3://b/uploads/x.zip")
    assert plan.order == ["sfm", "train", "quality_gate", "compress", "publish"]
    assert records.failed_stage(plan, {}) == "sfm"
    assert records.failed_stage(plan, {"sfm": {}, "train": {}}) == "quality_gate"


def test_stage_summary_handles_iso_and_epoch_times():
    spec = plan_for("sp-x-0123456789abcdef", "s3://b/uploads/x.zip").stages["sfm"]
    spec = spec.model_copy(update={"cluster": spec.cluster.model_copy(update={"instance_type": "ml.m5.large"})})
    s = records.stage_summary("sfm", {"ProcessingStartTime": "2026-01-01T00:00:00Z",
                                      "ProcessingEndTime": "2026-01-01T01:00:00Z"}, spec)
    assert s.seconds == 3600 and s.cost_usd == 0.115
    s = records.stage_summary("train", {"TrainingTimeInSeconds": 100, "BillableTimeInSeconds": 40,
                                        "ResourceConfig": {"InstanceType": "ml.unknown"}}, spec)
    assert s.billable_seconds == 40 and s.cost_usd is None  # spot savings; unknown price


def test_quality_gate_reads_metrics_from_the_model_artifact(aws):
    """The Lambda applies spaceport.gate (the local runner's gate) to metrics.json inside model.tar.gz."""
    import boto3
    from lambdas_support import BUCKET, REGION, model_tarball

    from spaceport.errors import ModelInvalid

    s3 = boto3.client("s3", region_name=REGION)
    key = "jobs/sp-x/train/sp-x-train/output/model.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=key,
                  Body=model_tarball({"test_psnr": 25.0, "test_ssim": 0.9, "num_gaussians": 1000}))
    training = {"ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/{key}"}}
    check = load_handler("quality_gate").check
    passed = check({"min_psnr": 24.0, "max_gaussians": 1000}, training, s3)
    assert passed.model_dump() == {"passed": True, "test_psnr": 25.0, "num_gaussians": 1000, "min_psnr": 24.0,
                                   "max_gaussians": 1000}
    with pytest.raises(QualityBelowTarget, match=r"25\.00 dB is below the target 26\.00 dB") as info:
        check({"min_psnr": 26.0, "max_gaussians": 1000}, training, s3)
    assert info.value.details["test_psnr"] == 25.0 and info.value.details["min_psnr"] == 26.0
    with pytest.raises(QualityBelowTarget, match="1000 Gaussians exceed the cap of 999"):
        check({"min_psnr": 20.0, "max_gaussians": 999}, training, s3)
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"not a tarball")
    with pytest.raises(ModelInvalid, match="not a readable tarball"):
        check({"min_psnr": 20.0, "max_gaussians": 999}, training, s3)


def _job(reason=None, exit_message=None, status_key="TrainingJobStatus"):
    doc = {status_key: "Failed"}
    if reason:
        doc["FailureReason"] = reason
    if exit_message:
        doc["ExitMessage"] = exit_message
    return {"Error": "States.TaskFailed", "Cause": json.dumps(doc)}


@pytest.mark.parametrize(
    ("error", "capacity"),
    [
        (_job("CapacityError: Unable to provision requested ML compute capacity. Please retry."), True),
        (_job("InsufficientInstanceCapacity: no spot capacity for ml.g5.2xlarge"), True),
        (_job("ClientError: Insufficient capacity error: ml.g5.xlarge", status_key="ProcessingJobStatus"), True),
        # Our typed errors decide: bad input is never retried, whatever else the text says.
        (_job("AlgorithmError: TooFewRegistered: Only 3 of 40 images registered. Insufficient capacity."), False),
        (_job("AlgorithmError: See job logs", "CorruptArchive: The zip cannot be read."), False),
        (_job("AlgorithmError: OutOfMemory: CUDA out of memory. Lower max_gaussians."), False),
        # Our own CapacityError (retryable by definition) written by a stage.
        (_job("AlgorithmError: CapacityError: GPU unavailable on the host."), True),
        (_job("AlgorithmError: exit code 1"), False),
        # Create-time API errors: the state's own Retry handles these; not retried a second time.
        # Create-time quota errors: one in use by other jobs is capacity, one too small never is.
        ({"Error": "SageMaker.ResourceLimitExceededException", "Cause": _LIMIT.format(q="ml.g5.2xlarge for training "
          "job usage", limit=1, used=1)}, True),
        ({"Error": "SageMaker.ResourceLimitExceededException", "Cause": _LIMIT.format(q="ml.g5.2xlarge for training "
          "job usage", limit=0, used=0)}, False),
        ({"Error": "SageMaker.ResourceLimitExceededException", "Cause": "Insufficient capacity"}, True),
        ({"Error": "QualityBelowTarget", "Cause": json.dumps({"errorType": "QualityBelowTarget",
                                                              "errorMessage": "capacity"})}, False),
        (None, False),
    ],
)
def test_is_capacity_failure(error, capacity):
    assert records.is_capacity_failure(error) is capacity


PLAN = plan_for("sp-x-0123456789abcdef", "s3://b/uploads/x.zip")
POLICY = {"max_attempts": 3, "interval_s": 120, "backoff_rate": 2.0, "max_delay_s": 200}


def test_plan_retry_bumps_attempt_and_job_name_with_backoff_then_stops():
    capacity = _job("CapacityError: Unable to provision requested ML compute capacity.")
    first = records.plan_retry(PLAN, {"sfm": {}}, capacity, POLICY)
    assert first["retry"] and first["stage"] == "train" and first["attempt"] == 2 and first["wait_s"] == 120
    bumped = ExecutionPlan.model_validate(first["plan"])  # as the state machine hands it back
    assert (bumped.stages["train"].job_name, bumped.stages["train"].attempt) == ("sp-x-0123456789abcdef-train-r2", 2)
    assert bumped.stages["sfm"] == PLAN.stages["sfm"] and PLAN.stages["train"].attempt == 1  # input unchanged
    second = records.plan_retry(bumped, {"sfm": {}}, capacity, POLICY)
    assert second["attempt"] == 3 and second["wait_s"] == 200  # 240 capped at max_delay_s
    assert second["plan"]["stages"]["train"]["job_name"].endswith("-train-r3")
    third = records.plan_retry(ExecutionPlan.model_validate(second["plan"]), {"sfm": {}}, capacity, POLICY)
    assert third["retry"] is False and "3 of 3" in third["why"]
    bad = records.plan_retry(PLAN, {}, _job("AlgorithmError: See logs", "TooFewImages: Only 2 images."), POLICY)
    assert bad == {"retry": False, "stage": "sfm", "why": "not a capacity failure"}
    gate = records.plan_retry(PLAN, {"sfm": {}, "train": {}}, capacity, POLICY)
    assert gate["retry"] is False and gate["stage"] == "quality_gate"


def test_capacity_failure_reads_as_capacity_error_in_the_record():
    got = records.describe_failure(_job("InsufficientInstanceCapacity: no spot capacity for ml.g5.2xlarge"))
    assert got.error == "CapacityError" and "no spot capacity" in got.reason
