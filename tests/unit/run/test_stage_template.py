"""Adding a stage is one declaration and one graph entry: a toy stage registered in the graph is
planned, started by the local runner with SageMaker's argv through the shared entry point,
resumed, shown by the display, recorded in the job record and listed in the report."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from toy_stage import TOY, ToySummary

from spaceport.cli import main
from spaceport.core import contract, graph
from spaceport.core.errors import ConfigInvalid, FailureRecord, InputInvalid
from spaceport.core.summaries import DoneMarker, JobRecord, read_summary
from spaceport.local import runner as local
from spaceport.local.display import PlainReporter

TOY_PROGRAM = [sys.executable, str(Path(__file__).with_name("toy_stage.py"))]


@pytest.fixture
def toy():
    with graph.registered(TOY, before="publish") as sd:
        yield sd


@pytest.fixture
def photos(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("FAKE_CALLS", str(tmp_path / "calls.jsonl"))
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(3):
        (d / f"img_{i}.jpg").write_bytes(b"\xff\xd8fake" + bytes([i]))
    return d


def test_the_plan_derives_the_toy_stages_job_from_its_declaration(toy, photos, tmp_path):
    plan = local.build_local_plan(photos, tmp_path / "out", "fast", {"toy": {"factor": "5"}}).plan
    assert [s.name for s in plan.stages] == ["sfm", "train", "quality_gate", "compress", "toy", "publish"]
    spec = plan.stage("toy")
    assert spec.kind == "processing" and spec.arguments == ("toy", "--factor", "5", "--fail", "false")
    assert spec.input("model").path == "/opt/ml/processing/input/model"
    assert spec.input("model").uri == plan.prefix + "train/"
    assert spec.outputs[0].path == "/opt/ml/processing/output/toy" and spec.outputs[0].uri == plan.prefix + "toy/"
    assert plan.to_request_json().options["toy"] == {"factor": "5", "fail": "false"}
    assert plan.to_execution_input()["plan"]["order"][4] == "toy"
    # The one resolver: defaults <- preset <- overrides, and the config's own checks.
    assert plan.stage("toy").options["factor"] == "5"
    assert local.build_local_plan(photos, tmp_path / "o", "quality").plan.stage("toy").options["factor"] == "4"
    with pytest.raises(ConfigInvalid, match="factor=0 must be at least 1"):
        local.build_local_plan(photos, tmp_path / "o", "fast", {"toy": {"factor": "0"}})
    with pytest.raises(ConfigInvalid, match="Unknown option 'factr'"):
        local.build_local_plan(photos, tmp_path / "o", "fast", {"toy": {"factr": "2"}})
    assert "toy" not in graph.STAGES or graph.stage_def("toy") is TOY


def test_the_runner_runs_the_toy_stage_through_the_entry_point_then_skips_it(toy, photos, tmp_path):
    out = tmp_path / "out"
    shown = io.StringIO()
    job = local.run_local(photos, out, "fast", min_psnr=20, program=TOY_PROGRAM, reporter=PlainReporter(shown))
    assert job.status == "SUCCEEDED" and list(job.stages) == list(graph.STAGES)
    toy_json = read_summary(ToySummary, out / "toy" / "toy.json")
    assert (toy_json.gaussians, toy_json.factor, toy_json.product) == (3000, 3, 9000)  # fast preset: factor 3
    assert job.stages["toy"].status == "done" and job.stages["toy"].numbers == {"product": 9000}
    marker = DoneMarker.read(out / local.STATE_DIR / "toy.json")
    assert marker is not None and marker.files["toy.json"][0] > 0 and marker.record.numbers == {"product": 9000}
    assert "toy" in (out / "logs" / "toy.log").read_text().splitlines()[0]
    assert "product 9000" in shown.getvalue()  # the display line comes from the declaration
    page = (out / "report" / "index.html").read_text()
    assert "<tr><td>toy</td>" in page  # the report's timings table lists every stage of the graph

    again = local.run_local(photos, out, "fast", min_psnr=20, program=TOY_PROGRAM)
    assert again.stages["toy"].status == "skipped" and again.stages["toy"].numbers == {"product": 9000}
    # A changed option re-runs the toy stage alone: no stage reads its output (publish's inputs are
    # sfm, train, compressed and the record).
    third = local.run_local(photos, out, "fast", min_psnr=20, options={"toy": {"factor": "7"}}, program=TOY_PROGRAM)
    assert [s for s, r in third.stages.items() if r.status == "done"] == ["toy"]
    assert read_summary(ToySummary, out / "toy" / "toy.json").product == 21000


def test_a_failing_toy_stage_leaves_its_failure_record_and_typed_error(toy, photos, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputInvalid, match="toy stage was asked to fail"):
        local.run_local(photos, out, "fast", min_psnr=20, options={"toy": {"fail": "true"}}, program=TOY_PROGRAM)
    rec = read_summary(JobRecord, out / "job.json")
    assert rec.status == "FAILED" and rec.stage == "toy"
    assert rec.failure.error == "InputInvalid" and rec.failure.stage == "toy"
    assert not (out / "toy").exists() and not (out / local.STATE_DIR / "toy.json").exists()


def test_the_toy_stage_has_a_command_with_its_options(toy, tmp_path, monkeypatch, capsys):
    assert main(["toy", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--factor VALUE" in text and "What the Gaussian count is multiplied by" in text
    assert "/opt/ml/processing/input/model" in text
    # Inside a (SageMaker-shaped) job with no paths: channels from the graph, failure.json on error.
    monkeypatch.setenv(contract.SM_ROOT_ENV, str(tmp_path / "sm"))
    assert main(["toy", "--fail", "true"]) == 2
    failure = FailureRecord.model_validate_json((tmp_path / "sm" / "output" / "failure.json").read_text())
    assert (failure.error, failure.stage) == ("InputInvalid", "toy")
    assert main(["toy"]) == 2  # no training output in its input channel
    assert "processing/input/model/metrics.json does not exist" in capsys.readouterr().err
