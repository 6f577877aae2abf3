"""bench/results/gpu.json and gpu.md from what one device call of bench/gpu/run.sh returned.

    python bench/gpu/report.py FETCHED_OUT [--json bench/results/gpu.json] [--md bench/results/gpu.md]
                               [--a10g-factor 2.5]

FETCHED_OUT is the call's $OUT as fetched (runs.jsonl, protocol.json, notes.json). Cells are the mean
± sample standard deviation over seeds of every (capture, method, steps) that finished; the goals
compare methods seed by seed on the same capture; a cell with fewer seeds than planned says so.
:func:`train_job_cost` turns a measured seconds per step into the SageMaker training cost that
docs/aws.md quotes.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("reference", "default", "quality")
LABELS = {"reference": "plain gsplat loop", "default": "`default`", "quality": "`quality` (MCMC)"}
#: ml.g5.2xlarge's GPU, what the plan trains on (spaceport/cloud/cost.py has its price)
A10G_INSTANCE = "ml.g5.2xlarge"
A10G_MEMORY_GIB = 24.0
#: H200 seconds per step -> A10G seconds per step. Not measured: the ratio of the two chips' datasheet
#: rates that bound a splatting step, fp32 ALU 67 vs 31.2 TFLOP/s (2.1x) and SMs x clock 132 x 1.98 vs
#: 80 x 1.71 GHz (1.9x), rounded up for memory traffic (4.8 vs 0.6 TB/s) and the slower host that issues
#: the launches. Pass another factor to see the cost move; the report shows 2x and 4x beside it.
A10G_FACTOR = 2.5
#: seconds a training job spends outside the loop: container start and image pull are not in any
#: measurement here; load, evaluation and export are taken from the measured whole-run time
SAGEMAKER_START_S = 120.0


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else None)


def fmt(m: float | None, s: float | None, spec: str) -> str:
    if m is None:
        return "n/a"
    return format(m, spec) + (f" ± {format(s, spec)}" if s is not None else "")


def load(out: Path) -> tuple[list[dict], dict, dict]:
    rows = []
    if (out / "runs.jsonl").is_file():
        rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines() if line.strip()]
    notes = json.loads((out / "notes.json").read_text()) if (out / "notes.json").is_file() else {}
    protocol = json.loads((out / "protocol.json").read_text()) if (out / "protocol.json").is_file() else {}
    return rows, notes, protocol


def cells(rows: list[dict], group: str) -> list[dict[str, Any]]:
    """One cell per (capture, method, steps) of ``group`` over its finished seeds."""
    out = []
    keys = sorted({(r["capture"], r["method"], r["steps"]) for r in rows if r["group"] == group},
                  key=lambda k: (k[0], k[2], METHODS.index(k[1])))
    for capture, method, steps in keys:
        mine = [r for r in rows if (r["group"], r["capture"], r["method"], r["steps"]) == (group, capture, method, steps)]
        done = sorted((r for r in mine if r["state"] == "finished"), key=lambda r: r["seed"])
        cell: dict[str, Any] = {"capture": capture, "method": method, "steps": steps, "group": group,
                                "seeds": [r["seed"] for r in done], "n": len(done),
                                "not_finished": [{"seed": r["seed"], "state": r["state"], "note": r.get("note")}
                                                 for r in mine if r["state"] != "finished"]}
        for key in ("test_psnr", "test_ssim", "num_gaussians", "loop_s", "total_s", "seconds_per_step",
                    "peak_cuda_memory_mb", "concurrency_mean", "gpu_util_mean"):
            cell[key] = mean_std([r.get(key) for r in done])
        if done:
            cell.update(width=done[0]["width"], height=done[0]["height"], train_images=done[0]["train_images"],
                        test_images=done[0]["test_images"], held_out=done[0].get("held_out"),
                        concurrency_range=[min(r["concurrency_min"] or 0 for r in done),
                                           max(r["concurrency_max"] or 0 for r in done)])
        out.append(cell)
    return out


def paired(rows: list[dict], group: str, capture: str, a: str, b: str, key: str, ratio: bool) -> list[float]:
    """``a`` against ``b`` seed by seed (difference, or ratio), where both finished."""
    by = {(r["method"], r["seed"]): r for r in rows if r["group"] == group and r["capture"] == capture
          and r["state"] == "finished" and r.get(key) is not None}
    seeds = sorted({s for m, s in by if m == a} & {s for m, s in by if m == b})
    return [by[(a, s)][key] / by[(b, s)][key] if ratio else by[(a, s)][key] - by[(b, s)][key] for s in seeds]


def goals(rows: list[dict], captures: list[str], steps: int) -> list[dict[str, Any]]:
    """The GPU goals per capture, seed-paired: met/missed with the numbers."""
    out = []
    solo = any(r["group"] == "solo" and r["state"] == "finished" for r in rows)
    for capture in captures:
        p = [r for r in rows if r["capture"] == capture and r["steps"] == steps]

        def goal(name: str, values: list[float], op: str, bound: float, unit: str, source: str,
                 _capture: str = capture) -> None:
            if not values:
                return
            m, s = mean_std(values)
            met = (m >= bound) if op == ">=" else (m <= bound) if op == "<=" else (m > bound)
            spec = ".2f"
            out.append({"capture": _capture, "goal": name, "n": len(values), "mean": m, "std": s, "values": values,
                        "bound": f"{op} {bound:g}{unit}", "met": met, "source": source,
                        "text": f"{fmt(m, s, spec)}{unit} (n={len(values)}) {op} {bound:g}{unit}: "
                                f"{'met' if met else 'missed'}"})

        if not p:
            continue
        goal("default PSNR - plain PSNR (dB)", paired(rows, "protocol", capture, "default", "reference", "test_psnr",
                                                       False), ">=", -0.1, " dB", "protocol")
        src = "solo" if solo and paired(rows, "solo", capture, "default", "reference", "loop_s", True) else "protocol"
        goal("default loop time / plain loop time", paired(rows, src, capture, "default", "reference", "loop_s", True),
             "<=", 0.8, "x", src + (" (uncontended)" if src == "solo" else " (the triplet shared the GPU)"))
        goal("default peak GPU memory / plain", paired(rows, "protocol", capture, "default", "reference",
                                                        "peak_cuda_memory_mb", True), "<=", 1.0, "x", "protocol")
        goal("quality PSNR - default PSNR (dB)", paired(rows, "protocol", capture, "quality", "default", "test_psnr",
                                                         False), ">", 0.0, " dB", "protocol")
    return out


def train_job_cost(seconds_per_step_h200: float, steps: int, *, overhead_s: float = 0.0,
                   factor: float = A10G_FACTOR, instance: str = A10G_INSTANCE) -> dict[str, float]:
    """SageMaker training cost of ``steps`` steps on ``instance`` from a seconds per step measured on an H200.

    ``overhead_s``: the job's seconds outside the loop (load, evaluation, export) as measured, plus the
    container start (:data:`SAGEMAKER_START_S`, not measured here). Billing is per second.
    """
    from spaceport.cloud.cost import PRICE_PER_HOUR_USD, stage_cost_usd

    loop_s = seconds_per_step_h200 * factor * steps
    billable = loop_s + overhead_s * factor + SAGEMAKER_START_S
    return {"instance": instance, "price_per_hour_usd": PRICE_PER_HOUR_USD[instance], "factor": factor,
            "steps": steps, "seconds_per_step_a10g": seconds_per_step_h200 * factor, "loop_s": loop_s,
            "billable_s": billable, "minutes": billable / 60, "cost_usd": stage_cost_usd(instance, billable)}


def _job(method: str, capture: str, steps: int, basis: str, sps: float, overhead: float, mem: float | None,
         concurrency: float | None, factor: float) -> dict[str, Any]:
    return {"method": method, "capture": capture, "steps": steps, "basis": basis, "concurrency_mean": concurrency,
            "peak_cuda_memory_mb": mem, "fits_a10g": None if mem is None else mem / 1024 < A10G_MEMORY_GIB * 0.9,
            "h200_seconds_per_step": sps,
            **{f"x{f:g}": train_job_cost(sps, steps, overhead_s=overhead, factor=f) for f in sorted({2.0, factor, 4.0})}}


def cost(rows: list[dict], factor: float, largest: str | None = None) -> dict[str, Any] | None:
    """The cost of a real job. A real job is the `default` preset's 7k steps (``quality``: 30k): from the
    solo runs of the largest capture where they finished, else its shared-GPU runs (an upper bound: the
    GPU was shared); and the 30k-step runs (finished: their loop; stopped: the loop so far plus the rest
    at the last 1000 steps' rate, also on a shared GPU)."""
    jobs = []
    for method in ("default", "quality"):
        for group in ("solo", "protocol"):
            done = [r for r in rows if r["group"] == group and r["capture"] == largest and r["method"] == method
                    and r["state"] == "finished"]
            if done:
                sps = statistics.fmean(r["loop_s"] / r["steps"] for r in done)
                overhead = statistics.fmean(r["total_s"] - r["loop_s"] for r in done)
                mem = max(r.get("peak_cuda_memory_mb") or 0 for r in done) or None
                conc = statistics.fmean(r.get("concurrency_mean") or 1 for r in done)
                basis = (f"{len(done)} {'solo' if group == 'solo' else 'shared-GPU'} run(s) of "
                         f"{done[0]['steps']} steps" + ("" if group == "solo" else f", {conc:.1f} processes: an upper bound"))
                jobs.append(_job(method, largest, done[0]["steps"], basis, sps, overhead, mem, conc, factor))
                break
    for r in rows:
        if r["group"] != "long" or r["method"] not in ("default", "quality"):
            continue
        if r["state"] == "finished":
            jobs.append(_job(r["method"], r["capture"], r["steps"], f"finished {r['steps']}-step run, shared GPU",
                             r["loop_s"] / r["steps"], max(0.0, r["total_s"] - r["loop_s"]),
                             r.get("peak_cuda_memory_mb"), r.get("concurrency_mean"), factor))
        elif r.get("loop_s_extrapolated"):
            basis = (f"stopped at step {r['steps_reached']}: {r['seconds_per_step_mean']:.4f} s/step so far, "
                     f"{r['seconds_per_step_recent']:.4f} over the last 1000, extrapolated to {r['steps']}; "
                     "shared GPU at low priority: an upper bound")
            jobs.append(_job(r["method"], r["capture"], r["steps"], basis, r["loop_s_extrapolated"] / r["steps"],
                             30.0, r.get("peak_cuda_memory_mb_so_far"), r.get("concurrency_mean"), factor))
    return {"factor": factor, "largest_capture": largest, "jobs": jobs} if jobs else None


def aws_row(job: dict[str, Any], factor: float) -> str:
    """docs/aws.md's Train row for ``job`` at ``factor``."""
    c = job[f"x{factor:g}"]
    return f"| Train | {c['instance']} | ${c['price_per_hour_usd']:.3f} | {c['minutes']:.0f} min | ${c['cost_usd']:.2f} |"


def _cell_line(c: dict[str, Any]) -> str:
    if not c["n"]:
        why = "; ".join(f"seed {x['seed']}: {x['state']} {x['note'] or ''}".strip() for x in c["not_finished"])
        return f"| {c['capture']} | {LABELS[c['method']]} | {c['steps']} | 0 | {why} |  |  |  |  |  |  |"
    conc = c["concurrency_mean"][0]
    util = c["gpu_util_mean"][0]
    return (f"| {c['capture']} | {LABELS[c['method']]} | {c['steps']} | {c['n']} "
            f"| {fmt(*c['test_psnr'], '.2f')} | {fmt(*c['test_ssim'], '.4f')} | {fmt(*c['num_gaussians'], ',.0f')} "
            f"| {fmt(*c['loop_s'], '.1f')} | {fmt(*c['total_s'], '.1f')} | {fmt(*c['peak_cuda_memory_mb'], '.0f')} "
            f"| {conc:.1f} ({c['concurrency_range'][0]}-{c['concurrency_range'][1]})"
            + (f", GPU {util:.0f}%" if util is not None else "") + " |")


def _num(v: Any, spec: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _long_line(r: dict[str, Any]) -> str:
    """A 30k-step run: finished (its numbers) or stopped (how far it got, the loop extrapolated)."""
    if r["state"] == "finished":
        return (f"| {r['capture']} | {LABELS[r['method']]} | finished | {r['steps']} | {_num(r['test_psnr'], '.2f')} "
                f"| {_num(r['num_gaussians'], ',')} | {_num(r['loop_s'] / r['steps'], '.4f')} "
                f"| {_num(r['loop_s'], '.0f')} | {_num(r.get('peak_cuda_memory_mb'), '.0f')} "
                f"| {_num(r.get('concurrency_mean'), '.1f')} |")
    return (f"| {r['capture']} | {LABELS[r['method']]} | {r['state']} | {r.get('steps_reached', 0)} | n/a "
            f"| {_num(r.get('num_gaussians'), ',')} | {_num(r.get('seconds_per_step_mean'), '.4f')}; "
            f"{_num(r.get('seconds_per_step_recent'), '.4f')} | {_num(r.get('loop_s_extrapolated'), '.0f')} "
            f"(extrapolated) | {_num(r.get('peak_cuda_memory_mb_so_far'), '.0f')} (so far) "
            f"| {_num(r.get('concurrency_mean'), '.1f')} |")


HEADER = ("| capture | method | steps | seeds | held-out PSNR (dB) | SSIM | Gaussians | loop s | whole run s "
          "| peak GPU MiB | processes sharing the GPU: mean (range) |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")


def render_md(rows: list[dict], notes: dict, protocol: dict, factor: float) -> tuple[str, dict[str, Any]]:
    settings = protocol.get("settings", {})
    steps = int(settings.get("steps") or 7000)
    caps = protocol.get("captures", {})
    env = next((r["env"] for r in rows if r.get("env")), {})
    proto, long_, solo = cells(rows, "protocol"), cells(rows, "long"), cells(rows, "solo")
    gl = goals(rows, list(caps), steps)
    largest = max(caps, key=lambda c: caps[c]["images"]) if caps else None
    co = cost(rows, factor, largest)
    lines = ["# GPU training benchmark: plain gsplat loop vs `default` vs `quality` (bench/gpu/run.sh)", ""]
    lines.append(f"Device: {env.get('gpu', 'no CUDA device')}"
                 + (f" ({env.get('gpu_memory_gib')} GiB, {env.get('sm_count')} SMs)" if env.get("gpu") else "")
                 + f"; torch {env.get('torch')}, CUDA {env.get('cuda')}, gsplat {env.get('gsplat')}, "
                   f"Python {env.get('python')}. Mode: {notes.get('mode', '?')}.")
    lines.append("")
    for key in ("nvidia_driver", "nvcc", "cpu_cores", "carry", "gsplat_recipe", "gsplat_build", "gpu_tests",
                "oom", "mps"):
        if key in notes:
            lines.append(f"- {key.replace('_', ' ')}: {notes[key]}")
    lines += ["", "Captures (every real capture with at least 8 images; images at their own size, the "
                  "`default` preset's downscale 1; every 8th image held out, every 4th under 16 images):", ""]
    for name, c in caps.items():
        cell = next((x for x in proto if x["capture"] == name and x["n"]), None)
        size = f", {cell['width']}x{cell['height']}, {cell['train_images']} training / {cell['test_images']} " \
               f"held-out ({', '.join(cell['held_out'] or [])})" if cell else ""
        lines.append(f"- `{name}`: {c['images']} images, every {c['test_every']}th held out{size}")
    lines += ["", f"## {steps:,} steps, seeds {settings.get('seeds')}: mean ± std over the seeds that finished",
              "", HEADER, *(_cell_line(c) for c in proto), ""]
    lines.append("Loop s: the optimisation loop (wall clock, synchronised); whole run s: the worker process from "
                 "start to result (imports, image loading, CUDA start, loop, held-out evaluation and, for ours, "
                 "export). Runs shared the GPU (see the last column: training processes alive, sampled every "
                 "second over each run's life, with nvidia-smi's utilisation), so their times are not solo "
                 "times; the three methods of one (capture, seed) always started together.")
    if solo:
        lines += ["", "## Solo: one method at a time, nothing else on the GPU", "", HEADER,
                  *(_cell_line(c) for c in solo)]
    long_rows = [r for r in rows if r["group"] == "long"]
    if long_rows:
        lines += ["", "## 30k steps", "", "| capture | method | state | steps reached | held-out PSNR | Gaussians "
                  "| s/step (mean; last 1000) | loop s (extrapolated to the end if stopped) | peak GPU MiB "
                  "| processes sharing the GPU |", "|---|---|---|---:|---:|---:|---|---:|---:|---:|"]
        for r in long_rows:
            lines.append(_long_line(r))
    lines += ["", "## Goals (seed by seed on the same capture; mean ± std of the per-seed differences or ratios)", ""]
    lines += [f"- {g['capture']}: {g['goal']}: {g['text']} [{g['source']}]" for g in gl] or ["- No finished pair."]
    if co:
        lines += ["", f"## Cost of a real training job on {A10G_INSTANCE} (A10G)", "",
                  f"H200 seconds per step times a stated factor ({factor:g}x; 2x and 4x beside it; not measured, "
                  f"see bench/gpu/report.py A10G_FACTOR), plus {SAGEMAKER_START_S:.0f} s of container start, at "
                  f"spaceport/cloud/cost.py's price. Memory must stay under the A10G's {A10G_MEMORY_GIB:g} GiB.", "",
                  "| method | capture | steps | basis | H200 s/step | A10G minutes (2x / factor / 4x) "
                  "| cost USD (2x / factor / 4x) | peak GPU MiB | fits 24 GiB |", "|---|---|---:|---|---:|---|---|---:|---|"]
        for j in co["jobs"]:
            keys = [f"x{f:g}" for f in sorted({2.0, factor, 4.0})]
            minutes = " / ".join(f"{j[k]['minutes']:.1f}" for k in keys)
            usd = " / ".join(f"{j[k]['cost_usd']:.2f}" for k in keys)
            lines.append(f"| {LABELS[j['method']]} | {j['capture']} | {j['steps']} | {j['basis']} "
                         f"| {j['h200_seconds_per_step']:.4f} | {minutes} | {usd} | {_num(j['peak_cuda_memory_mb'], '.0f')} "
                         f"| {j['fits_a10g']} |")
        real = next((j for j in co["jobs"] if j["method"] == "default" and j["steps"] < 30000), None)
        if real:
            lines += ["", f"docs/aws.md's Train row for a `default` job ({real['steps']} steps, {real['capture']}, "
                          f"{real['basis']}, factor {factor:g}):", "", aws_row(real, factor)]
    skipped = [r for r in protocol.get("runs", []) if r.get("state") in ("skipped", "planned")]
    if skipped:
        lines += ["", f"Not run ({len(skipped)}): " + "; ".join(f"{r['id']} ({r.get('note') or r['state']})"
                                                              for r in skipped)]
    data = {"notes": notes, "env": env, "settings": settings, "captures": caps, "cells": proto, "solo": solo,
            "long": long_, "goals": gl, "cost": co, "runs": rows}
    return "\n".join(lines) + "\n", data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="The fetched $OUT of the device call")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "gpu.json")
    ap.add_argument("--md", type=Path, default=ROOT / "bench" / "results" / "gpu.md")
    ap.add_argument("--a10g-factor", type=float, default=A10G_FACTOR)
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    rows, notes, protocol = load(a.out)
    md, data = render_md(rows, notes, protocol, a.a10g_factor)
    a.md.write_text(md)
    a.json.write_text(json.dumps(data, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
