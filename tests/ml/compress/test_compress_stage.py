"""`spaceport compress` end to end: outputs, compress.json, quality cost, size budget, bad inputs."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from spaceport.cli import main
from spaceport.core.config import from_strings
from spaceport.core.errors import ConfigInvalid, ModelInvalid, UnsafeArchive
from spaceport.core.summaries import CompressSummary, GaussianCounts, read_summary
from spaceport.geometry.splat import read_ply, write_ply
from spaceport.stages.compress.config import PRESETS, CompressConfig
from spaceport.stages.compress.inputs import read_model
from spaceport.stages.compress.quality import orbit_cameras
from tests.support.synthetic_splats import synthetic_splat

FAST = ["--preset", "fast"]


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(["compress", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def compressed(tmp_path_factory, small_ply) -> Path:
    out = tmp_path_factory.mktemp("out")
    # A budget no test machine reaches: the measurement is the full one whatever the load.
    assert main(["compress", str(small_ply), "--out", str(out), *FAST, "--quality-seconds", "3600"]) == 0
    return out


def test_writes_every_output_and_the_summary(compressed, small_ply):
    for name in ("scene.sog", "scene.spz", "sog/meta.json", "sog/means_l.webp", "sog/shN_labels.webp"):
        assert (compressed / name).is_file(), name
    assert not list(compressed.glob(".work-*")) and not list(compressed.glob("*.tmp"))
    s = read_summary(CompressSummary, compressed / "compress.json")
    assert s.input.bytes == small_ply.stat().st_size
    assert s.outputs.sog == (compressed / "scene.sog").stat().st_size
    assert s.outputs.spz == (compressed / "scene.spz").stat().st_size
    assert s.ratio.sog == pytest.approx(s.input.bytes / s.outputs.sog, rel=1e-2)
    assert sum(s.bytes_per_attribute.values()) == s.outputs.sog_dir
    assert s.gaussians.model_dump() == {"input": 1500, "kept": 1500, "dropped_nonfinite": 0, "dropped_degenerate": 0,
                              "dropped_for_budget": 0}
    assert s.seconds["total"] > 0 and s.peak_memory_mb > 0
    assert s.quality.camera_source == "orbit" and s.quality.views == 4
    assert s.quality.views_planned == 4 and s.quality.crop == 1.0
    assert 0 < s.quality.seconds <= s.seconds["quality"]
    assert s.sh_palette.policy == "auto" and s.sh_palette.entries == 1024  # cap at N=1500


def test_round_trip_render_quality(compressed):
    # Measured on this 1,500-Gaussian SH1 scene with the fast preset: SOG 58.4 dB / SSIM 0.9999,
    # SPZ 53.9 dB / 0.9998. Thresholds leave ~8 dB for rasterizer or k-means changes.
    q = read_summary(CompressSummary, compressed / "compress.json").quality.formats
    assert q["sog"].psnr > 50 and q["sog"].ssim > 0.999
    assert q["spz"].psnr > 46 and q["spz"].ssim > 0.998


def test_model_tarball_with_cameras(tmp_path, small_ply, small_splat, capsys):
    views = orbit_cameras(small_splat, 3, 96)
    cams = {"cameras": [{"name": v.name, "split": "test", "width": v.width, "height": v.height,
                         "K": v.K.tolist(), "world_to_camera": v.world_to_camera.tolist()} for v in views]}
    tar_path = tmp_path / "model.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(small_ply, arcname="splat.ply")
        data = json.dumps(cams).encode()
        info = tarfile.TarInfo("cameras.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    folder = tmp_path / "input"
    folder.mkdir()
    tar_path.rename(folder / "model.tar.gz")
    code, out, err = _run([folder, "--out", tmp_path / "out", *FAST, "--write-spz", "false",
                           "--quality-seconds", "3600"], capsys)
    assert code == 0, err
    s = read_summary(CompressSummary, tmp_path / "out" / "compress.json")
    # 1,500 noisy SH1 Gaussians: no palette within the cap (1024) meets 0.5 levels, and the run says so.
    pal = s.sh_palette
    assert pal.target_met is False and pal.cap == 1024 and pal.colour_error_levels > 0.5
    assert (f"warning=sh_palette_target_missed target=0.5 achieved={pal.colour_error_levels} cap=1024"
            in out)
    assert s.quality.camera_source == "cameras.json" and s.quality.views == 3
    assert s.outputs.spz is None and not (tmp_path / "out" / "scene.spz").exists()


def test_sh_degree_option_drops_bands(tmp_path, small_ply, capsys):
    code, out, _ = _run([small_ply, "--out", tmp_path, *FAST, "--sh-degree", "0", "--evaluate-quality", "false"], capsys)
    assert code == 0 and "final=1" in out
    meta = json.loads((tmp_path / "sog" / "meta.json").read_text())
    assert "shN" not in meta and meta["count"] == 1500


def test_size_budget_drops_bands_then_gaussians(tmp_path, small_ply, capsys):
    code, _, err = _run([small_ply, "--out", tmp_path, *FAST, "--size-budget-mb", "0.025",
                         "--evaluate-quality", "false"], capsys)
    assert code == 0, err
    s = read_summary(CompressSummary, tmp_path / "compress.json")
    assert (tmp_path / "scene.sog").stat().st_size <= 25_000
    tried = [a.sh_degree for a in s.budget.attempts]
    assert tried[:2] == [1, 0] and s.sh_degree == 0
    assert 0 < s.gaussians.kept < 1500 and s.gaussians.dropped_for_budget == 1500 - s.gaussians.kept


def test_impossible_budget_is_a_typed_error(tmp_path, small_ply, capsys):
    code, _, err = _run([small_ply, "--out", tmp_path, *FAST, "--size-budget-mb", "0.0001"], capsys)
    assert code == 2 and "error: CompressionFailed" in err


def test_nan_and_degenerate_gaussians_are_dropped_and_counted(tmp_path, capsys):
    s = synthetic_splat(600, 1, seed=4)
    s.means[:5, 0] = np.nan
    s.shN[5:8, 1, 2] = np.inf
    s.quats[10:12] = 0.0
    s.scales[20, 1] = 40.0
    write_ply(s, tmp_path / "splat.ply")
    code, _, err = _run([tmp_path / "splat.ply", "--out", tmp_path / "out", *FAST], capsys)
    assert code == 0, err
    g = read_summary(CompressSummary, tmp_path / "out" / "compress.json").gaussians
    assert g == GaussianCounts(input=600, kept=589, dropped_nonfinite=8, dropped_degenerate=3, dropped_for_budget=0)


def _bad(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("case, error, needle", [
    ("not_ply", "UnsupportedSplat", "is not a splat this stage can read"),
    ("truncated", "ModelInvalid", "is truncated"),
    ("missing", "ModelInvalid", "missing the 3DGS properties"),
    ("empty", "ModelInvalid", "has 0 Gaussians"),
    ("all_nan", "ModelInvalid", "none of the 3 Gaussians is usable"),
    ("too_many", "ModelInvalid", "more than the limit"),
])
def test_bad_inputs_get_typed_errors(tmp_path, small_ply, capsys, case, error, needle):
    args: list = []
    if case == "not_ply":
        path = _bad(tmp_path, "splat.ply", b"\x89PNG\r\n\x1a\n not a splat")
    elif case == "truncated":
        path = _bad(tmp_path, "splat.ply", small_ply.read_bytes()[: small_ply.stat().st_size // 2])
    elif case == "missing":
        path = _bad(tmp_path, "splat.ply", b"ply\nformat binary_little_endian 1.0\nelement vertex 1\n"
                    b"property float x\nproperty float y\nproperty float z\nend_header\n" + bytes(12))
    elif case == "empty":
        path = tmp_path / "splat.ply"
        write_ply(synthetic_splat(1, 0).subset(np.zeros(0, int)), path)
    elif case == "all_nan":
        s = synthetic_splat(3, 0)
        s.opacities[:] = np.nan
        path = tmp_path / "splat.ply"
        write_ply(s, path)
    else:
        path, args = small_ply, ["--max-gaussians", "1000"]
    code, _, err = _run([path, "--out", tmp_path / "out", *FAST, *args], capsys)
    assert code == 2
    assert f"error: {error}" in err and needle in err, err


def _tar_with(tmp_path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    p = tmp_path / "model.tar.gz"
    with tarfile.open(p, "w:gz") as tar:
        tar.addfile(member, io.BytesIO(data) if data else None)
    return p


@pytest.mark.parametrize("kind", ["escape", "absolute", "symlink"])
def test_unsafe_tarballs_are_refused(tmp_path, capsys, kind):
    if kind == "symlink":
        m = tarfile.TarInfo("splat.ply")
        m.type, m.linkname = tarfile.SYMTYPE, "/etc/passwd"
        p = _tar_with(tmp_path, m)
    else:
        m = tarfile.TarInfo("../splat.ply" if kind == "escape" else "/tmp/splat.ply")
        m.size = 4
        p = _tar_with(tmp_path, m, b"ply\n")
    code, _, err = _run([p, "--out", tmp_path / "out", *FAST], capsys)
    assert code == 2 and "error: UnsafeArchive" in err
    assert not (tmp_path / "splat.ply").exists()


def test_tarball_size_cap(tmp_path, small_ply):
    from spaceport.stages.compress.inputs import unpack_model

    p = tmp_path / "model.tar.gz"
    with tarfile.open(p, "w:gz") as tar:
        tar.add(small_ply, arcname="splat.ply")
    with pytest.raises(UnsafeArchive, match="unpacks to more than"):
        unpack_model(p, tmp_path / "x", max_bytes=1000)


def test_chunked_reader_matches_plyfile(tmp_path, sh3_splat):
    write_ply(sh3_splat, tmp_path / "s.ply")
    a = read_model(tmp_path / "s.ply", max_gaussians=10**6, chunk=700)
    b = read_ply(tmp_path / "s.ply")
    for f in ("means", "scales", "quats", "opacities", "sh0", "shN"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    with pytest.raises(ModelInvalid):
        read_model(tmp_path / "s.ply", max_gaussians=10)


def test_presets_and_config_parse():
    for name, overrides in PRESETS.items():
        assert isinstance(from_strings(CompressConfig, overrides), CompressConfig), name
    cfg = from_strings(CompressConfig, {"size-budget-mb": "2.5", "sh_degree": "1"})
    assert cfg.size_budget_mb == 2.5 and cfg.sh_degree == 1
    assert CompressConfig().sh_palette == "auto"
    for ok in ("auto", "splat-transform", "1", "4096", "65536"):
        assert from_strings(CompressConfig, {"sh_palette": ok}).sh_palette == ok
    for bad in ("0", "65537", "big", "-5"):
        with pytest.raises(ConfigInvalid):
            from_strings(CompressConfig, {"sh_palette": bad})
    with pytest.raises(ConfigInvalid):
        from_strings(CompressConfig, {"sh_palette_max_error": "0"})


def test_sagemaker_processing_paths_by_default(tmp_path, small_ply, monkeypatch, capsys):
    root = tmp_path / "ml"
    model = root / "processing" / "input" / "model"
    model.mkdir(parents=True)
    (model / "splat.ply").write_bytes(small_ply.read_bytes())
    monkeypatch.setenv("SPACEPORT_SM_ROOT", str(root))
    code, out, err = _run([*FAST, "--evaluate-quality", "false"], capsys)
    assert code == 0, err
    done = root / "processing" / "output" / "compressed"
    assert (done / "scene.sog").is_file() and (done / "scene.spz").is_file() and (done / "compress.json").is_file()
    assert "stage=compress final=1" in out


def test_sagemaker_failure_file_names_the_error(tmp_path, monkeypatch, capsys):
    root = tmp_path / "ml"
    model = root / "processing" / "input" / "model"
    model.mkdir(parents=True)
    (model / "splat.ply").write_bytes(b"not a ply at all")
    monkeypatch.setenv("SPACEPORT_SM_ROOT", str(root))
    code, _, err = _run(FAST, capsys)
    assert code == 2 and "error: UnsupportedSplat" in err
    from spaceport.core.contract import read_failure

    failure = read_failure(root)
    assert failure.error == "UnsupportedSplat" and failure.reason.startswith("splat.ply is not a splat")


def test_a_cropped_view_renders_the_same_pixels_as_the_full_view(small_splat):
    from spaceport.stages.compress.quality import crop_view, render_all

    view = orbit_cameras(small_splat, 1, 120)[0]
    sub, window = crop_view(view, 0.25)
    assert (sub.width, sub.height) == (60, 45) and window[1].start % 8 == 0 and window[0].start % 8 == 0
    full, part = render_all(small_splat, [view, sub])
    np.testing.assert_allclose(part, full[window], atol=1e-5)


def test_quality_budget_bounds_the_views_and_says_so(small_splat):
    from spaceport.stages.compress.quality import measure

    views = orbit_cameras(small_splat, 6, 96)
    decoded = {"sog": small_splat.subset(np.arange(len(small_splat) - 50))}  # a visibly different splat
    full = measure(small_splat, decoded, views, budget_s=1e9)
    assert full["views"] == full["views_planned"] == 6 and full["crop"] == 1.0
    tight = measure(small_splat, decoded, views, budget_s=1e-6)
    # One view, cropped to the smallest window, recorded as such: never presented as the full measurement.
    assert tight["views"] == 1 and tight["views_planned"] == 6 and tight["crop"] == pytest.approx(1 / 16)
    assert 20 < tight["formats"]["sog"]["psnr"] < 100 and full["formats"]["sog"]["psnr"] < 100
