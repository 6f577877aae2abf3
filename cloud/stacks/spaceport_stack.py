"""The Spaceport stack: composes the constructs and does the grants between them."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_logs as logs
from constructs import Construct

from cloud.stacks.functions import RUNTIME, Functions
from cloud.stacks.images import Images
from cloud.stacks.monitoring import Monitoring
from cloud.stacks.notifications import Notifications
from cloud.stacks.pipeline import Pipeline, SageMakerRole
from cloud.stacks.results import Results
from cloud.stacks.settings import DeploySettings
from cloud.stacks.storage import READ, READ_VERSIONS, WRITE, Storage, grant_list, grant_objects
from spaceport.cloud.links import SECRET_OBJECT
from spaceport.cloud.settings import ENV
from spaceport.core.graph import JOB_KINDS

#: Stack output names `spaceport submit/status` look up (spaceport.cloud.jobs).
OUTPUTS = ("BucketName", "TableName", "StateMachineArn", "StartJobFunctionName", "ResultsDomain")


class SpaceportStack(Stack):
    """Upload -> start_job -> state machine (SageMaker stages) -> email, with storage, images and alarms."""

    def __init__(self, scope: Construct, construct_id: str, *, settings: DeploySettings, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, description="Spaceport: photos or video to a 3D Gaussian splat",
                         **kwargs)
        retention = logs.RetentionDays.THREE_MONTHS
        self.storage = Storage(self, "Storage", retain=settings.retain_data,
                               scratch_expiry_days=settings.scratch_expiry_days,
                               upload_expiry_days=settings.upload_expiry_days,
                               log_expiry_days=settings.log_expiry_days)
        self.images = Images(self, "Images", github_owner=settings.github_owner, github_repo=settings.github_repo,
                             log_retention=retention)
        self.sagemaker = SageMakerRole(self, "SageMaker", bucket=self.storage.data,
                                       repositories=list(self.images.repositories.values()))
        self.results = Results(self, "Results", bucket=self.storage.data, runtime=RUNTIME, log_retention=retention)
        self.notifications = Notifications(self, "Notifications", sender_email=settings.sender_email,
                                           topic_email=settings.notify_topic_email)
        plan_settings = settings.plan_settings(
            images={stage: self.images.image_uri(stage) for stage in JOB_KINDS},
            role_arn=self.sagemaker.role.role_arn)
        environment = {
            ENV["bucket"]: self.storage.data.bucket_name,
            ENV["table"]: self.storage.jobs.table_name,
            ENV["plan_settings"]: self.to_json_string(plan_settings),
            ENV["sender"]: settings.sender_email,
            ENV["topic_arn"]: self.notifications.topic_arn,
            ENV["link_expiry_s"]: str(settings.link_expiry_hours * 3600),
            ENV["results_domain"]: self.results.domain_name,
            ENV["max_upload_bytes"]: str(settings.max_upload_mb * 1024 * 1024),
        }
        self.functions = Functions(self, "Functions", environment=environment, log_retention=retention)
        self.pipeline = Pipeline(self, "Pipeline", sagemaker_role=self.sagemaker.role,
                                 record=self.functions.record, quality_gate=self.functions.quality_gate,
                                 notify=self.functions.notify, log_retention=retention)
        start_job = self.functions.add_start_job(state_machine_arn=self.pipeline.state_machine.state_machine_arn,
                                                 quiet_s=settings.folder_quiet_s)

        # Grants: each function gets exactly the data it touches, by prefix; no bucket-wide List*.
        data, jobs = self.storage.data, self.storage.jobs
        # Head and copy the exact version of an upload (tags travel with a copy), list a folder's photos.
        grant_objects(data, start_job, READ_VERSIONS, "uploads/*")
        grant_list(data, start_job, "uploads/*")
        grant_objects(data, start_job, (*WRITE, "s3:PutObjectTagging"), "jobs/*")
        jobs.grant_read_write_data(start_job)
        self.pipeline.state_machine.grant_start_execution(start_job)
        for fn in (self.functions.record, self.functions.notify):
            jobs.grant_read_write_data(fn)
            grant_objects(data, fn, WRITE, "jobs/*")  # job.json
        # Notify checks which outputs exist and signs links with the secret the deploy wrote.
        grant_objects(data, self.functions.notify, READ, "jobs/*", SECRET_OBJECT)
        grant_objects(data, self.functions.quality_gate, READ, "jobs/*")  # metrics.json inside the model artifact
        for fn in (start_job, self.functions.notify):
            self.notifications.grant_send(fn)

        # The trigger: every object created under uploads/, whatever its name or letter case
        # (S3 notification suffix filters are case-sensitive); start_job decides what it starts.
        events.Rule(
            self, "UploadRule", description="Objects created under uploads/ -> start_job",
            event_pattern=events.EventPattern(
                source=["aws.s3"], detail_type=["Object Created"],
                detail={"bucket": {"name": [data.bucket_name]}, "object": {"key": [{"prefix": "uploads/"}]}}),
            targets=[targets.LambdaFunction(start_job, dead_letter_queue=self.functions.start_job_dlq,
                                            retry_attempts=4, max_event_age=Duration.hours(6))],
        )

        self.monitoring = Monitoring(
            self, "Monitoring", state_machine=self.pipeline.state_machine,
            functions={"StartJob": start_job, "Record": self.functions.record,
                       "QualityGate": self.functions.quality_gate, "Notify": self.functions.notify},
            dead_letters=self.functions.start_job_dlq, alarm_email=settings.alarm_email,
            dashboard_name=f"{construct_id}-jobs")

        for name, value in {
            "BucketName": data.bucket_name,
            "TableName": jobs.table_name,
            "StateMachineArn": self.pipeline.state_machine.state_machine_arn,
            "StartJobFunctionName": start_job.function_name,
            "FolderQuietSeconds": str(settings.folder_quiet_s),
            "BuildProjectName": self.images.project.project_name,
            "ResultsDomain": self.results.domain_name,
            "LinkKeyValueStoreArn": self.results.store.key_value_store_arn,
            **{f"{n.capitalize()}RepositoryUri": r.repository_uri for n, r in self.images.repositories.items()},
            # What every job runs: the deploy's build of the deployed source, by digest.
            **{f"{n.capitalize()}Image": self.images.build.get_att_string(f"{n.capitalize()}Uri")
               for n in self.images.repositories},
            # What to run next: checks everything a first job needs (spaceport/cloud/doctor.py).
            "Preflight": f"spaceport aws doctor --stack {self.stack_name} --region {self.region}",
        }.items():
            CfnOutput(self, name, value=value)
