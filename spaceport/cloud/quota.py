"""SageMaker ``ResourceLimitExceeded`` at job creation: a quota in use (wait) or too small (ask).

SageMaker words it as (one line)::

    The account-level service limit 'ml.g5.2xlarge for training job usage' is 0 Instances, with
    current utilization of 0 Instances and a request delta of 1 Instances. Please use AWS Service
    Quotas to request an increase for this quota.

A quota of 0 (every new account, for GPU types) or below the request can never be met by waiting,
so the job fails at once with :class:`~spaceport.core.errors.QuotaExceeded` naming the quota to
request. A quota that other running jobs use up frees when they end: that is capacity, retried
with the workflow's bounded backoff.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spaceport.cloud.sagemaker_errors import NOT_IN_REGION
from spaceport.core.errors import QuotaExceeded

_LIMIT = re.compile(
    r"service limit '(?P<quota>[^']+)' is (?P<limit>\d+) Instances?"
    r"(?:, with current utilization of (?P<used>\d+) Instances?)?"
    r"(?: and a request delta of (?P<delta>\d+) Instances?)?", re.IGNORECASE)
_INSTANCE = re.compile(r"\bml\.[a-z0-9]+\.[a-z0-9]+\b")


@dataclass(frozen=True)
class Limit:
    """The numbers of one ResourceLimitExceeded message."""

    quota: str
    """The quota's name in Service Quotas, e.g. ``ml.g5.2xlarge for training job usage``."""
    limit: int
    used: int | None = None
    delta: int | None = None

    @property
    def instance_type(self) -> str | None:
        match = _INSTANCE.search(self.quota)
        return match.group(0) if match else None

    @property
    def transient(self) -> bool:
        """True when running jobs hold the quota (it frees); False when it can never fit one job."""
        return self.limit > 0 and (self.delta or 1) <= self.limit

    def error(self) -> QuotaExceeded:
        need = max(self.delta or 1, 1)
        what = f"an {self.instance_type}" if self.instance_type else "this job"
        return QuotaExceeded(
            f"SageMaker cannot start {what}: this account's quota '{self.quota}' is {self.limit}",
            f"Request at least {need} for '{self.quota}' in Service Quotas (Amazon SageMaker), then upload again")


def parse(error_name: str, text: str) -> Limit | None:
    """The limit in a caught ResourceLimitExceeded error, or None for any other error.

    A ResourceLimitExceeded whose text has no numbers counts as transient (limit unknown, so
    the bounded retry decides), except "The requested resource training-job/ml.x is not available
    in this region", which is no quota at all (None: the caller treats it as a rejected request).
    """
    if "ResourceLimitExceeded" not in error_name and "ResourceLimitExceeded" not in text:
        return None
    if NOT_IN_REGION.search(text):
        return None
    match = _LIMIT.search(text)
    if not match:
        return Limit(quota="unknown", limit=1)
    used, delta = match.group("used"), match.group("delta")
    return Limit(match.group("quota"), int(match.group("limit")), int(used) if used is not None else None,
                 int(delta) if delta is not None else None)
