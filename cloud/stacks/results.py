"""The results distribution: CloudFront serves each job's result folders, one signed link per job.

- A deploy-time custom resource (``cloud/lambdas/link_secret``) makes the link secret in the account and
  writes it to the data bucket as a KeyValueStore import file (never in code or template).
- A CloudFront KeyValueStore is imported from that file; the viewer-request function
  (``edge/link_check.js``) reads the secret from it and checks each request's token and path; the
  same file, as the viewer-response function, types the HTML and the engine by file name.
- The distribution reaches the bucket through origin access control, and the bucket policy lets
  CloudFront read ``jobs/*/<result folder>/*`` only (spaceport.cloud.links.RESULT_FOLDERS): the
  upload, request.json, job.json and sfm/ are never served, whatever the token.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Annotations, Aws, CustomResource, Duration, RemovalPolicy
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cloud.stacks.lambda_code import lambda_code
from spaceport.cloud.links import RESULT_FOLDERS, SECRET_OBJECT

#: The one file of both edge functions (viewer request and response), which the tests run as-is
#: (tests/e2e/edge_server.mjs).
EDGE_FUNCTION = Path(__file__).resolve().parent / "edge" / "link_check.js"


class Results(Construct):
    """Link secret, KeyValueStore, token-checking function, OAC and the distribution."""

    def __init__(self, scope: Construct, construct_id: str, *, bucket: s3.Bucket, runtime: lambda_.Runtime,
                 log_retention: logs.RetentionDays) -> None:
        super().__init__(scope, construct_id)
        self.secret_function = lambda_.Function(
            self, "LinkSecret", description="Spaceport: make the result-link secret once (deploy time)",
            runtime=runtime, architecture=lambda_.Architecture.X86_64, handler="handler.handler",
            code=lambda_code("link_secret"), memory_size=128, timeout=Duration.seconds(60),
            log_group=logs.LogGroup(self, "LinkSecretLogs", retention=log_retention,
                                    removal_policy=RemovalPolicy.DESTROY))
        secret_arn = bucket.arn_for_objects(SECRET_OBJECT)
        self.secret_function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:PutObject"], resources=[secret_arn]))
        self.secret = CustomResource(self, "LinkSecretFile", service_token=self.secret_function.function_arn,
                                     resource_type="Custom::LinkSecret", properties={"Bucket": bucket.bucket_name})

        # Imported once, when the store is created (CloudFront reads the file with the deployer's rights).
        self.store = cloudfront.KeyValueStore(
            self, "LinkKeys", comment="Spaceport result-link secret",
            source=cloudfront.ImportSource.from_bucket(bucket, SECRET_OBJECT))
        self.store.node.add_dependency(self.secret)
        # One file, two functions: the viewer-request check and the viewer-response content types
        # (the file branches on the event type; each function is associated with the store, which
        # the file opens at load).
        self.check = cloudfront.Function(
            self, "LinkCheck", comment="Spaceport: result links open their own job's results until they expire",
            code=cloudfront.FunctionCode.from_file(file_path=str(EDGE_FUNCTION)),
            runtime=cloudfront.FunctionRuntime.JS_2_0, key_value_store=self.store)
        self.types = cloudfront.Function(
            self, "ContentTypes", comment="Spaceport: content types of the report, the viewer and its engine",
            code=cloudfront.FunctionCode.from_file(file_path=str(EDGE_FUNCTION)),
            runtime=cloudfront.FunctionRuntime.JS_2_0, key_value_store=self.store)

        self.origin_access = cloudfront.S3OriginAccessControl(
            self, "OriginAccess", description="Spaceport results: CloudFront signs its requests to the data bucket",
            signing=cloudfront.Signing.SIGV4_ALWAYS)
        # CDK's OAC origin also writes a bucket policy granting CloudFront bucket/*; it is handed the
        # bucket by reference (an imported bucket, whose policy CDK leaves alone), and the policy below
        # grants the result folders only.
        by_reference = s3.Bucket.from_bucket_attributes(
            self, "DataBucket", bucket_arn=bucket.bucket_arn,
            bucket_regional_domain_name=bucket.bucket_regional_domain_name)
        Annotations.of(self).acknowledge_warning(
            "@aws-cdk/aws-cloudfront-origins:updateImportedBucketPolicyOac",
            "The results bucket policy is written here, for the result folders only.")
        self.distribution = cloudfront.Distribution(
            self, "Distribution", comment="Spaceport results (signed links only)",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(
                    by_reference, origin_access_control=self.origin_access,
                    origin_access_levels=[cloudfront.AccessLevel.READ]),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                # The query (the token) is not part of the cache key: every link shares one cached
                # copy, and the function still checks each request before the cache is consulted.
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
                function_associations=[
                    cloudfront.FunctionAssociation(function=self.check,
                                                   event_type=cloudfront.FunctionEventType.VIEWER_REQUEST),
                    cloudfront.FunctionAssociation(function=self.types,
                                                   event_type=cloudfront.FunctionEventType.VIEWER_RESPONSE)]),
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=cloudfront.PriceClass.PRICE_CLASS_ALL)
        self.distribution_arn = (f"arn:{Aws.PARTITION}:cloudfront::{Aws.ACCOUNT_ID}:"
                                 f"distribution/{self.distribution.distribution_id}")
        # '*' in an S3 ARN also spans '/': the function's path check is what pins each folder to
        # the top of one job's prefix; this policy keeps CloudFront out of everything else.
        bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="ResultsThroughCloudFront",
            principals=[iam.ServicePrincipal("cloudfront.amazonaws.com")],
            actions=["s3:GetObject"],
            resources=[bucket.arn_for_objects(f"jobs/*/{folder}/*") for folder in RESULT_FOLDERS],
            conditions={"StringEquals": {"AWS:SourceArn": self.distribution_arn}}))

    @property
    def domain_name(self) -> str:
        return self.distribution.distribution_domain_name
