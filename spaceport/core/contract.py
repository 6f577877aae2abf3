"""The SageMaker container contract, in one place.

Processing jobs (SfM, Compress) see inputs under ``/opt/ml/processing/input/<name>`` and write
outputs under ``/opt/ml/processing/output/<name>``; options arrive as container arguments.
The Training job (Train) sees its channel under ``/opt/ml/input/data/<channel>``, its options in
``/opt/ml/input/config/hyperparameters.json`` (all values strings), writes the model to
``/opt/ml/model``, checkpoints to ``/opt/ml/checkpoints`` and a one-line reason to
``/opt/ml/output/failure`` on error (:func:`write_failure`). How SageMaker starts each image
(:func:`sagemaker_argv`, from the Dockerfile's ENTRYPOINT/CMD) is here too. The local runner lays a job directory out the same way
under ``SM_ROOT`` so that what works on a laptop works in the cloud.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from spaceport.core.errors import (
    ConfigInvalid,
    FailureRecord,
    SpaceportError,
    StageFailed,
    as_sentence,
    parse_failure,
)
from spaceport.core.files import write_atomic

#: Root of the SageMaker layout. Tests and the local runner point it elsewhere.
SM_ROOT_ENV = "SPACEPORT_SM_ROOT"


def sm_root() -> Path:
    return Path(os.environ.get(SM_ROOT_ENV, "/opt/ml"))


#: Where SageMaker lays a job out inside the container; :func:`sm_root` is that folder here.
SM_PREFIX = "/opt/ml/"


def container_path(kind: str, channel: str, *, output: bool = False) -> str:
    """The container folder of a stage's input or output channel, by SageMaker job kind: a
    processing job's ``processing/{input,output}/<channel>``, a training job's
    ``input/data/<channel>`` and its one output, ``model``."""
    if kind == "training":
        return SM_PREFIX + "model" if output else f"{SM_PREFIX}input/data/{channel}"
    return f"{SM_PREFIX}processing/{'output' if output else 'input'}/{channel}"


#: A training job's resumable checkpoints (synced to S3 by SageMaker) and its options file.
CHECKPOINTS = SM_PREFIX + "checkpoints"
HYPERPARAMETERS = SM_PREFIX + "input/config/hyperparameters.json"


def under(root: Path, container: str) -> Path:
    """The folder that stands for the container path ``container`` under a local SageMaker ``root``."""
    if not container.startswith(SM_PREFIX):
        raise ValueError(f"{container} is not under {SM_PREFIX}")
    return Path(root) / container[len(SM_PREFIX):]


def in_sagemaker() -> bool:
    """True inside a SageMaker job (its layout exists), or when SPACEPORT_SM_ROOT is set."""
    return SM_ROOT_ENV in os.environ or Path("/opt/ml/input/config").is_dir() or Path(
        "/opt/ml/processing"
    ).is_dir()


def read_hyperparameters(path: Path | None = None) -> dict[str, str]:
    """Read ``hyperparameters.json``; every value must be a string (SageMaker's rule)."""
    path = path or under(sm_root(), HYPERPARAMETERS)
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


def write_failure(error: BaseException, stage: str | None = None) -> FailureRecord:
    """Record why the stage failed: ``output/failure.json`` (the full :class:`FailureRecord`) and
    SageMaker's one-line files, both holding the record as one JSON line of at most 1 KiB.

    Training jobs read ``output/failure`` (-> ``FailureReason``); Processing jobs read
    ``output/message`` (-> ``ExitMessage``). Both are written, so the same entrypoint reports its
    error whichever kind of job runs it; :func:`spaceport.core.errors.parse_failure` reads them back.
    """
    if isinstance(error, SpaceportError):
        record = error.record(stage)
    else:  # a crash: its type and message are the reason
        reason = as_sentence(f"{type(error).__name__}: {error}".replace("\n", " ")[:900])
        record = StageFailed(reason).record(stage)
    root = sm_root() / "output"
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(root / FailureRecord.FILE, record.model_dump_json(indent=1) + "\n")
    line = record.line()
    for name in ("failure", "message"):
        write_atomic(root / name, line)
    return record


def read_failure(root: Path) -> FailureRecord | None:
    """The failure a stage left under a SageMaker-shaped ``root`` (None when it left none)."""
    full = root / "output" / FailureRecord.FILE
    if full.is_file():
        return FailureRecord.model_validate_json(full.read_text())
    for name in ("failure", "message"):
        p = root / "output" / name
        if p.is_file() and p.read_text().strip():
            return parse_failure(p.read_text())
    return None


# ---- how SageMaker starts a container ----
#: Folder of the stage images' Dockerfiles (``containers/<image>/Dockerfile``), in a source checkout.
CONTAINERS = Path(__file__).resolve().parents[2] / "containers"


@dataclass(frozen=True)
class ImageStart:
    """An image's ENTRYPOINT and CMD (exec form; a shell form becomes ``/bin/sh -c TEXT``)."""

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()


def _instruction_args(rest: str) -> tuple[str, ...]:
    rest = rest.strip()
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
    return ("/bin/sh", "-c", rest)


def parse_dockerfile(text: str, name: str = "Dockerfile") -> ImageStart:
    """ENTRYPOINT and CMD of the final build stage of a Dockerfile (the image that is pushed).

    Line continuations are joined and comments dropped; the last ENTRYPOINT/CMD after the last
    ``FROM`` wins, as in Docker. ConfigInvalid when the final stage sets no ENTRYPOINT (it would be
    inherited from a base image this parser cannot see).
    """
    lines, buf = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        lines.append(buf + stripped)
        buf = ""
    if buf:
        lines.append(buf)
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] = ()
    for line in lines:
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            entrypoint, cmd = None, ()
        elif word == "ENTRYPOINT":
            entrypoint, cmd = _instruction_args(rest), ()  # Docker: a new ENTRYPOINT resets CMD
        elif word == "CMD":
            cmd = _instruction_args(rest)
    if not entrypoint:
        raise ConfigInvalid(f"{name}: the final stage sets no ENTRYPOINT",
                            'End the Dockerfile with ENTRYPOINT ["spaceport"]')
    return ImageStart(entrypoint, cmd)


def image_start(image: str, containers: Path | None = None) -> ImageStart:
    """:func:`parse_dockerfile` of ``containers/<image>/Dockerfile``."""
    path = (containers or CONTAINERS) / image / "Dockerfile"
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise ConfigInvalid(f"{path} does not exist",
                            "Run `spaceport run` from a source checkout (it starts stages as their images do)") from exc
    return parse_dockerfile(text, str(path))


def sagemaker_argv(kind: str, image: ImageStart, *, container_entrypoint: tuple[str, ...] = (),
                   container_arguments: tuple[str, ...] | None = None) -> list[str]:
    """The argv SageMaker runs in the container.

    A training job runs ``docker run IMAGE train``: the ENTRYPOINT with the single argument
    ``train`` (the image's CMD is replaced), unless ``AlgorithmSpecification.ContainerEntrypoint``
    is set, which then runs with its ``ContainerArguments``. A processing job runs
    ``AppSpecification.ContainerEntrypoint`` (else the ENTRYPOINT) with ``ContainerArguments``
    (else the image's CMD, which Docker drops when the entrypoint is overridden).
    """
    if kind == "training":
        if container_entrypoint:
            return [*container_entrypoint, *(container_arguments or ())]
        return [*image.entrypoint, "train"]
    entry = container_entrypoint or image.entrypoint
    if container_arguments is not None:
        args: tuple[str, ...] = container_arguments
    else:
        args = () if container_entrypoint else image.cmd
    return [*entry, *args]


def stage_argv(kind: str, image: str, arguments: tuple[str, ...], containers: Path | None = None) -> list[str]:
    """The argv SageMaker starts a plan stage with: its image's Dockerfile, and the plan's
    ContainerArguments for a processing job (the ASL sets no ContainerEntrypoint)."""
    start = image_start(image, containers)
    return sagemaker_argv(kind, start, container_arguments=arguments if kind == "processing" else None)
