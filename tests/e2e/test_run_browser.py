"""The viewer page renders a splat in a real browser (Debian's chromium, headless, software GL)."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from spaceport.stages.publish.command import publish
from spaceport.stages.publish.serve import make_server

from .run_chromium import SPHERE_SOG, Chromium, lit_fraction

pytestmark = pytest.mark.browser


def _shoot(chromium: str, report: Path, shot: Path, probe: str | None = None) -> tuple[str, float]:
    """Open the report's viewer, wait until it drew, screenshot it; the status line and the lit share
    (and ``probe``'s value, evaluated in the page, in ``_shoot.probed``)."""
    server = make_server(report, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with Chromium(chromium, size=(800, 600)) as page:
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/viewer.html")
            state = page.wait_for("document.body.dataset.ready", 90, lambda v: v in ("1", "error"))
            status = page.evaluate("document.getElementById('status').textContent")
            _shoot.probed = page.evaluate(probe) if probe else None
            page.screenshot(shot)
    finally:
        server.shutdown()
        server.server_close()
    assert state == "1", f"viewer not ready: state={state!r} status={status!r} console={page.console[-5:]}"
    return status, lit_fraction(shot)


def test_viewer_renders_a_sog_fixture(chromium: str, tmp_path: Path) -> None:
    (tmp_path / "job" / "compressed").mkdir(parents=True)
    shutil.copyfile(SPHERE_SOG, tmp_path / "job" / "compressed" / "scene.sog")
    publish(tmp_path / "job", tmp_path / "report")
    _, lit = _shoot(chromium, tmp_path / "report", tmp_path / "shot.png")
    print(f"fixture sphere: {lit:.1%} of the canvas lit")
    # The unit sphere seen from 3 units away covers ~35% of an 800x560 canvas.
    assert 0.15 < lit < 0.7


def test_a_below_target_result_is_published_and_says_so(chromium: str, tmp_path: Path) -> None:
    from spaceport.core.summaries import FailureRecord, GateResult, JobRecord, StageRecord
    from tests.unit.run.conftest import _orbit_cameras, write_compressed, write_sfm, write_train

    job = tmp_path / "job"
    cams = _orbit_cameras()
    write_sfm(job / "sfm", cams)
    write_train(job / "train", cams, psnr=14.2)
    write_compressed(job / "compressed")
    gate = GateResult(passed=False, test_psnr=14.2, num_gaussians=3000, min_psnr=20.0, max_gaussians=10**6)
    miss = FailureRecord(error="QualityBelowTarget", reason="Held-out PSNR 14.20 dB is below the target 20.00 dB.",
                         fix="Capture more views with more overlap.", stage="quality_gate")
    record = JobRecord(job_id="sp-below", status="RUNNING", quality_gate=gate,
                       stages={"quality_gate": StageRecord(status="failed", failure=miss)})
    (job / "job.json").write_text(record.model_dump_json())
    publish(job, tmp_path / "report")

    status, lit = _shoot(chromium, tmp_path / "report", tmp_path / "below.png")
    assert status == "scene.sog (below target)" and lit > 0.1  # what was trained is there to look at
    server = make_server(tmp_path / "report", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with Chromium(chromium, size=(800, 600)) as page:
            base = f"http://127.0.0.1:{server.server_address[1]}"
            page.goto(f"{base}/viewer.html")
            page.wait_for("document.body.dataset.ready", 90, lambda v: v in ("1", "error"))
            banner = page.evaluate("(b => [b.textContent, b.hidden, b.getBoundingClientRect().height])"
                                   "(document.getElementById('banner'))")
            page.goto(f"{base}/index.html")
            page.wait_for("document.readyState === 'complete'", 30)
            report = page.evaluate("(b => b ? [b.innerText, b.getBoundingClientRect().top] : null)"
                                   "(document.getElementById('below-target'))")
            title = page.evaluate("document.title")
            passing = page.evaluate("document.body.innerText.includes('Quality gate: passed')")
            renders = page.evaluate("document.querySelectorAll('figure img[alt$=\"_render.png\"]').length")
    finally:
        server.shutdown()
        server.server_close()
    assert banner == ["Below target: held-out PSNR 14.20 dB, target 20.00 dB", False, banner[2]] and banner[2] > 10
    assert title == "Spaceport job report (below target)" and not passing
    assert report is not None and report[1] < 200, "the below-target notice is at the top of the report"
    text = report[0]
    assert "Below target: held-out PSNR 14.20 dB, target 20.00 dB" in text
    assert "Reason: Held-out PSNR 14.20 dB is below the target 20.00 dB." in text
    assert "Fix: Capture more views with more overlap." in text and "not a passing result" in text
    assert renders == 2  # the held-out renders beside their photos


def test_the_viewer_renders_an_antialiased_splat_as_it_was_trained(chromium: str, tmp_path: Path) -> None:
    """A SOG whose meta.json says "model": "antialiased" is drawn with PlayCanvas's GSPLAT_AA: each Gaussian's
    opacity scaled by its low-pass compensation, as training rendered it. Sub-pixel Gaussians (the sphere
    fixture shrunk 400x) then fade, where the classic renderer swells each to a full-opacity pixel dot."""
    from dataclasses import replace

    import numpy as np
    from PIL import Image

    from spaceport.stages.compress.sog import decode_sog, encode_sog

    from .run_chromium import BACKGROUND

    tiny = decode_sog(SPHERE_SOG)
    tiny = replace(tiny, scales=tiny.scales - np.log(40.0), opacities=np.full_like(tiny.opacities, 4.0))
    brightness = {}
    for aa in (False, True):
        job = tmp_path / f"job-{aa}"
        (job / "compressed").mkdir(parents=True)
        encode_sog(replace(tiny, antialiased=aa), iterations=2).write_bundle(job / "compressed" / "scene.sog")
        publish(job, tmp_path / f"report-{aa}")
        _shoot(chromium, tmp_path / f"report-{aa}", tmp_path / f"shot-{aa}.png",
               probe="window.spaceportApp.scene.gsplat.antiAlias")
        assert _shoot.probed is aa
        img = np.asarray(Image.open(tmp_path / f"shot-{aa}.png").convert("RGB"), dtype=np.float32)[:-40]
        brightness[aa] = float(np.clip(img - np.array(BACKGROUND), 0, None).mean())
    print(f"sub-pixel sphere, mean excess over the background: classic {brightness[False]:.2f}, "
          f"antialiased {brightness[True]:.2f}")
    assert brightness[False] > 0.5  # the dots are there
    assert brightness[True] < 0.85 * brightness[False]


def test_viewer_renders_the_demo_splat(chromium: str, demo_run, tmp_path: Path) -> None:
    shot = Path(os.environ.get("SPACEPORT_SCREENSHOT_DIR", tmp_path)) / "viewer-demo.png"
    _, lit = _shoot(chromium, demo_run.out / "report", shot)
    print(f"demo splat: {lit:.1%} of the canvas lit ({shot})")
    # Seen from the first training camera the scene fills most of the frame.
    assert lit > 0.3
