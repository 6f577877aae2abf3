"""`spaceport aws doctor`: everything a first job needs in this account and region, one check each.

Each check reads the account (never changes it) and says what is missing and the command that
fixes it. A check marked ``fail`` means a first job would fail (or its email would never arrive);
``warn`` is worth knowing but does not stop a job; ``skip`` could not be judged because an earlier
check failed (no stack, no credentials). What the first job uses is read from the deployed stack
itself: the start function's plan settings (instance types, images, spot), its sender or topic.

Clients come from ``client(name)`` (a boto3 session's ``client``), so a test can hand in moto's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from spaceport.cloud.settings import ENV
from spaceport.core.graph import JOB_KINDS
from spaceport.core.plan import PlanSettings, settings_from_mapping

Status = Literal["ok", "warn", "fail", "skip"]
#: CDK's default bootstrap qualifier (cdk.json sets no other): its stack and version parameter.
BOOTSTRAP_STACK = "CDKToolkit"
BOOTSTRAP_VERSION_PARAMETER = "/cdk-bootstrap/hnb659fds/version"
#: The image build's compute type (cloud/stacks/images.py: ComputeType.LARGE on Linux) as Service Quotas names it.
CODEBUILD_QUOTA = "Concurrently running builds for Linux/Large environment"
_QUOTA_KIND = {"training": "training job usage", "processing": "processing job usage"}


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}[self.status]
        return f"{mark}  {self.name}: {self.detail}" + (f" -> fix: {self.fix}" if self.fix else "")


@dataclass
class _Context:
    """What earlier checks found, for the later ones."""

    client: Callable[[str], Any]
    stack_name: str
    region: str
    recipient: str | None
    account: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    plan: PlanSettings | None = None
    stack_resources: list[dict[str, Any]] = field(default_factory=list)


def _code(exc: Exception) -> str:
    return exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else type(exc).__name__


def _credentials(ctx: _Context) -> Check:
    try:
        ctx.account = ctx.client("sts").get_caller_identity()["Account"]
    except (ClientError, BotoCoreError) as exc:
        return Check("AWS credentials", "fail", f"no usable credentials ({_code(exc)})",
                     "Configure credentials (aws configure, or AWS_PROFILE) so `aws sts get-caller-identity` works")
    return Check("AWS credentials", "ok", f"account {ctx.account}, region {ctx.region}")


def _bootstrap(ctx: _Context) -> Check:
    fix = f"npx cdk bootstrap aws://{ctx.account or '<account>'}/{ctx.region}"
    try:
        (stack,) = ctx.client("cloudformation").describe_stacks(StackName=BOOTSTRAP_STACK)["Stacks"]
    except ClientError:
        return Check("CDK bootstrap", "fail", f"no {BOOTSTRAP_STACK} stack in {ctx.region}", fix)
    if not stack["StackStatus"].endswith("_COMPLETE") or "ROLLBACK" in stack["StackStatus"]:
        return Check("CDK bootstrap", "fail", f"{BOOTSTRAP_STACK} is {stack['StackStatus']}", fix)
    try:
        version = ctx.client("ssm").get_parameter(Name=BOOTSTRAP_VERSION_PARAMETER)["Parameter"]["Value"]
    except ClientError:
        return Check("CDK bootstrap", "fail", f"{BOOTSTRAP_VERSION_PARAMETER} is missing", fix)
    return Check("CDK bootstrap", "ok", f"{BOOTSTRAP_STACK} version {version}")


def _stack(ctx: _Context) -> Check:
    fix = "npx cdk deploy -c spaceport.sender_email=you@example.com (docs/aws.md, step 5)"
    cfn = ctx.client("cloudformation")
    try:
        (stack,) = cfn.describe_stacks(StackName=ctx.stack_name)["Stacks"]
    except ClientError:
        return Check("Stack deployed", "fail", f"no stack {ctx.stack_name!r} in {ctx.region}", fix)
    status = stack["StackStatus"]
    if not status.endswith("_COMPLETE") or status in ("ROLLBACK_COMPLETE", "DELETE_COMPLETE"):
        return Check("Stack deployed", "fail", f"{ctx.stack_name} is {status}", fix)
    ctx.outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    function = ctx.outputs.get("StartJobFunctionName")
    if not function:
        return Check("Stack deployed", "fail", f"{ctx.stack_name} has no StartJobFunctionName output", fix)
    try:
        config = ctx.client("lambda").get_function_configuration(FunctionName=function)
    except ClientError as exc:
        return Check("Stack deployed", "fail", f"its start function {function} cannot be read ({_code(exc)})", fix)
    ctx.environment = dict(config.get("Environment", {}).get("Variables", {}))
    ctx.plan = settings_from_mapping(json.loads(ctx.environment.get(ENV["plan_settings"], "{}")))
    paginator = cfn.get_paginator("list_stack_resources")
    ctx.stack_resources = [r for page in paginator.paginate(StackName=ctx.stack_name)
                           for r in page["StackResourceSummaries"]]
    return Check("Stack deployed", "ok", f"{ctx.stack_name} ({status})")


def _ses(ctx: _Context) -> list[Check]:
    sender = ctx.environment.get(ENV["sender"], "")
    if not sender:
        return [Check("SES sender", "skip", "the stack sends through its SNS topic (no sender_email)")]
    domain = sender.rsplit("@", 1)[-1]
    ses = ctx.client("ses")
    found = ses.get_identity_verification_attributes(Identities=[sender, domain])["VerificationAttributes"]
    verified = [i for i in (sender, domain) if found.get(i, {}).get("VerificationStatus") == "Success"]
    checks = [Check("SES sender", "ok", f"{verified[0]} is verified in {ctx.region}") if verified else Check(
        "SES sender", "fail", f"{sender} is not a verified identity in {ctx.region}",
        f"aws sesv2 create-email-identity --email-identity {sender} --region {ctx.region}, then click the link SES "
        "mails to it")]
    try:
        production = bool(ctx.client("sesv2").get_account().get("ProductionAccessEnabled"))
    except (ClientError, BotoCoreError) as exc:
        return [*checks, Check("SES sandbox", "warn", f"could not read the account ({_code(exc)})")]
    if production:
        return [*checks, Check("SES sandbox", "ok", "production access: any recipient")]
    fix = ("Verify each uploader's address (aws sesv2 create-email-identity --email-identity ADDRESS), or request "
           "production access: SES console -> Account dashboard -> Request production access")
    if ctx.recipient is None:
        return [*checks, Check("SES sandbox", "warn", "in the sandbox: only verified recipients get email "
                               "(pass --recipient ADDRESS to check one)", fix)]
    status = ses.get_identity_verification_attributes(Identities=[ctx.recipient])["VerificationAttributes"]
    if status.get(ctx.recipient, {}).get("VerificationStatus") == "Success":
        return [*checks, Check("SES sandbox", "ok", f"in the sandbox; {ctx.recipient} is verified")]
    return [*checks, Check("SES sandbox", "fail", f"in the sandbox and {ctx.recipient} is not verified: its email "
                           "would be rejected", fix)]


def _quota_values(ctx: _Context, service: str) -> dict[str, tuple[str, float, bool]]:
    """``{quota name: (quota code, value, applied)}``: the account's applied values over AWS's defaults
    (``applied`` False: only the default is listed)."""
    sq = ctx.client("service-quotas")
    out: dict[str, tuple[str, float, bool]] = {}
    for op, applied in (("list_aws_default_service_quotas", False), ("list_service_quotas", True)):
        for page in sq.get_paginator(op).paginate(ServiceCode=service):
            for q in page.get("Quotas", []):
                out[q["QuotaName"]] = (q["QuotaCode"], float(q["Value"]), applied)
    return out


def _needed_quotas(plan: PlanSettings) -> dict[str, list[str]]:
    """``{SageMaker quota name: [stages]}`` a job with ``plan`` needs at least 1 of."""
    need: dict[str, list[str]] = {}
    for stage, kind in JOB_KINDS.items():
        instance = plan.resources(stage).instance_type
        names = [f"{instance} for {_QUOTA_KIND[kind]}"]
        if kind == "training" and plan.use_spot:
            names = [f"{instance} for spot training job usage"]
        for name in names:
            need.setdefault(name, []).append(stage)
    return need


def _increase(service: str, code: str | None, name: str) -> str:
    if code:
        return (f"aws service-quotas request-service-quota-increase --service-code {service} --quota-code {code} "
                "--desired-value 1")
    return f"Request at least 1 for '{name}' in Service Quotas ({service})"


def _sagemaker_quotas(ctx: _Context) -> list[Check]:
    if ctx.plan is None:
        return [Check("SageMaker quotas", "skip", "no deployed stack to read the instance types from")]
    try:
        values = _quota_values(ctx, "sagemaker")
    except (ClientError, BotoCoreError) as exc:
        return [Check("SageMaker quotas", "warn", f"could not read Service Quotas ({_code(exc)})",
                      "Check the quotas docs/aws.md lists in the Service Quotas console")]
    checks = []
    for name, stages in _needed_quotas(ctx.plan).items():
        code, value, _applied = values.get(name, (None, None, False))
        label = f"SageMaker quota '{name}' ({', '.join(stages)})"
        if value is None:
            checks.append(Check(label, "warn", "not listed by Service Quotas for this region",
                                "Check the instance type is offered in this region"))
        elif value < 1:
            checks.append(Check(label, "fail", f"is {value:g}: the {stages[0]} job cannot start",
                                _increase("sagemaker", code, name)))
        else:
            checks.append(Check(label, "ok", f"is {value:g}"))
    return checks


def _codebuild_quota(ctx: _Context) -> Check:
    label = f"CodeBuild quota '{CODEBUILD_QUOTA}'"
    try:
        code, value, applied = _quota_values(ctx, "codebuild").get(CODEBUILD_QUOTA, (None, None, False))
    except (ClientError, BotoCoreError) as exc:
        return Check(label, "warn", f"could not read Service Quotas ({_code(exc)})")
    if value is None:
        return Check(label, "warn", "not listed by Service Quotas for this region")
    if value < 1:
        return Check(label, "fail", f"is {value:g}: the image build cannot run",
                     _increase("codebuild", code, CODEBUILD_QUOTA))
    if not applied:
        # New accounts have been refused builds ("Cannot have more than 0 builds in queue for the
        # account") while only the default was listed and no value was applied to the account.
        return Check(label, "warn", f"only AWS's default ({value:g}) is listed, no value applied to this account: "
                     "a new account can still be held at 0 builds", _increase("codebuild", code, CODEBUILD_QUOTA))
    return Check(label, "ok", f"is {value:g}")


def _image_ref(uri: str) -> tuple[str, dict[str, str]]:
    """``(repository name, imageId)`` of ``<registry>/<repo>:<tag>`` or ``<registry>/<repo>@<digest>``."""
    path = uri.split("/", 1)[1]
    if "@" in path:
        repo, digest = path.split("@", 1)
        return repo, {"imageDigest": digest}
    repo, _, tag = path.rpartition(":") if ":" in path else (path, "", "latest")
    return repo, {"imageTag": tag}


def _images(ctx: _Context) -> list[Check]:
    if ctx.plan is None:
        return [Check("Stage images", "skip", "no deployed stack to read the images from")]
    build = (f"aws codebuild start-build --project-name {ctx.outputs.get('BuildProjectName', '<BuildProjectName>')}"
             " builds and pushes them (docs/aws.md, Images)")
    # A stack that runs images by digest builds them at deploy time: a redeploy builds what is missing.
    rebuild = "npx cdk deploy builds the images the stack runs (docs/aws.md, Images); a failed build names its log"
    ecr, checks, seen = ctx.client("ecr"), [], {}
    for stage in JOB_KINDS:
        uri = ctx.plan.resources(stage).image
        seen.setdefault(uri, []).append(stage)
    for uri, stages in seen.items():
        label = f"Image for {', '.join(stages)}"
        if not uri:
            checks.append(Check(label, "fail", "the stack names no image", "Redeploy with `cdk deploy`"))
            continue
        repo, image_id = _image_ref(uri)
        fix = rebuild if "imageDigest" in image_id else build
        try:
            found = ecr.describe_images(repositoryName=repo, imageIds=[image_id])["imageDetails"]
        except ClientError as exc:
            what = {"RepositoryNotFoundException": "no such repository",
                    "ImageNotFoundException": "not pushed yet"}.get(_code(exc))
            if what is None:
                raise
            checks.append(Check(label, "fail", f"{uri}: {what}", fix))
            continue
        digest = found[0].get("imageDigest", "?") if found else "?"
        checks.append(Check(label, "ok", f"{uri} ({digest[:19]})") if found else Check(
            label, "fail", f"{uri}: not pushed yet", fix))
    return checks


def _subscriptions(ctx: _Context) -> list[Check]:
    """Email subscriptions of the stack's SNS topics; the notify topic carries the job emails when
    there is no SES sender, so an unconfirmed one there means no email at all."""
    if not ctx.stack_resources:
        return [Check("SNS subscriptions", "skip", "no deployed stack")]
    sns = ctx.client("sns")
    notify_topic = ctx.environment.get(ENV["topic_arn"], "")
    checks = []
    for res in ctx.stack_resources:
        if res["ResourceType"] != "AWS::SNS::Topic":
            continue
        arn = res["PhysicalResourceId"]
        subs = [s for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=arn)
                for s in page["Subscriptions"] if s["Protocol"] in ("email", "email-json")]
        if not subs:
            continue
        carries_jobs = arn == notify_topic and not ctx.environment.get(ENV["sender"])
        for sub in subs:
            label = f"SNS subscription {sub['Endpoint']} ({res['LogicalResourceId']})"
            if sub["SubscriptionArn"] == "PendingConfirmation":
                checks.append(Check(label, "fail" if carries_jobs else "warn", "not confirmed" + (
                    ": job emails go nowhere" if carries_jobs else ": its alarms go nowhere"),
                    f"Click the link in the 'AWS Notification - Subscription Confirmation' email sent to "
                    f"{sub['Endpoint']}"))
            else:
                checks.append(Check(label, "ok", "confirmed"))
    return checks or [Check("SNS subscriptions", "ok", "no email subscriptions to confirm")]


def _guarded(name: str, check: Callable[[_Context], Check | list[Check]], ctx: _Context) -> list[Check]:
    """Run one check; an AWS error it did not expect (access denied to a read, a throttle) makes it
    a warning that names the error instead of ending the report."""
    try:
        got = check(ctx)
    except (ClientError, BotoCoreError) as exc:
        return [Check(name, "warn", f"could not check ({_code(exc)}: {exc})",
                      "Run the doctor with credentials that may read this (or check it by hand)")]
    return got if isinstance(got, list) else [got]


def run(client: Callable[[str], Any], *, stack_name: str, region: str, recipient: str | None = None) -> list[Check]:
    """Every check, in the order a new user meets them."""
    ctx = _Context(client=client, stack_name=stack_name, region=region, recipient=recipient)
    checks = [_credentials(ctx)]
    if checks[0].status == "fail":
        return checks
    checks += _guarded("CDK bootstrap", _bootstrap, ctx)
    checks += _guarded("Stack deployed", _stack, ctx)
    checks += _guarded("SES sender", _ses, ctx) if ctx.environment else [
        Check("SES sender", "skip", "no deployed stack")]
    checks += _guarded("SageMaker quotas", _sagemaker_quotas, ctx)
    checks += _guarded("CodeBuild quota", _codebuild_quota, ctx)
    checks += _guarded("Stage images", _images, ctx)
    checks += _guarded("SNS subscriptions", _subscriptions, ctx)
    return checks


def first_job_would_fail(checks: Iterable[Check]) -> bool:
    return any(c.status == "fail" for c in checks)


def report(checks: Iterable[Check]) -> str:
    checks = list(checks)
    failed = [c for c in checks if c.status == "fail"]
    summary = (f"{len(failed)} problem(s): a first job would fail until they are fixed." if failed
               else "Ready: a first job has everything it needs.")
    return "\n".join([*(c.line() for c in checks), summary])


def as_json(checks: Iterable[Check]) -> list[Mapping[str, str]]:
    return [{"name": c.name, "status": c.status, "detail": c.detail, "fix": c.fix} for c in checks]
