"""The deploy-time custom resource that makes the result-link secret: written once, kept across
updates and deletes, and every outcome answered to CloudFormation's response URL."""

import http.server
import json
import threading
from typing import ClassVar

import boto3
import pytest
from lambdas_support import BUCKET, REGION, FakeContext, load_handler

from spaceport.cloud import links


class _Replies(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def cloudformation():
    """A stand-in for the pre-signed response URL CloudFormation waits on."""
    _Replies.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Replies)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/response", _Replies.received
    server.shutdown()
    server.server_close()


class _Context(FakeContext):
    log_stream_name = "2026/12/04/[$LATEST]abc"


def _event(kind: str, url: str) -> dict:
    return {"RequestType": kind, "ResponseURL": url, "StackId": "arn:aws:cloudformation:us-east-1:1:stack/S/x",
            "RequestId": f"req-{kind}", "LogicalResourceId": "ResultsLinkSecretFile",
            "ResourceType": "Custom::LinkSecret", "ResourceProperties": {"Bucket": BUCKET}}


def _secret(s3) -> str:
    return links.read_secret(s3.get_object(Bucket=BUCKET, Key=links.SECRET_OBJECT)["Body"].read())


def test_secret_is_made_once_and_kept(aws, cloudformation):
    url, replies = cloudformation
    s3 = boto3.client("s3", region_name=REGION)
    s3.delete_object(Bucket=BUCKET, Key=links.SECRET_OBJECT)  # the aws fixture deployed one already
    handler = load_handler("link_secret").handler
    handler(_event("Create", url), _Context())
    first = _secret(s3)
    assert len(first) >= 43  # 32 random bytes, base64url
    handler(_event("Update", url), _Context())
    handler(_event("Delete", url), _Context())
    assert _secret(s3) == first  # links already sent stay valid across deploys and stack deletes
    assert [r["Status"] for r in replies] == ["SUCCESS"] * 3
    assert [r["Data"].get("Written") for r in replies] == ["true", "false", None]
    assert {r["PhysicalResourceId"] for r in replies} == {f"s3://{BUCKET}/{links.SECRET_OBJECT}"}
    assert replies[0]["RequestId"] == "req-Create" and replies[0]["LogicalResourceId"] == "ResultsLinkSecretFile"
    # The file is the KeyValueStore import format CloudFront documents.
    doc = json.loads(s3.get_object(Bucket=BUCKET, Key=links.SECRET_OBJECT)["Body"].read())
    assert doc == {"data": [{"key": links.SECRET_KEY, "value": first}]}


def test_a_broken_secret_file_fails_the_deploy_with_the_reason(aws, cloudformation):
    url, replies = cloudformation
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=BUCKET, Key=links.SECRET_OBJECT, Body=b'{"data": []}')
    load_handler("link_secret").handler(_event("Update", url), _Context())
    (reply,) = replies
    assert reply["Status"] == "FAILED"
    assert links.SECRET_OBJECT in reply["Reason"] and "[$LATEST]abc" in reply["Reason"]
