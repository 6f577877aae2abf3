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
