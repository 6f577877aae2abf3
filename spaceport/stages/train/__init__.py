"""Training stage: SfM model + images in, a Gaussian splat and its held-out metrics out.

:mod:`spaceport.stages.train.trainer` does the work (torch, gsplat); this module is the stage's
declaration and imports nothing heavy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from spaceport.core.stage import Input, StageDef, StagePaths
from spaceport.core.summaries import TrainMetrics
from spaceport.stages.train.config import PRESETS, TrainConfig

#: glibc malloc settings for the training process and its children (see rasterize.tune_malloc);
#: variables already set win.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def run(config: TrainConfig, paths: StagePaths) -> TrainMetrics:
    """Train a splat from the SfM folder in ``paths.input()`` into ``paths.output``."""
    for key, value in MALLOC_ENV.items():
        os.environ.setdefault(key, value)
    from spaceport.stages.train import trainer

    return trainer.train(paths.input(), paths.output, config, checkpoint_dir=paths.checkpoints)


def describe(n: Mapping[str, Any]) -> str:
    """``PSNR 21.51 dB, 59999 Gaussians``; trained finer than the coarsest budget size, also the PSNR there:
    ``PSNR 21.51 dB at 298x398 (22.89 at 149x199), 59999 Gaussians``."""
    if n.get("coarse_psnr") is not None:
        return (f"PSNR {n['test_psnr']:.2f} dB at {n['size']} ({n['coarse_psnr']:.2f} at {n['coarse_size']}), "
                f"{n['num_gaussians']} Gaussians")
    return f"PSNR {n['test_psnr']:.2f} dB, {n['num_gaussians']} Gaussians"


STAGE = StageDef(
    "train", "training", "Training", run, image="train",
    inputs=(Input("sfm", "sfm", "folder"),), output="model", folder="train", required=("metrics.json", "splat.ply"),
    config=TrainConfig, presets=PRESETS, summary=TrainMetrics, describe=describe)
