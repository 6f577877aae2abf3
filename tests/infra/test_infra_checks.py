"""cfn-lint on the template, cdk-nag's verdict, and what the Lambda bundles hold."""

import json
import subprocess
import sys
from pathlib import Path

from infra_support import ROOT

from cloud.stacks import nag
from cloud.stacks.lambda_code import CORE_MODULES


def test_cfn_lint_passes(synth, tmp_path):
    path = tmp_path / "template.json"
    path.write_text(json.dumps(synth.template))
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    # W3005: CDK adds a DependsOn on each function's role beside the GetAtt; redundant, harmless.
    out = subprocess.run([str(cfn_lint), "--ignore-checks", "W3005", "--", str(path)],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr


def test_cdk_nag_aws_solutions_passes_with_reasoned_acknowledgments(synth):
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    (plugin,) = report["pluginReports"]
    assert plugin["pluginName"] == "AwsSolutions"
    assert plugin["conclusion"] == "success" and plugin["violations"] == []
    acks = nag.acknowledgments(synth.stack)
    assert len({a for a, _ in acks}) == len(acks)
    for rule, reason in acks:
        assert len(reason) >= 40 and reason.endswith("."), rule
    # Every acknowledgment is used: no stale exceptions linger after a fix.
    suppressed = {v["ruleName"] for v in plugin["suppressedViolations"]}
    assert {a for a, _ in acks} == suppressed


def _assets(synth):
    manifest = json.loads((synth.outdir / f"{synth.stack.stack_name}.assets.json").read_text())
    return [synth.outdir / f["source"]["path"] for f in manifest["files"].values()
            if (synth.outdir / f["source"]["path"]).is_dir()]


def test_lambda_bundles_hold_core_modules_and_import_without_heavy_packages(synth):
    # The image build's functions bundle their own modules (tests/infra/test_infra_images.py).
    bundles = [d for d in _assets(synth) if (d / "handler.py").exists()
               and not (d / "spaceport" / "cloud" / "image_build.py").exists()]
    assert len(bundles) == 5  # start_job, record, quality_gate, notify, link_secret (deploy time)
    probe = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'numpy', 'torch', 'pycolmap', 'gsplat', 'PIL', 'av'}:\n"
        "            raise ImportError('heavy import in a Lambda: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        # An editable install of spaceport would fill in any module the bundle lacks: drop its finder.
        "sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith('__editable__')]\n"
        "import os, handler\n"
        "assert callable(handler.handler)\n"
        "outside = [n for n, m in sys.modules.items() if n.startswith('spaceport')\n"
        "           and not (getattr(m, '__file__', None) or '').startswith(os.getcwd())]\n"
        "assert not outside, f'imported from outside the bundle: {outside}'\n"
    )
    for bundle in bundles:
        for rel in CORE_MODULES:
            assert (bundle / rel).is_file(), (bundle, rel)
        for stage in ("sfm", "train", "compress"):
            assert (ROOT / "spaceport" / "stages" / stage / "config.py").is_file(), stage
            assert (bundle / "spaceport" / "stages" / stage / "config.py").is_file(), (bundle, stage)
        env = {"PYTHONPATH": str(bundle), "AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin",
               "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
        out = subprocess.run([sys.executable, "-I", "-c", probe.replace("import sys\n", "import sys\nsys.path.insert(0, '.')\n")],
                             cwd=bundle, env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, (bundle, out.stderr[-2000:])
