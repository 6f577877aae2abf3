"""Training to a time budget on the CPU: the plan is printed before the first step, it decides the
options, the loop stops at the deadline, and metrics.json says what was planned."""

from __future__ import annotations

import json

from spaceport.core.summaries import TrainMetrics, read_summary
from spaceport.stages.train.config import config_for

SMALL = {"model_dir": "gt/sparse/0"}


def _events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_budget_plans_from_a_calibration_and_says_so_first(scene, tmp_path, capsys, monkeypatch):
    from spaceport.stages.train.trainer import train

    monkeypatch.setenv("SPACEPORT_LOG_FORMAT", "json")
    cfg = config_for("fast", {**SMALL, "minutes": "0.3"})
    train(scene, tmp_path / "out", cfg)
    events = _events(capsys.readouterr().out)
    phases = [e.get("phase") for e in events]
    first_step = next(i for i, e in enumerate(events) if "step" in e and "loss" in e)
    plan_at = phases.index("plan")
    assert "calibrate" in phases[:plan_at] and plan_at < first_step  # measured, then announced, then trained
    plan = events[plan_at]
    # The 160x120 scene is already at the coarsest size a budget trains at: full resolution only.
    assert plan["downscale"] == 1 and (plan["width"], plan["height"]) == (160, 120)
    # (Not compared with the 18 s budget: on a busy shared machine calibration alone can take longer.)
    assert plan["expected_s"] > 0 and plan["steps"] >= 1
    metrics = read_summary(TrainMetrics, tmp_path / "out" / "metrics.json")
    assert metrics.budget is not None and metrics.budget.minutes == 0.3
    assert metrics.budget.planned_steps == plan["steps"] and metrics.budget.expected_s == plan["expected_s"]
    assert int(metrics.config["steps"]) == plan["steps"]
    assert int(metrics.config["max_gaussians"]) == plan["max_gaussians"]
    # Every step of the schedule ran (the plan's, or the count a re-fit to the measured pace chose,
    # announced as a refit event), or the deadline cut the loop short; the record says which.
    refits = [e for e in events if e.get("phase") == "refit"]
    final_steps = refits[-1]["steps"] if refits else plan["steps"]
    assert metrics.budget.refitted_steps == (final_steps if refits else None)
    assert metrics.steps == final_steps or metrics.budget.stopped_at_deadline
    assert metrics.test_psnr > 10


def _optimistic_calibration(monkeypatch) -> None:
    """A calibration that claims 1 ms a step: the plan asks for thousands of steps."""
    from spaceport.stages.train import budget, calibrate

    fake = budget.Probe(1, 160, 120, fixed_s=0.001, per_gaussian_s=0.0)
    # (as many photos as the plan needs for EPOCHS passes not to bound it)
    monkeypatch.setattr(calibrate, "calibrate", lambda *a, **k: ([fake], budget.Capture(2100, 3, 2000), 1))


def test_a_faster_pace_never_extends_the_run_past_epochs_passes(scene, tmp_path, capsys, monkeypatch):
    """A calibration that claims 3 s a step plans a handful of steps; the pace then measured would fit
    thousands, so a re-fit extends the run, but never past EPOCHS passes over the 21 training photos (3
    here): the run ends there, before its budget."""
    from spaceport.stages.train import budget, calibrate, trainer
    from spaceport.stages.train.trainer import train

    monkeypatch.setenv("SPACEPORT_LOG_FORMAT", "json")
    slow = budget.Probe(1, 160, 120, fixed_s=3.0, per_gaussian_s=0.0)
    monkeypatch.setattr(calibrate, "calibrate", lambda *a, **k: ([slow], budget.Capture(21, 3, 2000), 1))
    monkeypatch.setattr(budget, "EPOCHS", 3)
    monkeypatch.setattr(budget, "steps_that_fit", lambda done, left, step_s: 10_000)  # a very fast pace
    monkeypatch.setattr(trainer, "REFIT_EVERY", 0.001)  # looked at every 0.12 s
    train(scene, tmp_path / "out", config_for("fast", {**SMALL, "minutes": "2"}))
    events = _events(capsys.readouterr().out)
    plan = next(e for e in events if e.get("phase") == "plan")
    refits = [e for e in events if e.get("phase") == "refit"]
    assert plan["steps"] < 63 and [e["steps"] for e in refits] == [63]
    metrics = read_summary(TrainMetrics, tmp_path / "out" / "metrics.json")
    assert metrics.steps == 63 and not metrics.budget.stopped_at_deadline


def test_a_schedule_planned_too_long_is_refitted_to_the_pace_and_anneals_by_the_deadline(
        scene, tmp_path, capsys, monkeypatch):
    from spaceport.stages.train.trainer import train

    monkeypatch.setenv("SPACEPORT_LOG_FORMAT", "json")
    _optimistic_calibration(monkeypatch)
    train(scene, tmp_path / "out", config_for("fast", {**SMALL, "minutes": "0.4"}))
    events = _events(capsys.readouterr().out)
    plan = next(e for e in events if e.get("phase") == "plan")
    refits = [e for e in events if e.get("phase") == "refit"]
    assert refits and refits[0]["steps"] < plan["steps"] / 4  # the real pace is far slower than 1 ms a step
    metrics = read_summary(TrainMetrics, tmp_path / "out" / "metrics.json")
    assert metrics.budget is not None and metrics.budget.refitted_steps == refits[-1]["steps"]
    # The loop ran its re-fitted schedule (or all but its last few steps, cut by the deadline):
    # not a tenth of the plan, broken off mid-refinement.
    assert metrics.steps >= 0.8 * refits[-1]["steps"]
    assert (tmp_path / "out" / "splat.ply").is_file()


def test_the_deadline_stops_the_loop_and_the_splat_is_still_written(scene, tmp_path, capsys, monkeypatch):
    from spaceport.stages.train import trainer
    from spaceport.stages.train.trainer import train

    monkeypatch.setenv("SPACEPORT_LOG_FORMAT", "json")
    _optimistic_calibration(monkeypatch)
    monkeypatch.setattr(trainer, "refit_steps", lambda *a, **k: None)  # no re-fit: only the deadline ends the loop
    train(scene, tmp_path / "out", config_for("fast", {**SMALL, "minutes": "0.2"}))
    events = _events(capsys.readouterr().out)
    plan = next(e for e in events if e.get("phase") == "plan")
    stop = next(e for e in events if e.get("phase") == "deadline")
    metrics = read_summary(TrainMetrics, tmp_path / "out" / "metrics.json")
    assert metrics.budget is not None and metrics.budget.stopped_at_deadline and metrics.stopped_early
    assert metrics.steps == stop["step"] < plan["steps"]
    assert (tmp_path / "out" / "splat.ply").is_file()


def test_a_long_fixed_run_on_the_cpu_prints_its_estimate_first(scene, tmp_path, capsys, monkeypatch):
    from spaceport.stages.train import trainer

    monkeypatch.setenv("SPACEPORT_LOG_FORMAT", "json")
    monkeypatch.setattr(trainer, "ESTIMATE_ABOVE_STEPS", 20)
    trainer.train(scene, tmp_path / "out", config_for("fast", {**SMALL, "steps": "30", "log_every": "10"}))
    events = _events(capsys.readouterr().out)
    est = next(i for i, e in enumerate(events) if e.get("phase") == "estimate")
    first_step = next(i for i, e in enumerate(events) if "step" in e and "loss" in e)
    assert est < first_step
    assert events[est]["steps"] == 30 and events[est]["expected_s"] > 0 and "--minutes" in events[est]["hint"]


def test_the_calibration_grows_the_points_as_refinement_does_not_in_opaque_stacks():
    """The probe with GROWTH times the points must cost what a refined splat does: copies drawn
    around each point within its size (smaller Gaussians, like split ones), not stacked in place,
    where early termination made the bigger probe cheaper than the small one."""
    import numpy as np

    from spaceport.stages.train.calibrate import GROWTH, _grown
    from spaceport.stages.train.gaussians import knn_scale

    rng = np.random.default_rng(0)
    xyz = rng.uniform(-1, 1, size=(500, 3))
    grown = _grown(xyz, np.random.default_rng(1))
    assert grown.shape == (GROWTH * 500, 3)
    spread = knn_scale(xyz)
    offsets = np.linalg.norm(grown.reshape(GROWTH, 500, 3) - xyz[None], axis=-1)
    assert np.median(offsets / spread[None]) > 0.5  # spread out around each point, not in place
    assert np.median(offsets / spread[None]) < 3.0  # but within its own size
    assert np.median(knn_scale(grown)) < 0.8 * np.median(spread)  # so the Gaussians made from them are smaller
