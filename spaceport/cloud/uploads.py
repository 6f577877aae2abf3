"""What the bucket does with each object under ``uploads/`` (pure: no boto3, no I/O).

The trigger is every object created under ``uploads/`` (an EventBridge rule on the prefix, so
``IMG_0420.MOV`` and ``Photos.ZIP`` match as well as ``scene.zip``); this module decides:

- ``uploads/<any/path/>name.zip|.mp4|.mov|...`` (any letter case): one job, started at once.
- ``uploads/<folder>/...`` anything else (photos, sub-folders, a console "folder" marker): the
  object belongs to the folder batch ``uploads/<folder>/``. Each such object re-arms the folder's
  quiet timer; when no object has arrived in the folder for ``quiet_s`` seconds the folder's
  photos become ONE job. Files that are not photos are ignored then; a folder with no photos is
  refused with a recorded reason.
- a photo directly under ``uploads/`` (no folder): bare photos form the batch ``uploads/``, which
  is REFUSED once quiet, with one record and one email for the burst of photos that arrived
  together (not one per photo): unrelated uploads from different people would otherwise be mixed
  into one scene, and every later bare photo would re-run every earlier one. The fix the email
  gives: put them in a folder. Earlier bursts (still under uploads/ until the lifecycle rule
  expires them) are not counted or emailed again (:func:`latest_burst`).
- anything else directly under ``uploads/``: refused at once (unsupported type).
- hidden files (``.DS_Store``, ``._IMG_1.JPG``, ``__MACOSX/``) are ignored everywhere.

Which job an upload starts (:func:`resolve`): its content fingerprint and where it was uploaded fix
the job id; the same content uploaded again after its job ended is the next job, while a repeated
event, or the same content uploaded while its job still runs, starts nothing (the job record lists
it under ``duplicates``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from itertools import pairwise
from typing import Any

from spaceport.core.jobid import job_id_for, upload_version
from spaceport.core.summaries import JobRecord

PREFIX = "uploads/"
#: One object, one job, started at once (the sfm stage unpacks or decodes it).
ARCHIVE_SUFFIXES = (".zip",)
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v")
#: Photos the sfm stage reads from a folder (HEIC: iPhone default; decoded by the sfm stage).
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".heic", ".heif")
FILE_SUFFIXES = ARCHIVE_SUFFIXES + VIDEO_SUFFIXES
#: Default quiet time before a folder of photos starts (seconds; SQS delays allow at most 900).
DEFAULT_QUIET_S = 180
MAX_QUIET_S = 900


class Kind(StrEnum):
    """What an object under ``uploads/`` is to the trigger."""

    FILE = "file"          # a zip or a video: start a job now
    BATCH = "batch"        # part of a folder (or of the bare-photo batch): re-arm its timer
    UNSUPPORTED = "unsupported"  # directly under uploads/, not a zip/video/photo: refuse now
    IGNORED = "ignored"    # outside uploads/, hidden, or the uploads/ prefix itself


@dataclass(frozen=True)
class Decision:
    kind: Kind
    batch: str | None = None
    """For BATCH: the folder prefix (``uploads/<folder>/``), or ``uploads/`` for bare photos."""


def _hidden(parts: Iterable[str]) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def classify(key: str) -> Decision:
    """What the trigger does with the object ``key`` (already URL-decoded)."""
    if not key.startswith(PREFIX) or key == PREFIX:
        return Decision(Kind.IGNORED)
    rest = key[len(PREFIX):]
    parts = [p for p in rest.split("/") if p]
    if not parts or _hidden(parts):
        return Decision(Kind.IGNORED)
    lower = key.lower()
    if lower.endswith(FILE_SUFFIXES):
        return Decision(Kind.FILE)
    in_folder = "/" in rest.rstrip("/") or key.endswith("/")
    if in_folder:
        return Decision(Kind.BATCH, f"{PREFIX}{parts[0]}/")
    if lower.endswith(PHOTO_SUFFIXES):
        return Decision(Kind.BATCH, PREFIX)
    return Decision(Kind.UNSUPPORTED)


def is_photo(key: str) -> bool:
    return key.lower().endswith(PHOTO_SUFFIXES) and not _hidden(key.split("/"))


def is_bare_batch(batch: str) -> bool:
    return batch == PREFIX


def batch_name(batch: str) -> str:
    """``uploads/my garden/`` -> ``my garden``; the bare batch is ``uploads``."""
    return batch.rstrip("/").rsplit("/", 1)[-1]


def batch_source_uri(bucket: str, batch: str) -> str:
    """The job's source: the folder prefix without its trailing ``/`` (so the plan stages the photos
    under ``jobs/<job_id>/upload/<folder>/`` and names the job after the folder)."""
    return f"s3://{bucket}/{batch.rstrip('/')}"


@dataclass(frozen=True)
class Listed:
    """One object of a batch listing (``ListObjectsV2`` Contents)."""

    key: str
    etag: str
    size: int
    last_modified: datetime

    @classmethod
    def from_listing(cls, item: Mapping[str, Any]) -> Listed:
        return cls(item["Key"], str(item.get("ETag", "")).strip('"'), int(item.get("Size", 0)), item["LastModified"])


def batch_members(batch: str, listing: Iterable[Listed]) -> list[Listed]:
    """The objects that belong to ``batch`` (for the bare batch: photos directly under uploads/)."""
    out = []
    for item in listing:
        decision = classify(item.key)
        if decision.kind is Kind.BATCH and decision.batch == batch:
            out.append(item)
    return sorted(out, key=lambda i: i.key)


def batch_version(members: Iterable[Listed]) -> str:
    """The batch's content fingerprint (keys and ETags): with :func:`resolve`, a late or duplicate
    quiet-timer message never starts a second job, and the same photos uploaded again after their
    job ended start the next one."""
    digest = hashlib.sha256()
    for item in sorted(members, key=lambda i: i.key):
        digest.update(f"{item.key}\n{item.etag}\n".encode())
    return digest.hexdigest()


def newer_than(members: Iterable[Listed], armed_at: datetime) -> bool:
    """Whether any member arrived after the event that armed this timer (so a later message, armed
    by that newer object, is still on its way: this one stands down).

    Compared at whole seconds: EventBridge event times have one-second resolution and an object's
    LastModified is never after its own event; two objects in the same second both see the batch
    as quiet, and the job id (same listing, same id) keeps the start single.
    """
    cutoff = armed_at.replace(microsecond=0)
    return any(m.last_modified.replace(microsecond=0) > cutoff for m in members)


def latest_burst(members: Iterable[Listed], quiet_s: int) -> list[Listed]:
    """The objects that arrived together most recently: newest first, back to the first gap of more
    than ``quiet_s`` seconds between two arrivals (the quiet time that ends a batch)."""
    ordered = sorted(members, key=lambda m: m.last_modified, reverse=True)
    out = ordered[:1]
    for newer, older in pairwise(ordered):
        if (newer.last_modified - older.last_modified).total_seconds() > quiet_s:
            break
        out.append(older)
    return sorted(out, key=lambda m: m.key)


# ---- which job an upload belongs to: a new one, or one that already covers it ----
class Outcome(StrEnum):
    NEW = "new"                # start job ``job_id``
    DUPLICATE = "duplicate"    # the event of the upload ``job_id`` was started from, delivered again
    RUNNING = "running"        # the same content uploaded again while ``job_id`` was running


#: Statuses of a job that has not ended.
ACTIVE = ("QUEUED", "RUNNING")
DUPLICATE_REASONS = {Outcome.DUPLICATE: "duplicate event",
                     Outcome.RUNNING: "uploaded again while the job was running"}


@dataclass(frozen=True)
class Resolution:
    outcome: Outcome
    job_id: str
    """The job to start (NEW), or the job that already covers this upload."""
    version: str
    """The job id's version (:func:`spaceport.core.jobid.upload_version`)."""


def _instant(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")) if iso else None


def resolve(source_uri: str, content: str, uploaded_at: datetime,
            lookup: Callable[[str], JobRecord | None]) -> Resolution:
    """The job of an upload of ``content`` (its fingerprint) at ``source_uri``, written at ``uploaded_at``.

    The same content from the same place has one job per *generation*; ``lookup`` finds each
    generation's record. Against the latest one, the upload is:

    - older than that job (written no later than the job was created): a repeated event of the
      upload that started it -> DUPLICATE;
    - written while that job was queued or running -> RUNNING (nothing starts; upload again once it
      has ended);
    - written after that job ended (succeeded, failed or was rejected) -> NEW, the next generation:
      "upload again" after a failure always starts a job, for a zip, a video or a folder alike.

    Times are compared at whole seconds (records keep seconds; S3's LastModified too).
    """
    generation, latest = 1, None
    while True:
        version = upload_version(content, generation)
        job_id = job_id_for(source_uri, version)
        record = lookup(job_id)
        if record is None:
            break
        latest, generation = (job_id, version, record), generation + 1
    if latest is None:
        return Resolution(Outcome.NEW, job_id, version)
    last_id, last_version, record = latest
    written = uploaded_at.replace(microsecond=0)
    created, ended = _instant(record.created_at), _instant(record.updated_at)
    if created is not None and written <= created:
        return Resolution(Outcome.DUPLICATE, last_id, last_version)
    if record.status in ACTIVE or (ended is not None and written <= ended):
        return Resolution(Outcome.RUNNING, last_id, last_version)
    return Resolution(Outcome.NEW, job_id, version)
