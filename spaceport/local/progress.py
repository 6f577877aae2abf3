"""Progress lines every stage prints, and the resource numbers every summary records.

A progress line is ``key=value`` pairs on one line, flushed at once, e.g.
``stage=train step=500 loss=0.0412 psnr=24.31 eta_s=61``. SageMaker metric definitions match
them with a regex (``psnr=([0-9.]+)``), and the local runner parses them for its live display.
With ``SPACEPORT_LOG_FORMAT=json`` the same events are printed as JSON lines instead.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LOG_FORMAT_ENV = "SPACEPORT_LOG_FORMAT"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text.replace(" ", "_") if text else '""'


def emit(stage: str, **fields: Any) -> None:
    """Print one progress event for ``stage`` (key=value or a JSON line)."""
    if os.environ.get(LOG_FORMAT_ENV) == "json":
        line = json.dumps({"stage": stage, "t": round(time.time(), 3), **fields}, default=str)
    else:
        line = " ".join([f"stage={stage}"] + [f"{k}={_fmt(v)}" for k, v in fields.items()])
    print(line, file=sys.stdout, flush=True)


def parse_line(line: str) -> dict[str, str] | None:
    """Parse a progress line (either format) back into a dict; None if it is not one."""
    line = line.strip()
    if line.startswith("{"):
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            return None
        return {k: str(v) for k, v in data.items()} if isinstance(data, dict) and "stage" in data else None
    if not line.startswith("stage="):
        return None
    out = {}
    for part in line.split():
        key, sep, value = part.partition("=")
        if sep:
            out[key] = value
    return out


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children, in MiB (Linux ru_maxrss is KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0


@contextmanager
def phase(stage: str, name: str, timings: dict[str, float], **fields: Any) -> Iterator[None]:
    """Time a phase into ``timings[name]`` (seconds) and print a line when it ends."""
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 3)
    emit(stage, phase=name, seconds=timings[name], **fields)
