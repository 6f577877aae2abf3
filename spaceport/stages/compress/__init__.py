"""Compression stage: a trained splat in, SOG (PlayCanvas) and SPZ (Niantic) files out.

This module is the stage's declaration and imports nothing heavy (no numpy/torch): the Lambdas
and the plan read it. The encoders live in :mod:`.sog` and :mod:`.spz`, the stage driver in
:mod:`.stage`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spaceport.core.stage import Input, Product, StageDef, StagePaths
from spaceport.core.summaries import CompressSummary
from spaceport.stages.compress.config import PRESETS, CompressConfig


def run(config: CompressConfig, paths: StagePaths) -> CompressSummary:
    """Compress the splat in ``paths.input()`` (PLY, SPZ, SOG or model.tar.gz) into ``paths.output``."""
    from spaceport.stages.compress import stage

    return stage.run(paths.input(), paths.output, config)


def describe(n: Mapping[str, Any]) -> str:
    return f"scene.sog {float(n['sog_bytes']) / 1e6:.2f} MB"


STAGE = StageDef(
    "compress", "processing", "Compression", run, image="compress",
    inputs=(Input("model", "train", "model_tarball"),), output="compressed", folder="compressed",
    required=("compress.json", "scene.sog"), config=CompressConfig, presets=PRESETS, summary=CompressSummary,
    products=(Product("sog", "scene.sog", "SOG (compressed, web viewer)"), Product("spz", "scene.spz", "SPZ (compressed)")),
    describe=describe)
