"""The synthetic scenes: deterministic, and their cameras are exactly the ones the images were made with."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from spaceport.cli import main
from spaceport.core.summaries import CamerasFile, read_summary
from spaceport.geometry import colmap
from spaceport.scenes import make_scene
from spaceport.scenes.render import build_scene


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = make_scene(tmp_path / "a", views=3, size=(96, 64), seed=7)
    make_scene(tmp_path / "b", views=3, size=(96, 64), seed=7)
    make_scene(tmp_path / "c", views=3, size=(96, 64), seed=8)
    assert a["views"] == 3
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a" / "images") != _digest(tmp_path / "c" / "images")


def test_layout_and_json_matches_colmap_text(small_scene):
    out, summary = small_scene
    names = sorted(p.name for p in (out / "images").iterdir())
    assert names == [f"view_{i:03d}.png" for i in range(24)]
    assert Image.open(out / "images" / names[0]).size == (320, 240)
    model = colmap.read_model(out / "gt" / "sparse" / "0")
    (cam,) = model.cameras.values()
    assert cam.model == "PINHOLE" and (cam.width, cam.height) == (320, 240)
    assert 2000 <= len(model.points) <= 8000
    cams = read_summary(CamerasFile, out / "gt" / "cameras.json").cameras
    assert [c.name for c in cams] == names
    by_name = {im.name: im for im in model.images.values()}
    for c in cams:
        assert c.split == "train" and (c.width, c.height) == (320, 240)
        np.testing.assert_allclose(np.array(c.K), cam.K(), atol=1e-9)
        np.testing.assert_allclose(np.array(c.world_to_camera), by_name[c.name].world_to_camera(), atol=1e-9)
    assert (out / "video.mp4").stat().st_size > 10_000
    assert summary["radius"] > 5


def test_known_points_project_onto_their_colours(small_scene):
    """Every ground-truth point that a camera sees lands on a pixel of the point's colour."""
    out, _ = small_scene
    model = colmap.read_model(out / "gt" / "sparse" / "0")
    (cam,) = model.cameras.values()
    K = cam.K()
    scene = build_scene(seed=3)
    checked, diffs = 0, []
    for im in list(model.images.values())[::4]:
        rgb = np.asarray(Image.open(out / "images" / im.name), dtype=np.float64)
        _, depth = scene.render(K, im.world_to_camera(), cam.width, cam.height)
        pc = model.points.xyz @ im.R().T + im.tvec
        uv = pc @ K.T
        uv = uv[:, :2] / uv[:, 2:3]
        ij = np.floor(uv).astype(int)
        inside = (pc[:, 2] > 0) & (ij[:, 0] >= 1) & (ij[:, 1] >= 1) & (ij[:, 0] < cam.width - 1) & (ij[:, 1] < cam.height - 1)
        idx = np.flatnonzero(inside)
        # visible: nothing nearer along the ray (a 3x3 neighbourhood keeps silhouette edges out)
        visible = np.ones(len(idx), bool)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                d = depth[ij[idx, 1] + dy, ij[idx, 0] + dx]
                visible &= np.abs(d - pc[idx, 2]) < 0.02 * pc[idx, 2]
        idx = idx[visible]
        px = rgb[ij[idx, 1], ij[idx, 0]]
        diffs.append(np.abs(px - model.points.rgb[idx]).mean(axis=1))
        checked += len(idx)
    d = np.concatenate(diffs)
    print(f"checked {checked} visible point projections; median |colour diff| {np.median(d):.1f}/255")
    assert checked > 1000
    assert np.median(d) < 12
    assert np.mean(d < 40) > 0.9


def test_demo_scene_command(tmp_path, capsys):
    rc = main(["demo-scene", "--out", str(tmp_path / "s"), "--views", "2", "--size", "64x48", "--seed", "1"])
    assert rc == 0
    assert "stage=demo-scene" in capsys.readouterr().out
    assert len(list((tmp_path / "s" / "images").glob("view_*.png"))) == 2
    rc = main(["demo-scene", "--out", str(tmp_path / "t"), "--size", "64by48"])
    assert rc == 2
    assert "ConfigInvalid" in capsys.readouterr().err
