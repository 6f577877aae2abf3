#!/usr/bin/env python3
"""CDK app entry: reads the ``spaceport`` context once into DeploySettings and builds the stack.

Offline and deterministic: no lookups, no STS; account/region come from context or stay
unresolved (an environment-agnostic template). ``python app.py`` works without the CDK CLI:
cdk.json's context (including the S3 feature flags the stack relies on) is read here as the
app's defaults; context the CLI passes (``-c``, or cdk.json through the CLI) takes precedence.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from cloud.stacks.nag import acknowledge
from cloud.stacks.settings import DeploySettings
from cloud.stacks.spaceport_stack import SpaceportStack


def build(app: cdk.App, *, nag: bool = True) -> SpaceportStack:
    """Build the stack into ``app`` (tests call this with their own App and context)."""
    flat = {f"spaceport.{f.name}": app.node.try_get_context(f"spaceport.{f.name}")
            for f in dataclasses.fields(DeploySettings)}
    settings = DeploySettings.from_context(app.node.try_get_context("spaceport"),
                                           {k: v for k, v in flat.items() if v is not None})
    env = cdk.Environment(account=settings.account, region=settings.region) \
        if settings.account or settings.region else None
    stack = SpaceportStack(app, settings.stack_name, settings=settings, env=env)
    cdk.Tags.of(stack).add("project", "spaceport")
    if nag:
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
        acknowledge(stack)
    return stack


def cdk_json_context() -> dict[str, Any]:
    """The ``context`` of cdk.json beside this file."""
    return json.loads((Path(__file__).resolve().parent / "cdk.json").read_text())["context"]


if __name__ == "__main__":
    application = cdk.App(context=cdk_json_context())
    build(application)
    application.synth()
