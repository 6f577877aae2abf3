"""Run a :class:`~spaceport.plan.JobPlan` on this machine, stage by stage, with resume.

Layout. ``--out DIR`` is the job's folder: it mirrors the S3 prefix ``jobs/<job_id>/`` one to
one (``request.json``, ``sfm/``, ``train/``, ``compressed/``, ``report/``, ``job.json``), without
the ``jobs/<job_id>/`` levels, so one run folder holds one job and the report is two levels
down. The plan is built exactly as the start Lambda builds it (root ``file://DIR/``); each
channel URI ``<prefix>X/`` maps to ``DIR/X``. One difference from S3: ``train/`` holds the
training job's files unpacked (``splat.ply``, ``metrics.json``, ...) rather than SageMaker's
``model.tar.gz``; the compress and publish stages read either.

Each container stage runs as ``python -m spaceport <stage>`` with ``SPACEPORT_SM_ROOT`` pointing
at ``DIR/.scratch/<stage>``, laid out the way SageMaker lays out its job: inputs linked under
``processing/input/<name>`` or ``input/data/<channel>``, ``hyperparameters.json`` written, the
plan's container arguments passed as-is. On success the output folder is renamed into place
and a done-marker (``DIR/.state/<stage>.json``: a key of the stage's options and inputs, and
the size and SHA-256 of every output file) is written last. A re-run skips a stage whose marker
matches its key and files; ``--from STAGE`` forces that stage and the ones after it. A stage
killed half way leaves only scratch (removed on the next run) and no marker, so nothing
half-written looks complete. Inputs are only linked, never written.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spaceport import plan as planlib
from spaceport import progress
from spaceport.display import Reporter
from spaceport.errors import ERRORS, ConfigInvalid, InputInvalid, SpaceportError, parse_failure
from spaceport.quality import QualityTargets
from spaceport.quality import check_file as gate_check

#: Files at most this big are hashed in the done-marker; larger ones are checked by size only.
HASH_LIMIT_BYTES = 256 * 1024 * 1024
#: What each container stage must leave in its output folder to count as complete.
REQUIRED: dict[str, tuple[str, ...]] = {
    "sfm": ("sfm.json", "sparse/0"),
    "train": ("metrics.json", "splat.ply"),
    "compress": ("compress.json", "scene.sog"),
    "publish": ("index.html",),
}
#: Local folder (under DIR) of each stage's output channel.
STATE_DIR = ".state"
SCRATCH_DIR = ".scratch"
LOG_DIR = "logs"


def _load_prctl():
    """libc's prctl, loaded once in the runner: the forked child must not import or load anything."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl() if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """In the stage process before exec: get SIGTERM if the runner dies (Linux), so a killed runner
    leaves no stage writing into scratch behind it. Elsewhere a no-op."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class StageFailed(SpaceportError):
    """A stage process exited with an error that carried no typed reason."""

    default_fix = "Read the stage's log (its path is in the message) and re-run; finished stages are skipped."


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def input_fingerprint(path: Path) -> str:
    """A cheap content fingerprint of the input (relative names, sizes, mtimes): same input, same job id."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        st = p.stat()
        rel = p.name if p == path else str(p.relative_to(path))
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def file_manifest(folder: Path) -> dict[str, list[Any]]:
    """``{relative path: [size, sha256 or None]}`` of every file under ``folder``."""
    out: dict[str, list[Any]] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            size = p.stat().st_size
            out[str(p.relative_to(folder))] = [size, _sha256(p) if size <= HASH_LIMIT_BYTES else None]
    return out


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a reader sees the old file or the new one, never half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def place_upload(source: Path, dest: Path) -> None:
    """Put a single-file upload into the stage's channel folder as a real file, as SageMaker's S3
    download does: a hard link (same file system), else a reflink clone, else a copy. Never a
    symlink: ingest refuses links inside an upload, so a linked file would read as an empty upload.
    The source is never opened for writing; a hard link shares its bytes but the stage only reads."""
    import fcntl

    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
        return
    except OSError:  # another file system, or a file this user may not link (fs.protected_hardlinks)
        pass
    with open(source, "rb") as src, open(dest, "wb") as out:
        try:
            fcntl.ioctl(out.fileno(), 0x40049409, src.fileno())  # FICLONE: share extents (btrfs, xfs)
            return
        except OSError:
            pass
        shutil.copyfileobj(src, out, 1 << 20)


@dataclass
class LocalJob:
    """A plan bound to a local folder."""

    plan: planlib.JobPlan
    out: Path
    source: Path

    def path_of(self, uri: str) -> Path:
        """Local folder of a channel URI under the job prefix (``<prefix>sfm/`` -> ``DIR/sfm``)."""
        if uri.startswith(self.plan.prefix):
            return self.out / uri[len(self.plan.prefix):].strip("/")
        if uri.startswith("file://"):
            return Path(uri[len("file://"):])
        raise ConfigInvalid(f"{uri} is not a local URI", "Plan local runs with a file:// root")

    def marker(self, stage: str) -> Path:
        return self.out / STATE_DIR / f"{stage}.json"

    def scratch(self, stage: str) -> Path:
        return self.out / SCRATCH_DIR / stage

    def log(self, stage: str) -> Path:
        return self.out / LOG_DIR / f"{stage}.log"


def build_local_plan(source: Path, out: Path, preset: str | None,
                     options: dict[str, dict[str, str]] | None = None,
                     min_psnr: float | None = None, max_gaussians: int | None = None) -> LocalJob:
    """The plan the start Lambda would build for this input, rooted at ``out``."""
    source, out = Path(source).resolve(), Path(out).resolve()
    if preset is not None and preset not in planlib.PRESET_NAMES:
        raise ConfigInvalid(f"Unknown preset {preset!r}", f"Use one of: {', '.join(planlib.PRESET_NAMES)}")
    request = planlib.JobRequest(
        source_uri=source.as_uri(), source_version=input_fingerprint(source), preset=preset,
        options=options or {},
        size_bytes=source.stat().st_size if source.is_file() else None,
    )
    settings: dict[str, Any] = {"root": out.as_uri() + "/"}
    if min_psnr is not None:
        settings["min_psnr"] = float(min_psnr)
    if max_gaussians is not None:
        settings["max_gaussians"] = int(max_gaussians)
    plan = planlib.plan_job(request, planlib.PlanSettings(**settings))
    return LocalJob(plan, out, source)


def check_paths(source: Path, out: Path) -> None:
    """Fail early, with a reason, on an input that is not there or an output that cannot be written."""
    source, out = Path(source), Path(out)
    if not source.exists():
        raise InputInvalid(f"the input {source} does not exist", "Pass a folder of images, a .zip or a video")
    if source.is_dir() and not any(source.iterdir()):
        from spaceport.errors import EmptyInput

        raise EmptyInput(f"the input folder {source} is empty", "Put the photos (or one zip or video) in it")
    resolved_out, resolved_src = out.resolve(), source.resolve()
    if resolved_out == resolved_src or resolved_src in resolved_out.parents:
        raise InputInvalid(f"the output {out} is inside the input {source}",
                           "Choose an --out folder outside the input, so the input is never modified")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise InputInvalid(f"the output folder {out} cannot be written (no write permission on {probe})",
                           "Choose an --out folder you can write to")


@dataclass
class StageRun:
    """What one stage did, for job.json and the display."""

    status: str
    seconds: float = 0.0
    peak_memory_mb: float | None = None
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {"status": self.status, "seconds": round(self.seconds, 3)}
        if self.peak_memory_mb is not None:
            out["peak_memory_mb"] = round(self.peak_memory_mb, 1)
        return {**out, **self.numbers}


class LocalRunner:
    """Runs the stages of a :class:`LocalJob` in order, skipping complete ones."""

    def __init__(self, job: LocalJob, reporter: Reporter | None = None, force_from: str | None = None,
                 python: str | None = None, stage_argv: Any = None):
        self.job = job
        self.reporter = reporter or Reporter()
        order = [s.name for s in job.plan.stages]
        if force_from is not None and force_from not in order:
            raise ConfigInvalid(f"Unknown stage {force_from!r} for --from", f"Use one of: {', '.join(order)}")
        self.forced = set(order[order.index(force_from):]) if force_from else set()
        self.python = python or sys.executable
        #: argv of a stage process; tests replace it with a fake stage.
        self.stage_argv = stage_argv or (lambda spec: [self.python, "-m", "spaceport", spec.name])
        self.records: dict[str, dict[str, Any]] = {}
        #: Digest of each finished stage's output files (a changed upstream output re-runs its consumers).
        self.outputs: dict[str, str] = {}

    # ---- markers ----
    def stage_key(self, spec: planlib.StageSpec) -> str:
        """Hash of what the stage's output depends on: its options, its input, the bytes of its upstream outputs."""
        upstream = {}
        for ch in spec.inputs:
            if ch.name == "upload":
                upstream[ch.name] = self.job.plan.request.source_version
            elif ch.name == "job":
                continue  # the job record changes on every run; the report does not depend on its timings
            else:
                producer = {"sfm": "sfm", "model": "train", "train": "train", "compressed": "compress"}[ch.name]
                upstream[ch.name] = self.outputs.get(producer, "")
        data = {"stage": spec.name, "options": dict(spec.options), "arguments": list(spec.arguments),
                "hyperparameters": dict(spec.hyperparameters), "upstream": upstream}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def output_dir(self, spec: planlib.StageSpec) -> Path:
        return self.job.path_of(spec.outputs[0].uri)

    def is_complete(self, spec: planlib.StageSpec, key: str) -> bool:
        """True when the marker matches ``key`` and every recorded file is there, unchanged."""
        marker = _read_json(self.job.marker(spec.name))
        if not marker or marker.get("key") != key:
            return False
        folder = self.output_dir(spec)
        files = marker.get("files") or {}
        for req in REQUIRED.get(spec.name, ()):
            if not (folder / req).exists():
                return False
        for rel, (size, digest) in files.items():
            p = folder / rel
            if not p.is_file() or p.stat().st_size != size:
                return False
            if digest is not None and _sha256(p) != digest:
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
        sm = "/opt/ml/"
        for ch in spec.inputs:
            local = root / ch.path[len(sm):]
            if ch.name == "job":
                # The job record as it stands now (per-stage timings so far), where SageMaker puts
                # the one-object input: processing/input/job/job.json.
                _write_json(local / "job.json", self.job_record("running"))
            elif ch.name == "upload":
                if self.job.source.is_dir():
                    self._link(self.job.source, local)
                else:  # a single zip/video/image: a folder holding it, as the S3 download would be
                    place_upload(self.job.source, local / self.job.source.name)
            else:
                src = self.job.path_of(ch.uri)
                if not src.exists():
                    raise InputInvalid(f"the {spec.name} stage needs {src}, which does not exist",
                                       f"Re-run without --from, or with --from an earlier stage than {spec.name}")
                self._link(src, local)
        if spec.kind == "training":
            _write_json(root / "input" / "config" / "hyperparameters.json", dict(spec.hyperparameters))
            ckpt = self.job.out / "checkpoints"  # persistent: an interrupted training resumes from it
            ckpt.mkdir(parents=True, exist_ok=True)
            self._link(ckpt, root / "checkpoints")
        if spec.name == "publish":
            # Local only: the stage logs give the report its training curve when metrics.json has none.
            self._link(self.job.out / LOG_DIR, root / "processing" / "input" / "logs")
        out_dir = root / spec.outputs[0].path[len(sm):]
        out_dir.mkdir(parents=True, exist_ok=True)
        return root, out_dir

    # ---- running ----
    def _env(self, sm_root: Path) -> dict[str, str]:
        env = dict(os.environ)
        env["SPACEPORT_SM_ROOT"] = str(sm_root)
        env["SPACEPORT_LOG_FORMAT"] = "kv"
        env["PYTHONUNBUFFERED"] = "1"
        pkg_root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([pkg_root, *filter(None, [env.get("PYTHONPATH")])])
        return env

    def run_process(self, spec: planlib.StageSpec, sm_root: Path) -> tuple[int, float, float, float]:
        """Run the stage process; stream its progress; return (exit code, seconds, peak RSS MiB, CPU seconds)."""
        argv = [*self.stage_argv(spec), *spec.arguments]
        log_path = self.job.log(spec.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with log_path.open("w") as log:
            log.write("$ " + " ".join(argv) + "\n")
            log.flush()
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                    env=self._env(sm_root), cwd=sm_root, start_new_session=True,
                                    preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    log.write(line)
                    fields = progress.parse_line(line)
                    if fields and fields.get("stage") == spec.name:
                        if "step" in fields and "steps" in spec.options:
                            fields.setdefault("steps", spec.options["steps"])  # the display shows step/steps
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
        for name in ("output/failure", "output/message"):
            p = sm_root / name
            if p.is_file() and p.read_text().strip():
                err_name, message = parse_failure(p.read_text())
                cls = ERRORS.get(err_name, StageFailed)
                return cls(message, f"See {self.job.log(spec.name)}; finished stages are kept and skipped on re-run")
        tail = self.job.log(spec.name).read_text(errors="replace").strip().splitlines()[-5:]
        return StageFailed(f"the {spec.name} stage exited with code {code}: {' | '.join(tail)[-600:]}",
                           f"Read {self.job.log(spec.name)} and re-run; finished stages are skipped")

    def run_stage(self, spec: planlib.StageSpec) -> StageRun:
        key = self.stage_key(spec)
        dest = self.output_dir(spec)
        if spec.name not in self.forced and self.is_complete(spec, key):
            marker = _read_json(self.job.marker(spec.name)) or {}
            self.outputs[spec.name] = _digest(marker.get("files"))
            old = marker.get("record", {})
            return StageRun("skipped", 0.0, old.get("peak_memory_mb"), self._numbers(spec, dest))
        self.job.marker(spec.name).unlink(missing_ok=True)
        sm_root, produced = self.prepare_scratch(spec)
        code, seconds, peak, cpu = self.run_process(spec, sm_root)
        if code != 0:
            raise self._failure(spec, sm_root, code)
        missing = [r for r in REQUIRED.get(spec.name, ()) if not (produced / r).exists()]
        if missing:
            raise StageFailed(f"the {spec.name} stage finished but did not write {', '.join(missing)}",
                              f"Read {self.job.log(spec.name)}")
        # Move the output into place: old output aside, new in, old removed. Same file system: renames.
        old = dest.with_name(dest.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            os.replace(dest, old)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(produced), str(dest))
        shutil.rmtree(old, ignore_errors=True)
        run = StageRun("done", seconds, peak, {"cpu_seconds": round(cpu, 2), **self._numbers(spec, dest)})
        files = file_manifest(dest)
        self.outputs[spec.name] = _digest(files)
        _write_json(self.job.marker(spec.name),
                    {"stage": spec.name, "key": key, "files": files, "record": run.to_dict()})
        shutil.rmtree(sm_root, ignore_errors=True)
        if spec.kind == "training":
            shutil.rmtree(self.job.out / "checkpoints", ignore_errors=True)
        return run

    @staticmethod
    def _numbers(spec: planlib.StageSpec, dest: Path) -> dict[str, Any]:
        """The headline numbers of a stage's summary JSON, for job.json and the display."""
        name = {"sfm": "sfm.json", "train": "metrics.json", "compress": "compress.json"}.get(spec.name)
        data = _read_json(dest / name) if name else None
        if not data:
            return {}
        keep = ("registered_images", "num_registered", "points", "num_points", "mean_reprojection_error",
                "test_psnr", "test_ssim", "num_gaussians", "steps", "sog_bytes", "spz_bytes", "input_bytes",
                "ratio", "stage_peak_memory_mb")
        out = {k: data[k] for k in keep if k in data and not isinstance(data[k], (dict, list))}
        outputs = data.get("outputs")
        if isinstance(outputs, dict):  # compress.json: {"scene.sog": bytes, ...}
            for name, key in (("scene.sog", "sog_bytes"), ("scene.spz", "spz_bytes")):
                if isinstance(outputs.get(name), int):
                    out[key] = outputs[name]
        if "peak_memory_mb" in data:
            out["reported_peak_memory_mb"] = data["peak_memory_mb"]
        return out

    def run_gate(self, spec: planlib.StageSpec) -> StageRun:
        start = time.perf_counter()
        train_dir = self.output_dir(self.job.plan.stage("train"))
        targets = QualityTargets(float(spec.thresholds.get("min_psnr", 0)), int(spec.thresholds.get("max_gaussians", 0)))
        result = gate_check(train_dir / "metrics.json", targets)
        return StageRun("passed", time.perf_counter() - start, None, result.to_dict())

    # ---- the job ----
    def job_record(self, status: str, seconds: float | None = None) -> dict[str, Any]:
        plan = self.job.plan
        rec: dict[str, Any] = {
            "job_id": plan.job_id, "status": status, "preset": plan.preset,
            "request": {**plan.to_request_json(), "input": str(self.job.source)},
            "stages": self.records,
            "out": str(self.job.out),
        }
        if "quality_gate" in self.records:
            rec["quality_gate"] = self.records["quality_gate"]
        if seconds is not None:
            rec["seconds"] = round(seconds, 3)
        report = self.job.out / "report" / "index.html"
        if report.is_file():
            rec["report"] = str(report)
        if (self.job.out / "report" / "viewer.html").is_file():
            rec["viewer"] = str(self.job.out / "report" / "viewer.html")
        return rec

    def run(self) -> dict[str, Any]:
        """Run every stage; return the final job record (also written to DIR/job.json)."""
        out = self.job.out
        out.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(out / SCRATCH_DIR, ignore_errors=True)  # leftovers of an interrupted run
        _write_json(out / "request.json", self.job.plan.to_request_json())
        self.reporter.start(self.job.plan.job_id, str(out), [s.name for s in self.job.plan.stages])
        start = time.perf_counter()
        current = ""
        try:
            for spec in self.job.plan.stages:
                current = spec.name
                self.reporter.stage_start(spec.name)
                run = self.run_gate(spec) if spec.kind == "gate" else self.run_stage(spec)
                self.records[spec.name] = run.to_dict()
                self.reporter.stage_end(spec.name, self.records[spec.name])
                _write_json(out / "job.json", self.job_record("running", time.perf_counter() - start))
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            rec = {"status": status}
            if isinstance(exc, SpaceportError):
                rec.update(error=exc.name, reason=exc.reason)
                rec.update({k: v for k, v in exc.details.items() if isinstance(v, (int, float, str, bool))})
            self.records[current] = rec
            self.reporter.stage_end(current, rec)
            self.reporter.close()
            _write_json(out / "job.json", self.job_record(status, time.perf_counter() - start))
            shutil.rmtree(out / SCRATCH_DIR, ignore_errors=True)
            raise
        job = self.job_record("succeeded", time.perf_counter() - start)
        _write_json(out / "job.json", job)
        shutil.rmtree(out / SCRATCH_DIR, ignore_errors=True)
        self.reporter.finish(job)
        return job


def run_local(source: Path, out: Path, preset: str | None = "default", *, force_from: str | None = None,
              options: dict[str, dict[str, str]] | None = None, min_psnr: float | None = None,
              max_gaussians: int | None = None, reporter: Reporter | None = None, stage_argv: Any = None,
              ) -> dict[str, Any]:
    """`spaceport run`: check the paths, plan, run. Returns the job record."""
    check_paths(source, out)
    job = build_local_plan(source, out, preset, options, min_psnr, max_gaussians)
    return LocalRunner(job, reporter, force_from, stage_argv=stage_argv).run()
