from __future__ import annotations

import contextlib
import html
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from spaceport.cli import main
from spaceport.core.errors import QualityBelowTarget, SfmFailed
from spaceport.core.summaries import JobRecord, RequestFile, read_summary
from spaceport.local import runner as local

FAKE = Path(__file__).with_name("fake_stage.py")


#: Runs in place of the images' `spaceport` program: gets the exact arguments SageMaker passes.
FAKE_PROGRAM = [sys.executable, str(FAKE)]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(3):
        (d / f"img_{i}.jpg").write_bytes(b"\xff\xd8fake" + bytes([i]))
    return d


@pytest.fixture
def calls(tmp_path: Path, monkeypatch) -> Path:
    path = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_CALLS", str(path))
    return path


def _calls(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_runs_every_stage_in_sagemaker_layout_then_skips_them(photos, calls, tmp_path):
    before = _snapshot(photos)
    out = tmp_path / "out"
    job = local.run_local(photos, out, "fast", min_psnr=20, program=FAKE_PROGRAM)
    assert job.status == "SUCCEEDED"
    assert [c["stage"] for c in _calls(calls)] == ["sfm", "train", "compress", "publish"]
    # SageMaker's argv: a processing job gets the plan's ContainerArguments (the stage name first,
    # after the image's ENTRYPOINT `spaceport`); the training job gets the single word `train`.
    plan = local.build_local_plan(photos, out, "fast").plan
    assert _calls(calls)[0]["argv"] == list(plan.stage("sfm").arguments)
    assert _calls(calls)[0]["argv"][0] == "sfm"
    assert _calls(calls)[1]["argv"] == ["train"]
    assert _calls(calls)[3]["argv"] == ["publish"]
    # The S3 job prefix, mirrored under DIR.
    for rel in ("request.json", "job.json", "sfm/sfm.json", "sfm/sparse/0/images.bin", "train/splat.ply",
                "train/metrics.json", "compressed/scene.sog", "report/index.html", "report/viewer.html",
                "logs/train.log"):
        assert (out / rel).exists(), rel
    assert not (out / local.SCRATCH_DIR).exists()
    rec = read_summary(JobRecord, out / "job.json")
    assert rec.job_id.startswith("sp-photos-")
    assert rec.stages["quality_gate"].numbers["passed"] is True
    assert rec.stages["train"].numbers["test_psnr"] == 24.5
    assert rec.status == "SUCCEEDED" and rec.outputs["report"] == str(out / "report" / "index.html")
    for stage in ("sfm", "train", "compress", "publish"):
        assert rec.stages[stage].status == "done"
        assert rec.stages[stage].peak_memory_mb > 1
    # The report's training curve comes from metrics.json's history (no logs are read).
    assert 'alt="loss"' in (out / "report" / "index.html").read_text()
    assert _snapshot(photos) == before  # input untouched

    job2 = local.run_local(photos, out, "fast", min_psnr=20, program=FAKE_PROGRAM)
    assert len(_calls(calls)) == 4  # nothing re-ran
    assert all(job2.stages[s].status == "skipped" for s in ("sfm", "train", "compress", "publish"))

    # --from forces that stage and the later ones.
    local.run_local(photos, out, "fast", min_psnr=20, force_from="compress", program=FAKE_PROGRAM)
    assert [c["stage"] for c in _calls(calls)][4:] == ["compress", "publish"]


def test_changed_output_or_options_rerun_only_what_depends_on_them(photos, calls, tmp_path, monkeypatch):
    out = tmp_path / "out"
    local.run_local(photos, out, "fast", min_psnr=20, program=FAKE_PROGRAM)
    # A damaged artifact is not "complete": that stage re-runs. Its new output is byte-identical,
    # so compress (which depends on those bytes) is still complete.
    (out / "train" / "splat.ply").write_bytes(b"truncated")
    local.run_local(photos, out, "fast", min_psnr=20, program=FAKE_PROGRAM)
    assert [c["stage"] for c in _calls(calls)][4:] == ["train"]
    # A train output that differs (here its metrics) re-runs what consumes it.
    (out / "train" / "metrics.json").write_text("{}")
    monkeypatch.setenv("FAKE_PSNR", "25.0")
    local.run_local(photos, out, "fast", min_psnr=20, program=FAKE_PROGRAM)
    assert [c["stage"] for c in _calls(calls)][5:] == ["train", "compress", "publish"]
    # A different preset changes the options: every stage with options re-runs; publish has none
    # and its inputs came out byte-identical, so it stays complete.
    local.run_local(photos, out, "default", min_psnr=20, program=FAKE_PROGRAM)
    assert [c["stage"] for c in _calls(calls)][8:] == ["sfm", "train", "compress"]


def test_failed_stage_raises_its_typed_error_and_keeps_earlier_stages(photos, calls, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    monkeypatch.setenv("FAKE_FAIL", "sfm")
    with pytest.raises(SfmFailed, match="Only 2 of 12") as info:
        local.run_local(photos, out, "fast", program=FAKE_PROGRAM)
    # The CLI prints the stage's own reason and fix from its failure record, and where its log is.
    from spaceport.cli import report_error

    report_error(info.value)
    assert capsys.readouterr().err.splitlines() == [
        "error: SfmFailed: Only 2 of 12 images registered.", f"fix: {SfmFailed.default_fix}",
        f"log: {out / 'logs' / 'sfm.log'}"]
    rec = read_summary(JobRecord, out / "job.json")
    assert rec.status == "FAILED" and rec.stage == "sfm"
    # The stage's failure record (failure.json) crossed the process boundary whole.
    assert rec.failure.error == "SfmFailed" and rec.failure.reason == "Only 2 of 12 images registered."
    assert rec.failure.details["registered"] == 2 and rec.stages["sfm"].failure.error == "SfmFailed"
    assert not (out / "sfm").exists() and not (out / local.SCRATCH_DIR).exists()


def test_a_splat_below_the_gate_is_published_marked_below_target(photos, calls, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_PSNR", "14.0")
    out = tmp_path / "out"
    with pytest.raises(QualityBelowTarget, match=r"14\.00 dB is below the target 20\.00") as info:
        local.run_local(photos, out, "fast", min_psnr=20, program=FAKE_PROGRAM)
    # Still compressed and published, so there is something to look at; the job still fails.
    assert [c["stage"] for c in _calls(calls)] == ["sfm", "train", "compress", "publish"]
    assert info.value.details["report"] == str(out / "report" / "index.html")
    rec = read_summary(JobRecord, out / "job.json")
    assert rec.status == "FAILED" and rec.stage == "quality_gate"
    assert rec.failure.error == "QualityBelowTarget"
    assert rec.stages["quality_gate"].status == "failed"
    assert rec.stages["quality_gate"].numbers["passed"] is False
    assert rec.stages["quality_gate"].failure.details["test_psnr"] == 14.0
    assert rec.quality_gate.passed is False and rec.outputs["report"] == str(out / "report" / "index.html")
    page = (out / "report" / "index.html").read_text()
    assert "Spaceport job report (below target)" in page
    assert "Below target: held-out PSNR 14.00 dB, target 20.00 dB" in page
    assert html.escape(QualityBelowTarget.default_fix) in page and "it is not a passing result" in page
    assert "open viewer (below target)" in page and "Quality gate: passed" not in page
    viewer = (out / "report" / "viewer.html").read_text()
    assert '"banner": "Below target: held-out PSNR 14.00 dB, target 20.00 dB"' in viewer


def test_a_rerun_that_fails_leaves_no_output_of_the_earlier_run(photos, calls, tmp_path, monkeypatch):
    out = tmp_path / "out"
    local.run_local(photos, out, "fast", min_psnr=20, program=FAKE_PROGRAM)
    assert (out / "report" / "index.html").is_file() and (out / "compressed" / "scene.sog").is_file()
    # Training re-runs (forced) and fails: the old compressed splat and report must not stay beside
    # a job.json that says FAILED, and nothing of them is left anywhere in the folder.
    monkeypatch.setenv("FAKE_FAIL", "train")
    with pytest.raises(SfmFailed):
        local.run_local(photos, out, "fast", min_psnr=20, force_from="train", program=FAKE_PROGRAM)
    rec = read_summary(JobRecord, out / "job.json")
    assert rec.status == "FAILED" and rec.stage == "train"
    for gone in ("train", "compressed", "report"):
        assert not (out / gone).exists(), gone
    assert not list(out.rglob("index.html")) and not list(out.rglob("scene.sog"))
    assert "report" not in rec.outputs and (out / "sfm" / "sfm.json").is_file()
    # Fixed, the next run re-runs what was removed and nothing else.
    monkeypatch.delenv("FAKE_FAIL")
    job = local.run_local(photos, out, "fast", min_psnr=20, program=FAKE_PROGRAM)
    assert job.status == "SUCCEEDED" and job.stages["sfm"].status == "skipped"
    assert [c["stage"] for c in _calls(calls)][-3:] == ["train", "compress", "publish"]


def test_a_run_in_progress_never_shows_the_earlier_verdict(photos, calls, tmp_path, monkeypatch):
    out = tmp_path / "out"
    local.run_local(photos, out, "fast", min_psnr=20, program=FAKE_PROGRAM)
    # While the first stage of a rerun works, job.json already says RUNNING (the fake sfm records it).
    monkeypatch.setenv("FAKE_FAIL", "sfm")
    with pytest.raises(SfmFailed):
        local.run_local(photos, out, "default", min_psnr=20, program=FAKE_PROGRAM)
    seen = [json.loads(line) for line in (tmp_path / "job_at_start.jsonl").read_text().splitlines()]
    assert [s["status"] for s in seen][-1] == "RUNNING"
    assert not (out / "report").exists() and not (out / "train").exists()


def test_interrupted_stage_leaves_nothing_that_looks_complete(photos, calls, tmp_path):
    out = tmp_path / "out"
    code = (
        f"import sys; sys.path.insert(0, {str(FAKE.parent)!r}); import test_run_local as t;"
        "from spaceport.local import runner as local;"
        f"local.run_local({str(photos)!r}, {str(out)!r}, 'fast', program=t.FAKE_PROGRAM)"
    )
    env = {**os.environ, "FAKE_HANG": "sfm", "PYTHONPATH": os.pathsep.join([str(Path.cwd()), str(FAKE.parent)])}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((out / local.SCRATCH_DIR).rglob("sfm.json")):
        assert proc.poll() is None, "the runner exited before the stage started"
        time.sleep(0.1)
    assert list((out / local.SCRATCH_DIR).rglob("sfm.json")), "the stage never wrote its half output"
    os.killpg(proc.pid, 9)  # the harshest interruption: no cleanup code runs at all
    proc.wait()
    _assert_gone(_calls(calls)[0]["pid"])  # the stage dies with its runner (PR_SET_PDEATHSIG)
    assert not (out / "sfm").exists() and not (out / local.STATE_DIR / "sfm.json").exists()
    # The next run cleans the scratch and completes.
    job = local.run_local(photos, out, "fast", min_psnr=0, program=FAKE_PROGRAM)
    assert job.stages["sfm"].status == "done"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "{tmp}/nope", "--out", "{tmp}/o"], "InputInvalid: the input {tmp}/nope does not exist"),
        (["run", "{photos}", "--out", "{tmp}/o", "--preset", "turbo"], "Unknown preset 'turbo'"),
        (["run", "{photos}", "--out", "{afile}/o"], "cannot be written"),
        (["run", "{photos}", "--out", "{photos}/out"], "inside the input"),
    ],
)
def test_cli_errors(args, message, photos, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    fmt = {"tmp": str(tmp_path), "photos": str(photos), "afile": str(afile)}
    code = main([a.format(**fmt) for a in args])
    err = capsys.readouterr().err
    assert code == 2
    assert message.format(**fmt) in err and "fix: " in err
    assert not (tmp_path / "o").exists()


@contextlib.contextmanager
def _real_user_unprivileged():
    """As root (CI runs as root), make the real uid ``nobody`` for the duration, the effective uid staying root.

    The CLI's readability and writability checks use ``os.access``, which answers for the real
    uid (access(2)), so they then see what an ordinary user sees; with the effective uid still
    root the real uid can be restored.
    """
    if os.geteuid() != 0:
        yield
        return
    os.setreuid(65534, 0)
    try:
        yield
    finally:
        os.setreuid(0, 0)


def test_an_output_folder_the_user_cannot_write_is_refused(photos, capsys):
    # Outside pytest's root-only temporary tree, so that the unprivileged real uid can reach the photos.
    base = Path(tempfile.mkdtemp(prefix="spaceport-test-"))
    ro = base / "ro"
    try:
        base.chmod(0o755)
        source = shutil.copytree(photos, base / "photos")
        ro.mkdir(mode=0o555)
        with _real_user_unprivileged():
            code = main(["run", str(source), "--out", str(ro / "o")])
    finally:
        ro.chmod(0o755)
        shutil.rmtree(base)
    err = capsys.readouterr().err
    assert code == 2
    assert f"the output folder {ro / 'o'} cannot be written (no write permission on {ro})" in err and "fix: " in err


def test_a_single_file_input_arrives_as_a_folder_holding_it(tmp_path, calls):
    upload = tmp_path / "photos.zip"
    upload.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    out = tmp_path / "out"
    local.run_local(upload, out, "fast", min_psnr=0, program=FAKE_PROGRAM)
    sfm_root = Path(_calls(calls)[0]["root"])
    assert sfm_root == out / local.SCRATCH_DIR / "sfm"
    req = read_summary(RequestFile, out / RequestFile.FILE)
    assert req.request.source_uri == upload.resolve().as_uri()
    assert upload.read_bytes() == b"PK\x05\x06" + b"\0" * 18


def test_view_refuses_a_folder_without_a_report(tmp_path, capsys):
    assert main(["view", str(tmp_path), "--no-open"]) == 2
    assert "holds no report" in capsys.readouterr().err


def test_ctrl_c_stops_the_stage_and_records_the_interruption(photos, calls, tmp_path):
    import signal

    out = tmp_path / "out"
    code = (
        f"import sys; sys.path.insert(0, {str(FAKE.parent)!r}); import test_run_local as t;"
        # Ctrl-C as a terminal delivers it, even when this test runs as a background job of a
        # non-interactive shell (which starts its children with SIGINT ignored)
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler);"
        "from spaceport.local import runner as local\n"
        "try:\n"
        f"    local.run_local({str(photos)!r}, {str(out)!r}, 'fast', program=t.FAKE_PROGRAM)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n"
    )
    env = {**os.environ, "FAKE_HANG": "sfm", "PYTHONPATH": os.pathsep.join([str(Path.cwd()), str(FAKE.parent)])}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((out / local.SCRATCH_DIR).rglob("sfm.json")):
        assert proc.poll() is None, "the runner exited before the stage started"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"the runner ignored Ctrl-C; its stderr: {proc.communicate()[1][-2000:]}") from None
    assert code == 130, proc.stderr.read()[-2000:]
    rec = read_summary(JobRecord, out / "job.json")
    assert rec.status == "INTERRUPTED" and rec.stages["sfm"].status == "interrupted"
    assert not (out / local.SCRATCH_DIR).exists() and not (out / "sfm").exists()
    # The stage process (its own session) was stopped too: no fake stage is left sleeping.
    _assert_gone(_calls(calls)[0]["pid"])


def _assert_gone(pid: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, 9)
    raise AssertionError(f"stage process {pid} outlived the runner")


def test_a_cpu_run_without_flags_trains_to_the_stated_budget_and_says_so_first(photos, calls, tmp_path):
    import io

    from spaceport.local.display import JsonReporter

    stream = io.StringIO()
    out = tmp_path / "out"
    local.run_local(photos, out, None, min_psnr=20, program=FAKE_PROGRAM, cuda=False, reporter=JsonReporter(stream))
    request = read_summary(RequestFile, out / "request.json")
    assert request.preset == "fast" and request.options["train"]["minutes"] == "10.0"
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    kinds = [e["event"] for e in events]
    estimate = events[kinds.index("estimate")]
    assert estimate["phase"] == "plan" and estimate["stage"] == "train"
    assert estimate["text"].startswith("training budget 10 min: 200x150 px, 900 steps")
    first_step = next(i for i, e in enumerate(events) if e["event"] == "progress" and "step" in e)
    assert kinds.index("estimate") < first_step
    # step/steps counts against the plan's 900, then against the 600 its schedule was re-fitted to
    steps = [(int(e["step"]), int(e["steps"])) for e in events if e["event"] == "progress" and "loss" in e]
    assert steps == [(10, 900), (20, 600), (30, 600)]


def test_a_fixed_step_preset_on_a_cpu_is_told_the_budget_option_before_anything_runs(photos, calls, tmp_path):
    import io

    from spaceport.local.display import JsonReporter

    stream = io.StringIO()
    local.run_local(photos, tmp_path / "out", "default", min_psnr=20, program=FAKE_PROGRAM, cuda=False,
                    reporter=JsonReporter(stream))
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["event"] for e in events][:3] == ["start", "estimate", "stage_start"]
    assert "--minutes N trains to a time budget" in events[1]["text"] and "default preset" in events[1]["text"]
