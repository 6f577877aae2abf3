"""The start_job Lambda's work: an object under uploads/ (EventBridge), a folder's quiet timer (SQS)
or a direct JSON request -> validated JobRequest -> plan -> staged copy -> job record ->
StartExecution. (cloud/lambdas/start_job/handler.py only dispatches the event here.)

What each object starts is decided by :mod:`spaceport.cloud.uploads`: a zip or a video starts a job
at once; a photo (or any other object) in ``uploads/<folder>/`` re-arms that folder's quiet timer,
a message delayed by ``quiet_s`` on an SQS queue this same function consumes. A timer whose folder
received a newer object since it was armed stands down (the newer object's timer is still on its
way); the last one finds the folder quiet and starts ONE job from its photos.

The execution name is the plan's job id, derived from the upload's place and content (a file's
ETag, a folder's keys and ETags) and, for the same content uploaded again after its job ended, a
generation (:func:`spaceport.cloud.uploads.resolve`). A repeated event or timer, or the same content
uploaded while its job runs, starts nothing and is listed in that job's record (``duplicates``);
the job record is created with a conditional write first, and StartExecution is idempotent for
the same name and input. (Powertools' idempotency utility would add a second table for what the
job id and the conditional write already guarantee.)

Bad input is rejected here, recorded (status REJECTED, one record per upload or folder) and emailed
when an address is known; it never starts an execution and the handler does not raise (the event
would be re-delivered).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from spaceport.cloud import notify, records, settings, uploads
from spaceport.cloud.runtime import Clients, logger
from spaceport.core.errors import ConfigInvalid, EmptyInput, InputInvalid, SpaceportError, UnsupportedInput
from spaceport.core.files import sniff
from spaceport.core.plan import JobPlan, JobRequest, plan_job, source_version
from spaceport.core.summaries import Duplicate, Notification

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: What each accepted suffix must be by its first bytes (spaceport.core.files.sniff); a renamed file is
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
    """A direct request: ``{"bucket", "key", "email"?, "preset"?, "options"?, "version_id"?}``.

    A ``key`` ending in ``/`` names a folder: its photos start one job now (no quiet wait).
    """

    model_config = ConfigDict(extra="forbid")

    bucket: str = Field(min_length=3, max_length=63)
    key: str = Field(min_length=1, max_length=1024)
    email: str | None = None
    preset: str | None = None
    options: dict[str, dict[str, str]] = Field(default_factory=dict)
    version_id: str | None = None


class QuietTimer(BaseModel):
    """The body of a folder's quiet-timer message: the batch and the time of the event that armed it."""

    bucket: str
    batch: str
    armed_at: AwareDatetime


def _event_time(value: str | None) -> datetime:
    return datetime.fromisoformat((value or records.now_iso()).replace("Z", "+00:00"))


def _head(clients: Clients, bucket: str, key: str, version_id: str | None) -> tuple[str, dict] | None:
    """``(key, head)`` of an uploaded object, or None when it is gone.

    Event keys may arrive URL-encoded ('+' for a space, %XX for other bytes): the key is tried as
    given, then decoded, so both ``my photos.zip`` and ``my+photos.zip`` are found exactly.
    """
    candidates = [key] + ([unquote_plus(key)] if unquote_plus(key) != key else [])
    for candidate in candidates:
        try:
            kwargs = {"VersionId": version_id} if version_id and version_id != "null" else {}
            return candidate, clients.s3.head_object(Bucket=bucket, Key=candidate, **kwargs)
        except ClientError as exc:
            # The role may read every upload but lists them only by prefix (s3:prefix condition), and
            # S3 answers a missing key with 403 unless the caller may list the bucket: both mean gone.
            if exc.response.get("Error", {}).get("Code", "") not in ("404", "NoSuchKey", "NotFound", "400",
                                                                       "403", "AccessDenied"):
                raise
    return None


def _metadata(req_email: str | None, req_preset: str | None, req_options: Mapping[str, Any],
              head: Mapping[str, Any]) -> tuple[str | None, str | None, dict]:
    """Email, preset and options from the request or the object's x-amz-meta-* (validated)."""
    meta = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
    email = req_email or meta.get("email") or None
    if email is not None and not EMAIL.match(email):
        raise InputInvalid(f"{email!r} is not an email address", "Set x-amz-meta-email to a valid address")
    preset = req_preset or meta.get("preset") or None
    options: Any = dict(req_options)
    if not options and meta.get("options"):
        try:
            options = json.loads(meta["options"])
        except json.JSONDecodeError as exc:
            raise ConfigInvalid("x-amz-meta-options is not JSON", 'Use {"train": {"steps": "7000"}}') from exc
    if not isinstance(options, dict) or not all(
        isinstance(v, dict) and all(isinstance(x, str) for x in v.values()) for v in options.values()
    ):
        raise ConfigInvalid("Options must map stage names to {option: string value}")
    return email, preset, options


def _check_size(size: int, cfg: settings.RuntimeSettings) -> None:
    if size > cfg.max_upload_bytes:
        raise InputInvalid(f"The upload is {size / 2**20:,.1f} MB, over the {cfg.max_upload_bytes / 2**20:,.1f} MB limit",
                           "Upload fewer or smaller photos, or a shorter video")


def _validate(req: StartRequest, head: Mapping[str, Any], cfg: settings.RuntimeSettings,
              first_bytes: Callable[[], bytes]) -> JobRequest:
    """The JobRequest of a single-file upload; raises InputInvalid/ConfigInvalid with what to fix."""
    email, preset, options = _metadata(req.email, req.preset, req.options, head)
    name = req.key.rsplit("/", 1)[-1]
    if not req.key.lower().endswith(uploads.FILE_SUFFIXES):
        raise UnsupportedInput(f"{name!r} is not a zip or a video",
                               "Upload a .zip of photos or a video (mp4/mov), or put the photos in a folder "
                               "uploads/<scene name>/")
    size = int(head.get("ContentLength", 0))
    if size == 0:
        raise EmptyInput(f"{name!r} is empty")
    _check_size(size, cfg)
    check_magic(name, first_bytes())
    return JobRequest.from_s3(req.bucket, req.key, version_id=head.get("VersionId") or req.version_id,
                              etag=head.get("ETag"), email=email, preset=preset, options=options,
                              size_bytes=size)


def start(req: StartRequest, clients: Clients) -> dict[str, Any]:
    """Start (or recognise as covered by a job, or reject) one single-file upload."""
    cfg = clients.settings
    found = _head(clients, req.bucket, req.key, req.version_id)
    if found is None:
        logger.warning("upload not found", extra={"bucket": req.bucket, "key": req.key})
        return {"status": "missing", "key": req.key}
    key, head = found
    req = req.model_copy(update={"key": key})
    version = {"VersionId": head["VersionId"]} if head.get("VersionId") else {}
    # The job follows the bytes (ETag), not the S3 version: the same file uploaded again while its
    # job runs starts nothing; uploaded again after it ended, it starts the next job.
    source = f"s3://{req.bucket}/{req.key}"
    found_job = uploads.resolve(source, source_version(None, head.get("ETag")), _written(head), clients.store.get)
    if found_job.outcome is not uploads.Outcome.NEW:
        return _covered(found_job, _written(head), clients)
    try:
        def first_bytes() -> bytes:
            obj = clients.s3.get_object(Bucket=req.bucket, Key=req.key, Range="bytes=0-15", **version)
            return obj["Body"].read()

        request = dataclasses.replace(_validate(req, head, cfg, first_bytes), source_version=found_job.version)
        plan = plan_job(request, cfg.plan())
    except SpaceportError as exc:
        email = req.email or {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}.get("email")
        return _reject(found_job.job_id, source, email, exc, clients)
    # The exact version that triggered the job, under the job's own prefix (see spaceport.core.plan).
    copies = [({"Bucket": req.bucket, "Key": req.key, **version}, plan.staged_upload_uri, None)] \
        if plan.staged_upload_uri else []
    return _launch(plan, copies, clients)


def _written(head: Mapping[str, Any]) -> datetime:
    """When an object was written (its LastModified), or now when the head does not say."""
    value = head.get("LastModified")
    return value if isinstance(value, datetime) else _event_time(None)


def _covered(found: uploads.Resolution, uploaded_at: datetime, clients: Clients) -> dict[str, Any]:
    """An upload a job already covers: start nothing, and say so in that job's record."""
    reason = uploads.DUPLICATE_REASONS[found.outcome]
    clients.store.note_duplicate(found.job_id, Duplicate(at=records.now_iso(), reason=reason,
                                                         uploaded_at=uploaded_at.isoformat(timespec="seconds")))
    logger.info("job duplicate", extra={"job_id": found.job_id, "reason": reason})
    return {"status": "duplicate", "job_id": found.job_id, "reason": reason, "execution_arn": None}


def _launch(plan: JobPlan, copies: list[tuple[dict, str, str | None]], clients: Clients) -> dict[str, Any]:
    """Stage the upload, write request.json and the job record (conditionally), start the execution."""
    cfg = clients.settings
    execution_input = plan.to_execution_input()
    if clients.store.get(plan.job_id) is not None:
        # A concurrent event for the same upload got here first (uploads.resolve saw no record).
        logger.info("job duplicate", extra={"job_id": plan.job_id})
        return {"status": "duplicate", "job_id": plan.job_id, "reason": "duplicate event", "execution_arn": None}

    def copy(item: tuple[dict, str, str | None]) -> None:
        source, dest_uri, etag = item
        dest = dest_uri.split("/", 3)[3]
        if etag is None:  # one upload of up to max_upload_mb: a managed (multipart) copy
            clients.s3.copy(source, cfg.bucket, dest)
        else:  # a photo (< 5 GB: one request), only while it is still the object that was listed
            clients.s3.copy_object(CopySource=source, Bucket=cfg.bucket, Key=dest, CopySourceIfMatch=f'"{etag}"')

    # Photos are small and many: copy them in parallel (server-side copies, no bytes through here).
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(copy, copies))
    clients.s3.put_object(Bucket=cfg.bucket, Key=f"jobs/{plan.job_id}/request.json",
                          Body=plan.to_request_json().to_json().encode(),
                          ContentType="application/json")
    created = clients.store.create(records.new_record(plan.execution_plan()))
    duplicate = not created
    try:
        resp = clients.sfn.start_execution(stateMachineArn=cfg.state_machine_arn, name=plan.execution_name,
                                           input=json.dumps(execution_input, sort_keys=True))
        arn = resp["executionArn"]
    except clients.sfn.exceptions.ExecutionAlreadyExists:
        duplicate, arn = True, None
    if created:
        record = records.new_record(plan.execution_plan()).model_copy(
            update={"status": "RUNNING", "execution_arn": arn, "updated_at": records.now_iso()})
        # Conditional: never overwrite a record the execution has already finalised.
        clients.store.save(record, if_status="QUEUED")
    status = "duplicate" if duplicate else "started"
    logger.info("job " + status, extra={"job_id": plan.job_id, "execution_arn": arn})
    return {"status": status, "job_id": plan.job_id, "execution_arn": arn}


def _reject(job_id: str, source: str, email: str | None, exc: SpaceportError, clients: Clients) -> dict[str, Any]:
    """Record (once per upload) why it started nothing, and email that when an address is known."""
    record = records.rejected_record(job_id, source, email if email and EMAIL.match(email) else None)
    record = record.model_copy(update={"stage": "start", "failure": exc.record("start")})
    if clients.store.create(record):
        outcome = notify.send(record, settings=clients.settings, s3=clients.s3, ses=clients.ses, sns=clients.sns)
        clients.store.save(record.model_copy(update={"notify": Notification(**outcome)}))
    logger.warning("upload rejected", extra={"job_id": job_id, "error": exc.name, "reason": exc.reason})
    return {"status": "rejected", "job_id": job_id, "error": exc.name, "reason": exc.reason, "fix": exc.fix}


# ---- folders: quiet timers and the batch start ----
def arm(bucket: str, batch: str, armed_at: datetime, clients: Clients) -> dict[str, Any]:
    """(Re-)arm ``batch``'s quiet timer: a message delivered back to this function after ``quiet_s``."""
    cfg = clients.settings
    body = QuietTimer(bucket=bucket, batch=batch, armed_at=armed_at).model_dump_json()
    clients.sqs.send_message(QueueUrl=cfg.quiet_queue_url, MessageBody=body, DelaySeconds=cfg.quiet_s)
    logger.info("folder timer armed", extra={"batch": batch, "armed_at": armed_at.isoformat(), "quiet_s": cfg.quiet_s})
    return {"status": "waiting", "batch": batch, "quiet_s": cfg.quiet_s}


def _list_batch(clients: Clients, bucket: str, batch: str) -> list[uploads.Listed]:
    # The bare batch is the photos directly under uploads/ (Delimiter: not the folders' contents).
    kwargs = {"Delimiter": "/"} if uploads.is_bare_batch(batch) else {}
    listed = []
    for page in clients.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=batch, **kwargs):
        listed += [uploads.Listed.from_listing(item) for item in page.get("Contents", [])]
    return uploads.batch_members(batch, listed)


def on_timer(timer: QuietTimer, clients: Clients) -> dict[str, Any]:
    """A folder's timer fired: start its job if nothing arrived since it was armed."""
    members = _list_batch(clients, timer.bucket, timer.batch)
    if uploads.newer_than(members, timer.armed_at):
        return {"status": "waiting", "batch": timer.batch}
    return start_batch(timer.bucket, timer.batch, members, clients)


def _batch_heads(clients: Clients, bucket: str, objects: Iterable[uploads.Listed]) -> dict:
    """The head of the first object (photos first) that carries an address (its metadata applies to
    the whole folder), else of the first one."""
    first = None
    for obj in objects:
        found = _head(clients, bucket, obj.key, None)
        head = found[1] if found else {}
        first = head if first is None else first
        if any(k.lower() == "email" for k in (head.get("Metadata") or {})):
            return head
    return first or {}


def start_batch(bucket: str, batch: str, members: list[uploads.Listed], clients: Clients,
                req: StartRequest | None = None) -> dict[str, Any]:
    """Start one job from a folder's photos (or refuse the folder, once, with the reason)."""
    cfg = clients.settings
    if uploads.is_bare_batch(batch):
        # Refused anyway: only the burst that armed this timer, so an earlier burst's uploader is
        # not counted or emailed again.
        members = uploads.latest_burst(members, cfg.quiet_s)
    source = uploads.batch_source_uri(bucket, batch)
    uploaded_at = max((m.last_modified for m in members), default=_event_time(None))
    found = uploads.resolve(source, uploads.batch_version(members), uploaded_at, clients.store.get)
    if found.outcome is not uploads.Outcome.NEW:
        return _covered(found, uploaded_at, clients)
    photos = [m for m in members if uploads.is_photo(m.key)]
    head = _batch_heads(clients, bucket, photos + [m for m in members if m not in photos])
    name = uploads.batch_name(batch)
    try:
        email, preset, options = _metadata(req.email if req else None, req.preset if req else None,
                                           req.options if req else {}, head)
    except SpaceportError as exc:
        return _reject(found.job_id, source, None, exc, clients)
    try:
        if uploads.is_bare_batch(batch):
            raise UnsupportedInput(
                f"{len(photos)} photo(s) were uploaded directly under uploads/, not in a folder",
                "Upload the photos of one scene into their own folder, uploads/<scene name>/, or as one .zip")
        if not photos:
            raise EmptyInput(f"The folder {name!r} holds no photos ({len(members)} other file(s))",
                             "Upload JPEG, PNG or HEIC photos into uploads/<scene name>/, "
                             "or a zip or a video directly under uploads/")
        _check_size(sum(p.size for p in photos), cfg)
        request = JobRequest(source_uri=source, source_version=found.version, email=email, preset=preset,
                             options=options, size_bytes=sum(p.size for p in photos))
        plan = plan_job(request, cfg.plan())
    except SpaceportError as exc:
        return _reject(found.job_id, source, email, exc, clients)
    staged = plan.staged_upload_uri or ""
    # Each photo as listed (the job id is made from these ETags: a photo replaced since then fails
    # the copy, and SQS delivers the timer again) to jobs/<id>/upload/<folder>/<path in the folder>.
    copies = [({"Bucket": bucket, "Key": p.key}, f"{staged}/{p.key[len(batch):]}", p.etag)
              for p in photos]
    return _launch(plan, copies, clients)


def on_object_event(event: Mapping[str, Any], clients: Clients) -> dict[str, Any]:
    """One EventBridge "Object Created" event from the bucket."""
    detail = event.get("detail") or {}
    bucket, obj = detail["bucket"]["name"], detail["object"]
    found = _head(clients, bucket, obj["key"], obj.get("version-id"))
    if found is None:
        logger.warning("upload not found", extra={"bucket": bucket, "key": obj["key"]})
        return {"status": "missing", "key": obj["key"]}
    key, _head_doc = found
    decision = uploads.classify(key)
    if decision.kind is uploads.Kind.IGNORED:
        return {"status": "ignored", "key": key}
    if decision.kind is uploads.Kind.BATCH:
        return arm(bucket, decision.batch or uploads.PREFIX, _event_time(event.get("time")), clients)
    # A zip or a video starts now; anything else directly under uploads/ is refused by start().
    return start(StartRequest(bucket=bucket, key=key, version_id=obj.get("version-id")), clients)


def timers(event: Mapping[str, Any]) -> list[QuietTimer]:
    """The SQS records' timers, one per batch (the latest armed_at wins)."""
    latest: dict[tuple[str, str], QuietTimer] = {}
    for rec in event["Records"]:
        timer = QuietTimer.model_validate_json(rec["body"])
        key = (timer.bucket, timer.batch)
        if key not in latest or timer.armed_at > latest[key].armed_at:
            latest[key] = timer
    return list(latest.values())


def on_request(req: StartRequest, clients: Clients) -> dict[str, Any]:
    decision = uploads.classify(req.key)
    if decision.kind is uploads.Kind.BATCH or req.key.endswith("/"):
        batch = decision.batch or req.key
        return start_batch(req.bucket, batch, _list_batch(clients, req.bucket, batch), clients, req)
    return start(req, clients)
