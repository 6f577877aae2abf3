"""What an upload starts (moto): any letter case, encoded keys, a folder of photos as ONE job once
quiet, duplicates, and uploads refused with a recorded reason."""

import json
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from lambdas_support import (
    BUCKET,
    QUEUE_URL,
    REGION,
    FakeContext,
    execution_plan,
    load_handler,
    s3_event,
    stored_record,
    timer_messages,
)

from spaceport.cloud import uploads
from spaceport.cloud.uploads import Kind

JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 64
ZIP = b"PK\x03\x04\x14\x00\x00\x00"
MOV = b"\x00\x00\x00\x14ftypqt  "


def _handler(event):
    return load_handler("start_job").handler(event, FakeContext())


def _executions(aws):
    return aws.sfn.list_executions(stateMachineArn=aws.state_machine_arn)["executions"]


def _record(job_id):
    return stored_record(job_id)


def _sent():
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fire_timers():
    """Deliver every queued timer in SQS batches of 10, as the event source mapping does."""
    records = timer_messages()
    out = []
    for i in range(0, len(records), 10):
        out += _handler({"Records": records[i:i + 10]})["batches"]
    return out


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("uploads/IMG_0420.MOV", Decision := uploads.Decision(Kind.FILE)),
        ("uploads/Photos.ZIP", Decision),
        ("uploads/alice/scene.mp4", Decision),  # a video anywhere under uploads/ is its own job
        ("uploads/trip/IMG_0001.JPG", uploads.Decision(Kind.BATCH, "uploads/trip/")),
        ("uploads/trip/day 2/IMG_0002.heic", uploads.Decision(Kind.BATCH, "uploads/trip/")),
        ("uploads/trip/notes.txt", uploads.Decision(Kind.BATCH, "uploads/trip/")),
        ("uploads/trip/", uploads.Decision(Kind.BATCH, "uploads/trip/")),  # console "Create folder"
        ("uploads/IMG_0001.jpg", uploads.Decision(Kind.BATCH, "uploads/")),
        ("uploads/notes.txt", uploads.Decision(Kind.UNSUPPORTED)),
        ("uploads/trip/.DS_Store", uploads.Decision(Kind.IGNORED)),
        ("uploads/__MACOSX/._a.jpg", uploads.Decision(Kind.IGNORED)),
        ("jobs/x/request.json", uploads.Decision(Kind.IGNORED)),
        ("uploads/", uploads.Decision(Kind.IGNORED)),
    ],
)
def test_classify(key, expected):
    assert uploads.classify(key) == expected


@pytest.mark.parametrize("key", ["uploads/IMG_0420.MOV", "uploads/Photos.ZIP", "uploads/東京 tower.mov"])
def test_upper_case_and_unicode_keys_start_at_once(started, key):
    started.s3.put_object(Bucket=BUCKET, Key=key, Body=MOV if key.lower().endswith(".mov") else ZIP)
    out = _handler(s3_event(key))
    assert out["status"] == "started", out
    (execution,) = _executions(started)
    assert execution["name"] == out["job_id"]


def test_duplicate_event_starts_no_second_execution(started):
    started.s3.put_object(Bucket=BUCKET, Key="uploads/My Scene.zip", Body=ZIP, Metadata={"email": "a@example.com"})
    first = _handler(s3_event("uploads/My+Scene.zip"))
    again = _handler(s3_event("uploads/My+Scene.zip"))
    assert first["status"] == "started" and again == {"status": "duplicate", "job_id": first["job_id"],
                                                       "execution_arn": None, "reason": "duplicate event"}
    assert len(_executions(started)) == 1


def test_thirty_photos_uploaded_one_by_one_start_exactly_one_job(started):
    """Each photo's event re-arms the folder's timer. The photos are uploaded now; their events say
    they came 10 s apart (the last one now), so every timer but the last finds a photo newer than
    the event that armed it and stands down; the last finds the folder quiet and starts."""
    keys = [f"uploads/Garden Visit/IMG_{i:04d}.JPG" for i in range(30)]
    for i, key in enumerate(keys):
        started.s3.put_object(Bucket=BUCKET, Key=key, Body=JPEG + bytes([i]),
                              Metadata={"email": "ana@example.com"} if i == 7 else {})
        when = datetime.now(UTC) - timedelta(seconds=10 * (29 - i))
        out = _handler(s3_event(key.replace(" ", "+"), time=_iso(when)))
        assert out == {"status": "waiting", "batch": "uploads/Garden Visit/", "quiet_s": 0}
    assert _executions(started) == []  # nothing starts on an upload
    outcomes = _fire_timers()
    # 30 timers in SQS batches of 10 (each batch keeps its folder's latest timer): one starts.
    assert sorted(o["status"] for o in outcomes) == ["started", "waiting", "waiting"]
    (execution,) = _executions(started)
    (job,) = [o for o in outcomes if o["status"] == "started"]
    assert execution["name"] == job["job_id"] and job["job_id"].startswith("sp-garden-visit-")
    plan = execution_plan(started.sfn, execution["executionArn"])
    assert plan.source_uri == f"s3://{BUCKET}/uploads/Garden Visit"
    assert plan.email == "ana@example.com"  # the address on any one photo applies to the folder
    staged = started.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"jobs/{job['job_id']}/upload/")["Contents"]
    assert sorted(o["Key"].rsplit("/", 1)[-1] for o in staged) == sorted(k.rsplit("/", 1)[-1] for k in keys)
    assert {o["Key"].split("/")[3] for o in staged} == {"Garden Visit"}  # jobs/<id>/upload/<folder>/<photo>
    assert plan.stages["sfm"].inputs["upload"].uri == f"s3://{BUCKET}/jobs/{job['job_id']}/upload/"

    # The same timer delivered twice, or a late one: the same listing is the same job.
    late = json.dumps({"bucket": BUCKET, "batch": "uploads/Garden Visit/", "armed_at": _iso(datetime.now(UTC) + timedelta(1))})
    assert _handler({"Records": [{"body": late, "eventSource": "aws:sqs"}]})["batches"][0]["status"] == "duplicate"
    assert len(_executions(started)) == 1


def test_a_timer_armed_before_the_last_photo_waits(started):
    started.s3.put_object(Bucket=BUCKET, Key="uploads/yard/a.jpg", Body=JPEG)
    early = _iso(datetime.now(UTC) - timedelta(minutes=2))
    body = json.dumps({"bucket": BUCKET, "batch": "uploads/yard/", "armed_at": early})
    assert _handler({"Records": [{"body": body, "eventSource": "aws:sqs"}]}) == {
        "batches": [{"status": "waiting", "batch": "uploads/yard/"}]}
    assert _executions(started) == []


def test_folder_without_photos_is_refused_once_with_the_reason_and_an_email(started):
    for name in ("notes.txt", "list.csv"):
        started.s3.put_object(Bucket=BUCKET, Key=f"uploads/docs/{name}", Body=b"text",
                              Metadata={"email": "bo@example.com"})
        _handler(s3_event(f"uploads/docs/{name}", time=_iso(datetime.now(UTC) + timedelta(seconds=5))))
    (out, *rest) = _fire_timers()
    assert out["status"] == "rejected" and out["error"] == "EmptyInput"
    assert all(r["status"] in ("rejected", "duplicate") or r == out for r in rest)
    record = _record(out["job_id"])
    assert record.status == "REJECTED" and record.stage == "start"
    assert record.failure.reason == "The folder 'docs' holds no photos (2 other file(s))."
    assert _executions(started) == []
    (msg,) = _sent()  # the address on any object of the folder
    assert msg.destinations["ToAddresses"] == ["bo@example.com"] and "holds no photos" in msg.body


def _skip_delays():
    """Make the queued timers due now (as if their quiet time had passed)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    for queue in sqs_backends[DEFAULT_ACCOUNT_ID][REGION].queues.values():
        for message in queue._messages:
            message.delayed_until = 0


def test_bare_photos_are_refused_as_one_batch_with_one_email(started, env):
    from spaceport.cloud import settings

    env.setenv("SPACEPORT_QUIET_S", "60")  # photos a few ms apart are one burst
    settings.load.cache_clear()
    now = datetime.now(UTC) + timedelta(seconds=5)
    for i in range(3):
        started.s3.put_object(Bucket=BUCKET, Key=f"uploads/IMG_{i}.JPG", Body=JPEG, Metadata={"email": "cy@example.com"})
        _handler(s3_event(f"uploads/IMG_{i}.JPG", time=_iso(now)))
    started.s3.put_object(Bucket=BUCKET, Key="uploads/other/x.jpg", Body=JPEG)  # a folder: not in the bare batch
    _skip_delays()
    outcomes = _fire_timers()
    assert {o["status"] for o in outcomes} <= {"rejected", "duplicate"}
    (job_id,) = {o["job_id"] for o in outcomes}
    record = _record(job_id)
    assert record.failure.error == "UnsupportedInput"
    assert record.failure.reason == "3 photo(s) were uploaded directly under uploads/, not in a folder."
    (msg,) = _sent()
    assert msg.destinations["ToAddresses"] == ["cy@example.com"]
    assert "uploads/<scene name>/" in msg.body and "Upload check" in msg.body
    assert _executions(started) == []


def test_folder_over_the_size_cap_is_refused(started, env):
    from spaceport.cloud import settings

    env.setenv("SPACEPORT_MAX_UPLOAD_BYTES", str(2**20))  # 1 MB
    settings.load.cache_clear()
    for i in range(2):  # each photo is under the cap; together they are over it
        started.s3.put_object(Bucket=BUCKET, Key=f"uploads/huge/{i}.jpg", Body=JPEG + b"x" * 600_000,
                              Metadata={"email": "di@example.com"})
        _handler(s3_event(f"uploads/huge/{i}.jpg", time=_iso(datetime.now(UTC) + timedelta(seconds=5))))
    (out,) = _fire_timers()
    assert out["status"] == "rejected" and out["error"] == "InputInvalid" and "limit" in out["reason"]
    (msg,) = _sent()
    assert "The upload is 1.1 MB, over the 1.0 MB limit" in msg.body
    assert _executions(started) == []


def test_timer_is_sent_with_the_configured_delay(started, env):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    from spaceport.cloud import settings

    env.setenv("SPACEPORT_QUIET_S", "240")
    settings.load.cache_clear()
    started.s3.put_object(Bucket=BUCKET, Key="uploads/slow/a.jpg", Body=JPEG)
    assert _handler(s3_event("uploads/slow/a.jpg"))["quiet_s"] == 240
    (queue,) = sqs_backends[DEFAULT_ACCOUNT_ID][REGION].queues.values()
    (message,) = queue._messages
    assert 230 < (message.delayed_until / 1000 - time.time()) <= 240
    attrs = boto3.client("sqs", region_name=REGION).get_queue_attributes(
        QueueUrl=QUEUE_URL, AttributeNames=["ApproximateNumberOfMessagesDelayed"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesDelayed"] == "1"
    assert timer_messages() == []  # not delivered before the quiet time


def test_every_photo_type_the_bucket_batches_is_one_the_sfm_stage_reads():
    from spaceport.stages.sfm.ingest import IMAGE_EXTS, VIDEO_EXTS

    assert set(uploads.PHOTO_SUFFIXES) <= IMAGE_EXTS and set(uploads.VIDEO_SUFFIXES) <= VIDEO_EXTS


def test_latest_burst_stops_at_the_first_quiet_gap():
    t0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    listed = [uploads.Listed(f"uploads/{name}.jpg", "e", 1, t0 + timedelta(seconds=s))
              for name, s in (("old1", 0), ("old2", 20), ("new1", 500), ("new2", 530), ("new3", 700))]
    assert [m.key for m in uploads.latest_burst(listed, 180)] == [
        "uploads/new1.jpg", "uploads/new2.jpg", "uploads/new3.jpg"]
    assert len(uploads.latest_burst(listed, 600)) == 5
    assert uploads.latest_burst([], 180) == []


def test_a_direct_request_for_a_folder_starts_it_now(started):
    for i in range(2):
        started.s3.put_object(Bucket=BUCKET, Key=f"uploads/porch/{i}.png", Body=b"\x89PNG\r\n\x1a\n" + bytes([i]))
    out = _handler({"bucket": BUCKET, "key": "uploads/porch/", "email": "ed@example.com", "preset": "fast"})
    assert out["status"] == "started" and out["job_id"].startswith("sp-porch-")
    plan = execution_plan(started.sfn, out["execution_arn"])
    assert plan.email == "ed@example.com" and plan.preset == "fast"


def test_a_folder_job_runs_every_stage_on_its_staged_photos(machine):
    from lambdas_support import wait_for

    seen = {}

    def sfm_starts(event):  # what the SfM processing job would download as its `upload` input
        (upload,) = [i["S3Input"] for i in event["ProcessingInputs"] if i["InputName"] == "upload"]
        listed = machine.s3.list_objects_v2(Bucket=BUCKET, Prefix=upload["S3Uri"].split("/", 3)[3])
        seen["keys"] = sorted(o["Key"].rsplit("/", 2)[-2] + "/" + o["Key"].rsplit("/", 1)[-1]
                              for o in listed["Contents"])

    machine.fake.hooks["sfm"] = sfm_starts
    for i in range(3):
        machine.s3.put_object(Bucket=BUCKET, Key=f"uploads/Back Yard/IMG_{i}.HEIC", Body=b"\0\0\0\x18ftypheic" + bytes(8),
                              Metadata={"email": "fa@example.com"})
        _handler(s3_event(f"uploads/Back+Yard/IMG_{i}.HEIC"))
    (job,) = _fire_timers()
    assert job["status"] == "started"
    desc = wait_for(machine.sfn, job["execution_arn"])
    assert desc["status"] == "SUCCEEDED"
    assert [s for s, _ in machine.fake.calls] == ["sfm", "train", "compress", "publish"]
    assert seen["keys"] == [f"Back Yard/IMG_{i}.HEIC" for i in range(3)]
    (msg,) = _sent()
    assert msg.subject == "Your Spaceport splat is ready: Back Yard"
