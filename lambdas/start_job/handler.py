"""S3 upload (or a direct JSON request) -> validated JobRequest -> plan -> staged copy -> job record -> StartExecution.

The execution name is the plan's job id, derived from bucket/key/version-or-ETag, so a repeated
S3 event starts nothing new: StartExecution is idempotent for the same name and input while the
execution runs and raises ExecutionAlreadyExists after; both count as a duplicate. (Powertools'
idempotency utility would add a second table for what the execution name already guarantees.)

Bad input is rejected here, recorded (status REJECTED) and emailed; it never starts an execution
and the handler does not raise (S3 would re-deliver the event twice more).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import S3Model
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spaceport.aws import notify, records, settings
from spaceport.aws.runtime import Clients, logger
from spaceport.errors import ConfigInvalid, EmptyInput, InputInvalid, SpaceportError, UnsupportedInput
from spaceport.files import sniff
from spaceport.plan import JobRequest, job_id_for, plan_job, source_version
from spaceport.summaries import Notification

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: What each accepted suffix must be by its first bytes (spaceport.files.sniff); a renamed file is
#: rejected here, not after a SageMaker job starts.
_SUFFIX_KIND = {"zip": "zip", "png": "image", "jpg": "image", "jpeg": "image", "mp4": "video", "mov": "video",
                "m4v": "video"}


def check_magic(name: str, head: bytes) -> None:
    """Raise UnsupportedInput when the first bytes contradict the file's suffix."""
    suffix = name.lower().rsplit(".", 1)[-1]
    if _SUFFIX_KIND.get(suffix) is None or sniff(head) != _SUFFIX_KIND[suffix]:
        raise UnsupportedInput(f"{name!r} is named .{suffix} but its content is not a {suffix.upper()} file",
                               "Upload the original file; renaming a file does not convert it")


class StartRequest(BaseModel):
    """A direct request: ``{"bucket", "key", "email"?, "preset"?, "options"?, "version_id"?}``."""

    model_config = ConfigDict(extra="forbid")

    bucket: str = Field(min_length=3, max_length=63)
    key: str = Field(min_length=1, max_length=1024)
    email: str | None = None
    preset: str | None = None
    options: dict[str, dict[str, str]] = Field(default_factory=dict)
    version_id: str | None = None


def _requests(event: Mapping[str, Any]) -> list[StartRequest]:
    if "Records" in event:
        s3_event = parse(event=event, model=S3Model)
        out = []
        for rec in s3_event.Records:
            # S3 event keys are URL-encoded with '+' for spaces.
            out.append(StartRequest(bucket=rec.s3.bucket.name, key=unquote_plus(rec.s3.object.key),
                                    version_id=rec.s3.object.versionId))
        return out
    return [StartRequest.model_validate(event)]


def _validate(req: StartRequest, head: Mapping[str, Any], cfg: settings.RuntimeSettings,
              first_bytes: Callable[[], bytes]) -> JobRequest:
    """The JobRequest of an upload; raises InputInvalid/ConfigInvalid with what to fix."""
    meta = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
    email = req.email or meta.get("email") or None
    if email is not None and not EMAIL.match(email):
        raise InputInvalid(f"{email!r} is not an email address", "Set x-amz-meta-email to a valid address")
    preset = req.preset or meta.get("preset") or None
    options = req.options
    if not options and meta.get("options"):
        try:
            options = json.loads(meta["options"])
        except json.JSONDecodeError as exc:
            raise ConfigInvalid("x-amz-meta-options is not JSON", 'Use {"train": {"max_steps": "7000"}}') from exc
    if not isinstance(options, dict) or not all(
        isinstance(v, dict) and all(isinstance(x, str) for x in v.values()) for v in options.values()
    ):
        raise ConfigInvalid("Options must map stage names to {option: string value}")
    if not req.key.lower().endswith(settings.UPLOAD_SUFFIXES):
        raise UnsupportedInput(f"{req.key.rsplit('/', 1)[-1]!r} is not a zip, a video or an image")
    size = int(head.get("ContentLength", 0))
    if size == 0:
        raise EmptyInput(f"{req.key.rsplit('/', 1)[-1]!r} is empty")
    if size > cfg.max_upload_bytes:
        raise InputInvalid(f"The upload is {size / 1e9:.1f} GB, over the {cfg.max_upload_bytes / 1e9:.1f} GB limit",
                           "Upload fewer or smaller photos, or a shorter video")
    check_magic(req.key.rsplit("/", 1)[-1], first_bytes())
    return JobRequest.from_s3(req.bucket, req.key, version_id=head.get("VersionId") or req.version_id,
                              etag=head.get("ETag"), email=email, preset=preset, options=options,
                              size_bytes=size)


def start(req: StartRequest, clients: Clients) -> dict[str, Any]:
    """Start (or recognise as duplicate, or reject) one upload."""
    cfg = clients.settings
    try:
        kwargs = {"VersionId": req.version_id} if req.version_id else {}
        head = clients.s3.head_object(Bucket=req.bucket, Key=req.key, **kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NotFound"):
            logger.warning("upload not found", extra={"bucket": req.bucket, "key": req.key})
            return {"status": "missing", "key": req.key}
        raise
    try:
        version = {"VersionId": head["VersionId"]} if head.get("VersionId") else {}

        def first_bytes() -> bytes:
            obj = clients.s3.get_object(Bucket=req.bucket, Key=req.key, Range="bytes=0-15", **version)
            return obj["Body"].read()

        request = _validate(req, head, cfg, first_bytes)
        plan = plan_job(request, cfg.plan())
    except SpaceportError as exc:
        return _reject(req, head, exc, clients)
    execution_input = plan.to_execution_input()
    if plan.staged_upload_uri:
        # The exact version that triggered the job, under the job's own prefix (see spaceport.plan).
        dest = plan.staged_upload_uri.split("/", 3)[3]
        source = {"Bucket": req.bucket, "Key": req.key, **({"VersionId": head["VersionId"]}
                                                           if head.get("VersionId") else {})}
        clients.s3.copy(source, cfg.bucket, dest)
    clients.s3.put_object(Bucket=cfg.bucket, Key=f"jobs/{plan.job_id}/request.json",
                          Body=json.dumps(plan.to_request_json(), indent=2, sort_keys=True).encode(),
                          ContentType="application/json")
    created = clients.store.create(records.new_record(execution_input["plan"]))
    duplicate = not created
    try:
        resp = clients.sfn.start_execution(stateMachineArn=cfg.state_machine_arn, name=plan.execution_name,
                                           input=json.dumps(execution_input, sort_keys=True))
        arn = resp["executionArn"]
    except clients.sfn.exceptions.ExecutionAlreadyExists:
        duplicate, arn = True, None
    if created:
        record = records.new_record(execution_input["plan"]).model_copy(
            update={"status": "RUNNING", "execution_arn": arn, "updated_at": records.now_iso()})
        # Conditional: never overwrite a record the execution has already finalised.
        clients.store.save(record, if_status="QUEUED")
    status = "duplicate" if duplicate else "started"
    logger.info("job " + status, extra={"job_id": plan.job_id, "execution_arn": arn})
    return {"status": status, "job_id": plan.job_id, "execution_arn": arn}


def _reject(req: StartRequest, head: Mapping[str, Any], exc: SpaceportError, clients: Clients) -> dict[str, Any]:
    source = f"s3://{req.bucket}/{req.key}"
    job_id = job_id_for(source, source_version(head.get("VersionId"), head.get("ETag")))
    meta = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
    email = req.email or meta.get("email")
    record = records.new_record({"job_id": job_id, "source_uri": source,
                                 "email": email if email and EMAIL.match(email) else None},
                                status="REJECTED")
    record = record.model_copy(update={"stage": "start", "failure": exc.record("start")})
    if clients.store.create(record):
        outcome = notify.send(record, settings=clients.settings, s3=clients.s3, ses=clients.ses, sns=clients.sns)
        clients.store.save(record.model_copy(update={"notify": Notification(**outcome)}))
    logger.warning("upload rejected", extra={"job_id": job_id, "error": exc.name, "reason": exc.reason})
    return {"status": "rejected", "job_id": job_id, "error": exc.name, "reason": exc.reason, "fix": exc.fix}


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    clients = Clients(settings.load())
    try:
        requests = _requests(event)
    except (ValidationError, ValueError) as exc:
        logger.warning("bad request", extra={"error": str(exc)})
        return {"status": "rejected", "error": "InputInvalid", "reason": str(exc).splitlines()[0]}
    results = [start(r, clients) for r in requests]
    return results[0] if "Records" not in event else {"jobs": results}
