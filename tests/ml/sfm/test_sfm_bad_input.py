"""Bad uploads get a typed error with a reason and a fix, and the upload is never modified."""

from __future__ import annotations

import io
import os
import shutil
import stat
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageFilter

from spaceport.cli import main
from spaceport.core.errors import (
    CorruptArchive,
    EmptyInput,
    NoUsableFrames,
    SpaceportError,
    TooFewImages,
    UnsafeArchive,
    UnsupportedInput,
)
from spaceport.stages.sfm.config import SfmConfig
from spaceport.stages.sfm.ingest import ingest
from spaceport.stages.sfm.pipeline import run_sfm


def _png_bytes(seed: int = 0, size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _expect(error: type[SpaceportError], upload, tmp_path, tree_digest, config: SfmConfig | None = None) -> SpaceportError:
    """Run the stage on ``upload``: it must raise ``error`` and leave the upload byte-identical."""
    before = tree_digest(upload)
    with pytest.raises(error) as info:
        run_sfm(upload, tmp_path / "out", config or SfmConfig())
    assert tree_digest(upload) == before
    exc = info.value
    assert type(exc) is error
    assert exc.reason.endswith(".") and exc.fix.endswith(".") and len(exc.reason) > 15
    assert not (tmp_path / "out" / "sfm.json").exists()
    return exc


def test_empty_folder_and_empty_file(tmp_path, tree_digest):
    (tmp_path / "upload").mkdir()
    _expect(EmptyInput, tmp_path / "upload", tmp_path, tree_digest)
    (tmp_path / "photos.zip").write_bytes(b"")
    _expect(EmptyInput, tmp_path / "photos.zip", tmp_path, tree_digest)
    empty_zip = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty_zip, "w"):
        pass
    _expect(EmptyInput, empty_zip, tmp_path, tree_digest)


def test_not_an_archive_video_or_image(tmp_path, tree_digest):
    notes = tmp_path / "notes.txt"
    notes.write_text("my holiday photos are somewhere else\n")
    _expect(UnsupportedInput, notes, tmp_path, tree_digest)
    folder = tmp_path / "upload"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    (folder / "b.pdf").write_bytes(b"%PDF-1.4")
    _expect(UnsupportedInput, folder, tmp_path, tree_digest)


def test_corrupt_zip(tmp_path, tree_digest):
    garbage = tmp_path / "photos.zip"
    garbage.write_bytes(os.urandom(4096))
    _expect(CorruptArchive, garbage, tmp_path, tree_digest)
    good = io.BytesIO()
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(6):
            zf.writestr(f"img_{i}.png", _png_bytes(i))
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    _expect(CorruptArchive, truncated, tmp_path, tree_digest)
    # a flipped byte inside a compressed entry: the CRC check catches it while streaming
    data = bytearray(good.getvalue())
    data[200] ^= 0xFF
    flipped = tmp_path / "flipped.zip"
    flipped.write_bytes(bytes(data))
    _expect(CorruptArchive, flipped, tmp_path, tree_digest)


@pytest.mark.parametrize("entry", ["../escape.png", "photos/../../escape.png", "/etc/escape.png", "C:/escape.png",
                                   "..\\escape.png"])
def test_zip_entries_that_escape(tmp_path, tree_digest, entry):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.png", _png_bytes())
        zf.writestr(zipfile.ZipInfo(entry), _png_bytes(1))
    exc = _expect(UnsafeArchive, archive, tmp_path, tree_digest)
    assert "escape" in exc.reason
    assert not (tmp_path / "escape.png").exists() and not (tmp_path.parent / "escape.png").exists()


def test_zip_symlink_entry(tmp_path, tree_digest):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.png", _png_bytes())
        link = zipfile.ZipInfo("link.png")
        link.create_system = 3  # unix
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    exc = _expect(UnsafeArchive, archive, tmp_path, tree_digest)
    assert "symbolic link" in exc.reason


def test_zip_bomb_declared_size_count_and_lying_header(tmp_path, tree_digest):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("huge.png", b"\0" * (24 * 2**20))  # 24 MiB of zeros: ~24 KiB compressed
    assert bomb.stat().st_size < 100_000
    exc = _expect(UnsafeArchive, bomb, tmp_path, tree_digest, SfmConfig(max_extracted_mb=16))
    assert "zip bomb" in exc.reason and exc.details["limit_bytes"] == 16 * 2**20

    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(30):
            zf.writestr(f"img_{i}.png", b"x")
    _expect(UnsafeArchive, many, tmp_path, tree_digest, SfmConfig(max_files=20))

    # a header that understates the entry's size: streaming stops at the declared size
    liar = io.BytesIO()
    with zipfile.ZipFile(liar, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.png", b"\0" * (4 * 2**20))
    raw = bytearray(liar.getvalue())
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # uncompressed size fields
        at = raw.find(sig)
        raw[at + offset: at + offset + 4] = (1000).to_bytes(4, "little")
    lying = tmp_path / "lying.zip"
    lying.write_bytes(bytes(raw))
    with pytest.raises((UnsafeArchive, CorruptArchive)):
        run_sfm(lying, tmp_path / "out2", SfmConfig())


def test_too_few_usable_images_counts_corrupt_ones(tmp_path, tree_digest):
    folder = tmp_path / "upload"
    folder.mkdir()
    for i in range(3):
        (folder / f"good_{i}.png").write_bytes(_png_bytes(i))
    for i in range(4):
        (folder / f"bad_{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(300))
    exc = _expect(TooFewImages, folder, tmp_path, tree_digest)
    assert exc.details == {"usable": 3, "corrupt": 4, "minimum": 5}
    assert "Only 3 usable" in exc.reason


def _write_video(path, frames, fps=8):
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_every_frame_blurry(small_scene, tmp_path, tree_digest):
    scene, _ = small_scene
    frames = [np.asarray(Image.open(scene / "images" / f"view_{i:03d}.png").filter(ImageFilter.GaussianBlur(4)))
              for i in range(8)]
    video = tmp_path / "shaky.mp4"
    _write_video(video, frames)
    exc = _expect(NoUsableFrames, video, tmp_path, tree_digest)
    assert "blurry" in exc.reason and exc.details["frames"] == 8


def test_blurry_frames_are_dropped_and_order_kept(small_scene, tmp_path):
    scene, _ = small_scene
    frames = []
    for i in range(12):
        img = Image.open(scene / "images" / f"view_{i:03d}.png")
        frames.append(np.asarray(img if i % 3 else img.filter(ImageFilter.GaussianBlur(5))))
    video = tmp_path / "clip.mp4"
    _write_video(video, frames)
    ing = ingest(video, tmp_path / "work", SfmConfig(video_frames=12))
    assert ing.kind == "video" and ing.frames_decoded == 12
    assert ing.frames_blurry == 4 and ing.usable == 8
    assert ing.names == sorted(ing.names) and all(n.startswith("frame_") for n in ing.names)
    assert "frame_000000.jpg" not in ing.names and "frame_000001.jpg" in ing.names
    # a target of 4 frames keeps the sharpest of each window of 3
    ing = ingest(video, tmp_path / "work4", SfmConfig(video_frames=4, min_images=2))
    idx = [int(n[6:12]) for n in ing.names]
    assert [i // 3 for i in idx] == [0, 1, 2, 3] and all(i % 3 for i in idx)


def test_video_with_no_decodable_frames(tmp_path, tree_digest):
    junk = tmp_path / "clip.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(5000))
    exc = _expect(NoUsableFrames, junk, tmp_path, tree_digest)
    assert "clip.mp4" in exc.reason


def test_exif_orientation_and_downscale(tmp_path):
    folder = tmp_path / "upload"
    folder.mkdir()
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(folder / "rotated.jpg", exif=exif.tobytes(), quality=90)
    img.save(folder / "plain.png")
    shutil.copy(folder / "plain.png", folder / "same.png")
    ing = ingest(folder, tmp_path / "work", SfmConfig(min_images=2, max_side=200))
    out = {n: Image.open(tmp_path / "work" / "images" / n).size for n in ing.names}
    assert out["rotated.jpg"] == (150, 200)  # portrait after EXIF, then longer side 200
    assert out["plain.png"] == (200, 150)
    assert ing.exif_rotated == 1 and ing.downscaled == 3


def test_cli_prints_typed_error_and_exits_2(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["sfm", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "error: UnsupportedInput:" in err and "fix: " in err
    assert main(["sfm", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "out"), "--matcher", "fastest"]) == 2
    assert "ConfigInvalid" in capsys.readouterr().err
