"""The demo through `spaceport run` once per session (fast preset), shared by the e2e tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .run_chromium import find_chromium

ROOT = Path(__file__).resolve().parents[2]
DEMO_VIEWS = int(os.environ.get("SPACEPORT_E2E_VIEWS", "24"))


@dataclass
class DemoRun:
    scene: Path
    out: Path
    events: list[dict]
    seconds: float
    rerun_events: list[dict]


def _spaceport(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "spaceport", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    base = tmp_path_factory.mktemp("demo")
    scene, out = base / "scene", base / "out"
    made = _spaceport("demo-scene", "--out", str(scene), "--views", str(DEMO_VIEWS))
    assert made.returncode == 0, made.stderr
    start = time.perf_counter()
    run = _spaceport("run", str(scene / "images"), "--out", str(out), "--preset", "fast", "--json")
    seconds = time.perf_counter() - start
    assert run.returncode == 0, f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    again = _spaceport("run", str(scene / "images"), "--out", str(out), "--preset", "fast", "--json")
    assert again.returncode == 0, again.stderr
    return DemoRun(scene, out, _events(run.stdout), seconds, _events(again.stdout))


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium (skipped where it is absent)."""
    path = find_chromium()
    if path is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    return path
