from __future__ import annotations

import base64
import io
import json
import re
import shutil
import tarfile
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from spaceport.stages.publish.command import publish
from spaceport.stages.publish.report import StageInputs, build_report
from spaceport.stages.publish.serve import make_server


def _images(page: str) -> list[Image.Image]:
    out = []
    for _mime, data in re.findall(r'src="data:(image/\w+);base64,([A-Za-z0-9+/=]+)"', page):
        out.append(Image.open(io.BytesIO(base64.b64decode(data))))
    return out


def test_report_is_self_contained_with_every_section(job_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    summary = publish(job_dir, out)
    page = (out / "index.html").read_text()
    # No external fetches: every image is a data: URI, no script or stylesheet links (the one inline
    # script passes a result link's query on to the viewer link; the icon is an empty data: URI).
    assert not re.search(r'src="(?!data:)', page)
    assert not re.search(r"<script[^>]*\bsrc=", page) and page.count("<script") == 1
    assert re.findall(r"<link[^>]*>", page) == ["<link rel=icon href='data:,'>"]
    for heading in ("Input", "Structure from motion", "Training", "Held-out views (2)", "Compression",
                    "Timings and memory"):
        assert heading in page
    imgs = _images(page)
    # camera path + loss + PSNR + sizes plots, and 2 held-out views x (render, gt).
    assert len(imgs) == 4 + 4
    assert "24.5" in page and "registered_images" in page and "0.42" in page
    assert summary.viewer and (out / "viewer.html").is_file() and (out / "scene.sog").is_file()
    assert (out / "playcanvas.min.mjs").stat().st_size > 1_000_000


def test_report_survives_missing_stages(tmp_path: Path, job_dir: Path) -> None:
    shutil.rmtree(job_dir / "compressed")
    shutil.rmtree(job_dir / "train")
    out = tmp_path / "r"
    summary = publish(job_dir, out)
    page = (out / "index.html").read_text()
    assert "No metrics.json" in page and "No compress.json" in page
    assert summary.viewer is None and not (out / "viewer.html").exists()
    # Only the SfM stage: the camera plot is still drawn.
    assert len(_images(page)) == 1


def test_report_reads_sagemaker_model_tarball(tmp_path: Path, job_dir: Path) -> None:
    train = job_dir / "train"
    tar_path = tmp_path / "model.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for p in train.rglob("*"):
            tar.add(p, arcname=str(p.relative_to(train)), recursive=False)
    shutil.rmtree(train)
    train.mkdir()
    shutil.move(tar_path, train / "model.tar.gz")
    out = tmp_path / "r"
    build_report(StageInputs.from_root(job_dir), out, scratch=tmp_path / "unpacked")
    page = (out / "index.html").read_text()
    assert "test_psnr" in page and "Held-out views (2)" in page
    assert not (tmp_path / "unpacked" / "splat.ply").exists()  # the PLY is not unpacked for the report
    # The Publish job: the viewer's camera comes from cameras.json inside the tarball; nothing extra is left in OUT.
    publish(job_dir, tmp_path / "r2")
    assert sorted(p.name for p in (tmp_path / "r2").iterdir()) == [
        "index.html", "playcanvas.min.mjs", "scene.sog", "viewer.html"]
    page = (tmp_path / "r2" / "viewer.html").read_text()
    cfg = json.loads(re.search(r'id="spaceport-config">(.*?)</script>', page).group(1))
    assert max(abs(v) for v in cfg["target"]) < 1e-6


def test_report_from_an_aws_shaped_job_has_the_training_curves(tmp_path: Path, job_dir: Path) -> None:
    """No logs anywhere: train/ holds only SageMaker's model.tar.gz; the curves come from metrics.json."""
    train = job_dir / "train"
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:
        tar.add(train, arcname=".")
    shutil.rmtree(train)
    train.mkdir()
    shutil.move(tmp_path / "model.tar.gz", train / "model.tar.gz")
    publish(job_dir, tmp_path / "r")
    page = (tmp_path / "r" / "index.html").read_text()
    assert 'alt="loss"' in page and 'alt="psnr"' in page and "No training curve" not in page


def test_a_summary_of_another_shape_is_an_error_naming_the_file(job_dir: Path, tmp_path: Path) -> None:
    from spaceport.core.errors import ModelInvalid

    (job_dir / "compressed" / "compress.json").write_text(json.dumps({"sog_bytes": 10, "ratio": 6.4}))
    with pytest.raises(ModelInvalid, match=r"compressed/compress\.json is not a valid compress\.json"):
        publish(job_dir, tmp_path / "r")


def test_view_server_binds_localhost_and_serves_module_js(job_dir: Path, tmp_path: Path) -> None:
    publish(job_dir, tmp_path / "report")
    server = make_server(tmp_path, port=0)  # the run folder: report/ is found inside it
    try:
        import threading

        threading.Thread(target=server.serve_forever, daemon=True).start()
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/playcanvas.min.mjs") as resp:
            assert resp.headers["Content-Type"].startswith("text/javascript")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/viewer.html") as resp:
            page = resp.read().decode()
        cfg = json.loads(re.search(r'id="spaceport-config">(.*?)</script>', page).group(1))
        # The initial camera is the first training camera; the orbit target is where the cameras look.
        assert cfg["sog"] == "scene.sog"
        assert max(abs(v) for v in cfg["target"]) < 1e-6
        assert abs(sum(v * v for v in cfg["position"]) ** 0.5 - (9 + 0.25) ** 0.5) < 1e-6
    finally:
        server.shutdown()
        server.server_close()


def test_publish_rejects_a_folder_without_stages(tmp_path: Path) -> None:
    from spaceport.core.errors import InputInvalid

    with pytest.raises(InputInvalid):
        publish(tmp_path, tmp_path / "out")


def test_publish_command_uses_the_processing_job_paths(job_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from spaceport.cli import main

    sm = tmp_path / "sm"
    (sm / "processing").mkdir(parents=True)
    shutil.copytree(job_dir, sm / "processing" / "input")
    monkeypatch.setenv("SPACEPORT_SM_ROOT", str(sm))
    assert main(["publish"]) == 0
    out = sm / "processing" / "output" / "report"
    assert (out / "index.html").is_file() and (out / "viewer.html").is_file()


def test_report_never_shows_the_email(job_dir: Path, tmp_path: Path) -> None:
    from spaceport.core.plan import JobRequest, PlanSettings, plan_job
    from spaceport.core.summaries import JobRecord

    request = plan_job(JobRequest("s3://b/uploads/x.zip", "e", email="someone@example.com", preset="fast"),
                       PlanSettings(root="s3://b/")).to_request_json()
    assert request.request.email == "someone@example.com"
    (job_dir / "job.json").write_text(JobRecord(job_id="sp-x", status="RUNNING", request=request,
                                                email="someone@example.com").model_dump_json())
    publish(job_dir, tmp_path / "r")
    page = (tmp_path / "r" / "index.html").read_text()
    assert "someone@example.com" not in page and "sp-x" in page


def test_report_shows_no_account_arn_bucket_or_email_from_the_job_record(job_dir: Path, tmp_path: Path) -> None:
    """The report is shared by link: of the job record it shows chosen fields only."""
    record = (Path(__file__).parent / "data" / "job_aws.json").read_text()
    (job_dir / "job.json").write_text(record)
    publish(job_dir, tmp_path / "r")
    page = (tmp_path / "r" / "index.html").read_text()
    import html as html_mod
    import re

    text = html_mod.unescape(page)
    for secret in ("123456789012", "arn:", "alice.smith", "example.org", "s3://", "spaceport-data",
                   "3HL4kqtJlcpXroDTDmJ", "sp-my-garden-3f9a1c2b7d-sfm", "checkpoints"):
        assert secret not in text, secret
    assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", text)
    # What is shown: the job id, the upload's file name, chosen numbers and the resolved options.
    assert "sp-my-garden-3f9a1c2b7d" in text and "My Garden.zip" in text
    assert "ml.g5.2xlarge" in text and "811" in text and "0.4213" in text
    assert "options.train.steps" in text and "48,213,377" in text
    # Nothing else published beside the report (viewer, summaries) carries them either.
    for path in (tmp_path / "r").rglob("*"):
        if path.is_file() and path.suffix in (".html", ".json", ".txt"):
            body = path.read_text(errors="replace")
            assert "123456789012" not in body and "alice.smith" not in body, path


def test_report_shows_every_gate_figure_and_names_the_capture_misses(job_dir: Path, tmp_path: Path) -> None:
    import html as html_mod

    from spaceport.core.errors import QualityBelowTarget
    from spaceport.core.summaries import GateResult, JobRecord, StageRecord

    gate = GateResult(passed=False, failed=["sharpness", "psnr_gain"], test_psnr=16.0, num_gaussians=5000,
                      min_psnr=15.0, max_gaussians=100_000, train_views=9, min_train_views=4, sharpness=0.42,
                      min_sharpness=1.3, held_out_offset=0.9, held_out_farthest="0008.jpg", max_held_out_offset=1.3,
                      psnr_gain=0.6, min_psnr_gain=2.0)
    miss = QualityBelowTarget("the photos are blurred", "Retake them with a faster shutter", **gate.model_dump())
    (job_dir / "job.json").write_text(JobRecord(
        job_id="sp-blur", status="FAILED", quality_gate=gate, stage="quality_gate", failure=miss.record("quality_gate"),
        stages={"quality_gate": StageRecord(status="failed", numbers=gate.headline(),
                                            failure=miss.record("quality_gate"))}).model_dump_json())
    publish(job_dir, tmp_path / "r")
    text = html_mod.unescape((tmp_path / "r" / "index.html").read_text())
    assert ("Below target: photos blurred (sharpness 0.42, at least 1.3); held-out PSNR only 0.60 dB above the "
            "photos' mean colour, at least 2 dB (camera poses likely wrong)") in text
    assert "Fix: Retake them with a faster shutter." in text.replace("<b>", "").replace("</b>", "")
    rows = re.findall(r"<tr class=(\w+)><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>", text)
    assert rows == [("pass", "training views", "9", "≥ 4"), ("fail", "photo sharpness (1/px²)", "0.42", "≥ 1.3"),
                    ("pass", "held-out offset (widest training gaps)", "0.90", "≤ 1.3"),
                    ("fail", "held-out PSNR above mean colour (dB)", "0.60", "≥ 2"),
                    ("pass", "held-out PSNR (dB)", "16.00", "≥ 15"), ("pass", "Gaussians", "5000", "≤ 100000")]


def test_report_of_a_gate_record_without_capture_figures_shows_psnr_and_count(job_dir: Path, tmp_path: Path) -> None:
    from spaceport.core.summaries import GateResult, JobRecord

    old = GateResult.model_validate({"passed": False, "test_psnr": 14.0, "num_gaussians": 5000, "min_psnr": 20.0,
                                     "max_gaussians": 100_000})  # an older version's record: no figures, no list
    (job_dir / "job.json").write_text(JobRecord(job_id="sp-old", status="FAILED", quality_gate=old).model_dump_json())
    publish(job_dir, tmp_path / "r")
    page = (tmp_path / "r" / "index.html").read_text()
    assert "Below target: held-out PSNR 14.00 dB, target 20.00 dB" in page
    assert re.findall(r"<tr class=(\w+)><td>([^<]+)</td>", page) == [("fail", "held-out PSNR (dB)"),
                                                                      ("pass", "Gaussians")]


def test_held_out_views_say_they_are_rendered_at_each_photos_exposure(job_dir: Path, tmp_path: Path, cams) -> None:
    """With exposure matching, the held-out renders are at their photos' EXIF exposures and the splat at
    the median: the report says so beside them; without it, it says nothing of exposure."""
    from conftest import write_train

    from spaceport.core.summaries import ExposureFit

    publish(job_dir, tmp_path / "plain")
    assert "EXIF exposure" not in (tmp_path / "plain" / "index.html").read_text()
    write_train(job_dir / "train", cams, exposure=ExposureFit(references={"Apple iPhone 7": 0.1286}, spread=1.875, gamma=0.39))
    publish(job_dir, tmp_path / "matched")
    page = (tmp_path / "matched" / "index.html").read_text()
    assert "render | ground truth; each render at its photo's EXIF exposure (photos span 1.88x" in page
