from spaceport.local.progress import emit, parse_line, phase


def test_progress_lines_parse_back(capsys, monkeypatch):
    emit("train", step=10, loss=0.0412345, psnr=24.3)
    line = capsys.readouterr().out.strip()
    assert line == "stage=train step=10 loss=0.0412345 psnr=24.3"
    assert parse_line(line) == {"stage": "train", "step": "10", "loss": "0.0412345", "psnr": "24.3"}
    monkeypatch.setenv("SPACEPORT_LOG_FORMAT", "json")
    emit("sfm", phase="extract", images=3)
    parsed = parse_line(capsys.readouterr().out)
    assert parsed["phase"] == "extract" and parsed["images"] == "3"


def test_phase_records_seconds(capsys):
    timings = {}
    with phase("sfm", "match", timings):
        pass
    assert "match" in timings and timings["match"] >= 0
    assert "phase=match" in capsys.readouterr().out
