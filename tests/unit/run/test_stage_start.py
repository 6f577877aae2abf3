"""Each stage starts the way SageMaker starts it, and its typed options reach the code that uses them.

The argv comes from the Dockerfiles (ENTRYPOINT/CMD of the final build stage) and the plan, by
SageMaker's rules (spaceport.core.contract.sagemaker_argv); the CLI then rebuilds each stage's typed
config from those strings (hyperparameters.json for the training job, ContainerArguments for
processing jobs). The stage functions are replaced by recorders: what they receive is checked.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import conftest as fx
import pytest

from spaceport.cli import main
from spaceport.core import contract
from spaceport.core.errors import ConfigInvalid
from spaceport.core.graph import STAGE_IMAGE
from spaceport.core.summaries import CompressSummary, PublishSummary, SfmSummary, read_summary
from spaceport.local.runner import LocalRunner, build_local_plan


def test_dockerfile_parsing_takes_the_final_stage_and_dockers_reset_rules():
    multi = """# syntax is not needed
FROM node:20 AS node
ENTRYPOINT ["node"]
CMD ["x"]
FROM python:3.11 \\
    AS final
RUN echo \\
    hi
ENTRYPOINT ["spaceport"]
"""
    assert contract.parse_dockerfile(multi) == contract.ImageStart(("spaceport",), ())
    assert contract.parse_dockerfile('FROM a\nCMD ["train"]\nENTRYPOINT ["x", "y"]\n').cmd == ()  # ENTRYPOINT resets CMD
    assert contract.parse_dockerfile("FROM a\nENTRYPOINT spaceport --x\n").entrypoint == ("/bin/sh", "-c", "spaceport --x")
    with pytest.raises(ConfigInvalid, match="final stage sets no ENTRYPOINT"):
        contract.parse_dockerfile('FROM a AS b\nENTRYPOINT ["spaceport"]\nFROM c\nRUN true\n')


def test_sagemakers_rules_for_training_and_processing_jobs():
    old = contract.ImageStart(("spaceport", "train"))  # the image layout this project had before
    # SageMaker runs `docker run IMAGE train`: that image ran `spaceport train train`.
    assert contract.sagemaker_argv("training", old) == ["spaceport", "train", "train"]
    image = contract.ImageStart(("spaceport",), ("--help",))
    assert contract.sagemaker_argv("training", image) == ["spaceport", "train"]  # CMD replaced by `train`
    assert contract.sagemaker_argv("training", image, container_entrypoint=("python",),
                                   container_arguments=("-V",)) == ["python", "-V"]
    assert contract.sagemaker_argv("processing", image) == ["spaceport", "--help"]  # CMD kept
    assert contract.sagemaker_argv("processing", image, container_arguments=("sfm", "--x", "1")) == [
        "spaceport", "sfm", "--x", "1"]
    assert contract.sagemaker_argv("processing", image, container_entrypoint=("sh",)) == ["sh"]  # CMD dropped


def test_the_runner_starts_every_stage_with_sagemakers_argv(tmp_path):
    job = build_local_plan(tmp_path, tmp_path / "out", "fast")
    runner = LocalRunner(job)
    for spec in job.plan.stages:
        if spec.kind == "gate":
            continue
        sm = contract.stage_argv(spec.kind, STAGE_IMAGE[spec.name], spec.arguments)
        assert sm[0] == "spaceport" and sm[1] == spec.name
        assert sm == (["spaceport", "train"] if spec.kind == "training" else ["spaceport", *spec.arguments])
        assert runner.argv(spec) == [sys.executable, "-m", "spaceport", *sm[1:]]


def _start(stage: str, options: dict[str, str], tmp_path: Path, monkeypatch) -> None:
    """Run `stage` from the CLI exactly as SageMaker would, in a SageMaker-shaped folder."""
    job = build_local_plan(tmp_path, tmp_path / "out", "fast", {stage: options})
    spec = job.plan.stage(stage)
    root = tmp_path / "sm"
    monkeypatch.setenv(contract.SM_ROOT_ENV, str(root))
    if spec.kind == "training":
        (root / "input" / "config").mkdir(parents=True)
        (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(dict(spec.hyperparameters)))
    argv = contract.stage_argv(spec.kind, STAGE_IMAGE[stage], spec.arguments)
    assert main(argv[1:]) == 0


def test_train_options_arrive_typed_from_hyperparameters(tmp_path, monkeypatch):
    seen = {}
    import spaceport.stages.train.trainer as trainer

    def fake(src, out, cfg, checkpoint_dir=None):
        from spaceport.core.summaries import TrainMetrics, read_summary

        seen.update(src=src, out=out, cfg=cfg, ckpt=checkpoint_dir)
        return read_summary(TrainMetrics, fx.write_train(out, fx._orbit_cameras()) / TrainMetrics.FILE)

    monkeypatch.setattr(trainer, "train", fake)
    # TrainConfig has no boolean field: a number, a float|None and two enums, one from each option group.
    _start("train", {"sky_points": "7", "target_psnr": "31.5", "background": "white", "strategy": "mcmc"},
           tmp_path, monkeypatch)
    cfg = seen["cfg"]
    assert (cfg.optim.sky_points, cfg.runtime.target_psnr, cfg.data.background, cfg.densify.strategy) == (
        7, 31.5, "white", "mcmc")
    assert cfg.optim.steps == 400  # the fast preset, resolved by the plan, arrives as a number
    assert seen["src"] == tmp_path / "sm" / "input" / "data" / "sfm" and seen["out"] == tmp_path / "sm" / "model"
    assert seen["ckpt"] == tmp_path / "sm" / "checkpoints"


def test_compress_options_arrive_typed_from_container_arguments(tmp_path, monkeypatch):
    seen = {}
    import spaceport.stages.compress.stage as stage

    def fake(src, out, cfg):
        seen.update(src=src, out=out, cfg=cfg)
        return read_summary(CompressSummary, fx.write_compressed(out) / CompressSummary.FILE)

    monkeypatch.setattr(stage, "run", fake)
    _start("compress", {"write_spz": "false", "quality_views": "3", "device": "cpu", "size_budget_mb": "2.5"},
           tmp_path, monkeypatch)
    cfg = seen["cfg"]
    assert (cfg.write_spz, cfg.quality_views, cfg.device, cfg.size_budget_mb) == (False, 3, "cpu", 2.5)
    assert seen["src"] == tmp_path / "sm" / "processing" / "input" / "model"


def test_sfm_options_arrive_typed_from_container_arguments(tmp_path, monkeypatch):
    seen = {}
    import spaceport.stages.sfm.pipeline as pipeline

    def fake(src, out, cfg):
        seen.update(src=src, out=out, cfg=cfg)
        return read_summary(SfmSummary, fx.write_sfm(out, fx._orbit_cameras()) / SfmSummary.FILE)

    monkeypatch.setattr(pipeline, "run_sfm", fake)
    _start("sfm", {"single_camera": "false", "max_side": "640", "matcher": "sequential"}, tmp_path, monkeypatch)
    cfg = seen["cfg"]
    assert (cfg.single_camera, cfg.max_side, cfg.matcher) == (False, 640, "sequential")
    assert seen["out"] == tmp_path / "sm" / "processing" / "output" / "sfm"


def test_publish_takes_no_options_and_starts_with_its_name_only(tmp_path, monkeypatch):
    seen = {}
    import spaceport.stages.publish.command as publish

    monkeypatch.setattr(publish, "publish", lambda inputs, out: seen.update(inputs=inputs, out=out) or PublishSummary(
        index="i", seconds={"total": 0.0}, peak_memory_mb=1.0))
    job = build_local_plan(tmp_path, tmp_path / "out", "fast")
    monkeypatch.setenv(contract.SM_ROOT_ENV, str(tmp_path / "sm"))
    assert job.plan.stage("publish").arguments == ("publish",)
    assert main(contract.stage_argv("processing", STAGE_IMAGE["publish"], ("publish",))[1:]) == 0
    inputs = tmp_path / "sm" / "processing" / "input"
    assert seen == {"inputs": {n: inputs / n for n in ("sfm", "train", "compressed", "job")},
                    "out": tmp_path / "sm" / "processing" / "output" / "report"}
    with pytest.raises(ConfigInvalid, match="Options given for unknown stage"):
        build_local_plan(tmp_path, tmp_path / "out", "fast", {"publish": {"x": "1"}})
