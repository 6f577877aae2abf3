"""`spaceport publish` (the Publish Processing job) and `spaceport view` (serve a report locally)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from spaceport import contract, progress
from spaceport.errors import InputInvalid


def publish(root: Path, out: Path, job_record: Path | None = None) -> dict:
    """Build the report and viewer from a folder holding sfm/, train/, compressed/; return a summary."""
    import tempfile

    from spaceport.publish.report import StageInputs, below_target, build_report, unpack_model
    from spaceport.publish.viewer import build_viewer
    from spaceport.summaries import JobRecord, read_summary

    start = time.perf_counter()
    timings: dict[str, float] = {}
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise InputInvalid(f"{root} is not a folder", "Pass the job folder that holds sfm/, train/ and compressed/")
    inputs = StageInputs.from_root(root)
    if job_record is not None:
        inputs.job_record = job_record
    if not any((inputs.sfm, inputs.train, inputs.compressed)):
        raise InputInvalid(f"{root} holds none of sfm/, train/, compressed/", "Run the pipeline first")
    out.mkdir(parents=True, exist_ok=True)
    sog = inputs.compressed / "scene.sog" if inputs.compressed else None
    viewer = None
    with tempfile.TemporaryDirectory(prefix="spaceport-publish-") as scratch:
        if inputs.train is not None:
            # On AWS train/ holds model.tar.gz: its small files (metrics, cameras, renders) are unpacked here.
            inputs.train = unpack_model(inputs.train, Path(scratch))
        with progress.phase("publish", "viewer", timings):
            if sog is not None and sog.is_file():
                cams = inputs.train / "cameras.json" if inputs.train else None
                job = read_summary(JobRecord, inputs.job_record) if inputs.job_record else None
                banner = below_target(job)
                viewer = build_viewer(sog, out, cams, label="scene.sog (below target)" if banner else "scene.sog",
                                      banner=banner)
            else:
                inputs.notes.append("No scene.sog: the viewer was not built.")
        with progress.phase("publish", "report", timings):
            index = build_report(inputs, out)
    summary = {
        "index": str(index),
        "viewer": str(viewer) if viewer else None,
        "seconds": {**timings, "total": round(time.perf_counter() - start, 3)},
        "peak_memory_mb": round(progress.peak_rss_mb(), 1),
    }
    return summary


@click.command("publish")
@click.argument("input_dir", required=False, type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), help="Report folder (default: the SageMaker output).")
@click.option("--job-record", type=click.Path(path_type=Path), help="job.json to include (default: INPUT/job.json).")
def publish_command(input_dir: Path | None, out: Path | None, job_record: Path | None) -> None:
    """Build the report (index.html) and the viewer (viewer.html + scene.sog) for a finished job.

    INPUT holds sfm/, train/ and compressed/ (default: the Processing job's inputs).
    """
    paths = contract.processing_paths()
    root = input_dir or paths.root / "processing" / "input"
    out = out or paths.output("report")
    summary = publish(root, out, job_record)
    progress.emit("publish", final=1, report=summary["index"], seconds=summary["seconds"]["total"])


@click.command("view")
@click.argument("directory", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--port", default=8000, show_default=True, help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--open/--no-open", "open_browser", default=True, help="Open the viewer in the default browser.")
def view_command(directory: Path, port: int, open_browser: bool) -> None:
    """Serve a run's report and viewer on http://127.0.0.1 (DIRECTORY: the run folder or its report/)."""
    from spaceport.publish.serve import serve

    serve(directory, port=port, open_browser=open_browser)
