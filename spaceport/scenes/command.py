"""`spaceport demo-scene`: write a synthetic scene with exact cameras."""

from __future__ import annotations

from pathlib import Path

import click

from spaceport.core.errors import ConfigInvalid


def _parse_size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    try:
        size = (int(w), int(h))
    except ValueError:
        size = (0, 0)
    if not sep or min(size) < 16:
        raise ConfigInvalid(f"--size {text!r} is not WIDTHxHEIGHT with both at least 16", "Use e.g. --size 640x480")
    return size


@click.command("demo-scene")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write images/, gt/ and video.mp4 into.")
@click.option("--views", default=24, show_default=True, type=click.IntRange(1, 2000), help="Number of camera views.")
@click.option("--size", default="640x480", show_default=True, help="Image size WIDTHxHEIGHT in pixels.")
@click.option("--seed", default=0, show_default=True, type=int, help="Textures and path jitter depend on this.")
@click.option("--path", "path", default="orbit", show_default=True, type=click.Choice(["orbit", "walk"]),
              help="Camera path: all round the objects, or a sideways walk past them.")
@click.option("--video", is_flag=True, help="Also write video.mp4 of the same frames.")
def demo_scene(out: Path, views: int, size: str, seed: int, path: str, video: bool) -> None:
    """Render a synthetic scene (ground plane, boxes, spheres) with exact ground-truth cameras."""
    from spaceport.local import progress
    from spaceport.scenes import make_scene

    summary = make_scene(out, views=views, size=_parse_size(size), seed=seed, path=path, video=video)
    progress.emit("demo-scene", out=str(out), **summary)
