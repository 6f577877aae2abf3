"""SOG and SPZ encoders against their decoders: every attribute within the format's quantisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spaceport.geometry.splat import Splat
from spaceport.stages.compress import palette, quant, sog, spz
from tests.support.synthetic_splats import synthetic_splat


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x.astype(np.float64)))


def _unit(q: np.ndarray) -> np.ndarray:
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def _match(decoded: Splat, original: Splat) -> np.ndarray:
    """Index into ``original`` of each decoded Gaussian (SOG reorders them along the Morton curve)."""
    order = quant.morton_order(original.means)
    return order


def test_quaternion_packings_round_trip():
    rng = np.random.default_rng(0)
    q = _unit(rng.normal(size=(5000, 4)))
    q[:4] = np.eye(4)  # each component the largest once
    q[4] = [-1, 0, 0, 0]
    for back in (sog.unpack_quats(sog.pack_quats(q)), spz.unpack_rotations(spz.pack_rotations(q.astype(np.float32)))):
        dot = np.abs((_unit(back.astype(np.float64)) * q).sum(1))
        assert dot.min() > 0.9999


def test_morton_order_is_a_locality_preserving_permutation():
    rng = np.random.default_rng(1)
    p = rng.uniform(-5, 5, (4000, 3))
    order = quant.morton_order(p)
    assert sorted(order.tolist()) == list(range(4000))
    step = np.linalg.norm(np.diff(p[order], axis=0), axis=1).mean()
    assert step < 0.25 * np.linalg.norm(np.diff(p, axis=0), axis=1).mean()


def test_quantize_1d_is_sorted_and_nearest():
    rng = np.random.default_rng(2)
    v = np.concatenate([rng.normal(-4, 0.5, 20000), rng.normal(0, 3, 200)]).astype(np.float32)
    cb, lab = quant.quantize_1d(v)
    assert cb.shape == (256,) and np.all(np.diff(cb) >= 0)
    err = np.abs(cb[lab] - v)
    best = np.abs(cb[None, :] - v[:, None]).min(1)
    np.testing.assert_allclose(err, best, atol=1e-6)
    assert err.mean() < 0.01


@pytest.mark.parametrize("two_level", [False, True])
def test_kmeans_distortion_and_labels(two_level):
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(64, 9))
    x = (centres[rng.integers(0, 64, 6000)] + rng.normal(scale=0.05, size=(6000, 9))).astype(np.float32)
    c, lab = quant.kmeans(x, 256, iterations=8, direct_limit=1.0 if two_level else 1e12)
    assert len(c) <= 256 and lab.min() >= 0 and lab.max() < len(c)
    mse = ((c[lab] - x) ** 2).sum(1).mean()
    assert mse < 9 * 0.05**2  # no worse than the noise the clusters were drawn with


def test_sog_round_trip_within_quantisation(tmp_path, sh3_splat):
    s = sh3_splat
    images = sog.encode_sog(s, iterations=5)
    images.write_bundle(tmp_path / "scene.sog")
    d = sog.decode_sog(tmp_path / "scene.sog")
    o = s.subset(_match(d, s))
    assert len(d) == len(s) and d.sh_degree == 3
    lo = np.log1p(np.abs(o.means.astype(np.float64)))
    rng = np.array(images.meta["means"]["maxs"]) - np.array(images.meta["means"]["mins"])
    tol = np.exp(lo) * rng / 65535  # half a 16-bit step in log space, times d(exp)/dx, x2 margin
    assert np.all(np.abs(d.means - o.means) <= tol + 1e-6)
    scb = np.array(images.meta["scales"]["codebook"], np.float32)
    best = np.abs(scb[None, None, :] - o.scales[..., None]).min(-1)
    np.testing.assert_allclose(np.abs(d.scales - o.scales), best, atol=1e-5)
    assert np.abs(_sigmoid(d.opacities) - _sigmoid(o.opacities)).max() <= 0.5 / 255 + 1e-5
    assert np.abs((_unit(d.quats.astype(np.float64)) * _unit(o.quats.astype(np.float64))).sum(1)).min() > 0.9999
    assert np.abs(d.sh0 - o.sh0).mean() < 0.01
    rel = np.sqrt(((d.shN - o.shN) ** 2).mean() / (o.shN**2).mean())
    assert rel < 0.5  # palette of ~N/1 entries keeps the SH energy; measured ~0.2


def test_sog_folder_and_bundle_decode_the_same(tmp_path, small_splat):
    images = sog.encode_sog(small_splat, iterations=3)
    images.write_bundle(tmp_path / "scene.sog")
    images.write_dir(tmp_path / "sog")
    a, b = sog.decode_sog(tmp_path / "scene.sog"), sog.decode_sog(tmp_path / "sog" / "meta.json")
    for f in ("means", "scales", "quats", "opacities", "sh0", "shN"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert images.meta["shN"]["count"] == palette.palette_size(len(small_splat)) == 1024


def test_texture_size_matches_splat_transform():
    assert sog.texture_size(1500) == (40, 40)
    assert sog.texture_size(20000) == (144, 140)
    assert palette.palette_size(20000) == 16384 and palette.palette_size(200000) == 65536 and palette.palette_size(500) == 256


def test_spz_round_trip_within_quantisation(sh3_splat):
    s = sh3_splat
    d = spz.decode_spz(spz.encode_spz(s))
    bits = spz.fractional_bits_for(s.means)
    assert np.abs(d.means - s.means).max() <= 0.5 / (1 << bits) + 1e-6
    assert np.abs(d.scales - s.scales).max() <= 0.5 / 16 + 1e-6
    assert np.abs(_sigmoid(d.opacities) - _sigmoid(s.opacities)).max() <= 0.5 / 255 + 1e-5
    inside = np.abs(s.sh0 * 0.15) < 0.5
    assert np.abs(d.sh0 - s.sh0)[inside].max() <= 0.5 / 255 / 0.15 + 1e-5
    assert np.abs((_unit(d.quats.astype(np.float64)) * _unit(s.quats.astype(np.float64))).sum(1)).min() > 0.9999
    band1, rest = np.abs(d.shN - s.shN)[:, :3], np.abs(d.shN - s.shN)[:, 3:]
    assert band1.max() <= 4 / 128 + 0.5 / 128 + 1e-6 and rest.max() <= 8 / 128 + 0.5 / 128 + 1e-6


def test_spz_positions_far_from_origin_keep_24_bits():
    s = synthetic_splat(200, 0, seed=9)
    s.means[:] *= 5000.0  # beyond 2^23 / 2^12 = 2048: fewer fractional bits, never wrap
    d = spz.decode_spz(spz.encode_spz(s))
    bits = spz.fractional_bits_for(s.means)
    assert bits < 12
    assert np.abs(d.means - s.means).max() <= 0.5 / (1 << bits) * 1.01 + 1e-3


@pytest.mark.gpu
def test_kmeans_on_cuda_matches_cpu_distortion():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20000, 24)).astype(np.float32)
    for limit in (1e12, 1.0):  # direct and two-level
        _, lab_gpu = quant.kmeans(x, 1024, 5, device=torch.device("cuda"), direct_limit=limit)
        c_cpu, lab_cpu = quant.kmeans(x, 1024, 5, device=torch.device("cpu"), direct_limit=limit)
        assert lab_gpu.max() < 1024
        # Same seed and init; float reductions differ in order, so compare distortion, not labels.
        c_gpu = np.stack([x[lab_gpu == i].mean(0) if (lab_gpu == i).any() else 0 * x[0] for i in range(1024)])
        d_gpu = ((c_gpu[lab_gpu] - x) ** 2).sum(1).mean()
        d_cpu = ((c_cpu[lab_cpu] - x) ** 2).sum(1).mean()
        assert d_gpu < 1.05 * d_cpu


def test_cuda_device_without_gpu_is_a_config_error(monkeypatch):
    import torch

    from spaceport.core.errors import ConfigInvalid

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a GPU machine runs this too
    with pytest.raises(ConfigInvalid, match="torch sees no CUDA GPU"):
        quant.pick_device("cuda")
    assert quant.pick_device("auto") == torch.device("cpu")


def test_bundle_fits_the_playcanvas_engine_zip_reader(tmp_path, small_splat):
    """The engine (playcanvas 2.23 SogBundleParser) reads the EOCD at exactly len-22 (no comment),
    no Zip64, and only stored/deflate entries; check our bundle the way it parses it."""
    import struct

    images = sog.encode_sog(small_splat, iterations=2)
    images.write_bundle(tmp_path / "scene.sog")
    data = (tmp_path / "scene.sog").read_bytes()
    magic, _, _, _, count, cd_size, cd_off, _ = struct.unpack("<IHHHHIIH", data[-22:])
    assert magic == 0x06054B50 and cd_off + cd_size == len(data) - 22
    names, off = [], cd_off
    for _ in range(count):
        assert struct.unpack("<I", data[off:off + 4])[0] == 0x02014B50
        method, = struct.unpack("<H", data[off + 10:off + 12])
        csize, = struct.unpack("<I", data[off + 20:off + 24])
        nlen, elen, clen = struct.unpack("<HHH", data[off + 28:off + 34])
        lfh, = struct.unpack("<I", data[off + 42:off + 46])
        name = data[off + 46:off + 46 + nlen].decode()
        assert method == 0 and struct.unpack("<I", data[lfh:lfh + 4])[0] == 0x04034B50
        ln, le = struct.unpack("<HH", data[lfh + 26:lfh + 30])
        body = data[lfh + 30 + ln + le:lfh + 30 + ln + le + csize]
        expected = images.meta_json() if name == "meta.json" else images.files[name]
        assert body == expected
        names.append(name)
        off += 46 + nlen + elen + clen
    assert names[0] == "meta.json" and set(names) == {"meta.json", *images.files}


def test_sh_colour_error_is_the_rms_colour_error_over_view_directions():
    # One Gaussian, SH degree 1, only the R channel's first band-1 coefficient set (= a); the
    # palette entry is zero. Colour error in R is -SH_C1 * y * a; average its square over directions.
    a = 0.3
    rest = np.zeros((1, 9), np.float32)
    rest[0, 0] = a
    got = palette.sh_colour_error(rest, np.zeros((1, 9), np.float32), np.zeros(1, np.int64), np.ones(1))
    d = np.random.default_rng(0).normal(size=(400_000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    mse_r = np.mean((0.4886025119029199 * d[:, 1] * a) ** 2)
    assert got == pytest.approx(np.sqrt(mse_r / 3) * 255, rel=0.01)


def test_auto_palette_is_small_for_smooth_sh_and_full_for_noisy_sh():
    noisy = synthetic_splat(5000, 1, seed=9)  # its SH bands are partly i.i.d. noise
    assert palette.palette_size(5000) == 4096
    images = sog.encode_sog(noisy, iterations=3, webp_method=0)
    assert images.palette["policy"] == "auto" and images.palette["entries"] == 4096
    assert min(images.palette["tried"].values()) > images.palette["max_error_levels"]
    # The target cannot be met within the cap: said, with the numbers, not silently kept.
    assert images.palette["target_met"] is False and images.palette["cap"] == 4096
    assert images.palette["note"] == (f"colour-error target of 0.5 levels not met within the cap of 4096 entries: "
                                      f"the palette written has 4096 entries and an error of "
                                      f"{images.palette['colour_error_levels']} levels")
    smooth = synthetic_splat(5000, 1, seed=9)
    smooth.shN *= 0.02  # a barely view-dependent splat (like a short CPU training run)
    images = sog.encode_sog(smooth, iterations=3, webp_method=0)
    assert images.palette["entries"] == images.meta["shN"]["count"] == 1024
    assert images.palette["colour_error_levels"] <= 0.5 and list(images.palette["tried"]) == ["1024"]
    assert images.palette["target_met"] is True and images.palette["note"] is None
    fixed = sog.encode_sog(smooth, iterations=3, webp_method=0, palette="512")
    assert fixed.meta["shN"]["count"] == 512 and fixed.palette["tried"] == {"512": fixed.palette["colour_error_levels"]}
    st = sog.encode_sog(smooth, iterations=3, webp_method=0, palette="splat-transform")
    assert st.meta["shN"]["count"] == 4096 and st.palette["colour_error_levels"] < images.palette["colour_error_levels"]


def test_short_floats_read_back_to_the_same_float32():
    rng = np.random.default_rng(12)
    values = np.concatenate([rng.normal(0, 3, 2000), rng.normal(0, 1e-6, 100), [0.1, -0.0, 1e-38, 3.4e38, 1.0]])
    values = values.astype(np.float32)
    short = sog.short_floats(values)
    text = json.loads(json.dumps(short))  # as a reader parses meta.json
    assert np.array_equal(np.asarray(text, np.float32).view(np.uint32), values.view(np.uint32))
    # Shorter than the float32 written as a double: 0.1f is "0.1", not "0.10000000149011612".
    assert short[-5] == 0.1 and repr(float(values[-5])) == "0.10000000149011612"
    assert max(len(repr(v)) for v in short) <= 15  # 9 significant digits, sign, point, exponent


def test_meta_codebooks_are_the_encoders_float32_codebooks(sh3_splat):
    images = sog.encode_sog(sh3_splat, iterations=2, webp_method=0)
    meta = json.loads(images.meta_json())
    for key, values in (("scales", sh3_splat.scales), ("sh0", sh3_splat.sh0)):
        want = np.asarray(quant.quantize_1d(values)[0], np.float32)  # what the encoder quantised to
        got = np.asarray(meta[key]["codebook"], np.float32)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), key
    for key in ("scales", "sh0", "shN"):
        assert len(meta[key]["codebook"]) == 256
        assert max(len(repr(v)) for v in meta[key]["codebook"]) <= 15, key  # shortest float32 decimals


def test_auto_search_on_a_sample_fits_only_the_chosen_size_on_every_row(monkeypatch):
    """Above SEARCH_SAMPLE rows the candidates are fitted on a sample; the palette written is a full k-means."""
    monkeypatch.setattr(palette, "SEARCH_SAMPLE", 2048)
    s = synthetic_splat(5000, 1, seed=9)
    s.shN *= 0.1  # between the smooth and noisy cases above: the target is met by a mid-size palette
    images = sog.encode_sog(s, iterations=3, webp_method=0)
    rec = images.palette
    assert rec["search"]["sample_rows"] == 2048 and rec["search"]["tried"]
    chosen = str(rec["entries"])
    # Only the chosen size (and any doubling after it) was fitted on all rows, and its error is the one recorded.
    assert chosen in rec["tried"] and rec["colour_error_levels"] == rec["tried"][chosen]
    assert all(int(k) >= int(min(rec["search"]["tried"], key=int)) for k in rec["tried"])
    assert rec["target_met"] == (rec["colour_error_levels"] <= 0.5)
    assert images.meta["shN"]["count"] == rec["entries"]
