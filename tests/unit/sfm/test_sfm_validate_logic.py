"""The validation figures on hand-made models whose answers are known (no pycolmap, no images)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from spaceport.geometry import colmap
from spaceport.stages.sfm import validate
from tests.support.sfm_evaluate import collapse_centres


def _look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World-to-camera rotation of a camera at ``centre`` looking at ``target`` (z forward)."""
    z = target - centre
    z /= np.linalg.norm(z)
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def _model(centres: np.ndarray, n_points: int = 400, seed: int = 0) -> colmap.Model:
    """Points in a 1 m ball at the origin, every point seen by every camera (keypoint index = point index)."""
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-0.5, 0.5, (n_points, 3))
    images = {}
    for i, c in enumerate(centres, start=1):
        R = _look_at(c, np.zeros(3))
        images[i] = colmap.Image(i, colmap.rotmat_to_qvec(R), -R @ c, 1, f"frame_{i:04d}.jpg",
                                 np.zeros((n_points, 2)), np.arange(n_points, dtype=np.int64))
    points = colmap.Points3D(np.arange(n_points, dtype=np.int64), xyz, np.zeros((n_points, 3), np.uint8),
                             np.zeros(n_points), np.full(n_points, len(centres), np.int64))
    cam = colmap.Camera(1, "PINHOLE", 640, 480, np.array([500.0, 500.0, 320.0, 240.0]))
    return colmap.Model({1: cam}, images, points)


def _ring(n: int, radius: float = 4.0, arc_deg: float = 90.0) -> np.ndarray:
    a = np.radians(np.linspace(0, arc_deg, n))
    return np.stack([radius * np.cos(a), radius * np.sin(a), np.full(n, 0.5)], 1)


def test_an_arc_around_the_object_passes_with_the_expected_angles():
    figs = validate.figures(_model(_ring(10)))
    # cameras on a 90-degree arc at 4 m: every point's rays span about 90 degrees
    assert 80 < figs.median_triangulation_deg < 100
    assert figs.usable_points_fraction == 1.0
    assert 0.3 < figs.baseline_depth_ratio < 1.0
    assert validate.verdict(figs).passed


def test_a_collapsed_path_and_a_camera_turned_on_the_spot_fail():
    good = _model(_ring(10))
    collapsed = validate.verdict(validate.figures(collapse_centres(good, 0.06)))
    assert not collapsed.passed and "baseline" in collapsed.failed
    assert 4 < collapsed.figures.median_triangulation_deg < 7  # 6% of the ~90-degree spread
    spot = np.tile([[4.0, 0.0, 0.5]], (10, 1)) + np.random.default_rng(1).normal(0, 1e-4, (10, 3))
    turned = validate.verdict(validate.figures(_model(spot)))
    assert not turned.passed and turned.figures.median_triangulation_deg < 0.01
    assert "parallax" in turned.problems[0]
    assert "walk" in validate.fix_for(turned.failed).lower()


def test_video_path_order_is_measured():
    model = _model(_ring(12))
    order = [f"frame_{i:04d}.jpg" for i in range(1, 13)]
    assert validate.path_neighbour_fraction(model, order) == 1.0
    shuffled = [order[i] for i in (9, 2, 7, 4, 5, 11, 0, 3, 6, 10, 8, 1)]  # no frame next to its spatial neighbours
    assert validate.path_neighbour_fraction(model, shuffled) == 0.0


def _database(path, pairs: dict[tuple[int, int], tuple[np.ndarray, int]]) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE two_view_geometries (pair_id INTEGER PRIMARY KEY NOT NULL, rows INTEGER NOT NULL, "
                "cols INTEGER NOT NULL, data BLOB, config INTEGER NOT NULL)")
    for (a, b), (matches, config) in pairs.items():
        con.execute("INSERT INTO two_view_geometries VALUES (?, ?, 2, ?, ?)",
                    (a * validate.MAX_IMAGES + b, len(matches), matches.astype(np.uint32).tobytes(), config))
    con.commit()
    con.close()


def test_pair_agreement_counts_the_matches_the_model_kept(tmp_path):
    a = np.radians([0.0, 30.0, 90.0])  # pair distances 2.1 m (1-2) < 4.0 m (2-3) < 5.7 m (1-3)
    model = _model(np.stack([4 * np.cos(a), 4 * np.sin(a), np.full(3, 0.5)], 1), n_points=100)
    same = np.stack([np.arange(100), np.arange(100)], 1)  # keypoint k of both images is point k: all kept
    crossed = np.stack([np.arange(100), (np.arange(100) + 1) % 100], 1)  # never the same point
    half = np.concatenate([same[:50], crossed[50:]])
    _database(tmp_path / "db", {(1, 2): (same, 3), (1, 3): (half, 3), (2, 3): (crossed, 5)})
    figs = validate.pair_figures(model, tmp_path / "db")
    assert figs["pairs_checked"] == 3
    assert figs["pair_agreement"] == pytest.approx(0.5)  # median of 1.0, 0.5, 0.0
    assert figs["pairs_below_agreement"] == 1
    assert figs["planar_or_panoramic_pairs"] == pytest.approx(1 / 3)
    assert validate.planar_or_panoramic_pairs(tmp_path / "db") == pytest.approx(1 / 3)
    # the pairs at least the median distance (4.0 m) apart: 2-3 (a homography) and 1-3
    assert figs["wide_planar_pairs"] == pytest.approx(0.5)


def _sfm_json(folder, validation, left_out: list[str]) -> None:
    """A minimal valid sfm.json (spaceport.core.summaries.SfmSummary) carrying ``validation``."""
    from spaceport.core.summaries import SfmSummary, write_summary

    cam = {"model": "PINHOLE", "width": 640, "height": 480, "params": [500.0, 500.0, 320.0, 240.0]}
    attempt = {"matcher": "exhaustive", "mapper": "incremental", "verified_pairs": 45, "registered": 10,
               "map_seconds": 1.0, "validation": validation}
    write_summary(SfmSummary.model_validate({
        "input": "upload", "input_kind": "images", "input_images": 10, "usable_images": 10, "corrupt_images": 0,
        "registered_images": 10 - len(left_out), "registered_fraction": 1 - len(left_out) / 10,
        "unregistered_images": left_out, "points": 400, "mean_reprojection_error": 0.3, "mean_track_length": 10.0,
        "matcher": "exhaustive", "mapper": "incremental", "auto": {"matcher": True, "mapper": True},
        "fallback": False, "first_choice": {"matcher": "exhaustive", "mapper": "incremental"},
        "attempts": [attempt], "validation": validation, "camera_before_undistortion": cam, "camera": cam,
        "ingest": {"kind": "images", "media": "images", "images_dir": "images", "input_files": 10, "corrupt": 0, "skipped_other": 0,
                   "downscaled": 0, "exif_rotated": 0, "frames_decoded": 0, "frames_blurry": 0, "sharpness": [],
                   "usable": 10},
        "threads": 2, "config": {}, "seconds": {"total": 1.0}, "peak_memory_mb": 1.0}), folder)


def test_verdict_fits_sfm_json_and_the_report_shows_it(tmp_path):
    from spaceport.stages.publish.report import StageInputs, build_report

    sfm = tmp_path / "sfm"
    sfm.mkdir()
    _sfm_json(sfm, validate.verdict(validate.figures(_model(_ring(10)))), ["frame_0007.jpg"])
    page = build_report(StageInputs(sfm=sfm), tmp_path / "report").read_text()
    assert "<p class=pass>Validation (collapse / parallax checks): passed</p>" in page
    assert "could not be placed and are not in the splat: frame_0007.jpg" in page
    assert "median_triangulation_deg" in page
    _sfm_json(sfm, validate.verdict(validate.figures(collapse_centres(_model(_ring(10)), 0.06))), [])
    page = build_report(StageInputs(sfm=sfm), tmp_path / "report2").read_text()
    assert "<p class=fail>Validation (collapse / parallax checks): failed: the camera positions barely differ" in page

def _strafe(depth_relief: float) -> colmap.Model:
    """Cameras moving sideways in a line, all looking +z at points on (or near) the plane z = 4."""
    rng = np.random.default_rng(2)
    n = 300
    xyz = np.stack([rng.uniform(-3, 3, n), rng.uniform(-2, 2, n), 4 + rng.uniform(-depth_relief, depth_relief, n)], 1)
    images = {}
    for i, x in enumerate(np.linspace(-1.5, 1.5, 8), start=1):
        c = np.array([x, 0.0, 0.0])
        images[i] = colmap.Image(i, np.array([1.0, 0, 0, 0]), -c, 1, f"crop_{i}.jpg", np.zeros((n, 2)),
                                 np.arange(n, dtype=np.int64))
    points = colmap.Points3D(np.arange(n, dtype=np.int64), xyz, np.zeros((n, 3), np.uint8), np.zeros(n), np.full(n, 8))
    return colmap.Model({1: colmap.Camera(1, "PINHOLE", 640, 480, np.array([500.0, 500.0, 320.0, 240.0]))}, images, points)


def test_a_flat_picture_seen_from_one_direction_fails_but_relief_or_turning_passes():
    """What crops of one photo reconstruct as: a plane, every camera looking the same way."""
    flat = validate.verdict(validate.figures(_strafe(0.0)))
    assert flat.figures.points_thickness < 1e-6 and flat.figures.view_spread_deg < 1e-6
    assert flat.failed == ["flat_picture"] and "turned on the spot" in flat.problems[0]
    relief = validate.verdict(validate.figures(_strafe(1.0)))
    assert relief.figures.points_thickness > 0.1 and relief.passed
    # the same plane seen from an arc of directions (a facade walked past while turning towards it)
    turned = validate.figures(_model(_ring(10)))
    assert turned.view_spread_deg > 10 and validate.verdict(turned.model_copy(update={"points_thickness": 0.0})).passed
