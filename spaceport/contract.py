"""The SageMaker container contract, in one place.

Processing jobs (SfM, Compress) see inputs under ``/opt/ml/processing/input/<name>`` and write
outputs under ``/opt/ml/processing/output/<name>``; options arrive as container arguments.
The Training job (Train) sees its channel under ``/opt/ml/input/data/<channel>``, its options in
``/opt/ml/input/config/hyperparameters.json`` (all values strings), writes the model to
``/opt/ml/model``, checkpoints to ``/opt/ml/checkpoints`` and a one-line reason to
``/opt/ml/output/failure`` on error. The local runner lays a job directory out the same way
under ``SM_ROOT`` so that what works on a laptop works in the cloud.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from spaceport.errors import ConfigInvalid, SpaceportError

#: Root of the SageMaker layout. Tests and the local runner point it elsewhere.
SM_ROOT_ENV = "SPACEPORT_SM_ROOT"


def sm_root() -> Path:
    return Path(os.environ.get(SM_ROOT_ENV, "/opt/ml"))


@dataclass(frozen=True)
class ProcessingPaths:
    """Where a Processing job finds its input and writes its output."""

    root: Path

    def input(self, name: str) -> Path:
        return self.root / "processing" / "input" / name

    def output(self, name: str) -> Path:
        return self.root / "processing" / "output" / name


@dataclass(frozen=True)
class TrainingPaths:
    """Where a Training job finds its channel and config and writes its model."""

    root: Path

    def channel(self, name: str) -> Path:
        return self.root / "input" / "data" / name

    @property
    def hyperparameters(self) -> Path:
        return self.root / "input" / "config" / "hyperparameters.json"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def output_data(self) -> Path:
        return self.root / "output" / "data"

    @property
    def failure(self) -> Path:
        return self.root / "output" / "failure"


def processing_paths() -> ProcessingPaths:
    return ProcessingPaths(sm_root())


def training_paths() -> TrainingPaths:
    return TrainingPaths(sm_root())


def in_sagemaker() -> bool:
    """True inside a SageMaker job (its layout exists), or when SPACEPORT_SM_ROOT is set."""
    return SM_ROOT_ENV in os.environ or Path("/opt/ml/input/config").is_dir() or Path(
        "/opt/ml/processing"
    ).is_dir()


def read_hyperparameters(path: Path | None = None) -> dict[str, str]:
    """Read ``hyperparameters.json``; every value must be a string (SageMaker's rule)."""
    path = path or training_paths().hyperparameters
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text() or "{}")
    except json.JSONDecodeError as exc:
        raise ConfigInvalid(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise ConfigInvalid(f"{path} must hold a JSON object of option names to string values")
    bad = [k for k, v in data.items() if not isinstance(v, str)]
    if bad:
        raise ConfigInvalid(
            f"hyperparameters {', '.join(sorted(bad))} are not strings",
            "SageMaker passes every hyperparameter as a string; quote the values",
        )
    # SageMaker adds its own keys (sagemaker_*); they are not ours to validate.
    return {k: v for k, v in data.items() if not k.startswith("sagemaker_")}


def write_failure(error: BaseException, path: Path | None = None) -> Path:
    """Write the one-line failure reason SageMaker shows for a failed job (max 1 KiB).

    Training jobs read ``/opt/ml/output/failure`` (-> ``FailureReason``); Processing jobs read
    ``/opt/ml/output/message`` (-> ``ExitMessage``). With no ``path`` both are written, so the
    same entrypoint reports its error whichever kind of job runs it.
    """
    if isinstance(error, SpaceportError):
        line = error.one_line()
    else:
        line = f"{type(error).__name__}: {error}".replace("\n", " ")
    data = line.encode("utf-8")[:1024].decode("utf-8", "ignore")
    paths = [path] if path else [training_paths().failure, processing_message_path()]
    for target in paths:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data, encoding="utf-8")
    return paths[0]


def processing_message_path() -> Path:
    """``/opt/ml/output/message``: a Processing job's ``ExitMessage`` (first 1 KiB, UTF-8)."""
    return sm_root() / "output" / "message"
