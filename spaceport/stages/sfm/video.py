"""Frames from a video upload: decoded with PyAV, turned upright by the stream's display matrix,
sampled one per time window (the sharpest, if sharp enough). :mod:`spaceport.stages.sfm.ingest` calls
:func:`from_video` and turns its :class:`VideoFrames` into its record; never imports pycolmap.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spaceport.core.errors import NoUsableFrames, UnsupportedInput
from spaceport.stages.sfm.config import SfmConfig

#: Sharpness is measured at this longer side so the threshold does not depend on resolution.
SHARPNESS_SIDE = 640


def sharpness(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a grey image (0-255): low means blurry."""
    g = gray.astype(np.float32)
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def _decode(path: Path, scale_side: int | None):
    """Yield (index, frame) of the first video stream; stops quietly at a corrupt tail."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise NoUsableFrames(f"{path.name} cannot be opened as a video ({exc})") from exc
    with container:
        if not container.streams.video:
            raise NoUsableFrames(f"{path.name} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = 0
        try:
            for frame in container.decode(stream):
                yield index, frame
                index += 1
        except (av.error.FFmpegError, OSError, ValueError):
            return  # keep the frames decoded so far


def _rotation(frame, path: Path) -> int:
    """The frame's display rotation (degrees counter-clockwise, 0/90/180/270) from its display matrix.

    Phones store portrait video as landscape frames plus this rotation (PyAV reads it from the
    stream's display matrix side data); players turn the frames by it and so must we.
    """
    raw = float(frame.rotation or 0)  # VideoFrame.rotation: PyAV 14 and later (the sfm extra pins it)
    turns = round(raw / 90.0)
    if abs(raw - 90.0 * turns) > 0.5:
        raise UnsupportedInput(
            f"{path.name} asks players to turn its frames by {raw:g} degrees, which is not a multiple of 90",
            "Re-export the video upright (any editor's rotate or straighten), or upload the photos instead",
            rotation_degrees=raw)
    return (90 * turns) % 360


def _upright(img, rotation: int):
    """``img`` turned counter-clockwise by ``rotation`` degrees (0/90/180/270), as a player shows it."""
    from PIL import Image

    turn = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}
    return img.transpose(turn[rotation]) if rotation else img


def _windows(n_frames: int, n_windows: int) -> list[range]:
    edges = np.linspace(0, n_frames, n_windows + 1).round().astype(int)
    return [range(a, b) for a, b in itertools.pairwise(edges) if b > a]


@dataclass(frozen=True)
class VideoFrames:
    """The frames :func:`from_video` wrote, in temporal order, and what it measured on the way."""

    names: list[str]  # JPEG files written into the output folder
    decoded: int  # frames decoded
    blurry_windows: int  # sampling windows with no frame sharp enough
    rotation: int  # display rotation applied to every frame, degrees counter-clockwise
    downscaled: int  # kept frames shrunk to max_side
    sharpness: list[float]  # of the kept frames, in the same order as names


def from_video(path: Path, out: Path, config: SfmConfig) -> VideoFrames:
    """Split the video into equal windows, keep the sharpest frame of each if sharp, and write the
    kept frames upright into ``out``."""
    scores, times = [], []
    rotation = 0
    for index, frame in _decode(path, SHARPNESS_SIDE):
        if index == 0:
            rotation = _rotation(frame, path)  # refuse a skewed video before decoding it all
        w, h = frame.width, frame.height
        s = min(1.0, SHARPNESS_SIDE / max(w, h))
        small = frame.reformat(width=max(2, round(w * s)), height=max(2, round(h * s)), format="gray")
        scores.append(sharpness(small.to_ndarray()))
        times.append(frame.time if frame.time is not None else len(times))
    if not scores:
        raise NoUsableFrames(f"{path.name} has no decodable frames", frames=0)
    if config.video_fps > 0:
        duration = max(times[-1] - times[0], 1e-6)
        n_windows = max(1, round(duration * config.video_fps))
    else:
        n_windows = config.video_frames
    chosen, blurry = [], 0
    for win in _windows(len(scores), min(n_windows, len(scores))):
        best = max(win, key=lambda i: scores[i])
        if scores[best] >= config.min_sharpness:
            chosen.append(best)
        else:
            blurry += 1
    if not chosen:
        raise NoUsableFrames(
            f"Every frame of {path.name} is blurry (sharpest {max(scores):.1f}, threshold {config.min_sharpness})",
            frames=len(scores), sharpest=round(max(scores), 2), threshold=config.min_sharpness,
        )
    keep = set(chosen)
    names, kept_sharpness, downscaled = [], [], 0
    for index, frame in _decode(path, None):
        if index not in keep:
            continue
        img = _upright(frame.to_image(), _rotation(frame, path))
        w, h = img.size
        if max(w, h) > config.max_side:
            from PIL import Image

            s = config.max_side / max(w, h)
            img = img.resize((round(w * s), round(h * s)), Image.Resampling.LANCZOS)
            downscaled += 1
        name = f"frame_{index:06d}.jpg"
        img.save(out / name, quality=95)
        names.append(name)
        kept_sharpness.append(scores[index])
    return VideoFrames(names, len(scores), blurry, rotation, downscaled, kept_sharpness)
