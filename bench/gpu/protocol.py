"""The GPU training protocol in one call: plain gsplat loop, our `default`, our `quality` (MCMC), several seeds.

    python bench/gpu/protocol.py --capture fountain-P11=SFM_DIR [--capture ...] --out OUT --deadline UNIX_TIME
        [--steps 7000] [--seeds 0,1,2] [--slots 9] [--long-capture monstree] [--long-steps 30000]
        [--long-methods default,quality] [--solo-capture monstree] [--device cuda] [--downscale 1]

Every capture trains at the images' own size (the `default` preset's ``downscale`` is 1) with every
8th image held out, every 4th for captures under 16 images. Each run is its own process (a worker of
this file), so the CUDA allocator's peak, the caches and any crash belong to that run alone; our
presets run through the ``spaceport train`` command (``spaceport.cli.main``), the plain loop through
bench/gpu/reference.py.

The protocol cannot run one run after another inside one device call (~250k steps at ~12 ms per
step is ~50 min), so it shares the GPU between processes (with CUDA MPS where run.sh could start it):

* ``long``: the 30k-step runs start first and run in the background at a lower CPU (nice) and MPS
  client priority, so the 7k cells lose little to them; at the deadline they are stopped and
  report how far they got (steps, seconds per step over the last stretch, Gaussians, peak memory
  so far) and an extrapolated whole-run time, never a made-up PSNR;
* ``protocol``: the (capture, seed) triplets of plain/default/quality at 7k steps, in seeds-major
  order (seed 0 on every capture first, so a cut-off leaves whole seeds), at most ``--slots``
  processes at a time; the three methods of a triplet always start together, so they share the same
  contention. Once the GPU is busy, more processes only share it thinner, so a few slots (two
  triplets by default) finish cells sooner than many, and a cut-off loses fewer half-done runs. A
  triplet starts only if its estimate fits before the deadline: the time the same capture's last
  triplet took, else another capture's scaled by pixels per image (the first wave always starts);
  one that does not fit gives its turn to the next one that does;
* ``solo``: once the 7k queue is done, one triplet with nothing else on the GPU (the long runs are
  stopped first), one method after the other, for the loop-time and memory goals, if its estimate
  still fits.

Every second the parent counts the training processes alive; each row records the mean/min/max of
that count over its life (its concurrency) and the GPU utilisation nvidia-smi reported meanwhile.
OUT/runs.jsonl gets one row per run as it ends (finished, failed or stopped) and OUT/protocol.json
the plan and the state of every planned run, so a call that is cut off still returns every finished
cell. bench/gpu/report.py turns them into bench/results/gpu.json and gpu.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spaceport.core.summaries import TrainMetrics

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
METHODS = ("reference", "default", "quality")
#: held-out rule of the protocol: every 8th image, every 4th for captures under 16 images
SMALL_CAPTURE, TEST_EVERY_SMALL, TEST_EVERY = 16, 4, 8
#: captures with fewer images are not part of the protocol
MIN_IMAGES = 8
#: seconds kept between the protocol's deadline and stopping the runs still going (SIGTERM, then SIGKILL)
STOP_GRACE_S = 5.0


def held_out_every(n_images: int) -> int:
    return TEST_EVERY_SMALL if n_images < SMALL_CAPTURE else TEST_EVERY


def count_images(scene: Path) -> int:
    """Images in the SfM output's images/ folder (the registered, undistorted ones)."""
    return sum(1 for p in (scene / "images").iterdir() if p.is_file())


def image_pixels(scene: Path) -> int:
    """Pixels of the capture's first image (a step renders one image: its cost follows this)."""
    from PIL import Image

    first = min(p for p in (scene / "images").iterdir() if p.is_file())
    try:
        with Image.open(first) as im:
            return im.width * im.height
    except OSError:  # not an image (argument tests): every capture costs the same
        return 1


# ----------------------------------------------------------------------------------------------- worker


def environment() -> dict[str, Any]:
    """Versions and device of this process (called in the workers, so the parent never touches CUDA)."""
    import platform

    import torch

    env: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                           "python": platform.python_version()}
    try:
        import gsplat

        env["gsplat"] = gsplat.__version__
    except ImportError:
        env["gsplat"] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), sm_count=p.multi_processor_count)
    return env


def _sample_memory(status: Path, stop: threading.Event, every_s: float = 2.0) -> None:
    """Write this process's CUDA peak so far to ``status`` every ``every_s`` (what a stopped run reports)."""
    import torch

    peak = 0.0
    while not stop.wait(every_s):
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            peak = max(peak, torch.cuda.max_memory_allocated() / 2**20)
            reserved = torch.cuda.memory_reserved() / 2**20
            status.write_text(json.dumps({"t": time.time(), "peak_cuda_memory_mb": round(peak, 1),
                                          "reserved_cuda_memory_mb": round(reserved, 1)}))


def ours_argv(method: str, scene: Path, out: Path, steps: int, seed: int, test_every: int, downscale: int,
              device: str, log_every: int = 100) -> list[str]:
    """`spaceport train` for one of our presets: only the protocol's settings on top of the preset
    (no checkpoints: a bench run is never resumed, and writing them would cost loop time)."""
    return ["train", str(scene), "--out", str(out), "--preset", method, "--steps", str(steps), "--seed", str(seed),
            "--test-every", str(test_every), "--downscale", str(downscale), "--device", device,
            "--checkpoint-every", "0", "--log-every", str(log_every)]


def ours_row(metrics: TrainMetrics) -> dict[str, Any]:
    """The table's fields from our metrics.json."""
    return {"steps": metrics.steps, "test_psnr": metrics.test_psnr, "test_ssim": metrics.test_ssim,
            "num_gaussians": metrics.num_gaussians, "loop_s": metrics.seconds.get("optimise"),
            "eval_s": metrics.seconds.get("evaluate"), "seconds_per_step": metrics.seconds_per_step,
            "peak_cuda_memory_mb": metrics.peak_cuda_memory_mb, "device": metrics.device,
            "width": metrics.width, "height": metrics.height, "train_images": metrics.train_images,
            "test_images": len(metrics.held_out), "held_out": metrics.held_out}


def worker(a: argparse.Namespace) -> int:
    """One run in this process: writes --result (the row) and returns the exit code."""
    t0 = time.perf_counter()
    sys.path[:0] = [str(ROOT), str(HERE)]
    stop = threading.Event()
    threading.Thread(target=_sample_memory, args=(a.status, stop), daemon=True).start()
    try:
        if a.method == "reference":
            from reference import train_reference

            row = train_reference(a.scene, a.steps, seed=a.seed, test_every=a.test_every, downscale=a.downscale,
                                  device=a.device, log_every=a.log_every)
            row.pop("run", None)
        else:
            from spaceport.cli import main as spaceport_main

            rc = spaceport_main(ours_argv(a.method, a.scene, a.work, a.steps, a.seed, a.test_every, a.downscale,
                                          a.device, a.log_every))
            if rc:
                return rc
            from spaceport.core.summaries import TrainMetrics, read_summary

            row = ours_row(read_summary(TrainMetrics, a.work / "metrics.json"))
    finally:
        stop.set()
    row.update(total_s=time.perf_counter() - t0, env=environment())
    a.result.write_text(json.dumps(row))
    return 0


# ----------------------------------------------------------------------------------------------- parent


@dataclass
class Run:
    """One planned training process and what became of it."""

    capture: str
    method: str
    seed: int
    steps: int
    group: str  # "protocol" | "long" | "solo"
    scene: str
    test_every: int
    images: int
    state: str = "planned"  # planned | running | finished | failed | stopped | skipped
    started: float | None = None
    ended: float | None = None
    note: str = ""
    concurrency: list[int] = field(default_factory=list)
    gpu_util: list[float] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.group}-{self.capture}-{self.method}-s{self.seed}-{self.steps}"

    def public(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("concurrency"), d.pop("gpu_util")
        return {"id": self.id, **d, **concurrency_stats(self.concurrency, self.gpu_util)}


def concurrency_stats(counts: list[int], util: list[float]) -> dict[str, Any]:
    if not counts:
        return {"concurrency_mean": None, "concurrency_min": None, "concurrency_max": None, "gpu_util_mean": None}
    return {"concurrency_mean": round(statistics.fmean(counts), 2), "concurrency_min": min(counts),
            "concurrency_max": max(counts), "gpu_util_mean": round(statistics.fmean(util), 1) if util else None}


def read_progress(log: Path) -> list[dict[str, float]]:
    """The run's progress events with a step (JSON lines: SPACEPORT_LOG_FORMAT=json), oldest first."""
    points = []
    if not log.is_file():
        return points
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(ev, dict) and "step" in ev and "t" in ev:
            points.append({"step": int(ev["step"]), "t": float(ev["t"]),
                           "num_gaussians": int(ev.get("num_gaussians") or 0)})
    return points


def partial_row(points: list[dict[str, float]], steps: int, window: int = 1000) -> dict[str, Any]:
    """How far a stopped run got: the step reached, seconds per step over the last ``window`` steps,
    and the whole loop extrapolated at that rate (a lower bound while the Gaussian count still grows)."""
    if not points:
        return {"steps_reached": 0}
    last = points[-1]
    row: dict[str, Any] = {"steps_reached": last["step"], "num_gaussians": last["num_gaussians"]}
    if len(points) >= 2:
        first = points[0]
        ref = next((p for p in points if p["step"] >= last["step"] - window), first)
        if ref is last:
            ref = points[-2]
        rate = (last["t"] - ref["t"]) / max(1, last["step"] - ref["step"])
        row.update(seconds_per_step_recent=rate,
                   seconds_per_step_mean=(last["t"] - first["t"]) / max(1, last["step"] - first["step"]),
                   loop_s_to_reached=(last["t"] - first["t"]) * last["step"] / max(1, last["step"] - first["step"]),
                   loop_s_extrapolated=(last["t"] - first["t"]) * last["step"] / max(1, last["step"] - first["step"])
                   + rate * (steps - last["step"]))
    return row


class Scheduler:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.out: Path = a.out
        self.logs: Path = a.logs
        self.work: Path = a.work
        self.deadline: float = a.deadline
        self.running: dict[str, tuple[Run, subprocess.Popen]] = {}
        self.rows: list[dict[str, Any]] = []
        self.util: float | None = None
        self.captures = {name: Path(path) for name, path in a.captures}
        self.images = {name: count_images(p) for name, p in self.captures.items()}
        self.pixels = {name: image_pixels(p) for name, p in self.captures.items()}
        self.triplets: list[list[Run]] = [
            [self._run(c, m, s, a.steps, "protocol") for m in a.methods]
            for s in a.seeds for c in self.captures]
        self.long = [self._run(a.long_capture, m, 0, a.long_steps, "long") for m in a.long_methods] \
            if a.long_capture and a.long_steps else []
        self.solo = [self._run(a.solo_capture, m, 0, a.steps, "solo") for m in a.methods] if a.solo_capture else []
        self.queue = list(self.triplets)
        self.wall: dict[tuple[str, str], float] = {}  # (capture, method) -> last finished protocol wall time

    def _run(self, capture: str, method: str, seed: int, steps: int, group: str) -> Run:
        if capture not in self.captures:
            raise SystemExit(f"unknown capture {capture!r}; known: {', '.join(self.captures)}")
        n = self.images[capture]
        return Run(capture, method, seed, steps, group, str(self.captures[capture]), held_out_every(n), n)

    def all_runs(self) -> list[Run]:
        return [r for t in self.triplets for r in t] + self.long + self.solo

    # -- bookkeeping
    def write_state(self) -> None:
        state = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(self.a).items()
                              if k not in ("worker",)},
                 "captures": {c: {"scene": str(p), "images": self.images[c],
                                  "test_every": held_out_every(self.images[c])} for c, p in self.captures.items()},
                 "now": time.time(), "runs": [r.public() for r in self.all_runs()]}
        tmp = self.out / "protocol.json.tmp"
        tmp.write_text(json.dumps(state, indent=1, default=str))
        tmp.replace(self.out / "protocol.json")

    def record(self, run: Run, row: dict[str, Any]) -> None:
        row = {**run.public(), **row}
        self.rows.append(row)
        with open(self.out / "runs.jsonl", "a") as f:
            f.write(json.dumps(row, default=str) + "\n")
        self.write_state()
        print(f"protocol: {run.id} {run.state} {run.note} "
              + " ".join(f"{k}={row[k]:.4g}" if isinstance(row.get(k), float) else f"{k}={row.get(k)}"
                         for k in ("test_psnr", "loop_s", "total_s", "steps_reached", "concurrency_mean")
                         if row.get(k) is not None), flush=True)

    # -- processes
    def start(self, run: Run, nice: int = 0, low_priority: bool = False) -> None:
        base = self.work / run.id
        base.mkdir(parents=True, exist_ok=True)
        for name in ("result.json", "status.json"):
            (base / name).unlink(missing_ok=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--method", run.method,
               "--scene", run.scene, "--steps", str(run.steps), "--seed", str(run.seed),
               "--test-every", str(run.test_every), "--downscale", str(self.a.downscale), "--device", self.a.device,
               "--log-every", str(self.a.log_every),
               "--work", str(base / "out"), "--result", str(base / "result.json"), "--status", str(base / "status.json")]
        env = {**os.environ, "SPACEPORT_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1",
               "OMP_NUM_THREADS": str(self.a.threads_per_run)}
        if low_priority:
            env["CUDA_MPS_CLIENT_PRIORITY"] = "1"  # below normal: only matters under MPS
        with open(self.logs / f"{run.id}.log", "w") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                    preexec_fn=(lambda: os.nice(nice)) if nice else None)
        run.state, run.started = "running", time.time()
        self.running[run.id] = (run, proc)
        print(f"protocol: start {run.id} (test_every={run.test_every}, {len(self.running)} running)", flush=True)

    def collect(self, run: Run, rc: int | None, stopped: str = "") -> None:
        run.ended = time.time()
        base = self.work / run.id
        result = base / "result.json"
        wall = run.ended - (run.started or run.ended)
        if rc == 0 and result.is_file():
            run.state = "finished"
            row = json.loads(result.read_text())
            row["wall_s"] = wall
            if run.group == "protocol":
                self.wall[(run.capture, run.method)] = wall
        else:
            run.state = "stopped" if stopped else "failed"
            if run.group == "protocol" and not stopped:  # a failed method must not hold up the estimates
                self.wall.setdefault((run.capture, run.method), wall)
            log = self.logs / f"{run.id}.log"
            tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.is_file() else []
            errors = [line for line in tail if line.startswith(("error:", "fix:"))] or tail[-1:]
            run.note = (f"stopped {stopped} after {wall:.0f} s" if stopped
                        else f"exit {rc}: " + " | ".join(errors)[:300])
            row = {"wall_s": wall, **partial_row(read_progress(log), run.steps)}
            status = base / "status.json"
            if status.is_file():
                with contextlib.suppress(json.JSONDecodeError):
                    row["peak_cuda_memory_mb_so_far"] = json.loads(status.read_text()).get("peak_cuda_memory_mb")
        self.record(run, row)

    def poll(self) -> None:
        for rid, (run, proc) in list(self.running.items()):
            rc = proc.poll()
            if rc is not None:
                del self.running[rid]
                self.collect(run, rc)

    def stop(self, runs: list[Run], why: str = "at the deadline") -> None:
        procs = [(r, p) for r, p in self.running.values() if r in runs]
        for _, p in procs:
            p.send_signal(signal.SIGTERM)
        end = time.time() + STOP_GRACE_S
        for _, p in procs:
            try:
                p.wait(timeout=max(0.1, end - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for r, p in procs:
            del self.running[r.id]
            self.collect(r, p.returncode, stopped=why)

    def sample(self) -> None:
        n = len(self.running)
        for run, _ in self.running.values():
            run.concurrency.append(n)
            if self.util is not None:
                run.gpu_util.append(self.util)

    def _util_loop(self, stop: threading.Event) -> None:
        while not stop.wait(2.0):
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5)
                self.util = float(out.stdout.split()[0])
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                self.util = None

    # -- the schedule
    def estimate(self, triplet: list[Run]) -> float | None:
        """Seconds the triplet will take: the slowest method of its capture's last finished triplet; before
        that, another capture's, scaled by pixels per image; None before any triplet has finished."""
        known = [self.wall.get((r.capture, r.method)) for r in triplet]
        if None not in known:
            return max(known)
        capture = triplet[0].capture
        others = {c for c, _ in self.wall if all((c, r.method) in self.wall for r in triplet)}
        if not others:
            return None
        return max(max(self.wall[(c, r.method)] for r in triplet) * self.pixels[capture] / self.pixels[c]
                   for c in others)

    def admit(self) -> None:
        slots = self.a.slots - sum(1 for r, _ in self.running.values() if r.group == "protocol")
        left = self.deadline - time.time()
        for triplet in list(self.queue):
            if slots < len(triplet):
                break
            capture_busy = any(r.capture == triplet[0].capture and r.group == "protocol"
                               for r, _ in self.running.values())
            if capture_busy and any((r.capture, r.method) not in self.wall for r in triplet):
                continue  # wait for this capture's first triplet to say how long one takes
            est = self.estimate(triplet)
            if est is not None and est * self.a.margin > left:
                continue
            if est is None and left < self.a.min_start_s:
                continue
            self.queue.remove(triplet)
            for run in triplet:
                self.start(run)
            slots -= len(triplet)

    def solo_estimate(self) -> float | None:
        """Seconds for the solo triplet, one run after the other: each protocol wall time divided by the
        mean concurrency it ran under (the GPU shared evenly), times 1.5 (sharing is never perfectly even)."""
        total = 0.0
        for run in self.solo:
            done = [r for r in self.rows if r["capture"] == run.capture and r["method"] == run.method
                    and r["group"] == "protocol" and r["state"] == "finished"]
            if not done:
                return None
            total += min(d["wall_s"] / max(1.0, d["concurrency_mean"] or 1.0) for d in done) * 1.5
        return total

    def run(self) -> list[dict[str, Any]]:
        for d in (self.out, self.logs, self.work):
            d.mkdir(parents=True, exist_ok=True)
        self.write_state()
        stop_util = threading.Event()
        if self.a.device != "cpu":
            threading.Thread(target=self._util_loop, args=(stop_util,), daemon=True).start()
        for run in self.long:
            self.start(run, nice=10, low_priority=True)
        solo_left, solo_go = list(self.solo), False
        try:
            while True:
                self.poll()
                if time.time() >= self.deadline - STOP_GRACE_S:
                    break
                self.admit()
                protocol_busy = any(r.group == "protocol" for r, _ in self.running.values())
                if self.queue and not protocol_busy:  # nothing left fits before the deadline
                    for triplet in self.queue:
                        for r in triplet:
                            r.state, r.note = "skipped", "would not finish before the deadline"
                    self.queue.clear()
                    self.write_state()
                if not self.queue and not protocol_busy:
                    solo_busy = any(r.group == "solo" for r, _ in self.running.values())
                    if solo_left and not solo_go:
                        est, left = self.solo_estimate(), self.deadline - time.time()
                        if est is not None and est < left:
                            solo_go = True
                            self.stop(self.long, "to leave the GPU to the solo runs")
                        else:
                            for r in solo_left:
                                r.state = "skipped"
                                r.note = (f"estimated {est:.0f} s > {left:.0f} s left" if est is not None
                                          else "no finished protocol run of its capture to estimate from")
                            solo_left.clear()
                            self.write_state()
                    if solo_go and solo_left and not solo_busy:
                        self.start(solo_left.pop(0))
                    if not self.running and not solo_left:
                        break
                self.sample()
                time.sleep(self.a.poll_s)
        finally:
            stop_util.set()
            self.stop([r for r, _ in self.running.values()])
            for r in self.all_runs():
                if r.state == "planned":
                    r.state, r.note = "skipped", "not started before the deadline"
            self.write_state()
        return self.rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capture", dest="captures", action="append", default=[], metavar="NAME=SFM_DIR",
                    help="A capture's SfM output (sparse/0 + images/); repeat for each, in table order")
    ap.add_argument("--out", type=Path, help="runs.jsonl and protocol.json go here")
    ap.add_argument("--logs", type=Path, help="One log per run (default OUT/logs)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/spaceport-protocol"),
                    help="Scratch: the runs' splats, renders, result and status files")
    ap.add_argument("--deadline", type=float, default=None, help="Unix time by which every process is stopped")
    ap.add_argument("--steps", type=int, default=7000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--slots", type=int, default=6, help="Protocol processes at a time (whole triplets)")
    ap.add_argument("--long-capture", default=None)
    ap.add_argument("--long-steps", type=int, default=30000)
    ap.add_argument("--long-methods", default="default,quality")
    ap.add_argument("--solo-capture", default=None)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cuda")
    ap.add_argument("--downscale", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=100, help="Steps between progress lines of each run")
    ap.add_argument("--threads-per-run", type=int, default=1, help="OMP_NUM_THREADS of each run")
    ap.add_argument("--margin", type=float, default=1.1, help="A triplet starts if margin x its estimate fits")
    ap.add_argument("--min-start-s", type=float, default=60.0,
                    help="A triplet with no estimate starts only with this much time left")
    ap.add_argument("--poll-s", type=float, default=1.0)
    # worker
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    ap.add_argument("--scene", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--test-every", type=int, default=8, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--status", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return a
    if not a.captures or a.out is None:
        ap.error("--capture and --out are required")
    try:
        a.captures = [tuple(c.split("=", 1)) for c in a.captures]
        a.seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    except ValueError:
        ap.error("--capture takes NAME=SFM_DIR and --seeds a comma-separated list of integers")
    a.methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    a.long_methods = [m.strip() for m in a.long_methods.split(",") if m.strip()]
    bad = [m for m in a.methods + a.long_methods if m not in METHODS]
    if bad or not a.methods or not a.seeds:
        ap.error(f"methods must be among {', '.join(METHODS)} (got {bad}); seeds must not be empty")
    if a.steps < 1 or a.slots < len(a.methods):
        ap.error(f"--steps must be at least 1 and --slots at least {len(a.methods)} (one whole triplet)")
    for name, path in a.captures:
        if not (Path(path) / "images").is_dir():
            ap.error(f"capture {name}: {path} has no images/ folder (an SfM output holds sparse/0 and images/)")
        if count_images(Path(path)) < MIN_IMAGES:
            ap.error(f"capture {name} has {count_images(Path(path))} images; the protocol takes {MIN_IMAGES} or more")
    a.logs = a.logs or a.out / "logs"
    a.deadline = a.deadline or time.time() + 24 * 3600
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.worker:
        return worker(a)
    Scheduler(a).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
