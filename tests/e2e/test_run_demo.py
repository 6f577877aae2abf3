"""The demo scene through `spaceport run --preset fast`: every artifact, measured quality, resume."""

from __future__ import annotations

import pytest

from spaceport.core import contract
from spaceport.core.graph import GRAPH, STAGE_IMAGE
from spaceport.core.summaries import JobRecord, SfmSummary, TrainMetrics, read_summary
from spaceport.geometry.splat import read_ply
from spaceport.local.runner import build_local_plan

# Measured on the 24-view 640x480 demo scene with the fast preset (see bench/results/e2e.md);
# the bounds leave room for nondeterminism, not for a regression. Held-out PSNR measured 24.26-24.82 dB
# in six runs on 2026-11-27 and once 20.59 dB (unreproduced, on the code before issues 9-14; SfM's
# extraction is not bit-reproducible); a broken trainer lands near 13 dB (30 steps).
PSNR_RANGE = (20.0, 30.0)  # held-out PSNR, dB
SOG_BYTES_RANGE = (300_000, 1_500_000)  # measured 672,606 bytes (35,641 Gaussians, SH1)

pytestmark = pytest.mark.slow


def test_demo_produces_report_splat_and_sog(demo_run) -> None:
    out = demo_run.out
    for rel in ("report/index.html", "report/viewer.html", "report/scene.sog", "report/playcanvas.min.mjs",
                "compressed/scene.sog", "compressed/scene.spz", "train/splat.ply", "train/metrics.json",
                "sfm/sfm.json", "sfm/sparse/0/images.bin", "request.json", "job.json"):
        assert (out / rel).is_file(), rel
    # Every stage's summary, and the job record, validate against their models.
    for sd in GRAPH:
        if sd.summary_file:  # the stages that write a summary file (the gate returns its result)
            read_summary(sd.summary, out / sd.folder / sd.summary_file)
    job = read_summary(JobRecord, out / "job.json")
    assert job.status == "SUCCEEDED" and job.failure is None
    metrics = read_summary(TrainMetrics, out / "train" / "metrics.json")
    assert len(metrics.history) == 400 // 50  # fast: log_every 50
    psnr = metrics.test_psnr
    sog = (out / "compressed" / "scene.sog").stat().st_size
    print(f"held-out PSNR {psnr:.2f} dB, scene.sog {sog} bytes, {metrics.num_gaussians} Gaussians, "
          f"run {demo_run.seconds:.0f} s")
    assert PSNR_RANGE[0] <= psnr <= PSNR_RANGE[1]
    assert SOG_BYTES_RANGE[0] <= sog <= SOG_BYTES_RANGE[1]
    assert len(read_ply(out / "train" / "splat.ply")) == metrics.num_gaussians
    assert read_summary(SfmSummary, out / "sfm" / "sfm.json").registered_images == 24
    page = (out / "report" / "index.html").read_text()
    assert "Held-out views (3)" in page and 'alt="loss"' in page and 'alt="psnr"' in page
    assert page.count("data:image/") >= 4
    # No scratch left behind.
    assert not (out / ".scratch").exists()


def test_each_stage_ran_with_the_argv_sagemaker_would_use(demo_run) -> None:
    """The runner logs each stage's argv first: the image's ENTRYPOINT + `train` or the plan's arguments."""
    plan = build_local_plan(demo_run.scene / "images", demo_run.out, "fast").plan
    for spec in plan.stages:
        if spec.kind == "gate":
            continue
        argv = contract.stage_argv(spec.kind, STAGE_IMAGE[spec.name], spec.arguments)
        first = (demo_run.out / "logs" / f"{spec.name}.log").read_text().splitlines()[0]
        assert first.endswith(" -m spaceport " + " ".join(argv[1:])), (spec.name, first)


def test_demo_rerun_skips_every_stage(demo_run) -> None:
    ends = {e["stage"]: e for e in demo_run.rerun_events if e["event"] == "stage_end"}
    assert {s: ends[s]["status"] for s in ("sfm", "train", "compress", "publish")} == dict.fromkeys(
        ("sfm", "train", "compress", "publish"), "skipped")
    assert ends["quality_gate"]["status"] == "passed"
    assert not [e for e in demo_run.rerun_events if e["event"] == "progress"]  # no stage process ran
