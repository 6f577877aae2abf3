"""Every command and example in docs/aws.md and the README that can be checked offline is: each
`spaceport ...` line is parsed by the real CLI (its subcommand, every flag, every choice), option
overrides and options JSON go through the stage configs, `-c spaceport.<key>=...` and the settings
table through DeploySettings (and the deploy line through a synth), `make` targets through
`make -n`, pip extras through pyproject.toml, and `aws ...` lines through botocore's models of
those services (operation and parameter names)."""

import dataclasses
import json
import re
import shlex
import subprocess
import tomllib

import click
import pytest
from infra_support import ROOT

from cloud.stacks.settings import DeploySettings
from spaceport.cli import cli
from spaceport.core.config import parse_stage_options
from spaceport.core.plan import JobRequest, PlanSettings, plan_job

DOCS = {name: (ROOT / name).read_text() for name in ("README.md", "docs/aws.md")}
_CODE = re.compile(r"```[^\n]*\n(.*?)```|`([^`\n]+)`", re.DOTALL)


def _snippets() -> list[tuple[str, str]]:
    """``(file, command)`` for each command in a code span or fenced line (``&&`` chains split)."""
    out = []
    for name, text in DOCS.items():
        for block, inline in _CODE.findall(text):
            for line in (block.splitlines() if block else [inline]):
                for part in line.split("&&"):
                    part = part.strip()
                    if part:
                        out.append((name, part))
    return out


SNIPPETS = _snippets()


def _commands(prefix: str) -> list[tuple[str, str]]:
    return [(f, c) for f, c in SNIPPETS if c.startswith(prefix)]


def _placeholder(token: str) -> bool:
    return bool(re.fullmatch(r"<[^>]+>|[A-Z][A-Z_.=]*|\.\.\.", token))


def _tokens(command: str) -> list[str]:
    """The argv a documented command line stands for: synopsis brackets dropped, the first of
    ``a|b|c`` taken, placeholders (``<job_id>``, ``JOB``, ``DIR``) given a concrete value."""
    out = []
    for token in shlex.split(command.replace("[", " ").replace("]", " ")):
        token = token.split("|")[0]
        if token in ("...",) or token.startswith("--<"):
            continue
        out.append("x" if _placeholder(token) else token)
    return out


def _resolve(argv: list[str]) -> tuple[click.Command, list[str], list[str]]:
    """``(command, its argv, the subcommand path)`` of ``spaceport argv...``."""
    cmd, path = cli, []
    ctx = click.Context(cli)
    while isinstance(cmd, click.Group) and argv and not argv[0].startswith("-"):
        sub = cmd.get_command(ctx, argv[0])
        assert sub is not None, f"no subcommand {argv[0]!r} under {' '.join(['spaceport', *path])}"
        cmd, path, argv = sub, [*path, argv[0]], argv[1:]
    return cmd, argv, path


SPACEPORT = [(f, c) for f, c in _commands("spaceport ") if "<stage>" not in c]


def _stand_in(param: click.Parameter) -> str:
    """A valid value for a placeholder of ``param``'s type."""
    if isinstance(param.type, click.Choice):
        return str(param.type.choices[0])
    if isinstance(param.type, click.IntRange):
        return str(param.type.min if param.type.min is not None else 1)
    if param.type is click.INT or isinstance(param.type, click.FloatRange) or param.type is click.FLOAT:
        return "1"
    return "x"


def test_the_docs_show_the_commands_this_test_checks():
    """Guards the extraction: if the docs' format changed, the checks below would check nothing."""
    shown = {" ".join(_resolve(_tokens(c)[1:])[2]) for _f, c in SPACEPORT}
    assert {"run", "submit", "status", "aws doctor", "view", "sfm", "train", "compress", "publish"} <= shown
    assert _commands("npx cdk deploy") and _commands("aws ") and _commands("make ")


@pytest.mark.parametrize(("doc", "command"), SPACEPORT, ids=[c for _f, c in SPACEPORT])
def test_every_spaceport_command_in_the_docs_parses(doc, command, tmp_path, monkeypatch):
    cmd, argv, path = _resolve(_tokens(command)[1:])
    # Every flag the line shows exists on that command (the synopsis lines included).
    flags = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help", "-h"}
    for token in shlex.split(command.replace("[", " ").replace("]", " ")):
        flag = token.split("=")[0].split("|")[0]
        if flag.startswith("--") and not flag.startswith("--<"):
            assert flag in flags, f"{doc}: `{command}`: spaceport {' '.join(path)} has no option {flag}"
    if not argv:
        return  # the prose names the command (`spaceport status`): it exists, which _resolve checked
    params = {o: p for p in cmd.params for o in p.opts}
    last = params.get(argv[-1])
    if last is not None and not getattr(last, "is_flag", False) and last.nargs == 1:
        return  # the prose names an option (`spaceport status --links`): it exists, checked above
    # A placeholder value stands for a value of the option's type (`--from STAGE`, `--links HOURS`).
    argv = [_stand_in(params[argv[i - 1]]) if t == "x" and i and argv[i - 1] in params else t
            for i, t in enumerate(argv)]
    # Paths the line names exist (as they would for its reader): stand-ins in a scratch folder.
    monkeypatch.chdir(tmp_path)
    for token in argv:
        if not token.startswith("-"):
            (tmp_path / token).mkdir(parents=True, exist_ok=True)
    # The whole line parses as click would parse it (choices, types, arity); nothing runs.
    with cmd.make_context(" ".join(["spaceport", *path]), list(argv), resilient_parsing=False):
        pass
    # STAGE.OPTION=VALUE overrides name real options of real stages.
    for flag in ("--set", "--option"):
        pairs = [argv[i + 1] for i, t in enumerate(argv[:-1]) if t == flag and argv[i + 1] != "x"]
        if pairs:
            plan_job(JobRequest(source_uri="s3://b/uploads/x.zip", options=parse_stage_options(pairs, flag=flag)),
                     PlanSettings(root="s3://b/"))


def test_every_options_json_in_the_docs_names_real_options():
    found = [json.loads(m) for text in DOCS.values() for m in re.findall(r"`(\{\"\w+\": \{.*?\}\})`", text)]
    assert found, "the docs show no options JSON any more: update this test"
    for options in found:
        plan_job(JobRequest(source_uri="s3://b/uploads/x.zip", options=options), PlanSettings(root="s3://b/"))


def test_the_option_examples_in_errors_and_help_are_real():
    from spaceport.cloud import intake
    from spaceport.cloud.command import submit

    with pytest.raises(Exception) as info:
        intake._metadata(None, None, {}, {"Metadata": {"options": "{not json"}})
    example = re.search(r"(\{.*\})", info.value.fix).group(1)
    plan_job(JobRequest(source_uri="s3://b/uploads/x.zip", options=json.loads(example)), PlanSettings(root="s3://b/"))
    (help_text,) = [p.help for p in submit.params if p.name == "options"]
    pair = re.search(r"e\.g\. (\S+=\S+)", help_text).group(1)
    plan_job(JobRequest(source_uri="s3://b/uploads/x.zip", options=parse_stage_options([pair], flag="--option")),
             PlanSettings(root="s3://b/"))


def _context_overrides(command: str) -> dict[str, str]:
    argv = shlex.split(command)
    return dict(argv[i + 1].split("=", 1) for i, t in enumerate(argv[:-1]) if t == "-c")


def test_every_documented_context_key_is_a_setting_and_every_setting_is_documented():
    fields = {f.name for f in dataclasses.fields(DeploySettings)} - {"account", "region"}
    for _f, command in _commands("npx cdk"):
        for key, value in _context_overrides(command).items():
            DeploySettings.from_context({"sender_email": "a@example.com"}, {key: value})
    mentioned = {k for text in DOCS.values() for k in re.findall(r"spaceport\.(\w+)=", text)}
    assert mentioned and mentioned <= fields, mentioned - fields
    table = DOCS["docs/aws.md"].split("## Settings", 1)[1].split("\n## ", 1)[0]
    keys = {k for row in re.findall(r"^\| (.+?) \|", table, re.MULTILINE) for k in re.findall(r"`(\w+)`", row)}
    assert keys - {"key"} <= fields, (keys - fields)
    assert fields <= keys, f"settings missing from the docs' table: {fields - keys}"


def test_the_documented_deploy_commands_synthesize(tmp_path):
    import aws_cdk as cdk

    import app

    contexts = {json.dumps(_context_overrides(c), sort_keys=True) for _f, c in _commands("npx cdk deploy")}
    # A bare `npx cdk deploy` (a redeploy) uses cdk.json as the reader left it: nothing to check here.
    contexts = [json.loads(c) for c in sorted(contexts) if "..." not in c and c != "{}"]
    assert any("spaceport.sender_email" in c for c in contexts)
    for i, overrides in enumerate(contexts):
        application = cdk.App(context={**app.cdk_json_context(), **overrides}, outdir=str(tmp_path / str(i)))
        stack = app.build(application, nag=False)
        application.synth()
        assert stack.stack_name == "Spaceport"


@pytest.mark.parametrize("target", sorted({c.split()[1] for _f, c in _commands("make ")}))
def test_every_make_target_in_the_docs_exists(target):
    out = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_every_pip_extra_in_the_docs_exists():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    shown = {e for _f, c in _commands("pip install") for group in re.findall(r"\.\[([\w,]+)\]", c)
             for e in group.split(",")}
    assert shown and shown <= extras, shown - extras


#: awscli's own commands (not in botocore's service models), with the options the docs may use.
_AWSCLI_CUSTOM = {("s3", "cp"): {"--recursive", "--metadata"}, ("s3", "sync"): set()}
_GLOBAL = {"--region", "--query", "--output", "--profile"}


@pytest.mark.parametrize("command", sorted({c for _f, c in _commands("aws ")}))
def test_every_aws_cli_line_names_a_real_operation_and_parameters(command):
    import botocore
    import botocore.session

    argv = shlex.split(command)
    service, op = argv[1], argv[2]
    flags = {t.split("=")[0] for t in argv[3:] if t.startswith("--")} - _GLOBAL
    if (service, op) in _AWSCLI_CUSTOM:
        assert flags <= _AWSCLI_CUSTOM[service, op], command
        return
    model = botocore.session.get_session().get_service_model(service)
    # The AWS CLI's own naming: CamelCase (acronyms kept whole, KvsARN -> kvs-arn) to kebab-case.
    names = {botocore.xform_name(n, "-"): n for n in model.operation_names}
    assert op in names, f"`{command}`: {service} has no operation {op}"
    shape = model.operation_model(names[op]).input_shape
    params = {"--" + botocore.xform_name(m, "-") for m in (shape.members if shape else {})}
    assert flags <= params, f"`{command}`: unknown parameter(s) {flags - params}"
