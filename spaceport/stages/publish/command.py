"""The Publish stage's work (:func:`publish`) and `spaceport view` (serve a report locally)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import click

from spaceport.core.errors import InputInvalid
from spaceport.core.summaries import PublishSummary
from spaceport.local import progress


def publish(inputs: Path | Mapping[str, Path], out: Path) -> PublishSummary:
    """Build the report and viewer into ``out`` from the stage outputs: the publish stage's input
    channels by name, or a folder holding them (a job folder: ``sfm/ train/ compressed/ job.json``)."""
    from spaceport.core.summaries import JobRecord, read_summary
    from spaceport.stages.publish import STAGE
    from spaceport.stages.publish.report import StageInputs, below_target, build_report, unpack_model
    from spaceport.stages.publish.viewer import build_viewer

    start = time.perf_counter()
    timings: dict[str, float] = {}
    if not isinstance(inputs, Mapping):
        if not Path(inputs).is_dir():
            raise InputInvalid(f"{inputs} is not a folder", "Pass the job folder that holds sfm/, train/ and compressed/")
        inputs = STAGE.inputs_under(Path(inputs))
    found = StageInputs.from_channels(inputs)
    if not any((found.sfm, found.train, found.compressed)):
        raise InputInvalid(f"none of {', '.join(str(p) for p in inputs.values())} holds a stage's output",
                           "Run the pipeline first")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sog = found.compressed / "scene.sog" if found.compressed else None
    viewer = None
    with tempfile.TemporaryDirectory(prefix="spaceport-publish-") as scratch:
        if found.train is not None:
            # On AWS train/ holds model.tar.gz: its small files (metrics, cameras, renders) are unpacked here.
            found.train = unpack_model(found.train, Path(scratch))
        with progress.phase("publish", "viewer", timings):
            if sog is not None and sog.is_file():
                cams = found.train / "cameras.json" if found.train else None
                job = read_summary(JobRecord, found.job_record) if found.job_record else None
                banner = below_target(job)
                viewer = build_viewer(sog, out, cams, label="scene.sog (below target)" if banner else "scene.sog",
                                      banner=banner)
            else:
                found.notes.append("No scene.sog: the viewer was not built.")
        with progress.phase("publish", "report", timings):
            index = build_report(found, out)
    total = round(time.perf_counter() - start, 3)
    progress.emit("publish", final=1, report=str(index), seconds=total)
    return PublishSummary(index=str(index), viewer=str(viewer) if viewer else None,
                          seconds={**timings, "total": total}, peak_memory_mb=round(progress.peak_rss_mb(), 1))


@click.command("view")
@click.argument("directory", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--port", default=8000, show_default=True, help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--open/--no-open", "open_browser", default=True, help="Open the viewer in the default browser.")
def view_command(directory: Path, port: int, open_browser: bool) -> None:
    """Serve a run's report and viewer on http://127.0.0.1 (DIRECTORY: the run folder or its report/)."""
    from spaceport.stages.publish.serve import serve

    serve(directory, port=port, open_browser=open_browser)
