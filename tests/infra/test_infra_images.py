"""The deploy-time image build in the template: a custom resource builds the deployed source (an
asset whose hash is the build's tag), waits for CodeBuild, and every stage runs its image by digest."""

import json

from spaceport.cloud.settings import ENV
from spaceport.core.graph import JOB_KINDS, STAGE_IMAGE


def _custom_resource(synth) -> tuple[str, dict]:
    ((logical_id, resource),) = synth.resources("Custom::SpaceportImageBuild").items()
    return logical_id, resource


def test_the_deploy_builds_the_deployed_source_tagged_by_its_content_hash(synth):
    _cr_id, resource = _custom_resource(synth)
    props = resource["Properties"]
    images = synth.stack.images
    assert props["SourceHash"] == images.source.asset_hash and len(props["SourceHash"]) == 64
    assert props["ProjectName"] == {"Ref": synth.logical_id(images.project)}
    assert set(props["Repositories"]) == set(STAGE_IMAGE.values())
    for image, name in props["Repositories"].items():
        assert name == {"Ref": synth.logical_id(images.repositories[image])}


def test_the_asset_holds_exactly_what_the_images_build_from(synth):
    asset = next(p for p in synth.outdir.iterdir() if p.name == f"asset.{synth.stack.images.source.asset_hash}")
    top = sorted(p.name for p in asset.iterdir())
    assert top == [".dockerignore", "README.md", "buildspec.yml", "containers", "pyproject.toml", "spaceport"]
    assert not list(asset.rglob("__pycache__")) and not (asset / "containers" / "check.py").exists()
    assert (asset / "containers" / "train" / "build_gsplat.sh").is_file()


def test_the_build_functions_bundle_import_with_boto3_alone(synth):
    import subprocess
    import sys

    manifest = json.loads((synth.outdir / f"{synth.stack.stack_name}.assets.json").read_text())
    bundles = {synth.outdir / f["source"]["path"] for f in manifest["files"].values()
               if (synth.outdir / f["source"]["path"] / "spaceport" / "cloud" / "image_build.py").exists()
               and (synth.outdir / f["source"]["path"] / "handler.py").exists()}
    assert bundles  # on_event and is_complete: the same files
    for bundle in bundles:
        assert sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*.py")) == [
            "handler.py", "spaceport/__init__.py", "spaceport/cloud/__init__.py", "spaceport/cloud/image_build.py"]
    probe = ("import sys\n"
             "class Block:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] in {'pydantic', 'aws_lambda_powertools', 'numpy', 'torch'}:\n"
             "            raise ImportError('not in the image build Lambda: ' + name)\n"
             "sys.meta_path.insert(0, Block())\n"
             "sys.path.insert(0, '.')\n"
             "import handler\n"
             "assert callable(handler.on_event) and callable(handler.is_complete)\n")
    out = subprocess.run([sys.executable, "-I", "-c", probe], cwd=next(iter(bundles)), capture_output=True,
                         text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1"})
    assert out.returncode == 0, out.stderr[-2000:]


def test_every_stage_runs_its_image_by_the_builds_digest(synth):
    cr_id, _ = _custom_resource(synth)
    fn = synth.template["Resources"][synth.logical_id(synth.stack.functions.start_job)]["Properties"]
    settings = json.dumps(fn["Environment"]["Variables"][ENV["plan_settings"]])
    for stage in JOB_KINDS:
        attribute = f"{STAGE_IMAGE[stage].capitalize()}Uri"  # <repository uri>@sha256:... (spaceport.cloud.image_build)
        assert json.dumps({"Fn::GetAtt": [cr_id, attribute]}) in settings
    assert ":latest" not in settings and "RepositoryUri" not in settings
    # Nothing else names a stage image by tag: the ASL reads the plan's image.
    asl = json.dumps(synth.resources("AWS::StepFunctions::StateMachine"))
    assert ":latest" not in asl


def test_the_deploy_waits_for_the_build_as_long_as_the_build_may_run(synth):
    images = synth.stack.images
    project = synth.template["Resources"][synth.logical_id(images.project)]["Properties"]
    assert project["TimeoutInMinutes"] == 120
    assert project["Environment"]["ComputeType"] == "BUILD_GENERAL1_LARGE"
    on_event, is_complete = (synth.template["Resources"][synth.logical_id(images.functions[s])]["Properties"]
                             for s in ("on_event", "is_complete"))
    assert on_event["Handler"] == "handler.on_event" and is_complete["Handler"] == "handler.is_complete"
    assert "Layers" not in on_event  # stdlib + boto3 only
    # The provider framework's waiter polls every 30 s for at most the build's 2 h (240 polls).
    waiter = synth.template["Resources"][synth.logical_id(
        images.provider.node.find_child("waiter-state-machine"))]["Properties"]
    definition = "".join(p if isinstance(p, str) else "" for p in waiter["DefinitionString"]["Fn::Join"][1])
    assert '"IntervalSeconds":30' in definition and '"MaxAttempts":240' in definition
    assert waiter["LoggingConfiguration"]["Level"] == "ALL"


def test_build_functions_may_only_start_and_read_this_project_and_read_these_repositories(synth):
    images = synth.stack.images
    project = {"Fn::GetAtt": [synth.logical_id(images.project), "Arn"]}
    repos = [{"Fn::GetAtt": [synth.logical_id(r), "Arn"]} for r in images.repositories.values()]
    for step, action in (("on_event", "codebuild:StartBuild"), ("is_complete", "codebuild:BatchGetBuilds")):
        role = synth.logical_id(images.functions[step].role)
        (policy,) = [p for p in synth.resources("AWS::IAM::Policy").values()
                     if p["Properties"]["Roles"] == [{"Ref": role}]]
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        codebuild = [s for s in statements if str(s["Action"]).startswith("codebuild:")]
        assert codebuild == [{"Action": action, "Effect": "Allow", "Resource": project}]
        (ecr,) = [s for s in statements if "ecr:DescribeImages" in s["Action"]]
        assert sorted(ecr["Action"]) == ["ecr:DescribeImages", "ecr:DescribeRepositories"]
        assert sorted(map(json.dumps, ecr["Resource"])) == sorted(map(json.dumps, repos))


def test_the_build_reads_only_its_source_asset_and_lists_nothing_else(synth):
    images = synth.stack.images
    role = synth.logical_id(images.project.role)
    data_arn = json.dumps({"Fn::GetAtt": [synth.logical_id(synth.stack.storage.data), "Arn"]})
    statements = [s for p in synth.resources("AWS::IAM::Policy").values() if p["Properties"]["Roles"] == [{"Ref": role}]
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    assert data_arn not in json.dumps(statements)  # no uploads, results or link secret
    (fence,) = [s for s in statements if s["Effect"] == "Deny"]
    assert fence["Action"] == ["s3:ListBucket", "s3:ListBucketVersions"]
    assert fence["Condition"] == {"StringNotLike": {"s3:prefix": [images.source.s3_object_key]}}
