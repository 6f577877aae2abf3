"""docs/aws.md states facts that live in code: prices (spaceport/cloud/cost.py), default instance
types and their quota names (cdk.json, the plan's job kinds). These keep the two from drifting."""

import re

import pytest
from infra_support import ROOT, context

from cloud.stacks.settings import DeploySettings
from spaceport.cloud.cost import PRICE_PER_HOUR_USD, stage_cost_usd
from spaceport.core.plan import JOB_KINDS

DOC = (ROOT / "docs" / "aws.md").read_text()
_ROW = re.compile(r"^\| (?P<cells>.+) \|$", re.MULTILINE)


def _rows(after: str) -> list[list[str]]:
    section = DOC[DOC.index(after):]
    section = section[:section.index("\n\n", section.index("|"))]
    rows = [[c.strip() for c in m.group("cells").split("|")] for m in _ROW.finditer(section)][1:]  # no header
    assert rows, f"the table after {after!r} in docs/aws.md has no rows"
    return rows


def test_cost_table_uses_the_prices_and_durations_it_states():
    total, stages, totals = 0.0, [], []
    for stage, instance, price, minutes, cost in _rows("| stage | instance | price / hour"):
        if stage == "**one job**":
            totals.append(cost)
            assert float(cost.strip("*$")) == pytest.approx(round(total, 2), abs=0.006)
            continue
        stages.append(stage.lower())
        assert float(price.lstrip("$")) == PRICE_PER_HOUR_USD[instance]
        assert instance == context()["spaceport"]["instance_types"][stage.lower()]
        value = stage_cost_usd(instance, int(minutes.split()[0]) * 60)
        total += value
        assert float(cost.lstrip("$")) == pytest.approx(value, abs=0.006)
    assert stages == list(JOB_KINDS) and len(totals) == 1  # every stage priced once, then the total
    for instance, price, cost in _rows("| train instance | price / hour"):
        assert float(price.lstrip("$")) == PRICE_PER_HOUR_USD[instance]
        assert float(cost.lstrip("$")) == pytest.approx(stage_cost_usd(instance, 37 * 60), abs=0.006)


def test_quota_table_names_each_stage_default_and_its_job_kind():
    defaults = context()["spaceport"]["instance_types"]
    rows = _rows("| stage | default instance")
    assert len(rows) == len(JOB_KINDS)
    for stage, instance, quota in rows:
        key = stage.lower()
        assert instance == defaults[key]
        assert f"`{instance} for {JOB_KINDS[key]} job usage`" in quota


def test_train_instance_must_be_a_gpu_the_image_is_compiled_for():
    base = {"sender_email": "a@example.com"}
    for ok in ("ml.g5.2xlarge", "ml.g6.xlarge", "ml.g6e.xlarge", "ml.p4d.24xlarge", "ml.p5.48xlarge"):
        DeploySettings.from_context({**base, "instance_types": {"train": ok}})
    for bad in ("ml.g4dn.xlarge", "ml.p3.2xlarge", "ml.m5.large"):
        with pytest.raises(ValueError, match=r"sm_80, sm_86, sm_89, sm_90"):
            DeploySettings.from_context({**base, "instance_types": {"train": bad}})
