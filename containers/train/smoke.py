"""Smoke test of the train image, run while it is built (no GPU there): a broken image never
reaches a job.

    python smoke.py archs /wheels/gsplat-1.5.3-*.whl   # build stage: the wheel holds every arch
    python smoke.py image                              # final image: all of the checks below

``image`` checks that torch is the CUDA 11.8 build, that gsplat's ahead-of-time compiled
extension (``gsplat.csrc``) imports (a missing one would JIT-compile inside the GPU job, which
is what failed before), that it holds machine code for every architecture in
``TORCH_CUDA_ARCH_LIST`` plus PTX for the ``+PTX`` one (listed with ``cuobjdump``), and renders one
tiny scene with the code paths that need no GPU: gsplat's PyTorch projection and the train
stage's CPU rasterizer must put a Gaussian where the camera model says. ``--cpu-only`` runs only
that last check (the project's tests run it on machines without the extension).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def expected_archs(arch_list: str) -> tuple[set[str], set[str]]:
    """``"8.0;8.6;9.0+PTX"`` -> ({"sm_80", "sm_86", "sm_90"}, {"compute_90"}): SASS and PTX wanted."""
    sass, ptx = set(), set()
    for item in re.split(r"[;\s]+", arch_list.strip()):
        if not item:
            continue
        number = item.removesuffix("+PTX").replace(".", "")
        sass.add(f"sm_{number}")
        if item.endswith("+PTX"):
            ptx.add(f"compute_{number}")
    return sass, ptx


def parse_cuobjdump(elf_listing: str, ptx_listing: str) -> tuple[set[str], set[str]]:
    """Architectures in ``cuobjdump --list-elf`` / ``--list-ptx`` output (``... .sm_86.cubin``)."""
    sass = set(re.findall(r"\bsm_\d+[a-z]?\b", elf_listing))
    ptx = {"compute_" + s.removeprefix("sm_") for s in re.findall(r"\bsm_\d+[a-z]?\b", ptx_listing)}
    return sass, ptx


def extension_archs(shared_object: Path) -> tuple[set[str], set[str]]:
    def listing(flag: str) -> str:
        out = subprocess.run(["cuobjdump", flag, str(shared_object)], capture_output=True, text=True)
        # cuobjdump exits non-zero when the file has no section of that kind: an empty listing.
        return out.stdout if out.returncode == 0 else ""

    return parse_cuobjdump(listing("--list-elf"), listing("--list-ptx"))


def check_archs(shared_object: Path, arch_list: str) -> None:
    want_sass, want_ptx = expected_archs(arch_list)
    sass, ptx = extension_archs(shared_object)
    print(f"gsplat extension {shared_object.name}: SASS {sorted(sass)}, PTX {sorted(ptx)}")
    missing = (want_sass - sass) | (want_ptx - ptx)
    if missing:
        raise SystemExit(f"gsplat extension lacks {sorted(missing)} (TORCH_CUDA_ARCH_LIST={arch_list!r})")


def wheel_extension(wheel: Path, into: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if re.fullmatch(r"gsplat/csrc[^/]*\.so", n)]
        return Path(zf.extract(name, into))


def tiny_render() -> None:
    """One Gaussian 2 m in front of a 32x32 pinhole camera (f = 20 px) lands at the image centre."""
    import torch
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    from spaceport.stages.train.rasterize import rasterization_cpu

    means = torch.tensor([[0.0, 0.0, 2.0]])
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    scales = torch.full((1, 3), 0.1)
    viewmats = torch.eye(4)[None]
    Ks = torch.tensor([[[20.0, 0.0, 16.0], [0.0, 20.0, 16.0], [0.0, 0.0, 1.0]]])
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False, triu=False)
    radii, means2d, depths, _conics, _ = _fully_fused_projection(means, covars, viewmats, Ks, 32, 32)
    assert torch.allclose(means2d[0, 0], torch.tensor([16.0, 16.0])), means2d
    assert float(depths[0, 0]) == 2.0 and int(radii[0, 0].max()) > 0
    img, alpha, info = rasterization_cpu(means, quats, scales, torch.tensor([0.9]),
                                         torch.tensor([[1.0, 0.0, 0.0]]), viewmats, Ks, 32, 32)
    assert torch.allclose(info["means2d"][0, 0], means2d[0, 0], atol=1e-4)
    centre, corner = float(alpha[0, 16, 16, 0]), float(alpha[0, 0, 0, 0])
    assert centre > 0.5 and corner < 1e-3, (centre, corner)
    assert float(img[0, 16, 16, 0]) > 0.5 and float(img[0, 16, 16, 1:].abs().max()) < 1e-6
    print(f"tiny render OK: centre alpha {centre:.3f}, corner alpha {corner:.1e}")


def check_image(arch_list: str) -> None:
    import torch

    assert torch.version.cuda and torch.version.cuda.startswith("11.8"), torch.version.cuda
    from gsplat import csrc  # the AOT extension; a JIT fallback would compile inside the job

    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), gsplat extension {csrc.__file__}")
    check_archs(Path(csrc.__file__), arch_list)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    archs = sub.add_parser("archs", help="check the architectures in a gsplat wheel or extension")
    archs.add_argument("path", type=Path)
    image = sub.add_parser("image", help="every check of the final image")
    image.add_argument("--cpu-only", action="store_true", help="only the tiny render")
    args = parser.parse_args(argv)
    arch_list = os.environ.get("TORCH_CUDA_ARCH_LIST", "")
    if args.command == "archs":
        with tempfile.TemporaryDirectory() as tmp:
            so = wheel_extension(args.path, Path(tmp)) if args.path.suffix == ".whl" else args.path
            check_archs(so, arch_list)
        return
    if not args.cpu_only:
        check_image(arch_list)
    tiny_render()


if __name__ == "__main__":
    sys.exit(main())
