"""Typed errors shared by every stage, the Lambdas and the CLI.

The class name is the error name Step Functions sees (a stage writes ``"<ClassName>: <reason>"``
to the SageMaker failure file, and the Lambdas raise these directly), so ``Retry``/``Catch``
and the failure email match on it. Each error carries a one-sentence reason and what to do.
"""

from __future__ import annotations


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

    def one_line(self) -> str:
        """``"ClassName: reason fix"`` on one line: the SageMaker failure file and the CLI use this."""
        return f"{self.name}: {self.reason} {self.fix}".replace("\n", " ")

    def to_dict(self) -> dict:
        return {"error": self.name, "reason": self.reason, "fix": self.fix, "details": self.details}


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

    default_fix = "Capture more views with more overlap, or train longer with the 'quality' preset."


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


#: Every error class by name, for the Lambdas that turn a failure cause back into a message.
ERRORS: dict[str, type[SpaceportError]] = {}


def _collect(cls: type[SpaceportError]) -> None:
    ERRORS[cls.__name__] = cls
    for sub in cls.__subclasses__():
        _collect(sub)


_collect(SpaceportError)


def parse_failure(text: str) -> tuple[str, str]:
    """Split a ``"ClassName: message"`` failure line into ``(name, message)``.

    Unknown or unprefixed text comes back as ``("StageFailed", text)``.
    """
    head, sep, rest = text.strip().partition(":")
    if sep and head in ERRORS:
        return head, rest.strip()
    return "StageFailed", text.strip()
