"""Uploading again (moto): the same zip, video or folder uploaded again after its job ended starts a
new job; a repeated event, or the same content uploaded while its job runs, starts nothing and the
job record says so."""

import json
import time

import pytest
from lambdas_support import (
    BUCKET,
    REGION,
    FakeContext,
    SageMakerError,
    load_handler,
    s3_event,
    stored_record,
    wait_for,
)
from lambdas_support import timer_messages as _timer_messages

from spaceport.cloud import uploads
from spaceport.core.summaries import JobRecord, parse_summary

JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 64
ZIP = b"PK\x03\x04\x14\x00\x00\x00 photos"
MOV = b"\x00\x00\x00\x14ftypqt  " + b"\0" * 32
#: What start_job sees for each kind of upload: the keys written, and their bytes.
KINDS = {
    "zip": {"uploads/Garden.zip": ZIP},
    "video": {"uploads/walk around/IMG_0420.MOV": MOV},
    "folder": {f"uploads/Back Yard/IMG_{i}.JPG": JPEG + bytes([i]) for i in range(3)},
}
_ZERO_QUOTA = ("The account-level service limit 'ml.g5.2xlarge for training job usage' is 0 Instances, with current "
               "utilization of 0 Instances and a request delta of 1 Instances. Please use AWS Service Quotas to request "
               "an increase for this quota. (Service: AmazonSageMaker; Status Code: 400; Error Code: "
               "ResourceLimitExceeded; Request ID: 4e1c7a2b; Proxy: null)")


def _handler(event):
    return load_handler("start_job").handler(event, FakeContext())


def _upload(aws, kind) -> dict:
    """Put the kind's objects and deliver what the bucket delivers: a file's event, or a folder's
    events and then its quiet timer. Returns start_job's outcome for the upload."""
    outs = []
    for key, body in KINDS[kind].items():
        aws.s3.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata={"email": "ana@example.com"})
        outs.append(_handler(s3_event(key.replace(" ", "+"))))
    if kind != "folder":
        (out,) = outs
        return out
    assert {o["status"] for o in outs} == {"waiting"}
    (out,) = _handler({"Records": _timer_messages()})["batches"]
    return out


def _record(job_id):
    record = stored_record(job_id)
    assert record is not None, job_id
    return record


def _sent():
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages


def _executions(aws):
    return aws.sfn.list_executions(stateMachineArn=aws.state_machine_arn)["executions"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_uploading_again_after_a_failed_job_starts_a_new_job(machine, kind):
    """The QuotaExceeded email says "then upload again": after the quota is raised, the same upload
    starts a job that runs, for a zip, a video and a folder alike."""
    machine.fake.script["train"] = [SageMakerError("SageMaker.ResourceLimitExceededException", _ZERO_QUOTA)]
    first = _upload(machine, kind)
    assert first["status"] == "started", first
    assert wait_for(machine.sfn, first["execution_arn"])["status"] == "FAILED"
    failed = _record(first["job_id"])
    assert failed.status == "FAILED" and failed.failure.error == "QuotaExceeded"
    assert failed.failure.fix.endswith("then upload again.")
    assert "then upload again" in _sent()[0].body

    time.sleep(1.1)  # S3 and the record keep whole seconds; a person uploads minutes later
    again = _upload(machine, kind)
    assert again["status"] == "started", again
    assert again["job_id"] != first["job_id"]
    assert wait_for(machine.sfn, again["execution_arn"])["status"] == "SUCCEEDED"
    assert _record(again["job_id"]).status == "SUCCEEDED"
    assert [s for s, _ in machine.fake.calls] == ["sfm", "train", "sfm", "train", "compress", "publish"]
    # The second job ran on the second upload, under its own prefix and job names.
    sfm_calls = [e for s, e in machine.fake.calls if s == "sfm"]
    assert sfm_calls[1]["ProcessingJobName"] == f"{again['job_id']}-sfm"
    assert len(_sent()) == 2 and _sent()[1].subject.startswith("Your Spaceport splat is ready")


@pytest.mark.parametrize("kind", list(KINDS))
def test_uploading_again_while_the_job_runs_starts_nothing_and_the_record_says_so(started, kind):
    first = _upload(started, kind)
    assert first["status"] == "started"
    time.sleep(1.1)
    again = _upload(started, kind)
    assert again == {"status": "duplicate", "job_id": first["job_id"], "execution_arn": None,
                     "reason": "uploaded again while the job was running"}
    assert len(_executions(started)) == 1
    record = _record(first["job_id"])
    assert record.status == "RUNNING"
    assert [d.reason for d in record.duplicates] == ["uploaded again while the job was running"]
    # The mirror in the bucket says so too (what `spaceport status` and the report read).
    mirrored = parse_summary(JobRecord, started.s3.get_object(
        Bucket=BUCKET, Key=f"jobs/{first['job_id']}/job.json")["Body"].read(), "job.json")
    assert mirrored.duplicates[0].reason == "uploaded again while the job was running"


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_repeated_event_starts_nothing_and_the_record_says_so(started, kind):
    first = _upload(started, kind)
    assert first["status"] == "started"
    if kind == "folder":  # the same quiet timer delivered again
        timer = json.dumps({"bucket": BUCKET, "batch": "uploads/Back Yard/", "armed_at": "2030-01-01T00:00:00Z"})
        again = _handler({"Records": [{"body": timer, "eventSource": "aws:sqs"}]})["batches"][0]
    else:  # the same S3 event delivered again
        again = _handler(s3_event(next(iter(KINDS[kind])).replace(" ", "+")))
    assert again["status"] == "duplicate" and again["reason"] == "duplicate event"
    assert again["job_id"] == first["job_id"]
    assert len(_executions(started)) == 1
    assert [d.reason for d in _record(first["job_id"]).duplicates] == ["duplicate event"]


def test_a_job_record_written_by_the_workflow_keeps_the_duplicates_start_job_noted(started):
    """start_job appends to its own attribute; the record Lambda's later save cannot drop it."""
    first = _upload(started, "zip")
    again = _handler(s3_event("uploads/Garden.zip"))
    assert again["reason"] == "duplicate event"
    from spaceport.cloud import settings
    from spaceport.cloud.runtime import Clients

    store = Clients(settings.load()).store
    record = store.get(first["job_id"])
    assert store.save(record.model_copy(update={"status": "SUCCEEDED", "duplicates": []}))
    saved = _record(first["job_id"])
    assert saved.status == "SUCCEEDED" and [d.reason for d in saved.duplicates] == ["duplicate event"]


def test_resolve_walks_the_generations_of_the_same_content():
    from datetime import UTC, datetime

    from spaceport.core.summaries import JobRecord

    records = {}

    def lookup(job_id):
        return records.get(job_id)

    t = lambda s: datetime(2026, 12, 4, 18, 0, s, tzinfo=UTC)  # noqa: E731
    src, content = "s3://b/uploads/x.zip", "etag"
    first = uploads.resolve(src, content, t(0), lookup)
    assert first.outcome is uploads.Outcome.NEW
    records[first.job_id] = JobRecord(job_id=first.job_id, status="RUNNING", created_at=t(1).isoformat(),
                                      updated_at=t(1).isoformat())
    assert uploads.resolve(src, content, t(0), lookup).outcome is uploads.Outcome.DUPLICATE
    assert uploads.resolve(src, content, t(5), lookup).outcome is uploads.Outcome.RUNNING
    records[first.job_id] = records[first.job_id].model_copy(update={"status": "FAILED", "updated_at": t(9).isoformat()})
    assert uploads.resolve(src, content, t(9), lookup).outcome is uploads.Outcome.RUNNING  # written while it ran
    second = uploads.resolve(src, content, t(10), lookup)
    assert second.outcome is uploads.Outcome.NEW and second.job_id != first.job_id
    assert second.job_id == uploads.resolve(src, content, t(10), lookup).job_id  # deterministic
    assert uploads.resolve("s3://b/uploads/y.zip", content, t(10), lookup).job_id not in (first.job_id, second.job_id)
