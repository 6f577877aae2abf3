"""What every Lambda shares: one Powertools logger and boto3 clients made per invocation.

Clients are created inside the call (not at import) so tests build them inside ``mock_aws``;
the cost is a few milliseconds per invocation.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config

from spaceport.cloud.records import JobStore
from spaceport.cloud.settings import RuntimeSettings

logger = Logger(service="spaceport")


class Clients:
    """Lazily created boto3 clients for one invocation."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings

    @cached_property
    def s3(self) -> Any:
        # SigV4 and virtual-host addressing: what every current S3 region and SSE-KMS object require.
        return boto3.client("s3", config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}))

    @cached_property
    def sfn(self) -> Any:
        return boto3.client("stepfunctions")

    @cached_property
    def sqs(self) -> Any:
        return boto3.client("sqs")

    @cached_property
    def ses(self) -> Any:
        return boto3.client("sesv2")

    @cached_property
    def sns(self) -> Any:
        return boto3.client("sns")

    @cached_property
    def store(self) -> JobStore:
        table = boto3.resource("dynamodb").Table(self.settings.table)
        return JobStore(table=table, s3=self.s3, bucket=self.settings.bucket)
