"""`spaceport run`: the whole pipeline on this machine (see :mod:`spaceport.local.runner`)."""

from __future__ import annotations

from pathlib import Path

import click

from spaceport.core import graph
from spaceport.core.config import parse_stage_options


@click.command("run")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Job folder: request.json, sfm/, train/, compressed/, report/, job.json land here.")
@click.option("--preset", default=None,
              help="fast (CPU demo), default or quality. Default: 'default' with a GPU; without one, "
                   "'fast' trained to the time budget (--minutes, 10 by default).")
@click.option("--minutes", type=float, default=None,
              help="Training time budget in minutes: a short calibration here picks the resolution, steps and "
                   "Gaussian cap that fit, and training stops at the deadline.")
@click.option("--from", "from_stage", type=click.Choice(graph.STAGES),
              help="Re-run from this stage even if its outputs are complete.")
@click.option("--set", "sets", multiple=True, metavar="STAGE.OPTION=VALUE",
              help="Override one stage option (repeatable), e.g. --set train.steps=500.")
@click.option("--min-psnr", type=float, help="Quality gate: held-out PSNR target in dB (default: the plan's).")
@click.option("--max-gaussians", type=int, help="Quality gate: largest Gaussian count (default: the plan's).")
@click.option("--quiet", "mode", flag_value="quiet", help="Print only the report's path.")
@click.option("--json", "mode", flag_value="json", help="Print JSON lines (one per event).")
@click.option("--plain", "mode", flag_value="plain", help="Print plain progress lines (no live display).")
def run_command(input_path: Path, out: Path, preset: str | None, minutes: float | None, from_stage: str | None, sets: tuple[str, ...],
                min_psnr: float | None, max_gaussians: int | None, mode: str | None) -> None:
    """Photos (a folder or a .zip) or a video in; a splat, a report and a 3-D viewer out.

    Runs SfM -> Train -> QualityGate -> Compress -> Publish on this machine, each stage laid out
    as its SageMaker job sees it. Re-running skips the stages whose outputs are complete.
    """
    from spaceport.local.display import make_reporter
    from spaceport.local.runner import run_local

    reporter = make_reporter(mode or "auto")
    try:
        run_local(input_path, out, preset, force_from=from_stage, options=parse_stage_options(sets),
                  min_psnr=min_psnr, max_gaussians=max_gaussians, reporter=reporter, minutes=minutes)
    finally:
        reporter.close()
