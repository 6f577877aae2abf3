"""The stage graph, declared once: which stage runs in which image as which SageMaker job kind,
what it reads (the producing stage and in which form), what it writes, which files make its
output complete, which summary it writes and which of its files a user is sent a link to.

Pure data (stdlib only; the Lambdas bundle it). :mod:`spaceport.plan` builds each job's stage
specs from it; the local runner (resume keys, completeness, summaries), the job records, the
display, the CLI's stage choices and the notification links read it; a test checks the state
machine's stage states against it field by field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["processing", "training", "gate"]
#: How a stage receives an input: a stage's output folder, a training job's ``model.tar.gz``
#: (locally: the folder it was made from), the user's upload, or the job record (one object).
Form = Literal["folder", "model_tarball", "upload", "record"]
#: Producer names that are not stages.
UPLOAD, RECORD = "upload", "record"


@dataclass(frozen=True)
class Input:
    """One input channel of a stage."""

    channel: str
    """Channel name (SageMaker InputName / ChannelName, and the folder name in the container)."""
    producer: str
    """The stage whose output this is, or ``upload`` / ``record``."""
    form: Form


@dataclass(frozen=True)
class Product:
    """A file of a stage's output that a finished job links to (email, job record)."""

    name: str
    file: str
    label: str


@dataclass(frozen=True)
class StageDef:
    """One stage of every job."""

    name: str
    kind: Kind
    image: str = ""
    """Folder under ``containers/`` of the image it runs in (empty: no container)."""
    inputs: tuple[Input, ...] = ()
    output: str = ""
    """Output channel name; the job folder ``<prefix><folder>/`` holds it."""
    folder: str = ""
    required: tuple[str, ...] = ()
    """Files (or folders) that must be in the output for the stage to count as complete."""
    summary: str = ""
    """File name of the stage's JSON summary (a model in :mod:`spaceport.summaries`)."""
    products: tuple[Product, ...] = ()
    title: str = ""
    """How the email names the stage."""


GRAPH: tuple[StageDef, ...] = (
    StageDef("sfm", "processing", image="sfm", inputs=(Input("upload", UPLOAD, "upload"),),
             output="sfm", folder="sfm", required=("sfm.json", "sparse/0"), summary="sfm.json",
             title="Camera poses (SfM)"),
    StageDef("train", "training", image="train", inputs=(Input("sfm", "sfm", "folder"),),
             output="model", folder="train", required=("metrics.json", "splat.ply"), summary="metrics.json",
             title="Training"),
    StageDef("quality_gate", "gate", title="Quality gate"),
    StageDef("compress", "processing", image="compress", inputs=(Input("model", "train", "model_tarball"),),
             output="compressed", folder="compressed", required=("compress.json", "scene.sog"),
             summary="compress.json",
             products=(Product("sog", "scene.sog", "SOG (compressed, web viewer)"),
                       Product("spz", "scene.spz", "SPZ (compressed)")),
             title="Compression"),
    # Publish runs `spaceport publish` in the compress image (Node splat tools, Pillow, NumPy).
    StageDef("publish", "processing", image="compress",
             inputs=(Input("sfm", "sfm", "folder"), Input("train", "train", "model_tarball"),
                     Input("compressed", "compress", "folder"), Input("job", RECORD, "record")),
             output="report", folder="report", required=("index.html",),
             products=(Product("report", "index.html", "Report and viewer"),
                       Product("viewer", "viewer.html", "3-D viewer")),
             title="Report"),
)

#: Stage names in execution order.
STAGES: tuple[str, ...] = tuple(s.name for s in GRAPH)
#: Stages that run a container, with the SageMaker job kind each runs as.
JOB_KINDS: dict[str, Literal["processing", "training"]] = {
    s.name: s.kind for s in GRAPH if s.kind != "gate"}  # type: ignore[misc]
#: Image folder (``containers/<image>``) of each container stage.
STAGE_IMAGE: dict[str, str] = {s.name: s.image for s in GRAPH if s.image}
#: Every user-facing file of a finished job, in the order an email lists them.
PRODUCTS: tuple[tuple[StageDef, Product], ...] = tuple((s, p) for s in GRAPH for p in s.products)


def stage_def(name: str) -> StageDef:
    """The declaration of stage ``name`` (KeyError naming the known stages otherwise)."""
    for s in GRAPH:
        if s.name == name:
            return s
    raise KeyError(f"unknown stage {name!r}; stages are {', '.join(STAGES)}")


def producer_of(output: str) -> StageDef:
    """The stage whose output channel is ``output``."""
    return next(s for s in GRAPH if s.output == output)
