"""Deploy-time custom resource: make the result-link secret once, in the data bucket.

The secret is generated here, in the account, so it is never in the code, the template or the
cloud assembly. It is written as the CloudFront KeyValueStore import file (spaceport.cloud.links),
which the stack's KeyValueStore imports on creation and the notify Lambda reads to sign links.
An existing secret is kept on every later deploy (links already sent stay valid); deleting the
stack leaves it with the (retained) bucket.

CloudFormation waits for a response at the pre-signed ``ResponseURL`` (for up to an hour), so
every outcome, failures included, is sent there. cfn-response exists only for inline code, and
this is a single PUT of a JSON document: urllib does it.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import boto3
from botocore.exceptions import ClientError

from spaceport.cloud import links


def ensure_secret(s3: Any, bucket: str) -> bool:
    """Write a new secret unless a valid one is there; True when one was written."""
    try:
        body = s3.get_object(Bucket=bucket, Key=links.SECRET_OBJECT)["Body"].read()
    except ClientError as exc:
        # Without s3:ListBucket a missing object reads as AccessDenied; this role may read exactly
        # this key, so either answer means there is no secret yet.
        if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404", "AccessDenied", "403"):
            raise
    else:
        links.read_secret(body)  # a malformed file fails the deploy, naming the object
        return False
    s3.put_object(Bucket=bucket, Key=links.SECRET_OBJECT, Body=links.secret_file(links.new_secret()),
                  ContentType="application/json")
    return True


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    bucket = event["ResourceProperties"]["Bucket"]
    response = {"Status": "SUCCESS", "Reason": "", "PhysicalResourceId": f"s3://{bucket}/{links.SECRET_OBJECT}",
                "StackId": event["StackId"], "RequestId": event["RequestId"],
                "LogicalResourceId": event["LogicalResourceId"], "Data": {}}
    try:
        if event["RequestType"] in ("Create", "Update"):
            written = ensure_secret(boto3.client("s3"), bucket)
            response["Data"] = {"Written": str(written).lower()}
    except Exception as exc:
        response.update(Status="FAILED", Reason=f"{type(exc).__name__}: {exc} (log stream {context.log_stream_name})")
    body = json.dumps(response).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT",
                                     headers={"Content-Type": "", "Content-Length": str(len(body))})
    with urllib.request.urlopen(request, timeout=30) as reply:
        reply.read()
    return response
