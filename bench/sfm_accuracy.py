"""What camera model, feature count, image size and bundle-adjustment settings do to SfM accuracy on real ground truth.

On fountain-P11 and herzjesu-P8 (captures/, laser-scan cameras): one SIFT extraction and
exhaustive matching per (image size, feature count), then each mapping variant on a copy of that
database. Centre errors in mm after a similarity alignment (tests.support.sfm_evaluate.compare_strecha).
Runs pycolmap in this process (a bench, not the stage: no PNG is written here).

    nice -n 10 python bench/sfm_accuracy.py [--scenes fountain-P11,herzjesu-P8] [--log sfm_accuracy.jsonl]
    python bench/sfm_accuracy.py --table-only --log sfm_accuracy.jsonl   # table from an earlier log
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from machine import CAPTURES, cpu_model, mem_gib

#: variant -> (camera model, mapper, refine principal point)
VARIANTS = {
    "SR-inc": ("SIMPLE_RADIAL", "incremental", False),
    "SR-glob": ("SIMPLE_RADIAL", "global", False),
    "OPENCV-inc": ("OPENCV", "incremental", False),
    "RADIAL-inc": ("RADIAL", "incremental", False),
    "SR-inc-pp": ("SIMPLE_RADIAL", "incremental", True),
    "SR-glob-pp": ("SIMPLE_RADIAL", "global", True),
    "OPENCV-inc-pp": ("OPENCV", "incremental", True),
    "OPENCV-glob": ("OPENCV", "global", False),
    "OPENCV-glob-pp": ("OPENCV", "global", True),
}
#: (max image side, max features, variants)
PLAN = [(1600, 8192, list(VARIANTS)), (1600, 4096, ["SR-inc", "SR-glob"]), (1024, 8192, ["SR-inc", "SR-glob"]),
        (768, 4096, ["SR-inc", "SR-inc-pp", "SR-glob-pp", "OPENCV-inc-pp"])]


def _job(side: int, feats: int, threads: int, refine_pp: bool = False) -> dict:
    from spaceport.stages.sfm.config import SfmConfig

    return {"threads": threads, "camera_mode": "SINGLE",
            "config": SfmConfig(max_side=side, max_features=feats, refine_principal_point=refine_pp)}


def _set_camera_model(database: Path, model: str) -> None:
    import pycolmap

    db = pycolmap.Database.open(database)
    try:
        for cam in db.read_all_cameras():
            new = pycolmap.Camera.create_from_model_name(cam.camera_id, model, float(cam.params[0]), cam.width, cam.height)
            new.has_prior_focal_length = cam.has_prior_focal_length
            db.update_camera(new)
    finally:
        db.close()


def sweep(scenes: list[str], work: Path, log: Path, threads: int) -> None:
    from spaceport.stages.sfm import colmap_steps
    from tests.support.sfm_evaluate import compare_strecha

    colmap_steps._quiet()
    for scene in scenes:
        images = CAPTURES / scene / "images"
        names = sorted(p.name for p in images.iterdir())
        for side, feats, variants in PLAN:
            base = work / f"{scene}_{side}_{feats}"
            base.mkdir(parents=True, exist_ok=True)
            db0 = base / "features.db"
            t = time.perf_counter()
            colmap_steps.extract(db0, images, names, _job(side, feats, threads))
            extract_s = time.perf_counter() - t
            t = time.perf_counter()
            pairs = colmap_steps.match(db0, "exhaustive", _job(side, feats, threads))
            match_s = time.perf_counter() - t
            for v in variants:
                model, mapper, pp = VARIANTS[v]
                db = base / f"{v}.db"
                shutil.copyfile(db0, db)
                if model != "SIMPLE_RADIAL":
                    _set_camera_model(db, model)
                t = time.perf_counter()
                best, registered, _ = colmap_steps.map_images(db, images, base / v, mapper, _job(side, feats, threads, pp))
                row = {"scene": scene, "side": side, "feats": feats, "variant": v, "extract_s": round(extract_s, 1),
                       "match_s": round(match_s, 1), "map_s": round(time.perf_counter() - t, 1), "pairs": pairs,
                       "registered": registered}
                if best is not None:
                    row.update({k: round(x, 4) if isinstance(x, float) else x
                                for k, x in compare_strecha(best, CAPTURES / scene / "gt").items()})
                print(json.dumps(row), flush=True)
                with log.open("a") as f:
                    f.write(json.dumps(row) + "\n")


def table(log: Path, machine: str) -> str:
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    lines = ["| capture | max side | features | camera model | mapper | refine principal point | registered "
             "| centre error median (mm) | centre error max (mm) | rotation max (deg) | focal error | map s |",
             "|---|---:|---:|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        model, mapper, pp = VARIANTS[r["variant"]]
        lines.append(f"| {r['scene']} | {r['side']} | {r['feats']} | {model} | {mapper} | {'yes' if pp else 'no'} "
                     f"| {r['registered']}/{r.get('images', '?')} | {r.get('centre_median_mm', float('nan')):.1f} "
                     f"| {r.get('centre_max_mm', float('nan')):.1f} | {r.get('rotation_max_deg', float('nan')):.2f} "
                     f"| {r.get('focal_rel_error', float('nan')):.2%} | {r['map_s']:.1f} |")
    return "\n".join([f"Machine: {machine}.", "", *lines])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", default="fountain-P11,herzjesu-P8")
    ap.add_argument("--log", default="sfm_accuracy.jsonl")
    ap.add_argument("--work", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    log = Path(args.log)
    machine = f"{cpu_model()}, {mem_gib():.1f} GiB RAM, {args.threads} pycolmap threads"
    if not args.table_only:
        import tempfile

        work = Path(args.work or tempfile.mkdtemp(prefix="spaceport-bench-sfm-acc-"))
        sweep(args.scenes.split(","), work, log, args.threads)
    print(table(log, machine))


if __name__ == "__main__":
    main()
