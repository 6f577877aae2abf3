from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from spaceport.core.errors import ModelInvalid, QualityBelowTarget
from spaceport.core.summaries import CaptureFigures, TrainMetrics, read_summary, write_summary
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


# A capture the defaults pass: the worst good real capture's figures (bench/results/gate.md) and a fit
# 5 dB above the photos' mean colour.
GOOD = CaptureFigures(sharpness=4.2, sharpness_min=3.7, held_out_offset=0.9, held_out_farthest="0008.jpg",
                      baseline_psnr=14.4)


def _capture(tmp_path, capture=GOOD, **changes) -> TrainMetrics:
    return _metrics(tmp_path, **{"test_psnr": 21.0, "train_images": 7, "capture": capture, **changes})


def test_default_capture_checks_pass_a_good_capture_and_report_its_figures(tmp_path) -> None:
    r = check(_capture(tmp_path), QualityTargets(min_psnr=20.0))
    assert r.passed and r.failed == []
    assert (r.train_views, r.sharpness, r.held_out_offset, r.held_out_farthest) == (7, 4.2, 0.9, "0008.jpg")
    assert r.psnr_gain == pytest.approx(6.6) and r.min_psnr_gain == QualityTargets().min_psnr_gain
    assert r.headline()["sharpness"] == 4.2 and "failed" not in r.headline()


@pytest.mark.parametrize(
    ("changes", "check_name", "reason", "fix"),
    [
        ({"train_images": 3}, "train_views", "only 3 photos were left to train on, fewer than 4",
         "Take more photos around the subject"),
        ({"capture": GOOD.model_copy(update={"sharpness": 0.4})}, "sharpness",
         r"the photos are blurred \(median sharpness 0\.40, in focus is 1\.30 and up\)", "faster shutter"),
        ({"capture": GOOD.model_copy(update={"held_out_offset": 1.6})}, "held_out_offset",
         r"held-out photo 0008\.jpg is 1\.60 times as far from the nearest training photo as the widest gap "
         r"between neighbouring training photos \(limit 1\.30\)",
         r"Take more photos between 0008\.jpg and the others"),
        ({"test_psnr": 15.0}, "psnr_gain", r"held-out PSNR 15\.00 dB is only 0\.60 dB above a flat image",
         "Check the camera plot"),
    ],
)
def test_each_capture_miss_names_its_figure_limit_and_fix(tmp_path, changes, check_name, reason, fix) -> None:
    metrics = _capture(tmp_path).model_copy(update=changes)
    targets = QualityTargets()  # the capture checks' defaults, no PSNR target
    assert evaluate(metrics, targets).failed == [check_name]
    with pytest.raises(QualityBelowTarget, match=reason) as info:
        check(metrics, targets)
    assert fix.replace("\\", "") in info.value.fix and info.value.details["failed"] == [check_name]


def test_several_misses_report_every_reason_capture_first(tmp_path) -> None:
    blurred = GOOD.model_copy(update={"sharpness": 0.3})
    with pytest.raises(QualityBelowTarget) as info:
        check(_capture(tmp_path, capture=blurred, test_psnr=15.0), QualityTargets(min_psnr=20.0))
    assert info.value.details["failed"] == ["sharpness", "psnr_gain", "psnr"]
    assert info.value.reason.index("blurred") < info.value.reason.index("below the target")
    assert "faster shutter" in info.value.fix and "--minutes" in info.value.fix


def test_capture_checks_skip_figures_that_are_absent_or_switched_off(tmp_path) -> None:
    # An older metrics.json (no capture figures) and a run with nothing held out: only what is there counts.
    assert evaluate(_capture(tmp_path, capture=None), QualityTargets(min_psnr=20.0)).passed
    no_test = _capture(tmp_path, evaluated_on="train (no images held out: test_every=0)", test_psnr=15.0,
                       capture=GOOD.model_copy(update={"held_out_offset": None, "baseline_psnr": None}))
    result = evaluate(no_test, QualityTargets())
    assert result.passed and result.psnr_gain is None and result.held_out_offset is None
    off = QualityTargets(min_train_views=0, min_sharpness=0, max_held_out_offset=0, min_psnr_gain=0)
    bad = GOOD.model_copy(update={"sharpness": 0.1, "held_out_offset": 9.0})
    assert evaluate(_capture(tmp_path, capture=bad, train_images=1, test_psnr=14.0), off).passed


def test_capture_figures_round_trip_through_metrics_json(tmp_path) -> None:
    metrics = _capture(tmp_path)
    write_summary(metrics, tmp_path / "again")
    back = read_summary(TrainMetrics, tmp_path / "again" / "metrics.json")
    assert back == metrics and back.capture == GOOD
    with pytest.raises(ModelInvalid, match=r"capture\.sharpness: Field required"):
        bad = json.loads((tmp_path / "again" / "metrics.json").read_text())
        del bad["capture"]["sharpness"]
        (tmp_path / "again" / "metrics.json").write_text(json.dumps(bad))
        check_file(tmp_path / "again" / "metrics.json", TARGETS)
