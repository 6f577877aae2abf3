"""`spaceport submit FILE --email ...` and `spaceport status JOB` for a deployed stack."""

from __future__ import annotations

import json
from pathlib import Path

import click

from spaceport.aws.jobs import DEFAULT_STACK


def _session(region: str | None):
    import boto3

    return boto3.session.Session(region_name=region)


@click.command("submit")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--email", help="Where to send the result (stored as x-amz-meta-email).")
@click.option("--preset", type=click.Choice(["fast", "default", "quality"]), help="Stage option preset.")
@click.option("--option", "options", multiple=True, metavar="STAGE.NAME=VALUE",
              help="Per-stage option override, e.g. train.max_steps=7000 (repeatable).")
@click.option("--stack", default=DEFAULT_STACK, show_default=True, help="CloudFormation stack name.")
@click.option("--region", help="AWS region (default: your AWS configuration).")
def submit(path: Path, email: str | None, preset: str | None, options: tuple[str, ...], stack: str,
           region: str | None) -> None:
    """Upload photos (a zip or a folder), a video or an image to the deployed stack; prints the job id."""
    from spaceport.aws import jobs

    session = _session(region)
    deployment = jobs.find_deployment(session.client("cloudformation"), stack)
    out = jobs.submit(path, s3=session.client("s3"), deployment=deployment, email=email, preset=preset,
                      options=jobs.parse_options(list(options)))
    click.echo(f"uploaded {out['uri']}")
    click.echo(f"job {out['job_id']}")
    click.echo(f"follow it with: spaceport status {out['job_id']}" + (f" --stack {stack}" if stack != DEFAULT_STACK else ""))


@click.command("status")
@click.argument("job_id")
@click.option("--stack", default=DEFAULT_STACK, show_default=True, help="CloudFormation stack name.")
@click.option("--region", help="AWS region (default: your AWS configuration).")
@click.option("--json", "as_json", is_flag=True, help="Print the job record as JSON.")
def status(job_id: str, stack: str, region: str | None, as_json: bool) -> None:
    """Show a cloud job's status, error, metrics, per-stage times and cost."""
    from spaceport.aws import jobs

    session = _session(region)
    deployment = jobs.find_deployment(session.client("cloudformation"), stack)
    record = jobs.status(job_id, dynamodb=session.client("dynamodb"), sfn=session.client("stepfunctions"),
                         deployment=deployment)
    click.echo(json.dumps(record, indent=2, sort_keys=True) if as_json else jobs.format_status(record))
