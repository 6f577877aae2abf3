"""The exported splat.ply is read by PlayCanvas splat-transform (the compressor and SuperSplat use it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from spaceport.geometry.splat import read_ply
from spaceport.stages.train.config import config_for

CLI = Path(__file__).resolve().parents[3] / "node_modules" / "@playcanvas" / "splat-transform" / "bin" / "cli.mjs"


@pytest.mark.node
def test_splat_transform_reads_the_exported_ply(scene, tmp_path):
    if not CLI.is_file() or shutil.which("node") is None:
        pytest.skip("splat-transform (npm) is not installed")
    from spaceport.stages.train.trainer import train

    cfg = config_for("fast", {"model_dir": "gt/sparse/0", "downscale": "2", "steps": "5", "sh_degree": "2",
                              "sh_degree_interval": "1"})
    train(scene, tmp_path / "out", cfg)
    ply = tmp_path / "out" / "splat.ply"
    ours = read_ply(ply)
    assert ours.sh_degree == 2
    assert ours.antialiased  # trained with the antialiased rasterizer (the default) and tagged so
    csv = tmp_path / "splat.csv"
    run = subprocess.run(["node", str(CLI), "-w", "-q", "-g", "cpu", str(ply), str(csv)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    header = csv.read_text().splitlines()[0].split(",")
    table = np.loadtxt(csv, delimiter=",", skiprows=1, ndmin=2)
    assert table.shape == (len(ours), len(header))
    col = {name: table[:, i] for i, name in enumerate(header)}
    np.testing.assert_allclose(np.stack([col["x"], col["y"], col["z"]], 1), ours.means, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(col["opacity"], ours.opacities, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(col["f_dc_1"], ours.sh0[:, 1], rtol=1e-6, atol=1e-6)
    # f_rest is channel-major: f_rest_8 is the 9th coefficient of red; with degree 2 (8 per channel) it is green's first
    np.testing.assert_allclose(col["f_rest_8"], ours.shN[:, 0, 1], rtol=1e-6, atol=1e-6)
    info = subprocess.run(["node", str(CLI), "-g", "cpu", str(ply), "--info", "json", "null"],
                          capture_output=True, text=True, timeout=120)
    assert '"shBands": 2' in info.stdout and f'"numGaussians": {len(ours)}' in info.stdout


def test_a_splat_trained_without_antialiasing_is_not_tagged(scene, tmp_path):
    from spaceport.stages.train.trainer import train

    cfg = config_for("fast", {"model_dir": "gt/sparse/0", "downscale": "4", "steps": "3", "antialiased": "false"})
    train(scene, tmp_path / "out", cfg)
    assert not read_ply(tmp_path / "out" / "splat.ply").antialiased
    assert b"SplatRenderMode" not in (tmp_path / "out" / "splat.ply").read_bytes()[:2000]
