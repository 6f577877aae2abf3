"""The deploy-time image build's custom resource (cloud/lambdas/image_build, spaceport.cloud.image_build):
ECR under moto (real repositories and pushed image manifests, so digests are ECR's own), CodeBuild
through botocore's Stubber (moto cannot script a build's status, phases and log link).

The completion handler is driven through a build that succeeds, one that fails (the error names
the build, the failed phase and the log's address, which CloudFormation shows), one still running,
and no change (the images of this source exist: no build is started, the digests are returned)."""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest
from botocore.stub import Stubber
from lambdas_support import REGION, load_handler

from spaceport.cloud import image_build
from spaceport.core.summaries import JobRecord, parse_summary

SOURCE_HASH = "3f" * 32
TAG = f"src-{SOURCE_HASH[:32]}"
REPOSITORIES = {"sfm": "spaceport-sfm", "train": "spaceport-train", "compress": "spaceport-compress"}
PROPS = {"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:provider",
         "ProjectName": "spaceport-images", "SourceHash": SOURCE_HASH,
         "SourceLocation": "cdk-assets-bucket/abc123.zip", "Repositories": REPOSITORIES}
BUILD_ID = "spaceport-images:0b5e6f2a-1111-2222-3333-444455556666"
LOG = "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1#logsV2:log-groups/log-group/x/log-events/y"


def event(request_type: str = "Create", **extra) -> dict:
    return {"RequestType": request_type, "ResourceProperties": PROPS, "StackId": "stack", "RequestId": "r1",
            "LogicalResourceId": "ImageBuild", "ResourceType": "Custom::ImageBuild", **extra}


@pytest.fixture
def ecr(env):
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("ecr", region_name=REGION)
        for name in REPOSITORIES.values():
            client.create_repository(repositoryName=name)
        yield client


def push(ecr, tag: str = TAG, only: tuple[str, ...] = tuple(REPOSITORIES)) -> dict[str, str]:
    """Push one image manifest per repository under ``tag``; return image -> digest (ECR's)."""
    out = {}
    for image in only:
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                               "config": {"digest": "sha256:" + hashlib.sha256(image.encode()).hexdigest(),
                                          "size": 10, "mediaType": "application/vnd.docker.container.image.v1+json"},
                               "layers": []})
        found = ecr.put_image(repositoryName=REPOSITORIES[image], imageManifest=manifest, imageTag=tag)
        out[image] = found["image"]["imageId"]["imageDigest"]
    return out


@pytest.fixture
def codebuild():
    client = boto3.client("codebuild", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def build(status: str, **extra) -> dict:
    return {"builds": [{"id": BUILD_ID, "buildStatus": status, **extra}]}


def test_success_returns_every_image_by_digest(ecr, codebuild):
    client, stub = codebuild
    stub.add_response("batch_get_builds", build("IN_PROGRESS"), {"ids": [BUILD_ID]})
    assert image_build.is_complete(event(BuildId=BUILD_ID), codebuild=client, ecr=ecr) == {"IsComplete": False}

    digests = push(ecr)
    stub.add_response("batch_get_builds", build("SUCCEEDED"), {"ids": [BUILD_ID]})
    out = image_build.is_complete(event(BuildId=BUILD_ID), codebuild=client, ecr=ecr)
    assert out["IsComplete"] is True
    data = out["Data"]
    assert data["Tag"] == TAG
    for image, digest in digests.items():
        uri = ecr.describe_repositories(repositoryNames=[REPOSITORIES[image]])["repositories"][0]["repositoryUri"]
        assert data[f"{image.capitalize()}Digest"] == digest and digest.startswith("sha256:")
        assert data[f"{image.capitalize()}Uri"] == f"{uri}@{digest}"


def test_failure_names_the_build_phase_and_log(ecr, codebuild):
    client, stub = codebuild
    phases = [{"phaseType": "PRE_BUILD", "phaseStatus": "SUCCEEDED"},
              {"phaseType": "BUILD", "phaseStatus": "FAILED",
               "contexts": [{"statusCode": "COMMAND_EXECUTION_ERROR",
                             "message": "Error while executing command: docker build -f containers/train/Dockerfile. "
                                        "Reason: exit status 1"}]},
              {"phaseType": "POST_BUILD", "phaseStatus": "SUCCEEDED"}]
    stub.add_response("batch_get_builds", build("FAILED", phases=phases, logs={"deepLink": LOG}), {"ids": [BUILD_ID]})
    with pytest.raises(image_build.ImageBuildFailed) as err:
        image_build.is_complete(event("Update", BuildId=BUILD_ID), codebuild=client, ecr=ecr)
    message = str(err.value)
    assert BUILD_ID in message and "FAILED in phase BUILD" in message
    assert "containers/train/Dockerfile" in message and message.endswith(f"Build log: {LOG}")


def test_a_build_that_succeeded_without_pushing_every_image_fails(ecr, codebuild):
    client, stub = codebuild
    push(ecr, only=("sfm", "train"))
    stub.add_response("batch_get_builds", build("SUCCEEDED"), {"ids": [BUILD_ID]})
    with pytest.raises(image_build.ImageBuildFailed, match="spaceport-compress"):
        image_build.is_complete(event(BuildId=BUILD_ID), codebuild=client, ecr=ecr)


def test_no_change_starts_no_build_and_returns_the_existing_digests(ecr, codebuild):
    client, _stub = codebuild  # no stubbed response: any CodeBuild call fails the test
    digests = push(ecr)
    started = image_build.on_event(event("Update", PhysicalResourceId=f"images-{TAG}"), codebuild=client, ecr=ecr)
    assert started == {"PhysicalResourceId": f"images-{TAG}", "BuildId": ""}
    out = image_build.is_complete(event("Update", **started), codebuild=client, ecr=ecr)
    assert out["IsComplete"] is True
    assert {k: v for k, v in out["Data"].items() if k.endswith("Digest")} == {
        f"{i.capitalize()}Digest": d for i, d in digests.items()}


def test_new_source_starts_one_build_of_the_deployed_source_tagged_by_its_hash(ecr, codebuild):
    client, stub = codebuild
    push(ecr, tag="src-" + "00" * 16)  # images of another source do not count
    stub.add_response(
        "start_build", {"build": {"id": BUILD_ID, "buildStatus": "IN_PROGRESS"}},
        {"projectName": "spaceport-images", "sourceTypeOverride": "S3",
         "sourceLocationOverride": "cdk-assets-bucket/abc123.zip",
         "environmentVariablesOverride": [{"name": "IMAGE_TAG", "value": TAG, "type": "PLAINTEXT"}]})
    assert image_build.on_event(event(), codebuild=client, ecr=ecr) == {
        "PhysicalResourceId": f"images-{TAG}", "BuildId": BUILD_ID}


def test_a_refused_build_says_which_quota_to_raise(ecr, codebuild):
    client, stub = codebuild
    stub.add_client_error("start_build", service_error_code="AccountLimitExceededException", http_status_code=400,
                          service_message="Cannot have more than 0 builds in queue for the account")
    with pytest.raises(image_build.ImageBuildFailed) as err:
        image_build.on_event(event(), codebuild=client, ecr=ecr)
    assert "Cannot have more than 0 builds in queue" in str(err.value)
    assert "Concurrently running builds for Linux/Large environment" in str(err.value)


def test_delete_touches_nothing(ecr, codebuild):
    client, _stub = codebuild
    gone = event("Delete", PhysicalResourceId=f"images-{TAG}")
    assert image_build.on_event(gone, codebuild=client, ecr=ecr) == {"PhysicalResourceId": f"images-{TAG}"}
    assert image_build.is_complete(gone, codebuild=client, ecr=ecr) == {"IsComplete": True}


def test_a_missing_property_is_named():
    props = {k: v for k, v in PROPS.items() if k != "SourceHash"}
    with pytest.raises(KeyError, match="SourceHash"):
        image_build.request_of({"ResourceProperties": props})


def test_handler_no_change_under_moto(ecr, capsys):
    """The Lambda entry points make their own clients: the no-change path needs ECR only."""
    handler = load_handler("image_build")
    digests = push(ecr)
    started = handler.on_event(event(), None)
    assert started["BuildId"] == ""
    out = handler.is_complete(event(**started), None)
    assert out["Data"]["TrainDigest"] == digests["train"]
    assert '"step": "is_complete"' in capsys.readouterr().out


def test_every_job_record_names_the_digest_each_stage_runs(started, env):
    """The deploy hands start_job digests (plan settings); the plan, the DynamoDB item and job.json
    all name them, per stage (publish runs in the compress image)."""
    from lambdas_support import BUCKET, PLAN_SETTINGS, FakeContext, execution_plan, stored_record

    from spaceport.cloud import settings

    digest = {i: "sha256:" + hashlib.sha256(i.encode()).hexdigest() for i in REPOSITORIES}
    uri = {i: f"123456789012.dkr.ecr.{REGION}.amazonaws.com/{r}@{digest[i]}" for i, r in REPOSITORIES.items()}
    stage_image = {"sfm": "sfm", "train": "train", "compress": "compress", "publish": "compress"}
    plan_settings = {**PLAN_SETTINGS, **{s: {**PLAN_SETTINGS[s], "image": uri[i]} for s, i in stage_image.items()}}
    env.setenv("SPACEPORT_PLAN_SETTINGS", json.dumps(plan_settings))
    settings.load.cache_clear()
    started.s3.put_object(Bucket=BUCKET, Key="uploads/scene.zip", Body=b"PK\x03\x04\x14\x00\x00\x00")
    out = load_handler("start_job").handler({"bucket": BUCKET, "key": "uploads/scene.zip"}, FakeContext())
    assert out["status"] == "started"
    want = {s: uri[i] for s, i in stage_image.items()}
    plan = execution_plan(started.sfn, out["execution_arn"])
    assert {s: plan.stages[s].image for s in want} == want  # what the ASL hands SageMaker
    assert stored_record(out["job_id"]).images == want
    job_json = parse_summary(JobRecord, started.s3.get_object(
        Bucket=BUCKET, Key=f"jobs/{out['job_id']}/job.json")["Body"].read(), "job.json")
    assert job_json.images == want
