"""The rendered ASL: valid (asl-validator), names only resources of this template, agrees with the plan."""

import json
import re
import shutil
import subprocess

import pytest
from infra_support import ROOT

from spaceport.core.plan import JOB_KINDS, STAGES, JobRequest, PlanSettings, plan_job

VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"


def _state_machine(synth):
    return synth.template["Resources"][synth.logical_id(synth.stack.pipeline.state_machine)]["Properties"]


def render(synth) -> tuple[dict, dict[str, str]]:
    """The definition with each substitution replaced by a fake ARN naming its logical id."""
    props = _state_machine(synth)
    text = props["DefinitionString"]
    refs = {}
    for key, value in props["DefinitionSubstitutions"].items():
        logical, attr = value["Fn::GetAtt"]
        assert attr == "Arn"
        refs[key] = logical
        kind = synth.template["Resources"][logical]["Type"]
        arn = (f"arn:aws:lambda:us-east-1:123456789012:function:{logical}" if kind == "AWS::Lambda::Function"
               else f"arn:aws:iam::123456789012:role/{logical}")
        text = text.replace("${" + key + "}", arn)
    assert "${" not in text, "a substitution in the ASL has no value in the template"
    return json.loads(text), refs


@pytest.mark.node
def test_asl_validator_accepts_the_rendered_definition(synth, tmp_path):
    if not VALIDATOR.exists() or not shutil.which("node"):
        pytest.skip("asl-validator (npm) not installed")
    asl, _ = render(synth)
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(asl))
    out = subprocess.run([str(VALIDATOR), "--json-path", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_resource_the_asl_names_exists_in_the_template(synth):
    _asl, refs = render(synth)
    resources = synth.template["Resources"]
    placeholders = set(re.findall(r"\$\{(\w+)\}", _state_machine(synth)["DefinitionString"]))
    assert placeholders == set(refs)
    f = synth.stack.functions
    expected = {"RecordFunctionArn": f.record, "QualityGateFunctionArn": f.quality_gate,
                "NotifyFunctionArn": f.notify, "SageMakerRoleArn": synth.stack.sagemaker.role}
    assert {k: synth.logical_id(v) for k, v in expected.items()} == refs
    for key, logical in refs.items():
        assert resources[logical]["Type"] == ("AWS::IAM::Role" if key.endswith("RoleArn") else "AWS::Lambda::Function")
    # Every Lambda task calls one of those functions; no ARN is written into the file by hand.
    raw = json.loads((ROOT / "cloud" / "statemachine" / "pipeline.asl.json").read_text())
    for name, state in raw["States"].items():
        if state.get("Resource") == "arn:aws:states:::lambda:invoke":
            assert re.fullmatch(r"\$\{\w+FunctionArn\}", state["Parameters"]["FunctionName"]), name
        if "Resource" in state:
            assert state["Resource"].startswith("arn:aws:states:::"), name


def _success_path(asl: dict) -> list[str]:
    """The states a passing job goes through (at a Choice, the branch taken when the gate passed)."""
    order, name = [], asl["StartAt"]
    while name:
        order.append(name)
        state = asl["States"][name]
        if state["Type"] == "Choice":
            (name,) = [c["Next"] for c in state["Choices"]
                       if c == {"Variable": "$.results.quality_gate.value.passed", "BooleanEquals": True,
                                "Next": c["Next"]}]
            continue
        name = state.get("Next") if not state.get("End") and state["Type"] not in ("Succeed", "Fail") else None
    return order


def _stage_of(state: dict) -> str | None:
    found = set(re.findall(r"\$\.plan\.stages\.(\w+)\.", json.dumps(state)))
    assert len(found) <= 1, found
    return found.pop() if found else None


def test_plan_and_asl_agree_on_stages_order_and_names():
    asl = json.loads((ROOT / "cloud" / "statemachine" / "pipeline.asl.json").read_text())
    path = _success_path(asl)
    stages = [s for s in (_stage_of(asl["States"][n]) for n in path) if s]
    assert stages == list(STAGES)
    plan = plan_job(JobRequest.from_s3("b", "uploads/x.zip", etag="e"), PlanSettings(root="s3://b/"))
    doc = plan.to_execution_input()["plan"]["stages"]
    for name in path:
        state, stage = asl["States"][name], _stage_of(asl["States"][name])
        if stage not in JOB_KINDS:
            continue
        params = state["Parameters"]
        spec = plan.stage(stage)
        if JOB_KINDS[stage] == "processing":
            assert state["Resource"] == "arn:aws:states:::sagemaker:createProcessingJob.sync"
            assert params["ProcessingJobName.$"] == f"$.plan.stages.{stage}.job_name"
            assert [i["InputName"] for i in params["ProcessingInputs"]] == [c.name for c in spec.inputs]
            assert [o["OutputName"] for o in params["ProcessingOutputConfig"]["Outputs"]] == [
                c.name for c in spec.outputs]
            assert params["Environment"]["SPACEPORT_STAGE"] == stage
            # How SageMaker starts it (spaceport.core.contract.stage_argv): the image's ENTRYPOINT with
            # exactly the plan's arguments, which begin with the stage name.
            assert params["AppSpecification"] == {"ImageUri.$": f"$.plan.stages.{stage}.image",
                                                  "ContainerArguments.$": f"$.plan.stages.{stage}.arguments"}
            assert spec.arguments[0] == stage
            # Each input comes from where the stage graph says, in the form it says.
            for item, ch in zip(params["ProcessingInputs"], spec.inputs, strict=True):
                s3 = item["S3Input"]
                assert s3["LocalPath.$"] == f"$.plan.stages.{stage}.inputs.{ch.name}.path"
                assert s3["S3Uri.$"] == (f"$.results.{ch.producer}.ModelArtifacts.S3ModelArtifacts"
                                         if ch.form == "model_tarball" else f"$.plan.stages.{stage}.inputs.{ch.name}.uri")
            for item, ch in zip(params["ProcessingOutputConfig"]["Outputs"], spec.outputs, strict=True):
                assert item["S3Output"]["S3Uri.$"] == f"$.plan.stages.{stage}.outputs.{ch.name}.uri"
                assert item["S3Output"]["LocalPath.$"] == f"$.plan.stages.{stage}.outputs.{ch.name}.path"
        else:
            assert state["Resource"] == "arn:aws:states:::sagemaker:createTrainingJob.sync"
            assert params["TrainingJobName.$"] == f"$.plan.stages.{stage}.job_name"
            # No ContainerEntrypoint: SageMaker runs the image's ENTRYPOINT with the argument `train`.
            assert "ContainerEntrypoint" not in json.dumps(params["AlgorithmSpecification"])
            assert [c["ChannelName"] for c in params["InputDataConfig"]] == [c.name for c in spec.inputs]
            for item, ch in zip(params["InputDataConfig"], spec.inputs, strict=True):
                assert ch.form == "folder" and ch.path == f"/opt/ml/input/data/{ch.name}"
                assert item["DataSource"]["S3DataSource"]["S3Uri.$"] == f"$.plan.stages.{stage}.inputs.{ch.name}.uri"
            assert params["OutputDataConfig"]["S3OutputPath.$"] == f"$.plan.stages.{stage}.outputs.model.uri"
        # Every $.plan path the state reads exists in the plan's execution input.
        for path_ in re.findall(r"\$\.plan\.stages\.[\w.]+", json.dumps(params)):
            node = {"plan": {"stages": doc}}
            for part in path_[2:].split("."):
                node = node[part]


def test_every_stage_is_caught_and_capacity_retried_but_bad_input_is_not():
    asl = json.loads((ROOT / "cloud" / "statemachine" / "pipeline.asl.json").read_text())
    states = asl["States"]
    for name in ("SfM", "Train", "QualityGate", "Compress", "Publish", "RecordSuccess"):
        state = states[name]
        # SageMaker stages go through ClassifyFailure (capacity lost inside the job may be retried);
        # the others fail the job straight away.
        target = "ClassifyFailure" if name in ("SfM", "Train", "Compress", "Publish") else "RecordFailure"
        assert state["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": target}]
        retried = {e for r in state.get("Retry", []) for e in r["ErrorEquals"]}
        assert not retried & {"States.ALL", "States.TaskFailed", "InputInvalid", "ConfigInvalid", "SfmFailed"}
        if name in ("SfM", "Train", "Compress", "Publish"):
            # No Retry of their own: SageMaker.AmazonSageMakerException is the integration's catch-all
            # (validation errors and throttling alike), so ClassifyFailure decides from the cause.
            assert "Retry" not in state
    # Nothing retries on a name that does not say whether waiting helps, or that the integration never raises.
    names = {e for state in states.values() for r in state.get("Retry", []) for e in r["ErrorEquals"]}
    assert not names & {"SageMaker.AmazonSageMakerException", "CapacityError", "ThrottlingException",
                        "SageMaker.ResourceLimitExceededException"}
    assert states["NotifySuccess"]["Catch"][0]["Next"] == "RecordNotifyFailure"
    assert states["RecordNotifyFailure"]["Next"] == "Succeeded"
    assert states["Failed"] == {**states["Failed"], "Type": "Fail", "ErrorPath": "$.record.value.failure.error",
                                "CausePath": "$.record.value.failure.reason"}


def test_capacity_retry_loop_is_bounded_backs_off_and_returns_to_the_failed_stage():
    asl = json.loads((ROOT / "cloud" / "statemachine" / "pipeline.asl.json").read_text())
    states = asl["States"]
    classify = states["ClassifyFailure"]
    payload = classify["Parameters"]["Payload"]
    assert payload["action"] == "retry" and payload["error.$"] == "$.error"
    policy = payload["policy"]
    assert 2 <= policy["max_attempts"] <= 5 and policy["backoff_rate"] >= 2 and policy["interval_s"] >= 30
    assert classify["Catch"][0]["Next"] == "RecordFailure" and classify["Catch"][0]["ResultPath"] != "$.error"
    choice = states["RetryOrFail"]
    assert choice["Default"] == "RecordFailure"
    assert choice["Choices"] == [{"Variable": "$.retry.value.retry", "BooleanEquals": True, "Next": "WaitBeforeRetry"}]
    assert states["WaitBeforeRetry"]["SecondsPath"] == "$.retry.value.wait_s"
    assert states[states["WaitBeforeRetry"]["Next"]] == {**states["UseRetryPlan"], "InputPath": "$.retry.value.plan",
                                                         "ResultPath": "$.plan"}
    back = {c["StringEquals"]: c["Next"] for c in states[states["UseRetryPlan"]["Next"]]["Choices"]}
    # Every SageMaker stage can be re-entered, at the state that runs that stage's job.
    assert set(back) == set(JOB_KINDS)
    for stage, name in back.items():
        assert _stage_of(states[name]) == stage
        assert states[name]["Catch"][0]["Next"] == "ClassifyFailure"


def test_publish_reads_the_job_record_written_just_before_it():
    asl = json.loads((ROOT / "cloud" / "statemachine" / "pipeline.asl.json").read_text())
    states = asl["States"]
    assert states["Compress"]["Next"] == "RecordProgress" and states["RecordProgress"]["Next"] == "Publish"
    progress = states["RecordProgress"]
    assert progress["Parameters"]["Payload"]["action"] == "progress"
    # A failed progress write fails no passing job: Publish still runs (the record exists since start_job).
    # A splat below target is not published without its verdict in that record.
    assert progress["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "ProgressUnrecorded"}]
    assert states["ProgressUnrecorded"] == {**states["ProgressUnrecorded"], "Type": "Choice", "Default": "RecordFailure",
                                            "Choices": [{"Variable": "$.results.quality_gate.value.passed",
                                                         "BooleanEquals": True, "Next": "Publish"}]}
    (job,) = [i for i in states["Publish"]["Parameters"]["ProcessingInputs"] if i["InputName"] == "job"]
    assert job["S3Input"]["S3Uri.$"] == "$.plan.stages.publish.inputs.job.uri"
    plan = plan_job(JobRequest.from_s3("b", "uploads/x.zip", etag="e"), PlanSettings(root="s3://b/"))
    assert plan.stage("publish").input("job").uri == plan.record_uri


def test_a_splat_below_the_gate_is_published_then_fails_and_never_reaches_success():
    states = json.loads((ROOT / "cloud" / "statemachine" / "pipeline.asl.json").read_text())["States"]
    # The gate returns its verdict: a miss goes on to Compress; only a gate error is caught.
    assert states["QualityGate"]["Next"] == "Compress"
    assert states["QualityGate"]["ResultSelector"] == {"value.$": "$.Payload"}
    assert states["QualityGate"]["ResultPath"] == "$.results.quality_gate"
    assert states["Publish"]["Next"] == "GateVerdict"
    verdict = states["GateVerdict"]
    assert verdict["Choices"] == [{"Variable": "$.results.quality_gate.value.passed", "BooleanEquals": True,
                                   "Next": "RecordSuccess"}]
    assert verdict["Default"] == "BelowTarget"
    below = states["BelowTarget"]
    assert below["Parameters"] == {"Error": "QualityBelowTarget",
                                   "Cause.$": "States.JsonToString($.results.quality_gate.value)"}
    assert below["ResultPath"] == "$.error" and below["Next"] == "RecordFailure"
    # Nothing else leads to the success email.
    into = {name for name, s in states.items() for n in [s.get("Next"), s.get("Default"),
            *[c["Next"] for c in s.get("Choices", [])], *[c["Next"] for c in s.get("Catch", [])]] if n == "RecordSuccess"}
    assert into == {"GateVerdict"}
