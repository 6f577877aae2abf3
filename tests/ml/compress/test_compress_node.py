"""A real client reads our files, and we read its: @playcanvas/splat-transform 3.7 (node, -g cpu)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spaceport.geometry.splat import Splat, read_ply, write_ply
from spaceport.stages.compress import palette, quant, sog, spz
from tests.support.synthetic_splats import synthetic_splat

pytestmark = pytest.mark.node
FIELDS = ("means", "scales", "quats", "opacities", "sh0", "shN")


def _same(a: Splat, b: Splat, atol: float = 1e-6) -> None:
    assert len(a) == len(b) and a.sh_degree == b.sh_degree
    for f in FIELDS:
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), atol=atol, rtol=0, err_msg=f)


@pytest.fixture(scope="module")
def ours(tmp_path_factory, small_splat) -> Path:
    out = tmp_path_factory.mktemp("ours")
    images = sog.encode_sog(small_splat, iterations=4)
    images.write_bundle(out / "scene.sog")
    images.write_dir(out / "sog")
    (out / "scene.spz").write_bytes(spz.encode_spz(small_splat))
    return out


@pytest.mark.parametrize("name", ["scene.sog", "sog/meta.json", "scene.spz"])
def test_splat_transform_reads_our_files_as_we_do(ours, tmp_path, splat_transform, name):
    splat_transform(ours / name, tmp_path / "back.ply")
    theirs = read_ply(tmp_path / "back.ply")
    mine = spz.decode_spz(ours / name) if name.endswith(".spz") else sog.decode_sog(ours / name)
    # Both decoders evaluate the same formulas in float32/float64: equal to float precision.
    _same(mine, theirs, atol=2e-5)


def test_we_read_a_sog_written_by_splat_transform(small_ply, small_splat, tmp_path, splat_transform):
    splat_transform("-g", "cpu", small_ply, tmp_path / "theirs.sog")
    splat_transform(tmp_path / "theirs.sog", tmp_path / "theirs.ply")
    mine = sog.decode_sog(tmp_path / "theirs.sog")
    _same(mine, read_ply(tmp_path / "theirs.ply"), atol=2e-5)
    # And their encoding is within SOG's quantisation of the original (same Morton order as ours).
    o = small_splat.subset(quant.morton_order(small_splat.means))
    assert np.abs(mine.means - o.means).max() < 1e-3
    dot = np.abs((mine.quats * (o.quats / np.linalg.norm(o.quats, axis=1, keepdims=True))).sum(1))
    assert dot.min() > 0.999
    assert np.abs(mine.sh0 - o.sh0).mean() < 0.01 and np.abs(mine.scales - o.scales).mean() < 0.05


def test_splat_transform_reads_our_sh3_files(sh3_splat, tmp_path, splat_transform):
    images = sog.encode_sog(sh3_splat, iterations=3)
    images.write_bundle(tmp_path / "scene.sog")
    (tmp_path / "scene.spz").write_bytes(spz.encode_spz(sh3_splat))
    for name, decode in (("scene.sog", sog.decode_sog), ("scene.spz", spz.decode_spz)):
        splat_transform(tmp_path / name, tmp_path / "back.ply")
        _same(decode(tmp_path / name), read_ply(tmp_path / "back.ply"), atol=2e-5)


def test_splat_transform_reads_a_small_auto_palette(sh3_splat, tmp_path, splat_transform):
    smooth = Splat(means=sh3_splat.means, scales=sh3_splat.scales, quats=sh3_splat.quats,
                   opacities=sh3_splat.opacities, sh0=sh3_splat.sh0, shN=sh3_splat.shN * 0.02)
    images = sog.encode_sog(smooth, iterations=3)
    assert images.meta["shN"]["count"] == 1024 < palette.palette_size(len(smooth))
    images.write_bundle(tmp_path / "scene.sog")
    splat_transform(tmp_path / "scene.sog", tmp_path / "back.ply")
    _same(sog.decode_sog(tmp_path / "scene.sog"), read_ply(tmp_path / "back.ply"), atol=2e-5)


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_spz_round_trips_with_splat_transform(version, degree, tmp_path, splat_transform):
    """Both directions, both versions it writes, SH 0-3: it reads ours as we do; we read its within SPZ's steps."""
    from test_spz import _within_quantisation

    s = synthetic_splat(400, degree, seed=20 + degree)
    (tmp_path / "ours.spz").write_bytes(spz.encode_spz(s, version))
    splat_transform(tmp_path / "ours.spz", tmp_path / "ours.ply")
    # Same values in its PLY (RDF, raw) as in ours: our v4 coordinate-system record says RDF and
    # changes nothing for a raw reader.
    _same(spz.decode_spz(tmp_path / "ours.spz"), read_ply(tmp_path / "ours.ply"), atol=2e-5)
    write_ply(s, tmp_path / "in.ply")
    splat_transform("--spz-version", str(version), tmp_path / "in.ply", tmp_path / "theirs.spz")
    theirs, info = spz.read_spz((tmp_path / "theirs.spz").read_bytes())
    assert (info.version, info.count, info.sh_degree, info.coordinate_system) == (version, 400, degree, None)
    _within_quantisation(theirs, s, bits=12)  # Niantic's packer always uses 12 fractional bits


def test_we_read_the_antialiased_flag_splat_transform_writes(tmp_path, splat_transform, small_splat):
    """Postshot's `antialiased 1` PLY comment makes splat-transform set SPZ header flag 0x1."""
    write_ply(small_splat, tmp_path / "plain.ply")
    data = (tmp_path / "plain.ply").read_bytes()
    (tmp_path / "aa.ply").write_bytes(data.replace(b"format binary_little_endian 1.0\n",
                                                   b"format binary_little_endian 1.0\ncomment antialiased 1\n", 1))
    splat_transform(tmp_path / "aa.ply", tmp_path / "aa.spz")
    splat, info = spz.read_spz((tmp_path / "aa.spz").read_bytes())
    assert info.antialiased and len(splat) == len(small_splat)


@pytest.mark.parametrize("name", ["aa.ply", "aa.sog", "aa.spz"])
def test_splat_transform_reads_our_antialiased_tag(small_splat, tmp_path, splat_transform, name):
    """Each of our files says that the splat was trained antialiased in the form splat-transform reads
    (PLY comment, SOG meta.json model, SPZ flag 0x1): it carries the tag into the PLY it writes, and a SOG
    and an SPZ it writes from our PLY carry it back to us."""
    from dataclasses import replace

    aa = replace(small_splat, antialiased=True)
    write_ply(aa, tmp_path / "aa.ply")
    sog.encode_sog(aa, iterations=2).write_bundle(tmp_path / "aa.sog")
    (tmp_path / "aa.spz").write_bytes(spz.encode_spz(aa))
    splat_transform(tmp_path / name, tmp_path / "back.ply")
    assert read_ply(tmp_path / "back.ply").antialiased
    if name == "aa.ply":
        splat_transform("-g", "cpu", tmp_path / "aa.ply", tmp_path / "theirs.sog")
        splat_transform(tmp_path / "aa.ply", tmp_path / "theirs.spz")
        assert sog.decode_sog(tmp_path / "theirs.sog").antialiased and sog.sog_antialiased(tmp_path / "theirs.sog")
        assert spz.read_spz((tmp_path / "theirs.spz").read_bytes())[1].antialiased
    # and an untagged splat stays untagged
    write_ply(small_splat, tmp_path / "plain.ply")
    splat_transform("-g", "cpu", tmp_path / "plain.ply", tmp_path / "plain.sog")
    assert not sog.decode_sog(tmp_path / "plain.sog").antialiased
