#!/usr/bin/env python3
"""CDK app entry: reads the ``spaceport`` context once into DeploySettings and builds the stack.

Offline and deterministic: no lookups, no STS; account/region come from context or stay
unresolved (an environment-agnostic template).
"""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from stacks.nag import acknowledge
from stacks.settings import DeploySettings
from stacks.spaceport_stack import SpaceportStack


def build(app: cdk.App, *, nag: bool = True) -> SpaceportStack:
    """Build the stack into ``app`` (tests call this with their own App and context)."""
    settings = DeploySettings.from_context(app.node.try_get_context("spaceport"))
    env = cdk.Environment(account=settings.account, region=settings.region) \
        if settings.account or settings.region else None
    stack = SpaceportStack(app, settings.stack_name, settings=settings, env=env)
    cdk.Tags.of(stack).add("project", "spaceport")
    if nag:
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
        acknowledge(stack)
    return stack


if __name__ == "__main__":
    application = cdk.App()
    build(application)
    application.synth()
