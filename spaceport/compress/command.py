"""`spaceport compress [INPUT] [--out DIR] [--preset NAME] [--<option> VALUE ...]`."""

from __future__ import annotations

from pathlib import Path

import click

from spaceport.config import click_options, from_strings

from .config import PRESETS, CompressConfig


@click.command("compress")
@click.argument("input_path", required=False, type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: /opt/ml/processing/output/compressed].")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="default", show_default=True,
              help="Named option set; flags override it.")
@click_options(CompressConfig)
def compress(input_path: Path | None, out: Path | None, preset: str, config_overrides: dict[str, str]) -> None:
    """Compress a splat (3DGS .ply, .spz v1-v4, .sog or its folder, model.tar.gz) into scene.sog, sog/ and scene.spz."""
    from spaceport import contract

    from .stage import run  # numpy/torch/Pillow only when the command runs

    paths = contract.processing_paths()
    cfg = from_strings(CompressConfig, PRESETS[preset])
    cfg = from_strings(CompressConfig, config_overrides, base=cfg)
    run(input_path or paths.input("model"), out or paths.output("compressed"), cfg)
