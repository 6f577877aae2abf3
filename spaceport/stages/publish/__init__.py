"""The Publish stage: the job report (``index.html``) and the browser viewer (``viewer.html``).

This module is the stage's declaration; the heavy work (NumPy, Pillow) happens inside
:mod:`spaceport.stages.publish.report`, driven by :func:`spaceport.stages.publish.command.publish`.
"""

from __future__ import annotations

from spaceport.core.stage import RECORD, Input, Product, StageDef, StagePaths
from spaceport.core.summaries import PublishSummary


def run(config: None, paths: StagePaths) -> PublishSummary:
    """Build the report and viewer from the stage outputs in ``paths.inputs`` into ``paths.output``."""
    from spaceport.stages.publish.command import publish

    return publish(paths.inputs, paths.output)


#: Publish runs `spaceport publish` in the compress image (Node splat tools, Pillow, NumPy).
STAGE = StageDef(
    "publish", "processing", "Report", run, image="compress",
    inputs=(Input("sfm", "sfm", "folder"), Input("train", "train", "model_tarball"),
            Input("compressed", "compress", "folder"), Input("job", RECORD, "record")),
    output="report", folder="report", required=("index.html",), summary=PublishSummary,
    products=(Product("report", "index.html", "Report and viewer"), Product("viewer", "viewer.html", "3-D viewer")))
