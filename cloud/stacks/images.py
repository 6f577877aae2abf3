"""The stage images: ECR repositories, the CodeBuild project that builds them (buildspec.yml), and
the deploy-time build (a custom resource that builds the deployed source and waits for it), whose
digests are what every job runs."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CustomResource, Duration, IgnoreMode, RemovalPolicy, Stack
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr
from constructs import Construct

from cloud.stacks.lambda_code import lambda_code
from spaceport.core.graph import STAGE_IMAGE

ROOT = Path(__file__).resolve().parents[2]
#: Image of each SageMaker stage (publish runs in the compress image): the stage graph's.
IMAGES = tuple(dict.fromkeys(STAGE_IMAGE.values()))
#: Tag of the train image's compile-stage cache (buildspec.yml): an unchanged gsplat is not recompiled.
BUILD_CACHE_TAG = "buildcache"
#: What the image builds read (the build context, .dockerignore's allow list, and the buildspec):
#: the source asset holds these only, so its hash changes exactly when an image would.
SOURCE_EXCLUDE = ["*", "!buildspec.yml", "!.dockerignore", "!pyproject.toml", "!README.md", "!containers/**",
                  "!spaceport/**", "containers/check.py", "**/__pycache__", "**/*.pyc"]
#: Longest a deploy waits for the image build, and the build's own limit (the provider framework's
#: ceiling is 2 h). First build: bench/results/images.md; later ones reuse the gsplat compile cache.
BUILD_TIMEOUT = Duration.hours(2)
#: CodeBuild compute for the build (gsplat's CUDA compile; buildspec.yml sizes MAX_JOBS to it).
COMPUTE_TYPE = codebuild.ComputeType.LARGE


class Images(Construct):
    """One ECR repository per image; CodeBuild builds, smoke-tests and pushes them (buildspec.yml);
    the deploy builds the deployed source and the stack runs the resulting digests."""

    def __init__(self, scope: Construct, construct_id: str, *, github_owner: str, github_repo: str,
                 log_retention: logs.RetentionDays) -> None:
        super().__init__(scope, construct_id)
        self.repositories: dict[str, ecr.Repository] = {}
        prefix = Stack.of(self).stack_name.lower()  # ECR names are lower-case
        for name in IMAGES:
            self.repositories[name] = ecr.Repository(
                self, f"{name.capitalize()}Repository",
                # Named after the stack: a second stack (or a redeploy after a delete) gets its own.
                repository_name=f"{prefix}-{name}",
                image_scan_on_push=True,
                # Tags name sources (src-<hash>) and `latest`; jobs run digests, which never move.
                image_tag_mutability=ecr.TagMutability.MUTABLE,
                # Images are rebuilt from the source by the build project: deleted with the stack.
                removal_policy=RemovalPolicy.DESTROY,
                empty_on_delete=True,
                lifecycle_rules=[
                    # The compile cache (buildspec.yml) is one tag that must outlive the image count.
                    ecr.LifecycleRule(description="keep the build cache", tag_prefix_list=[BUILD_CACHE_TAG],
                                      max_image_count=1, rule_priority=1),
                    ecr.LifecycleRule(description="keep the last 20 images", max_image_count=20, rule_priority=2),
                ],
            )
        # The deployed source: a content-addressed asset in the CDK bootstrap bucket.
        self.source = s3_assets.Asset(self, "Source", path=str(ROOT), exclude=SOURCE_EXCLUDE,
                                      ignore_mode=IgnoreMode.DOCKER)
        if github_owner and github_repo:
            # Manual builds (`aws codebuild start-build`) of the repository's default branch; the
            # deploy always builds the deployed source (a source override).
            source = codebuild.Source.git_hub(owner=github_owner, repo=github_repo, webhook=False)
        else:
            source = codebuild.Source.s3(bucket=self.source.bucket, path=self.source.s3_object_key)
        # Encrypts build artifacts only (no user data): deleted with the stack, after KMS's 7-day wait.
        key = kms.Key(self, "BuildKey", enable_key_rotation=True, description="Spaceport image build artifacts",
                      removal_policy=RemovalPolicy.DESTROY, pending_window=Duration.days(7))
        self.project = codebuild.Project(
            self, "Build",
            description="Build, smoke-test and push the Spaceport stage images (buildspec.yml)",
            source=source,
            build_spec=codebuild.BuildSpec.from_source_filename("buildspec.yml"),
            encryption_key=key,
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                compute_type=COMPUTE_TYPE,
                privileged=True,  # docker build
            ),
            environment_variables={
                **{f"{n.upper()}_REPOSITORY_URI": codebuild.BuildEnvironmentVariable(
                    value=r.repository_uri) for n, r in self.repositories.items()},
                # A manual build's tag; the deploy's build overrides it with src-<source hash>.
                "IMAGE_TAG": codebuild.BuildEnvironmentVariable(value="manual"),
                "BUILD_CACHE_TAG": codebuild.BuildEnvironmentVariable(value=BUILD_CACHE_TAG),
            },
            timeout=BUILD_TIMEOUT,
            logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(
                log_group=logs.LogGroup(self, "BuildLogs", retention=log_retention,
                                        removal_policy=RemovalPolicy.DESTROY))),
        )
        self.source.grant_read(self.project)
        # CDK's asset grant reads with s3:List* on the whole bootstrap bucket (every CDK asset of the
        # account); listing is denied outside this source's own key. The build has no access to the
        # data bucket at all (uploads, results, the link secret).
        self.project.add_to_role_policy(iam.PolicyStatement(
            effect=iam.Effect.DENY, actions=["s3:ListBucket", "s3:ListBucketVersions"],
            resources=[self.source.bucket.bucket_arn],
            conditions={"StringNotLike": {"s3:prefix": [self.source.s3_object_key]}}))
        for repo in self.repositories.values():
            repo.grant_pull_push(self.project)
        # Authenticated ECR Public pulls of the base images (these two actions take no resource).
        self.project.add_to_role_policy(iam.PolicyStatement(
            actions=["ecr-public:GetAuthorizationToken", "sts:GetServiceBearerToken"], resources=["*"]))
        self._deploy_time_build(log_retention)

    def _deploy_time_build(self, log_retention: logs.RetentionDays) -> None:
        """The custom resource: build the deployed source (unless its images exist) and wait for it."""
        functions = {}
        for step in ("on_event", "is_complete"):
            functions[step] = lambda_.Function(
                self, "OnEvent" if step == "on_event" else "IsComplete",
                description=f"Spaceport: deploy-time image build ({step})",
                runtime=lambda_.Runtime.PYTHON_3_11,
                architecture=lambda_.Architecture.X86_64,
                handler=f"handler.{step}",
                code=lambda_code("image_build"),
                timeout=Duration.seconds(60),
                log_group=logs.LogGroup(self, f"{step.title().replace('_', '')}Logs", retention=log_retention,
                                        removal_policy=RemovalPolicy.DESTROY),
            )
        functions["on_event"].add_to_role_policy(iam.PolicyStatement(
            actions=["codebuild:StartBuild"], resources=[self.project.project_arn]))
        functions["is_complete"].add_to_role_policy(iam.PolicyStatement(
            actions=["codebuild:BatchGetBuilds"], resources=[self.project.project_arn]))
        for fn in functions.values():
            fn.add_to_role_policy(iam.PolicyStatement(
                actions=["ecr:DescribeImages", "ecr:DescribeRepositories"],
                resources=[r.repository_arn for r in self.repositories.values()]))
        provider = cr.Provider(
            self, "BuildProvider",
            on_event_handler=functions["on_event"],
            is_complete_handler=functions["is_complete"],
            query_interval=Duration.seconds(30),
            total_timeout=BUILD_TIMEOUT,
            disable_waiter_state_machine_logging=False,
            waiter_state_machine_log_options=cr.LogOptions(
                destination=logs.LogGroup(self, "WaiterLogs", retention=log_retention,
                                          removal_policy=RemovalPolicy.DESTROY),
                level=sfn.LogLevel.ALL, include_execution_data=False),
        )
        self.provider = provider
        self.build = CustomResource(
            self, "ImageBuild",
            service_token=provider.service_token,
            resource_type="Custom::SpaceportImageBuild",
            properties={
                "ProjectName": self.project.project_name,
                # A changed hash is the only change that rebuilds (CloudFormation sends no Update otherwise).
                "SourceHash": self.source.asset_hash,
                "SourceLocation": f"{self.source.s3_bucket_name}/{self.source.s3_object_key}",
                "Repositories": {n: r.repository_name for n, r in self.repositories.items()},
            },
        )
        self.functions = functions

    def image_uri(self, stage: str) -> str:
        """The digest reference (``<repository uri>@sha256:...``) of the image ``stage`` runs."""
        return self.build.get_att_string(f"{STAGE_IMAGE[stage].capitalize()}Uri")
