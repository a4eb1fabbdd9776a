"""`dso demo`: the four jobs on a private devnet."""

from __future__ import annotations

import click

from dso.errors import DsoError
from dso.interfaces.cli.options import console


@click.command()
def demo() -> None:
    """The four jobs on a private devnet: nodes publish learned lessons, the DAO votes, nodes endorse, an agent syncs and asks."""
    from dso.interfaces.demo import run_demo

    summary = run_demo(console)
    expected = {i: "accepted" if honest else "rejected" for i, honest in summary["honest"].items()}
    if summary["statuses"] != expected or not summary["library_size"]:
        raise DsoError(f"demo ended in an unexpected state: {summary}")
