"""Fixtures for the SfM-stage tests: one small synthetic scene per session, and input hashing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from spaceport.scenes import make_scene


@pytest.fixture(scope="session")
def small_scene(tmp_path_factory):
    """24 orbit views at 320x240 (15 degrees apart) with a video of the same frames; about 5 s."""
    out = tmp_path_factory.mktemp("scene24")
    summary = make_scene(out, views=24, size=(320, 240), seed=3, video=True)
    return out, summary


def _tree_digest(path: Path) -> str:
    """A hash of every name, mode, link target and byte under ``path`` (or of one file)."""
    path = Path(path)
    h = hashlib.sha256()
    items = [path] if not path.is_dir() else sorted(path.rglob("*"))
    for p in items:
        h.update(str(p.relative_to(path) if p != path else p.name).encode())
        if p.is_symlink():
            h.update(b"link:" + str(p.readlink()).encode())
        elif p.is_file():
            h.update(oct(p.stat().st_mode).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def tree_digest():
    """Function hashing a file or folder tree, to show an input was left untouched."""
    return _tree_digest
