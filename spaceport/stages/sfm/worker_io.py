"""What crosses the process boundary to the pycolmap worker and back (:mod:`spaceport.stages.sfm.colmap_steps`).

The stage writes an :class:`SfmJob` as JSON, starts the worker on it, and reads an
:class:`SfmWorkerResult` back. The typed :class:`~spaceport.stages.sfm.config.SfmConfig` travels whole
(no string round trip), the attempts and the verdict are the models ``sfm.json`` holds, and a
failure comes back as a :class:`~spaceport.core.errors.FailureRecord` whose error the stage re-raises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from spaceport.core.errors import FailureRecord
from spaceport.core.summaries import (
    CameraInfo,
    CameraPrior,
    PrincipalPointRefinement,
    SfmAttempt,
    SfmValidation,
    Upright,
)
from spaceport.stages.sfm.config import SfmConfig


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SfmJob(_Model):
    """The worker's input: the ingested images and what to try on them."""

    work: Path
    """Scratch folder (databases, raw models)."""
    images: Path
    out: Path
    """Where ``sparse/0`` and the undistorted ``images/`` go."""
    names: list[str]
    """Image names in order (video: temporal order, which sequential matching relies on)."""
    media: Literal["images", "video"]
    config: SfmConfig
    camera_mode: Literal["AUTO", "SINGLE", "PER_IMAGE"]
    threads: int
    attempts: list[tuple[str, str]]
    """(matcher, mapper) pairs, tried in order until one registers enough images and validates."""
    min_registered: int
    result: Path
    """Where the worker writes its :class:`SfmWorkerResult`."""


class SfmWorkerResult(_Model):
    """The worker's output. Only ``failure`` is set when it failed; ``chosen`` is None when no
    attempt made a model; the model's numbers are set only when it is good enough to keep."""

    timings: dict[str, float] = Field(default_factory=dict)
    attempts: list[SfmAttempt] = Field(default_factory=list)
    chosen: int | None = None
    camera_priors: list[CameraPrior] = Field(default_factory=list)
    registered: int = 0
    registered_names: list[str] = Field(default_factory=list)
    validation: SfmValidation | None = None
    principal_point: PrincipalPointRefinement | None = None
    points: int | None = None
    mean_reprojection_error: float | None = None
    """Pixels."""
    mean_track_length: float | None = None
    camera: CameraInfo | None = None
    """The first camera before undistortion."""
    upright: Upright | None = None
    failure: FailureRecord | None = None
