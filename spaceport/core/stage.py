"""The stage template: what one stage package declares, once.

A stage is one package, ``spaceport/stages/<stage>/``, whose ``__init__.py`` defines ``STAGE``, a
:class:`StageDef`: its graph entry (job kind, image, input channels and who produces them, output
channel, the files that make its output complete), its options (one frozen dataclass and named
presets of it), its summary model and its ``run(config, paths) -> summary``. Everything else is
derived: the plan's job specs (:mod:`spaceport.core.plan`), the container paths and the CLI command
(:mod:`spaceport.core.entry`), the local runner's layout, resume keys and completeness checks
(:mod:`spaceport.local.runner`), the display, the report's timings, the job record and the notification
links. :mod:`spaceport.core.graph` lists the stage packages in execution order.

Options resolve along one path, :meth:`StageDef.resolve`: the config's defaults, then the named
preset, then the overrides (CLI flags, hyperparameters, a request's options).

Pure declarations (stdlib, :mod:`spaceport.core.config`): a stage package's ``__init__`` imports its
config module and :mod:`spaceport.core.summaries` (pydantic), never torch, numpy or pycolmap: the
Lambdas and the CDK app read the graph. ``run`` imports the heavy code inside its body.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from spaceport.core.errors import ConfigInvalid

Kind = Literal["processing", "training", "gate"]
#: How a stage receives an input: a stage's output folder, a training job's ``model.tar.gz``
#: (locally: the folder it was made from), the user's upload, or the job record (one object).
Form = Literal["folder", "model_tarball", "upload", "record"]
#: Producer names that are not stages.
UPLOAD, RECORD = "upload", "record"
#: The preset names every stage answers to (a stage's ``presets`` may leave some empty).
PRESET_NAMES: tuple[str, ...] = ("fast", "default", "quality")


@dataclass(frozen=True)
class Input:
    """One input channel of a stage."""

    channel: str
    """Channel name (SageMaker InputName / ChannelName, and the folder name in the container)."""
    producer: str
    """The stage whose output this is, or ``upload`` / ``record``."""
    form: Form


@dataclass(frozen=True)
class Product:
    """A file of a stage's output that a finished job links to (email, job record)."""

    name: str
    file: str
    label: str


@dataclass(frozen=True)
class StagePaths:
    """Where one run of a stage reads and writes: its input channels by name, its output folder,
    and (training) where resumable checkpoints live."""

    inputs: Mapping[str, Path]
    output: Path
    checkpoints: Path | None = None

    def input(self, channel: str | None = None) -> Path:
        """The folder of ``channel``; with no name, the stage's only input."""
        if channel is None:
            if len(self.inputs) != 1:
                raise ConfigInvalid(f"this stage has {len(self.inputs)} inputs; name one of {', '.join(self.inputs)}")
            return next(iter(self.inputs.values()))
        return self.inputs[channel]


#: ``run(config, paths) -> summary``: the stage's work. ``config`` is an instance of the stage's
#: config class (None when it has none); the summary is an instance of its summary model.
RunFn = Callable[[Any, StagePaths], Any]


def _no_presets() -> dict[str, dict[str, str]]:
    return {name: {} for name in PRESET_NAMES}


@dataclass(frozen=True)
class StageDef:
    """One stage of every job, as its package declares it."""

    name: str
    kind: Kind
    title: str
    """How the display and the email name the stage."""
    run: RunFn
    image: str = ""
    """Folder under ``containers/`` of the image it runs in (empty: no container, runs in-process)."""
    inputs: tuple[Input, ...] = ()
    output: str = ""
    """Output channel name (container stages)."""
    folder: str = ""
    """The job folder ``<prefix><folder>/`` that holds the stage's output."""
    required: tuple[str, ...] = ()
    """Files (or folders) that must be in the output for the stage to count as complete."""
    config: type | None = None
    """The stage's options: one frozen dataclass with a docstring under each field."""
    presets: Mapping[str, Mapping[str, str]] = field(default_factory=_no_presets)
    """Named overrides of the config's defaults, as strings."""
    summary: type | None = None
    """The stage's summary model (:mod:`spaceport.core.summaries`); its ``FILE`` is written beside the
    output (empty ``FILE``: a result kept only in the job record, as the gate's)."""
    products: tuple[Product, ...] = ()
    describe: Callable[[Mapping[str, Any]], str] | None = None
    """One line from the summary's headline numbers for the display (``PSNR 24.1 dB, ...``)."""

    @property
    def summary_file(self) -> str:
        return getattr(self.summary, "FILE", "") if self.summary is not None else ""

    def resolve(self, preset: str, overrides: Mapping[str, Any] | None = None) -> Any:
        """The stage's config: defaults <- ``presets[preset]`` <- ``overrides``. The one resolver:
        the plan, the stage command and the hyperparameters all come through here."""
        from spaceport.core.config import from_strings

        if preset not in self.presets:
            raise ConfigInvalid(f"Unknown {self.name} preset {preset!r}",
                                f"Use one of: {', '.join(self.presets)}", preset=preset)
        if self.config is None:
            if overrides:
                raise ConfigInvalid(f"Stage {self.name!r} takes no options", f"Remove the options for {self.name!r}")
            return None
        base = from_strings(self.config, dict(self.presets[preset]))
        return from_strings(self.config, dict(overrides or {}), base=base)

    def inputs_under(self, root: Path) -> dict[str, Path]:
        """The input channels of a folder laid out as the container's input folder or a job folder:
        ``root/<channel>``; a record channel is ``root/<channel>`` when it exists, else ``root``
        itself (a job folder holds ``job.json`` at its top)."""
        root = Path(root)
        return {i.channel: root / i.channel if i.form != "record" or (root / i.channel).is_dir() else root
                for i in self.inputs}

    def options(self, preset: str, overrides: Mapping[str, Any] | None = None) -> dict[str, str]:
        """:meth:`resolve` as strings, every field (request.json, hyperparameters, container arguments)."""
        from spaceport.core.config import to_strings

        config = self.resolve(preset, overrides)
        return to_strings(config) if config is not None else {}
