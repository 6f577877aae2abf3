"""Lambda code assets: the handler folder plus the ``spaceport`` core modules it imports.

Bundled by copying files in Python (no Docker): the handlers import only stdlib, boto3 and the
Powertools layer besides these modules, none of which need compiling. The asset hash is the
hash of the bundled output, so a change to ``spaceport/core/plan.py`` redeploys every function.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from spaceport.core.graph import PACKAGES

ROOT = Path(__file__).resolve().parents[2]
#: Core modules every Lambda gets (stdlib/pydantic/boto3 only; no numpy, torch or pycolmap).
CORE_MODULES = (
    "spaceport/__init__.py",
    "spaceport/core/__init__.py",
    "spaceport/core/errors.py",
    "spaceport/core/config.py",
    "spaceport/core/plan.py",
    "spaceport/core/contract.py",  # the SageMaker container paths the plan passes to each job
    "spaceport/core/jobid.py",  # job ids and job names (plan, records, notify)
    "spaceport/core/stage.py",  # the stage template (graph entries, the option resolver)
    "spaceport/core/graph.py",  # the stage graph (plan, records, notification links)
    "spaceport/core/files.py",  # atomic writes, safe unpacking, input sniffing (stdlib only)
    "spaceport/core/summaries.py",  # the summary and job record models (pydantic only)
    "spaceport/cloud/__init__.py",
    "spaceport/cloud/settings.py",
    "spaceport/cloud/uploads.py",  # what each object under uploads/ starts
    "spaceport/cloud/intake.py",  # start_job's work
    "spaceport/cloud/records.py",
    "spaceport/cloud/quota.py",
    "spaceport/cloud/sagemaker_errors.py",  # what a caught SageMaker error means (records, quota)
    "spaceport/cloud/cost.py",
    "spaceport/cloud/links.py",  # result links: signing (notify) and the secret file (link_secret)
    "spaceport/cloud/notify.py",
    "spaceport/cloud/runtime.py",
)
#: Each stage package's declaration (its ``__init__``: the graph entry, and the quality gate's
#: check) and config module (stdlib-only by contract), bundled when present.
STAGE_CONFIGS = ("spaceport/stages/__init__.py",
                 *(f"{p.replace('.', '/')}/{n}" for p in PACKAGES for n in ("__init__.py", "config.py")))


#: Handlers that bundle only these modules instead of the core (stdlib and boto3 only, no layer).
OWN_MODULES = {
    "image_build": ("spaceport/__init__.py", "spaceport/cloud/__init__.py", "spaceport/cloud/image_build.py"),
}


def bundled_files(handler: str) -> list[str]:
    """Repository-relative files in the asset of ``cloud/lambdas/<handler>``."""
    if handler in OWN_MODULES:
        return [f"cloud/lambdas/{handler}/handler.py", *OWN_MODULES[handler]]
    files = [f"cloud/lambdas/{handler}/handler.py", *CORE_MODULES]
    files += [f for f in STAGE_CONFIGS if (ROOT / f).exists()]
    return files


@jsii.implements(ILocalBundling)
class _CopyFiles:
    def __init__(self, handler: str) -> None:
        self.handler = handler

    def try_bundle(self, output_dir: str, _options: Any = None, **_kwargs: Any) -> bool:
        out = Path(output_dir)
        for rel in bundled_files(self.handler):
            dest = out / ("handler.py" if rel.startswith("cloud/lambdas/") else rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, dest)
        return True


def lambda_code(handler: str) -> lambda_.Code:
    """Code asset of ``cloud/lambdas/<handler>/handler.py`` with the spaceport core modules beside it."""
    return lambda_.Code.from_asset(
        str(ROOT / "cloud" / "lambdas" / handler),
        asset_hash_type=AssetHashType.OUTPUT,
        bundling=BundlingOptions(
            # Never pulled: local bundling always succeeds. CDK requires an image to be named.
            image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.11"),
            local=_CopyFiles(handler),
        ),
    )
