from __future__ import annotations

import io
import json

from rich.console import Console

from spaceport.core.summaries import JobRecord, StageRecord
from spaceport.local.display import JsonReporter, PlainReporter, QuietReporter, RichReporter
from spaceport.local.progress import parse_line

TRAIN_LINE = "stage=train step=100 steps=500 loss=0.05 psnr=21.3 eta_s=40"


def _drive(r) -> None:
    r.start("sp-x", "/tmp/o", ["sfm", "train"])
    r.stage_start("sfm")
    r.stage_progress("sfm", parse_line("stage=sfm phase=match seconds=1.2"))
    r.stage_end("sfm", StageRecord(status="done", seconds=3.2, peak_memory_mb=400.0,
                                   numbers={"registered_images": 24, "usable_images": 25}))
    r.stage_start("train")
    r.stage_progress("train", parse_line(TRAIN_LINE))
    r.stage_end("train", StageRecord(status="skipped", seconds=0.0, numbers={"test_psnr": 24.1, "num_gaussians": 30000}))
    r.finish(JobRecord(job_id="sp-x", status="SUCCEEDED", seconds=100.0, prefix="/tmp/o",
                       outputs={"report": "/tmp/o/report/index.html", "viewer": "/tmp/o/report/viewer.html"},
                       stages={"sfm": StageRecord(status="done", seconds=3.2, peak_memory_mb=400.0)}))


def test_rich_display_shows_training_progress_and_a_final_table() -> None:
    buf = io.StringIO()
    r = RichReporter(Console(file=buf, width=120, force_terminal=False))
    r.start("sp-x", "/tmp/o", [])
    r.stage_start("train")
    r.stage_progress("train", parse_line(TRAIN_LINE))
    assert r._detail("train", r.rows["train"]) == "step 100/500  loss 0.05  PSNR 21.30  ETA 40.0s"
    r.close()
    buf = io.StringIO()
    _drive(RichReporter(Console(file=buf, width=120, force_terminal=False)))
    text = buf.getvalue()
    assert "24 of 25 images registered" in text and "PSNR 24.10 dB, 30000 Gaussians" in text
    assert "Report: /tmp/o/report/index.html" in text


def test_json_lines_mode_is_one_object_per_event() -> None:
    buf = io.StringIO()
    _drive(JsonReporter(buf))
    events = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["start", "stage_start", "progress", "stage_end", "stage_start",
                                            "progress", "stage_end", "finish"]
    assert events[5]["psnr"] == "21.3" and events[6]["status"] == "skipped"


def test_quiet_prints_only_the_report_path_and_plain_prints_lines() -> None:
    buf = io.StringIO()
    _drive(QuietReporter(buf))
    assert buf.getvalue() == "/tmp/o/report/index.html\n"
    buf = io.StringIO()
    _drive(PlainReporter(buf))
    assert "[sfm] phase=match" in buf.getvalue() and "report /tmp/o/report/index.html" in buf.getvalue()
    assert "summary:\n  sfm          done         3.2s  peak 400 MB" in buf.getvalue()


def test_a_run_trained_finer_than_the_coarsest_size_shows_both_psnrs() -> None:
    from spaceport.stages.train import describe

    line = describe({"test_psnr": 21.5148, "num_gaussians": 59999, "size": "298x398", "coarse_psnr": 22.893,
                     "coarse_size": "149x199"})
    assert line == "PSNR 21.51 dB at 298x398 (22.89 at 149x199), 59999 Gaussians"
    assert describe({"test_psnr": 24.1, "num_gaussians": 3, "size": "149x199"}) == "PSNR 24.10 dB, 3 Gaussians"
