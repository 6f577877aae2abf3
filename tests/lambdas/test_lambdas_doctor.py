"""`spaceport aws doctor` against a moto account that has everything a first job needs, then against
accounts that each miss one prerequisite.

moto serves CloudFormation, SSM, Lambda, SES (identities), ECR and SNS. It cannot serve these, so
only they are faked: Service Quotas for SageMaker and CodeBuild (moto knows only VPC quotas), SES's
account status (``sesv2 get_account``: sandbox or production), and an unconfirmed email
subscription (moto confirms every subscription at once).
"""

import json
import types

import boto3
import pytest
from lambdas_support import ACCOUNT, REGION

from spaceport.cli import main
from spaceport.cloud import doctor

SENDER = "splats@example.com"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
INSTANCES = {"sfm": "ml.c5.4xlarge", "train": "ml.g5.2xlarge", "compress": "ml.c5.2xlarge", "publish": "ml.m5.large"}
IMAGES = {"sfm": "sfm", "train": "train", "compress": "compress", "publish": "compress"}
#: Service Quotas' names and codes (the codes are Service Quotas' format; values as a ready account has them).
QUOTAS = {
    "sagemaker": {"ml.c5.4xlarge for processing job usage": ("L-4E3BF4B5", 4.0),
                  "ml.g5.2xlarge for training job usage": ("L-3F53BBB2", 1.0),
                  "ml.g5.2xlarge for spot training job usage": ("L-D8B1F2A3", 0.0),
                  "ml.c5.2xlarge for processing job usage": ("L-7B4D1C9E", 4.0),
                  "ml.m5.large for processing job usage": ("L-0B7F4E2A", 4.0)},
    "codebuild": {doctor.CODEBUILD_QUOTA: ("L-4DDC4A99", 1.0)},
}


class FakeQuotas:
    """Service Quotas as a paginated client: ``values[service][name] = (code, value)``, applied to the
    account (``list_service_quotas``) unless its name is in ``defaults_only``."""

    def __init__(self, values):
        self.values, self.defaults_only = values, set()

    def get_paginator(self, op):
        def paginate(ServiceCode):
            quotas = [{"QuotaName": n, "QuotaCode": c, "Value": v} for n, (c, v) in self.values[ServiceCode].items()
                      if (n in self.defaults_only) == (op == "list_aws_default_service_quotas")]
            return [{"Quotas": quotas}]
        return types.SimpleNamespace(paginate=paginate)


class FakeSesV2:
    def __init__(self, production):
        self.production = production

    def get_account(self):
        return {"ProductionAccessEnabled": self.production, "SendingEnabled": True}


class PendingSns:
    """moto's SNS, except that the listed endpoints have not confirmed their subscription."""

    def __init__(self, pending):
        self.real, self.pending = boto3.client("sns", region_name=REGION), pending

    def get_paginator(self, op):
        real = self.real.get_paginator(op)

        def paginate(**kw):
            for page in real.paginate(**kw):
                yield {**page, "Subscriptions": [
                    {**s, "SubscriptionArn": "PendingConfirmation" if s["Endpoint"] in self.pending else s["SubscriptionArn"]}
                    for s in page["Subscriptions"]]}
        return types.SimpleNamespace(paginate=paginate)


def _put_image(ecr, repo, tag="latest") -> str:
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7023,
                           "digest": "sha256:" + "a" * 64}, "layers": []}
    return ecr.put_image(repositoryName=repo, imageManifest=json.dumps(manifest), imageTag=tag)["image"]["imageId"][
        "imageDigest"]


def build_account(*, sender=SENDER, topic_email=None, use_spot=False, by_digest=False):
    """A deployed, ready account (inside mock_aws): bootstrap, stack, sender, images, subscriptions."""
    cfn, ssm = boto3.client("cloudformation", region_name=REGION), boto3.client("ssm", region_name=REGION)
    cfn.create_stack(StackName="CDKToolkit", TemplateBody=json.dumps(
        {"Resources": {"StagingBucket": {"Type": "AWS::S3::Bucket"}}}))
    ssm.put_parameter(Name=doctor.BOOTSTRAP_VERSION_PARAMETER, Value="27", Type="String")
    ecr = boto3.client("ecr", region_name=REGION)
    refs = {}
    for name in ("sfm", "train", "compress"):
        ecr.create_repository(repositoryName=f"spaceport-{name}")
        digest = _put_image(ecr, f"spaceport-{name}")
        refs[name] = f"{REGISTRY}/spaceport-{name}" + (f"@{digest}" if by_digest else ":latest")
    boto3.client("ses", region_name=REGION).verify_email_identity(EmailAddress=SENDER)
    resources = {"AlarmTopic": {"Type": "AWS::SNS::Topic", "Properties": {
        "Subscription": [{"Protocol": "email", "Endpoint": "ops@example.com"}]}}}
    if topic_email:
        resources["NotifyTopic"] = {"Type": "AWS::SNS::Topic", "Properties": {
            "Subscription": [{"Protocol": "email", "Endpoint": topic_email}]}}
    cfn.create_stack(StackName="Spaceport", TemplateBody=json.dumps({"Resources": resources}))
    topics = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in
              cfn.list_stack_resources(StackName="Spaceport")["StackResourceSummaries"]}
    plan = {stage: {"image": refs[IMAGES[stage]], "instance_type": INSTANCES[stage],
                    "volume_gb": 30, "max_runtime_s": 3600} for stage in INSTANCES}
    plan.update(role_arn=f"arn:aws:iam::{ACCOUNT}:role/sm", use_spot=use_spot)
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName="start-job", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    boto3.client("lambda", region_name=REGION).create_function(
        FunctionName="Spaceport-StartJob", Runtime="python3.11", Role=role, Handler="handler.handler",
        Code={"ZipFile": b"PK\x05\x06" + b"\0" * 18},
        Environment={"Variables": {"SPACEPORT_PLAN_SETTINGS": json.dumps(plan), "SPACEPORT_SENDER": sender or "",
                                   "SPACEPORT_TOPIC_ARN": topics.get("NotifyTopic", "")}})
    # The real stack's outputs (cloud/stacks/spaceport_stack.py) as CloudFormation reports them.
    cfn.update_stack(StackName="Spaceport", TemplateBody=json.dumps({"Resources": resources, "Outputs": {
        "StartJobFunctionName": {"Value": "Spaceport-StartJob"}, "BuildProjectName": {"Value": "SpaceportBuild"},
        "BucketName": {"Value": "spaceport-data"}}}))


@pytest.fixture
def account(env):
    from moto import mock_aws

    with mock_aws():
        fakes = {"service-quotas": FakeQuotas(json.loads(json.dumps(QUOTAS))), "sesv2": FakeSesV2(production=True)}
        ns = types.SimpleNamespace(fakes=fakes, build=build_account)

        def client(name):
            return fakes[name] if name in fakes else boto3.client(name, region_name=REGION)

        ns.client = client
        ns.run = lambda **kw: doctor.run(client, stack_name="Spaceport", region=REGION, **kw)
        yield ns


def _by_name(checks):
    return {c.name: c for c in checks}


def test_a_ready_account_passes_every_check(account):
    account.build()
    checks = account.run()
    assert not doctor.first_job_would_fail(checks), doctor.report(checks)
    assert {c.status for c in checks} == {"ok"}, doctor.report(checks)
    names = [c.name for c in checks]
    assert names[:3] == ["AWS credentials", "CDK bootstrap", "Stack deployed"]
    # One quota per instance type of the deployed plan (read from the stack, not from cdk.json).
    assert [n for n in names if n.startswith("SageMaker quota")] == [
        "SageMaker quota 'ml.c5.4xlarge for processing job usage' (sfm)",
        "SageMaker quota 'ml.g5.2xlarge for training job usage' (train)",
        "SageMaker quota 'ml.c5.2xlarge for processing job usage' (compress)",
        "SageMaker quota 'ml.m5.large for processing job usage' (publish)"]
    assert [n for n in names if n.startswith("Image for")] == ["Image for sfm", "Image for train",
                                                                "Image for compress, publish"]
    assert "SNS subscription ops@example.com (AlarmTopic)" in names


def _missing_bootstrap(a):
    boto3.client("cloudformation", region_name=REGION).delete_stack(StackName="CDKToolkit")


def _sender_unverified(a):
    boto3.client("ses", region_name=REGION).delete_identity(Identity=SENDER)


def _training_quota_zero(a):
    a.fakes["service-quotas"].values["sagemaker"]["ml.g5.2xlarge for training job usage"] = ("L-3F53BBB2", 0.0)


def _processing_quota_zero(a):
    a.fakes["service-quotas"].values["sagemaker"]["ml.m5.large for processing job usage"] = ("L-0B7F4E2A", 0.0)


def _codebuild_quota_zero(a):
    a.fakes["service-quotas"].values["codebuild"][doctor.CODEBUILD_QUOTA] = ("L-4DDC4A99", 0.0)


def _train_image_missing(a):
    boto3.client("ecr", region_name=REGION).batch_delete_image(repositoryName="spaceport-train",
                                                               imageIds=[{"imageTag": "latest"}])


#: (what is missing, how to take it away, the check that fails, words of its fix)
MISSING = [
    ("bootstrap", _missing_bootstrap, "CDK bootstrap", f"npx cdk bootstrap aws://{ACCOUNT}/{REGION}"),
    ("sender", _sender_unverified, "SES sender", f"aws sesv2 create-email-identity --email-identity {SENDER}"),
    ("training quota", _training_quota_zero, "SageMaker quota 'ml.g5.2xlarge for training job usage' (train)",
     "aws service-quotas request-service-quota-increase --service-code sagemaker --quota-code L-3F53BBB2 "
     "--desired-value 1"),
    ("processing quota", _processing_quota_zero, "SageMaker quota 'ml.m5.large for processing job usage' (publish)",
     "--quota-code L-0B7F4E2A"),
    ("codebuild quota", _codebuild_quota_zero, f"CodeBuild quota '{doctor.CODEBUILD_QUOTA}'",
     "--service-code codebuild --quota-code L-4DDC4A99"),
    ("train image", _train_image_missing, "Image for train",
     "aws codebuild start-build --project-name SpaceportBuild"),
]


@pytest.mark.parametrize(("missing", "take_away", "check", "fix"), MISSING, ids=[m[0] for m in MISSING])
def test_each_missing_prerequisite_fails_its_check_with_the_fix(account, missing, take_away, check, fix):
    account.build()
    take_away(account)
    checks = account.run()
    failed = [c for c in checks if c.status == "fail"]
    assert [c.name for c in failed] == [check], doctor.report(checks)
    assert fix in failed[0].fix
    assert doctor.first_job_would_fail(checks)


def test_images_the_stack_runs_by_digest_are_found_by_that_digest(account):
    """A stack that runs each stage by digest (the deploy-time image build): the check looks up that
    digest, so a moved tag cannot pass for the image a job will run."""
    account.build(by_digest=True)
    checks = _by_name(account.run())
    assert checks["Image for train"].status == "ok" and "@sha256:" in checks["Image for train"].detail
    ecr = boto3.client("ecr", region_name=REGION)
    digest = checks["Image for train"].detail.split("@", 1)[1].split()[0]
    ecr.batch_delete_image(repositoryName="spaceport-train", imageIds=[{"imageDigest": digest}])
    missing = _by_name(account.run())["Image for train"]
    assert missing.status == "fail" and missing.fix.startswith("npx cdk deploy builds the images")


def test_a_codebuild_quota_with_no_applied_value_is_a_warning_with_the_fix(account):
    account.build()
    account.fakes["service-quotas"].values["codebuild"][doctor.CODEBUILD_QUOTA] = ("L-4DDC4A99", 15.0)
    account.fakes["service-quotas"].defaults_only.add(doctor.CODEBUILD_QUOTA)
    check = _by_name(account.run())[f"CodeBuild quota '{doctor.CODEBUILD_QUOTA}'"]
    assert check.status == "warn" and "no value applied" in check.detail
    assert "--service-code codebuild --quota-code L-4DDC4A99" in check.fix


def test_no_credentials_is_one_failing_line(account):
    from botocore.exceptions import NoCredentialsError

    def no_credentials():
        raise NoCredentialsError()

    account.fakes["sts"] = types.SimpleNamespace(get_caller_identity=no_credentials)
    (check,) = account.run()
    assert check.status == "fail" and check.name == "AWS credentials" and "aws configure" in check.fix


def test_a_read_the_caller_may_not_make_is_a_warning_not_a_crash(account):
    from botocore.exceptions import ClientError

    account.build()

    def denied(**_kw):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "DescribeImages")

    account.fakes["ecr"] = types.SimpleNamespace(describe_images=denied)
    checks = account.run()
    (images,) = [c for c in checks if c.name == "Stage images"]
    assert images.status == "warn" and "AccessDeniedException" in images.detail
    assert not doctor.first_job_would_fail(checks)


def test_no_stack_fails_and_skips_what_it_would_have_read(account):
    account.build()
    boto3.client("cloudformation", region_name=REGION).delete_stack(StackName="Spaceport")
    checks = _by_name(account.run())
    assert checks["Stack deployed"].status == "fail" and "npx cdk deploy" in checks["Stack deployed"].fix
    assert checks["SageMaker quotas"].status == "skip" and checks["Stage images"].status == "skip"


def test_spot_training_checks_the_spot_quota(account):
    account.build(use_spot=True)
    checks = _by_name(account.run())
    spot = checks["SageMaker quota 'ml.g5.2xlarge for spot training job usage' (train)"]
    assert spot.status == "fail" and "--quota-code L-D8B1F2A3" in spot.fix


def test_the_sandbox_fails_only_for_a_recipient_that_is_not_verified(account):
    account.build()
    account.fakes["sesv2"].production = False
    checks = _by_name(account.run())
    assert checks["SES sandbox"].status == "warn" and "--recipient" in checks["SES sandbox"].detail
    checks = _by_name(account.run(recipient="ana@example.com"))
    assert checks["SES sandbox"].status == "fail" and "Request production access" in checks["SES sandbox"].fix
    boto3.client("ses", region_name=REGION).verify_email_identity(EmailAddress="ana@example.com")
    assert _by_name(account.run(recipient="ana@example.com"))["SES sandbox"].status == "ok"


def test_an_unconfirmed_subscription_fails_only_where_it_carries_the_job_emails(account):
    account.build(sender="", topic_email="ops-jobs@example.com")
    account.fakes["sns"] = PendingSns({"ops-jobs@example.com", "ops@example.com"})
    checks = _by_name(account.run())
    jobs = checks["SNS subscription ops-jobs@example.com (NotifyTopic)"]
    alarms = checks["SNS subscription ops@example.com (AlarmTopic)"]
    assert jobs.status == "fail" and "job emails go nowhere" in jobs.detail and "Confirmation" in jobs.fix
    assert alarms.status == "warn"
    assert checks["SES sender"].status == "skip"


def test_the_command_prints_one_line_per_check_and_exits_1_when_a_job_would_fail(account, monkeypatch, capsys):
    from spaceport.cloud import command

    account.build()
    session = types.SimpleNamespace(client=account.client, region_name=REGION)
    monkeypatch.setattr(command, "_session", lambda region: session)
    assert main(["aws", "doctor"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "Ready: a first job has everything it needs."
    assert all(line.startswith("ok  ") for line in out[:-1]) and len(out) == len(account.run()) + 1
    _train_image_missing(account)
    assert main(["aws", "doctor"]) == 1
    out = capsys.readouterr().out.splitlines()
    (bad,) = [line for line in out if line.startswith("FAIL")]
    assert bad.startswith("FAIL  Image for train: ") and "-> fix: aws codebuild start-build" in bad
    assert out[-1] == "1 problem(s): a first job would fail until they are fixed."
    assert main(["aws", "doctor", "--json"]) == 1
    assert {c["status"] for c in json.loads(capsys.readouterr().out)} == {"ok", "fail"}
