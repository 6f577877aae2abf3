"""ECR repositories for the three stage images and the CodeBuild project that builds them."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from spaceport.graph import STAGE_IMAGE

#: Image of each SageMaker stage (publish runs in the compress image): the stage graph's.
IMAGES = tuple(dict.fromkeys(STAGE_IMAGE.values()))
#: Tag of the BuildKit registry cache (buildspec.yml): an unchanged gsplat layer is not recompiled.
BUILD_CACHE_TAG = "buildcache"


class Images(Construct):
    """One ECR repository per image; CodeBuild builds, smoke-tests and pushes them (buildspec.yml)."""

    def __init__(self, scope: Construct, construct_id: str, *, tag: str, source_bucket: s3.IBucket,
                 github_owner: str, github_repo: str, log_retention: logs.RetentionDays) -> None:
        super().__init__(scope, construct_id)
        self.tag = tag
        self.repositories: dict[str, ecr.Repository] = {}
        prefix = Stack.of(self).stack_name.lower()  # ECR names are lower-case
        for name in IMAGES:
            self.repositories[name] = ecr.Repository(
                self, f"{name.capitalize()}Repository",
                # Named after the stack: a second stack (or a redeploy after a delete) gets its own.
                repository_name=f"{prefix}-{name}",
                image_scan_on_push=True,
                image_tag_mutability=ecr.TagMutability.MUTABLE,  # `latest` moves with each build
                # Images are rebuilt from the source by the build project: deleted with the stack.
                removal_policy=RemovalPolicy.DESTROY,
                empty_on_delete=True,
                lifecycle_rules=[
                    # The build cache (buildspec.yml) is one tag that must outlive the image count.
                    ecr.LifecycleRule(description="keep the build cache", tag_prefix_list=[BUILD_CACHE_TAG],
                                      max_image_count=1, rule_priority=1),
                    ecr.LifecycleRule(description="keep the last 20 images", max_image_count=20, rule_priority=2),
                ],
            )
        if github_owner and github_repo:
            source = codebuild.Source.git_hub(owner=github_owner, repo=github_repo, webhook=False)
        else:
            source = codebuild.Source.s3(bucket=source_bucket, path="source/spaceport.zip")
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
                compute_type=codebuild.ComputeType.LARGE,
                privileged=True,  # docker build
            ),
            environment_variables={
                **{f"{n.upper()}_REPOSITORY_URI": codebuild.BuildEnvironmentVariable(
                    value=r.repository_uri) for n, r in self.repositories.items()},
                "IMAGE_TAG": codebuild.BuildEnvironmentVariable(value=tag),
                "BUILD_CACHE_TAG": codebuild.BuildEnvironmentVariable(value=BUILD_CACHE_TAG),
            },
            timeout=Duration.hours(3),
            logging=codebuild.LoggingOptions(cloud_watch=codebuild.CloudWatchLoggingOptions(
                log_group=logs.LogGroup(self, "BuildLogs", retention=log_retention,
                                        removal_policy=RemovalPolicy.DESTROY))),
        )
        for repo in self.repositories.values():
            repo.grant_pull_push(self.project)
        # Authenticated ECR Public pulls of the base images (these two actions take no resource).
        self.project.add_to_role_policy(iam.PolicyStatement(
            actions=["ecr-public:GetAuthorizationToken", "sts:GetServiceBearerToken"], resources=["*"]))

    def image_uri(self, stage: str) -> str:
        return self.repositories[STAGE_IMAGE[stage]].repository_uri_for_tag(self.tag)
