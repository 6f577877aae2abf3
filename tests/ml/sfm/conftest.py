"""Fixtures for the SfM-stage tests: small synthetic scenes, made once per session."""

from __future__ import annotations

import pytest

from spaceport.scenes import make_scene


@pytest.fixture(scope="session")
def small_scene(tmp_path_factory):
    """16 orbit views at 320x240 with a video of the same frames."""
    out = tmp_path_factory.mktemp("scene16")
    summary = make_scene(out, views=16, size=(320, 240), seed=3, video=True)
    return out, summary
