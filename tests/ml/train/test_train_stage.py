"""The training stage end to end on a small synthetic scene, its contract, and its failure modes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spaceport.cli import main
from spaceport.core.errors import (
    ConfigInvalid,
    EmptyInput,
    InputInvalid,
    ModelInvalid,
    OutOfMemory,
    TrainingDiverged,
)
from spaceport.core.summaries import CamerasFile, TrainMetrics, read_summary
from spaceport.geometry import colmap
from spaceport.geometry.splat import read_ply
from spaceport.stages.train.config import PRESETS, TrainConfig, config_for

REPO = Path(__file__).resolve().parents[3]

#: options for the small fixture scene (160x120 already, so no downscale)
SMALL = {"model_dir": "gt/sparse/0", "downscale": "1"}


def tiny(**extra: str) -> TrainConfig:
    """A few dozen steps at 80x60 with densification exercised: the cheap runs."""
    values = {**SMALL, "downscale": "2", "steps": "40", "refine_start": "10", "refine_every": "10",
              "refine_stop": "35", "checkpoint_every": "20", "log_every": "10", "eval_every": "20", **extra}
    return config_for("fast", values)


def test_training_reaches_held_out_psnr(scene, tmp_path, capsys):
    from spaceport.stages.train.trainer import train

    cfg = config_for("fast", {**SMALL, "steps": "300"})
    metrics = train(scene, tmp_path / "out", cfg)
    out = tmp_path / "out"
    # Measured 2026-11-23 05:20 UTC on the current scene (scenes 8d5b781, seed 0, 160x120, 2000 points):
    # 300 steps give 18.44 dB / SSIM 0.530 held out, identical over two runs (deterministic on CPU).
    # The earlier 20.0 dB / 0.64 was measured on the first scene (1c131a1); the current trainer on that
    # scene still gives 19.86 dB / 0.629 (the trainer of 049563f: 20.00 / 0.635), so the drop is the harder
    # scene (higher orbit, photo patches), not a training regression. 30 steps give 13.0 dB / 0.26, so
    # the bars (~0.9 dB and 0.05 below the measurement) still tell training from no training.
    assert metrics.test_psnr > 17.5, metrics
    assert metrics.test_ssim > 0.48, metrics
    assert metrics.lpips is None and "offline" in metrics.lpips_note
    assert metrics.held_out == ["view_000.png", "view_008.png", "view_016.png"]
    assert metrics.steps == 300 and metrics.peak_memory_mb > 0
    # metrics.json is the TrainMetrics model, with the curve: one point per log_every steps.
    from spaceport.core.summaries import TrainMetrics, read_summary

    written = read_summary(TrainMetrics, out / "metrics.json")
    assert written == metrics  # train() returns what it wrote
    assert [p.step for p in written.history] == list(range(cfg.runtime.log_every, 301, cfg.runtime.log_every))
    assert all(p.loss > 0 and p.psnr > 0 for p in written.history)
    # The capture's own figures for the gate: an orbit of 24 sharp renders, every 8th held out one step
    # from its neighbours as they are from each other (0.955 of the widest training gap measured), so a
    # trained splat passes the default checks.
    from spaceport.stages.gate import QualityTargets, check

    fig = written.capture
    assert fig is not None and fig.held_out_farthest in metrics.held_out
    assert 0.9 < fig.held_out_offset < 1.0 and fig.sharpness_min > QualityTargets().min_sharpness
    assert fig.baseline_psnr < metrics.test_psnr - QualityTargets().min_psnr_gain
    assert check(written, QualityTargets()).passed
    assert written.history[-1].psnr > written.history[0].psnr  # it learned
    splat = read_ply(out / "splat.ply")
    assert len(splat) == metrics.num_gaussians and splat.sh_degree == 1
    assert np.isfinite(splat.means).all()
    cams = read_summary(CamerasFile, out / "cameras.json").cameras
    assert [c.split for c in cams].count("test") == 3 and len(cams) == 24
    assert np.asarray(cams[0].world_to_camera).shape == (4, 4) and cams[0].width == 160
    assert sorted(p.name for p in (out / "renders").iterdir())[:2] == ["view_000_gt.png", "view_000_render.png"]
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("stage=train step=50 loss=") and "psnr=" in line and "eta_s=" in line
               for line in lines)
    final = lines[-1].split()
    assert final[:2] == ["stage=train", "final=1"]
    assert [f.split("=")[0] for f in final[2:]] == ["test_psnr", "test_ssim", "num_gaussians", "seconds"]


def test_rendered_splat_matches_held_out_view(scene, tmp_path):
    """The exported PLY, rendered through the render_splat contract, reproduces the metrics' PSNR."""
    from PIL import Image

    from spaceport.stages.train.rasterize import render_splat
    from spaceport.stages.train.trainer import train

    metrics = train(scene, tmp_path, tiny())
    cam = read_summary(CamerasFile, tmp_path / "cameras.json").cameras[0]
    K = np.asarray(cam.K) / 2
    K[2, 2] = 1
    img = render_splat(read_ply(tmp_path / "splat.ply"), K, np.asarray(cam.world_to_camera), 80, 60)
    gt = np.asarray(Image.open(tmp_path / "renders" / "view_000_gt.png"), dtype=np.float32) / 255
    psnr = 10 * np.log10(1 / np.mean((img - gt) ** 2))
    assert abs(psnr - 10 * np.log10(1 / np.mean(
        (np.asarray(Image.open(tmp_path / "renders" / "view_000_render.png"), dtype=np.float32) / 255 - gt) ** 2
    ))) < 0.05
    assert metrics.test_psnr > 10  # 40 steps: ~11.6 dB measured


def test_a_run_trained_finer_than_the_coarsest_budget_size_is_also_measured_there(scene, tmp_path, monkeypatch):
    """metrics.json's held_out_coarse: the held-out views at the coarsest size a budget considers, so runs
    trained at different sizes compare; it is what the held-out renders downscaled score, not a re-fit."""
    from PIL import Image

    from spaceport.stages.train import budget
    from spaceport.stages.train.trainer import train

    monkeypatch.setattr(budget, "MIN_LONG_SIDE", 50)  # the 160x120 scene: candidates 80x60 and 160x120
    fine = train(scene, tmp_path / "fine", tiny(downscale="1", steps="20"))
    c = fine.held_out_coarse
    assert c is not None and (c.width, c.height, c.downscale) == (80, 60, 2)
    assert (fine.width, fine.height) == (160, 120) and np.isfinite(c.psnr) and 0 < c.ssim <= 1
    # close to the full-size renders box-downscaled against the photos box-downscaled (same views)
    def halve(path: Path) -> np.ndarray:
        return np.asarray(Image.open(path).resize((80, 60), Image.BOX), dtype=np.float32) / 255
    renders = sorted((tmp_path / "fine" / "renders").glob("*_render.png"))
    mse = [np.mean((halve(r) - halve(Path(str(r).replace("_render", "_gt")))) ** 2) for r in renders]
    assert abs(c.psnr - float(np.mean([10 * np.log10(1 / m) for m in mse]))) < 1.5
    assert train(scene, tmp_path / "coarse", tiny(steps="5")).held_out_coarse is None  # trained at that size


def _flags(values: dict[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in (f"--{key.replace('_', '-')}", value)]


def test_killed_run_resumes_to_the_same_splat(scene, tmp_path):
    """A training process killed with SIGKILL (as a spot interruption is) after a checkpoint, then run
    again with the same options, ends with the uninterrupted run's splat, byte for byte."""
    from spaceport.stages.train.trainer import CHECKPOINT, train

    values = {**SMALL, "downscale": "2", "steps": "80", "refine_start": "10", "refine_every": "10",
              "refine_stop": "70", "checkpoint_every": "20", "log_every": "10", "eval_every": "20"}
    cfg = config_for("fast", values)
    straight = train(scene, tmp_path / "straight", cfg)

    ckpt, out = tmp_path / "ckpt", tmp_path / "resumed"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "spaceport", "train", str(scene), "--out", str(out), "--preset", "fast",
            "--checkpoints", str(ckpt), *_flags(values)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO) as proc:
        for line in proc.stdout:  # the checkpoint of step 20 is written right after its progress line
            if line.startswith("stage=train step=20 "):
                break
        deadline = time.monotonic() + 60
        while not (ckpt / CHECKPOINT).is_file() and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it was killed"
    assert (ckpt / CHECKPOINT).is_file() and not (out / "splat.ply").exists()

    resumed = train(scene, out, cfg, checkpoint_dir=ckpt)
    assert resumed.resumed_from_step in (20, 40, 60)  # the last checkpoint before the kill
    assert (out / "splat.ply").read_bytes() == (tmp_path / "straight" / "splat.ply").read_bytes()
    # The curve survives the kill: the steps before the checkpoint come from it, the losses are the same.
    assert resumed.history == straight.history and [p.step for p in resumed.history] == list(range(10, 81, 10))
    assert resumed.num_gaussians == straight.num_gaussians and resumed.test_psnr == straight.test_psnr
    assert not (ckpt / CHECKPOINT).exists()  # finished runs clear their checkpoint


def test_resume_skips_a_checkpoint_made_with_other_options(scene, tmp_path, capsys):
    from spaceport.stages.train.trainer import CHECKPOINT, Trainer

    first = Trainer(scene, tiny(), checkpoint_dir=tmp_path)
    first.step()
    first.save_checkpoint()
    assert Trainer(scene, tiny(steps="60"), checkpoint_dir=tmp_path).resume()  # the step count may differ
    other = Trainer(scene, tiny(ssim_lambda="0.3"), checkpoint_dir=tmp_path)
    assert not other.resume() and other.steps_done == 0 and (tmp_path / CHECKPOINT).is_file()
    assert "stage=train phase=resume skipped=options_differ" in capsys.readouterr().out


def test_same_seed_same_splat_bit_for_bit(scene, tmp_path):
    """On CPU a seed fixes every byte of the outputs (densification included); another seed does not."""
    from spaceport.stages.train.trainer import train

    runs = {name: train(scene, tmp_path / name, tiny(seed=seed)) for name, seed in (("a", "0"), ("b", "0"),
                                                                                   ("c", "1"))}
    a, b, c = (tmp_path / name for name in "abc")
    assert len({p.num_gaussians for p in runs["a"].history}) > 1  # densification ran
    assert (a / "splat.ply").read_bytes() == (b / "splat.ply").read_bytes()
    assert (a / "cameras.json").read_bytes() == (b / "cameras.json").read_bytes()
    for png in sorted((a / "renders").iterdir()):
        assert png.read_bytes() == (b / "renders" / png.name).read_bytes(), png.name
    same = ("test_psnr", "test_ssim", "train_psnr", "num_gaussians", "history", "config")
    assert {k: getattr(runs["a"], k) for k in same} == {k: getattr(runs["b"], k) for k in same}
    assert (a / "splat.ply").read_bytes() != (c / "splat.ply").read_bytes()


# ---- options: hyperparameters.json and flags ----
def test_presets_are_valid_configs():
    assert set(PRESETS) == {"fast", "default", "quality"}
    for name in PRESETS:
        config_for(name)
    assert config_for("quality").densify.strategy == "mcmc"
    assert config_for("fast").optim.steps < TrainConfig().optim.steps


@pytest.mark.parametrize(("values", "message"), [
    ({"stepz": "10"}, "Did you mean 'steps'"),
    ({"steps": "ten"}, "not an integer"),
    ({"steps": "0"}, "at least 1"),
    ({"sh_degree": "4"}, "0, 1, 2 or 3"),
    ({"strategy": "adam"}, "not one of"),
    ({"target_psnr": "-3"}, "positive"),
    ({"means_lr": "nan"}, "finite"),
    ({"test_every": "1"}, "every image"),
])
def test_bad_options_are_rejected(values, message):
    with pytest.raises(ConfigInvalid, match=message):
        config_for(None, values)


def test_option_edge_cases():
    cfg = config_for("fast", {"steps": "1e3", "target-psnr": "none", "max_gaussians": "2000000"})
    assert cfg.optim.steps == 1000 and cfg.runtime.target_psnr is None and cfg.densify.max_gaussians == 2_000_000
    assert config_for(None, {"target_psnr": "27.5"}).runtime.target_psnr == 27.5
    with pytest.raises(ConfigInvalid, match="Unknown train preset"):
        config_for("turbo")


def _sagemaker_layout(root: Path, scene: Path, hyper: dict) -> None:
    channel = root / "input" / "data" / "sfm"
    channel.parent.mkdir(parents=True)
    channel.symlink_to(scene, target_is_directory=True)
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hyper))


def test_sagemaker_contract_paths_and_hyperparameters(scene, tmp_path, monkeypatch, capsys):
    root = tmp_path / "opt_ml"
    monkeypatch.setenv("SPACEPORT_SM_ROOT", str(root))
    _sagemaker_layout(root, scene, {"preset": "fast", "steps": "12", "model_dir": "gt/sparse/0",
                                    "downscale": "2", "sagemaker_program": "x"})
    assert main(["train", "--log-every", "6"]) == 0
    assert (root / "model" / "splat.ply").is_file() and (root / "model" / "metrics.json").is_file()
    from spaceport.core.summaries import TrainMetrics, read_summary

    metrics = read_summary(TrainMetrics, root / "model" / "metrics.json")  # options as strings, as request.json
    assert metrics.steps == 12 and metrics.config["log_every"] == "6" and metrics.config["downscale"] == "2"
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("stage=train final=1 test_psnr=")
    assert not (root / "output" / "failure").exists()


def test_sagemaker_unknown_hyperparameter_writes_failure(scene, tmp_path, monkeypatch, capsys):
    root = tmp_path / "opt_ml"
    monkeypatch.setenv("SPACEPORT_SM_ROOT", str(root))
    _sagemaker_layout(root, scene, {"preset": "fast", "stepz": "12"})
    assert main(["train"]) == 2
    from spaceport.core.contract import read_failure
    from spaceport.core.errors import parse_failure

    failure = read_failure(root)  # failure.json, and the same record on SageMaker's one line
    assert failure.error == "ConfigInvalid" and failure.reason.startswith("Unknown option 'stepz'")
    assert parse_failure((root / "output" / "failure").read_text()) == failure
    assert "error: ConfigInvalid" in capsys.readouterr().err
    _sagemaker_layout(tmp_path / "other", scene, {})
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"steps": 12}))
    assert main(["train"]) == 2
    assert "not strings" in read_failure(root).reason


def test_cli_local_run(scene, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["train", str(scene), "--out", str(out), "--preset", "fast", "--model-dir", "gt/sparse/0",
                 "--steps", "8", "--downscale", "2", "--test-every", "0"])
    assert code == 0
    metrics = read_summary(TrainMetrics, out / "metrics.json")
    assert metrics.held_out == [] and metrics.evaluated_on.startswith("train")
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("stage=train final=1")


# ---- bad input and faults ----
def _copy_scene(scene: Path, dst: Path) -> Path:
    shutil.copytree(scene, dst)
    return dst


def test_missing_model(scene, tmp_path):
    from spaceport.stages.train.trainer import train

    with pytest.raises(ModelInvalid, match="No sparse model folder"):
        train(scene, tmp_path, tiny(model_dir="sparse/0"))
    (tmp_path / "s" / "sparse" / "0").mkdir(parents=True)
    with pytest.raises(ModelInvalid, match="No COLMAP model"):
        train(tmp_path / "s", tmp_path / "o", tiny(model_dir="sparse/0"))


def test_empty_model_and_zero_points(scene, tmp_path):
    from spaceport.stages.train.trainer import train

    model = colmap.read_model(scene / "gt" / "sparse" / "0")
    empty = colmap.Model(model.cameras, {}, model.points)
    colmap.write_model_binary(empty, tmp_path / "a" / "sparse" / "0")
    with pytest.raises(EmptyInput, match="no registered images"):
        train(tmp_path / "a", tmp_path / "o", tiny(model_dir="sparse/0"))
    pts = model.points
    none = colmap.Points3D(pts.ids[:0], pts.xyz[:0], pts.rgb[:0], pts.error[:0], pts.track_lengths[:0])
    colmap.write_model_binary(colmap.Model(model.cameras, model.images, none), tmp_path / "b" / "sparse" / "0")
    with pytest.raises(EmptyInput, match="no 3D points"):
        train(tmp_path / "b", tmp_path / "o", tiny(model_dir="sparse/0"))


def test_registered_images_missing_on_disk(scene, tmp_path):
    from spaceport.stages.train.trainer import train

    copy = _copy_scene(scene, tmp_path / "s")
    (copy / "images" / "view_003.png").unlink()
    with pytest.raises(InputInvalid, match=r"1 of 24 registered images are missing.*view_003.png"):
        train(copy, tmp_path / "o", tiny())


def test_nan_stops_training_and_writes_no_splat(scene, tmp_path, monkeypatch):
    from spaceport.stages.train import trainer

    real = trainer.render
    calls = {"n": 0}

    def poisoned(params, view, sh, bg, antialiased=False):
        calls["n"] += 1
        img, info = real(params, view, sh, bg, antialiased)
        return (img * float("nan") if calls["n"] == 7 else img), info

    monkeypatch.setattr(trainer, "render", poisoned)
    with pytest.raises(TrainingDiverged, match="at step 7") as err:
        trainer.train(scene, tmp_path / "o", tiny())
    assert err.value.details["step"] == 7
    assert not (tmp_path / "o" / "splat.ply").exists()


def test_a_nonfinite_gradient_skips_that_gaussian_and_the_run_goes_on(scene):
    """One Gaussian's Inf/NaN gradient (the projection's backward can overflow for a degenerate one)
    must not reach Adam: it would poison that Gaussian and fail the run at its end."""
    import torch

    from spaceport.stages.train.trainer import Trainer

    tr = Trainer(scene, tiny())
    before = tr.params["means"].detach().clone()

    def poison(grad):
        grad = grad.clone()
        grad[0, 0], grad[0, 1] = float("inf"), float("nan")
        return grad

    handle = tr.params["means"].register_hook(poison)
    tr.step()
    handle.remove()
    after = tr.params["means"].detach()
    assert torch.isfinite(after).all()
    assert torch.equal(after[0, :2], before[0, :2])  # its first step: no momentum, so no move
    assert not torch.equal(after[1:], before[1:])  # the others trained
    for _ in range(3):
        tr.step()
    assert all(torch.isfinite(v).all() for v in tr.params.values())


def test_out_of_memory_names_the_setting(scene, tmp_path, monkeypatch):
    from spaceport.stages.train import trainer

    def oom(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(trainer, "render", oom)
    with pytest.raises(OutOfMemory, match="max_gaussians") as err:
        trainer.train(scene, tmp_path / "o", tiny())
    assert "downscale" in err.value.fix


def test_mcmc_needs_cuda(scene, tmp_path):
    from spaceport.stages.train.trainer import train

    with pytest.raises(ConfigInvalid, match="mcmc needs a CUDA GPU"):  # device=cpu: refused on a GPU machine too
        train(scene, tmp_path, tiny(strategy="mcmc", device="cpu"))


def test_gaussian_cap_is_enforced(scene, tmp_path):
    from spaceport.stages.train.trainer import train

    metrics = train(scene, tmp_path, tiny(max_gaussians="1500", sky_points="0"))
    assert metrics.num_gaussians <= 1500


def test_target_psnr_stops_early(scene, tmp_path, capsys):
    from spaceport.stages.train.trainer import train

    metrics = train(scene, tmp_path, tiny(target_psnr="5", eval_every="10"))
    assert metrics.stopped_early and metrics.steps == 10
    assert "stage=train step=10 test_psnr=" in capsys.readouterr().out


def test_opacity_regulariser_lowers_opacities(scene, tmp_path):
    from spaceport.stages.train.trainer import train

    train(scene, tmp_path / "a", tiny(steps="15", refine_start="100"))
    train(scene, tmp_path / "b", tiny(steps="15", refine_start="100", opacity_reg="1.0"))
    a, b = read_ply(tmp_path / "a" / "splat.ply"), read_ply(tmp_path / "b" / "splat.ply")
    assert len(a) == len(b) and b.opacities.mean() < a.opacities.mean() - 0.05
