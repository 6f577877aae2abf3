import json
import re

import pytest

from spaceport.core import plan as P
from spaceport.core.errors import ConfigInvalid
from spaceport.core.plan import JobRequest, PlanSettings, StageResources, plan_job
from spaceport.core.summaries import RequestFile

SETTINGS = PlanSettings(
    root="s3://bucket/",
    role_arn="arn:aws:iam::123456789012:role/sm",
    train=StageResources(image="123.dkr.ecr.eu-west-1.amazonaws.com/train:abc", instance_type="ml.g5.2xlarge",
                         volume_gb=50, max_runtime_s=7200),
    min_psnr=22.5,
    max_gaussians=1_000_000,
)
SM_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
SFN_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


def _req(**kw):
    return JobRequest.from_s3("bucket", "uploads/My Garden é.zip", etag='"abc123"', **kw)


def test_same_upload_same_id_and_version_changes_it():
    a, b = plan_job(_req(), SETTINGS), plan_job(_req(email="x@example.com"), SETTINGS)
    assert a.job_id == b.job_id
    other = plan_job(JobRequest.from_s3("bucket", "uploads/My Garden é.zip", etag="zzz"), SETTINGS)
    assert other.job_id != a.job_id
    # A version id wins over the ETag ("null" means an unversioned bucket).
    v1 = JobRequest.from_s3("b", "k.zip", version_id="v1", etag="e")
    assert v1.source_version == "v1"
    assert JobRequest.from_s3("b", "k.zip", version_id="null", etag='"e"').source_version == "e"


@pytest.mark.parametrize("key", ["uploads/My Garden é.zip", "uploads/" + "ü" * 300 + ".mov",
                                 "uploads/[weird]*?name!!.zip", "uploads/.zip", "uploads/" + "a" * 500])
def test_ids_respect_sagemaker_and_step_functions_name_rules(key):
    p = plan_job(JobRequest.from_s3("bucket", key, etag="e"), SETTINGS)
    assert len(p.job_id) <= P.JOB_ID_MAX and SFN_NAME.match(p.execution_name)
    for s in p.stages:
        if s.kind != "gate":
            # The state machine appends -r<retry> to a retried job's name.
            assert SM_NAME.match(s.job_name + "-r9"), s.job_name


def test_retried_job_names_are_unique_and_valid():
    p = plan_job(JobRequest.from_s3("bucket", "uploads/" + "a" * 500, etag="e"), SETTINGS)
    names = {P.stage_job_name(p.job_id, s, n) for s in P.JOB_KINDS for n in range(1, P.MAX_ATTEMPTS + 1)}
    assert len(names) == len(P.JOB_KINDS) * P.MAX_ATTEMPTS
    assert all(SM_NAME.match(n) for n in names)
    assert P.stage_job_name(p.job_id, "train") == p.stage("train").job_name
    assert P.stage_job_name(p.job_id, "train", 2) == p.stage("train").job_name + "-r2"
    assert P.ExecutionPlan.model_validate(p.to_execution_input()["plan"]).stages["train"].attempt == 1
    with pytest.raises(ValueError):
        P.stage_job_name(p.job_id, "train", 0)


def test_job_id_shape():
    assert plan_job(_req(), SETTINGS).job_id.startswith("sp-my-garden-e-")


def test_layout_matches_design():
    p = plan_job(_req(), SETTINGS)
    pre = f"s3://bucket/jobs/{p.job_id}/"
    assert p.prefix == pre and p.request_uri == pre + "request.json" and p.record_uri == pre + "job.json"
    # The upload is staged at its exact version under the job's own prefix (start_job copies it).
    assert p.stage("sfm").input("upload").uri == pre + "upload/"
    assert p.staged_upload_uri == pre + "upload/My Garden é.zip"
    assert p.stage("sfm").input("upload").path == "/opt/ml/processing/input/upload"
    assert p.stage("sfm").output("sfm").uri == pre + "sfm/"
    assert p.stage("sfm").output("sfm").path == "/opt/ml/processing/output/sfm"
    assert p.stage("train").input("sfm").uri == pre + "sfm/"
    assert p.stage("train").input("sfm").path == "/opt/ml/input/data/sfm"
    assert p.stage("train").output("model").uri == pre + "train/"
    assert p.stage("train").checkpoint_uri == f"s3://bucket/scratch/{p.job_id}/checkpoints/"
    assert p.stage("compress").input("model").path == "/opt/ml/processing/input/model"
    assert p.stage("compress").output("compressed").uri == pre + "compressed/"
    pub = p.stage("publish")
    assert [c.name for c in pub.inputs] == ["sfm", "train", "compressed", "job"]
    assert [c.path for c in pub.inputs] == [f"/opt/ml/processing/input/{n}"
                                            for n in ("sfm", "train", "compressed", "job")]
    # The job record (per-stage seconds for the report) is one object, not a folder.
    assert pub.input("job").uri == p.record_uri == pre + "job.json"
    assert pub.output("report").uri == pre + "report/"
    # No ContainerEntrypoint: the image's ENTRYPOINT `spaceport` + these arguments is the command.
    assert pub.arguments == ("publish",)
    # Which stage produced each input, in which form (the stage graph, declared once).
    assert [(c.producer, c.form) for c in pub.inputs] == [
        ("sfm", "folder"), ("train", "model_tarball"), ("compress", "folder"), ("record", "record")]
    assert (p.stage("compress").input("model").producer, p.stage("compress").input("model").form) == (
        "train", "model_tarball")


def test_stage_order_and_kinds():
    p = plan_job(_req(), SETTINGS)
    assert [s.name for s in p.stages] == ["sfm", "train", "quality_gate", "compress", "publish"]
    assert [s.kind for s in p.stages] == ["processing", "training", "gate", "processing", "processing"]


def test_presets_and_overrides_resolve_to_strings():
    """defaults <- preset <- overrides, every field of the real stage configs, all as strings."""
    from spaceport.core.config import to_strings
    from spaceport.stages.sfm.config import SfmConfig
    from spaceport.stages.train.config import TrainConfig

    p = plan_job(_req(preset="fast", options={"train": {"steps": "500"}}), SETTINGS)
    train = dict(p.stage("train").hyperparameters)
    assert set(train) == set(to_strings(TrainConfig()))  # every option, resolved
    assert all(isinstance(v, str) for v in train.values())
    assert train["steps"] == "500"  # the override beats the fast preset's 400
    assert train["sh_degree"] == "1" and train["downscale"] == "4"  # from the fast preset
    assert train["ssim_lambda"] == "0.2"  # a default the preset leaves alone
    sfm = p.stage("sfm")
    assert sfm.arguments[0] == "sfm" and len(sfm.arguments) == 1 + 2 * len(to_strings(SfmConfig()))
    pairs = dict(zip(sfm.arguments[1::2], sfm.arguments[2::2], strict=True))
    assert pairs["--max-side"] == "800" and pairs["--max-features"] == "8192"  # fast preset
    assert pairs["--matcher"] == "auto"  # default
    compress = dict(zip(p.stage("compress").arguments[1::2], p.stage("compress").arguments[2::2], strict=True))
    assert compress["--kmeans-iterations"] == "4" and compress["--quality-resolution"] == "160"
    assert p.preset == "fast"
    assert plan_job(_req(), SETTINGS).preset == "default"
    assert plan_job(_req(), SETTINGS).stage("train").hyperparameters["steps"] == "7000"


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"preset": "turbo"}, "Unknown preset"),
        ({"options": {"train": {"stpes": "1"}}}, "Did you mean 'steps'"),
        ({"options": {"train": {"steps": "lots"}}}, "not an integer"),
        ({"options": {"sfm": {"matcher": "psychic"}}}, "matcher"),
        ({"options": {"render": {"x": "1"}}}, "unknown stage"),
    ],
)
def test_bad_options_raise_config_invalid(kw, needle):
    with pytest.raises(ConfigInvalid, match=needle):
        plan_job(_req(**kw), SETTINGS)


def test_root_must_be_s3_or_file():
    with pytest.raises(ConfigInvalid):
        plan_job(_req(), PlanSettings(root="/tmp/x"))


def test_local_root_uses_the_same_layout():
    req = JobRequest(source_uri="file:///data/photos.zip", source_version="sha256:00ff")
    p = plan_job(req, PlanSettings(root="file:///work/out/"))
    assert p.stage("train").output("model").uri == f"file:///work/out/jobs/{p.job_id}/train/"
    assert p.stage("sfm").input("upload").uri == "file:///data/photos.zip"
    assert p.staged_upload_uri is None  # read in place
    assert JobRequest("file:///a%20b/c.zip").source_uri.endswith("c.zip")


def test_execution_input_is_json_and_sagemaker_shaped():
    p = plan_job(_req(email="a@b.co"), SETTINGS)
    doc = p.to_execution_input()
    assert json.loads(json.dumps(doc)) == doc
    plan = doc["plan"]
    assert doc["job_id"] == p.job_id and plan["email"] == "a@b.co"
    assert plan["order"] == list(P.STAGES)
    train = plan["stages"]["train"]
    assert train["cluster"] == {"InstanceCount": 1, "InstanceType": "ml.g5.2xlarge", "VolumeSizeInGB": 50}
    assert train["stopping_condition"] == {"MaxRuntimeInSeconds": 7200}
    assert train["use_spot"] is False
    assert train["image"].endswith("/train:abc")
    assert {m["Name"] for m in train["metric_definitions"]} >= {"loss", "psnr", "test_psnr", "num_gaussians"}
    thresholds = plan["stages"]["quality_gate"]["thresholds"]
    assert (thresholds["min_psnr"], thresholds["max_gaussians"]) == ("22.5", "1000000")
    # The capture checks' limits travel too, so a request's override reaches the gate Lambda.
    assert {"min_train_views", "min_sharpness", "max_held_out_offset", "min_psnr_gain"} <= set(thresholds)
    assert plan["stages"]["sfm"]["inputs"]["upload"]["uri"] == f"s3://bucket/jobs/{p.job_id}/upload/"


def test_spot_sets_max_wait_at_least_runtime():
    s = PlanSettings(root="s3://b/", use_spot=True, spot_max_wait_s=60,
                     train=StageResources(max_runtime_s=7200))
    train = plan_job(_req(), s).to_execution_input()["plan"]["stages"]["train"]
    assert train["use_spot"] is True
    assert train["stopping_condition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 7200}


def test_metric_definitions_match_progress_lines(capsys):
    from spaceport.local.progress import emit

    emit("train", step=500, loss=0.0412, psnr=24.31)
    emit("train", final=1, test_psnr=26.5, test_ssim=0.91, num_gaussians=123456, seconds=812.5)
    lines = capsys.readouterr().out.splitlines()
    found = {}
    for name, regex in P.METRIC_DEFINITIONS:
        for line in lines:
            m = re.search(regex, line)
            if m:
                found[name] = float(m.group(1))
    assert found == {"loss": 0.0412, "psnr": 24.31, "test_psnr": 26.5, "test_ssim": 0.91,
                     "num_gaussians": 123456.0, "train_seconds": 812.5}


def test_request_json_records_resolved_defaults():
    doc = plan_job(_req(preset="quality"), SETTINGS).to_request_json()
    assert doc.options["train"]["steps"] == "30000"
    assert doc.options["train"]["strategy"] == "mcmc"
    assert doc.options["sfm"]["max_side"] == "3200"
    assert doc.options["compress"]["kmeans_iterations"] == "20"
    assert (doc.options["quality_gate"]["min_psnr"], doc.options["quality_gate"]["max_gaussians"]) == ("22.5", "1000000")
    assert doc.request.preset == "quality" and RequestFile.model_validate_json(doc.to_json()) == doc


def test_settings_round_trip_through_mapping():
    import dataclasses

    m = dataclasses.asdict(SETTINGS)  # what cdk.json context holds
    assert P.settings_from_mapping(json.loads(json.dumps(m))) == SETTINGS
    with pytest.raises(ConfigInvalid):
        P.settings_from_mapping({"bogus": 1})


def test_write_failure_covers_training_and_processing(tmp_path, monkeypatch):
    from spaceport.core import contract
    from spaceport.core.errors import SfmFailed, parse_failure

    monkeypatch.setenv(contract.SM_ROOT_ENV, str(tmp_path))
    contract.write_failure(SfmFailed("Only 3 of 40 images registered", "Take more photos", registered=3), "sfm")
    full = contract.read_failure(tmp_path)
    assert (full.error, full.reason, full.fix, full.details, full.stage) == (
        "SfmFailed", "Only 3 of 40 images registered.", "Take more photos.", {"registered": 3}, "sfm")
    for name in ("failure", "message"):
        # SageMaker prefixes FailureReason with "AlgorithmError: "; the record still parses whole.
        text = "AlgorithmError: " + (tmp_path / "output" / name).read_text()
        assert parse_failure(text) == full
    # Non-ASCII reasons are cut at 1 KiB of UTF-8 without splitting a character, and still parse.
    contract.write_failure(SfmFailed("é" * 2000, details="x" * 3000))
    line = (tmp_path / "output" / "message").read_bytes()
    assert len(line) <= 1024
    short = parse_failure(line.decode())
    assert short.error == "SfmFailed" and short.reason.startswith("éé") and short.details == {}
    assert contract.read_failure(tmp_path).details == {"details": "x" * 3000}  # failure.json keeps them all


@pytest.mark.parametrize("preset", P.PRESET_NAMES)
def test_every_preset_of_every_stage_plans_with_the_real_configs(preset):
    """Each stage's real PRESETS entry resolves through its real config class, all strings."""
    import importlib

    from spaceport.core.config import from_strings
    from spaceport.core.graph import GRAPH

    p = plan_job(JobRequest.from_s3("b", "uploads/x.zip", etag="e", preset=preset), PlanSettings(root="s3://b/"))
    for sd in GRAPH:
        if sd.config is None or sd.kind == "gate":
            continue
        module = importlib.import_module(f"spaceport.stages.{sd.name}.config")
        opts = p.stage(sd.name).options
        assert opts and all(isinstance(v, str) for v in opts.values())
        # The plan passes on exactly the preset's configuration (defaults <- PRESETS[preset]).
        assert from_strings(sd.config, opts) == from_strings(sd.config, module.PRESETS[preset])
    assert dict(p.stage("train").hyperparameters) == p.stage("train").options
    # The gate's thresholds are the deployment's settings, as its options, beside its capture checks' defaults.
    from spaceport.stages.gate import QualityTargets

    gate_opts = p.stage("quality_gate").options
    assert (gate_opts["min_psnr"], gate_opts["max_gaussians"]) == ("17.0", "3000000")
    assert from_strings(QualityTargets, gate_opts) == QualityTargets(min_psnr=17.0, max_gaussians=3_000_000)
    assert p.stage("sfm").arguments and p.stage("compress").arguments


def test_planning_imports_nothing_heavy():
    """The plan (Lambdas, CDK) imports the real stage configs without numpy/torch/pycolmap/gsplat."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    code = (
        "from spaceport.core.plan import JobRequest, PlanSettings, plan_job, PRESET_NAMES\n"
        "for preset in PRESET_NAMES:\n"
        "    plan_job(JobRequest.from_s3('b', 'uploads/x.zip', etag='e', preset=preset), PlanSettings(root='s3://b/'))\n"
        "import sys\n"
        "heavy = {'numpy', 'torch', 'pycolmap', 'gsplat'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
