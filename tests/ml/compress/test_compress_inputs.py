"""`spaceport compress` takes any splat (PLY, SPZ, SOG bundle/folder/meta.json, model.tar.gz) by content."""

from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from spaceport.cli import main
from spaceport.core.errors import ModelInvalid
from spaceport.core.summaries import CompressSummary, read_summary
from spaceport.geometry.splat import Splat
from spaceport.stages.compress import sog, spz
from spaceport.stages.compress.inputs import sniff

QUICK = ["--preset", "fast", "--evaluate-quality", "false", "--write-spz", "false"]


@pytest.fixture(scope="module")
def sources(tmp_path_factory, small_ply: Path, small_splat: Splat) -> Path:
    """The same splat as PLY, SPZ v3/v4, SOG bundle and folder, and a model.tar.gz; odd names on purpose."""
    d = tmp_path_factory.mktemp("sources")
    shutil.copy(small_ply, d / "splat.ply")
    (d / "v4.bin").write_bytes(spz.encode_spz(small_splat, 4))  # no extension: sniffed from the bytes
    (d / "v3.ply").write_bytes(spz.encode_spz(small_splat, 3))  # gzip SPZ under a misleading name
    images = sog.encode_sog(small_splat, iterations=2, webp_method=0)
    images.write_bundle(d / "scene.sog")
    images.write_dir(d / "sogdir")
    with tarfile.open(d / "model.tar.gz", "w:gz") as tar:
        tar.add(small_ply, arcname="splat.ply")
    return d


@pytest.mark.parametrize("name, kind", [("splat.ply", "ply"), ("v4.bin", "spz"), ("v3.ply", "spz"),
                                        ("scene.sog", "sog"), ("sogdir/meta.json", "sog-meta"),
                                        ("model.tar.gz", "tar")])
def test_sniffed_from_content(sources, name, kind):
    assert sniff(sources / name) == kind


@pytest.mark.parametrize("name, fmt", [("v4.bin", "spz"), ("v3.ply", "spz"), ("scene.sog", "sog"),
                                       ("sogdir", "sog"), ("sogdir/meta.json", "sog"), ("model.tar.gz", "ply")])
def test_every_format_compresses_to_the_same_splat(sources, small_splat, tmp_path, capsys, name, fmt):
    code = main(["compress", str(sources / name), "--out", str(tmp_path), *QUICK])
    assert code == 0, capsys.readouterr().err
    s = read_summary(CompressSummary, tmp_path / "compress.json")
    assert s.input.format == fmt and s.gaussians.kept == len(small_splat)
    assert s.input.ply_bytes is None if fmt != "ply" else s.input.ply_bytes > 0
    got = sog.decode_sog(tmp_path / "scene.sog")
    # Re-encoding an already quantised splat keeps it within one more quantisation step.
    ref = sog.decode_sog(sources / "scene.sog") if fmt == "sog" else None
    order = np.argsort(got.means[:, 0] * 1e6 + got.means[:, 1])
    if ref is not None:
        ref_order = np.argsort(ref.means[:, 0] * 1e6 + ref.means[:, 1])
        assert np.abs(got.means[order] - ref.means[ref_order]).max() < 2e-3
    assert np.abs(np.sort(got.means[:, 2]) - np.sort(small_splat.means[:, 2])).max() < 5e-3


def test_anything_else_is_named(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a splat")
    code = main(["compress", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "out"), *QUICK])
    err = capsys.readouterr().err
    assert code == 2 and "error: UnsupportedSplat: notes.txt is not a splat" in err and ".spz" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["compress", str(empty), "--out", str(tmp_path / "out"), *QUICK])
    assert code == 2 and "holds no splat" in capsys.readouterr().err


def test_a_folder_with_two_splats_is_ambiguous(sources, tmp_path, capsys):
    shutil.copy(sources / "v4.bin", tmp_path / "a.spz")
    shutil.copy(sources / "scene.sog", tmp_path / "b.sog")
    code = main(["compress", str(tmp_path), "--out", str(tmp_path / "out"), *QUICK])
    assert code == 2 and "several splats: a.spz, b.sog" in capsys.readouterr().err


def _copy_dir(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("case, needle", [
    ("missing_file", "meta.json names shN_labels.webp, which the folder"),
    ("missing_in_bundle", "meta.json names quats.webp, which the bundle"),
    ("truncated_image", "SOG image sh0.webp is truncated or corrupt"),
    ("truncated_bundle", "is not a readable SOG"),
    ("bad_version", "SOG meta version 7 is not supported"),
    ("bad_count", "more than the limit of 1000"),
    ("count_mismatch", "fewer than count="),
    ("unsafe_name", "unsafe file"),
    ("short_codebook", "codebook has 3 entries"),
])
def test_bad_sog_is_a_typed_error(sources, tmp_path, case, needle):
    folder = _copy_dir(sources / "sogdir", tmp_path / "sog")
    meta = json.loads((folder / "meta.json").read_text())
    path = folder
    if case == "missing_file":
        (folder / "shN_labels.webp").unlink()
    elif case == "missing_in_bundle":
        path = tmp_path / "x.sog"
        with zipfile.ZipFile(sources / "scene.sog") as src, zipfile.ZipFile(path, "w") as dst:
            for info in src.infolist():
                if info.filename != "quats.webp":
                    dst.writestr(info, src.read(info))
    elif case == "truncated_image":
        data = (folder / "sh0.webp").read_bytes()
        (folder / "sh0.webp").write_bytes(data[: len(data) // 2])
    elif case == "truncated_bundle":
        path = tmp_path / "x.sog"
        data = (sources / "scene.sog").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "bad_version":
        meta["version"] = 7
    elif case == "bad_count":
        meta["count"] = 10**9
    elif case == "count_mismatch":
        meta["count"] = 40 * 40 + 1  # more than the 40x40 textures hold
    elif case == "unsafe_name":
        meta["sh0"]["files"] = ["../sh0.webp"]
    elif case == "short_codebook":
        meta["scales"]["codebook"] = [0.0, 1.0, 2.0]
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ModelInvalid, match=needle):
        sog.decode_sog(path, max_gaussians=1000 if case == "bad_count" else 10**6)


def test_nan_in_a_sog_is_dropped_and_counted(sources, tmp_path, capsys):
    folder = _copy_dir(sources / "sogdir", tmp_path / "sog")
    meta = json.loads((folder / "meta.json").read_text())
    top = float(sog.decode_sog(folder).scales.max())  # Gaussians using the largest scale level become NaN
    meta["scales"]["codebook"] = [float("nan") if np.float32(v) == np.float32(top) else v
                                  for v in meta["scales"]["codebook"]]
    (folder / "meta.json").write_text(json.dumps(meta))
    used = int(np.isnan(sog.decode_sog(folder).scales).any(1).sum())
    assert used > 0
    code = main(["compress", str(folder), "--out", str(tmp_path / "out"), *QUICK])
    assert code == 0, capsys.readouterr().err
    g = read_summary(CompressSummary, tmp_path / "out" / "compress.json").gaussians
    assert g.dropped_nonfinite == used and g.kept == g.input - used


@pytest.mark.parametrize("name, error", [("scene.sog", "is not a readable SOG"), ("v4.bin", "is truncated"),
                                         ("model.tar.gz", "is not a readable tarball")])
def test_a_truncated_input_is_named_by_its_own_reader(sources, tmp_path, capsys, name, error):
    data = (sources / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    code = main(["compress", str(tmp_path / name), "--out", str(tmp_path / "out"), *QUICK])
    err = capsys.readouterr().err
    assert code == 2 and "error: ModelInvalid" in err and error in err, err
