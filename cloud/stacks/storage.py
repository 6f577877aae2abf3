"""Buckets and the jobs table."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

#: Object actions by intent, spelled out (no wildcards): CDK's grant_read/grant_read_write add
#: ``s3:List*`` and ``s3:GetBucket*`` on the whole bucket, which would make every prefix below moot.
READ = ("s3:GetObject",)
READ_VERSIONS = ("s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging")
WRITE = ("s3:PutObject", "s3:AbortMultipartUpload")
DELETE = ("s3:DeleteObject",)


def grant_objects(bucket: s3.IBucket, grantee: iam.IGrantable, actions: Sequence[str], *patterns: str) -> None:
    """``actions`` on the objects matching ``patterns`` (``jobs/*``) of ``bucket``, nothing on the bucket."""
    iam.Grant.add_to_principal(grantee=grantee, actions=list(actions),
                               resource_arns=[bucket.arn_for_objects(p) for p in patterns])


def grant_list(bucket: s3.IBucket, grantee: iam.IGrantable, *prefixes: str) -> None:
    """``s3:ListBucket`` on ``bucket`` for listings under ``prefixes`` only (``s3:prefix`` condition)."""
    iam.Grant.add_to_principal(grantee=grantee, actions=["s3:ListBucket"], resource_arns=[bucket.bucket_arn],
                               conditions={"StringLike": {"s3:prefix": list(prefixes)}})


class Storage(Construct):
    """The data bucket (uploads/, jobs/, scratch/), its access-log bucket, and the jobs table."""

    def __init__(self, scope: Construct, construct_id: str, *, retain: bool, scratch_expiry_days: int,
                 upload_expiry_days: int, log_expiry_days: int) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY
        common = dict(
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=removal,
            auto_delete_objects=False,
        )
        self.access_logs = s3.Bucket(
            self, "AccessLogs", **common,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=Duration.days(log_expiry_days))],
        )
        self.data = s3.Bucket(
            self, "Data", **common,
            # Versioned: a job stages the exact version of the object that triggered it.
            versioned=True,
            # Object events go to EventBridge, where the upload rule matches the uploads/ prefix in
            # any letter case (spaceport.cloud.uploads decides what each object starts).
            event_bridge_enabled=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="data/",
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-scratch", prefix="scratch/",
                                 expiration=Duration.days(scratch_expiry_days),
                                 noncurrent_version_expiration=Duration.days(1)),
                s3.LifecycleRule(id="expire-uploads", prefix="uploads/",
                                 expiration=Duration.days(upload_expiry_days),
                                 noncurrent_version_expiration=Duration.days(7)),
                s3.LifecycleRule(id="abort-multipart", abort_incomplete_multipart_upload_after=Duration.days(2)),
                s3.LifecycleRule(id="old-versions", noncurrent_version_expiration=Duration.days(30)),
            ],
        )
        self.jobs = dynamodb.TableV2(
            self, "Jobs",
            partition_key=dynamodb.Attribute(name="job_id", type=dynamodb.AttributeType.STRING),
            billing=dynamodb.Billing.on_demand(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            removal_policy=removal,
        )
