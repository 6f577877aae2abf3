"""`spaceport train`: the SageMaker Training job entrypoint and the local command.

With no INPUT/--out it runs under the Training job contract: channel /opt/ml/input/data/sfm,
options from /opt/ml/input/config/hyperparameters.json (all strings; CLI flags override; the key
``preset`` picks a preset), model to /opt/ml/model, checkpoints in /opt/ml/checkpoints. The error
boundary in spaceport.cli writes /opt/ml/output/failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from spaceport.config import click_options
from spaceport.train.config import PRESETS, TrainConfig

#: glibc malloc settings applied to the process (see rasterize.tune_malloc); env vars still win.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def resolve(input_dir: Path | None, out: Path | None, checkpoints: Path | None, preset: str | None,
            overrides: dict[str, str]) -> tuple[Path, Path, Path | None, TrainConfig]:
    """Paths and options, local or SageMaker (hyperparameters under CLI flags)."""
    from spaceport import contract
    from spaceport.train.config import config_for

    sm = contract.training_paths()
    values: dict[str, str] = {}
    if input_dir is None:  # the Training job: hyperparameters.json is the option source
        values = contract.read_hyperparameters(sm.hyperparameters)
    preset = preset or values.pop("preset", None)
    values.pop("preset", None)
    values.update(overrides)
    cfg = config_for(preset, values)
    input_dir = input_dir or sm.channel("sfm")
    out = out or sm.model
    if checkpoints is None:
        checkpoints = sm.checkpoints if out == sm.model else out / "checkpoints"
    return input_dir, out, checkpoints, cfg


@click.command("train")
@click.argument("input_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (splat.ply, metrics.json, cameras.json, renders/). Default: /opt/ml/model.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
              help="Start from a preset ('fast' is the CPU demo setting).")
@click.option("--checkpoints", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Resumable checkpoints. Default: /opt/ml/checkpoints in a job, OUT/checkpoints locally.")
@click_options(TrainConfig)
def train_command(input_dir: Path | None, out: Path | None, preset: str | None, checkpoints: Path | None,
                  config_overrides: dict[str, str]) -> None:
    """Train a Gaussian splat from an SfM output folder (sparse/0 + images/)."""
    for key, value in MALLOC_ENV.items():
        os.environ.setdefault(key, value)  # inherited by any child process
    from spaceport.train.trainer import train

    input_dir, out, checkpoints, cfg = resolve(input_dir, out, checkpoints, preset, config_overrides)
    train(input_dir, out, cfg, checkpoint_dir=checkpoints)
