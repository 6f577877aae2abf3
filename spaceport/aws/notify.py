"""Success and failure emails for a job record (SES, or an SNS topic when no SES sender is set).

A failure to send is returned (and recorded by the caller), never raised: a job's outcome does
not depend on its email.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from spaceport.plan import JOB_KINDS, STAGES, stage_job_name

_STAGE_TITLES = {"sfm": "Camera poses (SfM)", "train": "Training", "compress": "Compression",
                 "publish": "Report", "quality_gate": "Quality gate", "start": "Upload check"}


def _minutes(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 60:.1f} min"


def _name(record: Mapping[str, Any]) -> str:
    return str(record.get("source_uri") or record.get("job_id", "")).rstrip("/").rsplit("/", 1)[-1]


#: CloudWatch log group of each SageMaker job kind; a job's streams start with its job name.
LOG_GROUPS = {"training": "/aws/sagemaker/TrainingJobs", "processing": "/aws/sagemaker/ProcessingJobs"}


def stage_logs(record: Mapping[str, Any], region: str | None) -> tuple[str, str, str | None] | None:
    """``(log group, stream prefix, console URL)`` of the failed stage's SageMaker job, or None when
    the failure was not in a SageMaker stage. The job name is the stage's last attempt's."""
    stage = record.get("stage")
    if stage not in JOB_KINDS or not record.get("job_id"):
        return None
    attempts = [r for r in record.get("retries") or [] if r.get("stage") == stage]
    job_name = attempts[-1]["job_name"] if attempts else stage_job_name(record["job_id"], stage)
    group = LOG_GROUPS[JOB_KINDS[stage]]
    url = None
    if region:
        # The console's log-events URL escapes '/' as $252F and '?'/'=' as $253F/$253D.
        esc = group.replace("/", "$252F")
        url = (f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:log-groups/"
               f"log-group/{esc}/log-events$3FlogStreamNameFilter$3D{quote(job_name)}")
    return group, job_name, url


def compose(record: Mapping[str, Any], links: Mapping[str, str], *, expiry_s: int,
            region: str | None = None) -> tuple[str, str]:
    """Subject and plain-text body of the email for ``record`` (SUCCEEDED, FAILED or REJECTED)."""
    name, job_id = _name(record), record.get("job_id", "")
    if record.get("status") == "SUCCEEDED":
        m = record.get("metrics", {})
        lines = [f"Your 3D Gaussian splat of {name} is ready.", ""]
        if links.get("report"):
            lines.append(f"Report and viewer: {links['report']}")
        for key, label in (("sog", "SOG (compressed, web viewer)"), ("ply", "PLY (full splat)"),
                           ("spz", "SPZ (compressed)")):
            if links.get(key):
                lines.append(f"{label}: {links[key]}")
        lines.append("")
        if m:
            lines.append(
                "Quality: held-out PSNR {:.2f} dB, SSIM {:.3f}, {:,} Gaussians.".format(
                    m.get("test_psnr", float("nan")), m.get("test_ssim", float("nan")),
                    int(m.get("num_gaussians", 0))))
        stages = record.get("stages", {})
        if stages:
            lines.append("Time per stage:")
            for stage in sorted(stages, key=lambda x: STAGES.index(x) if x in STAGES else len(STAGES)):
                s = stages[stage]
                lines.append(f"  {_STAGE_TITLES.get(stage, stage)}: {_minutes(s.get('seconds'))}"
                             f" on {s.get('instance_type', '?')}")
        if record.get("cost_usd") is not None:
            lines.append(f"Estimated cost: ${record['cost_usd']:.2f} (on-demand list prices).")
        # A presigned link dies with the credentials that signed it: the notify Lambda's role
        # session, which ends after a few hours however long the link asked for (docs/aws.md).
        lines += ["", f"These links are temporary: they stop working after at most {expiry_s // 3600} hours, "
                  "and may stop within a few hours. If a link has expired, ask for fresh ones quoting the "
                  f"job id. Job id: {job_id}"]
        return f"Your Spaceport splat is ready: {name}"[:100], "\n".join(lines)
    stage = _STAGE_TITLES.get(record.get("stage", ""), record.get("stage", "a stage"))
    error = record.get("error") or "StageFailed"
    reason = record.get("reason") or record.get("cause") or "unknown"
    logs = stage_logs(record, region)
    if error == "StageFailed":
        # No typed error: the stage crashed before writing its failure file (a segfault, the
        # instance killed it, an import error). Say so, quote what SageMaker said, point at the logs.
        reason = f"The {stage} stage stopped without saying why (SageMaker reported: {reason.rstrip('.')})."
    lines = [
        f"Spaceport could not turn {name} into a splat.",
        "",
        f"Where: {stage}",
        f"What went wrong: {reason}",
        f"What to do: {record.get('fix') or 'Check the job logs, or try again.'}",
        "",
        f"Error: {error}. Job id: {job_id}",
    ]
    if logs:
        group, job_name, url = logs
        lines.append(f"Logs: CloudWatch log group {group}, log streams starting with {job_name}"
                     + (f": {url}" if url else ""))
    return f"Spaceport could not process {name}"[:100], "\n".join(lines)


def presigned_links(record: Mapping[str, Any], *, s3: Any, bucket: str, expiry_s: int) -> dict[str, str]:
    """Presigned GET links to the outputs that exist (the PLY falls back to model.tar.gz)."""
    outputs = dict(record.get("outputs", {}))
    links: dict[str, str] = {}
    for key in ("report", "sog", "ply", "spz"):
        obj = outputs.get(key)
        if key == "ply" and obj and not _exists(s3, bucket, obj):
            obj = outputs.get("model")
        if obj:
            links[key] = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": obj},
                                                   ExpiresIn=expiry_s)
    return links


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


def send(record: Mapping[str, Any], *, settings: Any, s3: Any, ses: Any, sns: Any) -> dict[str, Any]:
    """Send the email of ``record``. Returns ``{"sent", "channel", "error"?}``; never raises for send errors."""
    email = record.get("email")
    if not email:
        return {"sent": False, "channel": None, "skipped": "no address"}
    links = presigned_links(record, s3=s3, bucket=settings.bucket, expiry_s=settings.link_expiry_s) \
        if record.get("status") == "SUCCEEDED" else {}
    subject, body = compose(record, links, expiry_s=settings.link_expiry_s, region=os.environ.get("AWS_REGION"))
    try:
        if settings.sender:
            ses.send_email(
                FromEmailAddress=settings.sender,
                Destination={"ToAddresses": [email]},
                Content={"Simple": {"Subject": {"Data": subject, "Charset": "UTF-8"},
                                    "Body": {"Text": {"Data": body, "Charset": "UTF-8"}}}},
            )
            return {"sent": True, "channel": "ses"}
        if settings.topic_arn:
            sns.publish(TopicArn=settings.topic_arn, Subject=subject, Message=f"To: {email}\n\n{body}")
            return {"sent": True, "channel": "sns"}
        return {"sent": False, "channel": None, "skipped": "no sender or topic configured"}
    except (ClientError, BotoCoreError) as exc:
        return {"sent": False, "channel": "ses" if settings.sender else "sns", "error": f"{type(exc).__name__}: {exc}"}
