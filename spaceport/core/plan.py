"""Request -> JobPlan: the one source of truth for a job's id, layout and per-stage job specs.

Pure Python: no I/O, no boto3, no heavy imports. Two executors read the same plan:

- the ``start_job`` Lambda passes :meth:`JobPlan.to_execution_input` to Step Functions'
  ``StartExecution`` (the ASL takes job names, URIs and hyperparameters from it with JSONPath);
- the local runner (``spaceport run``) builds the plan with a ``file://`` root and runs each
  stage entrypoint with the same arguments, mapping each URI to a folder.

The layout under the root is::

    jobs/<job_id>/request.json  upload/  sfm/  train/  compressed/  report/  job.json
    scratch/<job_id>/checkpoints/          (training checkpoints; expired by a lifecycle rule)

Every stage, its channels and its options come from the stage graph (:mod:`spaceport.core.graph`);
options resolve through the stage's one resolver (:meth:`spaceport.core.stage.StageDef.options`),
container paths through :func:`spaceport.core.contract.container_path`. Job ids and job names are
:mod:`spaceport.core.jobid` (re-exported here).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from spaceport.core import contract, graph
from spaceport.core.errors import ConfigInvalid
from spaceport.core.jobid import JOB_ID_MAX, MAX_ATTEMPTS, job_id_for, source_version, stage_job_name  # noqa: F401
from spaceport.core.summaries import Asked, RequestFile

#: The stage graph's names, re-exported for the plan's readers.
STAGES, JOB_KINDS, PRESET_NAMES = graph.STAGES, graph.JOB_KINDS, graph.PRESET_NAMES

#: SageMaker metric definitions matching spaceport.local.progress lines from the train stage:
#: progress ``stage=train step=500 loss=0.0412 psnr=24.31`` and the final line
#: ``stage=train final=1 test_psnr=.. test_ssim=.. num_gaussians=.. seconds=..``.
_NUM = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
METRIC_DEFINITIONS: tuple[tuple[str, str], ...] = (
    ("loss", r"stage=train .*\bloss=" + _NUM),
    ("psnr", r"stage=train .* psnr=" + _NUM),
    ("test_psnr", r"stage=train final=1 .*\btest_psnr=" + _NUM),
    ("test_ssim", r"stage=train final=1 .*\btest_ssim=" + _NUM),
    ("num_gaussians", r"stage=train final=1 .*\bnum_gaussians=" + _NUM),
    ("train_seconds", r"stage=train final=1 .*\bseconds=" + _NUM),
)


@dataclass(frozen=True)
class StageResources:
    """Where and how long one stage's SageMaker job runs."""

    image: str = ""
    """Container image URI (ECR). Empty for the local runner."""
    instance_type: str = "ml.m5.xlarge"
    """SageMaker instance type."""
    volume_gb: int = 30
    """EBS volume attached to the instance, in GB."""
    max_runtime_s: int = 3600
    """Hard stop for the job, in seconds."""


@dataclass(frozen=True)
class PlanSettings:
    """Deployment-wide settings (from cdk.json context on AWS, defaults locally)."""

    root: str = "file:///tmp/spaceport/"
    """Root URI of the layout: ``s3://bucket/`` or ``file:///abs/dir/`` (ends with ``/``)."""
    role_arn: str = ""
    """SageMaker execution role ARN (empty locally)."""
    sfm: StageResources = StageResources(instance_type="ml.c5.4xlarge", volume_gb=50, max_runtime_s=2 * 3600)
    """SfM processing job (CPU; pycolmap)."""
    train: StageResources = StageResources(instance_type="ml.g5.2xlarge", volume_gb=50, max_runtime_s=3 * 3600)
    """Training job (GPU; gsplat)."""
    compress: StageResources = StageResources(instance_type="ml.c5.2xlarge", volume_gb=30, max_runtime_s=3600)
    """Compress processing job (CPU: the image carries CPU PyTorch and the Node splat tools)."""
    publish: StageResources = StageResources(instance_type="ml.m5.large", volume_gb=20, max_runtime_s=1800)
    """Publish processing job (runs ``spaceport publish`` in the compress image)."""
    use_spot: bool = False
    """Managed spot training for the train stage (checkpoints make it resumable)."""
    spot_max_wait_s: int = 6 * 3600
    """Longest wait for spot capacity plus run time, in seconds (must be >= train max runtime)."""
    min_psnr: float = 17.0
    """Quality gate: held-out PSNR must be at least this (dB). A floor under every good real capture's
    fast-preset result (herzjesu-P8: 18.9 dB, one held-out view); the capture checks of
    :class:`spaceport.stages.gate.QualityTargets` catch what PSNR cannot (``bench/results/gate.md``)."""
    max_gaussians: int = 3_000_000
    """Quality gate: the splat may hold at most this many Gaussians."""
    default_preset: str = "default"
    """Preset used when the request names none."""

    def resources(self, stage: str) -> StageResources:
        """The stage's resources; a stage with no field here runs on :class:`StageResources`' defaults."""
        return getattr(self, stage, StageResources())


@dataclass(frozen=True)
class JobRequest:
    """What was asked: a source object (S3 or local) and the user's choices.

    ``source_version`` is the S3 version id, else the ETag (S3), or a content fingerprint the
    local runner computes; together with ``source_uri`` it fixes the job id.
    """

    source_uri: str
    """``s3://bucket/key`` or ``file:///abs/path`` of the upload (a zip, a video, images)."""
    source_version: str = ""
    """S3 VersionId or ETag, or a local fingerprint: the same upload gives the same job id."""
    email: str | None = None
    """Where to send the result; None sends nothing."""
    preset: str | None = None
    """``fast``, ``default`` or ``quality``; None means the settings' default."""
    options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Per-stage option overrides as strings: ``{"train": {"steps": "7000"}}``."""
    size_bytes: int | None = None
    """Size of the upload, when known (recorded, validated by the caller)."""

    @classmethod
    def from_s3(cls, bucket: str, key: str, *, version_id: str | None = None, etag: str | None = None,
                **kwargs: Any) -> JobRequest:
        """A request for ``s3://bucket/key`` (version id preferred over ETag for the job id)."""
        return cls(source_uri=f"s3://{bucket}/{key}", source_version=source_version(version_id, etag), **kwargs)

    @property
    def source_name(self) -> str:
        return self.source_uri.rstrip("/").rsplit("/", 1)[-1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_uri": self.source_uri,
            "source_version": self.source_version,
            "email": self.email,
            "preset": self.preset,
            "options": {k: dict(v) for k, v in self.options.items()},
            "size_bytes": self.size_bytes,
        }


@dataclass(frozen=True)
class Channel:
    """One input or output: the URI under the root, the container path it maps to, and (inputs)
    which stage produced it in which form (:class:`spaceport.core.graph.Input`)."""

    name: str
    uri: str
    path: str
    producer: str = ""
    form: str = ""

    def to_dict(self) -> dict[str, str]:
        out = {"name": self.name, "uri": self.uri, "path": self.path}
        if self.producer:
            out.update(producer=self.producer, form=self.form)
        return out


class _Wire(BaseModel):
    """The plan as JSON (Step Functions' execution input, handed back to the record Lambda): frozen,
    closed, SageMaker's names where the ASL passes a block to SageMaker whole."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class WireChannel(_Wire):
    name: str
    uri: str
    path: str
    producer: str | None = None
    form: str | None = None


class Cluster(_Wire):
    instance_count: int = Field(alias="InstanceCount")
    instance_type: str = Field(alias="InstanceType")
    volume_gb: int = Field(alias="VolumeSizeInGB")


class Stopping(_Wire):
    max_runtime_s: int = Field(alias="MaxRuntimeInSeconds")
    max_wait_s: int | None = Field(default=None, alias="MaxWaitTimeInSeconds")
    """Managed spot training only."""


class CheckpointConfig(_Wire):
    s3_uri: str = Field(alias="S3Uri")
    local_path: str = Field(alias="LocalPath")


class MetricDefinition(_Wire):
    name: str = Field(alias="Name")
    regex: str = Field(alias="Regex")


class GateStage(_Wire):
    name: str
    kind: Literal["gate"]
    thresholds: dict[str, str]
    """Every resolved option of the gate (:class:`spaceport.stages.gate.QualityTargets`), as strings:
    the PSNR and size targets and the capture checks' limits."""


class _JobStage(_Wire):
    name: str
    job_name: str
    attempt: int
    """Runs of the stage so far, this one included (the record Lambda bumps it on a retry)."""
    image: str
    options: dict[str, str]
    inputs: dict[str, WireChannel]
    outputs: dict[str, WireChannel]
    cluster: Cluster
    stopping_condition: Stopping


class ProcessingStage(_JobStage):
    kind: Literal["processing"]
    arguments: list[str]


class TrainingStage(_JobStage):
    kind: Literal["training"]
    hyperparameters: dict[str, str]
    use_spot: bool
    checkpoint: CheckpointConfig
    metric_definitions: list[MetricDefinition]


PlannedStage = Annotated[GateStage | ProcessingStage | TrainingStage, Field(discriminator="kind")]


class ExecutionPlan(_Wire):
    """``$.plan`` of the execution input, as the state machine hands it back to the record Lambda."""

    job_id: str
    root: str
    prefix: str
    request_uri: str
    record_uri: str
    preset: str
    email: str | None = None
    source_uri: str
    order: list[str]
    stages: dict[str, PlannedStage]

    def dump(self) -> dict[str, Any]:
        """The JSON the ASL reads (SageMaker's key names; unset optional keys left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass(frozen=True)
class StageSpec:
    """One stage of a job. Container stages carry a full SageMaker job spec."""

    name: str
    kind: Literal["processing", "training", "gate"]
    job_name: str = ""
    image: str = ""
    instance_type: str = ""
    volume_gb: int = 0
    max_runtime_s: int = 0
    arguments: tuple[str, ...] = ()
    """Processing: container arguments, ``<stage> --field value ...`` for every resolved option. The
    image's ENTRYPOINT is ``spaceport`` (containers/*/Dockerfile), so ENTRYPOINT + arguments is
    ``spaceport <stage> ...``; no ContainerEntrypoint is set (see spaceport.core.contract.start_argv)."""
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    """Training: every resolved option as a string."""
    options: Mapping[str, str] = field(default_factory=dict)
    """The resolved options of the stage, as strings (what request.json records)."""
    inputs: tuple[Channel, ...] = ()
    outputs: tuple[Channel, ...] = ()
    checkpoint_uri: str = ""
    use_spot: bool = False
    spot_max_wait_s: int = 0

    def input(self, name: str) -> Channel:
        return next(c for c in self.inputs if c.name == name)

    def output(self, name: str) -> Channel:
        return next(c for c in self.outputs if c.name == name)

    def planned(self) -> GateStage | ProcessingStage | TrainingStage:
        """The stage as the state machine reads it (SageMaker-shaped where the ASL passes blocks whole)."""
        if self.kind == "gate":
            return GateStage(name=self.name, kind="gate", thresholds=dict(self.options))
        common: dict[str, Any] = dict(
            name=self.name, job_name=self.job_name, attempt=1, image=self.image, options=dict(self.options),
            inputs={c.name: WireChannel(**c.to_dict()) for c in self.inputs},
            outputs={c.name: WireChannel(**c.to_dict()) for c in self.outputs},
            cluster=Cluster(instance_count=1, instance_type=self.instance_type, volume_gb=self.volume_gb))
        if self.kind == "processing":
            return ProcessingStage(**common, kind="processing", arguments=list(self.arguments),
                                   stopping_condition=Stopping(max_runtime_s=self.max_runtime_s))
        wait = max(self.spot_max_wait_s, self.max_runtime_s) if self.use_spot else None
        return TrainingStage(
            **common, kind="training", hyperparameters=dict(self.hyperparameters), use_spot=self.use_spot,
            stopping_condition=Stopping(max_runtime_s=self.max_runtime_s, max_wait_s=wait),
            checkpoint=CheckpointConfig(s3_uri=self.checkpoint_uri, local_path=contract.CHECKPOINTS),
            metric_definitions=[MetricDefinition(name=n, regex=r) for n, r in METRIC_DEFINITIONS])

    def to_dict(self) -> dict[str, Any]:
        """:meth:`planned` as the JSON the state machine reads."""
        return self.planned().model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass(frozen=True)
class JobPlan:
    """Everything a job will do, fixed before it starts."""

    job_id: str
    root: str
    request: JobRequest
    preset: str
    stages: tuple[StageSpec, ...]
    role_arn: str = ""

    @property
    def prefix(self) -> str:
        """URI of the job's folder, ending with ``/``."""
        return f"{self.root}jobs/{self.job_id}/"

    @property
    def request_uri(self) -> str:
        return self.prefix + "request.json"

    @property
    def record_uri(self) -> str:
        return self.prefix + "job.json"

    @property
    def staged_upload_uri(self) -> str | None:
        """Where the executor must copy the upload before the sfm stage (None: read in place)."""
        uri = self.stage("sfm").input("upload").uri
        return uri + self.request.source_name if uri.endswith("/") else None

    @property
    def execution_name(self) -> str:
        """Step Functions execution name (the job id: one upload, one execution)."""
        return self.job_id

    def stage(self, name: str) -> StageSpec:
        return next(s for s in self.stages if s.name == name)

    def to_request_json(self) -> RequestFile:
        """``request.json``: what was asked and the defaults it resolved to."""
        return RequestFile(job_id=self.job_id, request=Asked(**self.request.to_dict()), preset=self.preset,
                           options={s.name: dict(s.options) for s in self.stages})

    def execution_plan(self) -> ExecutionPlan:
        """``$.plan`` of the execution input: the ASL reads every stage parameter from it."""
        return ExecutionPlan(job_id=self.job_id, root=self.root, prefix=self.prefix, request_uri=self.request_uri,
                             record_uri=self.record_uri, preset=self.preset, email=self.request.email,
                             source_uri=self.request.source_uri, order=[s.name for s in self.stages],
                             stages={s.name: s.planned() for s in self.stages})

    def to_execution_input(self) -> dict[str, Any]:
        """The StartExecution input."""
        return {"job_id": self.job_id, "plan": self.execution_plan().dump()}


def _upload_uri(request: JobRequest, prefix: str) -> str:
    """Where the sfm stage reads the upload.

    On S3 the upload is first copied (by start_job, at its exact version) to
    ``jobs/<job_id>/upload/<name>``: SageMaker's S3Prefix input would otherwise also match other
    keys that start with the same name and read whatever version is newest when the job starts.
    Locally the source file is read where it is.
    """
    if prefix.startswith("s3://") and request.source_uri.startswith("s3://"):
        return f"{prefix}upload/"
    return request.source_uri


def _arguments(options: Mapping[str, str]) -> tuple[str, ...]:
    args: list[str] = []
    for key, value in options.items():
        args += ["--" + key.replace("_", "-"), value]
    return tuple(args)


def _channel_in(stage: graph.StageDef, inp: graph.Input, request: JobRequest, prefix: str) -> Channel:
    if inp.producer == graph.UPLOAD:
        uri = _upload_uri(request, prefix)
    elif inp.producer == graph.RECORD:
        uri = prefix + "job.json"
    else:
        uri = prefix + graph.stage_def(inp.producer).folder + "/"
    return Channel(inp.channel, uri, contract.container_path(stage.kind, inp.channel), inp.producer, inp.form)


def _options(sd: graph.StageDef, preset: str, request: JobRequest, settings: PlanSettings) -> dict[str, str]:
    """The stage's resolved options; the gate's thresholds start from the deployment's settings."""
    overrides = dict(request.options.get(sd.name) or {})
    if sd.kind == "gate":
        overrides = {"min_psnr": settings.min_psnr, "max_gaussians": settings.max_gaussians, **overrides}
    return sd.options(preset, overrides)


def _stage_spec(sd: graph.StageDef, job_id: str, preset: str, request: JobRequest, settings: PlanSettings,
                prefix: str) -> StageSpec:
    opts = _options(sd, preset, request, settings)
    if sd.kind == "gate":
        return StageSpec(name=sd.name, kind="gate", options=opts,
                         inputs=tuple(_channel_in(sd, i, request, prefix) for i in sd.inputs))
    r = settings.resources(sd.name)
    common: dict[str, Any] = dict(
        name=sd.name, kind=sd.kind, job_name=stage_job_name(job_id, sd.name), image=r.image,
        instance_type=r.instance_type, volume_gb=r.volume_gb, max_runtime_s=r.max_runtime_s, options=opts,
        inputs=tuple(_channel_in(sd, i, request, prefix) for i in sd.inputs),
        outputs=(Channel(sd.output, prefix + sd.folder + "/", contract.container_path(sd.kind, sd.output, output=True)),))
    if sd.kind == "training":
        # Checkpoints are scratch: under scratch/ so one bucket lifecycle rule expires them.
        return StageSpec(**common, hyperparameters=opts, checkpoint_uri=f"{settings.root}scratch/{job_id}/checkpoints/",
                         use_spot=settings.use_spot, spot_max_wait_s=settings.spot_max_wait_s)
    return StageSpec(**common, arguments=(sd.name, *_arguments(opts)))


def plan_job(request: JobRequest, settings: PlanSettings) -> JobPlan:
    """Build the plan of ``request`` under ``settings`` (pure; raises ConfigInvalid on bad options)."""
    if not settings.root.endswith("/") or not settings.root.startswith(("s3://", "file://")):
        raise ConfigInvalid(f"Plan root {settings.root!r} must be s3://bucket/ or file:///dir/ ending with '/'")
    preset = request.preset or settings.default_preset
    if preset not in PRESET_NAMES:
        raise ConfigInvalid(f"Unknown preset {preset!r}", f"Use one of: {', '.join(PRESET_NAMES)}")
    configurable = [s.name for s in graph.GRAPH if s.config is not None]
    unknown = sorted(set(request.options) - set(configurable))
    if unknown:
        raise ConfigInvalid(
            f"Options given for unknown stage(s) {', '.join(unknown)}",
            f"Give options only for: {', '.join(configurable)}",
        )
    job_id = job_id_for(request.source_uri, request.source_version)
    prefix = f"{settings.root}jobs/{job_id}/"
    stages = tuple(_stage_spec(sd, job_id, preset, request, settings, prefix) for sd in graph.GRAPH)
    return JobPlan(job_id=job_id, root=settings.root, request=request, preset=preset, stages=stages,
                   role_arn=settings.role_arn)


def settings_from_mapping(values: Mapping[str, Any], **overrides: Any) -> PlanSettings:
    """PlanSettings from a flat JSON mapping (Lambda env, cdk.json): ``{"train": {"instance_type": ..}}``."""
    data = {**values, **overrides}
    kwargs: dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(PlanSettings)}
    for key, value in data.items():
        if key not in names:
            raise ConfigInvalid(f"Unknown plan setting {key!r}", f"Use one of: {', '.join(sorted(names))}")
        if key in graph.JOB_KINDS:
            kwargs[key] = StageResources(**value) if isinstance(value, Mapping) else value
        else:
            kwargs[key] = value
    return PlanSettings(**kwargs)
