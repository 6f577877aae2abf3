"""What a caught SageMaker stage error means: wait and run it again, or fail now with the fix.

The state machine catches every error of a SageMaker ``.sync`` task (``States.ALL``) and hands
``{"Error", "Cause"}`` to ClassifyFailure, which decides here, from the cause, whether waiting can
help. The error names and causes this integration really produces:

- **At job creation** (the ``Create*Job`` call fails). Step Functions calls SageMaker with the AWS
  SDK for Java and names the error ``SageMaker.<exception class>``. SageMaker's model declares only
  ``ResourceNotFound``, ``ResourceInUse`` and ``ResourceLimitExceeded`` for CreateTrainingJob and
  CreateProcessingJob (botocore ``data/sagemaker/2017-07-24/service-2.json``), so those arrive as
  ``SageMaker.ResourceLimitExceededException`` etc.; every other code (``ValidationException``,
  ``ThrottlingException``, ``AccessDeniedException``, internal errors) arrives as the SDK's catch-all
  ``SageMaker.AmazonSageMakerException``. The AWS Step Functions developer guide's SageMaker page
  (awsdocs/aws-step-functions-developer-guide ``doc_source/connect-sagemaker.md``) retries exactly
  these two names. The Java SDK's message ends with
  ``(Service: AmazonSageMaker; Status Code: 400; Error Code: ValidationException; Request ID: ...)``,
  which is where the code is read from here.
- **After the job ran** and ended Failed or Stopped: ``States.TaskFailed`` (the ASL spec's "a Task
  state failed", doc_source/concepts-error-handling.md) with the job's Describe*Job description as
  the Cause; its ``FailureReason`` starts with SageMaker's own class, e.g. ``CapacityError: Unable to
  provision requested ML compute capacity. Please retry using a different ML instance type.`` (the
  SageMaker Python SDK's ``_check_job_status`` raises its ``CapacityError`` on exactly that prefix,
  aws/sagemaker-python-sdk), ``... due to InsufficientInstanceCapacity error``, or
  ``InternalServerError: We encountered an internal error. Please try again.``

So ``SageMaker.AmazonSageMakerException`` alone says nothing: a bad image, a bad parameter and
throttling all carry it. Retrying on the name retried validation errors for half an hour; this
module reads the code and the text instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spaceport.core.errors import JobRejected

#: The AWS SDK for Java's exception message suffix: the HTTP status and the service's error code.
_SDK = re.compile(r"\(Service: (?P<service>[\w ]+); Status Code: (?P<status>\d{3}); "
                  r"Error Code: (?P<code>[\w.]+)(?:; Request ID: [^;)]*)?(?:; Proxy: [^)]*)?\)\s*$")
#: Error codes (and HTTP statuses) that mean "not now": AWS's throttling codes and server faults.
THROTTLING_CODES = frozenset({"ThrottlingException", "Throttling", "ThrottledException", "TooManyRequestsException",
                              "RequestLimitExceeded", "RequestThrottled", "SlowDown"})
SERVER_CODES = frozenset({"InternalFailure", "InternalServerError", "InternalServerException", "ServiceUnavailable",
                          "ServiceUnavailableException"})
#: A job that was created and then failed for lack of instances, or on SageMaker's side.
CAPACITY = re.compile(
    r"\bCapacityError\b|Insufficient\w*Capacity|insufficient capacity|"
    r"Unable to provision requested ML compute capacity|spot (?:instance )?interrupt", re.IGNORECASE)
INTERNAL = re.compile(r"^\s*InternalServerError\b|We encountered an internal error", re.IGNORECASE)
#: ResourceLimitExceeded that no wait can fix: the instance type does not exist in this region.
NOT_IN_REGION = re.compile(r"is not available in this region", re.IGNORECASE)


@dataclass(frozen=True)
class SdkError:
    """A SageMaker API error as Step Functions reports it at job creation."""

    message: str
    """SageMaker's sentence, without the SDK's suffix."""
    code: str
    """The service's error code (``ValidationException``, ``ThrottlingException``, ...)."""
    status: int

    @property
    def transient(self) -> bool:
        """Throttling and server faults: the same request can succeed later."""
        return self.code in THROTTLING_CODES or self.code in SERVER_CODES or self.status == 429 or self.status >= 500


def parse_sdk_error(name: str, cause: str) -> SdkError | None:
    """The code and message of a ``SageMaker.*`` creation error, or None for anything else."""
    if not name.startswith("SageMaker."):
        return None
    match = _SDK.search(cause or "")
    if match is None:
        # No suffix: the exception class is all there is to go on.
        return SdkError(message=(cause or "").strip(), code=name.split(".", 1)[1], status=0)
    return SdkError(message=cause[:match.start()].strip(), code=match.group("code"), status=int(match.group("status")))


def job_failure_transient(text: str) -> bool:
    """Whether a job's FailureReason says it lost (or never got) its instances, or SageMaker failed it."""
    return bool(CAPACITY.search(text) or INTERNAL.search(text))


def rejected(error: SdkError, stage: str | None, kind: str | None) -> JobRejected:
    """The typed error of a creation request SageMaker refused: the deployment is wrong, not the upload,
    so the fix names the setting (and the stack's preflight, ``spaceport aws doctor``)."""
    text = error.message.rstrip(".") or error.code
    where = f"the {stage} stage's" if stage else "the stage's"
    lower = text.lower()
    if "instancetype" in lower.replace(" ", "") or NOT_IN_REGION.search(text):
        jobs = f"{kind} jobs" if kind else "this job kind"
        fix = (f"Set instance_types.{stage or '<stage>'} to an instance type SageMaker offers for {jobs} in this "
               "region (cdk deploy -c spaceport.instance_types=...), then upload again")
    elif "image" in lower or "repository" in lower:
        fix = ("Build the stage images and check them with `spaceport aws doctor` (docs/aws.md, Images), "
               "then upload again")
    elif error.code in ("AccessDeniedException", "AccessDenied") or "role" in lower or "not authorized" in lower:
        fix = "Redeploy the stack with `cdk deploy` so the SageMaker role and its permissions exist, then upload again"
    else:
        fix = ("Fix the setting SageMaker names, redeploy with `cdk deploy`, check it with `spaceport aws doctor`, "
               "then upload again")
    return JobRejected(f"SageMaker refused to create {where} job ({error.code}): {text}", fix,
                       code=error.code, at="create")
