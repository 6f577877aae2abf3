"""What real phones and cameras make, through the SfM stage's ingest: rotated videos, HEIC photos,
any letter case, and the camera grouping decided from the images."""

from __future__ import annotations

import random
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from spaceport.core.errors import NoUsableFrames, UnsupportedInput
from spaceport.core.summaries import SfmSummary, read_summary
from spaceport.stages.sfm.config import SfmConfig
from spaceport.stages.sfm.ingest import Ingested, camera_mode, ingest, resolve
from spaceport.stages.sfm.pipeline import plan_attempts, run_sfm
from tests.real_captures import capture

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg makes the test videos (apt-get install ffmpeg)")
SMALL = SfmConfig(min_images=2, video_frames=6, min_sharpness=0)


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-v", "error", "-y", *args], check=True, timeout=60)


@pytest.fixture(scope="module")
def phone_like_video(tmp_path_factory) -> Path:
    """2 s of a test pattern with B-frames and a variable frame rate (10 fps, then 3-4 fps), as phones write."""
    out = tmp_path_factory.mktemp("video") / "base.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-t", "2", "-c:v", "libx264", "-bf", "2", "-g", "12",
            "-vf", "setpts='if(lt(N,8),N*0.1,0.8+(N-8)*0.3)/TB'", "-fps_mode", "vfr", str(out))
    return out


def _grey(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.float64)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@needs_ffmpeg
@pytest.mark.parametrize(("rotate", "expected"), [("90", 90), ("180", 180), ("270", 270)])
def test_video_frames_are_turned_as_a_player_shows_them(phone_like_video, tmp_path, rotate, expected) -> None:
    video = tmp_path / "CLIP.Mp4"
    _ffmpeg("-i", str(phone_like_video), "-c", "copy", "-metadata:s:v:0", f"rotate={rotate}", str(video))
    result = ingest(video, tmp_path / "work", SMALL)
    assert result.video_rotation == expected
    # every frame of the variable-rate, B-frame stream, as ffprobe counts them (12: 8 at 10 fps, then 4 slower)
    counted = subprocess.run([shutil.which("ffprobe") or "ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                              "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(video)],
                             capture_output=True, text=True, check=True, timeout=60).stdout
    assert result.frames_decoded == int(counted.strip().strip(",")) == 12
    for name in result.names:
        index = int(name[6:12])
        # ffmpeg turns frames by the display matrix itself (autorotate): the reference
        shown = tmp_path / f"shown_{index}.png"
        _ffmpeg("-i", str(video), "-vf", f"select=eq(n\\,{index})", "-fps_mode", "passthrough", "-frames:v", "1", str(shown))
        ours, ref = _grey(tmp_path / "work" / "images" / name), _grey(shown)
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).mean() < 4  # JPEG q95 against PNG
        assert _corr(ours, ref) > 0.98


@needs_ffmpeg
def test_a_rotation_that_is_not_a_quarter_turn_is_refused(phone_like_video, tmp_path, tree_digest) -> None:
    video = tmp_path / "tilted.MOV"
    _ffmpeg("-i", str(phone_like_video), "-c", "copy", "-f", "mov", "-metadata:s:v:0", "rotate=45", str(video))
    before = tree_digest(video)
    with pytest.raises(UnsupportedInput, match="45 degrees, which is not a multiple of 90") as info:
        run_sfm(video, tmp_path / "out", SMALL)
    assert info.value.details["rotation_degrees"] == 45
    assert tree_digest(video) == before and not (tmp_path / "out" / "sfm.json").exists()


@needs_ffmpeg
def test_a_video_whose_frames_all_fail_to_decode(phone_like_video, tmp_path) -> None:
    data = bytearray(phone_like_video.read_bytes())
    at = data.find(b"mdat")
    size = int.from_bytes(data[at - 4:at], "big")
    rng = random.Random(0)
    data[at + 4:at - 4 + size] = bytes(rng.randrange(256) for _ in range(size - 8))  # the container is intact
    video = tmp_path / "garbled.mp4"
    video.write_bytes(bytes(data))
    with pytest.raises(NoUsableFrames, match="no decodable frames"):
        run_sfm(video, tmp_path / "out", SMALL)


def test_the_portrait_phone_video_comes_out_upright(tmp_path) -> None:
    video = capture("monstree", "monstree_portrait.mp4")
    result = ingest(video, tmp_path / "work", SfmConfig(video_frames=40))
    assert result.video_rotation == 270 and result.usable == 23
    photos = sorted(capture("monstree", "images").iterdir())
    matched = 0
    for name in result.names:
        frame = Image.open(tmp_path / "work" / "images" / name).convert("L")
        assert frame.size == (756, 1008)  # coded 1008x756, shown portrait
        photo = ImageOps.exif_transpose(Image.open(photos[int(name[6:12])])).convert("L")
        if photo.size != frame.size:
            continue  # one of the 4 photos shot landscape: the video shows it sideways, as players do
        upright = _corr(_grey_of(frame), _grey_of(photo))
        turned = _corr(_grey_of(frame), _grey_of(photo.rotate(180)))
        assert upright > 0.98 and turned < 0.5, (name, upright, turned)
        matched += 1
    assert matched == 19


def _zipped(video: Path, folder: Path) -> Path:
    upload = folder / "upload.zip"
    with zipfile.ZipFile(upload, "w", zipfile.ZIP_STORED) as zf:
        zf.write(video, f"phone/{video.name}")
    return upload


def test_a_zipped_video_is_ingested_as_the_video_itself(tmp_path) -> None:
    video = capture("monstree", "monstree_portrait.mp4")
    config = SfmConfig(video_frames=8, min_images=2)
    direct = ingest(video, tmp_path / "direct", config)
    zipped = ingest(_zipped(video, tmp_path), tmp_path / "zipped", config)
    assert (direct.kind, direct.media) == ("video", "video") and (zipped.kind, zipped.media) == ("zip", "video")
    assert zipped.names == direct.names and len(zipped.names) == 8  # the same frames, in temporal order
    assert zipped.frames_decoded == zipped.input_files == 23 and zipped.video_rotation == 270 and zipped.sizes == 1
    assert camera_mode(zipped, SfmConfig()) == "SINGLE"
    assert plan_attempts(zipped.media, 200, SfmConfig())[0] == ("sequential", "global")


@pytest.mark.slow
def test_a_zipped_video_gets_sequential_matching_and_one_camera(tmp_path) -> None:
    from spaceport.cli import main

    upload = _zipped(capture("monstree", "monstree_portrait.mp4"), tmp_path)
    code = main(["sfm", str(upload), "--out", str(tmp_path / "out"), "--max-side", "480", "--max-features", "2048"])
    assert code == 0
    summary = read_summary(SfmSummary, tmp_path / "out" / "sfm.json")
    assert summary.input_kind == "zip" and summary.ingest.media == "video"
    assert summary.matcher == "sequential" and summary.auto.matcher
    assert summary.camera_mode == "SINGLE" and summary.cameras == 1
    assert summary.registered_images >= 0.8 * summary.usable_images


def _grey_of(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64)


@pytest.fixture(scope="module")
def heic_folder(tmp_path_factory) -> Path:
    """Two monstree photos as HEIC (pillow-heif keeps their EXIF orientation 6), one cut short, and the JPEGs."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    folder = tmp_path_factory.mktemp("heic")
    for name in ("IMG_1025.JPG", "IMG_1027.JPG"):
        src = capture("monstree", "images", name)
        shutil.copyfile(src, folder / name)
        with Image.open(src) as im:
            im.save(folder / (Path(name).stem + ".HEIC"), exif=im.getexif().tobytes(), quality=90)
    data = (folder / "IMG_1025.HEIC").read_bytes()
    (folder / "IMG_0001.heif").write_bytes(data[: len(data) // 3])
    return folder


def test_heic_photos_are_read_upright_with_their_camera_tags(heic_folder, tmp_path, tree_digest) -> None:
    before = tree_digest(heic_folder)
    assert resolve(heic_folder / "IMG_1025.HEIC") == ("images", heic_folder / "IMG_1025.HEIC")  # not a video
    result = ingest(heic_folder, tmp_path / "work", SfmConfig(min_images=2))
    assert result.input_files == 5 and result.corrupt == 1 and result.usable == 4
    assert result.exif_cameras == 4 and result.sizes == 1
    images = tmp_path / "work" / "images"
    for stem in ("IMG_1025", "IMG_1027"):
        jpeg, heic = sorted(n for n in result.names if n.startswith(stem))
        a, b = _grey(images / jpeg), _grey(images / heic)
        assert a.shape == b.shape == (1008, 756)  # portrait, as the phone shows it
        assert np.abs(a - b).mean() < 4
        exif = Image.open(images / heic).getexif()
        assert exif.get(0x010F) == "Apple" and exif.get(0x0112, 1) == 1
    assert tree_digest(heic_folder) == before


def _ingested(kind, media, **counts) -> Ingested:
    zero = dict.fromkeys(("input_files", "corrupt", "skipped_other", "downscaled", "exif_rotated",
                          "frames_decoded", "frames_blurry"), 0)
    return Ingested(kind=kind, media=media, images_dir=".", names=["a.jpg"] * 3, usable=3, sharpness=[],
                    **{**zero, **counts})


def test_camera_grouping_is_decided_from_the_images() -> None:
    photos = _ingested("zip", "images", exif_cameras=3, sizes=2)
    renders = _ingested("images", "images", exif_cameras=0, sizes=1)
    mixed_sizes = _ingested("images", "images", exif_cameras=0, sizes=2)
    video = _ingested("video", "video", sizes=1)
    auto = SfmConfig()
    assert auto.single_camera == "auto"
    assert camera_mode(photos, auto) == "AUTO"
    assert camera_mode(renders, auto) == "SINGLE"
    assert camera_mode(mixed_sizes, auto) == "AUTO"
    assert camera_mode(video, auto) == "SINGLE"
    for ing in (photos, renders, video):
        assert camera_mode(ing, SfmConfig(single_camera=True)) == "SINGLE"
        assert camera_mode(ing, SfmConfig(single_camera=False)) == "PER_IMAGE"


@pytest.mark.slow
def test_single_camera_false_gives_every_image_its_own_camera(tmp_path) -> None:
    """The typed option reaches the pycolmap worker as a bool (the string "false" would be truthy)."""
    from spaceport.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    # Ten neighbouring photos: with a focal to estimate per image, six left two unregistered in some runs.
    names = ("IMG_1040.JPG", "IMG_1041.JPG", "IMG_1042.JPG", "IMG_1044.JPG", "IMG_1046.JPG", "IMG_1047.JPG",
             "IMG_1048.JPG", "IMG_1049.JPG", "IMG_1050.JPG", "IMG_1051.JPG")
    for name in names:
        shutil.copyfile(capture("monstree", "images", name), photos / name)
    code = main(["sfm", str(photos), "--out", str(tmp_path / "out"), "--single-camera", "false", "--max-side", "480",
                 "--max-features", "2048", "--min-images", "4"])
    assert code == 0
    from spaceport.core.summaries import SfmSummary, read_summary

    summary = read_summary(SfmSummary, tmp_path / "out" / "sfm.json")
    assert summary.camera_mode == "PER_IMAGE"
    assert summary.registered_images >= 7
    assert summary.cameras == summary.registered_images
    # Intrinsics priors from EXIF: the iPhone 7's 28 mm (35 mm equivalent) lens is 0.8 x the longer
    # side in pixels (COLMAP's own guess without EXIF would be 1.2 x).
    priors = summary.camera_priors
    assert len(priors) == len(names) and all(p.from_exif and p.images == 1 for p in priors)
    for p in priors:
        assert abs(p.focal / (0.8 * max(p.width, p.height)) - 1) < 0.05, p
