"""A stand-in for the images' `spaceport` program, started with the argv SageMaker would pass
(``sfm --opt v ...``, ``train``, ``compress ...``, ``publish``): writes model-built fixture outputs
into the SageMaker layout under $SPACEPORT_SM_ROOT (``publish`` runs the real command).
FAKE_FAIL=<stage> makes that stage fail the way a real one does (failure record + exit 2);
FAKE_HANG=<stage> makes it sleep after writing half its output."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import conftest as fx

from spaceport.core import contract
from spaceport.core.errors import SfmFailed
from spaceport.core.summaries import JobRecord, read_summary
from spaceport.local import progress


def main(stage: str, args: list[str]) -> int:
    root = contract.sm_root()
    calls = Path(os.environ["FAKE_CALLS"])
    with calls.open("a") as f:
        f.write(json.dumps({"stage": stage, "argv": [stage, *args], "root": str(root), "pid": os.getpid()}) + "\n")
    job_json = root.parents[1] / "job.json"  # sm_root is DIR/.scratch/<stage>
    if job_json.is_file():  # what the job folder's record says while this stage runs
        with calls.with_name("job_at_start.jsonl").open("a") as f:
            f.write(json.dumps({"stage": stage, "status": read_summary(JobRecord, job_json).status}) + "\n")
    if os.environ.get("FAKE_FAIL") == stage:
        err = SfmFailed("Only 2 of 12 images registered", registered=2)
        contract.write_failure(err, os.environ.get("SPACEPORT_STAGE"))
        print(f"error: {err.name}: {err.reason}", file=sys.stderr)
        return 2
    if stage == "publish":
        from spaceport.cli import main as cli

        return cli(["publish", *args])
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
        if float(hp.get("minutes", "0")):  # what the real stage prints once it has calibrated
            progress.emit("train", phase="plan", minutes=float(hp["minutes"]), downscale=4, width=200, height=150,
                          steps=900, max_gaussians=60000, epochs=45.0, expected_s=170.5, finish_at="12:00:00")
        for step in (10, 20, 30):
            progress.emit("train", step=step, loss=1.0 / step, psnr=10 + step / 3, eta_s=30 - step)
            if step == 10 and float(hp.get("minutes", "0")):  # the machine is slower than calibrated
                progress.emit("train", phase="refit", step=step, steps=600, step_s=0.2)
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
