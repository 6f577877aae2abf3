"""Fixtures for the compression tests: small seeded splats written as PLYs, and the splat-transform CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from spaceport.geometry.splat import Splat, write_ply
from tests.support.synthetic_splats import synthetic_splat

ROOT = Path(__file__).resolve().parents[3]
SPLAT_TRANSFORM = ROOT / "node_modules" / "@playcanvas" / "splat-transform" / "bin" / "cli.mjs"


@pytest.fixture(scope="session")
def small_splat() -> Splat:
    """1,500 Gaussians with SH degree 1: big enough for a real palette, small enough for node."""
    return synthetic_splat(1500, 1, seed=3)


@pytest.fixture(scope="session")
def small_ply(tmp_path_factory: pytest.TempPathFactory, small_splat: Splat) -> Path:
    path = tmp_path_factory.mktemp("small") / "splat.ply"
    write_ply(small_splat, path)
    return path


@pytest.fixture(scope="session")
def sh3_splat() -> Splat:
    return synthetic_splat(3000, 3, seed=5)


@pytest.fixture(scope="session")
def splat_transform():
    """Run `splat-transform ARGS...` (node); skips when node or the npm package is missing."""
    node = shutil.which("node")
    if node is None or not SPLAT_TRANSFORM.is_file():
        pytest.skip("node or @playcanvas/splat-transform is not installed (run `npm ci`)")

    def run(*args: str | Path) -> subprocess.CompletedProcess:
        proc = subprocess.run([node, str(SPLAT_TRANSFORM), "-w", "-q", *map(str, args)],
                              capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    return run
