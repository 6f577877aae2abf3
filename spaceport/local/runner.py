"""Run a :class:`~spaceport.core.plan.JobPlan` on this machine, stage by stage, with resume.

Layout. ``--out DIR`` is the job's folder: it mirrors the S3 prefix ``jobs/<job_id>/`` one to
one (``request.json``, ``sfm/``, ``train/``, ``compressed/``, ``report/``, ``job.json``), without
the ``jobs/<job_id>/`` levels, so one run folder holds one job and the report is two levels
down. The plan is built exactly as the start Lambda builds it (root ``file://DIR/``); each
channel URI ``<prefix>X/`` maps to ``DIR/X``. One difference from S3: ``train/`` holds the
training job's files unpacked (``splat.ply``, ``metrics.json``, ...) rather than SageMaker's
``model.tar.gz``; the compress and publish stages read either.

Each container stage starts with the argv SageMaker would use (its image's Dockerfile
ENTRYPOINT, then ``train`` for the training job or the plan's ContainerArguments for a
processing job: :func:`spaceport.core.contract.stage_argv`), with ``SPACEPORT_SM_ROOT`` pointing at
``DIR/.scratch/<stage>``, laid out the way SageMaker lays out its job: inputs linked under
``processing/input/<name>`` or ``input/data/<channel>`` as the stage graph
(:mod:`spaceport.core.graph`) declares them, ``hyperparameters.json`` written. On success the output folder is renamed into place
and a done-marker (``DIR/.state/<stage>.json``: a key of the stage's options and inputs, and
the size and SHA-256 of every output file) is written last. A re-run skips a stage whose marker
matches its key and files; ``--from STAGE`` forces that stage and the ones after it. A stage
killed half way leaves only scratch (removed on the next run) and no marker, so nothing
half-written looks complete. Inputs are only linked, never written.

Stale outputs. Before a stage runs, its own earlier output and those of every stage after it
are moved out of the job folder (into ``DIR/.scratch/previous/``): a rerun that then fails leaves no report or
compressed splat of an earlier run beside a ``job.json`` that says FAILED. A later stage whose
old output is still valid for its new key takes it back before it checks completeness (renames,
no copies); whatever is not taken back is deleted when the run ends, however it ends.

A splat below the quality gate is still compressed and published: the report and viewer say it
is below target, and the job ends FAILED with :class:`~spaceport.core.errors.QualityBelowTarget`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from spaceport.core import contract, graph
from spaceport.core import plan as planlib
from spaceport.core.errors import ConfigInvalid, InputInvalid, QualityBelowTarget, SpaceportError, StageFailed
from spaceport.core.files import write_atomic, write_json
from spaceport.core.stage import StagePaths
from spaceport.core.summaries import (
    DoneMarker,
    GateResult,
    JobRecord,
    StageRecord,
    TrainMetrics,
    read_summary,
    write_summary,
)
from spaceport.local import progress
from spaceport.local.display import Reporter
from spaceport.local.jobdir import (  # noqa: F401  (some re-exported: callers and tests use local.X)
    LOG_DIR,
    SCRATCH_DIR,
    STATE_DIR,
    LocalJob,
    build_local_plan,
    check_paths,
    die_with_parent,
    digest,
    file_manifest,
    input_fingerprint,
    place_upload,
    sha256,
)


def spaceport_program() -> list[str]:
    """How this machine runs the ``spaceport`` program of the images' ENTRYPOINT: this interpreter
    with this package (the console script ``spaceport`` is ``spaceport.cli:main``, as is ``-m spaceport``)."""
    return [sys.executable, "-m", "spaceport"]


#: Under the scratch folder: earlier outputs of the stages downstream of one that is re-running.
PREVIOUS_DIR = "previous"


class LocalRunner:
    """Runs the stages of a :class:`LocalJob` in order, skipping complete ones.

    Each container stage starts with the argv SageMaker would use (:func:`contract.stage_argv`:
    the image's Dockerfile ENTRYPOINT plus ``train`` or the plan's ContainerArguments); the leading
    ``spaceport`` is run by ``program`` (tests pass a fake stage program there).
    """

    def __init__(self, job: LocalJob, reporter: Reporter | None = None, force_from: str | None = None,
                 program: list[str] | None = None, notices: list[dict[str, str]] | None = None):
        self.job = job
        #: Printed right after the start line (e.g. what a fixed-step preset will cost on this CPU).
        self.notices = list(notices or [])
        self.reporter = reporter or Reporter()
        order = [s.name for s in job.plan.stages]
        if force_from is not None and force_from not in order:
            raise ConfigInvalid(f"Unknown stage {force_from!r} for --from", f"Use one of: {', '.join(order)}")
        self.forced = set(order[order.index(force_from):]) if force_from else set()
        self.program = program or spaceport_program()
        self.records: dict[str, StageRecord] = {}
        self.gate: GateResult | None = None
        #: The gate's miss, when the splat is below target (raised once the report is published).
        self.below_target: QualityBelowTarget | None = None
        #: Digest of each finished stage's output files (a changed upstream output re-runs its consumers).
        self.outputs: dict[str, str] = {}

    def argv(self, spec: planlib.StageSpec) -> list[str]:
        """The stage's SageMaker argv, with ``spaceport`` mapped to :attr:`program`."""
        argv = contract.stage_argv(spec.kind, graph.stage_def(spec.name).image, spec.arguments)
        return [*self.program, *argv[1:]] if argv[0] == "spaceport" else argv

    # ---- markers ----
    def stage_key(self, spec: planlib.StageSpec) -> str:
        """Hash of what the stage's output depends on: its options, its input, the bytes of its upstream outputs."""
        upstream = {}
        for ch in spec.inputs:
            if ch.producer == graph.UPLOAD:
                upstream[ch.name] = self.job.plan.request.source_version
            elif ch.producer != graph.RECORD:  # the record changes every run; the report ignores its timings
                upstream[ch.name] = self.outputs.get(ch.producer, "")
        data = {"stage": spec.name, "options": dict(spec.options), "arguments": list(spec.arguments),
                "hyperparameters": dict(spec.hyperparameters), "upstream": upstream}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def output_dir(self, spec: planlib.StageSpec) -> Path:
        return self.job.path_of(spec.outputs[0].uri)

    def is_complete(self, spec: planlib.StageSpec, key: str) -> bool:
        """True when the marker matches ``key`` and every recorded file is there, unchanged."""
        marker = DoneMarker.read(self.job.marker(spec.name))
        if marker is None or marker.key != key:
            return False
        folder = self.output_dir(spec)
        if any(not (folder / req).exists() for req in graph.stage_def(spec.name).required):
            return False
        for rel, (size, file_digest) in marker.files.items():
            p = folder / rel
            if not p.is_file() or p.stat().st_size != size:
                return False
            if file_digest is not None and sha256(p) != file_digest:
                return False
        return True

    # ---- layout ----
    def _link(self, target: Path, link: Path) -> None:
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target, target_is_directory=target.is_dir())

    def prepare_scratch(self, spec: planlib.StageSpec) -> tuple[Path, Path]:
        """Lay the stage's SageMaker folders out under its scratch root; return (sm_root, output dir)."""
        root = self.job.scratch(spec.name)
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        for ch in spec.inputs:
            local = contract.under(root, ch.path)
            if ch.producer == graph.RECORD:
                # The job record as it stands now (per-stage timings so far), where SageMaker puts
                # the one-object input: processing/input/job/job.json.
                write_json(local / JobRecord.FILE, self.job_record("RUNNING").public())
            elif ch.producer == graph.UPLOAD:
                if self.job.source.is_dir():
                    self._link(self.job.source, local)
                else:  # a single zip/video/image: a folder holding it, as the S3 download would be
                    place_upload(self.job.source, local / self.job.source.name)
            else:  # a stage's output folder (locally also for the model_tarball form: its unpacked files)
                src = self.job.path_of(ch.uri)
                if not src.exists():
                    raise InputInvalid(f"the {spec.name} stage needs {src}, which does not exist",
                                       f"Re-run without --from, or with --from an earlier stage than {spec.name}")
                self._link(src, local)
        if spec.kind == "training":
            write_json(contract.under(root, contract.HYPERPARAMETERS), dict(spec.hyperparameters))
            ckpt = self.job.out / "checkpoints"  # persistent: an interrupted training resumes from it
            ckpt.mkdir(parents=True, exist_ok=True)
            self._link(ckpt, contract.under(root, contract.CHECKPOINTS))
        out_dir = contract.under(root, spec.outputs[0].path)
        out_dir.mkdir(parents=True, exist_ok=True)
        return root, out_dir

    # ---- running ----
    def _env(self, sm_root: Path, stage: str) -> dict[str, str]:
        env = dict(os.environ)
        env[contract.SM_ROOT_ENV] = str(sm_root)
        env["SPACEPORT_STAGE"] = stage  # as the ASL sets it: the failure record names its stage
        env["SPACEPORT_LOG_FORMAT"] = "kv"
        env["PYTHONUNBUFFERED"] = "1"
        pkg_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join([pkg_root, *filter(None, [env.get("PYTHONPATH")])])
        return env

    def run_process(self, spec: planlib.StageSpec, sm_root: Path) -> tuple[int, float, float, float]:
        """Run the stage process; stream its progress; return (exit code, seconds, peak RSS MiB, CPU seconds)."""
        argv = self.argv(spec)
        log_path = self.job.log(spec.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with log_path.open("w") as log:
            log.write("$ " + " ".join(argv) + "\n")
            log.flush()
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                    env=self._env(sm_root, spec.name), cwd=sm_root, start_new_session=True,
                                    preexec_fn=die_with_parent if sys.platform == "linux" else None)
            try:
                assert proc.stdout is not None
                # The display shows step/steps: the plan's steps, the ones a time budget chose, or the
                # ones its schedule was re-fitted to as the machine's pace showed.
                total_steps = spec.options.get("steps")
                for line in proc.stdout:
                    log.write(line)
                    fields = progress.parse_line(line)
                    if fields and fields.get("stage") == spec.name:
                        if fields.get("phase") in ("plan", "estimate"):
                            self.reporter.notice(spec.name, fields)
                        if fields.get("phase") in ("plan", "estimate", "refit"):
                            total_steps = fields.get("steps", total_steps)
                        if "step" in fields and total_steps is not None:
                            fields.setdefault("steps", total_steps)
                        self.reporter.stage_progress(spec.name, fields)
                # wait4 gives this child's own peak RSS (ru_maxrss, KiB on Linux), not the runner's.
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
            except BaseException:
                # Ctrl-C or an error here: stop the whole stage process group, then re-raise.
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=10)
                except (ProcessLookupError, subprocess.TimeoutExpired, ChildProcessError):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                raise
        cpu = usage.ru_utime + usage.ru_stime  # user + system CPU of the stage and its reaped children
        return proc.returncode, time.perf_counter() - start, usage.ru_maxrss / 1024.0, cpu

    def _failure(self, spec: planlib.StageSpec, sm_root: Path, code: int) -> SpaceportError:
        """The stage's own typed error from its failure record, else a StageFailed quoting the log."""
        log = self.job.log(spec.name)
        record = contract.read_failure(sm_root)
        if record is not None:
            err = record.to_error()
            err.details = {**err.details, "log": str(log)}
            return err
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        return StageFailed(f"the {spec.name} stage exited with code {code}: {' | '.join(tail)[-600:]}",
                           f"Read {log} and re-run; finished stages are skipped", log=str(log))

    def headline(self, spec: planlib.StageSpec, dest: Path) -> dict[str, Any]:
        """The headline numbers of the stage's summary (validated: a stale file is an error naming it)."""
        sd = graph.stage_def(spec.name)
        return read_summary(sd.summary, dest / sd.summary_file).headline() if sd.summary_file else {}

    def previous(self, stage: str) -> Path:
        """Where a downstream stage's earlier output waits while an upstream stage re-runs."""
        return self.job.out / SCRATCH_DIR / PREVIOUS_DIR / stage

    def set_aside_downstream(self, spec: planlib.StageSpec) -> None:
        """Move the outputs of ``spec`` and of every stage after it out of the job folder (renames)."""
        order = [s for s in self.job.plan.stages if s.outputs]
        for later in order[order.index(spec):]:
            dest = self.output_dir(later)
            if dest.exists():
                aside = self.previous(later.name)
                shutil.rmtree(aside, ignore_errors=True)
                aside.parent.mkdir(parents=True, exist_ok=True)
                os.replace(dest, aside)

    def take_back(self, spec: planlib.StageSpec) -> None:
        """Put this stage's earlier output back in place if an upstream re-run set it aside."""
        aside, dest = self.previous(spec.name), self.output_dir(spec)
        if aside.exists() and not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(aside, dest)

    def run_stage(self, spec: planlib.StageSpec) -> StageRecord:
        key = self.stage_key(spec)
        dest = self.output_dir(spec)
        self.take_back(spec)
        if spec.name not in self.forced and self.is_complete(spec, key):
            marker = DoneMarker.read(self.job.marker(spec.name))
            assert marker is not None  # is_complete read it
            self.outputs[spec.name] = digest(marker.files)
            return StageRecord(status="skipped", seconds=0.0, peak_memory_mb=marker.record.peak_memory_mb,
                               numbers=self.headline(spec, dest))
        self.job.marker(spec.name).unlink(missing_ok=True)
        self.set_aside_downstream(spec)
        sm_root, produced = self.prepare_scratch(spec)
        code, seconds, peak, cpu = self.run_process(spec, sm_root)
        if code != 0:
            raise self._failure(spec, sm_root, code)
        missing = [r for r in graph.stage_def(spec.name).required if not (produced / r).exists()]
        if missing:
            raise StageFailed(f"the {spec.name} stage finished but did not write {', '.join(missing)}",
                              f"Read {self.job.log(spec.name)}")
        numbers = self.headline(spec, produced)  # before the move: an invalid summary is never put in place
        # Move the output into place: old output aside, new in, old removed. Same file system: renames.
        old = dest.with_name(dest.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            os.replace(dest, old)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(produced), str(dest))
        shutil.rmtree(old, ignore_errors=True)
        run = StageRecord(status="done", seconds=round(seconds, 3), peak_memory_mb=round(peak, 1),
                          cpu_seconds=round(cpu, 2), numbers=numbers)
        marker = DoneMarker(stage=spec.name, key=key, files=file_manifest(dest), record=run)
        self.outputs[spec.name] = digest(marker.files)
        write_atomic(self.job.marker(spec.name), marker.model_dump_json(indent=1))
        shutil.rmtree(sm_root, ignore_errors=True)
        if spec.kind == "training":
            shutil.rmtree(self.job.out / "checkpoints", ignore_errors=True)
        return run

    def run_in_process(self, spec: planlib.StageSpec) -> StageRecord:
        """The quality gate (no container): its stage's ``run`` here, on the local input folders.

        A miss is recorded (``self.below_target``), not raised: the later stages still compress and
        publish the splat, marked below target, and the job ends FAILED once the report is there."""
        from spaceport.stages import gate

        start = time.perf_counter()
        sd = graph.stage_def(spec.name)
        paths = StagePaths({ch.name: self.job.path_of(ch.uri) for ch in spec.inputs}, self.job.out)
        config = sd.resolve(self.job.plan.preset, spec.options)
        try:
            result = sd.run(config, paths)
        except QualityBelowTarget as miss:
            if spec.kind != "gate":
                raise
            result = gate.evaluate(read_summary(TrainMetrics, paths.input() / TrainMetrics.FILE), config)
            self.below_target = miss
        seconds = round(time.perf_counter() - start, 3)
        if isinstance(result, GateResult):
            self.gate = result
            return gate.stage_record(result, seconds)
        return StageRecord(status="done", seconds=seconds, numbers=result.headline())

    # ---- the job ----
    def job_record(self, status: str, seconds: float | None = None, failed: str | None = None,
                   error: SpaceportError | None = None) -> JobRecord:
        plan = self.job.plan
        outputs = {}
        for sd, product in graph.PRODUCTS:
            path = self.job.out / sd.folder / product.file
            if path.is_file():
                outputs[product.name] = str(path)
        return JobRecord(
            job_id=plan.job_id, status=status, preset=plan.preset, source_uri=plan.request.source_uri,
            prefix=str(self.job.out), request=plan.to_request_json(), stages=dict(self.records),
            quality_gate=self.gate, outputs=outputs,
            seconds=round(seconds, 3) if seconds is not None else None, stage=failed,
            failure=error.record(failed) if error is not None else None)

    def run(self) -> JobRecord:
        """Run every stage; return the final job record (also written to DIR/job.json)."""
        out = self.job.out
        out.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(out / SCRATCH_DIR, ignore_errors=True)  # leftovers of an interrupted run
        write_summary(self.job.plan.to_request_json(), out)
        write_json(out / JobRecord.FILE, self.job_record("RUNNING").public())  # never an earlier run's verdict
        self.reporter.start(self.job.plan.job_id, str(out), [s.name for s in self.job.plan.stages])
        for fields in self.notices:
            self.reporter.notice("train", fields)
        start = time.perf_counter()
        current = ""
        try:
            for spec in self.job.plan.stages:
                current = spec.name
                self.reporter.stage_start(spec.name)
                self.records[spec.name] = self.run_in_process(spec) if spec.kind == "gate" else self.run_stage(spec)
                self.reporter.stage_end(spec.name, self.records[spec.name])
                write_json(out / JobRecord.FILE,
                           self.job_record("RUNNING", time.perf_counter() - start).public())
            if self.below_target is not None:
                current = "quality_gate"
                report = self.job.out / graph.stage_def("publish").folder / "index.html"
                if report.is_file():
                    self.below_target.details["report"] = str(report)
                raise self.below_target
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt)
            err = exc if isinstance(exc, SpaceportError) else None
            if exc is not self.below_target:  # the gate's own record (numbers, reason) stands as written
                rec = StageRecord(status="interrupted" if interrupted else "failed",
                                  failure=err.record(current) if err else None)
                self.records[current] = rec
                self.reporter.stage_end(current, rec)
            self.reporter.close()
            job = self.job_record("INTERRUPTED" if interrupted else "FAILED", time.perf_counter() - start,
                                  current, err)
            write_json(out / JobRecord.FILE, job.public())
            shutil.rmtree(out / SCRATCH_DIR, ignore_errors=True)
            raise
        job = self.job_record("SUCCEEDED", time.perf_counter() - start)
        write_json(out / JobRecord.FILE, job.public())
        shutil.rmtree(out / SCRATCH_DIR, ignore_errors=True)
        self.reporter.finish(job)
        return job


def cuda_available() -> bool:
    """Whether this machine trains on CUDA (torch is imported only here, only for `spaceport run`)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def sized_to_machine(preset: str | None, minutes: float | None, options: dict[str, dict[str, str]] | None,
                     cuda: bool) -> tuple[str, dict[str, dict[str, str]], list[dict[str, str]]]:
    """The preset and options a local run uses, and what to tell the user first.

    ``--minutes N`` sets the training budget. Without a GPU, a run that names neither a preset nor a
    budget trains the ``fast`` preset's options to :data:`budget.DEFAULT_CPU_MINUTES`; one that names
    ``default`` or ``quality`` keeps its fixed steps, and is told what they will cost and how to
    bound them (the training stage prints the calibrated estimate before its first step)."""
    from spaceport.stages.train import budget

    opts = {k: dict(v) for k, v in (options or {}).items()}
    notices: list[dict[str, str]] = []
    if minutes is not None:
        opts.setdefault("train", {})["minutes"] = str(minutes)
    if preset is None:
        if cuda or minutes is not None or "minutes" in opts.get("train", {}):
            preset = "default" if cuda else "fast"
        else:
            preset = "fast"
            opts.setdefault("train", {})["minutes"] = f"{budget.DEFAULT_CPU_MINUTES:g}"
    elif not cuda and preset in ("default", "quality") and "minutes" not in opts.get("train", {}):
        notices.append({"phase": "cpu_preset", "text": (
            f"no GPU: the {preset} preset trains a fixed number of steps, which can take hours on a CPU; its "
            f"estimate is printed before training starts. --minutes N trains to a time budget instead "
            f"(without a GPU and without --preset: {budget.DEFAULT_CPU_MINUTES:g} minutes)")})
    return preset, opts, notices


def run_local(source: Path, out: Path, preset: str | None = "default", *, force_from: str | None = None,
              options: dict[str, dict[str, str]] | None = None, min_psnr: float | None = None,
              max_gaussians: int | None = None, reporter: Reporter | None = None,
              program: list[str] | None = None, minutes: float | None = None,
              cuda: bool | None = None) -> JobRecord:
    """`spaceport run`: check the paths, size the run to the machine, plan, run. Returns the job record.

    ``preset=None`` lets the machine decide (:func:`sized_to_machine`); ``cuda`` None asks torch."""
    check_paths(source, out)
    if cuda is None:
        cuda = cuda_available()
    preset, options, notices = sized_to_machine(preset, minutes, options, cuda)
    job = build_local_plan(source, out, preset, options, min_psnr, max_gaussians)
    return LocalRunner(job, reporter, force_from, program=program, notices=notices).run()
