"""What `spaceport run` shows while it works: a live per-stage display, plain lines, JSON lines or quiet.

The runner calls a :class:`Reporter` with events; the stage's own progress lines
(``stage=train step=500 loss=0.04 psnr=24.3 ...``) arrive already parsed by
:func:`spaceport.local.progress.parse_line`.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from spaceport.core import graph
from spaceport.core.summaries import JobRecord, StageRecord
from spaceport.stages.train.budget import human


def _f(value: Any, fmt: str = "{:.4g}") -> str:
    try:
        return fmt.format(float(value))
    except (TypeError, ValueError):
        return str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = float(seconds)
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


class Reporter:
    """No-op base: the events the runner sends."""

    def start(self, job_id: str, out_dir: str, stages: list[str]) -> None: ...
    def stage_start(self, stage: str) -> None: ...
    def stage_progress(self, stage: str, fields: dict[str, str]) -> None: ...
    def stage_end(self, stage: str, record: StageRecord) -> None: ...
    def finish(self, job: JobRecord) -> None: ...
    def close(self) -> None: ...
    def notice(self, stage: str, fields: dict[str, str]) -> None:
        """What training will cost (a budget's plan, a fixed-step run's estimate), before it starts."""


class QuietReporter(Reporter):
    """Prints only where the report is (errors go through the CLI's error boundary)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def finish(self, job: JobRecord) -> None:
        if job.outputs.get("report"):
            print(job.outputs["report"], file=self.stream, flush=True)


class JsonReporter(Reporter):
    """One JSON object per event, for logs and machines."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def _out(self, event: str, **data: Any) -> None:
        print(json.dumps({"event": event, "t": round(time.time(), 3), **data}, default=str), file=self.stream,
              flush=True)

    def start(self, job_id: str, out_dir: str, stages: list[str]) -> None:
        self._out("start", job_id=job_id, out=out_dir, stages=stages)

    def stage_start(self, stage: str) -> None:
        self._out("stage_start", stage=stage)

    def stage_progress(self, stage: str, fields: dict[str, str]) -> None:
        self._out("progress", **{**fields, "stage": stage})

    def notice(self, stage: str, fields: dict[str, str]) -> None:
        self._out("estimate", **{**fields, "stage": stage, "text": notice_line(fields)})

    def stage_end(self, stage: str, record: StageRecord) -> None:
        self._out("stage_end", stage=stage, **record.model_dump(mode="json", exclude_none=True))

    def finish(self, job: JobRecord) -> None:
        self._out("finish", **job.model_dump(mode="json", exclude={"request", "email"}, exclude_none=True))


def notice_line(fields: dict[str, str]) -> str:
    """A training plan or estimate event as one sentence."""
    f = fields
    size = f"{f.get('width')}x{f.get('height')} px" if f.get("width") else ""
    if f.get("phase") == "plan":
        early = (f" ({f['epochs']} passes over the photos: more would fit them better and the scene worse, "
                 f"so it ends before the budget)" if f.get("early") in ("1", "True", "true") else "")
        return (f"training budget {_f(float(f['minutes']))} min: {size}, {f.get('steps')} steps, up to "
                f"{f.get('max_gaussians')} Gaussians; expected {human(float(f['expected_s']))}, "
                f"done at {f.get('finish_at')}{early}")
    if f.get("phase") == "estimate":
        return (f"training estimate: {f.get('steps')} steps at {size} take about "
                f"{human(float(f['expected_s']))} on this machine. --minutes N trains to a time budget "
                f"instead (the default without a GPU)")
    return str(f.get("text", ""))


def _extra(stage: str, record: StageRecord) -> str:
    """The stage's headline numbers (:meth:`Summary.headline`), e.g. ``PSNR 24.10 dB, 30000 Gaussians``."""
    if record.failure is not None:
        return f"{record.failure.error}: {record.failure.reason}"
    sd = graph.stage_def(stage)
    return sd.describe(record.numbers) if sd.describe is not None and record.numbers else ""


def _summary_line(stage: str, record: StageRecord) -> str:
    extra = "  " + _extra(stage, record)
    mem = f"  peak {record.peak_memory_mb:.0f} MB" if record.peak_memory_mb else ""
    return f"{stage:<12} {record.status or '':<8} {_duration(record.seconds):>8}{mem}{extra}"


class PlainReporter(Reporter):
    """Readable lines for a log file or a terminal without live updates."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 5.0):
        self.stream = stream or sys.stdout
        self.every_s = every_s
        self._last = 0.0

    def _p(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self, job_id: str, out_dir: str, stages: list[str]) -> None:
        self._p(f"job {job_id} -> {out_dir}")

    def stage_start(self, stage: str) -> None:
        self._p(f"[{stage}] started")

    def stage_progress(self, stage: str, fields: dict[str, str]) -> None:
        now = time.monotonic()
        if "phase" in fields or now - self._last >= self.every_s:
            self._last = now
            shown = " ".join(f"{k}={v}" for k, v in fields.items() if k not in ("stage", "t"))
            self._p(f"[{stage}] {shown}")

    def stage_end(self, stage: str, record: StageRecord) -> None:
        self._p(_summary_line(stage, record))

    def notice(self, stage: str, fields: dict[str, str]) -> None:
        self._p(f"[{stage}] {notice_line(fields)}")

    def finish(self, job: JobRecord) -> None:
        self._p("summary:")
        for stage, record in job.stages.items():
            self._p("  " + _summary_line(stage, record))
        self._p(f"done in {_duration(job.seconds)}: report {job.outputs.get('report')}")


class RichReporter(Reporter):
    """A live table: one row per stage with its state, time, memory and latest numbers."""

    def __init__(self, console: Any = None):
        from rich.console import Console
        from rich.live import Live

        self.console = console or Console()
        self.rows: dict[str, dict[str, Any]] = {}
        self.started: dict[str, float] = {}
        self.stages: list[str] = list(graph.STAGES)
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self.live.__enter__()
        self.job_id = ""

    def _detail(self, stage: str, row: dict[str, Any]) -> str:
        f = row.get("fields", {})
        if "step" in f:  # a stage that counts steps (training)
            total = f.get("steps")
            step = f"step {f['step']}" + (f"/{total}" if total else "")
            parts = [step]
            if "loss" in f:
                parts.append(f"loss {_f(f['loss'])}")
            if "psnr" in f:
                parts.append(f"PSNR {_f(f['psnr'], '{:.2f}')}")
            if "num_gaussians" in f:
                parts.append(f"{f['num_gaussians']} G")
            eta = f.get("eta_s")
            if eta:
                parts.append(f"ETA {_duration(float(eta))}")
            return "  ".join(parts)
        if "phase" in f:
            return f"phase {f['phase']} ({_f(f.get('seconds', ''), '{:.1f}')}s)"
        return row.get("note", "")

    def _render(self) -> Any:
        from rich.table import Table

        table = Table(box=None, pad_edge=False, header_style="bold")
        for col in ("stage", "state", "time", "peak MB", "progress"):
            table.add_column(col)
        for stage in self.stages:
            row = self.rows.get(stage)
            if row is None:
                table.add_row(stage, "[dim]waiting[/]", "", "", "")
                continue
            state = row["state"]
            style = {"running": "yellow", "done": "green", "skipped": "cyan", "failed": "red",
                     "passed": "green"}.get(state, "")
            secs = row.get("seconds")
            if state == "running":
                secs = time.monotonic() - self.started.get(stage, time.monotonic())
            mem = row.get("peak_memory_mb")
            table.add_row(stage, f"[{style}]{state}[/]", _duration(secs), f"{mem:.0f}" if mem else "",
                          self._detail(stage, row))
        return table

    def _refresh(self) -> None:
        self.live.update(self._render())

    def start(self, job_id: str, out_dir: str, stages: list[str]) -> None:
        self.job_id = job_id
        self.stages = list(stages)
        self.console.print(f"job [bold]{job_id}[/] -> {out_dir}")

    def stage_start(self, stage: str) -> None:
        self.started[stage] = time.monotonic()
        self.rows[stage] = {"state": "running", "fields": {}}
        self._refresh()

    def stage_progress(self, stage: str, fields: dict[str, str]) -> None:
        row = self.rows.setdefault(stage, {"state": "running", "fields": {}})
        row["fields"] = {**row["fields"], **fields} if "phase" not in fields else dict(fields)
        self._refresh()

    def notice(self, stage: str, fields: dict[str, str]) -> None:
        self.live.console.print(f"[bold]{stage}[/]: {notice_line(fields)}")

    def stage_end(self, stage: str, record: StageRecord) -> None:
        row = self.rows.setdefault(stage, {"fields": {}})
        row.update(state=record.status or "done", seconds=record.seconds, peak_memory_mb=record.peak_memory_mb)
        row["fields"] = {}
        row["note"] = _extra(stage, record)
        self._refresh()

    def finish(self, job: JobRecord) -> None:
        self._refresh()
        self.live.__exit__(None, None, None)
        self.console.print()
        self.console.print(f"done in {_duration(job.seconds)}. Report: [bold]{job.outputs.get('report')}[/]")
        if job.outputs.get("viewer"):
            self.console.print(f"3-D viewer: spaceport view {job.prefix}")

    def close(self) -> None:
        if self.live.is_started:
            self.live.__exit__(None, None, None)


def make_reporter(mode: str) -> Reporter:
    """``auto`` (live when stdout is a terminal, else plain), ``plain``, ``quiet`` or ``json``."""
    if mode == "quiet":
        return QuietReporter()
    if mode == "json":
        return JsonReporter()
    if mode == "plain" or not sys.stdout.isatty():
        return PlainReporter()
    return RichReporter()
