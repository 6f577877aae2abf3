"""`spaceport` command line: one subcommand per stage plus run/status/submit/view.

One error boundary (:func:`main`): a :class:`SpaceportError` prints ``error: <Name>: reason``
and ``fix: ...`` and exits 2; any other exception keeps its traceback and exits 1. (Inside a
SageMaker job the stage entry point, :mod:`spaceport.core.entry`, has already written the failure
record.) Library code never calls ``sys.exit``.

The stage commands come from the stage graph (:func:`spaceport.core.entry.stage_command`); the others
are click commands listed in ``COMMANDS``. Heavy dependencies are imported inside command
bodies, so ``spaceport --help`` stays fast and torch-free.
"""

from __future__ import annotations

import importlib
import sys

import click

from spaceport import __version__
from spaceport.core.errors import SpaceportError

#: (module, attribute) of each subcommand besides the stages', in the order `--help` lists them.
COMMANDS: list[tuple[str, str]] = [
    ("spaceport.local.run_command", "run_command"),
    ("spaceport.stages.publish.command", "view_command"),
    ("spaceport.scenes.command", "demo_scene"),
    ("spaceport.cloud.command", "submit"),
    ("spaceport.cloud.command", "status"),
    ("spaceport.cloud.command", "aws_group"),
]


class _Group(click.Group):
    """`run`, one command per container stage of the graph (:func:`spaceport.core.entry.stage_command`),
    then the rest; each loaded on first use so one broken import cannot break the others."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from spaceport.core import graph

        names = [self._load(m, a).name for m, a in COMMANDS]
        return [names[0], *(s.name for s in graph.GRAPH if s.image), *names[1:]]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from spaceport.core import graph

        for sd in graph.GRAPH:
            if sd.image and sd.name == name:
                from spaceport.core.entry import stage_command

                return stage_command(sd)
        for module, attr in COMMANDS:
            cmd = self._load(module, attr)
            if cmd.name == name:
                return cmd
        return None

    @staticmethod
    def _load(module: str, attr: str) -> click.Command:
        return getattr(importlib.import_module(module), attr)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="spaceport")
def cli() -> None:
    """Photos or a video in, a compressed 3D Gaussian splat out: on this machine or on AWS."""


def report_error(exc: SpaceportError) -> None:
    """Print a typed error's reason and fix the way every command does."""
    click.echo(f"error: {exc.name}: {exc.reason}", err=True)
    click.echo(f"fix: {exc.fix}", err=True)
    if exc.details.get("log"):  # a stage of `spaceport run`: where its full output is
        click.echo(f"log: {exc.details['log']}", err=True)
    if exc.details.get("report"):  # a splat below the quality gate is still published, marked so
        click.echo(f"report (below target): {exc.details['report']}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the CLI inside the one error boundary."""
    try:
        # Without standalone mode click returns (not raises) a command's explicit exit code.
        code = cli.main(args=argv, prog_name="spaceport", standalone_mode=False)
        if isinstance(code, int) and code:
            return code
    except SpaceportError as exc:
        report_error(exc)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
