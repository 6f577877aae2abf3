"""One frozen model per JSON summary: what each stage writes and every reader reads.

``sfm.json`` (:class:`SfmSummary`), ``metrics.json`` (:class:`TrainMetrics`, with the per-step
history so the report draws curves from a SageMaker ``model.tar.gz`` alone), ``compress.json``
(:class:`CompressSummary`), ``job.json`` (:class:`JobRecord`, both executors) and
``failure.json`` (:class:`~spaceport.core.errors.FailureRecord`, beside the errors it records).
Stages build them and write them with :func:`write_summary`; the runner, report, display,
quality gate, records and Lambdas read them with :func:`read_summary`, which names the file when
it does not validate (an output of an older version, a hand-edited file) instead of guessing.

Extension policy: every model forbids unknown keys (``extra="forbid"``). A key a stage writes
must be declared here, once, with its type and unit, so a renamed or misspelt key fails the
stage's own test instead of silently vanishing from the report. To add a field, add it here
(optional with a default, or as a nested optional sub-model for a group of fields such as a
``validation`` section) and write it in the stage. Headline numbers that the display, the job
record and the notification show come from each model's :meth:`headline`, the one list of them.

Pydantic only (no numpy, torch or boto3): the Lambdas bundle this module. It is long on purpose:
declarations only, so every field of every summary has its one home here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spaceport.core.errors import FailureRecord, ModelInvalid
from spaceport.core.files import write_atomic

S = TypeVar("S", bound="Summary")
Number = float | int


class _Model(BaseModel):
    """Frozen, closed: unknown keys are an error (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Summary(_Model):
    """A JSON file a stage writes beside its artifacts."""

    #: File name the stage writes (``sfm.json``, ...).
    FILE: ClassVar[str] = ""

    def headline(self) -> dict[str, Number | str | None]:
        """The few numbers the display and the job record show for this stage."""
        return {}

    def to_json(self) -> str:
        return self.model_dump_json(indent=1, exclude_none=False) + "\n"


# ---- sfm.json ----
class CameraInfo(_Model):
    """One camera model: COLMAP model name, size in pixels and its parameters (pixels)."""

    model: str
    width: int
    height: int
    params: list[float]


class MatcherMapper(_Model):
    matcher: str
    mapper: str


class AutoChoice(_Model):
    """Whether the matcher / mapper were chosen by ``auto``."""

    matcher: bool
    mapper: bool


class ValidationFigures(_Model):
    """What :mod:`spaceport.stages.sfm.validate` measured on one model (None where it does not apply)."""

    registered: int
    points: int
    baseline_depth_ratio: float
    """Median camera distance from the cameras' median over the median point depth."""
    median_triangulation_deg: float
    """Per point, the widest angle between two of its rays; the median, degrees."""
    usable_points_fraction: float
    """Points whose rays span at least 2 degrees."""
    path_neighbour_fraction: float | None = None
    """Video only: frames whose nearest camera is within 3 frames in time (recorded, not checked)."""
    points_thickness: float
    """Smallest over largest principal spread of the points (0 for a plane)."""
    view_spread_deg: float
    """Median angle of the optical axes from their mean, degrees."""
    verified_pairs: int | None = None
    pairs_checked: int | None = None
    pair_agreement: float | None = None
    """Median over verified pairs of the fraction of their inlier matches kept as one 3D point."""
    pairs_below_agreement: int | None = None
    planar_or_panoramic_pairs: float | None = None
    """Fraction of verified pairs related by a homography (recorded, not checked)."""
    wide_planar_pairs: float | None = None
    """The same over the far-apart half of the checked pairs (recorded, not checked)."""


class SfmValidation(_Model):
    """The validation verdict of one model: passed, which checks failed and why, figures and limits."""

    passed: bool
    failed: list[str]
    problems: list[str]
    """One sentence per failed check, naming the figure and its limit."""
    figures: ValidationFigures
    limits: dict[str, float]


class PrincipalPointRefinement(_Model):
    """The final bundle adjustment that refines the principal point (spaceport.stages.sfm.colmap_steps)."""

    kept: bool
    """False when it drifted beyond ``limit`` and the model was kept as mapped."""
    offset: float
    """Largest distance of a refined principal point from the image centre, fraction of width/height."""
    limit: float


class SfmAttempt(_Model):
    """One (matcher, mapper) attempt of the SfM stage."""

    matcher: str
    mapper: str
    verified_pairs: int
    registered: int
    match_seconds: float | None = None
    """Absent when the attempt reused an earlier attempt's matches."""
    map_seconds: float
    planar_or_panoramic_pairs: float | None = None
    """Fraction of the matcher's verified pairs related by a homography."""
    models: list[int] = Field(default_factory=list)
    """Registered images of every model the mapper made, largest first (two large ones: two scenes)."""
    validation: SfmValidation | None = None
    """Absent when the mapper made no model."""


class IngestSummary(_Model):
    """What ingest made of the upload (counts of files; ``sharpness`` of kept video frames)."""

    kind: Literal["images", "zip", "video"]
    """What was uploaded."""
    media: Literal["images", "video"]
    """What the images are: photos, or one video's frames in temporal order (a zip holds either)."""
    images_dir: str
    input_files: int
    corrupt: int
    skipped_other: int
    downscaled: int
    exif_rotated: int
    exif_cameras: int = 0
    """Images whose EXIF names the camera (make, model and a focal length)."""
    sizes: int = 0
    """Distinct pixel sizes among the usable images."""
    frames_decoded: int
    frames_blurry: int
    video_rotation: int = 0
    """Display rotation applied to the video's frames, degrees counter-clockwise."""
    sharpness: list[float]
    usable: int


class CameraPrior(_Model):
    """A camera as feature extraction made it, before SfM refined it."""

    width: int
    height: int
    focal: float
    """Starting focal length, pixels."""
    from_exif: bool
    """True: a prior from the photos' EXIF focal length; false: COLMAP's guess (1.2 x the longer side)."""
    images: int
    """Images sharing this camera."""


class Upright(_Model):
    """How the model was turned so the cameras' mean up is the world's up (spaceport.geometry.upright)."""

    found_up: list[float]
    """The up direction SfM's world had (unit vector)."""
    rotation: list[list[float]]
    """3x3 rotation applied, new_from_old."""


class SfmSummary(Summary):
    """``sfm.json``: the reconstruction's counts, errors, choices and timings."""

    FILE: ClassVar[str] = "sfm.json"

    input: str
    input_kind: Literal["images", "zip", "video"]
    input_images: int
    usable_images: int
    corrupt_images: int
    registered_images: int
    registered_fraction: float
    unregistered_images: list[str] = Field(default_factory=list)
    """Usable images SfM could not place (ingest's names: folders joined by ``__``)."""
    points: int
    mean_reprojection_error: float
    """Pixels."""
    mean_track_length: float
    matcher: str
    mapper: str
    auto: AutoChoice
    fallback: bool
    first_choice: MatcherMapper
    attempts: list[SfmAttempt]
    validation: SfmValidation | None = None
    """The kept model's verdict (spaceport.stages.sfm.validate); a stage that returns always has a passed one."""
    camera_before_undistortion: CameraInfo
    principal_point: PrincipalPointRefinement | None = None
    camera: CameraInfo
    """The first camera after undistortion (PINHOLE)."""
    camera_mode: str | None = None
    """COLMAP camera grouping used: AUTO, SINGLE or PER_IMAGE."""
    cameras: int = 1
    """Cameras in the model (one per group of photos that share one)."""
    camera_priors: list[CameraPrior] = Field(default_factory=list)
    """Every camera feature extraction made (also those of images that did not register)."""
    upright: Upright | None = None
    ingest: IngestSummary
    threads: int
    config: dict[str, str]
    """Every option of the stage as run, as strings (:func:`spaceport.core.config.to_strings`), as request.json has them."""
    seconds: dict[str, float]
    """Per phase and ``total``, seconds."""
    peak_memory_mb: float

    def headline(self) -> dict[str, Number | str | None]:
        return {"registered_images": self.registered_images, "usable_images": self.usable_images,
                "points": self.points, "mean_reprojection_error": self.mean_reprojection_error}


# ---- metrics.json ----
class TrainStep(_Model):
    """One point of the training curve (a progress line): loss and PSNR of the step's view, or a
    held-out evaluation (``test_psnr``) during early stopping."""

    step: int
    loss: float | None = None
    psnr: float | None = None
    """dB, of the view trained at this step."""
    test_psnr: float | None = None
    """dB, mean over the held-out views (only at evaluation steps)."""
    num_gaussians: int | None = None


class TrainBudget(_Model):
    """A time-budgeted training run: the budget, the plan's expected seconds, how it ended."""

    minutes: float
    expected_s: float
    """Seconds of the whole stage the calibrated plan expected (printed before training started)."""
    planned_steps: int
    refitted_steps: int | None = None
    """The step count the schedule was re-fitted to when the machine's pace differed from the calibration."""
    stopped_at_deadline: bool
    """True when the loop ran out of time before the planned steps."""


class ExposureFit(_Model):
    """The photos' EXIF exposures and the tone exponent learned for them
    (:mod:`spaceport.stages.train.exposure`): renders are compared at ``(H / reference) ** gamma``."""

    references: dict[str, float]
    """Each camera's (EXIF make and model) training photos' median exposure (time x ISO /
    f-number²): the exported splat's."""
    spread: float
    """Largest over smallest exposure of all the photos, each over its camera's median."""
    gamma: float
    """The learned exponent (starts at 1/2.2)."""


class CaptureFigures(_Model):
    """Figures of the capture itself that the quality gate reads (:mod:`spaceport.stages.train.capture`):
    none depends on how long training ran."""

    sharpness: float
    """Median over every view of Laplacian energy over gradient energy with the image box-averaged to
    256 pixels on its longer side, 1/px²: 4 and up in focus, below 0.5 heavily blurred."""
    sharpness_min: float
    """The least sharp view's figure, 1/px²."""
    held_out_offset: float | None = None
    """The held-out view farthest from the training views: its distance or turn to the nearest
    training camera over the widest such gap between neighbouring training cameras (below 1:
    covered like the rest; None: nothing held out)."""
    held_out_farthest: str | None = None
    """That held-out view's image name."""
    baseline_psnr: float | None = None
    """dB, mean over the held-out views of the PSNR of each photo's own mean colour: what a render
    that learned nothing scores (None: nothing held out)."""


class HeldOutAtSize(_Model):
    """The held-out views measured at another image size than training's."""

    width: int
    height: int
    downscale: int
    psnr: float
    """dB, mean over the held-out views."""
    ssim: float


class TrainMetrics(Summary):
    """``metrics.json``: held-out quality, counts, timings and the per-step history."""

    FILE: ClassVar[str] = "metrics.json"

    test_psnr: float
    """dB, mean over the held-out views (``evaluated_on`` says which)."""
    test_ssim: float
    lpips: float | None = None
    lpips_note: str = ""
    train_psnr: float
    num_gaussians: int
    steps: int
    stopped_early: bool
    target_psnr: float | None = None
    sh_degree: int
    held_out: list[str]
    evaluated_on: str
    train_images: int
    width: int
    height: int
    splat_bytes: int
    device: str
    strategy: str
    resumed_from_step: int | None = None
    malloc_tuned: bool
    seconds: dict[str, float]
    seconds_per_step: float
    peak_memory_mb: float
    peak_cuda_memory_mb: float | None = None
    capture: CaptureFigures | None = None
    """The capture's own figures the quality gate reads (None: written by a version without them)."""
    budget: TrainBudget | None = None
    """With a time budget (``minutes``): what was planned and how it ended."""
    exposure: ExposureFit | None = None
    """How the photos' exposures were matched (None: off, or no EXIF exposures to match)."""
    held_out_coarse: HeldOutAtSize | None = None
    """The held-out views again at the coarsest size a time budget considers (the ``fast`` preset's: the
    longest side the first power-of-two downscale that keeps it at least 150 px), when training ran
    finer. ``test_psnr`` is measured at the training size, where finer detail is harder to match, so
    runs trained at different sizes compare here (None: trained at that size, or nothing held out)."""
    config: dict[str, str]
    """Every option of the stage as run, as strings (:func:`spaceport.core.config.to_strings`), as request.json has them."""
    history: list[TrainStep] = Field(default_factory=list)
    """Every progress line of the run, in step order (a resumed run keeps the steps before it)."""

    def headline(self) -> dict[str, Number | str | None]:
        c = self.held_out_coarse
        return {"test_psnr": self.test_psnr, "test_ssim": self.test_ssim, "num_gaussians": self.num_gaussians,
                "steps": self.steps, "size": f"{self.width}x{self.height}",
                **({"coarse_psnr": c.psnr, "coarse_size": f"{c.width}x{c.height}"} if c else {})}


# ---- cameras.json ----
class CameraView(_Model):
    """One camera of the training set, at the images' full resolution (OpenCV convention)."""

    name: str
    split: Literal["train", "test"]
    """``test``: held out from training and used for the held-out metrics."""
    width: int
    height: int
    K: list[list[float]]
    """3x3 intrinsics, pixels."""
    world_to_camera: list[list[float]]
    """4x4 world-to-camera transform (x right, y down, z forward)."""


class CamerasFile(Summary):
    """``cameras.json``: the cameras the splat was trained on (the viewer's start view, the
    compression's quality views, the report's camera plot)."""

    FILE: ClassVar[str] = "cameras.json"

    cameras: list[CameraView]


# ---- compress.json ----
class CompressInput(_Model):
    path: str
    format: str | None = None
    """What the input was read as (ply, spz, sog, model.tar.gz)."""
    bytes: int
    """Size of what the stage was given (PLY, SPZ, SOG or model.tar.gz)."""
    ply_bytes: int | None = None
    """Size of the PLY read (None when the input was another format)."""
    sh_degree: int


class GaussianCounts(_Model):
    input: int
    kept: int
    dropped_nonfinite: int
    dropped_degenerate: int
    dropped_for_budget: int


class CompressOutputs(_Model):
    """Bytes of each output, by its file name."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    sog: int = Field(alias="scene.sog")
    sog_dir: int = Field(alias="sog/")
    spz: int | None = Field(default=None, alias="scene.spz")


class PerFormat(_Model):
    sog: float
    spz: float | None = None


class BudgetAttempt(_Model):
    sh_degree: int
    gaussians: int
    sog_bytes: int


class Budget(_Model):
    size_budget_mb: float | None = None
    attempts: list[BudgetAttempt]


class FormatQuality(_Model):
    psnr: float
    """dB, decoded format's renders against the cleaned original's."""
    ssim: float


class CompressQuality(_Model):
    """What was measured, within the stage's time budget (a partial measurement says so)."""

    views: int
    """Views measured."""
    views_planned: int | None = None
    crop: float = 1.0
    """Fraction of each view's pixels compared (1: whole views)."""
    budget_seconds: float | None = None
    seconds: float | None = None
    camera_source: str
    resolution: list[int]
    formats: dict[str, FormatQuality]


class PaletteSearch(_Model):
    sample_rows: int
    """Gaussians sampled for the palette-size search."""
    tried: dict[str, float]
    """Colour error (levels) on the sample, by palette size."""


class ShPalette(_Model):
    """How the SOG spherical-harmonics palette size was chosen (spaceport.stages.compress.palette)."""

    policy: str
    entries: int
    colour_error_levels: float
    """Opacity-weighted RMS view-dependent colour error the palette adds, in 8-bit levels."""
    max_error_levels: float | None = None
    target_met: bool | None = None
    cap: int
    tried: dict[str, float]
    search: PaletteSearch | None = None
    note: str | None = None


class CompressSummary(Summary):
    """``compress.json``: sizes, ratios, what was dropped, and the decoded formats' quality."""

    FILE: ClassVar[str] = "compress.json"

    input: CompressInput
    gaussians: GaussianCounts
    sh_degree: int
    outputs: CompressOutputs
    ratio: PerFormat
    bytes_per_attribute: dict[str, int]
    sh_palette: ShPalette | None = None
    """None at SH degree 0 (no palette)."""
    bytes_per_gaussian: PerFormat
    budget: Budget
    quality: CompressQuality | None = None
    seconds: dict[str, float | dict[str, float]]
    peak_memory_mb: float
    config: dict[str, str]
    """Every option of the stage as run, as strings (:func:`spaceport.core.config.to_strings`), as request.json has them."""

    def headline(self) -> dict[str, Number | str | None]:
        return {"input_bytes": self.input.bytes, "sog_bytes": self.outputs.sog, "spz_bytes": self.outputs.spz,
                "ratio": self.ratio.sog}

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def to_json(self) -> str:
        return self.model_dump_json(indent=1, by_alias=True) + "\n"


# ---- request.json ----
class Asked(_Model):
    """The request as made: the upload and the user's choices (:class:`spaceport.core.plan.JobRequest`)."""

    source_uri: str
    source_version: str
    email: str | None = None
    preset: str | None = None
    """None: the deployment's default preset."""
    options: dict[str, dict[str, str]]
    """Per-stage option overrides, as given."""
    size_bytes: int | None = None


class RequestFile(Summary):
    """``request.json``: what was asked and every option it resolved to."""

    FILE: ClassVar[str] = "request.json"

    job_id: str
    request: Asked
    preset: str
    options: dict[str, dict[str, str]]
    """Every resolved option of every stage, as strings (the quality gate's: its thresholds)."""


# ---- job.json ----
JobStatus = Literal["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "REJECTED", "INTERRUPTED"]


class GateResult(Summary):
    """The figures the quality gate compared and their limits (kept in the job record; no file of
    its own). A limit of 0 is a check switched off; a figure of None is one the training stage did
    not write (nothing held out, or an older ``metrics.json``), and its check is skipped."""

    passed: bool
    test_psnr: float
    num_gaussians: int
    min_psnr: float
    max_gaussians: int
    failed: list[str] = Field(default_factory=list)
    """The checks missed, by name (``train_views``, ``sharpness``, ``held_out_offset``, ``psnr_gain``,
    ``psnr``, ``gaussians``), in the order the gate reports them."""
    train_views: int | None = None
    min_train_views: int = 0
    sharpness: float | None = None
    """Median sharpness of the photos at the training resolution, 1/px² (:class:`CaptureFigures`)."""
    min_sharpness: float = 0.0
    held_out_offset: float | None = None
    """The farthest held-out view's offset from the training views over their widest gap."""
    held_out_farthest: str | None = None
    """That view's image name."""
    max_held_out_offset: float = 0.0
    psnr_gain: float | None = None
    """dB: held-out PSNR above the held-out photos' mean-colour PSNR."""
    min_psnr_gain: float = 0.0

    def headline(self) -> dict[str, Number | str | None]:
        numbers = self.model_dump(exclude={"failed"})
        if self.failed:
            numbers["failed"] = ", ".join(self.failed)
        return numbers  # type: ignore[return-value]


class PublishSummary(Summary):
    """What the Publish stage made (its progress line and the job record; no file of its own)."""

    index: str
    """Path of ``index.html``."""
    viewer: str | None = None
    """Path of ``viewer.html`` (None: no ``scene.sog`` to view)."""
    seconds: dict[str, float]
    """Per phase and ``total``, seconds."""
    peak_memory_mb: float


class StageRecord(_Model):
    """One stage in the job record: how it went, how long, what it cost, its headline numbers."""

    status: Literal["running", "done", "skipped", "passed", "failed", "interrupted"] | None = None
    seconds: float | None = None
    """Wall-clock seconds (SageMaker: start to end of the job)."""
    cpu_seconds: float | None = None
    peak_memory_mb: float | None = None
    """Peak resident memory of the stage process, MiB (local runs)."""
    job_name: str | None = None
    instance_type: str | None = None
    billable_seconds: float | None = None
    cost_usd: float | None = None
    numbers: dict[str, Number | str | bool | None] = Field(default_factory=dict)
    """The stage summary's :meth:`Summary.headline` (or the gate's numbers)."""
    failure: FailureRecord | None = None


class DoneMarker(_Model):
    """``DIR/.state/<stage>.json`` of a local run: written last when a stage's output is in place."""

    stage: str
    key: str
    """Hash of what the output depends on: the stage's options and the bytes of its inputs."""
    files: dict[str, tuple[int, str | None]]
    """Every output file by relative path: size in bytes and SHA-256 (None above the hashing limit)."""
    record: StageRecord
    """How the run that made the output went (a skipped re-run reports its peak memory)."""

    @classmethod
    def read(cls, path: Path) -> DoneMarker | None:
        """The marker at ``path``; None when there is none or it is not one (the stage then re-runs)."""
        try:
            return cls.model_validate_json(Path(path).read_bytes())
        except (OSError, ValidationError):
            return None


class Retry(_Model):
    stage: str
    attempt: int
    job_name: str
    wait_s: int
    error: str
    reason: str
    at: str


class Duplicate(_Model):
    """An upload event that started nothing because this job already covers it."""

    at: str
    """When start_job saw it (ISO 8601)."""
    reason: str
    """``duplicate event`` (the upload this job was started from, delivered again) or ``uploaded again
    while the job was running`` (the same content; upload it again once the job has ended)."""
    uploaded_at: str | None = None
    """When that upload's newest object was written (ISO 8601)."""


class Notification(_Model):
    sent: bool
    channel: str | None = None
    skipped: str | None = None
    error: str | None = None
    links_error: str | None = None
    """Why a success email went without result links (the secret or the domain missing)."""


class JobRecord(Summary):
    """``job.json`` (and the DynamoDB item on AWS): where a job stands, what it produced, why it failed."""

    FILE: ClassVar[str] = "job.json"

    job_id: str
    status: JobStatus
    preset: str | None = None
    source_uri: str | None = None
    email: str | None = None
    """Kept out of ``job.json`` on S3 (the report is shared by link); DynamoDB only."""
    prefix: str | None = None
    execution_arn: str | None = None
    """AWS: the Step Functions execution running the job."""
    created_at: str | None = None
    updated_at: str | None = None
    request: RequestFile | None = None
    """``request.json``: what was asked and the options it resolved to."""
    stages: dict[str, StageRecord] = Field(default_factory=dict)
    images: dict[str, str] = Field(default_factory=dict)
    """AWS: the image each container stage runs, by digest (``<repository uri>@sha256:...``), as the
    plan fixed it when the job started (the state machine runs exactly these); empty locally."""
    quality_gate: GateResult | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    """AWS: the final value of each SageMaker metric definition of the training job."""
    outputs: dict[str, str] = Field(default_factory=dict)
    """Bucket keys (AWS) or paths (local) of what the job produced, by the plan's output names."""
    seconds: float | None = None
    cost_usd: float | None = None
    stage: str | None = None
    """The stage that failed."""
    failure: FailureRecord | None = None
    retries: list[Retry] = Field(default_factory=list)
    duplicates: list[Duplicate] = Field(default_factory=list)
    """AWS: upload events this job covered, which started nothing (a repeat, or the same content again
    while it ran)."""
    notify: Notification | None = None

    def public(self) -> dict[str, Any]:
        """The record without personal data and without unset fields (what ``job.json`` holds)."""
        return self.model_dump(mode="json", exclude={"email"}, exclude_none=True)


SUMMARIES: dict[str, type[Summary]] = {m.FILE: m for m in (SfmSummary, TrainMetrics, CompressSummary, JobRecord)}


def read_summary(cls: type[S], path: Path) -> S:
    """Read and validate ``path`` as ``cls``; :class:`ModelInvalid` naming the file when it is missing,
    not JSON, or not this model (an output of another version, or edited by hand)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ModelInvalid(f"{path} does not exist", "Run the stage that writes it first") from exc
    return parse_summary(cls, text, str(path))


def parse_summary(cls: type[S], text: str | bytes, name: str) -> S:
    """:func:`read_summary` on text already read (an S3 object, a tarball member); ``name`` names it."""
    try:
        return cls.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors()[:5])
        more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        raise ModelInvalid(
            f"{name} is not a valid {cls.FILE or cls.__name__} ({problems}{more})",
            "It was written by another version or edited: re-run the stage that writes it "
            "(`spaceport run ... --from <stage>`)", file=name) from exc


def write_summary(summary: Summary, folder: Path) -> Path:
    """Write ``summary`` as ``folder/<its FILE>`` atomically; return the path."""
    return write_atomic(Path(folder) / summary.FILE, summary.to_json())
