"""cdk-nag AwsSolutions acknowledgments, each with the reason it is acceptable here.

cdk-nag 3 names each finding ``AwsSolutions::<rule>[<finding>]`` and wants every finding
acknowledged on its own; findings that name a resource embed its logical id, which is read
from the stack here (never written by hand), so renaming a construct cannot silently
un-acknowledge or mis-acknowledge anything.
"""

from __future__ import annotations

import aws_cdk as cdk

from cloud.stacks.pipeline import JOB_NAME_PATTERN
from cloud.stacks.spaceport_stack import SpaceportStack

PACK = "AwsSolutions::"
#: The action wildcards of CDK's read grant, which only CodeBuild's S3 source (Source.s3) still uses:
#: every other S3 permission in the stack names its actions (cloud.stacks.storage).
S3_GRANT_ACTIONS = ("s3:GetBucket*", "s3:GetObject*", "s3:List*")
KMS_GRANT_ACTIONS = ("kms:GenerateDataKey*", "kms:ReEncrypt*")


def _ref(stack: cdk.Stack, construct: cdk.IResource | cdk.CfnResource, attr: str = "Arn") -> str:
    cfn = construct if isinstance(construct, cdk.CfnResource) else construct.node.default_child
    return f"<{stack.resolve(stack.get_logical_id(cfn))}.{attr}>"


def acknowledgments(stack: SpaceportStack) -> list[tuple[str, str]]:
    """(finding id, reason) for every finding this design accepts."""
    data = _ref(stack, stack.storage.data)
    functions = [stack.functions.record, stack.functions.quality_gate, stack.functions.notify]
    partition_acct = "arn:<AWS::Partition>:{svc}:<AWS::Region>:<AWS::AccountId>"
    out: list[tuple[str, str]] = [
        ("AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
         "AWSLambdaBasicExecutionRole only lets a function write its own CloudWatch logs; a custom copy adds nothing."),
        ("AwsSolutions-L1",
         "Python 3.11 is the project's runtime (pyproject, venv) and the Powertools layer parameter; they move together."),
        ("AwsSolutions-IAM5[Resource::*]",
         "Only actions that take no resource use '*': X-Ray traces and sampling rules, the CloudWatch Logs "
         "log-delivery actions Step Functions uses to log to its log group, ecr:GetAuthorizationToken, "
         "ecr-public:GetAuthorizationToken with sts:GetServiceBearerToken (ECR Public login for base images), "
         "and cloudwatch:PutMetricData limited by a namespace condition."),
        (f"AwsSolutions-IAM5[Resource::{data}/jobs/*]",
         "Each job's files are read and written under jobs/<job_id>/ with an id known only at run time; the "
         "prefix is the narrowest scope, and each role gets named object actions there, never s3:List*."),
        (f"AwsSolutions-IAM5[Resource::{data}/uploads/*]",
         "Uploads arrive under uploads/ with any name; readers are limited to that prefix."),
        (f"AwsSolutions-IAM5[Resource::{data}/scratch/*]",
         "SageMaker checkpoints live under scratch/<job_id>/ (expired by lifecycle); limited to that prefix."),
        ("AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/sagemaker/*]",
         "SageMaker jobs log to log groups SageMaker names under /aws/sagemaker/; nothing narrower exists."),
        (f"AwsSolutions-IAM5[Resource::{partition_acct.format(svc='sagemaker')}:processing-job/{JOB_NAME_PATTERN}]",
         "Job names are <job_id>-<stage> with ids made at run time; every id starts with 'sp-'."),
        (f"AwsSolutions-IAM5[Resource::{partition_acct.format(svc='sagemaker')}:training-job/{JOB_NAME_PATTERN}]",
         "Job names are <job_id>-<stage> with ids made at run time; every id starts with 'sp-'."),
    ]
    out += [(f"AwsSolutions-IAM5[Action::{a}]",
             "Only the image build's read of its source (the deployed source, a CDK asset in the bootstrap bucket) "
             "has this wildcard; a Deny on the build role keeps its listing to that asset's key.")
            for a in S3_GRANT_ACTIONS]
    out += [(f"AwsSolutions-IAM5[Action::{a}]",
             "CDK's grant on the image build's own KMS key (and, in topic mode, the notification topic's key); "
             "the statement names that one key.") for a in KMS_GRANT_ACTIONS]
    out += [(f"AwsSolutions-IAM5[Resource::{_ref(stack, fn)}:*]",
             "grant_invoke covers the function's versions and aliases (ARN:*), nothing else.") for fn in functions]
    if stack.notifications.sender_email:
        out.append((f"AwsSolutions-IAM5[Resource::{partition_acct.format(svc='ses')}:identity/*]",
                    "SES authorizes the recipient's identity too (each uploader's, in the sandbox); the "
                    "ses:FromAddress condition keeps the sender to the one configured address."))
    out += [
        ("AwsSolutions-CFR1",
         "Results are for whoever holds the job's link, wherever they are: the link's signature and expiry are "
         "the boundary, not geography."),
        ("AwsSolutions-CFR2",
         "The viewer-request function checks every request's signature, expiry and job prefix before the cache "
         "or the origin; a WAF web ACL would add rate rules, not authorization, at a monthly fee."),
        ("AwsSolutions-CFR3",
         "CloudFront standard logs need ACLs on the log bucket, which this stack disables (BucketOwnerEnforced); "
         "the data bucket's S3 access log records every object CloudFront fetches from it."),
        ("AwsSolutions-CFR4",
         "Links use the distribution's cloudfront.net name and CloudFront's default certificate, whose TLS "
         "policy CloudFront sets; a minimum protocol version needs a custom domain and certificate."),
    ]
    build = _ref(stack, stack.images.project, "Ref").removesuffix(".Ref>") + ">"
    out += [
        (f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/codebuild/{build}:*]",
         "CodeBuild's default logging grant for its own log group streams."),
        (f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:codebuild:<AWS::Region>:<AWS::AccountId>:report-group/{build}-*]",
         "CodeBuild's default grant for its own test report groups."),
    ]
    # The deploy-time image build (cloud/stacks/images.py): CDK's custom resource provider framework.
    images = stack.images
    invoked = [images.functions["on_event"], images.functions["is_complete"],
               *(images.provider.node.find_child(n) for n in ("framework-isComplete", "framework-onTimeout"))]
    out += [(f"AwsSolutions-IAM5[Resource::{_ref(stack, fn)}:*]",
             "The provider framework's grant_invoke covers the function's versions and aliases (ARN:*), nothing else.")
            for fn in invoked]
    out += [
        ("AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*]",
         "CodeBuild reads the deployed source, a CDK asset in the bootstrap bucket whose key is its content hash; "
         "CDK's asset grant covers that bucket's objects."),
        ("AwsSolutions-SF2",
         "The provider framework's waiter state machine (image build) only polls a Lambda; CDK offers no X-Ray "
         "option for it. It logs ALL events to its own log group."),
    ]
    return out


def acknowledge(stack: SpaceportStack) -> None:
    for rule, reason in acknowledgments(stack):
        cdk.Validations.of(stack).acknowledge(cdk.Acknowledgment(id=PACK + rule, reason=reason))
