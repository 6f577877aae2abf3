"""How well the budget plan's cost model matches the runs it planned: the Gaussian count's growth and
the per-Gaussian step cost, read back from the logs of ``bench/train_budget.py``'s runs of ours.

For each ``<capture>/ours_<minutes>.log`` under ``--work`` whose schedule was not re-fitted part-way:

- the measured mean Gaussian count over the run: the count of each progress line, changed at the
  refinement round inside the interval it was first seen in (:meth:`Refinement.rounds`, one per
  interval at most), against the plan's model (:meth:`Refinement.counts`, the
  plan's steps, start and cap) and against the linear growth to the cap over refinement the plan
  used before;
- the per-Gaussian cost of a step: the calibration's probe at the plan's resolution (the line through
  the fresh Gaussians and four times as many grown ones), against the run's own (the seconds a step
  took in its first and last quarters, over the counts then);
- the loop's seconds the plan's model expects, with the probe, against the loop's measured seconds.

    python bench/train_growth.py [--work /tmp/spaceport-bench-budget] [--out bench/results/train_growth.md]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from machine import cpu_model, mem_gib, write_table

from spaceport.stages.train.budget import REFINE_STOP, Probe, Refinement


def events(log: Path) -> list[dict]:
    return [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]


def measured_counts(lines: list[dict], refine: Refinement, start: int, steps: int) -> list[tuple[int, float]]:
    """(steps, count) runs of the run as it went: each progress line's count from the round in the
    interval before it (or from that interval's end where no round falls in it)."""
    runs, at, count = [], 0, float(start)
    for e in lines:
        step, seen = e["step"], float(e["num_gaussians"])
        if seen != count:
            rounds = refine.rounds(at, step)
            change = (rounds[-1] + 1) if rounds else step
            runs.append((change - at, count))
            at, count = change, seen
    runs.append((steps - at, count))
    return [(n, c) for n, c in runs if n > 0]


def mean(runs: list[tuple[int, float]]) -> float:
    return sum(n * c for n, c in runs) / max(1, sum(n for n, _ in runs))


def rate(lines: list[dict]) -> tuple[float, float]:
    """Seconds a step and mean count between the first and last of ``lines``."""
    a, b = lines[0], lines[-1]
    return (b["t"] - a["t"]) / max(1, b["step"] - a["step"]), sum(e["num_gaussians"] for e in lines) / len(lines)


def analyse(log: Path) -> dict | None:
    ev = events(log)
    plan = next((e for e in ev if e.get("phase") == "plan"), None)
    lines = [e for e in ev if "step" in e and "eta_s" in e]
    if plan is None or len(lines) < 8 or any(e.get("phase") == "refit" for e in ev):
        return None  # a re-fitted run's refinement changed part-way: not the plan's model to compare
    cal = next(e for e in ev if e.get("phase") == "calibrate" and e.get("downscale") == plan["downscale"])
    n0 = cal["gaussians"]
    per = max(0.0, (cal["step_s_4x"] - cal["step_s"]) / (3 * n0))
    probe = Probe(plan["downscale"], plan["width"], plan["height"], max(cal["step_s"] - per * n0, 0.2 * cal["step_s"]), per)
    steps, cap = plan["steps"], plan["max_gaussians"]
    refine = Refinement.for_steps(steps)
    measured = measured_counts(lines, refine, n0, steps)
    model = refine.counts(0, n0, cap, steps)
    linear = REFINE_STOP * (n0 + cap) / 2 + (1 - REFINE_STOP) * cap
    q = max(2, len(lines) // 4)
    (r0, c0), (r1, c1) = rate(lines[:q]), rate(lines[-q:])
    own = (r1 - r0) / (c1 - c0) if c1 > c0 else float("nan")
    first = lines[0]
    loop_s = lines[-1]["t"] - first["t"] + first["step"] * r0  # the lines start after the first steps
    return {"run": f"{log.parent.name} {log.stem.split('_')[1]} min", "size": f"{plan['width']}x{plan['height']}",
            "steps": steps, "start": n0, "cap": cap, "measured": mean(measured), "model": mean(model), "linear": linear,
            "probe_us": per * 1e6, "own_us": own * 1e6, "loop_s": loop_s,
            "model_loop_s": refine.seconds(probe, 0, n0, cap, steps), "linear_loop_s": steps * probe.step_seconds(linear)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/spaceport-bench-budget"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_growth.md")
    args = ap.parse_args()
    rows = [r for log in sorted(args.work.glob("*/ours_*.log")) if (r := analyse(log))]
    lines = ["# The budget plan's cost model against its runs", "",
             f"Machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {mem_gib():.0f} GiB. "
             f"Command: `python bench/train_growth.py --work {args.work}` (logs of `bench/train_budget.py`).", "",
             "| run | size | steps | start | cap | mean count measured | model (x measured) | linear (x measured) "
             "| per-Gaussian µs: probe | the run's own | loop s measured | model | linear |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        m = r["measured"]
        lines.append(f"| {r['run']} | {r['size']} | {r['steps']} | {r['start']} | {r['cap']} | {m:,.0f} | "
                     f"{r['model']:,.0f} ({r['model'] / m:.2f}) | {r['linear']:,.0f} ({r['linear'] / m:.2f}) | "
                     f"{r['probe_us']:.2f} | {r['own_us']:.2f} | {r['loop_s']:.0f} | {r['model_loop_s']:.0f} | "
                     f"{r['linear_loop_s']:.0f} |")
    write_table(lines, args.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
