from spaceport.core.errors import ERRORS, FailureRecord, StageFailed, TooFewRegistered, parse_failure


def test_the_record_names_the_class_reason_fix_and_details():
    err = TooFewRegistered("Only 3 of 20 images registered", registered=3, total=20)
    rec = err.record("sfm")
    assert rec == FailureRecord(error="TooFewRegistered", reason="Only 3 of 20 images registered.",
                                fix=TooFewRegistered.default_fix, details={"registered": 3, "total": 20}, stage="sfm")
    back = rec.to_error()
    assert type(back) is TooFewRegistered and back.reason == err.reason and back.details == err.details


def test_parse_failure_reads_records_lambda_errors_and_plain_text():
    assert parse_failure(TooFewRegistered("x").record().line()).error == "TooFewRegistered"
    # A Lambda's typed error (Step Functions: errorType + message "reason fix").
    lam = parse_failure("ConfigInvalid: bad steps. " + ERRORS["ConfigInvalid"].default_fix)
    assert (lam.error, lam.reason) == ("ConfigInvalid", "bad steps.")
    crash = parse_failure("Segmentation fault")
    assert (crash.error, crash.reason, crash.fix) == ("StageFailed", "Segmentation fault.", StageFailed.default_fix)
    assert "InputInvalid" in ERRORS and "QualityBelowTarget" in ERRORS and ERRORS["StageFailed"] is StageFailed


def test_reason_and_fix_end_in_one_stop_but_keep_question_and_exclamation_marks():
    from spaceport.core.errors import ConfigInvalid

    err = ConfigInvalid("Unknown train option 'stpes'. Did you mean 'steps'?", "Fix the option name!")
    assert err.reason == "Unknown train option 'stpes'. Did you mean 'steps'?"
    assert err.fix == "Fix the option name!"
    assert str(err) == "Unknown train option 'stpes'. Did you mean 'steps'? Fix the option name!"
    assert ConfigInvalid("No images", "Add some").reason == "No images."
    assert str(ConfigInvalid("No images...", "Add some.")) == "No images. Add some."


def test_unknown_option_suggestion_is_not_followed_by_a_stop():
    import pytest

    from spaceport.core.config import from_strings
    from spaceport.core.errors import ConfigInvalid
    from spaceport.stages.train.config import TrainConfig

    with pytest.raises(ConfigInvalid) as info:
        from_strings(TrainConfig, {"stpes": "1"})
    assert "Did you mean 'steps'?" in str(info.value)
    assert "?." not in str(info.value)


def test_look_at_and_psnr_are_the_ones_every_part_uses():
    import math

    import numpy as np

    from spaceport.geometry.imaging import look_at, psnr_db

    w2c = look_at(np.array([0.0, -5.0, 0.0]), np.zeros(3))
    # The target lies on the optical axis (+z), 5 m ahead; world up (+z) is image up (-y).
    assert np.allclose(w2c @ [0, 0, 0, 1], [0, 0, 5, 1]) and np.allclose(w2c[:3, :3] @ [0, 0, 1], [0, -1, 0])
    assert np.allclose(w2c[:3, :3] @ w2c[:3, :3].T, np.eye(3))
    straight_down = look_at(np.array([0.0, 0.0, 5.0]), np.zeros(3))  # up parallel to the view: still a rotation
    assert np.allclose(straight_down[:3, :3] @ straight_down[:3, :3].T, np.eye(3))
    assert psnr_db(0.01) == 20.0 and psnr_db(0.0) == 100.0 and math.isclose(psnr_db(1e-3), 30.0)
