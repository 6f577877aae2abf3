"""SPZ v1-v4: our writer against our reader, hand-built legacy files, extensions, frames, bad files."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from spaceport.core.errors import ModelInvalid
from spaceport.geometry.splat import Splat
from spaceport.stages.compress import spz
from tests.support.synthetic_splats import synthetic_splat


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x.astype(np.float64)))


def _unit(q: np.ndarray) -> np.ndarray:
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _within_quantisation(d: Splat, s: Splat, bits: int, rotation_dot: float = 0.9999) -> None:
    assert len(d) == len(s) and d.sh_degree == s.sh_degree
    assert np.abs(d.means - s.means).max() <= 0.5 / (1 << bits) + 1e-6
    assert np.abs(d.scales - s.scales).max() <= 0.5 / 16 + 1e-6
    assert np.abs(_sigmoid(d.opacities) - _sigmoid(s.opacities)).max() <= 0.5 / 255 + 1e-5
    inside = np.abs(s.sh0 * 0.15) < 0.5
    assert np.abs(d.sh0 - s.sh0)[inside].max() <= 0.5 / 255 / 0.15 + 1e-5
    dot = np.abs((_unit(d.quats.astype(np.float64)) * _unit(s.quats.astype(np.float64))).sum(1))
    assert dot.min() > rotation_dot
    if s.sh_degree:
        err = np.abs(d.shN - s.shN)
        # band 1 in 5 bits (bucket 8/128), bands 2-3 in 4 bits (bucket 16/128), plus rounding
        assert err[:, :3].max() <= 4.5 / 128 + 1e-6 and (err[:, 3:].max() if s.sh_degree > 1 else 0) <= 8.5 / 128 + 1e-6


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_within_quantisation(version, degree):
    s = synthetic_splat(800, degree, seed=degree)
    data = spz.encode_spz(s, version)
    assert data[:2] == b"\x1f\x8b" if version == 3 else data[:4] == b"NGSP"
    d, info = spz.read_spz(data)
    assert (info.version, info.count, info.sh_degree) == (version, 800, degree)
    _within_quantisation(d, s, spz.fractional_bits_for(s.means))


def test_v4_layout_follows_niantic():
    s = synthetic_splat(500, 0, seed=1)
    data = spz.encode_spz(s, 4)
    magic, version, n, degree, bits, flags, nstreams, toc = struct.unpack_from("<IIIBBBBI", data)
    assert (magic, version, n, degree, bits) == (0x5053474E, 4, 500, 0, 12)
    assert data[20:32] == bytes(12)  # reserved
    assert flags == spz.FLAG_EXTENSIONS and nstreams == 5  # SH0: the empty SH stream is not written
    # Extension zone [32, toc): one record, Adobe's coordinate system = RDF (6).
    assert toc == 44 and struct.unpack_from("<III", data, 32) == (0xADBE0003, 4, 6)
    entries = [struct.unpack_from("<QQ", data, toc + 16 * i) for i in range(nstreams)]
    assert [u for _, u in entries] == [9 * 500, 500, 3 * 500, 3 * 500, 4 * 500]
    assert toc + 16 * nstreams + sum(c for c, _ in entries) == len(data)  # streams end at the file's end
    off = toc + 16 * nstreams
    for c, _ in entries:
        assert data[off:off + 4] == b"\x28\xb5\x2f\xfd"  # a ZSTD frame
        off += c


def _legacy(version: int, s: Splat, *, ext: bytes = b"", ext_first: bool = False) -> bytes:
    """A gzip SPZ of version 1-3 built by hand from our v3 blocks (v1/v2 rotations and v1 positions swapped)."""
    n = len(s)
    pos, alphas, colors, scales, rot, sh = spz._blocks(s)
    if version == 1:
        pos = s.means.astype("<f2")
    if version <= 2:  # x y z bytes of the unit quaternion with w >= 0, as Niantic's packQuaternionFirstThree
        q = _unit(s.quats.astype(np.float64))
        q *= np.where(q[:, :1] < 0, -1.0, 1.0)
        rot = np.clip(np.rint(q[:, 1:] * 127.5 + 127.5), 0, 255).astype(np.uint8)
    bits = spz.fractional_bits_for(s.means)
    flags = spz.FLAG_EXTENSIONS if ext else 0
    body = [b.tobytes() for b in (pos, alphas, colors, scales, rot, sh)]
    header = struct.pack("<IIIBBBB", spz.MAGIC, version, n, s.sh_degree, bits, flags, 0)
    parts = [header, ext, *body] if ext_first else [header, *body, ext]
    return gzip.compress(b"".join(parts), mtime=0)


@pytest.mark.parametrize("version", [1, 2])
def test_reads_legacy_v1_and_v2(version):
    s = synthetic_splat(300, 1, seed=4)
    d, info = spz.read_spz(_legacy(version, s))
    assert info.version == version and len(d) == 300
    if version == 1:  # float16 positions
        np.testing.assert_allclose(d.means, s.means.astype(np.float16).astype(np.float32))
    # 8-bit x y z rotations, w derived: coarse where w is small (measured worst dot 0.9966 here)
    dot = np.abs((_unit(d.quats.astype(np.float64)) * _unit(s.quats.astype(np.float64))).sum(1))
    assert dot.min() > 0.99 and np.median(dot) > 0.9999
    np.testing.assert_array_equal(d.scales, spz.decode_spz(spz.encode_spz(s, 3)).scales)


@pytest.mark.parametrize("ext_first", [False, True])
def test_legacy_extensions_after_the_blocks_or_the_header(ext_first):
    """Niantic's current legacy writer appends extension records; its earlier one put them after the header."""
    s = synthetic_splat(200, 2, seed=6)
    ext = struct.pack("<II", 0xADBE0002, 12) + struct.pack("<fff", -0.5, 0.5, 1.0)  # safe orbit camera
    d, info = spz.read_spz(_legacy(3, s, ext=ext, ext_first=ext_first))
    assert info.extensions == [(0xADBE0002, 12)] and info.coordinate_system is None
    np.testing.assert_array_equal(d.means, spz.decode_spz(spz.encode_spz(s, 3)).means)


def test_sh_degree_4_keeps_bands_0_to_3():
    s = synthetic_splat(100, 3, seed=2)
    n = len(s)
    blocks = spz._blocks(s)
    # Per Gaussian, band 4's 9 coefficients x 3 channels follow bands 1-3 (coefficient-major).
    blocks[5] = np.concatenate([blocks[5], np.full((n, 27), 200, np.uint8)], axis=1)
    header = struct.pack("<IIIBBBB", spz.MAGIC, 3, n, 4, 12, 0, 0)
    d, info = spz.read_spz(gzip.compress(header + b"".join(b.tobytes() for b in blocks)))
    assert info.dropped_sh_band4 and d.sh_degree == 3
    np.testing.assert_array_equal(d.shN, spz.decode_spz(spz.encode_spz(s, 3)).shN)


def _sh_colour(shn: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    import torch
    from gsplat.cuda._torch_impl import _spherical_harmonics

    k = shn.shape[1]
    coeffs = np.concatenate([np.zeros((len(shn), 1, 3), np.float32), shn], 1)
    degree = {0: 0, 3: 1, 8: 2, 15: 3}[k]
    return _spherical_harmonics(degree, torch.from_numpy(dirs.astype(np.float32)), torch.from_numpy(coeffs)).numpy()


@pytest.mark.parametrize("system", sorted(spz.COORDINATE_SYSTEMS))
def test_mirroring_keeps_the_view_dependent_colour_and_the_covariance(system):
    """flip_axes(S) is the same splat seen in the mirrored frame: colour(S d) and S Sigma S match the original."""
    s = synthetic_splat(64, 3, seed=7)
    signs = spz.axis_signs(system)
    m = spz.flip_axes(s, signs)
    np.testing.assert_array_equal(m.means, s.means * signs)
    dirs = np.random.default_rng(0).normal(size=(64, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    np.testing.assert_allclose(_sh_colour(m.shN, dirs * signs), _sh_colour(s.shN, dirs), atol=1e-5)

    def cov(q: np.ndarray, sc: np.ndarray) -> np.ndarray:
        w, x, y, z = _unit(q.astype(np.float64)).T
        r = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                      2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                      2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], 1).reshape(-1, 3, 3)
        return r @ (np.exp(2 * sc.astype(np.float64))[:, :, None] * r.transpose(0, 2, 1))

    S = np.diag(signs)
    np.testing.assert_allclose(cov(m.quats, m.scales), S @ cov(s.quats, s.scales) @ S, atol=1e-9)


def test_a_file_that_names_its_frame_is_read_into_rdf():
    """A v4 file stored in RUB (the SPZ default frame) with Adobe's extension reads back in the PLY's RDF."""
    s = synthetic_splat(300, 1, seed=8)
    rub = spz.flip_axes(s, spz.axis_signs(4))  # RDF -> RUB is the same flip as RUB -> RDF
    data = bytearray(spz.encode_spz(rub, 4))
    struct.pack_into("<I", data, 40, 4)  # the extension's payload: RUB
    d, info = spz.read_spz(bytes(data))
    assert info.coordinate_system == "RUB"
    _within_quantisation(d, s, 12)  # back in the original frame, within SPZ's quantisation
    struct.pack_into("<I", data, 40, 12)  # a rotated (y/z swapped) frame: refused, not read wrongly
    with pytest.raises(ModelInvalid, match="coordinate system 12"):
        spz.read_spz(bytes(data))


def _v4(n: int = 50, degree: int = 1) -> bytes:
    return spz.encode_spz(synthetic_splat(n, degree, seed=11), 4)


def _set(data: bytes, fmt: str, offset: int, *values) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, *values)
    return bytes(out)


@pytest.mark.parametrize("case, needle", [
    ("v4_version_5", "SPZ version 5 is not supported"),
    ("gzip_version_7", "SPZ version 7 is not supported"),
    ("gzip_version_4", "SPZ version 4 is not supported"),
    ("not_spz", "not an SPZ file"),
    ("v4_count_more", "stream 0 holds 450 bytes but the header's count needs 459"),
    ("v4_count_less", "stream 0 holds 450 bytes but the header's count needs 441"),
    ("v4_streams", "has 5 streams; its header needs 6"),
    ("v4_truncated", "is truncated"),
    ("v4_header_only", "less than its 32-byte header"),
    ("v4_stray", "stray bytes"),
    ("v4_corrupt_stream", "is corrupt"),
    ("v4_bad_toc_offset", "extension zone"),
    ("gzip_truncated", "truncated"),
    ("gzip_count_more", "payload is truncated"),
    ("gzip_count_less", "bytes more than 49 Gaussians need"),
    ("gzip_corrupt", "corrupt"),
    ("count_zero", "has 0 Gaussians"),
    ("count_over_limit", "more than the limit of 1000"),
])
def test_bad_files_are_typed_errors(case, needle):
    v4, v3 = _v4(), spz.encode_spz(synthetic_splat(50, 1, seed=11), 3)
    inner = gzip.decompress(v3)
    data = {
        "v4_version_5": lambda: _set(v4, "<I", 4, 5),
        "gzip_version_7": lambda: gzip.compress(_set(inner, "<I", 4, 7)),
        "gzip_version_4": lambda: gzip.compress(_set(inner, "<I", 4, 4)),
        "not_spz": lambda: b"PK\x03\x04 a zip, not an spz",
        "v4_count_more": lambda: _set(v4, "<I", 8, 51),
        "v4_count_less": lambda: _set(v4, "<I", 8, 49),
        "v4_streams": lambda: _set(v4, "<B", 15, 5),
        "v4_truncated": lambda: v4[:-10],
        "v4_header_only": lambda: v4[:20],
        "v4_stray": lambda: v4 + b"\0" * 7,
        "v4_corrupt_stream": lambda: v4[:-40] + bytes(40),
        "v4_bad_toc_offset": lambda: _set(v4, "<I", 16, 40),
        "gzip_truncated": lambda: v3[: len(v3) // 2],
        "gzip_count_more": lambda: gzip.compress(_set(inner, "<I", 8, 51)),
        "gzip_count_less": lambda: gzip.compress(_set(inner, "<I", 8, 49)),
        "gzip_corrupt": lambda: v3[:10] + bytes(len(v3) - 10),
        "count_zero": lambda: _set(v4, "<I", 8, 0),
        # A header claiming 4 billion Gaussians is refused from the header, before any decompression.
        "count_over_limit": lambda: _set(v4, "<I", 8, 0xFFFFFFFF),
    }[case]()
    limit = 1000 if case == "count_over_limit" else 10_000_000
    with pytest.raises(ModelInvalid, match=needle):
        spz.read_spz(data, max_gaussians=limit)
