"""A toy stage, declared the way a stage package declares itself (spaceport.core.stage.StageDef): it
reads the training output, multiplies its Gaussian count by an option, and writes ``toy.json``.

Run as a program it is the images' ``spaceport`` with the toy stage in the graph: ``toy ...``
goes through the real stage entry point (spaceport.core.entry via spaceport.cli), any other stage to
the fake stages of fake_stage.py (publish: the real command)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from spaceport.core.errors import ConfigInvalid, InputInvalid
from spaceport.core.stage import Input, StageDef, StagePaths
from spaceport.core.summaries import Summary, TrainMetrics, read_summary, write_summary


@dataclass(frozen=True)
class ToyConfig:
    """The toy stage's options."""

    factor: int = 2
    """What the Gaussian count is multiplied by."""
    fail: bool = False
    """Fail with InputInvalid instead of writing anything."""

    def __post_init__(self) -> None:
        if self.factor < 1:
            raise ConfigInvalid(f"factor={self.factor} must be at least 1")


class ToySummary(Summary):
    FILE: ClassVar[str] = "toy.json"

    gaussians: int
    factor: int
    product: int

    def headline(self) -> dict[str, Any]:
        return {"product": self.product}


def run(config: ToyConfig, paths: StagePaths) -> ToySummary:
    """Multiply the trained splat's Gaussian count by ``factor``."""
    if config.fail:
        raise InputInvalid("the toy stage was asked to fail", "Set toy.fail=false")
    metrics = read_summary(TrainMetrics, paths.input() / TrainMetrics.FILE)
    summary = ToySummary(gaussians=metrics.num_gaussians, factor=config.factor,
                         product=metrics.num_gaussians * config.factor)
    write_summary(summary, paths.output)
    return summary


def describe(n: Mapping[str, Any]) -> str:
    return f"product {n['product']}"


TOY = StageDef("toy", "processing", "Toy", run, image="compress", inputs=(Input("model", "train", "model_tarball"),),
               output="toy", folder="toy", required=("toy.json",), config=ToyConfig,
               presets={"fast": {"factor": "3"}, "default": {}, "quality": {"factor": "4"}}, summary=ToySummary,
               describe=describe)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from spaceport.core import graph

    with graph.registered(TOY, before="publish"):
        if sys.argv[1] == "toy":
            from spaceport.cli import main

            sys.exit(main(sys.argv[1:]))
        import fake_stage

        sys.exit(fake_stage.main(sys.argv[1], sys.argv[2:]))
