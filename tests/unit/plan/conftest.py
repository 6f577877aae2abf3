"""Fake stage config modules, so the plan is tested against known options and presets."""


import sys
import types
from dataclasses import dataclass
from typing import Literal

import pytest


@dataclass(frozen=True)
class SfmConfig:
    max_side: int = 1600
    """Longest image side in pixels."""
    matcher: Literal["exhaustive", "sequential"] = "exhaustive"
    """Matcher."""


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = 30000
    """Training steps."""
    sh_degree: int = 3
    """SH degree."""
    densify: bool = True
    """Densify."""


@dataclass(frozen=True)
class CompressConfig:
    iterations: int = 10
    """k-means iterations."""


PRESETS = {
    "sfm": {"fast": {"max_side": "320"}, "default": {}, "quality": {"max_side": "3200"}},
    "train": {"fast": {"max_steps": "300", "sh_degree": "1"}, "default": {}, "quality": {"max_steps": "60000"}},
    "compress": {"fast": {"iterations": "2"}, "default": {}, "quality": {"iterations": "20"}},
}


@pytest.fixture(autouse=True)
def fake_stage_configs(monkeypatch):
    for stage, cls in (("sfm", SfmConfig), ("train", TrainConfig), ("compress", CompressConfig)):
        mod = types.ModuleType(f"spaceport.{stage}.config")
        setattr(mod, cls.__name__, cls)
        mod.PRESETS = PRESETS[stage]
        monkeypatch.setitem(sys.modules, f"spaceport.{stage}.config", mod)
    yield
