"""The demo scene through `spaceport run --preset fast`: every artifact, measured quality, resume."""

from __future__ import annotations

import json

import pytest

from spaceport.splat import read_ply

# Measured on the 24-view 640x480 demo scene with the fast preset (see bench/results/e2e.md);
# the bounds leave room for thread-count nondeterminism, not for a regression.
PSNR_RANGE = (21.0, 30.0)  # held-out PSNR, dB (measured 24.44)
SOG_BYTES_RANGE = (300_000, 1_500_000)  # measured 672,606 bytes (35,641 Gaussians, SH1)

pytestmark = pytest.mark.slow


def test_demo_produces_report_splat_and_sog(demo_run) -> None:
    out = demo_run.out
    for rel in ("report/index.html", "report/viewer.html", "report/scene.sog", "report/playcanvas.min.mjs",
                "compressed/scene.sog", "compressed/scene.spz", "train/splat.ply", "train/metrics.json",
                "sfm/sfm.json", "sfm/sparse/0/images.bin", "request.json", "job.json"):
        assert (out / rel).is_file(), rel
    job = json.loads((out / "job.json").read_text())
    assert job["status"] == "succeeded"
    metrics = json.loads((out / "train" / "metrics.json").read_text())
    psnr = float(metrics["test_psnr"])
    sog = (out / "compressed" / "scene.sog").stat().st_size
    print(f"held-out PSNR {psnr:.2f} dB, scene.sog {sog} bytes, {metrics['num_gaussians']} Gaussians, "
          f"run {demo_run.seconds:.0f} s")
    assert PSNR_RANGE[0] <= psnr <= PSNR_RANGE[1]
    assert SOG_BYTES_RANGE[0] <= sog <= SOG_BYTES_RANGE[1]
    assert len(read_ply(out / "train" / "splat.ply")) == int(metrics["num_gaussians"])
    sfm = json.loads((out / "sfm" / "sfm.json").read_text())
    registered = sfm.get("registered_images", sfm.get("num_registered"))
    assert registered == 24 or registered is None
    page = (out / "report" / "index.html").read_text()
    assert "Held-out views (3)" in page and 'alt="loss"' in page and 'alt="psnr"' in page
    assert page.count("data:image/") >= 4
    # No scratch left behind.
    assert not (out / ".scratch").exists()


def test_demo_rerun_skips_every_stage(demo_run) -> None:
    ends = {e["stage"]: e for e in demo_run.rerun_events if e["event"] == "stage_end"}
    assert {s: ends[s]["status"] for s in ("sfm", "train", "compress", "publish")} == dict.fromkeys(
        ("sfm", "train", "compress", "publish"), "skipped")
    assert ends["quality_gate"]["status"] == "passed"
    assert not [e for e in demo_run.rerun_events if e["event"] == "progress"]  # no stage process ran
