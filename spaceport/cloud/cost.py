"""Estimated SageMaker cost of a job, from per-stage billable seconds.

Prices are on-demand USD per instance-hour in us-east-1 (SageMaker pricing page, 2025); they are
an estimate for the email, not a bill. Unknown types count as zero and are named in the record.
"""

from __future__ import annotations

PRICE_PER_HOUR_USD: dict[str, float] = {
    "ml.m5.large": 0.115,
    "ml.m5.xlarge": 0.23,
    "ml.m5.2xlarge": 0.461,
    "ml.c5.2xlarge": 0.408,
    "ml.c5.4xlarge": 0.816,
    "ml.c5.9xlarge": 1.836,
    "ml.g4dn.xlarge": 0.736,
    "ml.g4dn.2xlarge": 0.94,
    "ml.g5.xlarge": 1.408,
    "ml.g5.2xlarge": 1.515,
    "ml.g5.4xlarge": 2.03,
    "ml.g6.xlarge": 1.006,
    "ml.g6.2xlarge": 1.222,
    "ml.p3.2xlarge": 3.825,
    "ml.p4d.24xlarge": 37.688,
}


def stage_cost_usd(instance_type: str, billable_seconds: float, instance_count: int = 1) -> float | None:
    """Cost of one stage in USD, or None when the instance type has no known price."""
    price = PRICE_PER_HOUR_USD.get(instance_type)
    if price is None:
        return None
    return round(price * instance_count * max(billable_seconds, 0.0) / 3600.0, 4)
