"""`spaceport sfm [INPUT] [--out DIR] [--preset NAME] [--<option> VALUE ...]`: the SfM stage."""

from __future__ import annotations

from pathlib import Path

import click

from spaceport.config import click_options, from_strings
from spaceport.sfm.config import PRESETS, SfmConfig


@click.command("sfm")
@click.argument("input_path", metavar="[INPUT]", required=False, type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder [default: /opt/ml/processing/output/sfm].")
@click.option("--preset", default="default", show_default=True, type=click.Choice(sorted(PRESETS)),
              help="Named set of option values; flags below override it.")
@click_options(SfmConfig)
def sfm(input_path: Path | None, out: Path | None, preset: str, config_overrides: dict[str, str]) -> None:
    """Photos (folder or zip) or a video in; PINHOLE cameras, sparse model and undistorted images out.

    INPUT defaults to /opt/ml/processing/input/upload (a folder that may hold one zip or video).
    """
    from spaceport.contract import processing_paths
    from spaceport.sfm.pipeline import run_sfm

    config = from_strings(SfmConfig, config_overrides, base=from_strings(SfmConfig, PRESETS[preset]))
    paths = processing_paths()
    run_sfm(input_path or paths.input("upload"), out or paths.output("sfm"), config)
