"""Typed errors shared by every stage, the Lambdas and the CLI, and the failure record they cross
processes as.

The class name is the error name Step Functions sees (the Lambdas raise these directly; a stage
writes its :class:`FailureRecord` as one JSON line to SageMaker's failure file, which becomes the
job's FailureReason/ExitMessage), so ``Retry``/``Catch`` and the failure email match on it. Each
error carries a one-sentence reason and what to do. :func:`parse_failure` is the one reader of
that line, wherever it is embedded (``AlgorithmError: {...}``, a Step Functions Cause).
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError


def as_sentence(text: str) -> str:
    """``text`` ending in exactly one full stop, unless it already ends with '?' or '!'."""
    text = text.rstrip()
    return text if text.endswith(("?", "!")) else text.rstrip(".") + "."


class SpaceportError(Exception):
    """Base class. ``reason`` says what was wrong, ``fix`` says what the user should do."""

    #: Whether the workflow may retry the stage after this error. Bad input never is.
    retryable: bool = False
    #: Default advice when the raiser gives none.
    default_fix: str = "Check the input and try again."

    def __init__(self, reason: str, fix: str | None = None, **details: object) -> None:
        self.reason = as_sentence(reason)
        self.fix = as_sentence(fix or self.default_fix)
        #: Numbers that explain the failure (counts, thresholds), recorded in the job record.
        self.details = details
        super().__init__(f"{self.reason} {self.fix}")

    @property
    def name(self) -> str:
        return type(self).__name__

    def record(self, stage: str | None = None) -> FailureRecord:
        """This error as a :class:`FailureRecord` (details made JSON-safe)."""
        details = json.loads(json.dumps(self.details, default=str))
        return FailureRecord(error=self.name, reason=self.reason, fix=self.fix, details=details, stage=stage)


class FailureRecord(BaseModel):
    """``failure.json`` and SageMaker's one-line failure file: why a stage (or a job) failed."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    FILE: ClassVar[str] = "failure.json"

    error: str
    """The error class name (the Step Functions error name)."""
    reason: str
    """One sentence: what was wrong."""
    fix: str
    """One sentence: what to do."""
    details: dict[str, Any] = Field(default_factory=dict)
    """Numbers that explain the failure (counts, thresholds)."""
    stage: str | None = None

    def line(self, limit: int = 1024) -> str:
        """The record as one JSON line of at most ``limit`` UTF-8 bytes (SageMaker keeps 1 KiB):
        details go first, then the reason is shortened, so the line always parses."""
        for rec in (self, self.model_copy(update={"details": {}})):
            text = rec.model_dump_json(exclude_defaults=True)
            if len(text.encode()) <= limit:
                return text
        short = self.model_copy(update={"details": {}, "reason": ""})
        room = limit - len(short.model_dump_json(exclude_defaults=True).encode()) - 16
        reason = self.reason.encode()[:max(room, 0)].decode("utf-8", "ignore").rstrip() + "…"
        return self.model_copy(update={"details": {}, "reason": reason}).model_dump_json(exclude_defaults=True)

    def to_error(self) -> SpaceportError:
        """The typed error this record names (:class:`StageFailed` for a name not in :data:`ERRORS`)."""
        cls = ERRORS.get(self.error, StageFailed)
        err = cls.__new__(cls)
        Exception.__init__(err, f"{self.reason} {self.fix}")
        err.reason, err.fix, err.details = self.reason, self.fix, dict(self.details)
        return err


# ---- bad input: never retried ----
class InputInvalid(SpaceportError):
    """The upload or a stage input is not something Spaceport can use."""

    default_fix = "Upload a .zip of JPEG/PNG photos, a folder of photos, or a video (mp4/mov)."


class EmptyInput(InputInvalid):
    """The upload has no bytes or no files."""


class UnsupportedInput(InputInvalid):
    """Not an archive, an image or a video."""


class CorruptArchive(InputInvalid):
    """The zip cannot be read."""


class UnsafeArchive(InputInvalid):
    """The archive tries to escape its folder (``../``, absolute paths, links) or is a zip bomb."""

    default_fix = "Re-create the zip with only plain image files in relative folders."


class TooFewImages(InputInvalid):
    """Fewer usable images (or video frames) than the minimum."""

    default_fix = "Upload at least the minimum number of sharp, overlapping photos of the scene."


class NoUsableFrames(InputInvalid):
    """A video with no decodable or no sharp frames."""

    default_fix = "Upload a video recorded with a steady camera and moderate motion, or the photos instead."


class ConfigInvalid(InputInvalid):
    """An option or hyperparameter is unknown or has a bad value."""

    default_fix = "Fix the option named above; `spaceport <stage> --help` lists the options and their types."


class ModelInvalid(InputInvalid):
    """A stage input produced by an earlier stage (sparse model, PLY) is missing or malformed."""

    default_fix = "Re-run the earlier stage that produced this input."


# ---- processing failures ----
class SfmFailed(SpaceportError):
    """Structure-from-motion could not reconstruct the scene."""

    default_fix = "Take more photos with more overlap (about 70%) and texture, avoiding motion blur."


class TooFewRegistered(SfmFailed):
    """SfM registered too small a fraction of the images."""


class TrainingDiverged(SpaceportError):
    """NaN/Inf appeared during training; no splat is written."""

    default_fix = "Lower the learning rates (e.g. means_lr) or use the 'default' preset."


class OutOfMemory(SpaceportError):
    """The stage ran out of GPU or host memory."""

    default_fix = "Lower max_gaussians or set a larger downscale, or use a larger instance type."


class QualityBelowTarget(SpaceportError):
    """The trained splat missed the quality gate (held-out PSNR or Gaussian count)."""

    default_fix = ("Capture more views with more overlap, or give training more time (--minutes N; on a GPU the "
                   "'quality' preset).")


class CompressionFailed(SpaceportError):
    """The compressor could not encode the splat."""


class CapacityError(SpaceportError):
    """No capacity for the requested instance type; the workflow retries with backoff."""

    retryable = True
    default_fix = "Wait and retry, or request a quota increase for the instance type."


class UnsupportedSplat(ModelInvalid):
    """The compression input is not a splat format the stage reads (PLY, SPZ, SOG, model.tar.gz)."""

    default_fix = "Pass a 3DGS .ply, an .spz, a .sog (or its folder) or the training stage's model.tar.gz."


class GpuKernelFailed(SpaceportError):
    """A CUDA kernel or call failed during training (illegal address, launch failure, ...).

    ``details`` name the training step and the kernel (the gsplat operation on the stack, else the
    loop phase). CUDA reports errors asynchronously, so the kernel is the one whose launch or sync
    surfaced the error; ``CUDA_LAUNCH_BLOCKING=1`` pins it exactly.
    """

    default_fix = ("Retry the job once; if it fails again at the same step, rerun with CUDA_LAUNCH_BLOCKING=1 and "
                   "report the step and kernel named here")


class QuotaExceeded(SpaceportError):
    """The account's SageMaker quota for the instance type is below what one job needs (0 in a new
    account): waiting cannot help, so it is never retried."""

    default_fix = "Request a SageMaker quota increase for the instance type in Service Quotas (docs/aws.md lists them)."


class JobRejected(SpaceportError):
    """SageMaker refused to create a stage's job (a bad image, parameter, instance type or permission):
    the deployment's settings are wrong, not the upload, and waiting cannot help."""

    default_fix = "Fix the deployment setting named above, redeploy with `cdk deploy`, then upload again."


class StageFailed(SpaceportError):
    """A stage process ended with an error that carried no typed reason (a crash, a kill)."""

    default_fix = ("Read the stage's log (CloudWatch /aws/sagemaker/*Jobs on AWS, DIR/logs/<stage>.log for "
                   "`spaceport run`) and try again.")


class SfmDegenerate(SfmFailed):
    """Every reconstruction failed validation: a collapsed camera path or too little parallax (spaceport.stages.sfm.validate)."""

    default_fix = ("Capture again walking around the scene (do not turn on the spot or zoom), so that every part is "
                   "seen from several positions with about 70% overlap between neighbouring views.")


#: Every error class by name, for the Lambdas that turn a failure cause back into a message.
ERRORS: dict[str, type[SpaceportError]] = {}


def _collect(cls: type[SpaceportError]) -> None:
    ERRORS[cls.__name__] = cls
    for sub in cls.__subclasses__():
        _collect(sub)


_collect(SpaceportError)


_RECORD = re.compile(r"\{.*\}", re.DOTALL)
#: ``Name:`` of a known error anywhere in a text (SageMaker prefixes ``AlgorithmError:``).
_KNOWN = re.compile(r"\b(" + "|".join(sorted(ERRORS, key=len, reverse=True)) + r"):\s*")
_EXIT_CODE = re.compile(r",? exit code: ?\d+\.?\s*$")


def parse_failure(text: str) -> FailureRecord:
    """The failure record in ``text``: a stage's or Lambda's failure line (:meth:`FailureRecord.line`,
    maybe behind SageMaker's ``AlgorithmError:``), else a ``ClassName: message`` from elsewhere (its
    reason is the message, the fix the class's default), else the text itself as the reason of a
    :class:`StageFailed`."""
    text = (text or "").strip()
    found = _RECORD.search(text)
    if found:
        try:
            return FailureRecord.model_validate_json(found.group(0))
        except ValidationError:
            pass
    named = _KNOWN.search(text)
    if named:
        cls = ERRORS[named.group(1)]
        message = _EXIT_CODE.sub("", text[named.end():]).strip()
        if message.endswith(cls.default_fix):  # a bare `raise Name(reason)`: str() ends with the default fix
            message = message[: -len(cls.default_fix)].strip()
        return FailureRecord(error=cls.__name__, reason=as_sentence(message or "No reason given"),
                             fix=cls.default_fix)
    return FailureRecord(error="StageFailed", reason=as_sentence(text or "The stage failed without a reason"),
                         fix=StageFailed.default_fix)


def failures_as_records(handler: Any) -> Any:
    """Decorate a Lambda handler so a :class:`SpaceportError` leaves with its failure record line as
    its message: Step Functions' ``Cause`` then carries error, reason, fix and details whole (the
    error type, the class name, is what ``Retry``/``Catch`` match)."""
    import functools
    import os

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except SpaceportError as exc:
            exc.args = (exc.record(os.environ.get("SPACEPORT_STAGE")).line(),)
            raise

    return wrapper
