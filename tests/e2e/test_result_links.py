"""Result links through the real edge function (cloud/stacks/edge/link_check.js run in node, see edge.py),
signed by the real link code (spaceport.cloud.links): one link opens the viewer and every file it
loads in headless Chromium; an expired, altered or foreign link gets 403."""

from __future__ import annotations

import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from spaceport.cloud import links
from spaceport.stages.publish.command import publish

from .edge import EdgeServer
from .run_chromium import SPHERE_SOG, Chromium, lit_fraction

JOB, OTHER = "sp-garden-0123456789abcdef", "sp-house-fedcba9876543210"
DOMAIN = "d111111abcdef8.cloudfront.net"
WEEK_S = 7 * 24 * 3600
#: A finished job's result files (keys as notify links them) and what else lies under its prefix.
RESULTS = ("report/index.html", "report/viewer.html", "report/playcanvas.min.mjs", "report/scene.sog",
           "compressed/scene.sog", "compressed/scene.spz", f"train/{JOB}-train/output/model.tar.gz")
NOT_RESULTS = ("upload/garden.zip", "job.json", "request.json", "sfm/sfm.json")


@pytest.fixture(scope="module")
def bucket(tmp_path_factory) -> Path:
    """A folder laid out like the data bucket: two finished jobs."""
    root = tmp_path_factory.mktemp("bucket")
    for job in (JOB, OTHER):
        prefix = root / "jobs" / job
        (prefix / "compressed").mkdir(parents=True)
        shutil.copyfile(SPHERE_SOG, prefix / "compressed" / "scene.sog")
        publish(prefix, prefix / "report")
        for rel in ("compressed/scene.spz", f"train/{job}-train/output/model.tar.gz", *NOT_RESULTS):
            (prefix / rel).parent.mkdir(parents=True, exist_ok=True)
            (prefix / rel).write_bytes(f"{job}/{rel}".encode())
    return root


@pytest.fixture(scope="module")
def secret() -> str:
    return links.new_secret()


@pytest.fixture(scope="module")
def edge(bucket, secret, tmp_path_factory):
    secret_file = tmp_path_factory.mktemp("kvs") / "link-secret.json"
    secret_file.write_bytes(links.secret_file(secret))
    with EdgeServer(bucket, secret_file) as server:
        yield server


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _link(edge: EdgeServer, secret: str, key: str, expires: int | None = None, job: str = JOB) -> str:
    expires = int(time.time()) + WEEK_S if expires is None else expires
    return edge.local(links.result_url(DOMAIN, f"jobs/{job}/{key}", secret=secret, expires=expires))


def test_a_link_opens_each_result_file_of_its_job(edge, secret, bucket):
    # Every folder links are made for (and the bucket policy opens) is one the edge function serves.
    assert {key.split("/")[0] for key in RESULTS} == set(links.RESULT_FOLDERS)
    for key in RESULTS:
        status, body = _get(_link(edge, secret, key))
        assert status == 200, key
        assert body == (bucket / "jobs" / JOB / key).read_bytes(), key


def test_expired_altered_foreign_or_missing_tokens_get_403(edge, secret):
    now = int(time.time())
    good = _link(edge, secret, "compressed/scene.sog")
    assert _get(good)[0] == 200
    path, query = good.split("?")
    exp, sig = (dict(p.split("=") for p in query.split("&"))[k] for k in (links.EXPIRES, links.SIGNATURE))
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    forbidden = {
        "expired a second ago": _link(edge, secret, "compressed/scene.sog", expires=now - 1),
        "signature altered": f"{path}?exp={exp}&sig={flipped}",
        "expiry pushed later, same signature": f"{path}?exp={int(exp) + WEEK_S}&sig={sig}",
        "no token": path,
        "expiry only": f"{path}?exp={exp}",
        "signed with another secret": _link(edge, links.new_secret(), "compressed/scene.sog"),
        # This job's token on the other job's file: the signature covers the job's prefix.
        "another job's file": good.replace(f"/jobs/{JOB}/", f"/jobs/{OTHER}/"),
        "another job's viewer": _link(edge, secret, "report/viewer.html").replace(JOB, OTHER),
        "climbing out with ..": _link(edge, secret, "report/../../" + OTHER + "/compressed/scene.sog"),
    }
    for name, url in forbidden.items():
        assert _get(url)[0] == 403, name
    # A valid token opens only the result folders of its job, not the upload or the records.
    for key in NOT_RESULTS:
        query = links.token_query(secret, JOB, now + WEEK_S)
        assert _get(f"http://127.0.0.1:{edge.port}/jobs/{JOB}/{key}?{query}")[0] == 403, key
    # The other job's own link still works: the refusals above are the token's scope, not the file.
    assert _get(_link(edge, secret, "compressed/scene.sog", job=OTHER))[0] == 200


@pytest.mark.browser
def test_viewer_opened_from_a_link_renders_and_every_request_carries_the_token(edge, secret, chromium, tmp_path):
    expires = int(time.time()) + WEEK_S
    url = _link(edge, secret, "report/viewer.html", expires=expires)
    token = "?" + url.split("?", 1)[1]
    shot = Path(os.environ.get("SPACEPORT_SCREENSHOT_DIR", tmp_path)) / "viewer-from-link.png"
    seen_before = len(edge.requests)
    with Chromium(chromium, size=(800, 600)) as page:
        page.goto(url)
        state = page.wait_for("document.body.dataset.ready", 90, lambda v: v in ("1", "error"))
        status = page.evaluate("document.getElementById('status').textContent")
        page.screenshot(shot)
        report_href = page.evaluate("document.querySelector('#help a').href")
        # Follow the viewer's own link to the report, then the report's link back to the viewer.
        page.goto(report_href)
        page.wait_for("document.readyState === 'complete' && document.querySelector('a[href*=\"viewer.html\"]')", 30)
        viewer_href = page.evaluate("document.querySelector('a[href*=\"viewer.html\"]').href")
    assert state == "1", f"viewer not ready: state={state!r} status={status!r} console={page.console[-5:]}"
    lit = lit_fraction(shot)
    print(f"viewer through the edge check: {lit:.1%} of the canvas lit ({shot})")
    assert 0.15 < lit < 0.7  # the unit sphere from 3 units away covers ~35% of the canvas
    assert report_href.endswith(f"/jobs/{JOB}/report/index.html{token}")
    assert viewer_href.endswith(f"/jobs/{JOB}/report/viewer.html{token}")
    requests = edge.requests[seen_before:]
    uris = {r["uri"] for r in requests}
    assert {f"/jobs/{JOB}/report/{f}" for f in ("viewer.html", "playcanvas.min.mjs", "scene.sog", "index.html")} <= uris
    for r in requests:
        assert "?" + r["query"] == token and r["status"] == 200, r
    # The origin served every file untyped (as SageMaker's upload leaves them); the viewer-response
    # event typed the page and the engine, which the browser would not render or run otherwise.
    types = {r["uri"].rsplit("/", 1)[-1]: r["type"] for r in requests}
    assert types["viewer.html"] == types["index.html"] == "text/html; charset=utf-8"
    assert types["playcanvas.min.mjs"] == "text/javascript"
    assert types["scene.sog"] == "binary/octet-stream"
