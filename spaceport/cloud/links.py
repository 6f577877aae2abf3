"""Result links: CloudFront URLs that carry an expiry and an HMAC over the job's prefix.

The edge function (``cloud/stacks/edge/link_check.js``, a CloudFront Function on every viewer request)
recomputes the HMAC with the same secret and lets a request through only when the path is one
of the job's result folders, the signature matches that job and the expiry has not passed. The
viewer page and the report pass their own query on to every URL they load, so one link opens
the page, the engine, ``scene.sog`` and the downloads, and nothing of another job.

The secret is made at deploy time (``cloud/lambdas/link_secret``) and written once, in the CloudFront
KeyValueStore import format, to :data:`SECRET_OBJECT` in the data bucket: the KeyValueStore the
function reads is imported from that object, and the notify Lambda (or ``spaceport status
--links``) reads the same object. The KeyValueStore data API itself needs SigV4A, which plain
boto3 cannot sign without the CRT, so the Lambdas never call it.

Stdlib only: the Lambdas bundle this module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from spaceport.core.errors import ConfigInvalid

#: Key of the secret in the KeyValueStore (the edge function reads this key).
SECRET_KEY = "link-secret"
#: Where the secret lives in the data bucket: the KeyValueStore's import file.
SECRET_OBJECT = "config/link-secret.json"
#: Query parameters of a link: expiry (Unix seconds) and signature (base64url HMAC-SHA256).
EXPIRES, SIGNATURE = "exp", "sig"
#: Folders of a job that CloudFront serves (report and viewer, SOG/SPZ, the training job's
#: model.tar.gz). Nothing else under jobs/<job_id>/ (the upload, request.json, job.json, sfm/)
#: is reachable through the distribution: the bucket policy grants CloudFront these only.
RESULT_FOLDERS = ("report", "compressed", "train")
#: Longest link lifetime a deploy or `spaceport status --links` may ask for, in hours (a year):
#: nothing in the signature limits it; results are kept as long as the bucket keeps them.
MAX_LINK_HOURS = 24 * 365
#: Job ids the edge function accepts (spaceport.core.jobid: "sp-" + slug + hash, at most 36 chars).
JOB_ID = re.compile(r"sp-[a-z0-9-]{1,61}")


def new_secret() -> str:
    """A fresh 256-bit secret, URL-safe text (a KeyValueStore value is a string of <= 1024 chars)."""
    return secrets.token_urlsafe(32)


def secret_file(secret: str) -> bytes:
    """The KeyValueStore import file holding ``secret`` (CloudFront's documented format:
    ``{"data": [{"key": ..., "value": ...}]}``)."""
    return json.dumps({"data": [{"key": SECRET_KEY, "value": secret}]}).encode()


def read_secret(body: bytes) -> str:
    """The secret in an import file written by :func:`secret_file`."""
    try:
        items = {d["key"]: d["value"] for d in json.loads(body)["data"]}
        return items[SECRET_KEY]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigInvalid(f"{SECRET_OBJECT} holds no {SECRET_KEY!r} entry",
                            "Redeploy the stack: the deploy writes the link secret") from exc


def job_prefix(job_id: str) -> str:
    """The path every link of ``job_id`` is valid under (what the signature covers)."""
    if not JOB_ID.fullmatch(job_id):
        raise ConfigInvalid(f"{job_id!r} is not a job id", "Job ids look like sp-<name>-<16 hex digits>")
    return f"/jobs/{job_id}/"


def signature(secret: str, job_id: str, expires: int) -> str:
    """base64url (unpadded) HMAC-SHA256 of ``"<job prefix>\\n<expires>"`` under ``secret``."""
    message = f"{job_prefix(job_id)}\n{int(expires)}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_query(secret: str, job_id: str, expires: int) -> str:
    """The query string (no ``?``) that authorises ``job_id``'s results until ``expires``."""
    return urlencode({EXPIRES: int(expires), SIGNATURE: signature(secret, job_id, expires)})


def result_url(domain: str, key: str, *, secret: str, expires: int) -> str:
    """``https://<domain>/<key>?exp=..&sig=..`` for a bucket key under ``jobs/<job_id>/<result folder>/``."""
    parts = key.split("/")
    if len(parts) < 4 or parts[0] != "jobs" or parts[2] not in RESULT_FOLDERS:
        raise ConfigInvalid(f"{key!r} is not a result file",
                            f"Links open jobs/<job_id>/{{{','.join(RESULT_FOLDERS)}}}/... only")
    return f"https://{domain}/{quote(key)}?{token_query(secret, parts[1], expires)}"


def expiry(now: datetime, lifetime_s: int) -> int:
    """Unix seconds ``lifetime_s`` after ``now``."""
    return int(now.timestamp()) + int(lifetime_s)


def expiry_text(expires: int) -> str:
    """``2026-12-11 18:40 UTC``: when links stop working, for the email."""
    return datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M UTC")
