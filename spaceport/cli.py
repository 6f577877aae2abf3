"""`spaceport` command line: one subcommand per stage plus run/status/submit/view.

One error boundary (:func:`main`): a :class:`SpaceportError` prints ``error: <Name>: reason``
and ``fix: ...`` and exits 2 (inside a SageMaker job it also writes the failure record,
:func:`spaceport.contract.write_failure`); any other exception keeps its traceback and exits 1.
Library code never calls ``sys.exit``.

Each subcommand lives in ``spaceport/<part>/command.py`` as a click command and is listed in
``COMMANDS``; those modules import their heavy dependencies inside the command body so that
``spaceport --help`` stays fast and torch-free.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from spaceport import __version__
from spaceport.errors import SpaceportError

#: (module, attribute) of each subcommand, in the order `--help` lists them.
COMMANDS: list[tuple[str, str]] = [
    ("spaceport.run_command", "run_command"),
    ("spaceport.sfm.command", "sfm"),
    ("spaceport.train.command", "train_command"),
    ("spaceport.compress.command", "compress"),
    ("spaceport.publish.command", "publish_command"),
    ("spaceport.publish.command", "view_command"),
    ("spaceport.scenes.command", "demo_scene"),
    ("spaceport.aws.command", "submit"),
    ("spaceport.aws.command", "status"),
]


class _Group(click.Group):
    """Loads subcommands on first use so one broken stage import cannot break the others."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [self._load(m, a).name for m, a in COMMANDS]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
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
    """Print a typed error's reason and fix the way every command does, and record it for SageMaker."""
    from spaceport import contract

    click.echo(f"error: {exc.name}: {exc.reason}", err=True)
    click.echo(f"fix: {exc.fix}", err=True)
    if exc.details.get("log"):  # a stage of `spaceport run`: where its full output is
        click.echo(f"log: {exc.details['log']}", err=True)
    if exc.details.get("report"):  # a splat below the quality gate is still published, marked so
        click.echo(f"report (below target): {exc.details['report']}", err=True)
    if contract.in_sagemaker():
        contract.write_failure(exc, os.environ.get("SPACEPORT_STAGE"))


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the CLI inside the one error boundary."""
    try:
        cli.main(args=argv, prog_name="spaceport", standalone_mode=False)
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
    except Exception as exc:
        from spaceport import contract

        if contract.in_sagemaker():
            contract.write_failure(exc, os.environ.get("SPACEPORT_STAGE"))
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
