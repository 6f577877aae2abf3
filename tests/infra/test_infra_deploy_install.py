"""The deploy-only install: `pip install '.[deploy]'` carries no ML stack, and the CDK app, the
Lambdas and the AWS commands run without it."""

import re
import subprocess
import sys
import tomllib

from infra_support import ROOT

#: What a deploy must never need (the stages' heavy dependencies).
HEAVY = {"torch", "pycolmap", "gsplat", "numpy", "pillow", "av", "scipy", "scikit-image", "plyfile", "zstandard"}
_BLOCK = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in {'torch', 'pycolmap', 'gsplat', 'numpy', 'PIL', 'av', 'scipy', 'skimage',\n"
    "                                   'plyfile', 'zstandard', 'pillow_heif'}:\n"
    "            raise ImportError('heavy import in a deploy: ' + name)\n"
    "sys.meta_path.insert(0, Block())\n"
)


def _requirements(extra: str, extras: dict[str, list[str]], base: list[str]) -> set[str]:
    """Project names an extra pulls in (self-references like ``spaceport[infra,aws]`` followed)."""
    names = {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in base}
    for req in extras[extra]:
        name = re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower()
        if name == "spaceport":
            for sub in re.search(r"\[(.*)\]", req).group(1).split(","):
                names |= _requirements(sub.strip(), extras, base)
        else:
            names.add(name)
    return names


def test_the_deploy_extra_holds_the_cdk_and_boto3_and_no_ml_stack():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = _requirements("deploy", project["optional-dependencies"], project["dependencies"])
    assert {"aws-cdk-lib", "constructs", "cdk-nag", "boto3", "pydantic", "click"} <= names
    assert not names & HEAVY, names & HEAVY
    # The full install still has them (the stages need them): the block below is not vacuous.
    assert {"torch", "pycolmap", "gsplat"} <= _requirements("all", project["optional-dependencies"], [])


def test_the_cdk_app_synthesizes_and_the_aws_commands_load_with_the_ml_stack_blocked(tmp_path):
    script = _BLOCK + (
        "import aws_cdk as cdk\n"
        "import app\n"
        "ctx = app.cdk_json_context()\n"
        "ctx['spaceport'] = {**ctx['spaceport'], 'sender_email': 'splats@example.com'}\n"
        "application = cdk.App(context=ctx, outdir=sys.argv[1])\n"
        "stack = app.build(application, nag=False)\n"
        "application.synth()\n"
        "from spaceport.cli import main\n"
        "for argv in (['--help'], ['submit', '--help'], ['status', '--help'], ['aws', 'doctor', '--help']):\n"
        "    assert main(argv) == 0, argv\n"
        "import importlib\n"
        "for name in ('start_job', 'record', 'notify', 'quality_gate'):\n"
        "    assert callable(importlib.import_module(f'cloud.lambdas.{name}.handler').handler)\n"
        "print('SYNTHESIZED', stack.stack_name)\n"
    )
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "PYTHONPATH": str(ROOT), "AWS_DEFAULT_REGION": "us-east-1",
           "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "cdk.out")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "SYNTHESIZED Spaceport" in out.stdout
    assert (tmp_path / "cdk.out" / "Spaceport.template.json").is_file()
