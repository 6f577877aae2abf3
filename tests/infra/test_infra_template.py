"""Fine-grained assertions on the synthesized template (no hashed logical ids written by hand)."""

import json

import pytest
from aws_cdk.assertions import Match, Template

from cloud.stacks.settings import DeploySettings
from spaceport.cloud.settings import ENV


@pytest.fixture(scope="module")
def t(synth):
    return Template.from_json(synth.template)


def test_resource_inventory(t):
    # The pipeline, and the image build's waiter (CDK's custom resource provider framework).
    t.resource_count_is("AWS::StepFunctions::StateMachine", 2)
    t.resource_count_is("AWS::ECR::Repository", 3)
    t.resource_count_is("AWS::DynamoDB::GlobalTable", 1)
    t.resource_count_is("AWS::S3::Bucket", 2)
    t.resource_count_is("AWS::CodeBuild::Project", 1)
    t.resource_count_is("AWS::CloudWatch::Dashboard", 1)
    # start_job, record, quality_gate, notify, link_secret (+ CDK's bucket-notification helper), and
    # the image build's on_event and is_complete with the provider framework's three.
    t.resource_count_is("AWS::Lambda::Function", 11)
    t.resource_count_is("AWS::CloudFront::Distribution", 1)


def test_buckets_private_encrypted_ssl_only_logged(t, synth):
    for bucket in synth.resources("AWS::S3::Bucket").values():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
            "ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    policies = synth.resources("AWS::S3::BucketPolicy").values()
    assert len(policies) == 2
    for pol in policies:
        deny = [s for s in pol["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
        assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in deny)
    data = synth.template["Resources"][synth.logical_id(synth.stack.storage.data)]["Properties"]
    assert data["LoggingConfiguration"]["DestinationBucketName"] == {
        "Ref": synth.logical_id(synth.stack.storage.access_logs)}
    assert data["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = {r["Id"]: r for r in data["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-scratch"]["Prefix"] == "scratch/" and rules["expire-scratch"]["ExpirationInDays"] == 7
    assert rules["expire-uploads"]["Prefix"] == "uploads/"


def test_jobs_table(t):
    t.has_resource_properties("AWS::DynamoDB::GlobalTable", {
        "KeySchema": [{"AttributeName": "job_id", "KeyType": "HASH"}],
        "BillingMode": "PAY_PER_REQUEST",
        "Replicas": [Match.object_like({"PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}})],
    })


def test_ecr_repositories_scan_on_push(t):
    for name in ("sfm", "train", "compress"):
        t.has_resource_properties("AWS::ECR::Repository", {
            "RepositoryName": f"spaceport-{name}", "ImageScanningConfiguration": {"ScanOnPush": True}})


def test_removal_policy_keeps_data_and_deletes_what_a_redeploy_recreates(synth):
    """Buckets and the jobs table are retained (retain_data); image repositories (rebuilt from the
    source, emptied first) and KMS keys (no user data) go with the stack, so a redeploy after a
    delete does not collide with leftovers."""
    res = synth.template["Resources"]
    for construct in (synth.stack.storage.data, synth.stack.storage.access_logs, synth.stack.storage.jobs):
        assert res[synth.logical_id(construct)]["DeletionPolicy"] == "Retain"
    repos = synth.resources("AWS::ECR::Repository")
    assert len(repos) == 3
    for repo in repos.values():
        assert repo["DeletionPolicy"] == "Delete" and repo["Properties"]["EmptyOnDelete"] is True
    keys = synth.resources("AWS::KMS::Key")
    assert keys and all(k["DeletionPolicy"] == "Delete" and k["Properties"]["PendingWindowInDays"] == 7
                        for k in keys.values())


def test_a_second_stack_gets_its_own_repository_names(tmp_path_factory):
    from infra_support import context, synth_app

    ctx = context()
    ctx["spaceport"] = {**ctx["spaceport"], "stack_name": "SpaceportDev"}
    other = synth_app(tmp_path_factory.mktemp("dev"), ctx)
    names = sorted(r["Properties"]["RepositoryName"] for r in other.resources("AWS::ECR::Repository").values())
    assert names == ["spaceportdev-compress", "spaceportdev-sfm", "spaceportdev-train"]


@pytest.mark.slow
def test_python_app_py_synthesizes_without_the_cdk_cli(synth, tmp_path):
    """Plain `python app.py` reads cdk.json's context itself (feature flags included) and gives the
    same template the CLI-shaped synth gives; context the CLI would pass (-c) still wins."""
    import os
    import subprocess
    import sys

    from infra_support import ROOT, SENDER

    env = {k: v for k, v in os.environ.items() if not k.startswith("CDK_")}
    env.update(CDK_OUTDIR=str(tmp_path), CDK_CONTEXT_JSON=json.dumps({"spaceport.sender_email": SENDER}),
               JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20")
    out = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    template = json.loads((tmp_path / f"{synth.stack.stack_name}.template.json").read_text())
    assert json.dumps(template, sort_keys=True) == json.dumps(synth.template, sort_keys=True)


def test_upload_trigger_is_one_rule_on_the_uploads_prefix_any_case(synth):
    """No suffix filters (they are case-sensitive: IMG_0420.MOV would never start): every object
    created under uploads/ reaches start_job through EventBridge, which decides."""
    (notif,) = synth.resources("Custom::S3BucketNotifications").values()  # CDK's way to turn EventBridge on
    assert notif["Properties"]["NotificationConfiguration"] == {"EventBridgeConfiguration": {}}
    (rule,) = synth.resources("AWS::Events::Rule").values()
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["object"] == {"key": [{"prefix": "uploads/"}]}
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": synth.logical_id(synth.stack.storage.data)}]
    (target,) = rule["Properties"]["Targets"]
    start_job = synth.logical_id(synth.stack.functions.start_job)
    assert target["Arn"] == {"Fn::GetAtt": [start_job, "Arn"]}
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": [synth.logical_id(synth.stack.functions.start_job_dlq),
                                                                "Arn"]}


def test_folder_timers_queue_feeds_start_job_with_its_delay(synth):
    queue = synth.logical_id(synth.stack.functions.quiet_timers)
    (mapping,) = synth.resources("AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue, "Arn"]}
    assert mapping["Properties"]["FunctionName"] == {"Ref": synth.logical_id(synth.stack.functions.start_job)}
    props = synth.template["Resources"][queue]["Properties"]
    assert props["VisibilityTimeout"] >= 6 * 300 and props["RedrivePolicy"]["maxReceiveCount"] == 5
    env = synth.template["Resources"][synth.logical_id(synth.stack.functions.start_job)]["Properties"][
        "Environment"]["Variables"]
    assert env[ENV["quiet_s"]] == "180" and env[ENV["quiet_queue_url"]] == {"Ref": queue}


def test_lambda_environment_carries_plan_settings(synth):
    fn = synth.template["Resources"][synth.logical_id(synth.stack.functions.start_job)]["Properties"]
    env = fn["Environment"]["Variables"]
    assert set(env) >= {ENV["bucket"], ENV["table"], ENV["plan_settings"], ENV["state_machine_arn"],
                        ENV["link_expiry_s"], ENV["max_upload_bytes"]}
    assert env[ENV["link_expiry_s"]] == str(168 * 3600)
    assert fn["Runtime"] == "python3.11" and fn["Handler"] == "handler.handler"
    assert fn["TracingConfig"] == {"Mode": "Active"}
    # Plan settings are a JSON document with tokens for the image URIs and the role.
    text = json.dumps(env[ENV["plan_settings"]])
    assert "ml.g5.2xlarge" in text and "min_psnr" in text and "role_arn" in text


def test_sagemaker_role_is_scoped_to_its_prefixes(synth):
    role_id = synth.logical_id(synth.stack.sagemaker.role)
    role = synth.template["Resources"][role_id]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert "ManagedPolicyArns" not in role
    (policy,) = [p for p in synth.resources("AWS::IAM::Policy").values()
                 if p["Properties"]["Roles"] == [{"Ref": role_id}]]
    data = synth.logical_id(synth.stack.storage.data)
    s3_objects = set()
    for st in policy["Properties"]["PolicyDocument"]["Statement"]:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        if any(a.startswith("s3:") for a in actions):
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            for r in resources:
                if isinstance(r, dict) and "Fn::Join" in r:
                    s3_objects.add(r["Fn::Join"][1][1])
                else:
                    assert r == {"Fn::GetAtt": [data, "Arn"]}  # bucket-level (ListBucket) only
    assert s3_objects == {"/jobs/*", "/scratch/*"}  # not uploads/: start_job stages each upload


def test_state_machine_grants_are_narrow(synth):
    sm = synth.stack.pipeline.state_machine
    role_id = synth.logical_id(sm.role)
    (policy,) = [p for p in synth.resources("AWS::IAM::Policy").values()
                 if p["Properties"]["Roles"] == [{"Ref": role_id}]]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    by_action: dict[str, list] = {}
    for st in statements:
        for a in st["Action"] if isinstance(st["Action"], list) else [st["Action"]]:
            by_action.setdefault(a, []).append(st)
    assert {a for a in by_action if a.startswith("sagemaker:")} == {
        "sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob",
        "sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
        "sagemaker:AddTags", "sagemaker:ListTags"}
    (passrole,) = by_action["iam:PassRole"]
    assert passrole["Resource"] == {"Fn::GetAtt": [synth.logical_id(synth.stack.sagemaker.role), "Arn"]}
    assert passrole["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    (events,) = {json.dumps(s, sort_keys=True): s for s in by_action["events:PutRule"]}.values()
    assert len(events["Resource"]) == 2 and all(
        "StepFunctionsGetEventsForSageMaker" in json.dumps(r) for r in events["Resource"])
    invoked = set()
    for st in by_action["lambda:InvokeFunction"]:
        for r in st["Resource"]:
            ref = r.get("Fn::GetAtt") or r["Fn::Join"][1][0]["Fn::GetAtt"]
            invoked.add(ref[0])
    f = synth.stack.functions
    assert invoked == {synth.logical_id(x) for x in (f.record, f.quality_gate, f.notify)}
    assert "*" not in json.dumps([s["Resource"] for s in statements if "lambda:InvokeFunction" in json.dumps(s)]
                                 ).replace(":*", "")


def test_state_machine_logs_and_traces(t):
    t.has_resource_properties("AWS::StepFunctions::StateMachine", {
        "TracingConfiguration": {"Enabled": True},
        "LoggingConfiguration": Match.object_like({"Level": "ALL", "IncludeExecutionData": False}),
    })


def test_alarms_cover_failed_executions_and_every_lambda(synth):
    alarms = synth.resources("AWS::CloudWatch::Alarm").values()
    metrics = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms}
    assert ("AWS/States", "ExecutionsFailed") in metrics and ("AWS/Lambda", "Errors") in metrics
    lambda_alarms = [a for a in alarms if a["Properties"]["MetricName"] == "Errors"]
    assert len(lambda_alarms) == 4
    assert all(a["Properties"]["AlarmActions"] for a in alarms)
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in metrics


def test_start_job_failed_events_land_in_an_encrypted_queue(synth):
    fn = synth.template["Resources"][synth.logical_id(synth.stack.functions.start_job)]["Properties"]
    queue_id = synth.logical_id(synth.stack.functions.start_job_dlq)
    assert fn["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    assert synth.template["Resources"][queue_id]["Properties"]["SqsManagedSseEnabled"] is True
    assert fn["Timeout"] == 300


def test_codebuild_builds_from_buildspec_with_docker(t):
    t.has_resource_properties("AWS::CodeBuild::Project", {
        "Environment": Match.object_like({"PrivilegedMode": True, "EnvironmentVariables": Match.array_with([
            Match.object_like({"Name": "TRAIN_REPOSITORY_URI"})])}),
        "Source": Match.object_like({"BuildSpec": "buildspec.yml"}),
    })


def test_ses_sender_may_send_to_any_recipient_identity_but_only_from_itself(synth):
    assert synth.resources("AWS::SES::EmailIdentity") == {}  # verified outside: a second stack can reuse it
    assert len(synth.resources("AWS::SNS::Topic")) == 1  # alarms only
    for fn in (synth.stack.functions.notify, synth.stack.functions.start_job):
        (policy,) = [p for p in synth.resources("AWS::IAM::Policy").values()
                     if {"Ref": synth.logical_id(fn.role)} in p["Properties"]["Roles"]]
        (st,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
                 if "ses:SendEmail" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]
        assert st["Condition"] == {"StringEquals": {"ses:FromAddress": "splats@example.com"}}
        assert st["Resource"]["Fn::Join"][1][-1] == ":identity/*"
    env = synth.template["Resources"][synth.logical_id(synth.stack.functions.notify)]["Properties"][
        "Environment"]["Variables"]
    assert env[ENV["sender"]] == "splats@example.com"


def test_topic_mode_and_no_address_at_all(tmp_path_factory):
    from infra_support import context, synth_app

    ctx = context()
    ctx["spaceport"] = {**ctx["spaceport"], "sender_email": "", "notify_topic_email": "ops@example.com"}
    other = synth_app(tmp_path_factory.mktemp("topic"), ctx)
    assert len(other.resources("AWS::SNS::Topic")) == 2  # notifications + alarms
    (sub,) = other.resources("AWS::SNS::Subscription").values()
    assert sub["Properties"]["Endpoint"] == "ops@example.com"
    with pytest.raises(ValueError, match=r"^No email would reach anyone: set context spaceport\.sender_email"):
        DeploySettings.from_context({**ctx["spaceport"], "notify_topic_email": ""})


def test_flat_context_overrides_are_typed():
    base = {"sender_email": "a@example.com"}
    got = DeploySettings.from_context(base, {"spaceport.use_spot": "true", "spaceport.folder_quiet_s": "300",
                                             "spaceport.sender_email": "b@example.com"})
    assert got.use_spot is True and got.folder_quiet_s == 300 and got.sender_email == "b@example.com"


def test_synth_is_deterministic(synth, tmp_path_factory):
    from infra_support import synth_app

    again = synth_app(tmp_path_factory.mktemp("again"))
    assert json.dumps(again.template, sort_keys=True) == json.dumps(synth.template, sort_keys=True)


def test_settings_reject_unknown_context_keys():
    with pytest.raises(ValueError, match=r"unknown cdk\.json context"):
        DeploySettings.from_context({"instance_type": {}})
    with pytest.raises(ValueError, match="unknown stage"):
        DeploySettings.from_context({"instance_types": {"render": "ml.m5.large"}})


def test_cdk_json_documents_every_setting():
    import dataclasses

    from infra_support import context

    keys = set(context()["spaceport"])
    fields = {f.name for f in dataclasses.fields(DeploySettings)} - {"account", "region"}
    assert keys == fields


def test_deploy_outputs_point_at_the_preflight(synth):
    """`cdk deploy` prints the outputs: the last one says what to run next, and that command's
    options exist (the CLI test in tests/lambdas runs it against a moto account)."""
    preflight = synth.template["Outputs"]["Preflight"]["Value"]
    parts = preflight["Fn::Join"][1]
    assert parts[0] == "spaceport aws doctor --stack Spaceport --region " and parts[1] == {"Ref": "AWS::Region"}
    from click.testing import CliRunner

    from spaceport.cloud.command import aws_group

    help_text = CliRunner().invoke(aws_group, ["doctor", "--help"]).output
    assert "--stack" in help_text and "--region" in help_text
