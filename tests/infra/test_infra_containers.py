"""Dockerfiles (hadolint + contract checks) and buildspec.yml, without a Docker engine."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from infra_support import ROOT

from spaceport.graph import STAGE_IMAGE

IMAGES = sorted(set(STAGE_IMAGE.values()))


def _hadolint() -> str:
    exe = Path(sys.executable).parent / "hadolint"
    return str(exe) if exe.exists() else (shutil.which("hadolint") or pytest.skip("hadolint not installed"))


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_hadolint_clean(image):
    out = subprocess.run([_hadolint(), "--failure-threshold", "info", str(ROOT / "containers" / image / "Dockerfile")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_entrypoint_is_spaceport_and_extras_exist(image):
    from spaceport.contract import image_start

    # ENTRYPOINT ["spaceport"]: SageMaker's `train` (training job) or the plan's ContainerArguments
    # (`sfm ...`, processing job) name the stage; see spaceport.contract.sagemaker_argv.
    assert image_start(image).entrypoint == ("spaceport",) and image_start(image).cmd == ()
    text = (ROOT / "containers" / image / "Dockerfile").read_text()
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for group in re.findall(r'pip install "\.\[([\w,]+)\]"', text):
        assert set(group.split(",")) <= extras
    assert "spaceport --help" in text  # the CLI imports in the image build itself


def test_train_image_compiles_gsplat_for_a10g_and_a100_on_cuda_118():
    text = (ROOT / "containers" / "train" / "Dockerfile").read_text()
    assert re.search(r"ARG CUDA_BASE=nvidia/cuda:11\.8\.\d+-cudnn8-devel", text)
    assert 'TORCH_CUDA_ARCH_LIST="8.0;8.6"' in text
    assert "CUDA_HOME=/usr/local/cuda" in text and "LD_LIBRARY_PATH=" in text
    assert "download.pytorch.org/whl/cu118" in text
    assert "--no-binary gsplat" in text and "--no-build-isolation" in text
    assert "from gsplat import csrc" in text


def test_bases_prefer_ecr_public():
    for image in ("sfm", "compress"):
        bases = re.findall(r"ARG \w+_BASE=(\S+)", (ROOT / "containers" / image / "Dockerfile").read_text())
        assert bases and all(b.startswith("public.ecr.aws/") for b in bases)


def test_buildspec_logs_in_only_with_credentials_smoke_tests_and_pushes_both_tags():
    spec = yaml.safe_load((ROOT / "buildspec.yml").read_text())
    assert spec["version"] == 0.2
    pre = "\n".join(spec["phases"]["pre_build"]["commands"])
    assert re.search(r'if \[ -n "\$\{DOCKERHUB_USERNAME:-\}" \] && \[ -n "\$\{DOCKERHUB_TOKEN:-\}" \]', pre)
    assert pre.count("docker login") == 2  # ECR always, Docker Hub inside the guard
    build = "\n".join(spec["phases"]["build"]["commands"])
    for image in IMAGES:
        assert f"-f containers/{image}/Dockerfile" in build
        # The smoke test starts each stage the way SageMaker does: ENTRYPOINT + the stage name.
        assert re.search(rf'docker run --rm "\${image.upper()}_REPOSITORY_URI:\$COMMIT" {image} --help', build)
    assert "from gsplat import csrc" in build
    post = "\n".join(spec["phases"]["post_build"]["commands"])
    assert 'docker push "$REPO:$COMMIT"' in post and 'docker push "$REPO:$IMAGE_TAG"' in post
    assert "CODEBUILD_BUILD_SUCCEEDING" in post  # a failed smoke test pushes nothing


def test_dockerignore_sends_only_the_package():
    lines = (ROOT / ".dockerignore").read_text().split()
    assert lines[lines.index("*")] == "*" and "!spaceport/**" in lines and "!pyproject.toml" in lines
