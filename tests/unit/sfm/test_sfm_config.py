"""SfM options, presets and the auto choices: pure logic, no pycolmap."""

from __future__ import annotations

import subprocess
import sys

import pytest

from spaceport.core.config import from_strings, to_strings
from spaceport.core.errors import ConfigInvalid
from spaceport.stages.sfm.config import PRESETS, SfmConfig
from spaceport.stages.sfm.pipeline import choose, plan_attempts


def test_presets_parse_and_round_trip():
    assert set(PRESETS) == {"fast", "default", "quality"}
    for overrides in PRESETS.values():
        cfg = from_strings(SfmConfig, overrides)
        assert from_strings(SfmConfig, to_strings(cfg)) == cfg
    assert from_strings(SfmConfig, PRESETS["fast"]).max_side < SfmConfig().max_side


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigInvalid):
        from_strings(SfmConfig, {"matcher": "vocab_tree"})
    with pytest.raises(ConfigInvalid):
        from_strings(SfmConfig, {"min_registered_fraction": "1.5"})
    with pytest.raises(ConfigInvalid):
        from_strings(SfmConfig, {"max_side": "0"})


def test_auto_choices():
    cfg = SfmConfig()
    assert choose("video", 300, cfg) == ("sequential", "global")
    assert choose("images", 20, cfg) == ("exhaustive", "incremental")
    # 40-99 images: fewer pairs matched, but mapped incrementally (the global mapper collapsed a real 50-frame capture)
    assert choose("images", 60, cfg) == ("retrieval", "incremental")
    assert choose("video", 99, cfg) == ("sequential", "incremental")
    assert cfg.refine_principal_point
    assert choose("images", 200, cfg) == ("retrieval", "global")
    assert choose("images", 200, SfmConfig(matcher="exhaustive", mapper="incremental")) == ("exhaustive", "incremental")
    assert plan_attempts("images", 200, cfg) == [("retrieval", "global"), ("retrieval", "incremental"),
                                                 ("exhaustive", "incremental")]
    assert plan_attempts("images", 10, cfg) == [("exhaustive", "incremental"), ("exhaustive", "global")]


def test_config_module_imports_nothing_heavy():
    code = ("import sys, spaceport.stages.sfm, spaceport.stages.sfm.config, spaceport.scenes; "
            "bad = {'numpy', 'pycolmap', 'PIL', 'av', 'torch'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
