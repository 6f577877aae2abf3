from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from spaceport.core.errors import ModelInvalid, QualityBelowTarget
from spaceport.core.summaries import TrainMetrics
from spaceport.stages.gate import QualityTargets, check, check_file, evaluate, metrics_from_model_tarball

TARGETS = QualityTargets(min_psnr=20.0, max_gaussians=100_000)


def _metrics(train_dir: Path, **changes) -> TrainMetrics:
    """The fixture training stage's metrics.json, with ``changes``."""
    from tests.unit.run.conftest import _orbit_cameras, write_train

    write_train(train_dir, _orbit_cameras())
    base = TrainMetrics.model_validate_json((train_dir / "metrics.json").read_text())
    return base.model_copy(update=changes)


def test_passes_at_the_target_and_under_the_cap(tmp_path) -> None:
    r = check(_metrics(tmp_path, test_psnr=20.0, num_gaussians=100_000), TARGETS)
    assert r.passed and r.test_psnr == 20.0 and r.num_gaussians == 100_000


@pytest.mark.parametrize(
    ("psnr", "count", "message"),
    [
        (19.99, 10, "held-out PSNR 19.99 dB is below the target 20.00 dB"),
        (30.0, 100_001, "100001 Gaussians exceed the cap of 100000"),
        (float("nan"), 10, "held-out PSNR nan dB is below"),
    ],
)
def test_misses_raise_with_the_numbers(tmp_path, psnr, count, message) -> None:
    with pytest.raises(QualityBelowTarget, match=message) as info:
        check(_metrics(tmp_path, test_psnr=psnr, num_gaussians=count), TARGETS)
    assert info.value.details["min_psnr"] == 20.0


def test_zero_targets_disable_the_checks(tmp_path) -> None:
    assert evaluate(_metrics(tmp_path, test_psnr=5.0, num_gaussians=9 * 10**9), QualityTargets()).passed


def test_metrics_of_another_shape_are_a_model_error_naming_the_file(tmp_path) -> None:
    with pytest.raises(ModelInvalid, match="does not exist"):
        check_file(tmp_path / "metrics.json", TARGETS)
    # The old alias shape (psnr instead of test_psnr) is not guessed at: it names the file and the key.
    (tmp_path / "metrics.json").write_text(json.dumps({"psnr": 25, "num_gaussians": 5}))
    with pytest.raises(ModelInvalid, match=r"metrics\.json is not a valid metrics\.json \(test_psnr: Field required"):
        check_file(tmp_path / "metrics.json", TARGETS)


def test_reads_metrics_from_a_streamed_model_tarball(tmp_path) -> None:
    _metrics(tmp_path / "model", test_psnr=24.5)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("splat.ply", "cameras.json", "metrics.json"):  # the big PLY first, as SageMaker may pack it
            tar.add(tmp_path / "model" / name, arcname=name)
    buf.seek(0)
    metrics = metrics_from_model_tarball(buf)
    assert metrics.test_psnr == 24.5 and len(metrics.history) == 20
    with pytest.raises(ModelInvalid, match=r"holds no metrics\.json"):
        empty = io.BytesIO()
        with tarfile.open(fileobj=empty, mode="w:gz") as tar:
            tar.add(tmp_path / "model" / "cameras.json", arcname="cameras.json")
        empty.seek(0)
        metrics_from_model_tarball(empty)
