"""The SfM stage on a generated scene: every image registers, and the cameras are the true ones."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from spaceport.cli import main
from spaceport.core.errors import TooFewRegistered
from spaceport.core.summaries import SfmSummary, read_summary
from spaceport.geometry import colmap
from spaceport.stages.sfm.config import SfmConfig
from spaceport.stages.sfm.pipeline import run_sfm
from tests.support.sfm_evaluate import compare


def _check_against_truth(out, scene, label):
    summary = read_summary(SfmSummary, out / "sfm.json")  # the file on disk validates as the model
    err = compare(out / "sparse" / "0", scene / "gt" / "sparse" / "0")
    print(f"\n{label}: registered {summary.registered_images}/{summary.usable_images}, "
          f"centre error max {err['center_max_frac']:.3%} rmse {err['center_rmse_frac']:.3%} of radius "
          f"{err['radius']:.2f} m, rotation max {err['rotation_max_deg']:.3f} deg, "
          f"focal {err['focal']:.2f} vs {err['focal_gt']:.2f} ({err['focal_rel_error']:.3%})")
    assert err["center_max_frac"] < 0.01
    assert err["rotation_max_deg"] < 1.0
    assert err["focal_rel_error"] < 0.01
    return summary, err


def test_every_image_registers_with_true_poses_and_focal(small_scene, tmp_path, tree_digest):
    scene, _ = small_scene
    before = tree_digest(scene / "images")
    out = tmp_path / "sfm"
    summary = run_sfm(scene / "images", out, SfmConfig())
    assert tree_digest(scene / "images") == before
    assert summary.registered_images == summary.usable_images == 24
    assert (summary.matcher, summary.mapper, summary.fallback) == ("exhaustive", "incremental", False)
    _check_against_truth(out, scene, "exhaustive+incremental")
    model = colmap.read_model(out / "sparse" / "0")
    (cam,) = model.cameras.values()
    assert cam.model == "PINHOLE"
    assert len(model.points) > 500
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(im.name for im in model.images.values())
    assert summary.points == len(model.points) and summary.input_images == 24
    assert summary.mean_reprojection_error < 1.0
    assert {"ingest", "extract", "match", "map", "undistort", "total"} <= set(summary.seconds)
    assert not (out / "_work").exists()


def test_global_mapper_recovers_the_same_cameras(small_scene, tmp_path):
    scene, _ = small_scene
    out = tmp_path / "sfm"
    summary = run_sfm(scene / "images", out, SfmConfig(mapper="global", matcher="retrieval", retrieval_neighbors=6))
    assert summary.registered_images == 24
    assert (summary.matcher, summary.mapper) == ("retrieval", "global")
    # retrieval matched far fewer pairs than the 276 of exhaustive matching
    assert summary.attempts[0].verified_pairs < 276 * 0.6
    _check_against_truth(out, scene, "retrieval+global")


def test_video_registers_every_sampled_frame(small_scene, tmp_path, tree_digest):
    scene, _ = small_scene
    before = tree_digest(scene / "video.mp4")
    out = tmp_path / "sfm"
    summary = run_sfm(scene / "video.mp4", out, SfmConfig(video_frames=24))
    assert tree_digest(scene / "video.mp4") == before
    assert summary.input_kind == "video" and summary.matcher == "sequential"
    assert summary.usable_images == 24
    assert summary.registered_images == summary.usable_images
    model = colmap.read_model(out / "sparse" / "0")
    names = sorted(im.name for im in model.images.values())
    assert names[0].startswith("frame_") and names[0].endswith(".jpg")


def test_sagemaker_layout_zip_with_folders_and_a_corrupt_image(small_scene, tmp_path, tree_digest, monkeypatch, capsys):
    """`spaceport sfm` with no paths reads the one zip in /opt/ml/processing/input/upload."""
    scene, _ = small_scene
    root = tmp_path / "opt_ml"
    upload = root / "processing" / "input" / "upload"
    upload.mkdir(parents=True)
    with zipfile.ZipFile(upload / "photos.zip", "w") as zf:
        for i in range(12):
            zf.write(scene / "images" / f"view_{i:03d}.png", f"trip/day{i % 2}/view_{i:03d}.png")
        zf.writestr("trip/broken.jpg", b"\xff\xd8\xff\xe0 this is not really a jpeg")
        zf.writestr("trip/notes.txt", "not an image")
    before = tree_digest(upload)
    monkeypatch.setenv("SPACEPORT_SM_ROOT", str(root))
    assert main(["sfm", "--preset", "fast", "--min-images", "5"]) == 0
    assert tree_digest(upload) == before
    summary = read_summary(SfmSummary, root / "processing" / "output" / "sfm" / "sfm.json")
    assert summary.input_kind == "zip"
    assert summary.corrupt_images == 1 and summary.usable_images == 12
    assert summary.registered_images == 12
    assert "stage=sfm final=1" in capsys.readouterr().out


def test_too_few_registered_reports_counts(tmp_path, tree_digest):
    from PIL import Image
    from skimage import data

    folder = tmp_path / "unrelated"
    folder.mkdir()
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field"):
        Image.fromarray(getattr(data, name)()).convert("RGB").resize((320, 240)).save(folder / f"{name}.jpg")
    before = tree_digest(folder)
    with pytest.raises(TooFewRegistered) as info:
        run_sfm(folder, tmp_path / "out", SfmConfig())
    assert tree_digest(folder) == before
    err = info.value
    assert err.details["usable"] == 6 and err.details["registered"] < err.details["required"]
    assert len(err.details["attempts"]) >= 2  # the fallback was tried before failing
    assert "of 6 usable images" in err.reason
    assert not (tmp_path / "out" / "sfm.json").exists()


GUARD_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from PIL import Image
    from spaceport.core.errors import SpaceportError
    from spaceport.stages.sfm.config import SfmConfig
    from spaceport.stages.sfm.pipeline import run_sfm
    try:
        run_sfm(sys.argv[1], sys.argv[2], SfmConfig(min_images=3))
    except SpaceportError:
        pass  # registration is not the point here: pycolmap ran
    assert "pycolmap" not in sys.modules, "pycolmap was imported into the calling process"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(sys.argv[3])
    print("png written")
""")

HAZARD_SCRIPT = textwrap.dedent("""
    import sys
    import pycolmap  # noqa: F401  (first, as an unguarded stage would)
    import numpy as np
    from PIL import Image
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(sys.argv[1])
""")


def test_png_writes_survive_a_sfm_run_in_the_same_process(small_scene, tmp_path):
    """The pycolmap-zlib hazard: the control shows it is real, the guarded stage shows it cannot happen."""
    scene, _ = small_scene
    control = subprocess.run([sys.executable, "-c", HAZARD_SCRIPT, str(tmp_path / "control.png")],
                             capture_output=True, text=True, check=False)
    hazard_present = control.returncode != 0
    print(f"\nunguarded import order: rc={control.returncode} (hazard {'present' if hazard_present else 'absent'})")
    images = tmp_path / "few"
    images.mkdir()
    for i in range(4):
        shutil.copy(scene / "images" / f"view_{i:03d}.png", images)
    run = subprocess.run([sys.executable, "-c", GUARD_SCRIPT, str(images), str(tmp_path / "out"), str(tmp_path / "after.png")],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "png written" in run.stdout
    assert (tmp_path / "after.png").stat().st_size > 1000
    assert np.asarray(__import__("PIL.Image").Image.open(tmp_path / "after.png")).shape == (64, 64, 3)
