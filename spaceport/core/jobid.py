"""Job ids and SageMaker job names: derived from the upload, so the same upload never starts two jobs.

Pure Python (the start Lambda, ``spaceport submit`` and the plan use it); re-exported by
:mod:`spaceport.core.plan`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

#: SageMaker job names: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$ (63 chars). Step Functions execution
#: names: 1-80 chars, no whitespace/brackets/wildcards/special chars. A job id is at most
#: 3 + 16 + 1 + 16 = 36 chars, so ``<job_id>-compress-r99`` still fits in 63.
JOB_ID_MAX = 36
#: Highest attempt number a stage's job name can carry (see :func:`stage_job_name`).
MAX_ATTEMPTS = 99
_SLUG_MAX = 16
_HASH_LEN = 16


def source_version(version_id: str | None, etag: str | None) -> str:
    """What identifies one upload's bytes: the S3 version id, else the ETag (unquoted).

    S3 reports ``"null"`` as the version id of an object written before versioning was enabled:
    that is no version, so the ETag decides. The one rule for the job id; every caller uses it.
    """
    return version_id if version_id and version_id != "null" else (etag or "").strip('"')


def upload_version(content: str, generation: int = 1) -> str:
    """The job id's version for the ``generation``-th job of the same content from the same place.

    ``content`` is the upload's fingerprint (an object's ETag, a folder's keys and ETags). The same
    photos uploaded again after their job ended are generation 2, 3, ...: a new job id, so a new
    job, while a repeated event for an upload still maps to the job it started (spaceport.cloud.uploads).
    """
    if generation < 1:
        raise ValueError(f"generation must be >= 1, got {generation}")
    return content if generation == 1 else f"{content}\n#{generation}"


def _slug(text: str) -> str:
    """ASCII letters/digits/hyphens from a file name (accents folded, rest dropped)."""
    stem = text.rsplit("/", 1)[-1]
    stem = stem.rsplit(".", 1)[0] if "." in stem[1:] else stem
    ascii_ = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", ascii_).strip("-").lower()
    return slug[:_SLUG_MAX].strip("-")


def job_id_for(source_uri: str, source_version: str) -> str:
    """Deterministic job id: ``sp-<name slug>-<16 hex of sha256(uri, version)>``.

    Valid as a SageMaker job name prefix and a Step Functions execution name.
    """
    digest = hashlib.sha256(f"{source_uri}\n{source_version}".encode()).hexdigest()[:_HASH_LEN]
    slug = _slug(source_uri)
    return f"sp-{slug}-{digest}" if slug else f"sp-{digest}"


def stage_job_name(job_id: str, stage: str, attempt: int = 1) -> str:
    """SageMaker job name of ``stage``'s ``attempt`` (1-based): ``<job_id>-<stage>[-r<attempt>]``.

    SageMaker never reuses a job name, so a stage retried by the workflow (capacity lost inside
    the job) runs under a new name: attempt 2 is ``<job_id>-train-r2``. At most 36 + 9 + 4 = 49
    of the 63 characters SageMaker allows.
    """
    if not 1 <= attempt <= MAX_ATTEMPTS:
        raise ValueError(f"attempt must be 1..{MAX_ATTEMPTS}, got {attempt}")
    return f"{job_id}-{stage}" if attempt == 1 else f"{job_id}-{stage}-r{attempt}"
