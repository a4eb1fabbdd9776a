"""`dso demo`: the four jobs on a private devnet."""

from __future__ import annotations

import click

from dso.errors import DsoError
from dso.interfaces.cli.options import console


@click.command()
def demo() -> None:
    """The four jobs on a private devnet: nodes submit, the DAO votes, an agent syncs and asks."""
    from dso.interfaces.demo import run_demo

    summary = run_demo(console)
    if summary["statuses"] != {1: "accepted", 2: "accepted", 3: "accepted", 4: "accepted", 5: "rejected"}:
        raise DsoError(f"demo ended in an unexpected state: {summary}")
