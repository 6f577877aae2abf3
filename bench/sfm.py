"""SfM benchmark: Spaceport's `auto` choice against exhaustive matching + incremental mapping.

Exhaustive + incremental is what most tools run by default (nerfstudio's ``ns-process-data``,
COLMAP's automatic reconstructor). Both runs see the same synthetic scene of 100+ views, one
after the other in this process, and are compared on wall-clock seconds, registered images and
camera-centre error against the known cameras (after a similarity alignment).

    nice -n 10 python bench/sfm.py [--views 120] [--size 640x480] [--out bench/results/sfm.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from machine import cpu_model, mem_gib


def machine() -> str:
    cpu, mem = cpu_model(), f"{mem_gib():.1f} GiB RAM"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{cores} cores usable (nproc), {cpu}, {mem}, {platform.system()} {platform.release()}; load average at start {load}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--views", type=int, default=120)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sfm.md"))
    ap.add_argument("--work", default=None, help="Scratch folder (default: a temporary one, removed)")
    ap.add_argument("--repeats", type=int, default=2,
                    help="Runs of each configuration, alternating; the fastest counts (the machine is shared)")
    args = ap.parse_args()

    from importlib.metadata import version

    from spaceport.scenes import make_scene
    from spaceport.sfm.config import SfmConfig
    from spaceport.sfm.evaluate import compare
    from spaceport.sfm.pipeline import choose, run_sfm

    width, height = (int(v) for v in args.size.lower().split("x"))
    work = Path(args.work or tempfile.mkdtemp(prefix="spaceport-bench-sfm-"))
    desc = machine()
    scene = work / "scene"
    t = time.perf_counter()
    info = make_scene(scene, views=args.views, size=(width, height), seed=args.seed)
    print(f"scene: {args.views} views {width}x{height} in {time.perf_counter() - t:.1f} s (radius {info['radius']:.2f} m)")

    runs = [
        ("spaceport auto", SfmConfig()),
        ("exhaustive + incremental (baseline)", SfmConfig(matcher="exhaustive", mapper="incremental")),
    ]
    best: dict[str, dict] = {}
    for rep in range(args.repeats):
        for label, cfg in runs:  # alternate, so that a busy spell hurts both configurations alike
            out = work / label.split()[0]
            t = time.perf_counter()
            summary = run_sfm(scene / "images", out, cfg)
            seconds = time.perf_counter() - t
            err = compare(out / "sparse" / "0", scene / "gt" / "sparse" / "0")
            s = summary["seconds"]
            row = {
                "label": label, "choice": f"{summary['matcher']} + {summary['mapper']}", "seconds": seconds,
                "extract": s.get("extract", 0), "match": s.get("match", 0), "map": s.get("map", 0),
                "registered": f"{summary['registered_images']}/{summary['usable_images']}",
                "pairs": sum(a["verified_pairs"] for a in summary["attempts"] if "match_seconds" in a),
                "points": summary["points"], "centre": err.get("center_rmse_frac", float("nan")),
                "centre_max": err.get("center_max_frac", float("nan")), "rot": err.get("rotation_max_deg", float("nan")),
                "focal": err.get("focal_rel_error", float("nan")), "fallback": summary["fallback"],
                "load": os.getloadavg()[0], "all_seconds": [*best.get(label, {}).get("all_seconds", []), round(seconds, 1)],
            }
            print(f"[{rep + 1}/{args.repeats}] {label}: {seconds:.1f} s, registered {row['registered']}, "
                  f"centre rmse {row['centre']:.3%} of radius")
            if label not in best or seconds < best[label]["seconds"]:
                best[label] = row
            else:
                best[label]["all_seconds"] = row["all_seconds"]
    rows = [best[label] for label, _ in runs]
    auto, base = rows
    ratio = base["seconds"] / auto["seconds"]
    ratio_mm = (base["match"] + base["map"]) / max(auto["match"] + auto["map"], 1e-9)
    lines = [
        "# SfM benchmark: `auto` vs exhaustive + incremental",
        "",
        f"Scene: `spaceport.scenes` orbit, {args.views} views at {width}x{height}, seed {args.seed} "
        f"(radius {info['radius']:.2f} m). `auto` chose **{choose('images', args.views, SfmConfig())[0]} + "
        f"{choose('images', args.views, SfmConfig())[1]}**. Both configurations in one process, "
        f"alternating, {args.repeats} run(s) each; the table shows each one's fastest run.",
        "",
        f"Machine: {desc}. pycolmap {version('pycolmap')} (CPU).",
        "",
        "| run | matcher + mapper | total s | extract s | match s | map s | verified pairs | registered | points "
        "| centre RMSE (% radius) | centre max (% radius) | rotation max (deg) | focal error | load avg (1 min) at end "
        "| every run's total s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['choice']}{' (fallback)' if r['fallback'] else ''} | {r['seconds']:.1f} | {r['extract']:.1f} "
            f"| {r['match']:.1f} | {r['map']:.1f} | {r['pairs']} | {r['registered']} | {r['points']} | {r['centre']:.3%} "
            f"| {r['centre_max']:.3%} | {r['rot']:.3f} | {r['focal']:.3%} | {r['load']:.1f} "
            f"| {', '.join(map(str, r['all_seconds']))} |")
    lines += [
        "",
        f"**Speed-up of `auto`: {ratio:.2f}x end to end** (stage wall-clock, including ingest, SIFT extraction "
        f"and undistortion, which both runs share); {ratio_mm:.2f}x on matching + mapping alone. Goal: >= 3x at equal "
        "registration and accuracy.",
        "",
        "The machine is shared (other jobs run beside this one), so seconds carry noise; the load column "
        "shows how busy it was.",
        "",
        "Reproduce: `nice -n 10 python bench/sfm.py` (about the sum of the two totals above plus the scene rendering).",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
