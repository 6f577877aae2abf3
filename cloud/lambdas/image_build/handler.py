"""The deploy-time image build (custom resource, CDK provider framework): ``on_event`` starts the
CodeBuild build of the deployed source unless its images exist; ``is_complete`` is polled until
the build ends and returns the images' digests (spaceport.cloud.image_build). boto3 only."""

from __future__ import annotations

import json
from typing import Any

import boto3

from spaceport.cloud import image_build


def _log(what: str, event: dict[str, Any], result: dict[str, Any]) -> None:
    # One JSON line per call in the function's log group (no Powertools layer on these functions).
    print(json.dumps({"step": what, "request": event.get("RequestType"), "build": event.get("BuildId"), **result}))


def on_event(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    result = image_build.on_event(event, codebuild=boto3.client("codebuild"), ecr=boto3.client("ecr"))
    _log("on_event", event, result)
    return result


def is_complete(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    result = image_build.is_complete(event, codebuild=boto3.client("codebuild"), ecr=boto3.client("ecr"))
    _log("is_complete", event, result)
    return result
