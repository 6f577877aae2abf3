"""The deploy-time image build: a CloudFormation custom resource (CDK provider framework) that
builds the stage images from the deployed source with CodeBuild, waits for the build, and hands
the images' digests to the stack, so every job runs an image by digest.

- ``on_event`` (Create/Update): the images are tagged with the source's content hash. When every
  repository already holds that tag (a redeploy with unchanged ``containers/`` and ``spaceport/``,
  or a rollback), it starts nothing; otherwise it starts one CodeBuild build of that source.
  CloudFormation itself sends no Update while the hash is unchanged.
- ``is_complete`` (polled by the provider framework): not yet while the build runs; on success
  (or no build) the digests each repository holds for the tag; on failure an error naming the
  build, its status, the failed phase and the build log's address, which CloudFormation shows as
  the reason the deploy failed.
- Delete does nothing: the repositories (and their images) are deleted with the stack.

boto3 only (no SageMaker SDK); the clients are passed in so tests drive it with Stubber/moto.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

#: Build states CodeBuild reports while a build is not finished.
RUNNING = ("IN_PROGRESS",)
#: What to do when CodeBuild refuses a build ("Cannot have more than 0 builds in queue for the
#: account": new accounts often start with a concurrency quota of 0 for the larger compute types).
QUOTA_FIX = ("Request an increase of 'Concurrently running builds for Linux/Large environment' to at least 1 "
             "(Service Quotas > AWS CodeBuild, or AWS Support for a new account), then deploy again "
             "(docs/aws.md, Images).")


class ImageBuildFailed(Exception):
    """The image build did not succeed; the message names the build and where its log is."""


@dataclass(frozen=True)
class BuildRequest:
    """The custom resource's properties (set by cloud/stacks/images.py). A frozen dataclass, not pydantic:
    these functions run without the Powertools layer (stdlib and boto3 only)."""

    project_name: str
    source_hash: str
    """Content hash of the build context (the CDK asset hash of containers/, spaceport/, ...)."""
    source_location: str
    """``bucket/key`` of the zipped source (CodeBuild's S3 source location)."""
    repositories: Mapping[str, str]
    """Image name (``sfm``, ``train``, ``compress``) -> ECR repository name."""

    #: CloudFormation property name of each field.
    PROPERTIES: ClassVar[dict[str, str]] = {"project_name": "ProjectName", "source_hash": "SourceHash", "source_location": "SourceLocation",
                  "repositories": "Repositories"}

    @property
    def tag(self) -> str:
        """The tag every image of this source gets (ECR tags are at most 128 characters)."""
        return f"src-{self.source_hash[:32]}"


def request_of(event: Mapping[str, Any]) -> BuildRequest:
    """The request's properties; KeyError naming a missing one (the stack sets them all)."""
    props = event["ResourceProperties"]
    missing = [p for p in BuildRequest.PROPERTIES.values() if p not in props]
    if missing:
        raise KeyError(f"image build resource lacks properties {missing}")
    return BuildRequest(**{f: props[p] for f, p in BuildRequest.PROPERTIES.items()})


def digests(ecr: Any, request: BuildRequest) -> dict[str, str] | None:
    """Image name -> ``sha256:...`` of the image tagged :attr:`BuildRequest.tag` in each repository;
    None when any repository lacks it."""
    out = {}
    for image, repository in request.repositories.items():
        try:
            found = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": request.tag}])
        except ecr.exceptions.ImageNotFoundException:
            return None
        details = found.get("imageDetails") or []
        if not details:
            return None
        out[image] = details[0]["imageDigest"]
    return out


def attributes(ecr: Any, request: BuildRequest, found: Mapping[str, str]) -> dict[str, str]:
    """The resource's attributes: ``<Image>Digest`` and ``<Image>Uri`` (``repo-uri@sha256:...``), and ``Tag``."""
    data = {"Tag": request.tag}
    for image, digest in found.items():
        repository = request.repositories[image]
        uri = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]["repositoryUri"]
        data[f"{image.capitalize()}Digest"] = digest
        data[f"{image.capitalize()}Uri"] = f"{uri}@{digest}"
    return data


def on_event(event: Mapping[str, Any], *, codebuild: Any, ecr: Any) -> dict[str, Any]:
    """Create/Update: start a build unless the images of this source exist. Delete: nothing."""
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": event["PhysicalResourceId"]}
    request = request_of(event)
    physical_id = f"images-{request.tag}"
    if digests(ecr, request) is not None:
        return {"PhysicalResourceId": physical_id, "BuildId": ""}
    try:
        build = codebuild.start_build(
            projectName=request.project_name,
            sourceTypeOverride="S3",
            sourceLocationOverride=request.source_location,
            environmentVariablesOverride=[{"name": "IMAGE_TAG", "value": request.tag, "type": "PLAINTEXT"}],
        )["build"]
    except codebuild.exceptions.AccountLimitExceededException as exc:
        raise ImageBuildFailed(f"CodeBuild refused to start the image build ({exc.response['Error']['Message']}). "
                               f"{QUOTA_FIX}") from exc
    return {"PhysicalResourceId": physical_id, "BuildId": build["id"]}


def _failure(build: Mapping[str, Any]) -> str:
    phase = next((p for p in build.get("phases", []) if p.get("phaseStatus") not in (None, "SUCCEEDED")), {})
    context = "; ".join(c.get("message", "") for c in phase.get("contexts", []) if c.get("message"))
    where = f" in phase {phase['phaseType']}" if phase.get("phaseType") else ""
    log = (build.get("logs") or {}).get("deepLink") or (build.get("logs") or {}).get("cloudWatchLogsArn") or "(no log)"
    return (f"image build {build['id']} {build['buildStatus']}{where}"
            f"{': ' + context if context else ''}. Build log: {log}")


def is_complete(event: Mapping[str, Any], *, codebuild: Any, ecr: Any) -> dict[str, Any]:
    """Whether the images are ready; their digests once they are. Raises ImageBuildFailed."""
    if event["RequestType"] == "Delete":
        return {"IsComplete": True}
    request = request_of(event)
    build_id = event.get("BuildId", "")
    if build_id:
        (build,) = codebuild.batch_get_builds(ids=[build_id])["builds"]
        if build["buildStatus"] in RUNNING:
            return {"IsComplete": False}
        if build["buildStatus"] != "SUCCEEDED":
            raise ImageBuildFailed(_failure(build))
    found = digests(ecr, request)
    if found is None:
        raise ImageBuildFailed(f"image build {build_id or '(none started)'} ended but not every repository holds "
                               f"tag {request.tag}: {sorted(request.repositories.values())}")
    return {"IsComplete": True, "Data": attributes(ecr, request, found)}
