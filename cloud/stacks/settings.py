"""Deployment settings: read once from cdk.json context (``spaceport`` key) into a frozen object."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spaceport.cloud.links import MAX_LINK_HOURS
from spaceport.cloud.uploads import DEFAULT_QUIET_S, MAX_QUIET_S
from spaceport.core.graph import JOB_KINDS
from spaceport.core.plan import PlanSettings, StageResources

STAGE_DEFAULTS = {f: getattr(PlanSettings(), f) for f in JOB_KINDS}
#: GPU families whose architectures the train image is compiled for: A100 (p4d/p4de, sm_80), A10G
#: (g5, sm_86), L4/L40S (g6/g6e, sm_89), H100/H200 (p5/p5e/p5en, sm_90). T4 (g4dn) and V100 (p3) are not.
TRAIN_FAMILIES = ("ml.p4d.", "ml.p4de.", "ml.g5.", "ml.g6.", "ml.g6e.", "ml.p5.", "ml.p5e.", "ml.p5en.")


@dataclass(frozen=True)
class DeploySettings:
    """Everything the CDK app needs; no lookups, no account calls (synth is offline)."""

    stack_name: str = "Spaceport"
    account: str | None = None
    """Target account; None synthesizes an environment-agnostic template."""
    region: str | None = None
    instance_types: Mapping[str, str] = field(default_factory=dict)
    volume_gb: Mapping[str, int] = field(default_factory=dict)
    max_runtime_s: Mapping[str, int] = field(default_factory=dict)
    use_spot: bool = False
    spot_max_wait_s: int = 6 * 3600
    min_psnr: float = 17.0
    max_gaussians: int = 3_000_000
    default_preset: str = "default"
    max_upload_mb: int = 5120
    """Largest upload (a zip, a video, or the photos of one folder together), in MiB."""
    folder_quiet_s: int = DEFAULT_QUIET_S
    """Seconds without a new object in uploads/<folder>/ before its photos start one job (<= 900)."""
    link_expiry_hours: int = 168
    """How long the email's result links open the job's results, in hours (default 7 days; at most a year).
    Each link carries its expiry, checked at the edge (spaceport.cloud.links)."""
    sender_email: str = ""
    """SES-verified address (or an address of a verified domain) the emails come from; each email
    goes to the uploader's x-amz-meta-email. Verify it before deploying (docs/aws.md)."""
    notify_topic_email: str = ""
    """With no SES sender: an operator address subscribed to an SNS topic that receives EVERY job's
    email (the uploader's address is in the body). One of the two must be set."""
    alarm_email: str = ""
    """Address subscribed to the alarm topic (optional)."""
    scratch_expiry_days: int = 7
    upload_expiry_days: int = 30
    log_expiry_days: int = 90
    retain_data: bool = True
    """Keep the buckets and the jobs table when the stack is deleted (the default: users' uploads and
    results outlive the stack). Image repositories and KMS keys are always deleted (docs/aws.md)."""
    github_owner: str = ""
    github_repo: str = ""
    """Source of manual CodeBuild builds (`aws codebuild start-build`). Empty: the deployed source.
    The deploy itself always builds the deployed source (docs/aws.md, Images)."""

    def __post_init__(self) -> None:
        for name in ("instance_types", "volume_gb", "max_runtime_s"):
            unknown = set(getattr(self, name)) - set(JOB_KINDS)
            if unknown:
                raise ValueError(f"context spaceport.{name}: unknown stage(s) {sorted(unknown)}")
        if not self.sender_email and not self.notify_topic_email:
            raise ValueError(
                "No email would reach anyone: set context spaceport.sender_email to an SES-verified address "
                "(`npx cdk deploy -c spaceport.sender_email=you@example.com`; docs/aws.md, step 3), or "
                "spaceport.notify_topic_email to an operator address that receives every job's email.")
        train = self.instance_types.get("train", STAGE_DEFAULTS["train"].instance_type)
        if not train.startswith(TRAIN_FAMILIES):
            raise ValueError(f"context spaceport.instance_types.train {train!r}: the train image is compiled for "
                             f"sm_80, sm_86, sm_89, sm_90 (containers/train/Dockerfile); use one of {TRAIN_FAMILIES}")
        if not 0 <= self.folder_quiet_s <= MAX_QUIET_S:
            raise ValueError(f"context spaceport.folder_quiet_s must be 0..{MAX_QUIET_S} (the SQS delay limit)")
        if not 1 <= self.link_expiry_hours <= MAX_LINK_HOURS:
            raise ValueError(f"context spaceport.link_expiry_hours must be 1..{MAX_LINK_HOURS} (a year)")

    @classmethod
    def from_context(cls, context: Mapping[str, Any] | None,
                     overrides: Mapping[str, Any] | None = None) -> DeploySettings:
        """Parse the ``spaceport`` context dict; unknown keys are an error (typos must not pass).

        ``overrides`` are flat ``spaceport.<key>`` context values (``cdk deploy -c
        spaceport.sender_email=...``); the CLI passes them as strings, so a non-string setting's
        value is read as JSON (``-c spaceport.use_spot=true``).
        """
        context = dict(context or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in (overrides or {}).items():
            name = key.removeprefix("spaceport.")
            if name in fields and isinstance(value, str) and not isinstance(fields[name].default, str | None):
                value = json.loads(value)
            context[name] = value
        unknown = sorted(set(context) - set(fields))
        if unknown:
            raise ValueError(f"unknown cdk.json context key(s) under 'spaceport': {unknown}")
        return cls(**context)

    def stage_resources(self, stage: str, image: str) -> StageResources:
        base = STAGE_DEFAULTS[stage]
        return StageResources(
            image=image,
            instance_type=self.instance_types.get(stage, base.instance_type),
            volume_gb=int(self.volume_gb.get(stage, base.volume_gb)),
            max_runtime_s=int(self.max_runtime_s.get(stage, base.max_runtime_s)),
        )

    def plan_settings(self, *, images: Mapping[str, str], role_arn: str) -> dict[str, Any]:
        """The plan settings the Lambdas receive (JSON-able; the root is the bucket, added at run time)."""
        out: dict[str, Any] = {stage: dataclasses.asdict(self.stage_resources(stage, images[stage]))
                               for stage in JOB_KINDS}
        out.update(role_arn=role_arn, use_spot=self.use_spot, spot_max_wait_s=self.spot_max_wait_s,
                   min_psnr=self.min_psnr, max_gaussians=self.max_gaussians, default_preset=self.default_preset)
        return out
