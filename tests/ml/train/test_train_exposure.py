"""Exposure matching: photos taken at different EXIF exposures are compared with renders at theirs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, TiffImagePlugin

from spaceport.geometry.exif import exif_exposure
from spaceport.stages.train.config import config_for

R = TiffImagePlugin.IFDRational
SMALL = {"model_dir": "gt/sparse/0", "downscale": "1", "sh_degree": "0"}


def _exif(time_s: tuple[int, int] | None, iso, f_number: tuple[int, int] | None = (18, 10)) -> Image.Exif:
    ex = Image.Exif()
    ifd = ex.get_ifd(0x8769)
    if time_s is not None:
        ifd[33434] = R(*time_s)
    if iso is not None:
        ifd[34855] = iso
    if f_number is not None:
        ifd[33437] = R(*f_number)
    return ex


@pytest.mark.parametrize(("exif", "expected"), [
    (_exif((1, 60), 25), 25 / 60 / 1.8**2),
    (_exif((1, 120), 40, None), 40 / 120),  # a missing aperture counts as fixed
    (_exif((1, 60), (32, 32)), 32 / 60 / 1.8**2),  # ISO as a sequence (some cameras)
    (_exif(None, 25), None),
    (_exif((1, 60), None), None),
    (_exif((0, 1), 25), None),
    (Image.Exif(), None),
])
def test_exif_exposure_reads_time_iso_and_aperture(tmp_path, exif, expected):
    path = tmp_path / "p.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path, exif=exif.tobytes())
    with Image.open(path) as im:
        got = exif_exposure(im.getexif())
    assert got == (pytest.approx(expected) if expected is not None else None)


def _exposed_scene(scene: Path, out: Path, factors: dict[str, float] | None) -> Path:
    """The scene with each photo taken at ``factors[name]`` times the base exposure (its pixels
    brightened by that to the power 1/2.2, as an sRGB camera would) and the EXIF saying so."""
    shutil.copytree(scene / "gt", out / "gt")
    (out / "images").mkdir()
    for i, path in enumerate(sorted((scene / "images").iterdir())):
        k = [0.5, 1.0, 2.0][i % 3] if factors is None else factors[path.name]
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0
        shot = np.clip(pixels * k ** (1 / 2.2), 0, 1)
        Image.fromarray((shot * 255 + 0.5).astype(np.uint8)).save(
            out / "images" / path.name, exif=_exif((round(1000 * k), 60_000), 25).tobytes())
    return out


def test_exposure_matching_learns_the_tone_curve_and_predicts_held_out_brightness(scene, tmp_path):
    """Photos at 0.5x/1x/2x exposure (the held-out ones too): with matching on, the renders of the
    held-out photos come out at their EXIF exposure and score well above a run that bakes the
    exposures into the colours; the learned exponent lands near the 1/2.2 the photos were made with."""
    from spaceport.stages.train.trainer import train

    scene = _exposed_scene(scene, tmp_path / "exposed", None)
    values = {**SMALL, "steps": "200", "log_every": "50"}
    on = train(scene, tmp_path / "on", config_for("fast", values))
    off = train(scene, tmp_path / "off", config_for("fast", {**values, "exposure": "false"}))
    assert on.exposure is not None and off.exposure is None
    assert on.exposure.spread == pytest.approx(4.0, rel=0.01)
    assert on.exposure.references == {"": pytest.approx(25 / 60 / 1.8**2, rel=0.01)}  # the training photos' median (1x)
    assert abs(on.exposure.gamma - 1 / 2.2) < 0.12, on.exposure
    assert on.test_psnr > off.test_psnr + 1.0, (on.test_psnr, off.test_psnr)
    assert on.config["exposure"] == "true" and off.config["exposure"] == "false"


def test_same_exposure_everywhere_or_a_photo_without_exif_matches_nothing(scene, tmp_path):
    """One exposure for every photo (nothing to match), or one photo without an exposure (video frames,
    stripped files): the renders are compared as they are, and metrics.json records no fit."""
    from spaceport.stages.train.trainer import train

    names = sorted(p.name for p in (scene / "images").iterdir())
    same = _exposed_scene(scene, tmp_path / "same", dict.fromkeys(names, 1.0))
    assert train(same, tmp_path / "a", config_for("fast", {**SMALL, "steps": "5"})).exposure is None
    partial = _exposed_scene(scene, tmp_path / "partial", {n: 1.0 + (i % 2) for i, n in enumerate(names)})
    with Image.open(partial / "images" / names[3]) as im:
        im.convert("RGB").save(partial / "images" / names[3])  # EXIF dropped
    assert train(partial, tmp_path / "b", config_for("fast", {**SMALL, "steps": "5"})).exposure is None


def test_exposures_are_compared_within_one_camera_only():
    """Two phones whose ISO scales disagree (B reads twice A's exposure for the same brightness): each is
    scaled against its own median; a camera with no training photo is not scaled; one camera whose
    photos all share an exposure beside one that varies still matches the varying one."""
    import torch

    from spaceport.stages.train.exposure import Exposure

    exposures = {"a1": 0.1, "a2": 0.2, "a3": 0.4, "b1": 0.2, "b2": 0.4, "b3": 0.8, "c1": 0.3}
    cameras = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "b2": "B", "b3": "B", "c1": "C"}
    e = Exposure.of(exposures, cameras, ["a1", "a2", "b1", "b2", "a3", "b3"], torch.device("cpu"))
    assert e is not None and e.references == {"A": 0.2, "B": 0.4}
    with torch.no_grad():
        e.gamma.fill_(1.0)
    assert [float(e.gain(n)) for n in ("a1", "a2", "a3", "b1", "b2", "b3", "c1")] == [0.5, 1, 2, 0.5, 1, 2, 1]
    assert e.fit().spread == 4.0
    two = {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}
    same = {"a1": 0.1, "a2": 0.1, "b1": 0.2, "b2": 0.2}
    assert Exposure.of(same, two, list(same), torch.device("cpu")) is None
    mixed = Exposure.of({**same, "b2": 0.8}, two, list(same), torch.device("cpu"))  # A constant, B varies
    assert mixed is not None and mixed.references == {"A": 0.1, "B": 0.5}
    with torch.no_grad():
        mixed.gamma.fill_(1.0)
    assert [float(mixed.gain(n)) for n in ("a1", "a2", "b1", "b2")] == pytest.approx([1, 1, 0.4, 1.6])
