"""One synth per session: the app built from cdk.json's context, with cdk-nag on."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


@dataclass
class Synth:
    stack: Any
    template: dict
    outdir: Path

    def resources(self, type_: str) -> dict[str, dict]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == type_}

    def logical_id(self, construct: Any) -> str:
        cfn = construct.node.default_child if hasattr(construct, "node") and construct.node.default_child else construct
        return self.stack.resolve(self.stack.get_logical_id(cfn))


SENDER = "splats@example.com"


def context() -> dict:
    """cdk.json's context with an SES sender set (a deploy must name one; cdk.json ships empty)."""
    ctx = json.loads((ROOT / "cdk.json").read_text())["context"]
    ctx["spaceport"] = {**ctx["spaceport"], "sender_email": SENDER}
    return ctx


def synth_app(outdir: Path, ctx: dict | None = None) -> Synth:
    import aws_cdk as cdk

    from app import build

    app = cdk.App(context=ctx or context(), outdir=str(outdir))
    stack = build(app)
    assembly = app.synth()
    template = assembly.get_stack_by_name(stack.stack_name).template
    return Synth(stack=stack, template=template, outdir=outdir)


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> Synth:
    return synth_app(tmp_path_factory.mktemp("cdk.out"))
