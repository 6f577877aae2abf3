"""The SageMaker execution role and the state machine loaded from cloud/statemachine/pipeline.asl.json."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from cloud.stacks.storage import DELETE, READ, WRITE, grant_list, grant_objects

ASL_PATH = Path(__file__).resolve().parents[2] / "cloud" / "statemachine" / "pipeline.asl.json"
#: Every SageMaker job name starts with the job id, and every job id with "sp-" (spaceport.core.plan).
JOB_NAME_PATTERN = "sp-*"
#: The EventBridge rules Step Functions manages for the SageMaker .sync integrations.
SYNC_RULES = ("StepFunctionsGetEventsForSageMakerTrainingJobsRule",
              "StepFunctionsGetEventsForSageMakerProcessingJobsRule")


class SageMakerRole(Construct):
    """The role SageMaker jobs run as: its own prefixes of the data bucket and the stage images only."""

    def __init__(self, scope: Construct, construct_id: str, *, bucket: s3.IBucket,
                 repositories: list[ecr.IRepository]) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
                             description="Spaceport SageMaker jobs: read uploads/jobs, write jobs/scratch")
        # Reads: the staged upload and earlier stages (jobs/), resumable checkpoints (scratch/).
        # Not uploads/: start_job stages each upload under its job's prefix. SageMaker lists the
        # S3Prefix inputs and the checkpoint folder, and deletes checkpoints a job no longer has.
        grant_objects(bucket, self.role, (*READ, *WRITE), "jobs/*", "scratch/*")
        grant_objects(bucket, self.role, DELETE, "scratch/*")
        grant_list(bucket, self.role, "jobs/*", "scratch/*")
        for repo in repositories:
            repo.grant_pull(self.role)
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:/aws/sagemaker/*"]))
        self.role.add_to_policy(iam.PolicyStatement(
            actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}))


class Pipeline(Construct):
    """The Step Functions state machine: the ASL file, its substitutions, and narrow grants."""

    def __init__(self, scope: Construct, construct_id: str, *, sagemaker_role: iam.IRole,
                 record: lambda_.IFunction, quality_gate: lambda_.IFunction, notify: lambda_.IFunction,
                 log_retention: logs.RetentionDays) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        self.state_machine = sfn.StateMachine(
            self, "StateMachine",
            # Inline (not an S3 asset) so the template alone holds the workflow; CloudFormation fills
            # the ${...} substitutions with the ARNs of resources in this same stack.
            definition_body=sfn.DefinitionBody.from_string(ASL_PATH.read_text()),
            definition_substitutions={
                "SageMakerRoleArn": sagemaker_role.role_arn,
                "RecordFunctionArn": record.function_arn,
                "QualityGateFunctionArn": quality_gate.function_arn,
                "NotifyFunctionArn": notify.function_arn,
            },
            tracing_enabled=True,
            # Execution data holds the user's email: log every event but not the payloads.
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
        )
        # A raw ASL file gets no automatic grants: grant exactly what its states call.
        for fn in (record, quality_gate, notify):
            fn.grant_invoke(self.state_machine)
        account = f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}"
        self.state_machine.add_to_role_policy(iam.PolicyStatement(
            actions=["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob",
                     "sagemaker:StopProcessingJob", "sagemaker:CreateTrainingJob",
                     "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob", "sagemaker:AddTags",
                     # The .sync integrations read the job's tags while they wait on it.
                     "sagemaker:ListTags"],
            resources=[f"{account}:processing-job/{JOB_NAME_PATTERN}", f"{account}:training-job/{JOB_NAME_PATTERN}"]))
        self.state_machine.add_to_role_policy(iam.PolicyStatement(
            actions=["iam:PassRole"], resources=[sagemaker_role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}))
        self.state_machine.add_to_role_policy(iam.PolicyStatement(
            actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            resources=[f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{Aws.ACCOUNT_ID}:rule/{r}" for r in SYNC_RULES]))
