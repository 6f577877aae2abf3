"""The stage graph: the stage packages in execution order, each declaring its :class:`StageDef`.

Adding a stage is one package (``spaceport/stages/<stage>/__init__.py`` defining ``STAGE``; see
:mod:`spaceport.core.stage`) and one entry in :data:`PACKAGES`. :mod:`spaceport.core.plan` builds each
job's stage specs from the graph; the local runner (layout, resume keys, completeness,
summaries), the stage commands, the job records, the display, the bench and the notification
links read it; a test checks the state machine's stage states against it field by field.

Light (stdlib, pydantic): the Lambdas bundle the graph with the stage packages' ``__init__`` and
config modules. :func:`registered` adds a stage for the duration of a ``with`` block (tests).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Literal

from spaceport.core.stage import PRESET_NAMES, RECORD, UPLOAD, Input, Product, StageDef  # noqa: F401 (re-exported)

#: The stage packages, in execution order.
PACKAGES: tuple[str, ...] = ("spaceport.stages.sfm", "spaceport.stages.train", "spaceport.stages.gate", "spaceport.stages.compress",
                             "spaceport.stages.publish")

GRAPH: tuple[StageDef, ...] = ()
#: Stage names in execution order.
STAGES: tuple[str, ...] = ()
#: Stages that run a container, with the SageMaker job kind each runs as.
JOB_KINDS: dict[str, Literal["processing", "training"]] = {}
#: Image folder (``containers/<image>``) of each container stage.
STAGE_IMAGE: dict[str, str] = {}
#: Every user-facing file of a finished job, in the order an email lists them.
PRODUCTS: tuple[tuple[StageDef, Product], ...] = ()


def _set(stages: tuple[StageDef, ...]) -> None:
    global GRAPH, STAGES, JOB_KINDS, STAGE_IMAGE, PRODUCTS
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"stage names repeat: {names}")
    GRAPH = stages
    STAGES = tuple(names)
    JOB_KINDS = {s.name: s.kind for s in stages if s.kind != "gate"}  # type: ignore[misc]
    STAGE_IMAGE = {s.name: s.image for s in stages if s.image}
    PRODUCTS = tuple((s, p) for s in stages for p in s.products)


_set(tuple(importlib.import_module(p).STAGE for p in PACKAGES))


def stage_def(name: str) -> StageDef:
    """The declaration of stage ``name`` (KeyError naming the known stages otherwise)."""
    for s in GRAPH:
        if s.name == name:
            return s
    raise KeyError(f"unknown stage {name!r}; stages are {', '.join(STAGES)}")


def producer_of(output: str) -> StageDef:
    """The stage whose output channel is ``output``."""
    return next(s for s in GRAPH if s.output == output)


@contextlib.contextmanager
def registered(stage: StageDef, *, before: str) -> Iterator[StageDef]:
    """The graph with ``stage`` inserted before stage ``before``, inside the ``with`` block."""
    old = GRAPH
    at = STAGES.index(before)
    _set((*old[:at], stage, *old[at:]))
    try:
        yield stage
    finally:
        _set(old)
