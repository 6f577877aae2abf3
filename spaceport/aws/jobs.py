"""`spaceport submit` / `spaceport status` against a deployed stack (boto3; outputs by stack name)."""

from __future__ import annotations

import json
import mimetypes
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spaceport.aws.settings import UPLOAD_SUFFIXES
from spaceport.errors import ConfigInvalid, EmptyInput, InputInvalid, UnsupportedInput
from spaceport.plan import job_id_for, source_version

DEFAULT_STACK = "Spaceport"


@dataclass(frozen=True)
class Deployment:
    """What `submit`/`status` need from the stack's outputs."""

    stack_name: str
    bucket: str
    table: str
    state_machine_arn: str

    @classmethod
    def from_outputs(cls, stack_name: str, outputs: Mapping[str, str]) -> Deployment:
        missing = [k for k in ("BucketName", "TableName", "StateMachineArn") if k not in outputs]
        if missing:
            raise ConfigInvalid(f"Stack {stack_name} has no output(s) {', '.join(missing)}",
                                "Deploy the Spaceport stack with `cdk deploy` (or pass --stack NAME)")
        return cls(stack_name, outputs["BucketName"], outputs["TableName"], outputs["StateMachineArn"])


def find_deployment(cfn: Any, stack_name: str = DEFAULT_STACK) -> Deployment:
    """Read the stack's outputs (no other lookups)."""
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except cfn.exceptions.ClientError as exc:
        raise ConfigInvalid(f"No CloudFormation stack named {stack_name!r} in this account/region",
                            "Deploy it with `cdk deploy`, or pass --stack/--region") from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    return Deployment.from_outputs(stack_name, outputs)



def _archive(folder: Path, workdir: Path) -> Path:
    if not any(p.is_file() for p in folder.rglob("*")):
        raise EmptyInput(f"{folder} holds no files")
    return Path(shutil.make_archive(str(workdir / folder.name), "zip", root_dir=folder))


def submit(path: Path, *, s3: Any, deployment: Deployment, email: str | None = None, preset: str | None = None,
           options: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, str]:
    """Upload ``path`` (a zip, video, image, or a folder of photos, zipped here) to ``uploads/``.

    The S3 trigger starts the job; the returned job id is the one start_job derives.
    """
    if not path.exists():
        raise InputInvalid(f"{path} does not exist", "Pass a zip, a video, an image or a folder of photos")
    with tempfile.TemporaryDirectory() as tmp:
        upload = _archive(path, Path(tmp)) if path.is_dir() else path
        if not upload.name.lower().endswith(UPLOAD_SUFFIXES):
            raise UnsupportedInput(f"{upload.name} is not a zip, a video or an image")
        if upload.stat().st_size == 0:
            raise EmptyInput(f"{upload} is empty")
        key = f"uploads/{upload.name}"
        metadata = {k: v for k, v in {"email": email or "", "preset": preset or "",
                                      "options": json.dumps(options) if options else ""}.items() if v}
        content_type = mimetypes.guess_type(upload.name)[0] or "application/octet-stream"
        s3.upload_file(str(upload), deployment.bucket, key,
                       ExtraArgs={"Metadata": metadata, "ContentType": content_type})
    head = s3.head_object(Bucket=deployment.bucket, Key=key)
    job_id = job_id_for(f"s3://{deployment.bucket}/{key}", source_version(head.get("VersionId"), head.get("ETag")))
    return {"job_id": job_id, "uri": f"s3://{deployment.bucket}/{key}"}


def status(job_id: str, *, dynamodb: Any, sfn: Any, deployment: Deployment) -> dict[str, Any]:
    """The job record, with the live execution status when the job is still running."""
    item = dynamodb.get_item(TableName=deployment.table, Key={"job_id": {"S": job_id}},
                             ConsistentRead=True).get("Item")
    if not item:
        raise InputInvalid(f"No job {job_id!r} in {deployment.stack_name}",
                           "Check the id printed by `spaceport submit` (jobs appear a few seconds after upload)")
    record = json.loads(item["record"]["S"])
    arn = record.get("execution_arn")
    if arn and record.get("status") in ("QUEUED", "RUNNING"):
        record["execution_status"] = sfn.describe_execution(executionArn=arn)["status"]
    return record


def format_status(record: Mapping[str, Any]) -> str:
    """Human-readable lines for `spaceport status`."""
    lines = [f"job {record['job_id']}: {record.get('status')}"
             + (f" (execution {record['execution_status']})" if record.get("execution_status") else "")]
    if record.get("source_uri"):
        lines.append(f"source: {record['source_uri']}")
    failure = record.get("failure") or {}
    if failure:
        lines += [f"failed at: {record.get('stage', '?')}", f"error: {failure['error']}: {failure['reason']}",
                  f"fix: {failure['fix']}"]
    m = record.get("metrics") or {}
    if m:
        lines.append("metrics: " + ", ".join(f"{k}={v:g}" for k, v in sorted(m.items())))
    for stage, s in (record.get("stages") or {}).items():
        seconds = s.get("seconds")
        lines.append(f"  {stage}: {seconds:.0f} s on {s.get('instance_type')}" if seconds is not None else
                     f"  {stage}: on {s.get('instance_type')}")
    if record.get("cost_usd") is not None:
        lines.append(f"estimated cost: ${record['cost_usd']:.2f}")
    for name, key in sorted((record.get("outputs") or {}).items()):
        if key:
            lines.append(f"{name}: {key}")
    for name, url in (record.get("links") or {}).items():
        lines.append(f"link {name}: {url}")
    for r in record.get("retries") or []:
        lines.append(f"retried {r.get('stage')} as attempt {r.get('attempt')} after {r.get('error')}: "
                     f"{r.get('reason', '')}")
    return "\n".join(lines)
