"""The CPU-testable parts of the GPU bench (bench/gpu): the plain gsplat reference loop at toy size through
the CPU rasterizer, the protocol's schedule and stopped-run arithmetic, the report and cost arithmetic,
the carried model's slimming, and the settings run.sh uses to run out of memory on purpose. The device
call itself is bench/gpu/run.sh (rehearsed on CPU with DRY_RUN=1)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

GPU_BENCH = Path(__file__).resolve().parents[3] / "bench" / "gpu"


def _load(name: str):
    sys.path.insert(0, str(GPU_BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"gpu_bench_{name}", GPU_BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(GPU_BENCH))


protocol = _load("protocol")
reference = _load("reference")
report = _load("report")
prepare = _load("prepare")


# ------------------------------------------------------------------------------------------- reference loop


def test_reference_loop_learns_on_cpu(scene):
    """simple_trainer's loop at 80x60 through the CPU rasterizer: 40 steps beat 1 step (measured +0.85 dB;
    no sky points in this loop, so the scene's bright background stays hard to reach this early)."""
    kw = {"model_dir": "gt/sparse/0", "downscale": 2, "device": "cpu"}
    one = reference.train_reference(scene, 1, **kw)
    many = reference.train_reference(scene, 40, **kw)
    assert one["device"] == "cpu" and one["peak_cuda_memory_mb"] is None
    assert (many["width"], many["height"], many["test_images"]) == (80, 60, 3)  # 24 views, every 8th held out
    assert many["num_gaussians"] == one["num_gaussians"] > 1000  # no densification before step 500
    assert math.isfinite(many["test_psnr"]) and many["test_psnr"] > one["test_psnr"] + 0.5
    assert 0.0 < many["test_ssim"] <= 1.0 and many["loop_s"] > 0


def test_reference_seed_and_held_out_rule(scene, capsys):
    """The seed reaches the random quaternions and the image order; test_every picks the held-out views;
    progress lines say how far the loop got."""
    kw = {"model_dir": "gt/sparse/0", "downscale": 4, "device": "cpu", "log_every": 2}
    a = reference.train_reference(scene, 4, seed=0, test_every=4, **kw)
    b = reference.train_reference(scene, 4, seed=1, test_every=4, **kw)
    again = reference.train_reference(scene, 4, seed=0, test_every=4, **kw)
    assert a["test_images"] == 6 and a["held_out"][:2] == ["view_000.png", "view_004.png"]  # 24 views, every 4th
    assert a["seed"] == 0 and b["seed"] == 1
    assert a["test_psnr"] == again["test_psnr"] != b["test_psnr"]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("stage=reference")]
    assert [line.split()[1] for line in lines[:2]] == ["step=2", "step=4"]


def test_init_matches_simple_trainer():
    """RMS distance to the 3 nearest points; random quaternions; opacity 0.1; SH0 from the colours."""
    import numpy as np
    import torch

    xyz = np.array([[0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 3], [5, 5, 5]], dtype=float)
    rgb = np.full((5, 3), 255, dtype=np.uint8)
    splats, opts = reference.create_splats(xyz, rgb, 2.0, torch.device("cpu"))
    expected0 = math.sqrt((1 + 4 + 9) / 3)
    assert float(torch.exp(splats["scales"][0, 0].detach())) == pytest.approx(expected0, rel=1e-5)
    assert float(torch.sigmoid(splats["opacities"][0].detach())) == pytest.approx(0.1)
    assert float(splats["sh0"][0, 0, 0].detach()) == pytest.approx(0.5 / 0.28209479177387814)
    assert splats["shN"].shape == (5, 15, 3) and not splats["shN"].any()
    assert opts["means"].param_groups[0]["lr"] == pytest.approx(1.6e-4 * 2.0)
    assert opts["shN"].param_groups[0]["lr"] == pytest.approx(2.5e-3 / 20)


# ------------------------------------------------------------------------------------------------ protocol


def test_held_out_rule_and_arguments(tmp_path):
    assert [protocol.held_out_every(n) for n in (8, 11, 15, 16, 23)] == [4, 4, 4, 8, 8]
    small = tmp_path / "small" / "images"
    small.mkdir(parents=True)
    for i in range(7):
        (small / f"{i}.jpg").write_bytes(b"")
    with pytest.raises(SystemExit):  # under 8 images: not part of the protocol
        protocol.parse_args(["--capture", f"s={small.parent}", "--out", str(tmp_path / "o")])
    (small / "7.jpg").write_bytes(b"")
    a = protocol.parse_args(["--capture", f"s={small.parent}", "--out", str(tmp_path / "o"), "--seeds", "0,2"])
    assert a.seeds == [0, 2] and a.methods == ["reference", "default", "quality"] and a.slots == 6
    assert a.captures == [("s", str(small.parent))] and a.logs == tmp_path / "o" / "logs"
    for bad in (["--slots", "2"], ["--methods", "mcmc"], ["--seeds", "x"]):
        with pytest.raises(SystemExit):
            protocol.parse_args(["--capture", f"s={small.parent}", "--out", str(tmp_path / "o"), *bad])


def test_ours_runs_the_spaceport_command_with_only_the_protocol_settings():
    argv = protocol.ours_argv("quality", Path("/s"), Path("/o"), 7000, 2, 4, 1, "cuda")
    assert argv[:4] == ["train", "/s", "--out", "/o"]
    opts = dict(zip(argv[4::2], argv[5::2], strict=True))
    assert opts == {"--preset": "quality", "--steps": "7000", "--seed": "2", "--test-every": "4", "--downscale": "1",
                    "--device": "cuda", "--checkpoint-every": "0", "--log-every": "100"}
    from spaceport.cli import cli

    train = cli.get_command(None, "train")
    flags = {opt for p in train.params for opt in p.opts}
    assert set(opts) <= flags  # every flag exists on `spaceport train`


def test_stopped_run_reports_how_far_it_got(tmp_path):
    log = tmp_path / "run.log"
    lines = ['{"stage": "train", "t": 100.0, "phase": "load", "seconds": 2}', "some warning text"]
    lines += [json.dumps({"stage": "train", "t": 100.0 + 0.01 * s + (0.01 * (s - 2000) if s > 2000 else 0),
                          "step": s, "num_gaussians": 1000 + s}) for s in range(100, 3100, 100)]
    log.write_text("\n".join(lines) + "\n")
    points = protocol.read_progress(log)
    assert len(points) == 30 and points[0]["step"] == 100 and points[-1]["num_gaussians"] == 4000
    row = protocol.partial_row(points, 30000)
    assert row["steps_reached"] == 3000 and row["num_gaussians"] == 4000
    assert row["seconds_per_step_recent"] == pytest.approx(0.02)  # steps 2000-3000 run at 20 ms
    assert row["seconds_per_step_mean"] == pytest.approx((140.0 - 101.0) / 2900)
    loop_to_3000 = row["seconds_per_step_mean"] * 3000
    assert row["loop_s_extrapolated"] == pytest.approx(loop_to_3000 + 0.02 * 27000)
    assert protocol.partial_row([], 30000) == {"steps_reached": 0}


def _scheduler(tmp_path, monkeypatch, captures=("a", "b"), seeds="0,1", slots=6, deadline_in=1000.0):
    """A scheduler whose runs only pretend to start; capture b has twice a's pixels per image."""
    import time

    from PIL import Image

    args = []
    for name in captures:
        (tmp_path / name / "images").mkdir(parents=True)
        for i in range(20 if name == "a" else 10):
            Image.new("RGB", (32, 16 if name == "a" else 32)).save(tmp_path / name / "images" / f"{i:02d}.jpg")
        args += ["--capture", f"{name}={tmp_path / name}"]
    a = protocol.parse_args([*args, "--out", str(tmp_path / "out"), "--seeds", seeds, "--slots", str(slots),
                             "--deadline", str(time.time() + deadline_in)])
    sched = protocol.Scheduler(a)
    started = []

    def fake_start(run, nice=0, low_priority=False):
        run.state, run.started = "running", time.time()
        sched.running[run.id] = (run, None)
        started.append(run.id)

    monkeypatch.setattr(sched, "start", fake_start)
    return sched, started


def test_schedule_starts_each_capture_once_then_fits_triplets_by_estimate(tmp_path, monkeypatch):
    sched, started = _scheduler(tmp_path, monkeypatch)
    assert [r.test_every for r in sched.triplets[0]] == [8, 8, 8] and sched.triplets[1][0].test_every == 4
    assert [(t[0].capture, t[0].seed) for t in sched.queue] == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    sched.admit()
    assert started == [f"protocol-{c}-{m}-s0-7000" for c in "ab" for m in ("reference", "default", "quality")]
    sched.running.clear()  # both triplets done; a frees its slots but has no estimate yet for b
    sched.wall.update({("a", m): 500.0 for m in protocol.METHODS})
    sched.wall.update({("b", m): 2000.0 for m in protocol.METHODS})  # longer than the 1000 s left
    sched.admit()
    assert started[6:] == [f"protocol-a-{m}-s1-7000" for m in ("reference", "default", "quality")]
    assert [(t[0].capture, t[0].seed) for t in sched.queue] == [("b", 1)]  # does not fit: left in the queue


def test_estimate_scales_another_captures_time_by_pixels(tmp_path, monkeypatch):
    sched, started = _scheduler(tmp_path, monkeypatch, slots=3)  # one triplet at a time
    sched.admit()
    assert len(started) == 3 and sched.estimate(sched.queue[0]) is None  # b: nothing has finished yet
    sched.running.clear()
    sched.wall.update({("a", "reference"): 100.0, ("a", "default"): 80.0, ("a", "quality"): 90.0})
    assert [(t[0].capture, t[0].seed) for t in sched.queue][:1] == [("b", 0)]
    assert sched.estimate(sched.queue[0]) == pytest.approx(200.0)  # a's slowest, twice the pixels
    sched.deadline = __import__("time").time() + 150  # b's 200 s no longer fit; a's seed 1 (100 s) does
    sched.admit()
    assert started[3:] == [f"protocol-a-{m}-s1-7000" for m in ("reference", "default", "quality")]


def test_schedule_waits_for_a_captures_first_triplet_before_its_next(tmp_path, monkeypatch):
    sched, started = _scheduler(tmp_path, monkeypatch, captures=("a",), seeds="0,1,2", slots=9)
    sched.admit()
    assert len(started) == 3  # seed 1 of the same capture waits for seed 0's time
    del sched.running[started[0]]
    sched.wall[("a", "reference")] = 100.0  # one method finished: still no estimate for the triplet
    sched.admit()
    assert len(started) == 3
    assert sched.estimate(sched.queue[0]) is None


def test_solo_estimate_divides_by_the_concurrency_it_ran_under(tmp_path, monkeypatch):
    sched, _ = _scheduler(tmp_path, monkeypatch, captures=("a",), seeds="0")
    sched.a.solo_capture = "a"
    sched.solo = [sched._run("a", m, 0, 7000, "solo") for m in protocol.METHODS]
    assert sched.solo_estimate() is None
    sched.rows = [{"capture": "a", "method": m, "group": "protocol", "state": "finished", "wall_s": 300.0,
                   "concurrency_mean": 6.0} for m in protocol.METHODS]
    assert sched.solo_estimate() == pytest.approx(3 * 300.0 / 6.0 * 1.5)


@pytest.mark.slow
def test_protocol_on_cpu_writes_rows_as_runs_end(scene, tmp_path):
    """Two tiny captures, one seed, the plain loop and `default` in parallel, a long run stopped at the
    deadline: every row lands in runs.jsonl with its concurrency, and the report renders them."""
    import shutil
    import time

    cap = tmp_path / "one"  # an SfM output's layout: sparse/0 beside images/
    shutil.copytree(scene / "images", cap / "images")
    shutil.copytree(scene / "gt" / "sparse" / "0", cap / "sparse" / "0")
    out = tmp_path / "out"
    rc = protocol.main(["--capture", f"one={cap}", "--out", str(out), "--work", str(tmp_path / "w"),
                        "--steps", "3", "--seeds", "0", "--methods", "reference,default", "--slots", "2",
                        "--device", "cpu", "--downscale", "4", "--log-every", "1", "--long-capture", "one",
                        "--long-steps", "100000", "--long-methods", "default", "--poll-s", "0.2",
                        "--deadline", str(time.time() + 150)])
    assert rc == 0
    rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    by = {r["id"]: r for r in rows}
    for m in ("reference", "default"):
        r = by[f"protocol-one-{m}-s0-3"]
        assert r["state"] == "finished" and r["steps"] == 3 and r["test_images"] == 3 and math.isfinite(r["test_psnr"])
        assert 1 <= r["concurrency_min"] <= r["concurrency_mean"] <= r["concurrency_max"] <= 3
    long_run = by["long-one-default-s0-100000"]
    assert long_run["state"] == "stopped" and 0 < long_run["steps_reached"] < 100000
    assert long_run["loop_s_extrapolated"] > 0
    state = json.loads((out / "protocol.json").read_text())
    assert {r["state"] for r in state["runs"]} == {"finished", "stopped"}
    rows, notes, prot = report.load(out)
    md, _ = report.render_md(rows, notes, prot, report.A10G_FACTOR)
    assert "| one | plain gsplat loop | 3 | 1 |" in md and "stopped" in md


# -------------------------------------------------------------------------------------------------- report


def _row(capture, method, seed, psnr, loop, mem, group="protocol", steps=7000, state="finished", **kw):
    return {"id": f"{group}-{capture}-{method}-s{seed}-{steps}", "capture": capture, "method": method, "seed": seed,
            "steps": steps, "group": group, "state": state, "note": "", "test_psnr": psnr, "test_ssim": 0.8,
            "num_gaussians": 1000, "loop_s": loop, "total_s": None if loop is None else loop + 10,
            "seconds_per_step": None if loop is None else loop / steps,
            "peak_cuda_memory_mb": mem, "width": 1536, "height": 1023, "train_images": 8, "test_images": 3,
            "held_out": ["0000.jpg", "0004.jpg", "0008.jpg"], "concurrency_mean": 9.0, "concurrency_min": 8,
            "concurrency_max": 11, "gpu_util_mean": 97.0,
            "env": {"gpu": "NVIDIA H200", "gpu_memory_gib": 139.8, "sm_count": 132, "torch": "2.11.0",
                    "cuda": "13.0", "gsplat": "1.5.3", "python": "3.12.3"}, **kw}


def test_cells_and_goals_are_seed_paired():
    rows = []
    for seed, (ref, ours, mcmc) in enumerate([(25.0, 25.2, 26.0), (25.4, 25.1, 25.9), (24.8, 24.9, 25.0)]):
        rows += [_row("f", "reference", seed, ref, 100.0, 1000.0), _row("f", "default", seed, ours, 70.0, 990.0),
                 _row("f", "quality", seed, mcmc, 90.0, 800.0)]
    rows.append(_row("f", "quality", 3, float("nan"), 1.0, 1.0, state="stopped"))
    cells = {c["method"]: c for c in report.cells(rows, "protocol")}
    m, s = cells["reference"]["test_psnr"]
    assert m == pytest.approx(25.0667, abs=1e-4) and s == pytest.approx(0.3055, abs=1e-4)
    assert cells["quality"]["n"] == 3 and cells["quality"]["not_finished"][0]["state"] == "stopped"
    g = {x["goal"]: x for x in report.goals(rows, ["f"], 7000)}
    d = g["default PSNR - plain PSNR (dB)"]
    assert d["values"] == pytest.approx([0.2, -0.3, 0.1]) and d["mean"] == pytest.approx(0.0) and d["met"]
    assert g["default loop time / plain loop time"]["mean"] == pytest.approx(0.7) and "shared" in \
        g["default loop time / plain loop time"]["source"]
    assert g["default peak GPU memory / plain"]["met"] and g["quality PSNR - default PSNR (dB)"]["met"]
    rows = [r for r in rows if r["method"] != "default" or r["seed"] != 1]  # seed 1 of default missing
    assert report.paired(rows, "protocol", "f", "default", "reference", "test_psnr", False) == pytest.approx([0.2, 0.1])


def test_loop_time_goal_prefers_the_solo_triplet():
    rows = [_row("f", "reference", 0, 25.0, 100.0, 1000.0), _row("f", "default", 0, 25.0, 95.0, 1000.0),
            _row("f", "reference", 0, 25.0, 40.0, 1000.0, group="solo"),
            _row("f", "default", 0, 25.0, 36.0, 1000.0, group="solo")]
    g = {x["goal"]: x for x in report.goals(rows, ["f"], 7000)}
    t = g["default loop time / plain loop time"]
    assert t["mean"] == pytest.approx(0.9) and not t["met"] and t["source"] == "solo (uncontended)"
    assert "0.90x (n=1) <= 0.8x: missed" in t["text"]


def test_train_job_cost():
    c = report.train_job_cost(0.01, 30000, overhead_s=20.0, factor=2.5)
    assert c["seconds_per_step_a10g"] == pytest.approx(0.025) and c["loop_s"] == pytest.approx(750.0)
    assert c["billable_s"] == pytest.approx(750.0 + 50.0 + report.SAGEMAKER_START_S)
    assert c["cost_usd"] == pytest.approx(1.515 * c["billable_s"] / 3600, abs=1e-4)


def test_report_renders_stopped_long_runs_and_cost(tmp_path):
    rows = [_row("m", "reference", 0, 25.0, 100.0, 1000.0), _row("m", "default", 0, 25.3, 70.0, 990.0),
            _row("m", "default", 0, None, None, None, group="long", steps=30000, state="stopped",
                 steps_reached=12000, num_gaussians=900000, seconds_per_step_mean=0.03,
                 seconds_per_step_recent=0.04, loop_s_extrapolated=1080.0, peak_cuda_memory_mb_so_far=3000.0),
            _row("m", "quality", 0, 26.0, 600.0, 2000.0, group="long", steps=30000)]
    (tmp_path / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "notes.json").write_text(json.dumps({"mode": "device", "oom": "passed: exit 2"}))
    (tmp_path / "protocol.json").write_text(json.dumps({
        "settings": {"steps": 7000, "seeds": [0, 1, 2]}, "captures": {"m": {"images": 23, "test_every": 8}},
        "runs": [{"id": "protocol-m-quality-s0-7000", "state": "skipped", "note": "would not finish"}]}))
    assert report.main([str(tmp_path), "--json", str(tmp_path / "g.json"), "--md", str(tmp_path / "g.md")]) == 0
    md = (tmp_path / "g.md").read_text()
    assert "Device: NVIDIA H200 (139.8 GiB, 132 SMs)" in md and "- oom: passed: exit 2" in md
    assert "| m | `default` | stopped | 12000 | n/a | 900,000 | 0.0300; 0.0400 | 1080 (extrapolated) | 3000 (so far)" in md
    assert "| m | `quality` (MCMC) | finished | 30000 | 26.00 |" in md
    assert "protocol-m-quality-s0-7000 (would not finish)" in md
    data = json.loads((tmp_path / "g.json").read_text())
    jobs = {(j["method"], j["steps"]): j for j in data["cost"]["jobs"]}
    assert data["cost"]["largest_capture"] == "m" and len(jobs) == 3
    assert jobs[("quality", 30000)]["h200_seconds_per_step"] == pytest.approx(0.02)
    assert jobs[("quality", 30000)]["fits_a10g"]
    assert jobs[("default", 30000)]["h200_seconds_per_step"] == pytest.approx(1080.0 / 30000)
    assert jobs[("quality", 30000)]["x2.5"]["loop_s"] == pytest.approx(0.02 * 2.5 * 30000)
    real = jobs[("default", 7000)]  # the real job: `default`, 7k steps, from the shared-GPU run
    assert real["h200_seconds_per_step"] == pytest.approx(70.0 / 7000) and "upper bound" in real["basis"]
    c = real["x2.5"]
    assert c["billable_s"] == pytest.approx(70.0 * 2.5 + 10.0 * 2.5 + report.SAGEMAKER_START_S)
    assert f"| Train | ml.g5.2xlarge | $1.515 | {c['minutes']:.0f} min | ${c['cost_usd']:.2f} |" in md


# -------------------------------------------------------------------------------------- carry and OOM run


def test_slim_model_keeps_what_training_reads(scene, tmp_path):
    from spaceport.geometry.colmap import read_model

    full = read_model(scene / "gt" / "sparse" / "0")
    prepare.slim_model(scene / "gt" / "sparse" / "0", tmp_path / "slim")
    slim = read_model(tmp_path / "slim")
    assert slim.cameras.keys() == full.cameras.keys() and slim.images.keys() == full.images.keys()
    for i, im in full.images.items():
        assert slim.images[i].name == im.name and (slim.images[i].world_to_camera() == im.world_to_camera()).all()
        assert len(slim.images[i].xys) == 0
    assert (slim.points.xyz == full.points.xyz).all() and (slim.points.rgb == full.points.rgb).all()


def test_out_of_memory_settings_double_the_gaussians_every_step(scene, tmp_path, capsys):
    """run.sh's OOM run: densify every step at a near-zero threshold; here the cap stops it at 20,000."""
    from spaceport.cli import main

    rc = main(["train", str(scene), "--out", str(tmp_path), "--model-dir", "gt/sparse/0", "--preset", "default",
               "--steps", "5", "--max-gaussians", "20000", "--grow-grad2d", "1e-12", "--refine-start", "0",
               "--refine-every", "1", "--downscale", "2", "--checkpoint-every", "0", "--log-every", "1",
               "--device", "cpu", "--test-every", "4"])
    assert rc == 0
    counts = [int(line.split("num_gaussians=")[1].split()[0]) for line in capsys.readouterr().out.splitlines()
              if "num_gaussians=" in line and "step=" in line]
    assert counts[0] > 1000 and counts[1] > 1.5 * counts[0] and counts[2] > 1.5 * counts[1]
    assert max(counts) == 20000
