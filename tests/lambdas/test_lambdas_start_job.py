"""start_job under moto: S3 events (URL-encoded keys, '+', unicode), direct requests, validation."""

import json

import pytest
from lambdas_support import (
    BUCKET,
    REGION,
    FakeContext,
    execution_plan,
    load_handler,
    s3_event,
    stored_record,
)

from spaceport.core.errors import UnsupportedInput
from spaceport.core.summaries import RequestFile

ZIP = b"PK\x03\x04\x14\x00\x00\x00"
MAGIC = {"zip": ZIP, "mov": b"\x00\x00\x00\x14ftypqt  ", "mp4": b"\x00\x00\x00\x18ftypmp42"}


def _handler():
    return load_handler("start_job").handler


def _record(job_id):
    return stored_record(job_id)


@pytest.mark.parametrize(
    ("encoded", "key"),
    [
        ("uploads/my+photos+%282%29.zip", "uploads/my photos (2).zip"),
        ("uploads/%E6%9D%B1%E4%BA%AC+tower.mov", "uploads/東京 tower.mov"),
        ("uploads/a%2Bb.mp4", "uploads/a+b.mp4"),
    ],
)
def test_s3_event_keys_are_decoded(started, encoded, key):
    started.s3.put_object(Bucket=BUCKET, Key=key, Body=MAGIC[key.rsplit(".", 1)[-1]],
                          Metadata={"email": "x@example.com"})
    out = _handler()(s3_event(encoded), FakeContext())
    assert out["status"] == "started"
    req = RequestFile.model_validate_json(
        started.s3.get_object(Bucket=BUCKET, Key=f"jobs/{out['job_id']}/request.json")["Body"].read())
    assert req.request.source_uri == f"s3://{BUCKET}/{key}"
    assert req.request.email == "x@example.com"
    execution = started.sfn.describe_execution(executionArn=out["execution_arn"])
    assert execution["name"] == out["job_id"]
    assert execution_plan(started.sfn, out["execution_arn"]).source_uri == f"s3://{BUCKET}/{key}"


def test_direct_request_with_preset_and_options(started):
    started.s3.put_object(Bucket=BUCKET, Key="uploads/scene.zip", Body=ZIP)
    out = _handler()({"bucket": BUCKET, "key": "uploads/scene.zip", "email": "y@example.com", "preset": "fast",
                      "options": {"train": {"steps": "42"}}}, FakeContext())
    assert out["status"] == "started"
    plan = execution_plan(started.sfn, out["execution_arn"])
    assert plan.preset == "fast" and plan.stages["train"].hyperparameters["steps"] == "42"
    assert _record(out["job_id"]).status in ("RUNNING", "SUCCEEDED")


def test_metadata_preset_and_options_are_read(started):
    started.s3.put_object(Bucket=BUCKET, Key="uploads/m.zip", Body=ZIP,
                          Metadata={"preset": "quality", "options": json.dumps({"sfm": {"max_side": "1234"}})})
    out = _handler()(s3_event("uploads/m.zip"), FakeContext())
    plan = execution_plan(started.sfn, out["execution_arn"])
    assert plan.preset == "quality" and plan.stages["sfm"].options["max_side"] == "1234"


@pytest.mark.parametrize(
    ("key", "body", "meta", "error"),
    [
        ("uploads/notes.txt", b"hello", {}, "UnsupportedInput"),
        ("uploads/empty.zip", b"", {}, "EmptyInput"),
        ("uploads/big.zip", ZIP + b"x" * (50 * 1024 * 1024), {}, "InputInvalid"),
        ("uploads/bad-email.zip", ZIP, {"email": "not-an-address"}, "InputInvalid"),
        ("uploads/bad-option.zip", ZIP, {"options": json.dumps({"train": {"stpes": "1"}})}, "ConfigInvalid"),
        ("uploads/bad-preset.zip", ZIP, {"preset": "turbo"}, "ConfigInvalid"),
        ("uploads/renamed.zip", b"\x89PNG\r\n\x1a\n....", {}, "UnsupportedInput"),
        ("uploads/text.mp4", b"just some text here", {}, "UnsupportedInput"),
    ],
)
def test_bad_uploads_are_rejected_recorded_and_never_started(started, key, body, meta, error):
    started.s3.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata=meta)
    out = _handler()(s3_event(key), FakeContext())
    assert out["status"] == "rejected" and out["error"] == error
    record = _record(out["job_id"])
    assert record.status == "REJECTED" and record.failure.error == error and record.stage == "start"
    assert started.sfn.list_executions(stateMachineArn=started.state_machine_arn)["executions"] == []


def test_rejection_is_emailed_when_an_address_is_given(started):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    started.s3.put_object(Bucket=BUCKET, Key="uploads/notes.txt", Body=b"x", Metadata={"email": "z@example.com"})
    _handler()(s3_event("uploads/notes.txt"), FakeContext())
    (msg,) = ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
    assert "is not a zip or a video" in msg.body and "uploads/<scene name>/" in msg.body


def test_missing_object_and_malformed_request(started):
    assert _handler()(s3_event("uploads/gone.zip"), FakeContext())["status"] == "missing"
    out = _handler()({"bucket": BUCKET}, FakeContext())
    assert out["status"] == "rejected" and out["error"] == "InputInvalid"
    out = _handler()({"bucket": BUCKET, "key": "k.zip", "unexpected": 1}, FakeContext())
    assert out["status"] == "rejected"


def test_each_version_is_its_own_job_and_stages_its_own_bytes(started):
    v1 = started.s3.put_object(Bucket=BUCKET, Key="uploads/v.zip", Body=ZIP + b"one")["VersionId"]
    v2 = started.s3.put_object(Bucket=BUCKET, Key="uploads/v.zip", Body=ZIP + b"two")["VersionId"]
    # The event for the first version arrives after the second upload: it must still get "one".
    a = _handler()(s3_event("uploads/v.zip", version_id=v1), FakeContext())
    b = _handler()(s3_event("uploads/v.zip", version_id=v2), FakeContext())
    assert a["status"] == b["status"] == "started" and a["job_id"] != b["job_id"]
    for job, body in ((a, ZIP + b"one"), (b, ZIP + b"two")):
        staged = started.s3.get_object(Bucket=BUCKET, Key=f"jobs/{job['job_id']}/upload/v.zip")["Body"].read()
        assert staged == body


@pytest.mark.parametrize(
    ("name", "head", "ok"),
    [("a.zip", ZIP, True), ("a.ZIP", b"PK\x05\x06" + b"\0" * 18, True), ("a.jpg", b"\xff\xd8\xff\xe0", True),
     ("a.png", b"\x89PNG\r\n\x1a\n", True), ("a.mov", b"\0\0\0\x08wide", True), ("a.zip", b"Rar!\x1a\x07", False),
     # A PNG named .jpg is still a photo the SfM stage decodes (ingest sniffs the same way): accepted.
     ("a.jpg", b"\x89PNG\r\n\x1a\n", True), ("a.jpg", b"\0\0\0\x18ftypmp42", False), ("a.mp4", b"", False)],
)
def test_check_magic(name, head, ok):
    from spaceport.cloud.intake import check_magic as check
    if ok:
        check(name, head)
    else:
        with pytest.raises(UnsupportedInput, match="renaming a file does not convert it"):
            check(name, head)
