"""Pure parts of the job record and the quality gate."""

import json

import pytest
from lambdas_support import load_handler, plan_for

from spaceport.cloud import records
from spaceport.core.errors import (
    CapacityError,
    ConfigInvalid,
    CorruptArchive,
    QualityBelowTarget,
    StageFailed,
    TrainingDiverged,
)
from spaceport.core.plan import ExecutionPlan


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
    """The Lambda applies spaceport.stages.gate (the local runner's gate) to metrics.json inside model.tar.gz and
    returns its verdict; a miss is a verdict (the workflow still publishes), a bad model an error."""
    import boto3
    from lambdas_support import BUCKET, REGION, FakeContext, model_tarball

    from spaceport.core.errors import ModelInvalid

    s3 = boto3.client("s3", region_name=REGION)
    key = "jobs/sp-x/train/sp-x-train/output/model.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=key,
                  Body=model_tarball({"test_psnr": 25.0, "test_ssim": 0.9, "num_gaussians": 1000}))
    training = {"ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/{key}"}}
    lam = load_handler("quality_gate")
    keys = {"passed", "test_psnr", "num_gaussians", "min_psnr", "max_gaussians", "failed"}
    passed = lam.verdict({"min_psnr": 24.0, "max_gaussians": 1000}, training, s3)
    assert passed.model_dump(include=keys) == {"passed": True, "test_psnr": 25.0, "num_gaussians": 1000,
                                               "min_psnr": 24.0, "max_gaussians": 1000, "failed": []}
    # The capture checks run with their defaults; a metrics.json without capture figures skips those.
    assert passed.min_sharpness > 0 and passed.sharpness is None
    low = lam.handler({"thresholds": {"min_psnr": 26.0, "max_gaussians": 1000}, "training": training}, FakeContext())
    assert {k: low[k] for k in keys} == {"passed": False, "test_psnr": 25.0, "num_gaussians": 1000, "min_psnr": 26.0,
                                         "max_gaussians": 1000, "failed": ["psnr"]}
    assert not lam.verdict({"min_psnr": 20.0, "max_gaussians": 999}, training, s3).passed
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"not a tarball")
    with pytest.raises(ModelInvalid, match="not a readable tarball"):
        lam.verdict({"min_psnr": 20.0, "max_gaussians": 999}, training, s3)


def test_a_requests_capture_check_override_reaches_the_gate_lambda(aws):
    """Every gate option a job resolves travels in the plan to the Lambda: a request that raises the
    sharpness limit fails a capture the defaults pass, and one that switches the checks off passes it."""
    import boto3
    from lambdas_support import BUCKET, REGION, model_tarball

    from spaceport.core.plan import JobRequest, PlanSettings, plan_job

    s3 = boto3.client("s3", region_name=REGION)
    key = "jobs/sp-x/train/sp-x-train/output/model.tar.gz"
    figures = {"sharpness": 3.0, "sharpness_min": 2.5, "held_out_offset": 0.8, "baseline_psnr": 15.0}
    s3.put_object(Bucket=BUCKET, Key=key, Body=model_tarball(
        {"test_psnr": 25.0, "test_ssim": 0.9, "num_gaussians": 1000}, capture=figures))
    training = {"ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/{key}"}}
    lam = load_handler("quality_gate")

    def thresholds(options):
        plan = plan_job(JobRequest(f"s3://{BUCKET}/uploads/x.zip", "v1", options=options),
                        PlanSettings(root=f"s3://{BUCKET}/")).execution_plan()
        return json.loads(json.dumps(plan.dump()))["stages"]["quality_gate"]["thresholds"]

    assert lam.verdict(thresholds({}), training, s3).passed
    strict = lam.verdict(thresholds({"quality_gate": {"min_sharpness": "4"}}), training, s3)
    assert (strict.passed, strict.failed, strict.min_sharpness, strict.sharpness) == (False, ["sharpness"], 4.0, 3.0)
    gain = lam.verdict(thresholds({"quality_gate": {"min_psnr_gain": "12", "min_psnr": "0"}}), training, s3)
    assert (gain.passed, gain.failed) == (False, ["psnr_gain"])


def test_a_below_target_verdict_fails_the_job_at_the_gate_with_its_outputs():
    """What RecordFailure gets after BelowTarget: the gate's miss (as the local runner records it) and the
    published outputs; any other error after a below-target gate names that error and its stage."""
    from lambdas_support import plan_for

    from spaceport.core.summaries import GateResult
    from spaceport.stages import gate

    plan = plan_for("sp-x-0123456789abcdef", "s3://b/uploads/x.zip")
    verdict = GateResult(passed=False, test_psnr=17.0, num_gaussians=5, min_psnr=20.0, max_gaussians=0)
    results = {s: {} for s in ("sfm", "train", "compress", "publish")} | {"quality_gate": {"value": verdict.model_dump()}}
    error = {"Error": "QualityBelowTarget", "Cause": verdict.model_dump_json()}
    rec = records.failed(records.new_record(plan), plan, results, error)
    assert rec.status == "FAILED" and rec.stage == "quality_gate"
    assert rec.failure == gate.miss(verdict).record("quality_gate") == rec.stages["quality_gate"].failure
    assert rec.failure.reason == "held-out PSNR 17.00 dB is below the target 20.00 dB."
    assert rec.outputs["report"].endswith("/report/index.html") and rec.quality_gate == verdict
    assert records.describe_failure(error) == rec.failure  # the notify fallback reads the same record
    # A passing verdict, or another error, is not a miss.
    passed = verdict.model_copy(update={"passed": True, "test_psnr": 25.0})
    assert records.below_target({"Error": "QualityBelowTarget", "Cause": passed.model_dump_json()}) is None
    oom = {"Error": "States.TaskFailed", "Cause": json.dumps({"ProcessingJobStatus": "Failed",
                                                              "FailureReason": "OutOfMemory: too big"})}
    del results["compress"], results["publish"]
    rec = records.failed(records.new_record(plan), plan, results, oom)
    assert rec.stage == "compress" and rec.failure.error == "OutOfMemory" and "report" not in rec.outputs


def _sdk(message, code, status=400, name="SageMaker.AmazonSageMakerException"):
    """A create-time error as the .sync integration reports it: the Java SDK's exception class as the
    name, SageMaker's message with the SDK's suffix as the Cause (spaceport.cloud.sagemaker_errors)."""
    return {"Error": name, "Cause": f"{message} (Service: AmazonSageMaker; Status Code: {status}; Error Code: {code}; "
                                    "Request ID: 4e1c7a2b-1f0d-4f7e-9d55-0c2a5c1b8d11; Proxy: null)"}


#: SageMaker's own wording, as quoted in public reports of these errors (the validation format is AWS's
#: "N validation error(s) detected: Value ... at ... failed to satisfy constraint").
_INSTANCE_TYPE = ("1 validation error detected: Value 'ml.g5.3xlarge' at 'resourceConfig.instanceType' failed to "
                  "satisfy constraint: Member must satisfy enum value set: [ml.g5.xlarge, ml.g5.2xlarge, ml.g5.4xlarge]")
_BAD_IMAGE = ("Invalid image URI 123456789012.dkr.ecr.us-east-1.amazonaws.com/spaceport-sfm:latest. Please provide a "
              "valid Amazon Elastic Container Registry path of the Docker image to run.")
_NOT_IN_REGION = ("The requested resource training-job/ml.g5.2xlarge is not available in this region (Service: "
                  "AmazonSageMaker; Status Code: 400; Error Code: ResourceLimitExceeded; Request ID: 9f0e)")


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
        # Create-time quota errors: one in use by other jobs is capacity, one too small never is.
        ({"Error": "SageMaker.ResourceLimitExceededException", "Cause": _LIMIT.format(q="ml.g5.2xlarge for training "
          "job usage", limit=1, used=1)}, True),
        ({"Error": "SageMaker.ResourceLimitExceededException", "Cause": _LIMIT.format(q="ml.g5.2xlarge for training "
          "job usage", limit=0, used=0)}, False),
        ({"Error": "SageMaker.ResourceLimitExceededException", "Cause": "Insufficient capacity"}, True),
        ({"Error": "QualityBelowTarget", "Cause": json.dumps({"errorType": "QualityBelowTarget",
                                                              "errorMessage": "capacity"})}, False),
        (None, False),
        # Create-time errors under the integration's catch-all name: the code in the cause decides.
        (_sdk("Rate exceeded", "ThrottlingException"), True),
        (_sdk("We encountered an internal error. Please try again.", "InternalFailure", 500), True),
        (_sdk(_INSTANCE_TYPE, "ValidationException"), False),
        (_sdk(_BAD_IMAGE, "ValidationException"), False),
        (_sdk("User: arn:aws:sts::123456789012:assumed-role/x/y is not authorized to perform: sagemaker:AddTags",
              "AccessDeniedException"), False),
        ({"Error": "SageMaker.ResourceLimitExceededException", "Cause": _NOT_IN_REGION}, False),
        (_job("InternalServerError: We encountered an internal error.  Please try again."), True),
    ],
)
def test_classify_retries_only_where_waiting_can_help(error, capacity):
    assert records.classify(error)[0] is capacity


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
    bumped_again = ExecutionPlan.model_validate(second["plan"])
    assert bumped_again.stages["train"].job_name.endswith("-train-r3")
    third = records.plan_retry(bumped_again, {"sfm": {}}, capacity, POLICY)
    assert third["retry"] is False and "3 of 3" in third["why"]
    bad = records.plan_retry(PLAN, {}, _job("AlgorithmError: See logs", "TooFewImages: Only 2 images."), POLICY)
    assert bad == {"retry": False, "stage": "sfm", "why": "TooFewImages in the job's failure text"}
    gate = records.plan_retry(PLAN, {"sfm": {}, "train": {}}, capacity, POLICY)
    assert gate["retry"] is False and gate["stage"] == "quality_gate"


@pytest.mark.parametrize(("error", "stage", "fix"), [
    (_sdk(_INSTANCE_TYPE, "ValidationException"), "train",
     "Set instance_types.train to an instance type SageMaker offers for training jobs in this region"),
    ({"Error": "SageMaker.ResourceLimitExceededException", "Cause": _NOT_IN_REGION}, "train",
     "Set instance_types.train to an instance type SageMaker offers for training jobs in this region"),
    (_sdk(_BAD_IMAGE, "ValidationException"), "sfm", "Build the stage images and check them with `spaceport aws doctor`"),
    (_sdk("RoleArn: Cross-account pass role is not allowed.", "ValidationException"), "compress",
     "Redeploy the stack with `cdk deploy` so the SageMaker role"),
])
def test_a_request_sagemaker_refused_names_the_setting_to_fix(error, stage, fix):
    got = records.describe_failure(error, stage)
    assert got.error == "JobRejected" and got.stage == stage and got.fix.startswith(fix)
    assert got.fix.endswith("then upload again.") and got.details["at"] == "create"
    message = error["Cause"].split(" (Service: ")[0]
    assert got.reason.startswith(f"SageMaker refused to create the {stage} stage's job (") and message in got.reason


def test_throttling_that_outlived_its_retries_reads_as_capacity_error():
    got = records.describe_failure(_sdk("Rate exceeded", "ThrottlingException"), "train")
    assert (got.error, got.reason) == ("CapacityError", "Rate exceeded.")


def test_capacity_failure_reads_as_capacity_error_in_the_record():
    got = records.describe_failure(_job("InsufficientInstanceCapacity: no spot capacity for ml.g5.2xlarge"))
    assert got.error == "CapacityError" and "no spot capacity" in got.reason
