"""A stand-in for `python -m spaceport <stage>`: writes contract-shaped fixture outputs into the
SageMaker layout under $SPACEPORT_SM_ROOT. FAKE_FAIL=<stage> makes that stage fail the way a real
one does (failure file + exit 2); FAKE_HANG=<stage> makes it sleep after writing half its output."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import conftest as fx

from spaceport import contract, progress
from spaceport.errors import SfmFailed


def main(stage: str, args: list[str]) -> int:
    root = contract.sm_root()
    calls = Path(os.environ["FAKE_CALLS"])
    with calls.open("a") as f:
        f.write(json.dumps({"stage": stage, "args": args, "root": str(root), "pid": os.getpid()}) + "\n")
    if os.environ.get("FAKE_FAIL") == stage:
        err = SfmFailed("only 2 of 12 images registered")
        contract.write_failure(err)
        print(f"error: {err.one_line()}", file=sys.stderr)
        return 2
    cams = fx._orbit_cameras()
    if stage == "sfm":
        upload = root / "processing/input/upload"
        assert upload.is_dir() and any(upload.iterdir()), "upload channel is empty"
        for entry in upload.iterdir():
            entry.read_bytes() if entry.is_file() else None  # the input is readable through the link
        progress.emit("sfm", phase="extract", seconds=0.1)
        out = root / "processing/output/sfm"
        if os.environ.get("FAKE_HANG") == "sfm":
            (out / "sfm.json").write_text("{}")
            time.sleep(60)
        fx.write_sfm(out, cams)
    elif stage == "train":
        assert (root / "input/data/sfm/sfm.json").is_file()
        hp = json.loads((root / "input/config/hyperparameters.json").read_text())
        assert all(isinstance(v, str) for v in hp.values())
        for step in (10, 20, 30):
            progress.emit("train", step=step, loss=1.0 / step, psnr=10 + step / 3, eta_s=30 - step)
        psnr = float(os.environ.get("FAKE_PSNR", "24.5"))
        fx.write_train(root / "model", cams, psnr=psnr)
        progress.emit("train", final=1, test_psnr=psnr, test_ssim=0.8, num_gaussians=3000, seconds=1.0)
    elif stage == "compress":
        assert (root / "processing/input/model/splat.ply").is_file()
        fx.write_compressed(root / "processing/output/compressed")
    else:
        raise SystemExit(f"unknown fake stage {stage}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
