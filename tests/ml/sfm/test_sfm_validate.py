"""SfM on the real captures in captures/: ground-truth accuracy in mm, validation and fallback.

Bounds were set from runs on this machine (numbers in bench/results/sfm_validation.md), with
margin for pycolmap's extraction, which is not bit-reproducible across runs.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from spaceport.core.errors import SfmDegenerate, TooFewRegistered
from spaceport.core.summaries import SfmSummary, read_summary
from spaceport.geometry import colmap
from spaceport.stages.sfm import pipeline, validate
from spaceport.stages.sfm.config import SfmConfig
from spaceport.stages.sfm.pipeline import run_sfm
from tests.real_captures import capture
from tests.support.sfm_evaluate import collapse_centres, compare_strecha

#: Reduced size keeps each capture's run to tens of seconds on 2 cores.
SMALL = {"max_side": 768, "max_features": 4096}

pytestmark = pytest.mark.slow


def _run(name: str, out: Path, **options) -> tuple[dict, Path]:
    found = capture(name)
    summary = run_sfm(found / "images", out, SfmConfig(**{**SMALL, "keep_work": True, **options}))
    return summary, found


@pytest.fixture(scope="module")
def herzjesu(tmp_path_factory):
    out = tmp_path_factory.mktemp("herzjesu")
    summary, folder = _run("herzjesu-P8", out)
    return summary, out, folder


@pytest.fixture(scope="module")
def fountain(tmp_path_factory):
    out = tmp_path_factory.mktemp("fountain")
    summary, folder = _run("fountain-P11", out)
    return summary, out, folder


# capture fixture -> (median mm, max mm) bounds. Measured at SMALL: fountain-P11 3.2-4.8 / 4.8-6.4 mm and
# herzjesu-P8 4.6-5.0 / 8.7-9.3 mm with the principal point refined (fountain's settled 1.3% off centre, near
# the 1.5% guard; without the refinement 5.6 / 7.7 mm), and exhaustive + incremental at full size without it
# 6.0 / 8.8 and 8.0 / 10.7 mm; repeated extractions moved them by 1-1.5 mm.
GT_BOUNDS = {"fountain": (7.0, 10.0), "herzjesu": (8.0, 14.0)}


@pytest.mark.parametrize("name", sorted(GT_BOUNDS))
def test_real_captures_match_laser_scan_cameras_and_validate(name, request):
    summary, out, folder = request.getfixturevalue(name)
    err = compare_strecha(out / "sparse" / "0", folder / "gt")
    print(f"\n{name}: {summary.matcher}+{summary.mapper}, registered {summary.registered_images}/"
          f"{summary.usable_images}, centre error median {err['centre_median_mm']:.1f} mm, "
          f"max {err['centre_max_mm']:.1f} mm, focal {err['focal_rel_error']:.3%}, validation "
          f"{summary.validation.figures.model_dump_json()}")
    assert summary.registered_images == summary.usable_images == err["images"]
    assert summary.unregistered_images == []
    median_mm, max_mm = GT_BOUNDS[name]
    assert err["centre_median_mm"] < median_mm
    assert err["centre_max_mm"] < max_mm
    assert err["focal_rel_error"] < 0.01
    v = summary.validation
    assert v.passed and v.failed == []
    figs = v.figures
    limits = validate.LIMITS
    # well clear of the limits, not just above them
    assert figs.baseline_depth_ratio > 3 * limits.min_baseline_depth_ratio
    assert figs.median_triangulation_deg > 3 * limits.min_median_triangulation_deg
    assert figs.pair_agreement > 2 * limits.min_pair_agreement
    assert read_summary(SfmSummary, out / "sfm.json").validation == v


@pytest.mark.parametrize("name", sorted(GT_BOUNDS))
def test_collapsed_camera_path_fails_validation(name, request):
    """Camera centres moved to 6% of their spread (a real global-mapper collapse); the unmodified model passes."""
    summary, out, _ = request.getfixturevalue(name)
    chosen = summary.attempts.index(next(a for a in summary.attempts if a.validation == summary.validation))
    raw = out / "_work" / f"model_{chosen}" / "best"
    database = out / "_work" / f"{summary.matcher}.db"
    model = colmap.read_model(raw)
    assert validate.verdict(validate.figures(model, database)).passed
    broken = validate.verdict(validate.figures(collapse_centres(model, 0.06), database))
    print(f"\n{name} collapsed to 6%: failed {broken.failed}, {broken.figures.model_dump_json()}")
    assert not broken.passed
    assert {"baseline", "triangulation"} <= set(broken.failed)
    assert "parallax" in broken.problems[0]


COLLAPSING_WORKER = textwrap.dedent("""
    # The real worker, except that the first attempt's model is collapsed before it is validated.
    import sys
    from spaceport.geometry import colmap
    from spaceport.stages.sfm import colmap_steps
    from tests.support.sfm_evaluate import collapse_centres

    real = colmap_steps.map_images

    def map_images(database, images, out, mapper, job):
        model, registered, sizes = real(database, images, out, mapper, job)
        if model is not None and out.name == "model_0":
            colmap.write_model_binary(collapse_centres(colmap.read_model(model), 0.06), model)
        return model, registered, sizes

    colmap_steps.map_images = map_images
    sys.exit(colmap_steps.main(sys.argv[1]))
""")


def test_fallback_replaces_a_collapsed_model_end_to_end(tmp_path, monkeypatch):
    """herzjesu-P8 through the whole stage, its first model collapsed: the other mapper's model is kept, both recorded."""
    (tmp_path / "collapsing_worker.py").write_text(COLLAPSING_WORKER)
    monkeypatch.setattr(pipeline, "WORKER_MODULE", "collapsing_worker")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    summary, folder = _run("herzjesu-P8", tmp_path / "out", max_side=512, max_features=2048, keep_work=False)
    first, second = summary.attempts
    assert (first.matcher, first.mapper) == ("exhaustive", "incremental")
    assert first.registered == 8 and not first.validation.passed
    assert (second.matcher, second.mapper) == ("exhaustive", "global")
    assert second.validation.passed
    assert summary.fallback and summary.mapper == "global" and summary.validation == second.validation
    assert read_summary(SfmSummary, tmp_path / "out" / "sfm.json") == summary
    err = compare_strecha(tmp_path / "out" / "sparse" / "0", folder / "gt")
    assert err["matched"] == 8 and err["centre_median_mm"] < 25.0


def test_pure_rotation_is_refused_with_a_parallax_sentence(tmp_path, tree_digest):
    """Crops of one photo are views from one centre (a camera turned on the spot): no model may pass."""
    photo = Image.open(capture("fountain-P11") / "images" / "0005.jpg")
    upload = tmp_path / "turned_on_the_spot"
    upload.mkdir()
    w, h = photo.size
    cw, ch = w // 2, h // 2
    for i in range(8):  # windows sliding right and a little down, ~88% overlap between neighbours
        x, y = i * (w - cw) // 7, (i % 3) * (h - ch) // 4
        photo.crop((x, y, x + cw, y + ch)).save(upload / f"crop_{i}.jpg", quality=95)
    before = tree_digest(upload)
    with pytest.raises((SfmDegenerate, TooFewRegistered)) as info:
        run_sfm(upload, tmp_path / "out", SfmConfig(max_features=2048))
    assert tree_digest(upload) == before
    err = info.value
    print(f"\n{err.name}: {err.reason} {err.fix}")
    assert "parallax" in err.reason or "turn" in err.reason
    assert "walk" in err.fix.lower()
    assert not (tmp_path / "out" / "sfm.json").exists()
    assert not (tmp_path / "out" / "sparse").exists()


def test_two_unrelated_scenes_name_the_groups_and_the_images_left_out(tmp_path):
    upload = tmp_path / "two_scenes"
    upload.mkdir()
    for name in ("fountain-P11", "herzjesu-P8"):
        for p in sorted((capture(name) / "images").iterdir()):
            shutil.copy(p, upload / f"{name}_{p.name}")
    with pytest.raises(TooFewRegistered) as info:
        run_sfm(upload, tmp_path / "out", SfmConfig(max_side=512, max_features=2048))
    err = info.value
    print(f"\n{err.name}: {err.reason} {err.fix}")
    assert err.details["usable"] == 19 and err.details["groups"][:2] == [11, 8]
    assert "2 unconnected groups" in err.reason and "unrelated scenes" in err.reason
    assert err.details["left_out"] == sorted(f"herzjesu-P8_{i:04d}.jpg" for i in range(8))
    assert "herzjesu-P8_0000.jpg" in err.reason
    assert "one scene per job" in err.fix

