"""What can go wrong on the device, as the typed errors the stage boundary records.

Torch reports running out of memory and failed CUDA kernels as plain exceptions
(``torch.OutOfMemoryError``, ``MemoryError``, ``RuntimeError("CUDA error: ...")``);
:func:`typed_failure` turns them into :class:`~spaceport.core.errors.OutOfMemory` and
:class:`~spaceport.core.errors.GpuKernelFailed`, and leaves any other error as it is.
"""

from __future__ import annotations

import traceback

import torch

from spaceport.core.errors import GpuKernelFailed, OutOfMemory


def is_oom(exc: BaseException) -> bool:
    """Out of host or GPU memory (torch's CPU allocator raises a RuntimeError saying so)."""
    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def is_cuda_error(exc: BaseException) -> bool:
    """A failed CUDA call or kernel (torch raises AcceleratorError/RuntimeError "CUDA error: ...")."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("CUDA error" in text or "CUDA kernel errors" in text)


def out_of_memory(exc: BaseException, gaussians: int, max_gaussians: int, downscale: int) -> OutOfMemory:
    """The typed error for running out of memory, naming the two settings that bound it."""
    return OutOfMemory(
        f"Ran out of memory with {gaussians} Gaussians at {downscale}x downscale ({type(exc).__name__})",
        f"Lower max_gaussians (now {max_gaussians}) or raise downscale (now {downscale}), "
        "or use an instance with more memory", gaussians=gaussians)


def cuda_failure(exc: BaseException, step: int, phase: str) -> GpuKernelFailed:
    """The typed error for a CUDA failure: which step, and which kernel (the innermost gsplat call on
    the stack, else the loop phase; CUDA errors surface at the next launch or sync)."""
    kernel = phase
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        module = frame.f_globals.get("__name__", "")
        if module.split(".")[0] == "gsplat":
            kernel = f"{module}.{frame.f_code.co_qualname}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return GpuKernelFailed(f"CUDA failed at training step {step} in {kernel} ({phase}): {first}",
                           step=step, kernel=kernel, phase=phase)
