"""The one entry point every container stage runs through:
``spaceport <stage> [INPUT] [--out DIR] [--preset NAME] [--<option> VALUE ...]``.

The command of each stage is built from its graph entry (:class:`spaceport.core.stage.StageDef`):

- options resolve in one place, :meth:`StageDef.resolve` (defaults <- preset <- overrides); the
  overrides are the flags (a processing job's ContainerArguments) and, for a training job run
  with no INPUT, ``hyperparameters.json`` (its key ``preset`` picks the preset; flags win);
- paths: INPUT is the stage's one input channel, or for a stage with several a folder holding one
  per channel (a job folder does); with no INPUT/--out, the SageMaker container paths of the
  graph's channels (:func:`spaceport.core.contract.container_path`, under ``SPACEPORT_SM_ROOT``);
- the stage's ``run(config, paths)`` returns its summary model; a failure inside a SageMaker job
  is written as ``failure.json`` plus SageMaker's one-line files (:func:`spaceport.core.contract.write_failure`)
  before the CLI's error boundary prints it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click

from spaceport.core import contract
from spaceport.core.config import click_options
from spaceport.core.errors import StageFailed
from spaceport.core.stage import StageDef, StagePaths


def sagemaker_paths(sd: StageDef) -> StagePaths:
    """The stage's channels where its SageMaker job sees them (under :func:`contract.sm_root`)."""
    root = contract.sm_root()
    inputs = {i.channel: contract.under(root, contract.container_path(sd.kind, i.channel)) for i in sd.inputs}
    output = contract.under(root, contract.container_path(sd.kind, sd.output, output=True))
    checkpoints = contract.under(root, contract.CHECKPOINTS) if sd.kind == "training" else None
    return StagePaths(inputs, output, checkpoints)


def resolve_paths(sd: StageDef, source: Path | None, out: Path | None, checkpoints: Path | None = None) -> StagePaths:
    """The command's paths: given ones, else the SageMaker ones. A training stage run with an
    ``--out`` of its own keeps its checkpoints in ``OUT/checkpoints``."""
    sm = sagemaker_paths(sd)
    inputs = dict(sm.inputs)
    if source is not None:
        inputs = {sd.inputs[0].channel: Path(source)} if len(sd.inputs) == 1 else sd.inputs_under(Path(source))
    output = Path(out) if out is not None else sm.output
    if sd.kind == "training" and checkpoints is None:
        checkpoints = sm.checkpoints if output == sm.output else output / "checkpoints"
    return StagePaths(inputs, output, checkpoints if sd.kind == "training" else None)


def resolve_config(sd: StageDef, preset: str | None, flags: Mapping[str, str], *, from_job: bool) -> Any:
    """The stage's config from its flags and, in a training job (``from_job``), hyperparameters.json."""
    values: dict[str, str] = {}
    if from_job and sd.kind == "training":
        values = contract.read_hyperparameters()
    job_preset = values.pop("preset", None)
    return sd.resolve(preset or job_preset or "default", {**values, **flags})


@contextlib.contextmanager
def failure_recorded(sd: StageDef) -> Iterator[None]:
    """Inside a SageMaker job, any failure in the block is written for the job (``failure.json``
    and SageMaker's one-line files, naming the stage) before it is re-raised."""
    try:
        yield
    except Exception as exc:
        if contract.in_sagemaker():
            contract.write_failure(exc, sd.name)
        raise


def run_stage(sd: StageDef, config: Any, paths: StagePaths) -> Any:
    """``sd.run(config, paths)``; the summary it returns must be the stage's summary model."""
    summary = sd.run(config, paths)
    if sd.summary is not None and not isinstance(summary, sd.summary):
        raise StageFailed(f"the {sd.name} stage returned {type(summary).__name__}, not its {sd.summary.__name__}",
                          "Report this as a bug in the stage")
    return summary


def _help(sd: StageDef) -> str:
    """The first paragraph of the stage package's docstring, and what INPUT is."""
    doc = (sys.modules[sd.run.__module__].__doc__ or sd.title).strip().split("\n\n")[0]
    if len(sd.inputs) == 1:
        return f"{doc}\n\nINPUT defaults to {contract.container_path(sd.kind, sd.inputs[0].channel)}."
    names = ", ".join(f"{i.channel}/" for i in sd.inputs)
    parent = contract.container_path(sd.kind, "").rstrip("/")
    return f"{doc}\n\nINPUT is a folder holding {names} (a job folder does); it defaults to {parent}."


def stage_command(sd: StageDef) -> click.Command:
    """The click command of a container stage, built from its graph entry."""
    out_default = contract.container_path(sd.kind, sd.output, output=True)

    def command(input_path: Path | None, out: Path | None, config_overrides: dict[str, str],
                preset: str | None = None, checkpoints: Path | None = None) -> None:
        with failure_recorded(sd):
            paths = resolve_paths(sd, input_path, out, checkpoints)
            config = resolve_config(sd, preset, config_overrides, from_job=input_path is None)
            run_stage(sd, config, paths)

    def collect(fn: Any) -> Any:  # a stage without options still gets the keyword
        def wrapper(**kwargs: Any) -> Any:
            return fn(config_overrides={}, **kwargs)
        return wrapper

    fn: Any = click_options(sd.config)(command) if sd.config is not None else collect(command)
    if sd.kind == "training":
        fn = click.option("--checkpoints", type=click.Path(file_okay=False, path_type=Path), default=None,
                          help=f"Resumable checkpoints. Default: {contract.CHECKPOINTS} in a job, OUT/checkpoints "
                               "with --out.")(fn)
    if sd.config is not None:
        fn = click.option("--preset", type=click.Choice(sorted(sd.presets)), default=None,
                          help="Named set of option values [default: default]; flags override it.")(fn)
    fn = click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
                      help=f"Output folder [default: {out_default}].")(fn)
    fn = click.argument("input_path", metavar="[INPUT]", required=False, type=click.Path(path_type=Path))(fn)
    return click.command(sd.name, help=_help(sd))(fn)
