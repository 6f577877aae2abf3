"""The Lambda functions, each a thin handler bundled with the spaceport core modules."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as lambda_events
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from cloud.stacks.lambda_code import lambda_code
from spaceport.cloud.settings import ENV

#: Public SSM parameter holding the current Powertools v3 layer ARN (resolved at deploy time,
#: so synth stays offline and the template deterministic).
POWERTOOLS_LAYER_PARAMETER = "/aws/service/powertools/python/x86_64/python3.11/latest"
RUNTIME = lambda_.Runtime.PYTHON_3_11


class Functions(Construct):
    """start_job, record, quality_gate and notify: one function per state (plus the upload trigger)."""

    def __init__(self, scope: Construct, construct_id: str, *, environment: Mapping[str, str],
                 log_retention: logs.RetentionDays) -> None:
        super().__init__(scope, construct_id)
        layer_arn = ssm.StringParameter.value_for_string_parameter(self, POWERTOOLS_LAYER_PARAMETER)
        self.powertools = lambda_.LayerVersion.from_layer_version_arn(self, "Powertools", layer_arn)
        self.environment = dict(environment)
        self.log_retention = log_retention
        self.record = self._function("Record", "record",
                                     "Job record steps (DynamoDB + job.json): progress, capacity retry, final record")
        # It streams model.tar.gz past the PLY to metrics.json: ~300 MB of gzip at the 1 GB tier's CPU share.
        self.quality_gate = self._function("QualityGate", "quality_gate",
                                           "Check held-out PSNR and Gaussian count against the targets",
                                           timeout_s=300, memory_mb=1024)
        self.notify = self._function("Notify", "notify", "Email the result or the failure (never fails the job)")

    def add_start_job(self, *, state_machine_arn: str, quiet_s: int) -> lambda_.Function:
        """start_job needs the state machine, which needs the other functions: it comes last.

        It is invoked by the upload rule (EventBridge, asynchronously: two retries) and by the
        folder quiet-timer queue it writes to (``quiet_s``-delayed messages; see
        spaceport.cloud.uploads). An event or timer that still fails lands in one dead-letter queue
        an operator can replay from, and an alarm watches that queue.
        """
        self.start_job_dlq = sqs.Queue(self, "StartJobDeadLetters", encryption=sqs.QueueEncryption.SQS_MANAGED,
                                       enforce_ssl=True, retention_period=Duration.days(14))
        timeout_s = 300  # staging a 5 GB upload is a multipart server-side copy
        self.quiet_timers = sqs.Queue(
            self, "FolderQuietTimers", encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
            # Lambda's guidance for an SQS event source: visibility >= 6x the function timeout.
            visibility_timeout=Duration.seconds(6 * timeout_s), retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=5, queue=self.start_job_dlq))
        self.start_job = self._function("StartJob", "start_job", "Validate an upload, plan it, start its execution",
                                        timeout_s=timeout_s,
                                        extra_env={ENV["state_machine_arn"]: state_machine_arn,
                                                   ENV["quiet_queue_url"]: self.quiet_timers.queue_url,
                                                   ENV["quiet_s"]: str(quiet_s)},
                                        dead_letter_queue=self.start_job_dlq)
        self.quiet_timers.grant_send_messages(self.start_job)
        self.start_job.add_event_source(lambda_events.SqsEventSource(self.quiet_timers, batch_size=10))
        return self.start_job

    def _function(self, construct_id: str, handler: str, description: str, *, timeout_s: int = 30,
                  memory_mb: int = 256, extra_env: Mapping[str, str] | None = None,
                  dead_letter_queue: sqs.IQueue | None = None) -> lambda_.Function:
        log_group = logs.LogGroup(self, f"{construct_id}Logs", retention=self.log_retention,
                                  removal_policy=RemovalPolicy.DESTROY)
        return lambda_.Function(
            self, construct_id,
            description=f"Spaceport: {description}",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler="handler.handler",
            code=lambda_code(handler),
            layers=[self.powertools],
            memory_size=memory_mb,
            timeout=Duration.seconds(timeout_s),
            environment={**self.environment, **(extra_env or {}), "POWERTOOLS_SERVICE_NAME": "spaceport",
                         "POWERTOOLS_LOG_LEVEL": "INFO"},
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            dead_letter_queue=dead_letter_queue,
        )
