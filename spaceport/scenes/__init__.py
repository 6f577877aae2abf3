"""Synthetic scenes with exact cameras, for the tests, the demo and the benchmarks.

``make_scene(out_dir, views=24, size=(640, 480), seed=0, path="orbit", video=False)`` ray-casts
a textured ground plane with boxes and spheres from a camera path and writes
``images/view_###.png``, ``gt/sparse/0/{cameras,images,points3D}.txt`` (PINHOLE, exact),
``gt/cameras.json`` and optionally ``video.mp4``. NumPy is imported only when a scene is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def make_scene(out_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Render a deterministic synthetic scene into ``out_dir``; returns a summary dict.

    The keyword arguments are those of :func:`spaceport.scenes.render.make_scene` (``views``,
    ``size`` as (width, height), ``seed``, ``path`` "orbit" or "walk", ``video``, ...); this
    wrapper only defers the NumPy import to the first call.
    """
    from spaceport.scenes.render import make_scene as _make

    return _make(out_dir, **kwargs)


__all__ = ["make_scene"]
