"""GPU failure modes of the training stage, simulated on CPU: CUDA out of memory and a failed kernel.

The real errors need a GPU; these raise the exceptions torch raises there (``torch.OutOfMemoryError``,
``RuntimeError("CUDA error: ...")``) from inside the step and check the typed error and its record.
"""

from __future__ import annotations

import pytest
import torch

from spaceport.core.errors import GpuKernelFailed, OutOfMemory
from tests.ml.train.test_train_stage import _sagemaker_layout, tiny


def _raise_at(call: int, exc: BaseException, module: str = "gsplat.cuda._wrapper"):
    """A render that works until call ``call``, then raises ``exc`` from a frame of ``module``
    (as if the gsplat wrapper that launched the kernel had raised it)."""
    from spaceport.stages.train import trainer

    real = trainer.render
    calls = {"n": 0}
    scope = {"__name__": module, "exc": exc}
    exec("def rasterize_to_pixels():\n    raise exc\n", scope)  # a frame whose module is gsplat's

    def render(params, view, sh, bg, antialiased=False):
        calls["n"] += 1
        if calls["n"] == call:
            scope["rasterize_to_pixels"]()
        return real(params, view, sh, bg, antialiased)

    return render


def test_cuda_out_of_memory_names_the_settings(scene, tmp_path, monkeypatch):
    from spaceport.stages.train import trainer

    exc = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.19 GiB total)")
    monkeypatch.setattr(trainer, "render", _raise_at(5, exc))
    with pytest.raises(OutOfMemory, match="max_gaussians") as err:
        trainer.train(scene, tmp_path / "o", tiny())
    assert "downscale" in err.value.fix and err.value.details["gaussians"] > 0
    assert not (tmp_path / "o" / "splat.ply").exists()


def test_cuda_kernel_error_names_step_and_kernel(scene, tmp_path, monkeypatch):
    from spaceport.stages.train import trainer

    exc = RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be "
                       "asynchronously reported at some other API call")
    monkeypatch.setattr(trainer, "render", _raise_at(9, exc))
    with pytest.raises(GpuKernelFailed) as err:
        trainer.train(scene, tmp_path / "o", tiny())
    e = err.value
    assert e.details == {"step": 9, "kernel": "gsplat.cuda._wrapper.rasterize_to_pixels", "phase": "rasterize"}
    line = e.record("train").line()  # what the SageMaker failure file and the job record carry
    assert e.reason.startswith("CUDA failed at training step 9 in gsplat.cuda._wrapper.rasterize_to_pixels")
    assert "illegal memory access" in e.reason and "\n" not in line
    assert "CUDA_LAUNCH_BLOCKING=1" in e.fix
    assert not (tmp_path / "o" / "splat.ply").exists()


def test_training_job_failure_file_names_step_and_kernel(scene, tmp_path, monkeypatch, capsys):
    """In a SageMaker Training job the failure file (-> FailureReason, the job record) carries both."""
    from spaceport.cli import main
    from spaceport.stages.train import trainer

    root = tmp_path / "opt_ml"
    monkeypatch.setenv("SPACEPORT_SM_ROOT", str(root))
    _sagemaker_layout(root, scene, {"preset": "fast", "steps": "12", "model_dir": "gt/sparse/0", "downscale": "2"})
    monkeypatch.setattr(trainer, "render", _raise_at(4, RuntimeError("CUDA error: unspecified launch failure")))
    assert main(["train"]) == 2
    from spaceport.core.errors import parse_failure

    failure = parse_failure((root / "output" / "failure").read_text())  # the one line SageMaker keeps
    assert failure.error == "GpuKernelFailed" and failure.reason.startswith(
        "CUDA failed at training step 4 in gsplat.cuda._wrapper.rasterize_to_pixels (rasterize): CUDA error: "
        "unspecified launch")
    assert failure.details["step"] == 4 and failure.details["kernel"] == "gsplat.cuda._wrapper.rasterize_to_pixels"
    assert not (root / "model" / "splat.ply").exists()
    assert "error: GpuKernelFailed" in capsys.readouterr().err


def test_cuda_error_outside_gsplat_names_the_phase(scene, tmp_path, monkeypatch):
    from spaceport.stages.train import trainer

    real_step = torch.optim.Adam.step
    calls = {"n": 0}

    def failing_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6 * 3 + 1:  # six optimisers: the first one of step 4
            raise RuntimeError("CUDA error: unspecified launch failure")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", failing_step)
    with pytest.raises(GpuKernelFailed, match="step 4 in optimizer") as err:
        trainer.train(scene, tmp_path / "o", tiny())
    assert err.value.details["kernel"] == "optimizer"


def test_other_runtime_errors_are_not_relabelled(scene, tmp_path, monkeypatch):
    from spaceport.stages.train import trainer

    monkeypatch.setattr(trainer, "render", _raise_at(2, RuntimeError("shape mismatch"), module="spaceport.x"))
    with pytest.raises(RuntimeError, match="shape mismatch") as err:
        trainer.train(scene, tmp_path / "o", tiny())
    assert not isinstance(err.value, GpuKernelFailed)
