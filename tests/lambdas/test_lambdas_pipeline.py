"""The ASL executed by moto's Step Functions engine, end to end from an S3 upload event."""

import json
import re
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
from lambdas_support import (
    BUCKET,
    REGION,
    RESULTS_DOMAIN,
    TABLE,
    FakeContext,
    SageMakerError,
    load_handler,
    s3_event,
    stored_record,
    wait_for,
)

from spaceport.core.errors import FailureRecord, OutOfMemory, TooFewRegistered
from spaceport.core.summaries import GateResult, JobRecord, Notification, parse_summary


def _upload(aws, key="uploads/My Garden é.zip", email="ana@example.com", body=b"PK\x03\x04 photos"):
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata={"email": email} if email else {})


def _start(aws, key_encoded="uploads/My+Garden+%C3%A9.zip"):
    return load_handler("start_job").handler(s3_event(key_encoded), FakeContext())


def _job_json(text: bytes, key: str) -> JobRecord:
    """``text``, the job.json at ``key``, read as the publish job reads it."""
    job = parse_summary(JobRecord, text, key)
    # job.json (read by the publish job, whose report is shared) carries no email address.
    assert "email" not in job.model_fields_set
    return job


def _record(job_id) -> JobRecord:
    """The stored record (with start_job's duplicates beside it), checked against its job.json mirror and
    the status the table indexes."""
    record = stored_record(job_id)
    assert record is not None, f"no record stored for {job_id}"
    key = f"jobs/{job_id}/{JobRecord.FILE}"
    text = boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert _job_json(text, key) == record.model_copy(update={"email": None})
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=TABLE, Key={"job_id": {"S": job_id}})["Item"]
    assert item["status"]["S"] == record.status
    return record


def _run(machine, **kw):
    _upload(machine, **kw)
    out = _start(machine)
    assert out["status"] == "started", out
    return out, wait_for(machine.sfn, out["execution_arn"])


def _sent(region=REGION):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return ses_backends[DEFAULT_ACCOUNT_ID][region].sent_messages


def test_success_runs_every_stage_in_plan_order_and_records_the_job(machine):
    seen = {}

    def publish_starts(event):  # what the publish job would download as its `job` input
        (job,) = [i["S3Input"] for i in event["ProcessingInputs"] if i["InputName"] == "job"]
        key = job["S3Uri"].split("/", 3)[3]
        seen["local"] = job["LocalPath"]
        seen["record"] = (machine.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read(), key)

    machine.fake.hooks["publish"] = publish_starts
    out, desc = _run(machine)
    assert desc["status"] == "SUCCEEDED"
    stages = [stage for stage, _ in machine.fake.calls]
    assert stages == ["sfm", "train", "compress", "publish"]
    calls = dict(machine.fake.calls)
    job_id = out["job_id"]
    assert calls["sfm"]["ProcessingJobName"] == f"{job_id}-sfm"
    assert calls["sfm"]["ProcessingInputs"][0]["S3Input"]["S3Uri"] == f"s3://{BUCKET}/jobs/{job_id}/upload/"
    staged = machine.s3.get_object(Bucket=BUCKET, Key=f"jobs/{job_id}/upload/My Garden é.zip")["Body"].read()
    assert staged == b"PK\x03\x04 photos"
    # No ContainerEntrypoint: the image's ENTRYPOINT `spaceport` gets the plan's arguments (stage first).
    assert "ContainerEntrypoint" not in calls["sfm"]["AppSpecification"]
    assert calls["sfm"]["AppSpecification"]["ContainerArguments"][0] == "sfm"
    assert "ContainerEntrypoint" not in calls["train"]["AlgorithmSpecification"]  # SageMaker passes `train`
    assert calls["train"]["HyperParameters"] and all(isinstance(v, str) for v in calls["train"]["HyperParameters"].values())
    model = f"s3://{BUCKET}/jobs/{job_id}/train/{job_id}-train/output/model.tar.gz"
    assert calls["compress"]["ProcessingInputs"][0]["S3Input"]["S3Uri"] == model
    assert calls["publish"]["AppSpecification"] == {"ImageUri": calls["publish"]["AppSpecification"]["ImageUri"],
                                                    "ContainerArguments": ["publish"]}
    # Publish reads the job record with every earlier stage's seconds and cost (the report's timings).
    assert [i["InputName"] for i in calls["publish"]["ProcessingInputs"]] == ["sfm", "train", "compressed", "job"]
    assert seen["local"] == "/opt/ml/processing/input/job"
    job = _job_json(*seen["record"])
    assert b"ana@example.com" not in seen["record"][0]
    assert job.status == "RUNNING" and job.job_id == job_id
    assert set(job.stages) == {"sfm", "train", "quality_gate", "compress"}
    assert job.stages["quality_gate"].status == "passed"
    assert job.quality_gate.passed is True
    assert job.stages["train"].seconds == 1800 and job.metrics["test_psnr"] == 26.5
    assert job.cost_usd == pytest.approx(0.7575 + (0.816 + 1.408) / 6, abs=1e-3)

    record = _record(job_id)
    assert record.status == "SUCCEEDED"
    assert record.metrics["test_psnr"] == 26.5 and record.metrics["num_gaussians"] == 412345
    # The gate's numbers (from metrics.json in model.tar.gz): the report's quality-gate line on AWS too.
    gate = record.quality_gate
    assert (gate.passed, gate.test_psnr, gate.num_gaussians, gate.min_psnr, gate.max_gaussians, gate.failed) == (
        True, 26.5, 412345, 22.0, 2000000, [])
    assert set(record.stages) == {"sfm", "train", "quality_gate", "compress", "publish"}
    assert record.stages["train"].seconds == 1800 and record.stages["sfm"].seconds == 600
    # 1800 s on ml.g5.2xlarge at $1.515/h, 600 s each on c5.4xlarge/g5.xlarge/m5.large.
    assert record.cost_usd == pytest.approx(0.7575 + (0.816 + 1.408 + 0.115) / 6, abs=1e-3)
    assert record.outputs["sog"] == f"jobs/{job_id}/compressed/scene.sog"
    assert record.notify.sent is True
    (msg,) = _sent()
    assert msg.destinations["ToAddresses"] == ["ana@example.com"]
    assert msg.subject.startswith("Your Spaceport splat is ready")
    assert "PSNR 26.50 dB" in msg.body and "scene.sog" in msg.body and "below" not in msg.body
    assert "Quality gate:" not in msg.body  # time per stage: the SageMaker stages only
    assert f"https://{RESULTS_DOMAIN}/jobs/{out['job_id']}/compressed/scene.sog?exp=" in msg.body
    assert "X-Amz-Signature" not in msg.body  # no presigned S3 URL


def test_sfm_failure_records_typed_error_emails_and_fails_with_it(machine):
    describe = {"ProcessingJobStatus": "Failed", "FailureReason": "AlgorithmError: See job logs",
                "ExitMessage": TooFewRegistered("Only 3 of 40 images registered", "Take 60+ photos with overlap",
                                                registered=3).record("sfm").line()}
    # A job that ran and failed: .sync fails the task with States.TaskFailed, the job description as Cause.
    machine.fake.script["sfm"] = [SageMakerError("States.TaskFailed", json.dumps(describe))]
    out, desc = _run(machine)
    assert desc["status"] == "FAILED"
    assert [s for s, _ in machine.fake.calls] == ["sfm"]  # bad input is never retried
    record = _record(out["job_id"])
    assert record.status == "FAILED" and record.stage == "sfm"
    assert record.failure == FailureRecord(error="TooFewRegistered", reason="Only 3 of 40 images registered.",
                                           fix="Take 60+ photos with overlap.", details={"registered": 3}, stage="sfm")
    history = machine.sfn.get_execution_history(executionArn=out["execution_arn"])["events"]
    failed = next(e for e in history if e["type"] == "ExecutionFailed")["executionFailedEventDetails"]
    assert failed["error"] == "TooFewRegistered" and "Only 3 of 40" in failed["cause"]
    (msg,) = _sent()
    assert "Only 3 of 40 images registered." in msg.body and "Take 60+ photos" in msg.body


_SDK = " (Service: AmazonSageMaker; Status Code: {status}; Error Code: {code}; Request ID: 4e1c7a2b; Proxy: null)"
_QUOTA = ("The account-level service limit 'ml.g5.2xlarge for training job usage' is {limit} Instances, with "
          "current utilization of {used} Instances and a request delta of 1 Instances. Please use AWS Service "
          "Quotas to request an increase for this quota." + _SDK.format(status=400, code="ResourceLimitExceeded"))


def test_training_quota_in_use_is_retried_then_succeeds(machine):
    machine.fake.script["train"] = [
        SageMakerError("SageMaker.ResourceLimitExceededException", _QUOTA.format(limit=1, used=1))]
    out, desc = _run(machine)
    assert desc["status"] == "SUCCEEDED"
    assert [s for s, _ in machine.fake.calls] == ["sfm", "train", "train", "compress", "publish"]
    record = _record(out["job_id"])
    assert record.status == "SUCCEEDED" and record.retries[0].error == "CapacityError"


def test_zero_training_quota_fails_at_once_naming_the_quota(machine):
    machine.fake.script["train"] = [
        SageMakerError("SageMaker.ResourceLimitExceededException", _QUOTA.format(limit=0, used=0))]
    out, desc = _run(machine)
    assert desc["status"] == "FAILED"
    assert [s for s, _ in machine.fake.calls] == ["sfm", "train"]  # no retry: waiting cannot raise a quota
    record = _record(out["job_id"])
    assert record.failure.error == "QuotaExceeded" and record.stage == "train"
    assert record.failure.reason == ("SageMaker cannot start an ml.g5.2xlarge: this account's quota "
                                     "'ml.g5.2xlarge for training job usage' is 0.")
    (msg,) = _sent()
    assert "Request at least 1 for 'ml.g5.2xlarge for training job usage' in Service Quotas" in msg.body


def _job_failed(reason: str, **extra) -> SageMakerError:
    """A SageMaker job that ran and failed: .sync raises States.TaskFailed with the job description as Cause."""
    return SageMakerError("States.TaskFailed", json.dumps(
        {"TrainingJobStatus": "Failed", "FailureReason": reason, **extra}))


CAPACITY = "CapacityError: Unable to provision requested ML compute capacity. Please retry using a different ML instance type."
SPOT = "InsufficientInstanceCapacity: Insufficient capacity for spot instance ml.g5.2xlarge in us-east-1."


def test_training_capacity_lost_inside_sagemaker_is_retried_under_new_job_names(machine):
    machine.fake.script["train"] = [_job_failed(CAPACITY), _job_failed(SPOT)]
    out, desc = _run(machine)
    assert desc["status"] == "SUCCEEDED"
    assert [s for s, _ in machine.fake.calls] == ["sfm", "train", "train", "train", "compress", "publish"]
    job_id = out["job_id"]
    names = [e["TrainingJobName"] for s, e in machine.fake.calls if s == "train"]
    assert names == [f"{job_id}-train", f"{job_id}-train-r2", f"{job_id}-train-r3"]
    # Every attempt resumes from the same checkpoints; the later stages read the last attempt's model.
    assert len({e["CheckpointConfig"]["S3Uri"] for s, e in machine.fake.calls if s == "train"}) == 1
    calls = dict(machine.fake.calls)
    assert calls["compress"]["ProcessingInputs"][0]["S3Input"]["S3Uri"].endswith(
        f"/{job_id}-train-r3/output/model.tar.gz")
    record = _record(job_id)
    assert record.status == "SUCCEEDED" and record.stages["train"].job_name == f"{job_id}-train-r3"
    assert [(r.stage, r.attempt, r.error) for r in record.retries] == [
        ("train", 2, "CapacityError"), ("train", 3, "CapacityError")]
    assert "Unable to provision" in record.retries[0].reason
    assert "Insufficient capacity for spot" in record.retries[1].reason
    history = machine.sfn.get_execution_history(executionArn=out["execution_arn"])["events"]
    waits = [e for e in history if e["type"] == "WaitStateEntered"]
    assert len(waits) == 2


def test_capacity_retries_are_bounded_and_end_in_capacity_error(machine):
    machine.fake.script["train"] = [_job_failed(CAPACITY)] * 5
    out, desc = _run(machine)
    assert desc["status"] == "FAILED"
    assert [s for s, _ in machine.fake.calls] == ["sfm", "train", "train", "train"]  # max_attempts = 3
    record = _record(out["job_id"])
    assert record.status == "FAILED" and record.stage == "train" and record.failure.error == "CapacityError"
    assert len(record.retries) == 2
    (msg,) = _sent()
    assert "Unable to provision requested ML compute capacity" in msg.body


def test_bad_input_job_failure_is_never_retried_even_if_it_mentions_capacity(machine):
    line = TooFewRegistered("Only 3 of 40 images registered (insufficient capacity to match)",
                            "Take 60+ photos with overlap").record("train").line()
    machine.fake.script["train"] = [_job_failed(f"AlgorithmError: {line}, exit code: 2")]
    out, desc = _run(machine)
    assert desc["status"] == "FAILED"
    assert [s for s, _ in machine.fake.calls] == ["sfm", "train"]
    record = _record(out["job_id"])
    assert record.failure.error == "TooFewRegistered" and record.stage == "train"
    assert record.retries == []


def _publish_input(machine, event) -> dict[str, bytes]:
    """What the publish job downloads: its ``job`` input (job.json) and its ``train`` input (model.tar.gz)."""
    out = {}
    for item in event["ProcessingInputs"]:
        if item["InputName"] in ("job", "train"):
            key = item["S3Input"]["S3Uri"].split("/", 3)[3]  # one object each (an S3Prefix of one)
            out[item["InputName"]] = machine.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return out


def _publish_as_the_job_would(inputs: dict[str, bytes], prefix):
    """The real publish stage on what the publish job downloaded (and a small SOG as compressed/), into
    ``prefix``/report/, ``prefix`` laid out like the job's S3 prefix."""
    import shutil

    from spaceport.stages.publish.command import publish
    from tests.unit.run.conftest import SPHERE_SOG

    (prefix / "compressed").mkdir(parents=True)
    shutil.copyfile(SPHERE_SOG, prefix / "compressed" / "scene.sog")
    (prefix / "train").mkdir()
    (prefix / "train" / "model.tar.gz").write_bytes(inputs["train"])
    (prefix / "job.json").write_bytes(inputs["job"])
    publish(prefix, prefix / "report")
    return prefix / "report"


def _open_through_the_edge(machine, root, link: str) -> tuple[int, str]:
    """GET ``link`` through the results distribution's edge function (cloud/stacks/edge/link_check.js in
    node, the deployment's secret) over ``root``, a folder laid out like the data bucket."""
    import shutil
    import urllib.error
    import urllib.request

    from spaceport.cloud import links
    from tests.e2e.edge import EdgeServer

    if shutil.which("node") is None:
        pytest.skip("node is not installed (the CDK app needs it too): apt-get install nodejs")
    secret_file = root.parent / "link-secret.json"
    secret_file.write_bytes(machine.s3.get_object(Bucket=BUCKET, Key=links.SECRET_OBJECT)["Body"].read())
    with EdgeServer(root, secret_file) as edge:
        try:
            with urllib.request.urlopen(edge.local(link), timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""


def test_a_splat_below_the_gate_is_published_marked_below_target_and_the_job_fails(machine, tmp_path):
    from spaceport.cloud import links
    from spaceport.core.errors import QualityBelowTarget

    machine.fake.metrics["test_psnr"] = 17.25
    seen = {}
    machine.fake.hooks["publish"] = lambda event: seen.update(_publish_input(machine, event))
    out, desc = _run(machine)
    job_id = out["job_id"]
    assert desc["status"] == "FAILED"
    # Still compressed and published, so there is something to look at; the job still fails.
    assert [s for s, _ in machine.fake.calls] == ["sfm", "train", "compress", "publish"]

    # The record the publish job reads carries the verdict the local runner gives it: the report says below target.
    job = JobRecord.model_validate_json(seen["job"])
    assert job.status == "RUNNING" and job.quality_gate.passed is False and job.quality_gate.test_psnr == 17.25
    gate = job.stages["quality_gate"]
    assert gate.status == "failed" and gate.failure.error == "QualityBelowTarget" and gate.numbers["passed"] is False
    report = _publish_as_the_job_would(seen, tmp_path / "bucket" / "jobs" / job_id)
    page = (report / "index.html").read_text()
    assert "Spaceport job report (below target)" in page
    assert "Below target: held-out PSNR 17.25 dB, target 22.00 dB" in page
    assert "<b>Reason:</b> held-out PSNR 17.25 dB is below the target 22.00 dB." in page
    assert "it is not a passing result" in page and "Quality gate: passed" not in page
    assert '"banner": "Below target: held-out PSNR 17.25 dB, target 22.00 dB"' in (report / "viewer.html").read_text()

    record = _record(job_id)
    assert record.status == "FAILED" and record.stage == "quality_gate"
    failure = record.failure
    assert (failure.error, failure.reason, failure.fix, failure.stage) == (
        "QualityBelowTarget", "held-out PSNR 17.25 dB is below the target 22.00 dB.", QualityBelowTarget.default_fix,
        "quality_gate")
    # The failure's details are the gate's result (spaceport.stages.gate.miss).
    verdict = GateResult.model_validate(failure.details)
    assert (verdict.passed, verdict.test_psnr, verdict.num_gaussians, verdict.min_psnr, verdict.max_gaussians,
            verdict.failed) == (False, 17.25, 412345, 22.0, 2000000, ["psnr"])
    assert record.stages["quality_gate"].failure == failure
    assert record.outputs["report"] == f"jobs/{job_id}/report/index.html"
    assert set(record.stages) == {"sfm", "train", "quality_gate", "compress", "publish"}
    history = machine.sfn.get_execution_history(executionArn=out["execution_arn"])["events"]
    entered = {e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e}
    assert not entered & {"RecordSuccess", "NotifySuccess", "Succeeded"}
    failed = next(e for e in history if e["type"] == "ExecutionFailed")["executionFailedEventDetails"]
    assert failed == {"error": "QualityBelowTarget", "cause": "held-out PSNR 17.25 dB is below the target 22.00 dB."}

    (msg,) = _sent()  # the failure email only, never the success email
    assert msg.subject.startswith("Your Spaceport splat is below target") and "is ready" not in msg.body
    assert "is below the quality target, so this job failed" in msg.body
    assert "What went wrong: held-out PSNR 17.25 dB is below the target 22.00 dB.\n" in msg.body
    assert f"What to do: {QualityBelowTarget.default_fix}\n" in msg.body
    (link,) = re.findall(r"https://\S+", msg.body)  # the report only: the splat itself is not a result
    assert f"Report (below target): {link}\n" in msg.body
    url = urlparse(link)
    assert url.hostname == RESULTS_DOMAIN and url.path == f"/jobs/{job_id}/report/index.html"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    secret = links.read_secret(machine.s3.get_object(Bucket=BUCKET, Key=links.SECRET_OBJECT)["Body"].read())
    assert query[links.SIGNATURE] == links.signature(secret, job_id, int(query[links.EXPIRES]))
    # The link opens the report the publish job made from that record, through the edge function.
    status, body = _open_through_the_edge(machine, tmp_path / "bucket", link)
    assert status == 200 and "Spaceport job report (below target)" in body
    forged = link.replace(query[links.SIGNATURE], links.signature("another secret", job_id, int(query[links.EXPIRES])))
    assert _open_through_the_edge(machine, tmp_path / "bucket", forged)[0] == 403


def test_compress_failing_after_a_below_target_gate_fails_with_compress_error(machine):
    from spaceport.core.errors import CompressionFailed

    machine.fake.metrics["test_psnr"] = 17.25
    line = CompressionFailed("The SOG encoder ran out of memory", "Lower max_gaussians").record("compress").line()
    machine.fake.script["compress"] = [SageMakerError("States.TaskFailed", json.dumps(
        {"ProcessingJobStatus": "Failed", "ExitMessage": line}))]
    out, desc = _run(machine)
    assert desc["status"] == "FAILED"
    assert [s for s, _ in machine.fake.calls] == ["sfm", "train", "compress"]  # bad input: not retried
    record = _record(out["job_id"])
    assert record.status == "FAILED" and record.stage == "compress"
    assert record.failure.error == "CompressionFailed"
    assert record.failure.reason == "The SOG encoder ran out of memory."
    assert record.quality_gate.passed is False and "report" not in record.outputs
    (msg,) = _sent()
    assert msg.subject.startswith("Spaceport could not process") and "Where: Compression\n" in msg.body
    assert "https://" not in msg.body.split("Logs:")[0]  # no report to link


def test_publish_capacity_retry_after_a_below_target_gate_still_ends_below_target(machine):
    machine.fake.metrics["test_psnr"] = 17.25
    machine.fake.script["publish"] = [SageMakerError("States.TaskFailed", json.dumps(
        {"ProcessingJobStatus": "Failed", "FailureReason": CAPACITY}))]
    out, desc = _run(machine)
    assert desc["status"] == "FAILED"
    assert [s for s, _ in machine.fake.calls] == ["sfm", "train", "compress", "publish", "publish"]
    record = _record(out["job_id"])
    assert record.failure.error == "QualityBelowTarget" and record.stage == "quality_gate"
    assert [(r.stage, r.attempt) for r in record.retries] == [("publish", 2)]


def test_a_model_without_metrics_fails_at_the_gate_before_compress(machine, monkeypatch):
    import lambdas_support

    monkeypatch.setattr(lambdas_support, "model_tarball", lambda metrics: b"not a tarball")
    out, desc = _run(machine)
    assert desc["status"] == "FAILED"
    assert [s for s, _ in machine.fake.calls] == ["sfm", "train"]
    record = _record(out["job_id"])
    assert record.failure.error == "ModelInvalid" and record.stage == "quality_gate"
    assert "not a readable tarball" in record.failure.reason


def test_a_below_target_splat_is_not_published_when_its_verdict_was_not_recorded(machine):
    machine.fake.metrics["test_psnr"] = 17.25
    machine.broken["spaceport-record"] = RuntimeError("dynamodb down")
    out, desc = _run(machine)
    assert desc["status"] == "FAILED"
    # Publish would read a record without the verdict, and its report would not say below target.
    assert [s for s, _ in machine.fake.calls] == ["sfm", "train", "compress"]
    record = _record(out["job_id"])
    assert record.status == "FAILED" and "dynamodb down" in record.failure.reason
    (msg,) = _sent()
    assert "dynamodb down" in msg.body and "https://" not in msg.body.split("Logs:")[0]


def test_email_rejected_is_recorded_and_the_job_still_succeeds(machine, env):
    env.setenv("SPACEPORT_SENDER", "unverified@example.org")  # SES rejects an unverified sender
    from spaceport.cloud import settings

    settings.load.cache_clear()
    out, desc = _run(machine)
    assert desc["status"] == "SUCCEEDED"
    record = _record(out["job_id"])
    assert record.status == "SUCCEEDED"
    assert record.notify.sent is False and "MessageRejected" in record.notify.error


def test_notify_lambda_crash_is_recorded_and_the_job_still_succeeds(machine):
    machine.broken["spaceport-notify"] = RuntimeError("boom")
    out, desc = _run(machine)
    assert desc["status"] == "SUCCEEDED"
    record = _record(out["job_id"])
    assert record.status == "SUCCEEDED"
    assert record.notify.sent is False and "boom" in record.notify.error


def test_duplicate_upload_event_starts_nothing_new(machine):
    out, desc = _run(machine)
    assert desc["status"] == "SUCCEEDED"
    again = _start(machine)
    assert again["status"] == "duplicate" and again["job_id"] == out["job_id"]
    executions = machine.sfn.list_executions(stateMachineArn=machine.state_machine_arn)["executions"]
    assert len(executions) == 1
    assert len(machine.fake.calls) == 4
    record = _record(out["job_id"])
    assert record.status == "SUCCEEDED" and [d.reason for d in record.duplicates] == ["duplicate event"]


def test_no_address_skips_email(machine):
    out, desc = _run(machine, email=None)
    assert desc["status"] == "SUCCEEDED"
    assert _record(out["job_id"]).notify == Notification(sent=False, channel=None, skipped="no address", error=None,
                                                         links_error=None)
    assert _sent() == []


def test_record_step_failing_still_emails_and_fails_with_the_stage_error(machine):
    oom = OutOfMemory("CUDA out of memory at 2.1M Gaussians", "Lower max_gaussians").record("train").line()
    machine.fake.script["train"] = [SageMakerError("States.TaskFailed", json.dumps(
        {"FailureReason": f"AlgorithmError: {oom}"}))]
    machine.broken["spaceport-record"] = RuntimeError("dynamodb down")
    out, desc = _run(machine)
    assert desc["status"] == "FAILED"
    history = machine.sfn.get_execution_history(executionArn=out["execution_arn"])["events"]
    failed = next(e for e in history if e["type"] == "ExecutionFailed")["executionFailedEventDetails"]
    assert failed["error"] == "StageFailed"  # the record is lost; the email below still has the typed error
    (msg,) = _sent()
    assert msg.destinations["ToAddresses"] == ["ana@example.com"]
    record = _record(out["job_id"])
    assert record.status == "FAILED" and record.failure.error == "OutOfMemory"
    assert record.failure.reason == "CUDA out of memory at 2.1M Gaussians." and "Lower max_gaussians." in msg.body


def test_processing_capacity_failure_is_retried_and_publish_still_gets_timings(machine):
    machine.fake.script["compress"] = [SageMakerError("States.TaskFailed", json.dumps(
        {"ProcessingJobStatus": "Failed", "FailureReason": CAPACITY}))]
    out, desc = _run(machine)
    assert desc["status"] == "SUCCEEDED"
    job_id = out["job_id"]
    assert [e.get("ProcessingJobName") for s, e in machine.fake.calls if s == "compress"] == [
        f"{job_id}-compress", f"{job_id}-compress-r2"]
    assert [s for s, _ in machine.fake.calls] == ["sfm", "train", "compress", "compress", "publish"]
    record = _record(job_id)
    assert record.stages["compress"].job_name == f"{job_id}-compress-r2"
    assert [(r.stage, r.attempt) for r in record.retries] == [("compress", 2)]


# ---- create-time errors: the integration's real names and causes ----
# Names: SageMaker.AmazonSageMakerException / SageMaker.ResourceLimitExceededException, as the Step
# Functions developer guide's SageMaker page retries them (awsdocs/aws-step-functions-developer-guide,
# doc_source/connect-sagemaker.md); States.TaskFailed for a job that ran (doc_source/concepts-error-handling.md).
# Causes: SageMaker's message plus the AWS SDK for Java's "(Service: AmazonSageMaker; Status Code: 400;
# Error Code: ...; Request ID: ...)" suffix; the messages are SageMaker's own as quoted in public reports
# ("Invalid image URI ... Please provide a valid Amazon Elastic Container Registry path of the Docker image
# to run." from CreateProcessingJob; AWS's "1 validation error detected: Value ... at ... failed to satisfy
# constraint: Member must satisfy enum value set"; "The requested resource training-job/ml.t3.medium is not
# available in this region" from CreateTrainingJob). More in spaceport/cloud/sagemaker_errors.py.
_INSTANCE_TYPE = ("1 validation error detected: Value 'ml.g5.3xlarge' at 'resourceConfig.instanceType' failed to "
                  "satisfy constraint: Member must satisfy enum value set: [ml.g5.xlarge, ml.g5.2xlarge, ml.g5.4xlarge]")
_BAD_IMAGE = ("Invalid image URI 123456789012.dkr.ecr.us-east-1.amazonaws.com/spaceport-sfm:latest. Please provide a "
              "valid Amazon Elastic Container Registry path of the Docker image to run.")


@pytest.mark.parametrize(("stage", "message", "fix"), [
    ("train", _INSTANCE_TYPE, "Set instance_types.train to an instance type SageMaker offers for training jobs"),
    ("sfm", _BAD_IMAGE, "Build the stage images and check them with `spaceport aws doctor`"),
])
def test_a_validation_error_fails_at_once_with_reason_fix_and_log_link(machine, stage, message, fix):
    machine.fake.script[stage] = [SageMakerError("SageMaker.AmazonSageMakerException",
                                                 message + _SDK.format(status=400, code="ValidationException"))]
    out, desc = _run(machine)
    assert desc["status"] == "FAILED"
    upto = ["sfm", "train"][: ["sfm", "train"].index(stage) + 1]
    assert [s for s, _ in machine.fake.calls] == upto  # called once: never retried
    history = machine.sfn.get_execution_history(executionArn=out["execution_arn"])["events"]
    assert not [e for e in history if e["type"] == "WaitStateEntered"]
    record = _record(out["job_id"])
    assert record.status == "FAILED" and record.stage == stage and record.retries == []
    failure = record.failure
    assert failure.error == "JobRejected" and failure.fix.startswith(fix)
    assert message.rstrip(".") in failure.reason
    failed = next(e for e in history if e["type"] == "ExecutionFailed")["executionFailedEventDetails"]
    assert failed["error"] == "JobRejected"
    (msg,) = _sent()
    assert message.rstrip(".") in msg.body and fix in msg.body
    # The job was never created, so the log link is the execution's history, not a SageMaker log group.
    assert "/aws/sagemaker/" not in msg.body
    assert f"#/v2/executions/details/{out['execution_arn']}" in msg.body


def test_throttling_at_job_creation_is_retried_and_the_job_succeeds(machine):
    machine.fake.script["train"] = [SageMakerError(
        "SageMaker.AmazonSageMakerException", "Rate exceeded" + _SDK.format(status=400, code="ThrottlingException"))]
    out, desc = _run(machine)
    assert desc["status"] == "SUCCEEDED"
    assert [s for s, _ in machine.fake.calls] == ["sfm", "train", "train", "compress", "publish"]
    record = _record(out["job_id"])
    assert [(r.stage, r.attempt, r.reason) for r in record.retries] == [("train", 2, "Rate exceeded.")]


def test_a_job_sagemaker_failed_internally_is_retried(machine):
    machine.fake.script["sfm"] = [SageMakerError("States.TaskFailed", json.dumps(
        {"ProcessingJobStatus": "Failed",
         "FailureReason": "InternalServerError: We encountered an internal error.  Please try again."}))]
    out, desc = _run(machine)
    assert desc["status"] == "SUCCEEDED"
    assert [s for s, _ in machine.fake.calls] == ["sfm", "sfm", "train", "compress", "publish"]
    assert [r.job_name for r in _record(out["job_id"]).retries] == [f"{out['job_id']}-sfm-r2"]


def test_an_instance_type_missing_in_the_region_fails_at_once(machine):
    machine.fake.script["train"] = [SageMakerError(
        "SageMaker.ResourceLimitExceededException",
        "The requested resource training-job/ml.g5.2xlarge is not available in this region"
        + _SDK.format(status=400, code="ResourceLimitExceeded"))]
    out, desc = _run(machine)
    assert desc["status"] == "FAILED"
    assert [s for s, _ in machine.fake.calls] == ["sfm", "train"]
    assert _record(out["job_id"]).failure.error == "JobRejected"
