"""Pure parts of the job record and the quality gate."""

import json

import pytest
from lambdas_support import load_handler

from spaceport.aws import records
from spaceport.errors import QualityBelowTarget


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        # Training job: FailureReason carries the failure file behind SageMaker's prefix.
        ({"Error": "States.TaskFailed", "Cause": json.dumps({"TrainingJobStatus": "Failed", "FailureReason":
          "AlgorithmError: TrainingDiverged: Loss became NaN at step 812. Lower means_lr., exit code: 2"})},
         ("TrainingDiverged", "Loss became NaN at step 812.", "Lower means_lr.")),
        # Processing job: ExitMessage carries it (written by contract.write_failure).
        ({"Error": "States.TaskFailed", "Cause": json.dumps({"FailureReason": "AlgorithmError: See job logs",
          "ExitMessage": "CorruptArchive: The zip cannot be read."})},
         ("CorruptArchive", "The zip cannot be read.", None)),
        # A Lambda raising a Spaceport error.
        ({"Error": "QualityBelowTarget", "Cause": json.dumps({"errorType": "QualityBelowTarget",
          "errorMessage": "Held-out PSNR is 18.00 dB. Capture more views."})},
         ("QualityBelowTarget", "Held-out PSNR is 18.00 dB.", "Capture more views.")),
        # Capacity errors that outlived their retries.
        ({"Error": "SageMaker.ResourceLimitExceededException", "Cause": "limit is 0"},
         ("CapacityError", "limit is 0", None)),
        ({"Error": "States.TaskFailed", "Cause": "something odd"}, ("StageFailed", "something odd", None)),
    ],
)
def test_describe_failure(error, expected):
    got = records.describe_failure(error)
    name, reason, fix = expected
    assert got["error"] == name and got["reason"] == reason
    if fix:
        assert got["fix"] == fix
    assert got["cause"].startswith(reason)


def test_failed_stage_is_first_without_result():
    plan = {"order": ["sfm", "train", "quality_gate", "compress", "publish"]}
    assert records.failed_stage(plan, {}) == "sfm"
    assert records.failed_stage(plan, {"sfm": {}, "train": {}}) == "quality_gate"


def test_stage_summary_handles_iso_and_epoch_times():
    spec = {"cluster": {"InstanceType": "ml.m5.large", "InstanceCount": 1}}
    s = records.stage_summary("sfm", {"ProcessingStartTime": "2026-01-01T00:00:00Z",
                                      "ProcessingEndTime": "2026-01-01T01:00:00Z"}, spec)
    assert s["seconds"] == 3600 and s["cost_usd"] == 0.115
    s = records.stage_summary("train", {"TrainingTimeInSeconds": 100, "BillableTimeInSeconds": 40,
                                        "ResourceConfig": {"InstanceType": "ml.unknown"}}, spec)
    assert s["billable_seconds"] == 40 and s["cost_usd"] is None  # spot savings; unknown price


def test_quality_gate_checks_psnr_and_gaussian_cap():
    check = load_handler("quality_gate").check
    training = {"FinalMetricDataList": [{"MetricName": "test_psnr", "Value": 25.0},
                                        {"MetricName": "num_gaussians", "Value": 1000.0}]}
    assert check({"min_psnr": 24.0, "max_gaussians": 1000}, training)["test_psnr"] == 25.0
    with pytest.raises(QualityBelowTarget, match=r"below the 26\.00 dB target"):
        check({"min_psnr": 26.0, "max_gaussians": 1000}, training)
    with pytest.raises(QualityBelowTarget, match="over the cap of 999"):
        check({"min_psnr": 20.0, "max_gaussians": 999}, training)
    with pytest.raises(QualityBelowTarget, match="no held-out PSNR"):
        check({"min_psnr": 20.0, "max_gaussians": 999}, {})
