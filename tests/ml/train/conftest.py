"""Fixtures for the training-stage tests: one small synthetic scene with exact cameras, made once."""

from __future__ import annotations

from pathlib import Path

import pytest

#: 24 views (the demo path) at 160x120: small enough to train a few hundred steps in seconds on one core
SCENE_VIEWS, SCENE_SIZE = 24, (160, 120)


@pytest.fixture(scope="session")
def scene(tmp_path_factory) -> Path:
    """A synthetic scene folder: images/ + gt/sparse/0 (PINHOLE, exact) with surface points."""
    from spaceport.scenes import make_scene

    out = tmp_path_factory.mktemp("train_scene")
    make_scene(out, views=SCENE_VIEWS, size=SCENE_SIZE, seed=0, points=2000)
    return out


@pytest.fixture(autouse=True)
def _no_sagemaker(monkeypatch, tmp_path):
    """Point the SageMaker root at a temp folder so no test touches /opt/ml."""
    monkeypatch.setenv("SPACEPORT_SM_ROOT", str(tmp_path / "opt_ml"))
