"""start_job under moto: S3 events (URL-encoded keys, '+', unicode), direct requests, validation."""

import json

import boto3
import pytest
from conftest import BUCKET, REGION, TABLE, FakeContext, load_handler, s3_event


def _handler():
    return load_handler("start_job").handler


def _record(job_id):
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=TABLE, Key={"job_id": {"S": job_id}}).get("Item")
    return json.loads(item["record"]["S"]) if item else None


@pytest.mark.parametrize(
    ("encoded", "key"),
    [
        ("uploads/my+photos+%282%29.zip", "uploads/my photos (2).zip"),
        ("uploads/%E6%9D%B1%E4%BA%AC+tower.mov", "uploads/東京 tower.mov"),
        ("uploads/a%2Bb.mp4", "uploads/a+b.mp4"),
    ],
)
def test_s3_event_keys_are_decoded(started, encoded, key):
    started.s3.put_object(Bucket=BUCKET, Key=key, Body=b"data", Metadata={"email": "x@example.com"})
    (out,) = _handler()(s3_event(encoded), FakeContext())["jobs"]
    assert out["status"] == "started"
    req = json.loads(started.s3.get_object(Bucket=BUCKET, Key=f"jobs/{out['job_id']}/request.json")["Body"].read())
    assert req["request"]["source_uri"] == f"s3://{BUCKET}/{key}"
    assert req["request"]["email"] == "x@example.com"
    execution = started.sfn.describe_execution(executionArn=out["execution_arn"])
    assert execution["name"] == out["job_id"]
    assert json.loads(execution["input"])["plan"]["source_uri"] == f"s3://{BUCKET}/{key}"


def test_direct_request_with_preset_and_options(started):
    started.s3.put_object(Bucket=BUCKET, Key="uploads/scene.zip", Body=b"zip")
    out = _handler()({"bucket": BUCKET, "key": "uploads/scene.zip", "email": "y@example.com", "preset": "fast",
                      "options": {"train": {"steps": "42"}}}, FakeContext())
    assert out["status"] == "started"
    plan = json.loads(started.sfn.describe_execution(executionArn=out["execution_arn"])["input"])["plan"]
    assert plan["preset"] == "fast" and plan["stages"]["train"]["hyperparameters"]["steps"] == "42"
    assert _record(out["job_id"])["status"] in ("RUNNING", "SUCCEEDED")


def test_metadata_preset_and_options_are_read(started):
    started.s3.put_object(Bucket=BUCKET, Key="uploads/m.zip", Body=b"zip",
                          Metadata={"preset": "quality", "options": json.dumps({"sfm": {"steps": "7"}})})
    (out,) = _handler()(s3_event("uploads/m.zip"), FakeContext())["jobs"]
    plan = json.loads(started.sfn.describe_execution(executionArn=out["execution_arn"])["input"])["plan"]
    assert plan["preset"] == "quality" and plan["stages"]["sfm"]["options"]["steps"] == "7"


@pytest.mark.parametrize(
    ("key", "body", "meta", "error"),
    [
        ("uploads/notes.txt", b"hello", {}, "UnsupportedInput"),
        ("uploads/empty.zip", b"", {}, "EmptyInput"),
        ("uploads/big.zip", b"x" * (50 * 1024 * 1024 + 1), {}, "InputInvalid"),
        ("uploads/bad-email.zip", b"zip", {"email": "not-an-address"}, "InputInvalid"),
        ("uploads/bad-option.zip", b"zip", {"options": json.dumps({"train": {"stpes": "1"}})}, "ConfigInvalid"),
        ("uploads/bad-preset.zip", b"zip", {"preset": "turbo"}, "ConfigInvalid"),
    ],
)
def test_bad_uploads_are_rejected_recorded_and_never_started(started, key, body, meta, error):
    started.s3.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata=meta)
    (out,) = _handler()(s3_event(key), FakeContext())["jobs"]
    assert out["status"] == "rejected" and out["error"] == error
    record = _record(out["job_id"])
    assert record["status"] == "REJECTED" and record["error"] == error and record["stage"] == "start"
    assert started.sfn.list_executions(stateMachineArn=started.state_machine_arn)["executions"] == []


def test_rejection_is_emailed_when_an_address_is_given(started):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    started.s3.put_object(Bucket=BUCKET, Key="uploads/notes.txt", Body=b"x", Metadata={"email": "z@example.com"})
    _handler()(s3_event("uploads/notes.txt"), FakeContext())
    (msg,) = ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
    assert "not a zip, a video or an image" in msg.body


def test_missing_object_and_malformed_request(started):
    assert _handler()(s3_event("uploads/gone.zip"), FakeContext())["jobs"][0]["status"] == "missing"
    out = _handler()({"bucket": BUCKET}, FakeContext())
    assert out["status"] == "rejected" and out["error"] == "InputInvalid"
    out = _handler()({"bucket": BUCKET, "key": "k.zip", "unexpected": 1}, FakeContext())
    assert out["status"] == "rejected"


def test_new_version_of_the_same_key_is_a_new_job(started):
    started.s3.put_object(Bucket=BUCKET, Key="uploads/v.zip", Body=b"one")
    (a,) = _handler()(s3_event("uploads/v.zip"), FakeContext())["jobs"]
    started.s3.put_object(Bucket=BUCKET, Key="uploads/v.zip", Body=b"two")
    (b,) = _handler()(s3_event("uploads/v.zip"), FakeContext())["jobs"]
    assert a["status"] == b["status"] == "started" and a["job_id"] != b["job_id"]
