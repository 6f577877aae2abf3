from __future__ import annotations

import json

import pytest

from spaceport.errors import ModelInvalid, QualityBelowTarget
from spaceport.quality import QualityTargets, check, check_file, evaluate, parse_final_line

TARGETS = QualityTargets(min_psnr=20.0, max_gaussians=100_000)


def test_passes_at_the_target_and_under_the_cap() -> None:
    r = check({"test_psnr": 20.0, "num_gaussians": 100_000}, TARGETS)
    assert r.passed and r.test_psnr == 20.0 and r.num_gaussians == 100_000


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"test_psnr": 19.99, "num_gaussians": 10}, "held-out PSNR 19.99 dB is below the target 20.00 dB"),
        ({"test_psnr": 30, "num_gaussians": 100_001}, "100001 Gaussians exceed the cap of 100000"),
        ({"test_psnr": "nan", "num_gaussians": 10}, "held-out PSNR nan dB is below"),
    ],
)
def test_misses_raise_with_the_numbers(metrics, message) -> None:
    with pytest.raises(QualityBelowTarget, match=message) as info:
        check(metrics, TARGETS)
    assert info.value.details["min_psnr"] == 20.0


def test_zero_targets_disable_the_checks_and_strings_are_read() -> None:
    assert evaluate({"test_psnr": "5", "num_gaussians": "9e9"}, QualityTargets()).passed


def test_missing_metrics_are_a_model_error(tmp_path) -> None:
    with pytest.raises(ModelInvalid, match="lack num_gaussians"):
        check({"test_psnr": 25}, TARGETS)
    with pytest.raises(ModelInvalid, match="does not exist"):
        check_file(tmp_path / "metrics.json", TARGETS)
    (tmp_path / "metrics.json").write_text(json.dumps({"test_psnr": 25, "num_gaussians": 5}))
    assert check_file(tmp_path / "metrics.json", TARGETS).passed


def test_final_line_of_a_training_log() -> None:
    log = "stage=train step=10 loss=0.1\nstage=train final=1 test_psnr=24.3 test_ssim=0.8 num_gaussians=35000\n"
    fields = parse_final_line(log)
    assert check(fields, TARGETS).test_psnr == 24.3
