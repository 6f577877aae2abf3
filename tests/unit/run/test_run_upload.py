"""The runner hands a single-file upload to the SfM stage as a real file, as SageMaker does,
so the stage's own ingest (which refuses links inside an upload) accepts it."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from spaceport.local import runner as local
from spaceport.stages.sfm.ingest import resolve


def _upload_channel(source: Path, out: Path) -> Path:
    job = local.build_local_plan(source, out, "fast")
    runner = local.LocalRunner(job)
    root, _ = runner.prepare_scratch(job.plan.stage("sfm"))
    return root / "processing" / "input" / "upload"


@pytest.mark.parametrize("name", ["photos.zip", "CLIP.MOV", "Photos.Zip"])
def test_a_single_file_upload_is_a_real_file_the_ingest_accepts(tmp_path: Path, name: str) -> None:
    source = tmp_path / name
    if name.lower().endswith(".zip"):
        with zipfile.ZipFile(source, "w") as zf:
            zf.writestr("a.jpg", b"\xff\xd8\xff" + b"\0" * 64)
    else:
        source.write_bytes(b"\0\0\0\x18ftypqt  " + b"\0" * 64)
    before = source.read_bytes()
    channel = _upload_channel(source, tmp_path / "out")
    placed = channel / name
    assert placed.is_file() and not placed.is_symlink()
    # same file system here: a hard link, so no bytes are copied
    assert placed.stat().st_ino == source.stat().st_ino
    kind, target = resolve(channel)
    assert (kind, target) == ("zip" if name.lower().endswith(".zip") else "video", placed)
    assert source.read_bytes() == before


def test_a_file_that_cannot_be_hard_linked_is_copied(tmp_path: Path, monkeypatch) -> None:
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"\0\0\0\x18ftypmp42" + os.urandom(3 << 20))

    def refuse(*_args, **_kwargs):
        raise PermissionError(1, "Operation not permitted")  # what fs.protected_hardlinks answers

    monkeypatch.setattr(local.os, "link", refuse)
    dest = tmp_path / "channel" / "clip.mp4"
    local.place_upload(source, dest)
    assert not dest.is_symlink() and dest.stat().st_ino != source.stat().st_ino
    assert dest.read_bytes() == source.read_bytes()
