"""`spaceport submit` / `spaceport status` against a deployed stack (boto3; outputs by stack name)."""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from spaceport.cloud import uploads
from spaceport.core.errors import ConfigInvalid, EmptyInput, InputInvalid, UnsupportedInput
from spaceport.core.plan import source_version
from spaceport.core.summaries import Duplicate, JobRecord, parse_summary

DEFAULT_STACK = "Spaceport"


@dataclass(frozen=True)
class Deployment:
    """What `submit`/`status` need from the stack's outputs."""

    stack_name: str
    bucket: str
    table: str
    state_machine_arn: str
    quiet_s: int = uploads.DEFAULT_QUIET_S
    """Seconds a folder of photos must stay quiet before its job starts."""
    results_domain: str = ""
    """The CloudFront distribution that serves results (stack output ResultsDomain)."""

    @classmethod
    def from_outputs(cls, stack_name: str, outputs: Mapping[str, str]) -> Deployment:
        missing = [k for k in ("BucketName", "TableName", "StateMachineArn") if k not in outputs]
        if missing:
            raise ConfigInvalid(f"Stack {stack_name} has no output(s) {', '.join(missing)}",
                                "Deploy the Spaceport stack with `cdk deploy` (or pass --stack NAME)")
        return cls(stack_name, outputs["BucketName"], outputs["TableName"], outputs["StateMachineArn"],
                   int(outputs.get("FolderQuietSeconds", uploads.DEFAULT_QUIET_S)), outputs.get("ResultsDomain", ""))


def find_deployment(cfn: Any, stack_name: str = DEFAULT_STACK) -> Deployment:
    """Read the stack's outputs (no other lookups)."""
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except cfn.exceptions.ClientError as exc:
        raise ConfigInvalid(f"No CloudFormation stack named {stack_name!r} in this account/region",
                            "Deploy it with `cdk deploy`, or pass --stack/--region") from exc
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    return Deployment.from_outputs(stack_name, outputs)


def _photos(folder: Path) -> list[Path]:
    """The photos in ``folder`` (any depth), hidden files and folders skipped, as the bucket sees them."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and uploads.is_photo(p.relative_to(folder).as_posix()))


def _lookup(dynamodb: Any, deployment: Deployment) -> Callable[[str], JobRecord | None]:
    """Read a job record from the stack's table (what start_job's store reads)."""
    def get(job_id: str) -> JobRecord | None:
        return _record(dynamodb, deployment, job_id)
    return get


def _record(dynamodb: Any, deployment: Deployment, job_id: str) -> JobRecord | None:
    item = dynamodb.get_item(TableName=deployment.table, Key={"job_id": {"S": job_id}},
                             ConsistentRead=True).get("Item")
    if not item:
        return None
    seen = [Duplicate.model_validate_json(d["S"]) for d in item.get("duplicates", {}).get("L", [])]
    record = parse_summary(JobRecord, item["record"]["S"], f"the DynamoDB record of {job_id}")
    return record.model_copy(update={"duplicates": seen})


def _which_job(source_uri: str, content: str, uploaded_at: datetime, dynamodb: Any | None,
               deployment: Deployment) -> tuple[str, str | None]:
    """``(job id, why nothing starts or None)``: what start_job will decide for this upload."""
    lookup = _lookup(dynamodb, deployment) if dynamodb is not None else (lambda _job_id: None)
    found = uploads.resolve(source_uri, content, uploaded_at, lookup)
    if found.outcome is uploads.Outcome.RUNNING:
        return found.job_id, (f"Job {found.job_id} for the same content is still running: this upload starts "
                              "nothing; upload again once it has ended.")
    return found.job_id, None


def submit(path: Path, *, s3: Any, deployment: Deployment, email: str | None = None, preset: str | None = None,
           options: Mapping[str, Mapping[str, str]] | None = None, dynamodb: Any | None = None) -> dict[str, str]:
    """Upload ``path`` to ``uploads/``: a zip or a video as one object, a folder as its photos under
    ``uploads/<folder name>/``. Returns the job id start_job derives (with ``dynamodb``, from the
    stack's records: the same content uploaded again after its job ended is a new job), the URI,
    and what the bucket will do with it (``what``), in one sentence.
    """
    if not path.exists():
        raise InputInvalid(f"{path} does not exist", "Pass a zip, a video or a folder of photos")
    metadata = {k: v for k, v in {"email": email or "", "preset": preset or "",
                                  "options": json.dumps(options) if options else ""}.items() if v}
    bucket = deployment.bucket
    if path.is_dir():
        photos = _photos(path)
        if not photos:
            raise EmptyInput(f"{path} holds no photos", "Pass a folder of JPEG, PNG or HEIC photos")
        batch = f"{uploads.PREFIX}{path.name}/"
        for photo in photos:
            s3.upload_file(str(photo), bucket, batch + photo.relative_to(path).as_posix(),
                           ExtraArgs={"Metadata": metadata, "ContentType": _content_type(photo)})
        members = [uploads.Listed.from_listing(o) for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=batch) for o in page.get("Contents", [])]
        members = uploads.batch_members(batch, members)
        job_id, covered = _which_job(uploads.batch_source_uri(bucket, batch), uploads.batch_version(members),
                                     max(m.last_modified for m in members), dynamodb, deployment)
        what = covered or (f"The bucket starts one job from the {len(members)} file(s) in s3://{bucket}/{batch} "
                           f"once no new file has arrived there for {deployment.quiet_s} s.")
        return {"job_id": job_id, "uri": f"s3://{bucket}/{batch}", "what": what}
    decision = uploads.classify(f"{uploads.PREFIX}{path.name}")
    if decision.kind is not uploads.Kind.FILE:
        one_photo = path.name.lower().endswith(uploads.PHOTO_SUFFIXES)
        raise UnsupportedInput(
            f"{path.name} is one photo" if one_photo else f"{path.name} is not a zip, a video or a folder of photos",
            "Pass the folder that holds the photos (or a zip of them); one photo cannot make a 3D scene"
            if one_photo else None)
    if path.stat().st_size == 0:
        raise EmptyInput(f"{path} is empty")
    key = f"{uploads.PREFIX}{path.name}"
    s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": metadata, "ContentType": _content_type(path)})
    head = s3.head_object(Bucket=bucket, Key=key)
    uri = f"s3://{bucket}/{key}"
    job_id, covered = _which_job(uri, source_version(None, head.get("ETag")), head["LastModified"], dynamodb,
                                 deployment)
    return {"job_id": job_id, "uri": uri, "what": covered or "The bucket starts one job from it now."}


def _content_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class JobStatus(BaseModel):
    """What `spaceport status` shows: the stored job record, the live execution status of a job
    still running, and (``--links``) fresh result links."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    record: JobRecord
    execution_status: str | None = None
    links: dict[str, str] = Field(default_factory=dict)
    links_expire: str | None = None

    def to_json(self) -> str:
        """The record's fields with the status's own beside them (``--json``)."""
        extra = {"execution_status": self.execution_status, "links": self.links or None,
                 "links_expire": self.links_expire}
        doc = {**self.record.model_dump(mode="json"), **{k: v for k, v in extra.items() if v is not None}}
        return json.dumps(doc, indent=2, sort_keys=True)


def status(job_id: str, *, dynamodb: Any, sfn: Any, deployment: Deployment) -> JobStatus:
    """The job record, with the live execution status when the job is still running."""
    found = _record(dynamodb, deployment, job_id)
    if found is None:
        raise InputInvalid(f"No job {job_id!r} in {deployment.stack_name}",
                           "Check the id printed by `spaceport submit` (jobs appear a few seconds after upload)")
    live = None
    if found.execution_arn and found.status in ("QUEUED", "RUNNING"):
        live = sfn.describe_execution(executionArn=found.execution_arn)["status"]
    return JobStatus(record=found, execution_status=live)


def format_status(view: JobStatus) -> str:
    """Human-readable lines for `spaceport status`."""
    r = view.record
    lines = [f"job {r.job_id}: {r.status}" + (f" (execution {view.execution_status})" if view.execution_status else "")]
    if r.source_uri:
        lines.append(f"source: {r.source_uri}")
    if r.failure is not None:
        lines += [f"failed at: {r.stage or '?'}", f"error: {r.failure.error}: {r.failure.reason}",
                  f"fix: {r.failure.fix}"]
    if r.metrics:
        lines.append("metrics: " + ", ".join(f"{k}={v:g}" for k, v in sorted(r.metrics.items())))
    for stage, s in r.stages.items():
        if s.instance_type is None:  # the quality gate (a Lambda): its verdict
            lines.append(f"  {stage}: {s.status}")
        else:
            lines.append(f"  {stage}: {s.seconds:.0f} s on {s.instance_type}" if s.seconds is not None else
                         f"  {stage}: on {s.instance_type}")
    if r.cost_usd is not None:
        lines.append(f"estimated cost: ${r.cost_usd:.2f}")
    lines += [f"{name}: {key}" for name, key in sorted(r.outputs.items()) if key]
    lines += [f"link {name}: {url}" for name, url in view.links.items()]
    if view.links_expire:
        lines.append(f"links work until {view.links_expire}")
    lines += [f"started nothing for an upload at {d.uploaded_at or '?'}: {d.reason}" for d in r.duplicates]
    lines += [f"retried {x.stage} as attempt {x.attempt} after {x.error}: {x.reason}" for x in r.retries]
    return "\n".join(lines)
