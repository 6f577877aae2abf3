from spaceport.errors import ERRORS, TooFewRegistered, parse_failure


def test_one_line_names_the_class_reason_and_fix():
    err = TooFewRegistered("Only 3 of 20 images registered", registered=3, total=20)
    line = err.one_line()
    assert line.startswith("TooFewRegistered: Only 3 of 20 images registered.")
    assert "overlap" in line
    assert err.to_dict()["details"] == {"registered": 3, "total": 20}


def test_parse_failure_round_trips_known_names():
    assert parse_failure(TooFewRegistered("x").one_line())[0] == "TooFewRegistered"
    assert parse_failure("Segmentation fault") == ("StageFailed", "Segmentation fault")
    assert "InputInvalid" in ERRORS and "QualityBelowTarget" in ERRORS


def test_reason_and_fix_end_in_one_stop_but_keep_question_and_exclamation_marks():
    from spaceport.errors import ConfigInvalid

    err = ConfigInvalid("Unknown train option 'stpes'. Did you mean 'steps'?", "Fix the option name!")
    assert err.reason == "Unknown train option 'stpes'. Did you mean 'steps'?"
    assert err.fix == "Fix the option name!"
    assert str(err) == "Unknown train option 'stpes'. Did you mean 'steps'? Fix the option name!"
    assert ConfigInvalid("No images", "Add some").reason == "No images."
    assert ConfigInvalid("No images...", "Add some.").one_line().endswith("No images. Add some.")


def test_unknown_option_suggestion_is_not_followed_by_a_stop():
    import pytest

    from spaceport.config import from_strings
    from spaceport.errors import ConfigInvalid
    from spaceport.train.config import TrainConfig

    with pytest.raises(ConfigInvalid) as info:
        from_strings(TrainConfig, {"stpes": "1"})
    assert "Did you mean 'steps'?" in str(info.value)
    assert "?." not in str(info.value)
