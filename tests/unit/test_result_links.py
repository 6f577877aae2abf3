"""Result link signing (spaceport.cloud.links): a known answer, the link's shape, and what it refuses."""

import json

import pytest

from spaceport.cloud import links
from spaceport.core.errors import ConfigInvalid

JOB = "sp-garden-0123456789abcdef"
EXPIRES = 1_767_225_600  # 2026-01-01 00:00 UTC


def test_signature_is_hmac_sha256_of_the_job_prefix_and_expiry():
    # Independent answer: printf '/jobs/<job>/\n<exp>' | openssl dgst -sha256 -hmac test-secret -binary | base64url
    assert links.signature("test-secret", JOB, EXPIRES) == "0vshpsxO7sXW_FAjGPp7Z-p4vt4lzawY7eh_h3XLN3U"


def test_result_url_shape():
    url = links.result_url("d1.cloudfront.net", f"jobs/{JOB}/report/viewer.html", secret="test-secret",
                           expires=EXPIRES)
    assert url == (f"https://d1.cloudfront.net/jobs/{JOB}/report/viewer.html"
                   f"?exp={EXPIRES}&sig=0vshpsxO7sXW_FAjGPp7Z-p4vt4lzawY7eh_h3XLN3U")
    assert links.expiry_text(EXPIRES) == "2026-01-01 00:00 UTC"


@pytest.mark.parametrize("key", [f"jobs/{JOB}/job.json", f"jobs/{JOB}/upload/garden.zip", f"jobs/{JOB}/sfm/sfm.json",
                                 "uploads/garden.zip", "config/link-secret.json", "jobs/Not-A-Job/report/index.html"])
def test_links_are_made_for_result_files_only(key):
    with pytest.raises(ConfigInvalid):
        links.result_url("d1.cloudfront.net", key, secret="s", expires=EXPIRES)


def test_secret_file_is_the_keyvaluestore_import_format():
    secret = links.new_secret()
    assert len(secret) >= 43 and secret != links.new_secret()
    body = links.secret_file(secret)
    assert json.loads(body) == {"data": [{"key": "link-secret", "value": secret}]}
    assert links.read_secret(body) == secret
    for broken in (b"", b"{}", b'{"data": [{"key": "other", "value": "x"}]}'):
        with pytest.raises(ConfigInvalid, match=r"config/link-secret\.json"):
            links.read_secret(broken)


def test_the_documented_rotation_writes_a_secret_file_the_code_reads(tmp_path):
    """docs/aws.md's revocation steps make the new secret file with printf: it must read back."""
    import re
    import subprocess
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "aws.md").read_text()
    (printf,) = re.findall(r"^\s*(printf .* > link-secret\.json)$", doc, flags=re.M)
    subprocess.run(["bash", "-c", f"SECRET=s3cr3t-_x; {printf}"], cwd=tmp_path, check=True)
    assert links.read_secret((tmp_path / "link-secret.json").read_bytes()) == "s3cr3t-_x"
