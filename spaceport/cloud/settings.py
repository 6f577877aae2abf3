"""Runtime settings of the Lambdas, parsed once from their environment (set by the CDK app)."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spaceport.cloud.uploads import DEFAULT_QUIET_S, MAX_QUIET_S
from spaceport.core.plan import PlanSettings, settings_from_mapping

#: Environment variable names, shared with the CDK constructs that set them.
ENV = {
    "bucket": "SPACEPORT_BUCKET",
    "table": "SPACEPORT_TABLE",
    "state_machine_arn": "SPACEPORT_STATE_MACHINE_ARN",
    "plan_settings": "SPACEPORT_PLAN_SETTINGS",
    "sender": "SPACEPORT_SENDER",
    "topic_arn": "SPACEPORT_TOPIC_ARN",
    "link_expiry_s": "SPACEPORT_LINK_EXPIRY_S",
    "results_domain": "SPACEPORT_RESULTS_DOMAIN",
    "max_upload_bytes": "SPACEPORT_MAX_UPLOAD_BYTES",
    "quiet_queue_url": "SPACEPORT_QUIET_QUEUE_URL",
    "quiet_s": "SPACEPORT_QUIET_S",
}


class RuntimeSettings(BaseModel):
    """What a Lambda needs to know about its deployment."""

    model_config = ConfigDict(frozen=True)

    bucket: str
    table: str
    state_machine_arn: str = ""
    plan_settings: Mapping = Field(default_factory=dict)
    sender: str = ""
    """SES identity to send from; empty means publish to the SNS topic instead."""
    topic_arn: str = ""
    link_expiry_s: int = Field(default=7 * 24 * 3600, gt=0)
    """Result link lifetime in seconds (the edge function enforces the expiry each link carries)."""
    results_domain: str = ""
    """Domain of the CloudFront distribution that serves results (spaceport.cloud.links)."""
    max_upload_bytes: int = 5 * 1024**3
    quiet_queue_url: str = ""
    """SQS queue of folder quiet timers (start_job sends, then receives, each delayed message)."""
    quiet_s: int = Field(default=DEFAULT_QUIET_S, ge=0, le=MAX_QUIET_S)
    """Seconds without a new object in a folder before its photos start one job (SQS delay <= 900)."""

    @field_validator("plan_settings", mode="before")
    @classmethod
    def _json(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value

    def plan(self) -> PlanSettings:
        """Plan settings rooted at this deployment's bucket."""
        return settings_from_mapping(self.plan_settings, root=f"s3://{self.bucket}/")


def from_environ(environ: Mapping[str, str]) -> RuntimeSettings:
    values = {field: environ[name] for field, name in ENV.items() if environ.get(name, "") != ""}
    return RuntimeSettings(**values)


@functools.cache
def load() -> RuntimeSettings:
    """The settings of this Lambda (read once per container)."""
    return from_environ(os.environ)
