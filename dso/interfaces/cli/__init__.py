"""The `dso` command line: one module per command group, shared options in `options`.

Each module holds only argument handling and output; the work is done by `dso.workflows` and the
edges. `main` prints every DsoError as one line, never a traceback.
"""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.markup import escape

from dso import __version__
from dso.errors import DsoError
from dso.interfaces.cli.agent import ask_command, learn_command
from dso.interfaces.cli.align import align
from dso.interfaces.cli.dao import dao
from dso.interfaces.cli.demo import demo
from dso.interfaces.cli.devnet import devnet
from dso.interfaces.cli.library import index_command, query, sync_command
from dso.interfaces.cli.mcp import mcp_command
from dso.interfaces.cli.network import deploy, status
from dso.interfaces.cli.options import console
from dso.interfaces.cli.publish import outbox, submit
from dso.interfaces.cli.review import batches, finalize, show, vote
from dso.interfaces.cli.ui import ui_command
from dso.interfaces.cli.wallet import wallet


@click.group()
@click.version_option(__version__, prog_name="dso")
def cli() -> None:
    """dso: a blockchain-backed, decentralized registry of AI-agent experiences."""


for command in (devnet, deploy, status, submit, outbox, batches, show, vote, finalize, sync_command, index_command, dao, query, mcp_command, ui_command, align, demo, wallet,
                ask_command, learn_command):
    cli.add_command(command)


def main() -> None:
    """Entry point: user errors print one clear line, never a traceback."""
    try:
        status = cli.main(standalone_mode=False)  # a command's click.exceptions.Exit(code) comes back as its code
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except DsoError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        sys.exit(1)
    if isinstance(status, int) and status:
        sys.exit(status)


__all__ = ["cli", "main"]
