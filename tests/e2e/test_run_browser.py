"""The viewer page renders a splat in a real browser (Debian's chromium, headless, software GL)."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from spaceport.publish.command import publish
from spaceport.publish.serve import make_server

from .run_chromium import SPHERE_SOG, Chromium, lit_fraction

pytestmark = pytest.mark.browser


def _shoot(chromium: str, report: Path, shot: Path) -> tuple[str, float]:
    server = make_server(report, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with Chromium(chromium, size=(800, 600)) as page:
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/viewer.html")
            state = page.wait_for("document.body.dataset.ready", 90, lambda v: v in ("1", "error"))
            status = page.evaluate("document.getElementById('status').textContent")
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


def test_viewer_renders_the_demo_splat(chromium: str, demo_run, tmp_path: Path) -> None:
    shot = Path(os.environ.get("SPACEPORT_SCREENSHOT_DIR", tmp_path)) / "viewer-demo.png"
    _, lit = _shoot(chromium, demo_run.out / "report", shot)
    print(f"demo splat: {lit:.1%} of the canvas lit ({shot})")
    # Seen from the first training camera the scene fills most of the frame.
    assert lit > 0.3
