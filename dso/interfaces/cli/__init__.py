"""The `dso` command line: one module per command group, shared options in `options`.

Each module holds only argument handling and output; the work is done by `dso.workflows` and the
edges. `main` prints every DsoError as one line, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click
from rich.console import Console
from rich.markup import escape

from dso import __version__
from dso.errors import DsoError
from dso.interfaces.cli.options import console

# Every command, written out: name -> "module:function". A command's module (and what it imports:
# web3 for the chain commands, torch for the embedding ones) is imported only when that command
# runs, so `dso query` does not pay for web3 (2.2 s of a 2.9 s start-up, measured with
# `python -X importtime` on the loaded 2-core machine).
COMMANDS = {
    "devnet": "dso.interfaces.cli.devnet:devnet",
    "deploy": "dso.interfaces.cli.network:deploy",
    "status": "dso.interfaces.cli.network:status",
    "submit": "dso.interfaces.cli.publish:submit",
    "outbox": "dso.interfaces.cli.publish:outbox",
    "batches": "dso.interfaces.cli.review:batches",
    "show": "dso.interfaces.cli.review:show",
    "vote": "dso.interfaces.cli.review:vote",
    "finalize": "dso.interfaces.cli.review:finalize",
    "sync": "dso.interfaces.cli.library:sync_command",
    "index": "dso.interfaces.cli.library:index_command",
    "query": "dso.interfaces.cli.library:query",
    "dao": "dso.interfaces.cli.dao:dao",
    "mcp": "dso.interfaces.cli.mcp:mcp_command",
    "ui": "dso.interfaces.cli.ui:ui_command",
    "align": "dso.interfaces.cli.align:align",
    "demo": "dso.interfaces.cli.demo:demo",
    "wallet": "dso.interfaces.cli.wallet:wallet",
    "ask": "dso.interfaces.cli.agent:ask_command",
    "learn": "dso.interfaces.cli.agent:learn_command",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module when the command is looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name].split(":")
        command = getattr(importlib.import_module(module), attribute)
        if command.name != name:  # a renamed command must be renamed here too
            raise RuntimeError(f"{COMMANDS[name]} is named {command.name!r}, not {name!r}")
        return command


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="dso")
def cli() -> None:
    """dso: a blockchain-backed, decentralized registry of AI-agent experiences."""


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
