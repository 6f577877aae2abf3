"""The success and failure emails as the uploader receives them (moto SES): subject, links through
the results distribution that name objects that exist and carry this job's signature and the
configured expiry, the reason and the fix, and where the logs of a crashed stage are."""

import json
import re
import time
from urllib.parse import parse_qs, unquote, urlparse

import boto3
from lambdas_support import BUCKET, REGION, RESULTS_DOMAIN, SENDER, plan_for

from spaceport.cloud import links as result_links
from spaceport.cloud import notify, records, settings
from spaceport.cloud.runtime import Clients
from spaceport.core.errors import TooFewRegistered, UnsupportedInput
from spaceport.core.summaries import Retry

JOB = "sp-garden-0123456789abcdef"


def _send(record):
    clients = Clients(settings.load())
    outcome = notify.send(record, settings=clients.settings, s3=clients.s3, ses=clients.ses, sns=clients.sns)
    assert outcome == {"sent": True, "channel": "ses"}
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    (msg,) = ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
    assert msg.source == SENDER and msg.destinations["ToAddresses"] == [record.email]
    return msg


def _plan():
    return plan_for(JOB, f"s3://{BUCKET}/uploads/Garden", "ana@example.com")


def test_success_email_links_open_the_outputs(aws):
    s3 = boto3.client("s3", region_name=REGION)
    for key in ("report/index.html", "report/viewer.html", "compressed/scene.sog", "compressed/scene.spz",
                f"train/{JOB}-train/output/model.tar.gz"):
        s3.put_object(Bucket=BUCKET, Key=f"jobs/{JOB}/{key}", Body=b"x")
    t0 = 1_763_870_400_000
    results = {"sfm": {"ProcessingStartTime": t0, "ProcessingEndTime": t0 + 600_000,
                       "ProcessingResources": {"ClusterConfig": {"InstanceType": "ml.c5.4xlarge"}}},
               "train": {"TrainingTimeInSeconds": 1800, "BillableTimeInSeconds": 1800,
                         "ResourceConfig": {"InstanceType": "ml.g5.2xlarge"},
                         "ModelArtifacts": {"S3ModelArtifacts":
                                            f"s3://{BUCKET}/jobs/{JOB}/train/{JOB}-train/output/model.tar.gz"},
                         "FinalMetricDataList": [{"MetricName": "test_psnr", "Value": 26.5},
                                                 {"MetricName": "test_ssim", "Value": 0.91},
                                                 {"MetricName": "num_gaussians", "Value": 412345}]}}
    record = records.succeeded(records.new_record(_plan()), _plan(), results)
    msg = _send(record)
    assert msg.subject == "Your Spaceport splat is ready: Garden"
    assert "held-out PSNR 26.50 dB, SSIM 0.910, 412,345 Gaussians" in msg.body
    links = re.findall(r"https://\S+", msg.body)
    assert len(links) == 5  # SOG, SPZ, report, viewer, model
    secret = result_links.read_secret(
        s3.get_object(Bucket=BUCKET, Key=result_links.SECRET_OBJECT)["Body"].read())
    for link in links:
        url = urlparse(link)
        # The distribution, never a presigned S3 URL (no X-Amz-* query, no bucket host).
        assert url.scheme == "https" and url.hostname == RESULTS_DOMAIN, link
        assert "X-Amz-" not in url.query and "amazonaws.com" not in link
        s3.head_object(Bucket=BUCKET, Key=unquote(url.path.lstrip("/")))  # every link names an object that exists
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        assert set(query) == {result_links.EXPIRES, result_links.SIGNATURE}
        expires = int(query[result_links.EXPIRES])
        assert abs(expires - (time.time() + 86400)) < 60  # SPACEPORT_LINK_EXPIRY_S of the test deployment
        assert query[result_links.SIGNATURE] == result_links.signature(secret, JOB, expires)
    assert f"These links work until {result_links.expiry_text(expires)}" in msg.body
    assert f"Job id: {JOB}" in msg.body


def test_failure_email_says_what_was_wrong_and_what_to_do(aws):
    # The stage's failure record, as SageMaker returns it behind its own prefix.
    line = TooFewRegistered("Only 3 of 40 images registered", "Take 60+ photos with overlap").record("train").line()
    error = {"Error": "States.TaskFailed", "Cause": json.dumps({"TrainingJobStatus": "Failed", "FailureReason":
             f"AlgorithmError: {line}, exit code: 2"})}
    record = records.failed(records.new_record(_plan()), _plan(), {"sfm": {}}, error)
    msg = _send(record)
    assert msg.subject == "Spaceport could not process Garden"
    assert "Where: Training\n" in msg.body
    assert "What went wrong: Only 3 of 40 images registered.\n" in msg.body
    assert "What to do: Take 60+ photos with overlap.\n" in msg.body
    assert f"Logs: CloudWatch log group /aws/sagemaker/TrainingJobs, log streams starting with {JOB}-train" in msg.body


def test_a_stage_that_crashed_without_a_failure_file_still_names_the_stage_and_its_logs(aws):
    # A segfault in the processing job: SageMaker's own words only, no "ClassName: reason" line.
    error = {"Error": "States.TaskFailed", "Cause": json.dumps({"ProcessingJobStatus": "Failed",
             "FailureReason": "AlgorithmError: See job logs for more information", "ExitMessage": ""})}
    plan = _plan()
    record = records.failed(records.new_record(plan), plan, {"sfm": {}, "train": {}, "quality_gate": {}}, error)
    record = record.model_copy(update={"retries": [Retry(
        stage="compress", attempt=2, job_name=f"{JOB}-compress-r2", wait_s=120, error="CapacityError",
        reason="No capacity.", at="2026-11-27T16:00:00+00:00")]})
    msg = _send(record)
    assert "Where: Compression\n" in msg.body
    assert ("What went wrong: The Compression stage stopped without saying why (SageMaker reported: "
            "AlgorithmError: See job logs for more information).") in msg.body
    logs = next(line for line in msg.body.splitlines() if line.startswith("Logs: "))
    assert f"/aws/sagemaker/ProcessingJobs, log streams starting with {JOB}-compress-r2: https://{REGION}." in logs
    assert f"logStreamNameFilter$3D{JOB}-compress-r2" in logs


def test_a_rejected_upload_gets_the_reason_and_no_log_line(aws):
    record = records.rejected_record(JOB, f"s3://{BUCKET}/uploads/notes.txt", "ana@example.com")
    failure = UnsupportedInput("'notes.txt' is not a zip or a video", "Upload a .zip of photos or a video (mp4/mov)")
    record = record.model_copy(update={"stage": "start", "failure": failure.record("start")})
    msg = _send(record)
    assert msg.subject == "Spaceport could not process notes.txt"
    assert "Where: Upload check\n" in msg.body and "'notes.txt' is not a zip or a video." in msg.body
    assert "Logs:" not in msg.body


def test_success_email_without_a_link_secret_still_goes_and_says_how_to_get_links(aws):
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=BUCKET, Key=f"jobs/{JOB}/compressed/scene.sog", Body=b"x")
    s3.delete_object(Bucket=BUCKET, Key=result_links.SECRET_OBJECT)
    record = records.succeeded(records.new_record(_plan()), _plan(), {})
    clients = Clients(settings.load())
    outcome = notify.send(record, settings=clients.settings, s3=clients.s3, ses=clients.ses, sns=clients.sns)
    assert outcome["sent"] is True and "NoSuchKey" in outcome["links_error"]
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    (msg,) = ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
    assert "https://" not in msg.body
    assert f"`spaceport status {JOB} --links HOURS`" in msg.body


def test_a_below_target_email_without_a_link_secret_still_goes_and_is_no_success_email(aws):
    from spaceport.core.errors import QualityBelowTarget
    from spaceport.core.summaries import GateResult

    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=BUCKET, Key=f"jobs/{JOB}/report/index.html", Body=b"x")
    s3.delete_object(Bucket=BUCKET, Key=result_links.SECRET_OBJECT)
    verdict = GateResult(passed=False, test_psnr=18.5, num_gaussians=9, min_psnr=20.0, max_gaussians=0)
    results = {s: {} for s in ("sfm", "train", "compress", "publish")} | {"quality_gate": {"value": verdict.model_dump()}}
    record = records.failed(records.new_record(_plan()), _plan(), results,
                            {"Error": "QualityBelowTarget", "Cause": verdict.model_dump_json()})
    clients = Clients(settings.load())
    outcome = notify.send(record, settings=clients.settings, s3=clients.s3, ses=clients.ses, sns=clients.sns)
    assert outcome["sent"] is True and "NoSuchKey" in outcome["links_error"]
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    (msg,) = ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
    assert msg.subject == "Your Spaceport splat is below target: Garden"
    assert "What went wrong: held-out PSNR 18.50 dB is below the target 20.00 dB.\n" in msg.body
    assert f"What to do: {QualityBelowTarget.default_fix}\n" in msg.body
    assert "https://" not in msg.body and f"`spaceport status {JOB} --links HOURS`" in msg.body
