"""Synthetic scenes with exact cameras, for the tests, the demo and the benchmarks.

``make_scene(out_dir, views=24, size=(640, 480), seed=0, path="orbit", video=False)`` ray-casts
a textured ground plane with boxes and spheres from a camera path and writes
``images/view_###.png``, ``gt/sparse/0/{cameras,images,points3D}.txt`` (PINHOLE, exact),
``gt/cameras.json`` and optionally ``video.mp4``. NumPy is imported only when a scene is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def make_scene(
    out_dir: str | Path,
    views: int = 24,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    path: str = "orbit",
    video: bool = False,
    **kwargs: Any,
) -> dict[str, Any]:
    """Render a deterministic synthetic scene into ``out_dir``; returns a summary dict.

    ``size`` is (width, height) in pixels; ``path`` is ``"orbit"`` (all round the objects) or
    ``"walk"`` (a sideways dolly past them). Extra keyword arguments go to
    :func:`spaceport.scenes.render.make_scene` (``video_fps``, ``supersample``).
    """
    from spaceport.scenes.render import make_scene as _make

    return _make(out_dir, views=views, size=size, seed=seed, path=path, video=video, **kwargs)


__all__ = ["make_scene"]
