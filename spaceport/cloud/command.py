"""`spaceport submit FILE --email ...` and `spaceport status JOB` for a deployed stack."""

from __future__ import annotations

import json
from pathlib import Path

import click

from spaceport.cloud.jobs import DEFAULT_STACK
from spaceport.cloud.links import MAX_LINK_HOURS
from spaceport.core.config import parse_stage_options


def _session(region: str | None):
    import boto3

    return boto3.session.Session(region_name=region)


@click.command("submit")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--email", help="Where to send the result (stored as x-amz-meta-email).")
@click.option("--preset", type=click.Choice(["fast", "default", "quality"]), help="Stage option preset.")
@click.option("--option", "options", multiple=True, metavar="STAGE.NAME=VALUE",
              help="Per-stage option override, e.g. train.steps=7000 (repeatable; `spaceport train --help` lists them).")
@click.option("--stack", default=DEFAULT_STACK, show_default=True, help="CloudFormation stack name.")
@click.option("--region", help="AWS region (default: your AWS configuration).")
def submit(path: Path, email: str | None, preset: str | None, options: tuple[str, ...], stack: str,
           region: str | None) -> None:
    """Upload a folder of photos, a zip of photos or a video to the deployed stack; prints the job id and
    what the bucket will do with the upload (a folder starts once its uploads go quiet)."""
    from spaceport.cloud import jobs

    session = _session(region)
    deployment = jobs.find_deployment(session.client("cloudformation"), stack)
    out = jobs.submit(path, s3=session.client("s3"), deployment=deployment, email=email, preset=preset,
                      options=parse_stage_options(list(options), flag="--option"), dynamodb=session.client("dynamodb"))
    click.echo(f"uploaded {out['uri']}")
    click.echo(out["what"])
    click.echo(f"job {out['job_id']}")
    click.echo(f"follow it with: spaceport status {out['job_id']}" + (f" --stack {stack}" if stack != DEFAULT_STACK else ""))


@click.command("status")
@click.argument("job_id")
@click.option("--stack", default=DEFAULT_STACK, show_default=True, help="CloudFormation stack name.")
@click.option("--region", help="AWS region (default: your AWS configuration).")
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
@click.option("--links", "links_hours", type=click.IntRange(1, MAX_LINK_HOURS), default=None, metavar="HOURS",
              help="Also print fresh result links (through the stack's CloudFront distribution) that open this "
                   f"job's results for HOURS hours (1-{MAX_LINK_HOURS}). Signing reads the stack's link secret "
                   "from its bucket with your credentials.")
def status(job_id: str, stack: str, region: str | None, as_json: bool, links_hours: int | None) -> None:
    """Show a cloud job's status, error, metrics, per-stage times and cost."""
    from spaceport.cloud import jobs

    session = _session(region)
    deployment = jobs.find_deployment(session.client("cloudformation"), stack)
    view = jobs.status(job_id, dynamodb=session.client("dynamodb"), sfn=session.client("stepfunctions"),
                       deployment=deployment)
    if links_hours is not None:
        from datetime import UTC, datetime

        from botocore.exceptions import ClientError

        from spaceport.cloud import links
        from spaceport.cloud.notify import signed_links
        from spaceport.core.errors import ConfigInvalid

        expires = links.expiry(datetime.now(UTC), links_hours * 3600)
        try:
            signed = signed_links(view.record, s3=session.client("s3"), bucket=deployment.bucket,
                                  domain=deployment.results_domain, expires=expires)
        except ClientError as exc:
            raise ConfigInvalid(f"Could not read the link secret s3://{deployment.bucket}/{links.SECRET_OBJECT}: "
                                f"{exc}", "Use credentials that may read it, or redeploy the stack (the deploy "
                                "writes it)") from exc
        view = view.model_copy(update={"links": signed, "links_expire": links.expiry_text(expires)})
    click.echo(view.to_json() if as_json else jobs.format_status(view))


@click.group("aws")
def aws_group() -> None:
    """Check and operate the deployed AWS stack."""


@aws_group.command("doctor")
@click.option("--stack", default=DEFAULT_STACK, show_default=True, help="CloudFormation stack name.")
@click.option("--region", help="AWS region (default: your AWS configuration).")
@click.option("--recipient", metavar="EMAIL", help="Also check that this address can receive job emails "
              "(matters while SES is in the sandbox).")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor_command(stack: str, region: str | None, recipient: str | None, as_json: bool) -> None:
    """Check everything a first job needs in this account and region: CDK bootstrap, the stack, the
    SES sender and sandbox, SageMaker and CodeBuild quotas, the stage images, SNS subscriptions.
    One line per check with its fix; exits 1 when a first job would fail."""
    from spaceport.cloud import doctor

    session = _session(region)
    checks = doctor.run(session.client, stack_name=stack, region=session.region_name or "(no region)",
                        recipient=recipient)
    click.echo(json.dumps(doctor.as_json(checks), indent=2) if as_json else doctor.report(checks))
    if doctor.first_job_would_fail(checks):
        raise click.exceptions.Exit(1)
