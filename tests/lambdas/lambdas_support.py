"""Handlers under moto, and the state machine executed by moto's Step Functions engine.

moto does not run Lambda code without Docker and has no ``.sync`` SageMaker integration, so: the simple Lambda backend's ``invoke`` is patched to call our handlers in
process, and each SageMaker ``.sync`` task is rewritten to a fake "sagemaker" Lambda that
returns a Describe*Job-shaped result (or fails the way a job does), scripted per test.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import json
import time
import types
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
REGION, ACCOUNT = "us-east-1", "123456789012"
BUCKET, TABLE = "spaceport-data", "spaceport-jobs"
SENDER = "splats@example.com"
RESULTS_DOMAIN = "d111111abcdef8.cloudfront.net"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/spaceport-sagemaker"
FUNCTIONS = {"RecordFunctionArn": "spaceport-record", "QualityGateFunctionArn": "spaceport-quality-gate",
             "NotifyFunctionArn": "spaceport-notify"}
HANDLERS = {"spaceport-record": "record", "spaceport-quality-gate": "quality_gate",
            "spaceport-notify": "notify", "spaceport-start-job": "start_job"}
FAKE_SAGEMAKER = "fake-sagemaker"
QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/spaceport-quiet"


def lambda_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def plan_for(job_id: str, source_uri: str, email: str | None = None):
    """A real execution plan (spaceport.core.plan) of ``source_uri`` whose job id is ``job_id``, as the
    state machine hands it to the record Lambda."""
    from spaceport.core.plan import ExecutionPlan, JobRequest, PlanSettings, plan_job

    plan = plan_job(JobRequest(source_uri, "v1", email=email), PlanSettings(root=f"s3://{BUCKET}/"))
    return ExecutionPlan.model_validate(json.loads(json.dumps(plan.execution_plan().dump()).replace(plan.job_id, job_id)))


def stored_record(job_id: str):
    """The job's record as stored (DynamoDB item, with the duplicates start_job noted beside it),
    read through the store the Lambdas use; None when there is none."""
    from spaceport.cloud.records import JobStore

    table = boto3.resource("dynamodb", region_name=REGION).Table(TABLE)
    return JobStore(table=table, s3=boto3.client("s3", region_name=REGION), bucket=BUCKET).get(job_id)


def execution_plan(sfn, execution_arn: str):
    """The plan a Step Functions execution was started with (its input's ``plan``)."""
    from spaceport.core.plan import ExecutionPlan

    return ExecutionPlan.model_validate(json.loads(sfn.describe_execution(executionArn=execution_arn)["input"])["plan"])


def load_handler(name: str):
    return importlib.import_module(f"cloud.lambdas.{name}.handler")


@dataclass
class FakeContext:
    function_name: str = "spaceport-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = lambda_arn("spaceport-test")
    aws_request_id: str = "req-1"


PLAN_SETTINGS = {
    "sfm": {"image": "123.dkr.ecr.us-east-1.amazonaws.com/sfm:t", "instance_type": "ml.c5.4xlarge",
            "volume_gb": 50, "max_runtime_s": 7200},
    "train": {"image": "123.dkr.ecr.us-east-1.amazonaws.com/train:t", "instance_type": "ml.g5.2xlarge",
              "volume_gb": 50, "max_runtime_s": 10800},
    "compress": {"image": "123.dkr.ecr.us-east-1.amazonaws.com/compress:t", "instance_type": "ml.g5.xlarge",
                 "volume_gb": 30, "max_runtime_s": 3600},
    "publish": {"image": "123.dkr.ecr.us-east-1.amazonaws.com/compress:t", "instance_type": "ml.m5.large",
                "volume_gb": 20, "max_runtime_s": 1800},
    "role_arn": ROLE,
    "min_psnr": 22.0,
    "max_gaussians": 2000000,
}


@pytest.fixture
def env(monkeypatch):
    from spaceport.cloud import settings

    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
        "SPACEPORT_BUCKET": BUCKET, "SPACEPORT_TABLE": TABLE, "SPACEPORT_SENDER": SENDER,
        "SPACEPORT_PLAN_SETTINGS": json.dumps(PLAN_SETTINGS), "SPACEPORT_LINK_EXPIRY_S": "86400",
        "SPACEPORT_MAX_UPLOAD_BYTES": str(50 * 1024 * 1024), "POWERTOOLS_LOG_LEVEL": "WARNING",
        # Timers due at once: the tests deliver them by hand (the quiet logic compares event times).
        "SPACEPORT_QUIET_QUEUE_URL": QUEUE_URL, "SPACEPORT_QUIET_S": "0",
        "SPACEPORT_RESULTS_DOMAIN": RESULTS_DOMAIN,
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("SPACEPORT_TOPIC_ARN", raising=False)
    settings.load.cache_clear()
    yield monkeypatch
    settings.load.cache_clear()


def model_tarball(metrics: dict[str, float], capture: dict[str, float] | None = None) -> bytes:
    """A training job's model.tar.gz: a stand-in splat.ply and a metrics.json (TrainMetrics) with ``metrics``
    (and the capture figures ``capture``, when given)."""
    import io
    import tarfile

    from spaceport.core.summaries import CaptureFigures, TrainMetrics

    doc = TrainMetrics(
        test_psnr=metrics["test_psnr"], test_ssim=metrics["test_ssim"], train_psnr=metrics["test_psnr"] + 1,
        num_gaussians=int(metrics["num_gaussians"]), steps=7000, stopped_early=False, sh_degree=3,
        held_out=["a.jpg"], evaluated_on="test", train_images=20, width=1600, height=1200, splat_bytes=1000,
        device="cuda", strategy="default", malloc_tuned=False, seconds={"total": 1800.0}, seconds_per_step=0.25,
        peak_memory_mb=9000.0, config={}, history=[],
        capture=CaptureFigures(**capture) if capture else None).to_json().encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("splat.ply", b"ply\n" * 1000), ("metrics.json", doc)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class FakeSageMaker:
    """Scripted SageMaker jobs: ``script[stage]`` is a list of outcomes, one per call ("ok" by default)."""

    def __init__(self) -> None:
        self.script: dict[str, list] = {}
        self.calls: list[tuple[str, dict]] = []
        #: ``hooks[stage](event)`` runs when that stage's job "starts" (inside moto: it may read S3).
        self.hooks: dict[str, object] = {}
        self.metrics = {"test_psnr": 26.5, "test_ssim": 0.91, "num_gaussians": 412345.0, "loss": 0.03}

    def __call__(self, event: dict) -> dict:
        stage = event["Environment"]["SPACEPORT_STAGE"]
        self.calls.append((stage, event))
        if stage in self.hooks:
            self.hooks[stage](event)
        outcomes = self.script.get(stage) or []
        outcome = outcomes.pop(0) if outcomes else "ok"
        if outcome != "ok":
            raise outcome
        t0 = 1_763_870_400_000  # epoch ms, as Step Functions renders SageMaker timestamps
        if "TrainingJobName" in event:
            name = event["TrainingJobName"]
            model_uri = f"{event['OutputDataConfig']['S3OutputPath']}{name}/output/model.tar.gz"
            bucket, key = model_uri[len("s3://"):].split("/", 1)
            # What the training job leaves: model.tar.gz holding metrics.json (the gate reads it).
            boto3.client("s3", region_name=REGION).put_object(Bucket=bucket, Key=key, Body=model_tarball(self.metrics))
            return {
                "TrainingJobName": name, "TrainingJobStatus": "Completed",
                "TrainingStartTime": t0, "TrainingEndTime": t0 + 1_800_000,
                "TrainingTimeInSeconds": 1800, "BillableTimeInSeconds": 1800,
                "ResourceConfig": event["ResourceConfig"],
                "ModelArtifacts": {"S3ModelArtifacts": model_uri},
                "FinalMetricDataList": [{"MetricName": k, "Value": v, "Timestamp": t0}
                                        for k, v in self.metrics.items()],
            }
        # What the processing job uploads: its stage's required files and products (stand-ins).
        from spaceport.core.graph import GRAPH

        s3 = boto3.client("s3", region_name=REGION)
        for out in event["ProcessingOutputConfig"]["Outputs"]:
            stage = next(sd for sd in GRAPH if sd.output == out["OutputName"])
            bucket, prefix = out["S3Output"]["S3Uri"][len("s3://"):].split("/", 1)
            for name in (*stage.required, *(p.file for p in stage.products)):
                s3.put_object(Bucket=bucket, Key=prefix + name, Body=b"x")
        return {"ProcessingJobName": event["ProcessingJobName"], "ProcessingJobStatus": "Completed",
                "ProcessingStartTime": t0, "ProcessingEndTime": t0 + 600_000,
                "ProcessingResources": event["ProcessingResources"]}


class LambdaError(Exception):
    """Raised by a fake to fail the invocation with a chosen ``errorType``."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


class SageMakerError(LambdaError):
    """Raised by the fake SageMaker to fail its task exactly as the ``.sync`` integration does: the
    Step Functions error ``name`` (``States.TaskFailed``, ``SageMaker.AmazonSageMakerException``, ...)
    and the raw ``cause`` text, not a Lambda error payload (spaceport.cloud.sagemaker_errors says which
    names and causes the integration produces, and where that comes from)."""

    MARK = "spaceport-test-sagemaker-error"


def _patch_task_failures(monkeypatch) -> None:
    """moto turns a failed Lambda task into error=errorType, cause=the whole payload, and refuses
    ``States.*`` names from a function; a :class:`SageMakerError` gets its own name and cause instead."""
    from moto.stepfunctions.parser.api import HistoryEventType, LambdaFunctionFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import (
        StateTaskLambda,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    original = StateTaskLambda._from_error

    def from_error(self, env, ex):
        if isinstance(ex, lambda_eval_utils.LambdaFunctionErrorException):
            try:
                payload = json.loads(ex.payload)
            except ValueError:
                payload = {}
            if payload.get(SageMakerError.MARK):
                error, cause = payload["errorType"], payload["errorMessage"]
                name = (StatesErrorName(StatesErrorNameType.StatesTaskFailed) if error == "States.TaskFailed"
                        else CustomErrorName(error))
                return FailureEvent(env=env, error_name=name, event_type=HistoryEventType.LambdaFunctionFailed,
                                    event_details=EventDetails(lambdaFunctionFailedEventDetails=(
                                        LambdaFunctionFailedEventDetails(error=error, cause=cause))))
        return original(self, env, ex)

    monkeypatch.setattr(StateTaskLambda, "_from_error", from_error)


@pytest.fixture
def aws(env):
    """moto with Step Functions execution on; bucket, table and SES identity created; Lambdas in process."""
    from moto import mock_aws
    from moto.awslambda_simple.models import LambdaSimpleBackend

    fake = FakeSageMaker()
    broken: dict[str, Exception] = {}

    def invoke(self, function_name, qualifier, body, headers, response_headers):
        name = function_name.rsplit(":", 1)[-1] if function_name.startswith("arn:") else function_name
        event = json.loads(body or "{}")
        try:
            if name in broken:
                raise broken[name]
            if name == FAKE_SAGEMAKER:
                result = fake(event)
            else:
                result = load_handler(HANDLERS[name]).handler(event, FakeContext(function_name=name))
        except Exception as exc:  # the Lambda runtime reports any exception as a function error
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": getattr(exc, "error_type", type(exc).__name__),
                               "errorMessage": str(exc),
                               **({SageMakerError.MARK: True} if isinstance(exc, SageMakerError) else {})}).encode()
        return json.dumps(result, default=str).encode()

    env.setattr(LambdaSimpleBackend, "invoke", invoke)
    _patch_task_failures(env)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}):
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})  # as deployed
        load_handler("link_secret").ensure_secret(s3, BUCKET)  # the deploy's custom resource writes it
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=TABLE, KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST")
        boto3.client("ses", region_name=REGION).verify_email_identity(EmailAddress=SENDER)
        boto3.client("sqs", region_name=REGION).create_queue(QueueName=QUEUE_URL.rsplit("/", 1)[-1])
        yield types.SimpleNamespace(s3=s3, fake=fake, broken=broken, region=REGION)


def render_asl_for_moto() -> str:
    """The real ASL with substitutions filled and SageMaker .sync tasks pointed at the fake Lambda."""
    text = (ROOT / "cloud" / "statemachine" / "pipeline.asl.json").read_text()
    text = text.replace("${SageMakerRoleArn}", ROLE)
    for key, name in FUNCTIONS.items():
        text = text.replace("${" + key + "}", lambda_arn(name))
    asl = json.loads(text)
    for state in asl["States"].values():
        if state.get("Resource", "").startswith("arn:aws:states:::sagemaker:"):
            state["Resource"] = lambda_arn(FAKE_SAGEMAKER)
        for retry in state.get("Retry", []):
            retry["IntervalSeconds"] = 1  # keep the test fast; the backoff shape is asserted elsewhere
            retry.pop("JitterStrategy", None)
    # The workflow's own capacity retries wait 0 s here (the Wait state still runs).
    asl["States"]["ClassifyFailure"]["Parameters"]["Payload"]["policy"]["interval_s"] = 0
    return json.dumps(asl)


@pytest.fixture
def machine(aws, env):
    """The state machine and the Lambdas it calls, created in moto."""
    lam = boto3.client("lambda", region_name=REGION)
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="lambda-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", "def handler(event, context):\n    return event\n")
    for name in [*FUNCTIONS.values(), FAKE_SAGEMAKER]:
        lam.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="handler.handler",
                            Code={"ZipFile": buf.getvalue()})
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.create_state_machine(name="spaceport-pipeline", definition=render_asl_for_moto(),
                                   roleArn=role)["stateMachineArn"]
    from spaceport.cloud import settings

    env.setenv("SPACEPORT_STATE_MACHINE_ARN", arn)
    settings.load.cache_clear()
    aws.sfn, aws.state_machine_arn = sfn, arn
    return aws


def wait_for(sfn, execution_arn: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        desc = sfn.describe_execution(executionArn=execution_arn)
        if desc["status"] != "RUNNING":
            return desc
        time.sleep(0.1)
    raise AssertionError(f"execution still running after {timeout_s}s")


def s3_event(key: str, *, bucket: str = BUCKET, size: int = 1234, etag: str = "0123abcd",
             version_id: str | None = None, time: str | None = None) -> dict:
    """An S3 "Object Created" event as EventBridge delivers it to start_job (``key`` as given:
    the handler accepts it verbatim or URL-encoded), sent now unless ``time`` says otherwise."""
    time = time or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created",
        "source": "aws.s3", "account": ACCOUNT, "time": time, "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket},
                   "object": {"key": key, "size": size, "etag": etag, "sequencer": "617f08299329d189",
                              **({"version-id": version_id} if version_id else {})},
                   "request-id": "N4N7GDK58NMKJ12R", "requester": ACCOUNT, "source-ip-address": "1.2.3.4",
                   "reason": "PutObject"},
    }


def timer_messages(max_messages: int = 10) -> list[dict]:
    """Receive (and delete) the quiet-timer messages start_job queued, as an SQS event's records."""
    sqs = boto3.client("sqs", region_name=REGION)
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=QUEUE_URL, MaxNumberOfMessages=max_messages).get("Messages", [])
        if not got:
            return out
        for m in got:
            sqs.delete_message(QueueUrl=QUEUE_URL, ReceiptHandle=m["ReceiptHandle"])
            out.append({"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                        "eventSource": "aws:sqs", "awsRegion": REGION})


@pytest.fixture
def started(aws, env):
    """start_job against a one-state machine (the pipeline itself is tested in test_lambdas_pipeline)."""
    from spaceport.cloud import settings

    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.create_state_machine(
        name="spaceport-stub", roleArn="arn:aws:iam::123456789012:role/sfn",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}))["stateMachineArn"]
    env.setenv("SPACEPORT_STATE_MACHINE_ARN", arn)
    settings.load.cache_clear()
    aws.sfn, aws.state_machine_arn = sfn, arn
    return aws
