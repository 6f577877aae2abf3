"""Does the quality gate separate good captures from bad ones? Its figures on every real capture
and on deliberately bad captures made from each.

Each capture goes through the SfM stage once; the bad variants are made from that SfM output, so
each differs from its good capture in one way only:

- ``few_views``: 4 images (1 held out, 3 to train on), the held-out one the same as the good run's;
- ``blur``: every photo (training and held-out) blurred with a Gaussian of radius 1.5% of the width;
- ``bad_poses``: an SfM that went wrong: each camera turned by ~3 degrees about a random axis and
  moved by ~10% of the camera path's extent (seeded), points left where they were;
- ``far_held_out``: the held-out views are the ones at one end of the camera path and their
  nearest neighbours are removed, so no training view is near them.

The trainer holds out every 8th image by name, so a variant lays its images out under new names
(``000_<name>``, ...) that put the chosen held-out views at positions 0, 8, 16, ...

Every run trains with the same options (``--preset``, default ``fast``; ``--set`` adds train
options) and the figures the gate can read from ``metrics.json`` are tabulated: held-out PSNR and
SSIM, training-view PSNR and the gap between them (training minus held-out PSNR), the training
views, and the capture's own figures (:mod:`spaceport.stages.train.capture`: photo sharpness, the farthest
held-out view's offset from the training views, held-out PSNR above each photo's mean colour).
The capture figures are measured again here from the variant's folder with the code of this tree
(the same function on the same views as the trainer, so a definition changed after a run needs no
new training), and each run is judged by :func:`spaceport.stages.gate.evaluate` with this tree's defaults.

    nice -n 10 python bench/gate.py [--captures monstree,fountain-P11,herzjesu-P8] [--variants good,blur]
        [--work DIR] [--preset fast] [--set steps=400] [--out RESULTS.json]
    python bench/gate.py --table RESULTS.json ... [--note TEXT]   # gate.md and gate.json from runs in --work
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from machine import CAPTURES, ROOT, cpu_model, mem_gib, write_table

from spaceport.core.summaries import TrainMetrics, read_summary

TEST_EVERY = 8
VARIANTS = ("good", "few_views", "blur", "bad_poses", "far_held_out")


def spaceport(*args: str, log: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("w") as f:
        # Its own session, like every bench here: on a machine shared by many sessions the scheduler
        # shares the CPU by session (autogroup), and a run should get one session's share.
        proc = subprocess.run([sys.executable, "-m", "spaceport", *args], stdout=f, stderr=subprocess.STDOUT,
                              env=env, cwd=ROOT, start_new_session=True)
    if proc.returncode != 0:
        raise SystemExit(f"spaceport {' '.join(args)} failed; see {log}")


def capture_input(name: str) -> Path:
    folder = CAPTURES / name
    return folder / "images" if (folder / "images").is_dir() else folder


def held_out_positions(n: int) -> list[int]:
    return list(range(0, n, TEST_EVERY))


def lay_out(sfm: Path, out: Path, test: list[str], train: list[str], *, poses=None, blur: float = 0.0) -> Path:
    """A copy of the SfM output holding ``test`` + ``train`` images, renamed so the trainer holds out
    exactly ``test``; ``poses`` maps a name to a new world-to-camera 4x4; ``blur`` is a radius in px."""
    from PIL import Image as PILImage
    from PIL import ImageFilter

    from spaceport.geometry import colmap

    n = len(test) + len(train)
    slots = held_out_positions(n)
    assert len(slots) == len(test), f"{len(test)} held-out views need {n} images laid out in {TEST_EVERY}s"
    order: list[str] = []
    tests, trains = iter(test), iter(train)
    for i in range(n):
        order.append(next(tests) if i in slots else next(trains))
    if (out / "laid_out").is_file():  # made by an earlier (or a parallel) invocation
        return out
    model = colmap.read_model(sfm / "sparse" / "0")
    by_name = {im.name: im for im in model.images.values()}
    shutil.rmtree(out, ignore_errors=True)
    (out / "images").mkdir(parents=True)
    images = {}
    for i, name in enumerate(order):
        im = by_name[name]
        new = f"{i:03d}_{name}"
        qvec, tvec = im.qvec, im.tvec
        if poses is not None and name in poses:
            w2c = poses[name]
            qvec, tvec = colmap.rotmat_to_qvec(w2c[:3, :3]), w2c[:3, 3]
        images[i + 1] = colmap.Image(i + 1, qvec, tvec, im.camera_id, new)
        src = sfm / "images" / name
        if blur:
            with PILImage.open(src) as pic:
                pic.filter(ImageFilter.GaussianBlur(blur)).save(out / "images" / new)
        else:
            shutil.copyfile(src, out / "images" / new)
    colmap.write_model_binary(colmap.Model(model.cameras, images, model.points), out / "sparse" / "0")
    (out / "laid_out").write_text("\n".join(order))
    return out


def variants(sfm: Path, work: Path, seed: int = 0) -> dict[str, Path]:
    """The good capture and its bad variants, each a trainable folder under ``work``."""
    from spaceport.geometry import colmap

    model = colmap.read_model(sfm / "sparse" / "0")
    names = sorted(im.name for im in model.images.values())
    n = len(names)
    slots = set(held_out_positions(n))
    test = [names[i] for i in sorted(slots)]
    train = [names[i] for i in range(n) if i not in slots]
    out = {"good": lay_out(sfm, work / "good", test, train)}
    # Too few views: the first held-out view and three training views spread along the capture.
    pick = [train[round(i * (len(train) - 1) / 2)] for i in range(3)]
    out["few_views"] = lay_out(sfm, work / "few_views", test[:1], pick)
    width = next(iter(model.cameras.values())).width
    out["blur"] = lay_out(sfm, work / "blur", test, train, blur=0.015 * width)
    # A wrong SfM: every pose moved and turned by a seeded random amount.
    rng = np.random.default_rng(seed)
    by_name = {im.name: im for im in model.images.values()}
    centres = np.array([by_name[x].center() for x in names])
    extent = float(np.linalg.norm(centres.max(0) - centres.min(0))) or 1.0
    poses = {}
    for x in names:
        w2c = by_name[x].world_to_camera()
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        angle = math.radians(3.0)
        K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        turn = np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K
        centre = by_name[x].center() + rng.normal(size=3) * 0.1 * extent / math.sqrt(3)
        R = turn @ w2c[:3, :3]
        new = np.eye(4)
        new[:3, :3], new[:3, 3] = R, -R @ centre
        poses[x] = new
    out["bad_poses"] = lay_out(sfm, work / "bad_poses", test, train, poses=poses)
    # Held out far from training: the cameras at one end of the path's main axis, their neighbours dropped.
    axis = np.linalg.svd(centres - centres.mean(0))[2][0]
    along = sorted(range(n), key=lambda i: float((centres[i] - centres.mean(0)) @ axis))
    drop = max(1, n // 8)
    t = math.ceil((n - drop) / TEST_EVERY)
    far_test = [names[i] for i in along[:t]]
    far_train = [names[i] for i in along[t + drop:]]
    out["far_held_out"] = lay_out(sfm, work / "far_held_out", far_test, far_train)
    return out


def figures(work: Path, row: dict, min_psnr: float) -> dict:
    """``row`` with the capture figures measured again from its variant's folder and this tree's gate
    verdict (:func:`spaceport.stages.gate.evaluate`, default targets, ``min_psnr``) on its metrics.json."""
    from spaceport import colmap, gate
    from spaceport.core.summaries import TrainMetrics, read_summary
    from spaceport.stages.train.capture import capture_figures
    from spaceport.stages.train.data import load_views

    folder = work / row["capture"] / "variants" / row["variant"]
    metrics = read_summary(TrainMetrics, work / row["capture"] / "train" / row["variant"] / "metrics.json")
    views = load_views(colmap.read_model(folder / "sparse" / "0"), folder / "images", TEST_EVERY,
                       int(metrics.config.get("downscale", "1")))
    fig = capture_figures(views)
    result = gate.evaluate(metrics.model_copy(update={"capture": fig}), gate.QualityTargets(min_psnr=min_psnr))
    return {**row, **fig.model_dump(exclude={"held_out_farthest"}), "psnr_gain": result.psnr_gain,
            "failed": result.failed}


def _mark(verdict_: str, should: str) -> str:
    return verdict_ if verdict_ == should else f"**{verdict_} (wrong)**"


def margins(rows: list[dict], targets) -> list[str]:
    """Per check: its limit, the worst good capture's figure, and each bad variant it catches."""
    checks = (("train_views", "training views", "train_images", "min_train_views", True),
              ("sharpness", "sharpness", "sharpness", "min_sharpness", True),
              ("held_out_offset", "held-out offset", "held_out_offset", "max_held_out_offset", False),
              ("psnr_gain", "PSNR gain (dB)", "psnr_gain", "min_psnr_gain", True),
              ("psnr", "held-out PSNR (dB)", "test_psnr", "min_psnr", True))
    lines = ["| check | limit | worst good capture | bad runs it fails (figure) |", "|---|---:|---|---|"]
    for name, label, key, limit, at_least in checks:
        good = [r for r in rows if r["variant"] == "good" and r.get(key) is not None]
        worst = (min if at_least else max)(good, key=lambda r: r[key]) if good else None
        caught = [f"{r['capture']} {r['variant']} ({r[key]:.4g})" for r in rows if name in r["failed"]]
        shown = f"{worst[key]:.4g} ({worst['capture']})" if worst else "-"
        lines.append(f"| {label} | {getattr(targets, limit):g} | {shown} | {', '.join(caught) or '-'} |")
    return lines


def table(rows: list[dict], out: Path, min_psnr: float, notes: list[str]) -> None:
    """gate.md: every figure of every run, each run's verdict under the old gate and this tree's gate,
    and each check's margins."""
    from spaceport.stages.gate import QualityTargets

    targets = QualityTargets(min_psnr=min_psnr)
    lines = ["# Does the quality gate separate good captures from bad ones?", "",
             f"Machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {mem_gib():.0f} GiB, shared with other work "
             "(1-minute load average per run below). Command: `python bench/gate.py` (method in its docstring).", "",
             f"Gate (this tree's defaults): training views >= {targets.min_train_views}, median sharpness >= "
             f"{targets.min_sharpness:g}, held-out offset <= {targets.max_held_out_offset:g} widest training gaps, held-out PSNR "
             f">= mean-colour PSNR + {targets.min_psnr_gain:g} dB, held-out PSNR >= {min_psnr:g} dB. "
             "Old gate: held-out PSNR >= 20 dB only.", "",
             "| capture | variant | should | held-out PSNR | SSIM | training PSNR | gap | held out / train | "
             "sharpness | held-out offset | mean-colour PSNR | gain | old gate | gate | missed | steps | wall s | "
             "CPU s | load |",
             "|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---|---|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["capture"], VARIANTS.index(r["variant"]))):
        should = "pass" if r["variant"] == "good" else "fail"
        old = "pass" if r["test_psnr"] >= 20.0 else "fail"
        new = "fail" if r["failed"] else "pass"
        off = "-" if r["held_out_offset"] is None else f"{r['held_out_offset']:.2f}"
        lines.append(f"| {r['capture']} | {r['variant']} | {should} | {r['test_psnr']:.2f} | {r['test_ssim']:.3f} | "
                     f"{r['train_psnr']:.2f} | {r['gap']:.2f} | {r['held_out']} / {r['train_images']} | "
                     f"{r['sharpness']:.2f} | {off} | {r['baseline_psnr']:.2f} | {r['psnr_gain']:.2f} | "
                     f"{_mark(old, should)} | {_mark(new, should)} | {', '.join(r['failed']) or '-'} | {r['steps']} | "
                     f"{r['wall_s']} | {r['cpu_s']} | {r['load']} |")
    lines += ["", "Margins: each check's limit against the worst good capture and the bad runs it fails.", "",
              *margins(rows, targets), "", *notes]
    write_table(lines, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captures", default="monstree,fountain-P11,herzjesu-P8")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--work", type=Path, default=Path("/tmp/spaceport-bench-gate"))
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="OPTION=VALUE",
                    help="extra train option, e.g. steps=400")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gate.json")
    ap.add_argument("--table", nargs="*", type=Path, metavar="JSON",
                    help="only write bench/results/gate.md (and --out) from these result files")
    ap.add_argument("--min-psnr", type=float, default=17.0, help="the deployment's held-out PSNR target, dB")
    ap.add_argument("--note", action="append", default=[])
    args = ap.parse_args()
    if args.table is not None:
        rows = [figures(args.work, r, args.min_psnr) for f in args.table for r in json.loads(f.read_text())]
        args.out.write_text(json.dumps(rows, indent=1))  # every run's figures, as the table shows them
        table(rows, ROOT / "bench" / "results" / "gate.md", args.min_psnr, args.note)
        return
    load_before = os.getloadavg()[0]
    rows = json.loads(args.out.read_text()) if args.out.is_file() else []
    done = {(r["capture"], r["variant"]) for r in rows}
    for cap in args.captures.split(","):
        work = args.work / cap
        sfm = work / "sfm"
        if not (sfm / "sfm.json").is_file():
            work.mkdir(parents=True, exist_ok=True)
            t = time.perf_counter()
            spaceport("sfm", str(capture_input(cap)), "--out", str(sfm), log=work / "sfm.log")
            print(f"{cap}: sfm {time.perf_counter() - t:.0f} s", flush=True)
        folders = variants(sfm, work / "variants")
        for var in args.variants.split(","):
            if (cap, var) in done:
                continue
            train_out = work / "train" / var
            shutil.rmtree(train_out, ignore_errors=True)
            t, cpu = time.perf_counter(), os.times()
            extra = [x for s in args.sets for x in ("--" + s.split("=", 1)[0].replace("_", "-"), s.split("=", 1)[1])]
            spaceport("train", str(folders[var]), "--out", str(train_out), "--preset", args.preset, *extra,
                      log=work / f"train_{var}.log")
            cpu_s = sum(os.times()[2:4]) - sum(cpu[2:4])
            m = read_summary(TrainMetrics, train_out / "metrics.json")
            row = {"capture": cap, "variant": var, "test_psnr": m.test_psnr, "test_ssim": m.test_ssim,
                   "train_psnr": m.train_psnr, "gap": round(m.train_psnr - m.test_psnr, 3),
                   "held_out": len(m.held_out), "train_images": m.train_images, "steps": m.steps,
                   "gaussians": m.num_gaussians, "wall_s": round(time.perf_counter() - t, 1),
                   "cpu_s": round(cpu_s, 1), "load": round(os.getloadavg()[0], 1)}
            row = figures(args.work, row, args.min_psnr)
            rows.append(row)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(rows, indent=1))
            print(json.dumps(row), flush=True)
    print(f"load before {load_before:.1f}, after {os.getloadavg()[0]:.1f}; {cpu_model()}, {mem_gib():.0f} GiB")


if __name__ == "__main__":
    main()
