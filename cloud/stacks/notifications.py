"""Where emails go: SES from a verified sender (to each uploader), else an SNS topic (to an operator)."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from constructs import Construct


class Notifications(Construct):
    """SES sending from ``sender_email``, or an encrypted SNS topic ``topic_email`` subscribes to.

    The sender identity is verified outside the stack (docs/aws.md): an identity created here
    would fail a second stack, or a redeploy, that uses the same address.
    """

    def __init__(self, scope: Construct, construct_id: str, *, sender_email: str, topic_email: str) -> None:
        super().__init__(scope, construct_id)
        self.sender_email = sender_email
        self.topic: sns.Topic | None = None
        if not sender_email:
            # Encrypts notification messages in transit only: deleted with the stack (7-day wait).
            key = kms.Key(self, "TopicKey", enable_key_rotation=True, description="Spaceport notification topic",
                          removal_policy=RemovalPolicy.DESTROY, pending_window=Duration.days(7))
            self.topic = sns.Topic(self, "Topic", display_name="Spaceport jobs", master_key=key,
                                   enforce_ssl=True)
            if topic_email:
                self.topic.add_subscription(subs.EmailSubscription(topic_email))

    @property
    def topic_arn(self) -> str:
        return self.topic.topic_arn if self.topic else ""

    def grant_send(self, grantee: iam.IGrantable) -> None:
        if self.sender_email:
            # SES authorizes every identity an email involves: the sender's, and in the sandbox the
            # recipient's too (each uploader's verified address). So the resource is identity/*,
            # and the condition keeps the From address to the configured sender.
            iam.Grant.add_to_principal(
                grantee=grantee, actions=["ses:SendEmail", "ses:SendRawEmail"],
                resource_arns=[f"arn:{Aws.PARTITION}:ses:{Aws.REGION}:{Aws.ACCOUNT_ID}:identity/*"],
                conditions={"StringEquals": {"ses:FromAddress": self.sender_email}})
        if self.topic:
            self.topic.grant_publish(grantee)
