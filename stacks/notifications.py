"""Where emails go: an SES identity when a sender is configured, else an SNS topic."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_ses as ses
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from constructs import Construct


class Notifications(Construct):
    """SES sending from ``sender_email`` (identity created here), or an encrypted SNS topic."""

    def __init__(self, scope: Construct, construct_id: str, *, sender_email: str, topic_email: str) -> None:
        super().__init__(scope, construct_id)
        self.sender_email = sender_email
        self.topic: sns.Topic | None = None
        self.identity: ses.EmailIdentity | None = None
        if sender_email:
            self.identity = ses.EmailIdentity(self, "Sender", identity=ses.Identity.email(sender_email))
        else:
            key = kms.Key(self, "TopicKey", enable_key_rotation=True, description="Spaceport notification topic")
            self.topic = sns.Topic(self, "Topic", display_name="Spaceport jobs", master_key=key,
                                   enforce_ssl=True)
            if topic_email:
                self.topic.add_subscription(subs.EmailSubscription(topic_email))

    @property
    def topic_arn(self) -> str:
        return self.topic.topic_arn if self.topic else ""

    def grant_send(self, grantee: iam.IGrantable) -> None:
        if self.identity:
            self.identity.grant_send_email(grantee)
        if self.topic:
            self.topic.grant_publish(grantee)
