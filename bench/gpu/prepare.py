"""Prepare what bench/gpu/run.sh needs on a device machine that has no network: CARRY/whl, CARRY/src, CARRY/sfm.

    python bench/gpu/prepare.py CARRY [--sfm-from DIR] [--captures fountain-P11,herzjesu-P8,monstree]

* ``whl/``: the wheels the device image lacks (its package list: /work/.library/device/KINDS.md),
  for CPython 3.12 on manylinux x86-64, one version each (the versions this venv runs);
* ``src/``: gsplat's sdist, which containers/train/build_gsplat.sh compiles there;
* ``sfm/<capture>/``: each real capture's SfM output (``spaceport sfm``, run here unless ``--sfm-from``
  holds one already), with ``sparse/0`` rewritten without the 2D keypoints and tracks, which training
  never reads (3.2 of fountain-P11's 4.4 MB), and ``images/`` re-encoded from the stage's JPEG quality
  100 to quality 95 without chroma subsampling (43-48 dB PSNR against the stage's images, far above
  any training PSNR; half the bytes), same names and sizes;
* ``manifest.json``: per capture the image count, size and the re-encoding's PSNR (run.sh notes it).

The device call carries this folder (``carry: [CARRY]``); everything that travels must stay under
64 MiB together with the repository, so the sizes are printed and checked.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: missing from the device image: pydantic (spaceport.core.errors/summaries) with its parts, plyfile (splat.ply)
WHEELS = ("pydantic", "pydantic_core", "annotated_types", "typing_extensions", "typing_inspection", "plyfile")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
GSPLAT = "gsplat==1.5.3"
CAPTURES = ("fountain-P11", "herzjesu-P8", "monstree")
#: the carried images' JPEG quality (the SfM stage writes 100)
JPEG_QUALITY = 95
#: the device's working-tree limit (64 MiB) less room for the repository itself
CARRY_LIMIT_MB = 40.0


def slim_model(src: Path, dst: Path) -> None:
    """Copy the COLMAP model at ``src`` to ``dst`` without 2D keypoints or tracks (poses, cameras, points kept)."""
    import numpy as np

    from spaceport.geometry.colmap import Image, Model, read_model, write_model_binary

    model = read_model(src)
    images = {i: Image(im.id, im.qvec, im.tvec, im.camera_id, im.name, np.zeros((0, 2)), np.zeros(0, np.int64))
              for i, im in model.images.items()}
    write_model_binary(Model(model.cameras, images, model.points), dst)


def capture_input(name: str) -> Path:
    """The capture's photos, from the repository's captures/ folder."""
    folder = ROOT / "captures" / name
    if not folder.is_dir():
        raise SystemExit(f"no capture {name!r} under {ROOT / 'captures'} (see captures/README.md)")
    return folder / "images" if (folder / "images").is_dir() else folder


def reencode(src: Path, dst: Path, quality: int = JPEG_QUALITY) -> float:
    """``src`` as a JPEG of ``quality`` (4:4:4) at ``dst``; returns the PSNR (dB) of the result against it."""
    import numpy as np
    from PIL import Image

    from spaceport.geometry.imaging import psnr_db

    with Image.open(src) as im:
        rgb = im.convert("RGB")
    rgb.save(dst, "JPEG", quality=quality, subsampling=0)
    with Image.open(dst) as im:
        mse = float(np.mean((np.asarray(im.convert("RGB"), np.float64) - np.asarray(rgb, np.float64)) ** 2)) / 255**2
    return psnr_db(mse)


def prepare_sfm(name: str, carry: Path, sfm_from: Path | None) -> dict:
    out = carry / "sfm" / name
    src = sfm_from / name if sfm_from else Path("/tmp/spaceport-prepare-sfm") / name
    if not (src / "sparse" / "0").is_dir():
        subprocess.run([sys.executable, "-m", "spaceport", "sfm", str(capture_input(name)), "--out", str(src)],
                       check=True, cwd=ROOT)
    shutil.rmtree(out, ignore_errors=True)
    (out / "images").mkdir(parents=True)
    psnrs = [reencode(p, out / "images" / p.name) for p in sorted((src / "images").iterdir()) if p.is_file()]
    slim_model(src / "sparse" / "0", out / "sparse" / "0")
    return {"images": len(psnrs), "jpeg_quality": JPEG_QUALITY, "psnr_vs_sfm_images_db_min": round(min(psnrs), 2),
            "megabytes": round(size_mb(out), 2)}


def download(carry: Path) -> None:
    whl, src = carry / "whl", carry / "src"
    shutil.rmtree(whl, ignore_errors=True)
    shutil.rmtree(src, ignore_errors=True)
    pins = [f"{name}=={md.version(name)}" for name in WHEELS]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(whl), *pins],
                   check=True)
    # the sdist: building its metadata needs torch, so no build isolation; BUILD_NO_CUDA skips the compile
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary=:all:",
                    "--no-build-isolation", "-d", str(src), GSPLAT], check=True,
                   env={**os.environ, "BUILD_NO_CUDA": "1"})


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("carry", type=Path)
    ap.add_argument("--sfm-from", type=Path, default=None, help="Existing SfM outputs, one folder per capture")
    ap.add_argument("--captures", default=",".join(CAPTURES))
    ap.add_argument("--skip-download", action="store_true")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    a.carry.mkdir(parents=True, exist_ok=True)
    if not a.skip_download:
        download(a.carry)
    manifest = {name: prepare_sfm(name, a.carry, a.sfm_from) for name in a.captures.split(",") if name}
    (a.carry / "manifest.json").write_text(json.dumps(manifest, indent=1))
    for part in sorted(p for p in a.carry.iterdir() if p.is_dir()):
        print(f"{part.name}: {size_mb(part):.1f} MB")
    total = size_mb(a.carry)
    print(f"total: {total:.1f} MB (limit here {CARRY_LIMIT_MB:g} MB, leaving the rest of 64 MiB to the repository)")
    return 0 if total <= CARRY_LIMIT_MB else 1


if __name__ == "__main__":
    sys.exit(main())
