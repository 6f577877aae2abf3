"""Alarms on failed executions and Lambda errors, and a small dashboard."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct


class Monitoring(Construct):
    """An alarm topic, one alarm per concern, and a dashboard of executions and Lambda health."""

    def __init__(self, scope: Construct, construct_id: str, *, state_machine: sfn.StateMachine,
                 functions: dict[str, lambda_.Function], dead_letters: sqs.IQueue, alarm_email: str,
                 dashboard_name: str) -> None:
        super().__init__(scope, construct_id)
        # Encrypts alarm messages in transit only: deleted with the stack (after KMS's 7-day wait).
        key = kms.Key(self, "AlarmTopicKey", enable_key_rotation=True, description="Spaceport alarms",
                      removal_policy=RemovalPolicy.DESTROY, pending_window=Duration.days(7))
        # CloudWatch publishes to the encrypted topic: it needs the key's data key and decrypt
        # (SNS's guide for encrypted topics), and only for alarms of this account (confused deputy).
        key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com",
                                       conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}),
                  "kms:Decrypt", "kms:GenerateDataKey*")
        self.topic = sns.Topic(self, "AlarmTopic", display_name="Spaceport alarms", master_key=key, enforce_ssl=True)
        if alarm_email:
            self.topic.add_subscription(subs.EmailSubscription(alarm_email))
        action = cw_actions.SnsAction(self.topic)
        five_min = Duration.minutes(5)
        self.alarms: dict[str, cw.Alarm] = {}
        for name, metric in {
            "ExecutionsFailed": state_machine.metric_failed(period=five_min),
            "ExecutionsTimedOut": state_machine.metric_timed_out(period=five_min),
            "ExecutionsThrottled": state_machine.metric_throttled(period=five_min),
        }.items():
            self.alarms[name] = self._alarm(name, metric, action)
        self.alarms["UploadEventsDeadLettered"] = self._alarm(
            "UploadEventsDeadLettered", dead_letters.metric_approximate_number_of_messages_visible(period=five_min),
            action, statistic="Maximum")
        for name, fn in functions.items():
            self.alarms[f"{name}Errors"] = self._alarm(f"{name}Errors", fn.metric_errors(period=five_min), action)
        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=dashboard_name)
        self.dashboard.add_widgets(
            cw.GraphWidget(title="Executions", width=12, left=[
                state_machine.metric_started(period=five_min), state_machine.metric_succeeded(period=five_min),
                state_machine.metric_failed(period=five_min)]),
            cw.GraphWidget(title="Execution time (ms)", width=12, left=[state_machine.metric_time(period=five_min)]),
            cw.GraphWidget(title="Lambda errors", width=12,
                           left=[fn.metric_errors(period=five_min, label=n) for n, fn in functions.items()]),
            cw.GraphWidget(title="Lambda duration (ms)", width=12,
                           left=[fn.metric_duration(period=five_min, label=n) for n, fn in functions.items()]),
            cw.AlarmStatusWidget(title="Alarms", width=24, alarms=list(self.alarms.values())),
        )

    def _alarm(self, name: str, metric: cw.Metric, action: cw_actions.SnsAction, *,
               statistic: str = "Sum") -> cw.Alarm:
        alarm = cw.Alarm(self, name, metric=metric.with_(statistic=statistic), threshold=1, evaluation_periods=1,
                         comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                         treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                         alarm_description=f"Spaceport: {name} in the last 5 minutes")
        alarm.add_alarm_action(action)
        return alarm
