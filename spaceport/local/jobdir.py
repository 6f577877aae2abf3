"""The local job folder: the plan bound to ``--out DIR``, its markers, fingerprints and inputs.

What the local runner (:mod:`spaceport.local.runner`) needs besides running stages: where each channel lives under
DIR, the content fingerprint that fixes a local job's id, the file manifest a done-marker holds,
the checks on the paths before anything runs, and how a single-file upload is placed in the
stage's channel folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spaceport.core import plan as planlib
from spaceport.core.errors import ConfigInvalid, EmptyInput, InputInvalid

#: Files at most this big are hashed in the done-marker; larger ones are checked by size only.
HASH_LIMIT_BYTES = 256 * 1024 * 1024
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


def die_with_parent() -> None:
    """In the stage process before exec: get SIGTERM if the runner dies (Linux), so a killed runner
    leaves no stage writing into scratch behind it. Elsewhere a no-op."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def sha256(path: Path) -> str:
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


def file_manifest(folder: Path) -> dict[str, tuple[int, str | None]]:
    """``{relative path: (size, sha256 or None)}`` of every file under ``folder``."""
    out: dict[str, tuple[int, str | None]] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            size = p.stat().st_size
            out[str(p.relative_to(folder))] = (size, sha256(p) if size <= HASH_LIMIT_BYTES else None)
    return out


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


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
