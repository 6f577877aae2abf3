"""`spaceport submit` and `spaceport status` against a moto-deployed stack's outputs."""

import json
import time
from urllib.parse import quote_plus

import boto3
import pytest
from lambdas_support import (
    BUCKET,
    REGION,
    RESULTS_DOMAIN,
    TABLE,
    FakeContext,
    load_handler,
    s3_event,
    timer_messages,
)

from spaceport.cli import main
from spaceport.cloud import links as result_links


@pytest.fixture
def stack(started):
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"BucketName": {"Value": BUCKET}, "TableName": {"Value": TABLE},
                    "StateMachineArn": {"Value": started.state_machine_arn},
                    "ResultsDomain": {"Value": RESULTS_DOMAIN}},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName="Spaceport", TemplateBody=json.dumps(template))
    return started



def test_submit_folder_then_status_follows_the_job(stack, tmp_path, capsys):
    photos = tmp_path / "my garden"
    photos.mkdir()
    for i in range(3):
        (photos / f"view_{i:03d}.jpg").write_bytes(b"\xff\xd8jpeg" + bytes([i]))
    (photos / ".DS_Store").write_bytes(b"finder")  # hidden: not uploaded
    rc = main(["submit", str(photos), "--email", "ana@example.com", "--preset", "fast",
               "--option", "train.steps=12", "--region", REGION])
    assert rc == 0
    out = capsys.readouterr().out
    assert f"uploaded s3://{BUCKET}/uploads/my garden/" in out
    assert "starts one job from the 3 file(s)" in out and "for 180 s" in out
    job_id = out.split("\njob ")[1].split()[0]
    keys = [f"uploads/my garden/view_{i:03d}.jpg" for i in range(3)]
    listed = stack.s3.list_objects_v2(Bucket=BUCKET, Prefix="uploads/")["Contents"]
    assert sorted(o["Key"] for o in listed) == keys
    head = stack.s3.head_object(Bucket=BUCKET, Key=keys[0])
    assert head["Metadata"] == {"email": "ana@example.com", "preset": "fast",
                                "options": json.dumps({"train": {"steps": "12"}})}
    # The trigger: each photo arms the folder's timer; the quiet folder starts the job submit named.
    handler = load_handler("start_job").handler
    for key in keys:
        assert handler(s3_event(quote_plus(key)), FakeContext())["status"] == "waiting"
    (started_job,) = handler({"Records": timer_messages()}, FakeContext())["batches"]
    assert started_job["job_id"] == job_id and started_job["status"] == "started"

    assert main(["status", job_id, "--region", REGION]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"job {job_id}: RUNNING") and "execution SUCCEEDED" in text
    assert main(["status", job_id, "--json", "--region", REGION]) == 0
    assert json.loads(capsys.readouterr().out)["email"] == "ana@example.com"


def test_errors_are_typed_and_exit_2(stack, tmp_path, capsys):
    assert main(["status", "sp-nope-0000", "--region", REGION]) == 2
    assert "error: InputInvalid: No job 'sp-nope-0000'" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("x")
    assert main(["submit", str(tmp_path / "notes.txt"), "--region", REGION]) == 2
    assert "UnsupportedInput" in capsys.readouterr().err
    (tmp_path / "IMG_0001.JPG").write_bytes(b"\xff\xd8\xff")
    assert main(["submit", str(tmp_path / "IMG_0001.JPG"), "--region", REGION]) == 2
    assert "Pass the folder that holds the photos" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["submit", str(tmp_path / "empty"), "--region", REGION]) == 2
    assert "EmptyInput" in capsys.readouterr().err
    assert main(["submit", str(tmp_path / "notes.txt"), "--option", "oops", "--region", REGION]) == 2
    assert "STAGE.OPTION=VALUE" in capsys.readouterr().err
    assert main(["status", "x", "--stack", "Missing", "--region", REGION]) == 2
    assert "No CloudFormation stack named 'Missing'" in capsys.readouterr().err


def test_status_links_are_fresh_signed_result_links(stack, capsys):
    job_id = "sp-garden-0123456789abcdef"
    record = {"job_id": job_id, "status": "SUCCEEDED", "updated_at": "2026-11-23T05:00:00+00:00",
              "outputs": {"sog": f"jobs/{job_id}/compressed/scene.sog", "report": f"jobs/{job_id}/report/index.html",
                          "spz": f"jobs/{job_id}/compressed/scene.spz", "model": f"jobs/{job_id}/train/model.tar.gz"},
              "retries": [{"stage": "train", "attempt": 2, "job_name": f"{job_id}-train-r2", "wait_s": 120,
                           "error": "CapacityError", "reason": "No spot capacity.", "at": "2026-11-23T04:00:00+00:00"}]}
    boto3.client("dynamodb", region_name=REGION).put_item(TableName=TABLE, Item={
        "job_id": {"S": job_id}, "status": {"S": "SUCCEEDED"}, "record": {"S": json.dumps(record)}})
    for name in ("train/model.tar.gz", "compressed/scene.sog", "report/index.html"):
        stack.s3.put_object(Bucket=BUCKET, Key=f"jobs/{job_id}/{name}", Body=b"x")
    assert main(["status", job_id, "--links", "720", "--region", REGION]) == 0
    text = capsys.readouterr().out
    assert "retried train as attempt 2 after CapacityError: No spot capacity." in text
    links = dict(line[len("link "):].split(": ", 1) for line in text.splitlines() if line.startswith("link "))
    # Links only to outputs that exist (no scene.spz was written here), through the distribution.
    assert set(links) == {"report", "sog", "model"}
    secret = result_links.read_secret(
        stack.s3.get_object(Bucket=BUCKET, Key=result_links.SECRET_OBJECT)["Body"].read())
    expires = int(links["sog"].split("exp=")[1].split("&")[0])
    assert links["sog"] == result_links.result_url(RESULTS_DOMAIN, f"jobs/{job_id}/compressed/scene.sog",
                                                   secret=secret, expires=expires)
    assert abs(expires - (time.time() + 720 * 3600)) < 60  # 30 days: a link signed with the stack secret is not capped by a signer's session
    assert f"links work until {result_links.expiry_text(expires)}" in text
    assert main(["status", job_id, "--links", str(result_links.MAX_LINK_HOURS + 1), "--region", REGION]) == 2


def test_submitting_the_same_zip_again_names_the_job_start_job_will_start(stack, tmp_path, capsys):
    """submit predicts start_job's decision: a new job once the last one ended, nothing while it runs."""
    import time

    from spaceport.cloud import settings
    from spaceport.cloud.records import now_iso
    from spaceport.cloud.runtime import Clients

    scene = tmp_path / "Garden.zip"
    scene.write_bytes(b"PK\x03\x04\x14\x00\x00\x00 photos")
    handler = load_handler("start_job").handler

    def submit_and_trigger():
        assert main(["submit", str(scene), "--region", REGION]) == 0
        out = capsys.readouterr().out
        return out.split("\njob ")[1].split()[0], out, handler(s3_event("uploads/Garden.zip"), FakeContext())

    first_id, _out, first = submit_and_trigger()
    assert first["status"] == "started" and first["job_id"] == first_id
    store = Clients(settings.load()).store
    store.save(store.get(first_id).model_copy(update={"status": "FAILED", "updated_at": now_iso()}))
    time.sleep(1.1)  # S3 and the records keep whole seconds
    second_id, out, second = submit_and_trigger()
    assert second_id != first_id and "starts one job from it now" in out
    assert second["status"] == "started" and second["job_id"] == second_id
    time.sleep(1.1)
    third_id, out, third = submit_and_trigger()  # the second job is still running
    assert third_id == second_id and "is still running: this upload starts nothing" in out
    assert third["status"] == "duplicate" and third["job_id"] == second_id
    assert main(["status", second_id, "--region", REGION]) == 0
    assert ": uploaded again while the job was running" in capsys.readouterr().out
