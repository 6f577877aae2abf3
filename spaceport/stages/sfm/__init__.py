"""The SfM stage: photos, a zip of photos or a video in; PINHOLE cameras and a sparse model out.

:func:`spaceport.stages.sfm.pipeline.run_sfm` does the work; ``ingest`` turns an upload into a folder of
usable images; ``colmap_steps`` holds the pycolmap phases, which only ever run in a spawned worker
process (pycolmap's bundled zlib breaks Pillow's PNG writer in any process that imported pycolmap
first). Nothing heavy is imported here: this module is the stage's declaration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spaceport.core.stage import UPLOAD, Input, StageDef, StagePaths
from spaceport.core.summaries import SfmSummary
from spaceport.stages.sfm.config import PRESETS, SfmConfig


def run(config: SfmConfig, paths: StagePaths) -> SfmSummary:
    """Reconstruct the upload in ``paths.input()`` into ``paths.output``."""
    from spaceport.stages.sfm import pipeline

    return pipeline.run_sfm(paths.input(), paths.output, config)


def describe(n: Mapping[str, Any]) -> str:
    return f"{n['registered_images']} of {n['usable_images']} images registered"


STAGE = StageDef(
    "sfm", "processing", "Camera poses (SfM)", run, image="sfm",
    inputs=(Input("upload", UPLOAD, "upload"),), output="sfm", folder="sfm", required=("sfm.json", "sparse/0"),
    config=SfmConfig, presets=PRESETS, summary=SfmSummary, describe=describe)
