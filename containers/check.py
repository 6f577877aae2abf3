"""`make images-check`: build every stage image from its real Dockerfile and run the chain in them.

1. bases: a Debian 12 root (debootstrap) with Python 3.11 laid out as the official image lays it
   out (``python3 -m venv /usr/local``), standing in for ECR Public's python:3.11-slim-bookworm,
   and a node 20 root made from this machine's node (the official image's paths), standing in for
   node:20-bookworm-slim. One debootstrap per run; all three images build on it.
2. images: ``buildah bud`` (no daemon, ``--isolation chroot``, vfs storage) of sfm, train and
   compress, with only the layers that cannot be had here swapped by the Dockerfiles' build args
   (bases, the cu118/CPU torch indexes -> this machine's CPU torch wheel, bind-mounted; the CUDA
   compile -> the index's pure-Python gsplat wheel; see each Dockerfile's header).
3. chain: sfm -> train (preset fast, CPU) -> compress on a real capture, each started as SageMaker
   starts it: the image's own ENTRYPOINT (read from the built image) plus ``train`` for the
   Training job or the plan's ContainerArguments for a Processing job, with the ``/opt/ml`` layout
   mounted, ``hyperparameters.json`` written as SageMaker writes it (every value a string) and the
   model packed into ``model.tar.gz`` as SageMaker packs it. Each output is checked: every photo
   registered, the held-out PSNR over a floor, a ``.sog`` that decodes to the Gaussians compress
   says it wrote.
4. sizes of the images, and every phase's seconds.

Run as root (debootstrap, chroot). Needs buildah and debootstrap (apt) and reaches only Debian and
PyPI/npm. ``--keep-bases`` reuses the bases of an earlier run (for iterating; CI makes them anew).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spaceport.core import contract, graph  # noqa: E402
from spaceport.core import plan as planlib  # noqa: E402

#: Local image names (never pushed anywhere).
PREFIX = "localhost/spaceport-check"
PYTHON_BASE = f"{PREFIX}/python:3.11-bookworm"
NODE_BASE = f"{PREFIX}/node:20-bookworm"
#: The torch this machine's pip resolves to a CPU build on local disk (Makefile's TORCH_SPEC).
TORCH_SPEC = os.environ.get("TORCH_SPEC", "torch==2.13.0")
#: Inside the build's RUN steps (bind-mounted read-only).
TORCH_WHEELS = "/torch-wheels"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
#: The capture the chain runs on, and what it must give. Floor: held-out PSNR of the fast preset on
#: the CPU, in dB (measured 19.04 and 18.63 dB in the image on herzjesu-P8 in two runs,
#: bench/results/images.md; a broken trainer gives ~13 dB on the demo scene).
CAPTURES = ROOT / "captures"
CAPTURE = ("herzjesu-P8", "images")
MIN_PSNR = 16.0
#: The images' size goal, MB (the train image's, the largest).
MAX_IMAGE_MB = 8000
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
ENV = {**os.environ, "STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}

PHASES: list[tuple[str, float]] = []


def log(message: str) -> None:
    print(f"images-check: {message}", flush=True)


@contextmanager
def phase(name: str):
    start = time.monotonic()
    log(f"{name} ...")
    yield
    seconds = time.monotonic() - start
    PHASES.append((name, seconds))
    log(f"{name}: {seconds:.0f} s")


def run(*argv: str | Path, capture: bool = False, cwd: Path | None = None) -> str:
    """Run a command (fails the check on a non-zero exit); its output streams unless captured."""
    out = subprocess.run([str(a) for a in argv], env=ENV, cwd=cwd, text=True, check=False,
                         stdout=subprocess.PIPE if capture else None)
    if out.returncode != 0:
        raise SystemExit(f"images-check: `{' '.join(map(str, argv))[:300]}` exited {out.returncode}")
    return out.stdout or ""


def buildah(*args: str | Path, capture: bool = False) -> str:
    return run("buildah", *args, capture=capture).strip()


def image_exists(name: str) -> bool:
    return subprocess.run(["buildah", "inspect", "--type", "image", name], env=ENV, capture_output=True).returncode == 0


# ---- 1. bases ----
def make_python_base(work: Path) -> None:
    """Debian 12 minbase + Python 3.11 as a venv at /usr/local (the official image's layout)."""
    rootfs = work / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    run("debootstrap", "--variant=minbase", "--include=python3,python3-venv,python3-pip,ca-certificates",
        "bookworm", rootfs, DEBIAN_MIRROR)
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for p in (rootfs / junk).glob("*"):
            if p.is_file():
                p.unlink()
    # pip and npm inside the builds must trust this machine's TLS: its CA bundle, by the variables
    # both read (a property of this stand-in base only; the real bases are untouched).
    shutil.copy(CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
    ctr = buildah("from", "scratch", capture=True)
    try:
        mnt = Path(buildah("mount", ctr, capture=True))
        run("cp", "-a", f"{rootfs}/.", mnt)
        buildah("run", ctr, "--", "python3", "-m", "venv", "/usr/local")
        buildah("config", "--env", "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env", "LANG=C.UTF-8", "--env", f"PIP_CERT={CA_BUNDLE}", "--env", f"SSL_CERT_FILE={CA_BUNDLE}",
                "--env", f"NODE_EXTRA_CA_CERTS={CA_BUNDLE}", "--cmd", "python3", ctr)
        buildah("commit", "--rm", ctr, PYTHON_BASE)
    except BaseException:
        subprocess.run(["buildah", "rm", ctr], env=ENV, capture_output=True)
        raise
    shutil.rmtree(rootfs, ignore_errors=True)


def make_node_base() -> None:
    """This machine's node 20 and npm at the official node image's paths."""
    node = Path(shutil.which("node") or "").resolve()
    version = run(node, "--version", capture=True).strip()
    if not version.startswith("v20."):
        raise SystemExit(f"images-check: the compress image wants node 20; this machine has {version}")
    npm = Path(run("npm", "root", "-g", capture=True).strip()) / "npm"
    ctr = buildah("from", "scratch", capture=True)
    mnt = Path(buildah("mount", ctr, capture=True))
    (mnt / "usr/local/bin").mkdir(parents=True)
    (mnt / "usr/local/lib/node_modules").mkdir(parents=True)
    shutil.copy2(node, mnt / "usr/local/bin/node")
    run("cp", "-a", npm, mnt / "usr/local/lib/node_modules/npm")
    buildah("commit", "--rm", ctr, NODE_BASE)
    log(f"node base: {version}")


def torch_wheels(work: Path) -> tuple[Path, str]:
    """This machine's CPU torch wheel in a folder to bind-mount, and its exact version."""
    folder = work / "torch-wheels"
    shutil.rmtree(folder, ignore_errors=True)
    run(sys.executable, "-m", "pip", "download", "-q", "--no-deps", TORCH_SPEC, "-d", folder)
    (wheel,) = folder.glob("torch-*.whl")
    return folder, wheel.name.split("-")[1]  # torch-2.13.0+cpu-cp311-... -> 2.13.0+cpu


# ---- 2. images ----
def build_args(image: str, torch_version: str) -> list[str]:
    """The build args that swap what cannot be had here (named in each Dockerfile and docs/aws.md)."""
    torch = {"TORCH_VERSION": torch_version, "TORCH_PIP_ARGS": f"--find-links {TORCH_WHEELS}"}
    args = {
        "sfm": {"PYTHON_BASE": PYTHON_BASE},
        "train": {"RUNTIME_BASE": PYTHON_BASE, "GSPLAT_WHEELS": "gsplat-pypi", "SMOKE": "image --cpu-only", **torch},
        "compress": {"PYTHON_BASE": PYTHON_BASE, "NODE_BASE": NODE_BASE, **torch},
    }[image]
    return [x for k, v in args.items() for x in ("--build-arg", f"{k}={v}")]


def build_image(image: str, torch_dir: Path, torch_version: str) -> str:
    tag = f"{PREFIX}/{image}:check"
    run("buildah", "bud", "--isolation", "chroot", "--pull=false", *build_args(image, torch_version),
        "-v", f"{torch_dir}:{TORCH_WHEELS}:ro", "-f", f"containers/{image}/Dockerfile", "-t", tag, ".", cwd=ROOT)
    return tag


def image_start(tag: str) -> contract.ImageStart:
    """ENTRYPOINT and CMD of the built image (what SageMaker starts), not of the Dockerfile text."""
    config = json.loads(buildah("inspect", "--type", "image", tag, capture=True))["OCIv1"]["config"]
    return contract.ImageStart(tuple(config.get("Entrypoint") or ()), tuple(config.get("Cmd") or ()))


def image_size_mb(tag: str) -> float:
    """Uncompressed size of the image's root filesystem, MB (what `docker images` shows)."""
    ctr = buildah("from", "--pull=false", tag, capture=True)
    try:
        mnt = buildah("mount", ctr, capture=True)
        return int(run("du", "-sb", mnt, capture=True).split()[0]) / 1e6
    finally:
        buildah("rm", ctr, capture=True)


# ---- 3. the chain ----
def start(tag: str, spec: planlib.StageSpec, job_id: str, mounts: Sequence[tuple[Path, str]]) -> float:
    """Start ``spec`` in ``tag`` the way SageMaker does; return its seconds."""
    argv = contract.sagemaker_argv(spec.kind, image_start(tag),
                                   container_arguments=spec.arguments if spec.kind == "processing" else None)
    log(f"{spec.name}: {' '.join(argv)}")
    ctr = buildah("from", "--pull=false", tag, capture=True)
    volumes = [x for host, inside in mounts for x in ("-v", f"{host}:{inside}")]
    started = time.monotonic()
    try:
        # The ASL's Environment for every stage job.
        buildah("run", "--isolation", "chroot", "--env", f"SPACEPORT_JOB_ID={job_id}",
                "--env", f"SPACEPORT_STAGE={spec.name}", *volumes, ctr, "--", *argv)
    finally:
        buildah("rm", ctr, capture=True)
    return time.monotonic() - started


def run_chain(work: Path, tags: dict[str, str]) -> dict[str, str]:
    from spaceport.core.summaries import CompressSummary, SfmSummary, TrainMetrics, read_summary
    from spaceport.stages.compress.sog import decode_sog

    capture = CAPTURES.joinpath(*CAPTURE)
    if not capture.is_dir():
        raise SystemExit(f"images-check: the capture {capture} is missing (captures/README.md)")
    photos = sorted(p for p in capture.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    job_root = work / "job"
    shutil.rmtree(job_root, ignore_errors=True)
    request = planlib.JobRequest(source_uri=capture.as_uri(), source_version="images-check", preset="fast")
    plan = planlib.plan_job(request, planlib.PlanSettings(root=job_root.as_uri() + "/"))
    results = {}

    # SfM: a Processing job; the upload channel holds the photos, the output channel is written.
    sfm = plan.stage("sfm")
    sfm_out = job_root / "sfm"
    sfm_out.mkdir(parents=True)
    seconds = start(tags[graph.STAGE_IMAGE["sfm"]], sfm, plan.job_id,
                    [(capture, sfm.input("upload").path + ":ro"), (sfm_out, sfm.outputs[0].path)])
    summary = read_summary(SfmSummary, sfm_out / "sfm.json")
    log(f"sfm: {summary.registered_images}/{len(photos)} registered in {seconds:.0f} s")
    if summary.registered_images != len(photos):
        raise SystemExit(f"images-check: sfm registered {summary.registered_images} of {len(photos)} photos")
    results["sfm"] = f"{summary.registered_images}/{len(photos)} registered, {seconds:.0f} s"

    # Train: a Training job; SageMaker copies the channel in (File mode), writes the config files
    # (hyperparameters.json: every value a string) and tars /opt/ml/model into model.tar.gz.
    train = plan.stage("train")
    ml = job_root / "train-ml"
    shutil.copytree(sfm_out, ml / "input/data/sfm")
    config = ml / "input/config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in train.hyperparameters.items()}))
    (config / "inputdataconfig.json").write_text(json.dumps(
        {"sfm": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}}))
    (config / "resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-1", "hosts": ["algo-1"], "current_instance_type": train.instance_type}))
    for sub in ("model", "output/data", "checkpoints"):
        (ml / sub).mkdir(parents=True)
    seconds = start(tags[graph.STAGE_IMAGE["train"]], train, plan.job_id, [(ml, "/opt/ml")])
    metrics = read_summary(TrainMetrics, ml / "model" / TrainMetrics.FILE)
    log(f"train: held-out PSNR {metrics.test_psnr:.2f} dB, {metrics.num_gaussians} Gaussians in {seconds:.0f} s")
    if not metrics.test_psnr >= MIN_PSNR:
        raise SystemExit(f"images-check: held-out PSNR {metrics.test_psnr:.2f} dB is under {MIN_PSNR} dB")
    results["train"] = f"PSNR {metrics.test_psnr:.2f} dB, {metrics.num_gaussians} Gaussians, {seconds:.0f} s"
    model = job_root / "train"
    model.mkdir()
    with tarfile.open(model / "model.tar.gz", "w:gz") as tar:
        for item in sorted((ml / "model").iterdir()):
            tar.add(item, arcname=item.name)

    # Compress: a Processing job reading the training job's model.tar.gz.
    compress = plan.stage("compress")
    out = job_root / "compressed"
    out.mkdir()
    seconds = start(tags[graph.STAGE_IMAGE["compress"]], compress, plan.job_id,
                    [(model, compress.input("model").path + ":ro"), (out, compress.outputs[0].path)])
    summary = read_summary(CompressSummary, out / CompressSummary.FILE)
    splat = decode_sog(out / "scene.sog")
    log(f"compress: scene.sog decodes to {len(splat.means)} Gaussians in {seconds:.0f} s")
    if len(splat.means) != summary.gaussians.kept or not len(splat.means):
        raise SystemExit(f"images-check: scene.sog holds {len(splat.means)} Gaussians, compress.json says "
                         f"{summary.gaussians.kept}")
    results["compress"] = f"scene.sog reads back ({len(splat.means)} Gaussians), {seconds:.0f} s"
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "images-check",
                        help="scratch folder (default build/images-check)")
    parser.add_argument("--keep-bases", action="store_true", help="reuse the bases of an earlier run")
    parser.add_argument("--only-build", action="store_true", help="build the images, run nothing")
    parser.add_argument("--reuse-images", action="store_true",
                        help="run the chain in the images an earlier run built (for iterating on the chain)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("images-check: run as root (debootstrap and buildah's chroot isolation need it)")
    for tool in ("buildah", "debootstrap"):
        if not shutil.which(tool):
            raise SystemExit(f"images-check: {tool} is missing: apt-get install buildah debootstrap")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log(f"machine: {os.cpu_count()} CPUs, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    total = time.monotonic()

    with phase("bases (debootstrap bookworm, node 20)"):
        if not (args.keep_bases and image_exists(PYTHON_BASE)):
            make_python_base(work)
        if not (args.keep_bases and image_exists(NODE_BASE)):
            make_node_base()
        torch_dir, torch_version = torch_wheels(work)
    tags = {}
    for image in sorted(set(graph.STAGE_IMAGE.values()), key=["sfm", "train", "compress"].index):
        if args.reuse_images and image_exists(f"{PREFIX}/{image}:check"):
            tags[image] = f"{PREFIX}/{image}:check"
            continue
        with phase(f"build {image}"):
            tags[image] = build_image(image, torch_dir, torch_version)
    sizes = {image: image_size_mb(tag) for image, tag in tags.items()}
    results = {}
    if not args.only_build:
        with phase("run sfm -> train -> compress"):
            results = run_chain(work, tags)

    print("\n| image | size MB | built from |")
    print("|---|---:|---|")
    for image, mb in sizes.items():
        print(f"| {image} | {mb:.0f} | containers/{image}/Dockerfile, {' '.join(build_args(image, torch_version)[1::2])} |")
    print("\n| phase | seconds |")
    print("|---|---:|")
    for name, seconds in PHASES:
        print(f"| {name} | {seconds:.0f} |")
    print(f"| total | {time.monotonic() - total:.0f} |")
    print("train with its CUDA torch (cu118) instead of the CPU stand-in: ~6.2 GB, an estimate from the wheel "
          "sizes (bench/train_image_size.py, bench/results/images.md); goal <= 8 GB")
    for stage, result in results.items():
        print(f"{stage}: {result}")
    too_big = {image: mb for image, mb in sizes.items() if mb > MAX_IMAGE_MB}
    if too_big:
        raise SystemExit(f"images-check: images over {MAX_IMAGE_MB} MB: {too_big}")
    log(f"passed (load now {' '.join(f'{x:.2f}' for x in os.getloadavg())})")


if __name__ == "__main__":
    main()
