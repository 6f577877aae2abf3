"""Success and failure emails for a job record (SES, or an SNS topic when no SES sender is set).

A failure to send is returned (and recorded by the caller), never raised: a job's outcome does
not depend on its email.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from spaceport.cloud import links as result_links
from spaceport.core.errors import ConfigInvalid, QualityBelowTarget
from spaceport.core.graph import GRAPH, JOB_KINDS, PRODUCTS, STAGES
from spaceport.core.jobid import stage_job_name
from spaceport.core.summaries import JobRecord

_STAGE_TITLES = {**{s.name: s.title for s in GRAPH}, "start": "Upload check"}
#: What the email links, in order: the stage graph's products, then the trained model (model.tar.gz).
_LINKS = (*((p.name, p.label) for _s, p in PRODUCTS), ("model", "Trained splat (model.tar.gz: splat.ply inside)"))


def _minutes(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 60:.1f} min"


def _name(record: JobRecord) -> str:
    return str(record.source_uri or record.job_id).rstrip("/").rsplit("/", 1)[-1]


#: CloudWatch log group of each SageMaker job kind; a job's streams start with its job name.
LOG_GROUPS = {"training": "/aws/sagemaker/TrainingJobs", "processing": "/aws/sagemaker/ProcessingJobs"}


def stage_logs(record: JobRecord, region: str | None) -> tuple[str, str, str | None] | None:
    """``(log group, stream prefix, console URL)`` of the failed stage's SageMaker job, or None when
    the failure was not in a SageMaker stage. The job name is the stage's last attempt's."""
    stage = record.stage
    if stage not in JOB_KINDS:
        return None
    attempts = [r for r in record.retries if r.stage == stage]
    job_name = attempts[-1].job_name if attempts else stage_job_name(record.job_id, stage)
    group = LOG_GROUPS[JOB_KINDS[stage]]
    url = None
    if region:
        # The console's log-events URL escapes '/' as $252F and '?'/'=' as $253F/$253D.
        esc = group.replace("/", "$252F")
        url = (f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:log-groups/"
               f"log-group/{esc}/log-events$3FlogStreamNameFilter$3D{quote(job_name)}")
    return group, job_name, url


def execution_url(execution_arn: str) -> str:
    """The Step Functions console page of an execution (its event history holds every error in full)."""
    region = execution_arn.split(":")[3]
    return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"


def below_target(record: JobRecord) -> bool:
    """Whether ``record`` is a job whose splat missed the quality gate after every stage ran: its
    report, marked below target, is published and the failure email links it."""
    return (record.status == "FAILED" and record.failure is not None
            and record.failure.error == QualityBelowTarget.__name__ and bool(record.outputs.get("report")))


def _link_lines(job_id: str, links: Mapping[str, str], expires: int | None, links_error: str | None) -> list[str]:
    """How long the links work, or why there are none and who can make them."""
    if links and expires is not None:
        return [f"These links work until {result_links.expiry_text(expires)} and open this job's "
                "results only. For fresh links after that, ask your Spaceport operator "
                f"(`spaceport status {job_id} --links HOURS`). Job id: {job_id}"]
    return [f"The result links could not be made ({links_error or 'no result files found'}); "
            f"your Spaceport operator can make them with `spaceport status {job_id} --links HOURS`. "
            f"Job id: {job_id}"]


def _success(record: JobRecord, links: Mapping[str, str], expires: int | None, links_error: str | None) -> list[str]:
    m = record.metrics
    lines = [f"Your 3D Gaussian splat of {_name(record)} is ready.", ""]
    lines += [f"{label}: {links[key]}" for key, label in _LINKS if links.get(key)]
    lines.append("")
    if m:
        lines.append(
            "Quality: held-out PSNR {:.2f} dB, SSIM {:.3f}, {:,} Gaussians.".format(
                m.get("test_psnr", float("nan")), m.get("test_ssim", float("nan")),
                int(m.get("num_gaussians", 0))))
    # The SageMaker stages (the quality gate runs in a Lambda: no instance, no time worth a line).
    stages = {k: v for k, v in record.stages.items() if k in JOB_KINDS}
    if stages:
        lines.append("Time per stage:")
        for stage in sorted(stages, key=STAGES.index):
            s = stages[stage]
            lines.append(f"  {_STAGE_TITLES.get(stage, stage)}: {_minutes(s.seconds)} on {s.instance_type or '?'}")
    if record.cost_usd is not None:
        lines.append(f"Estimated cost: ${record.cost_usd:.2f} (on-demand list prices).")
    return [*lines, "", *_link_lines(record.job_id, links, expires, links_error)]


def _below_target(record: JobRecord, links: Mapping[str, str], expires: int | None,
                  links_error: str | None) -> list[str]:
    failure = record.failure
    assert failure is not None  # below_target(record)
    lines = [f"Your splat of {_name(record)} is below the quality target, so this job failed.",
             "It was still compressed and published so that you can see what went wrong; "
             "it is not a passing result.", "",
             f"What went wrong: {failure.reason}", f"What to do: {failure.fix}", ""]
    if links.get("report"):
        lines += [f"Report (below target): {links['report']}", ""]
    return [*lines, *_link_lines(record.job_id, links, expires, links_error), f"Error: {failure.error}."]


def _failure(record: JobRecord, region: str | None) -> list[str]:
    stage = _STAGE_TITLES.get(record.stage or "", record.stage or "a stage")
    failure = record.failure
    error = failure.error if failure else "StageFailed"
    reason = failure.reason if failure else "unknown"
    if error == "StageFailed":
        # No typed error: the stage crashed before writing its failure file (a segfault, the
        # instance killed it, an import error). Say so, quote what SageMaker said, point at the logs.
        reason = f"The {stage} stage stopped without saying why (SageMaker reported: {reason.rstrip('.')})."
    lines = [
        f"Spaceport could not turn {_name(record)} into a splat.",
        "",
        f"Where: {stage}",
        f"What went wrong: {reason}",
        f"What to do: {failure.fix if failure else 'Check the job logs, or try again.'}",
        "",
        f"Error: {error}. Job id: {record.job_id}",
    ]
    logs = stage_logs(record, region)
    if failure and failure.details.get("at") == "create":
        # SageMaker refused to create the job: it has no logs; the execution's history has the request.
        lines.append("Logs: the job was never created, so it has no log; the workflow's history has the full error"
                     + (f": {execution_url(record.execution_arn)}" if record.execution_arn else "."))
    elif logs:
        group, job_name, url = logs
        lines.append(f"Logs: CloudWatch log group {group}, log streams starting with {job_name}"
                     + (f": {url}" if url else ""))
    return lines


def compose(record: JobRecord, links: Mapping[str, str], *, expires: int | None = None,
            links_error: str | None = None, region: str | None = None) -> tuple[str, str]:
    """Subject and plain-text body of the email for ``record`` (SUCCEEDED, FAILED or REJECTED; a
    FAILED job below the quality gate gets its own, linking the report marked below target).

    ``links`` are signed result links valid until ``expires`` (Unix seconds); ``links_error`` says
    why there are none when they could not be made.
    """
    name = _name(record)
    if record.status == "SUCCEEDED":
        return f"Your Spaceport splat is ready: {name}"[:100], "\n".join(_success(record, links, expires, links_error))
    if below_target(record):
        return (f"Your Spaceport splat is below target: {name}"[:100],
                "\n".join(_below_target(record, links, expires, links_error)))
    return f"Spaceport could not process {name}"[:100], "\n".join(_failure(record, region))


def signed_links(record: JobRecord, *, s3: Any, bucket: str, domain: str, expires: int) -> dict[str, str]:
    """Links through the results distribution to the record's outputs that exist in the bucket, each
    valid until ``expires`` (Unix seconds) for this job's results only (spaceport.cloud.links).

    The secret is read from the bucket at each call (one small GET), so a rotated secret is used at once.
    """
    if not domain:
        raise ConfigInvalid("the results distribution's domain is not configured",
                            "Redeploy the stack: it passes the CloudFront domain to the notify function")
    body = s3.get_object(Bucket=bucket, Key=result_links.SECRET_OBJECT)["Body"].read()
    secret = result_links.read_secret(body)
    out: dict[str, str] = {}
    for key, _label in _LINKS:
        obj = record.outputs.get(key)
        if obj and _exists(s3, bucket, obj):
            out[key] = result_links.result_url(domain, obj, secret=secret, expires=expires)
    return out


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


def send(record: JobRecord, *, settings: Any, s3: Any, ses: Any, sns: Any) -> dict[str, Any]:
    """Send the email of ``record``. Returns ``{"sent", "channel", "error"?, "links_error"?}``; never raises
    for send errors, and a success (or below-target) email goes even when its links could not be made."""
    email = record.email
    if not email:
        return {"sent": False, "channel": None, "skipped": "no address"}
    links: dict[str, str] = {}
    expires, links_error = None, None
    below = below_target(record)
    if record.status == "SUCCEEDED" or below:
        expires = result_links.expiry(datetime.now(UTC), settings.link_expiry_s)
        try:
            links = signed_links(record, s3=s3, bucket=settings.bucket, domain=settings.results_domain,
                                 expires=expires)
        except (ClientError, BotoCoreError, ConfigInvalid) as exc:
            # The email still goes (the job is done); it says the links are missing and how to get them.
            links_error = f"{type(exc).__name__}: {exc}"
        if below:
            # A splat below target is not a result: only its report, which says so, is linked.
            links = {k: v for k, v in links.items() if k == "report"}
    subject, body = compose(record, links, expires=expires, links_error=links_error,
                            region=os.environ.get("AWS_REGION"))
    outcome = _deliver(email, subject, body, settings=settings, ses=ses, sns=sns)
    return {**outcome, "links_error": links_error} if links_error else outcome


def _deliver(email: str, subject: str, body: str, *, settings: Any, ses: Any, sns: Any) -> dict[str, Any]:
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
