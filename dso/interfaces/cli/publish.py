"""`dso submit` and `dso outbox`: a node publishes experiences from its wallet."""

from __future__ import annotations

from pathlib import Path

import click

from dso.errors import DsoError
from dso.interfaces.cli.options import console, open_registry, open_store, unlock_wallet, wallet_options


def print_outbox_result(committed, pending) -> None:
    """One line per committed batch and per batch still waiting; DsoError if any waits."""
    for c in committed:
        gas = f"gas {c.gas_used:,}" if c.gas_used is not None else "already on-chain"
        console.print(f"[green]committed[/green] batch {c.root} ({c.count} experiences, {c.bytes:,} bytes, {gas}) cid {c.cid}")
    for p in pending:
        console.print(f"[yellow]kept in the outbox[/yellow] batch {p.root} ({p.state}): {p.last_error}")
    if pending:
        raise DsoError(f"{len(pending)} batch(es) wait in the outbox; fix the cause and run `dso outbox flush`")


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@wallet_options
def submit(file: Path, wallet_name: str, password_env: str | None) -> None:
    """Validate, embed, batch, pin and commit the experiences in FILE (JSONL: text, domain,
    confidence, optional metadata) from a node wallet. Nothing is lost if a service is down."""
    from dso.edges.embed import load_embedder
    from dso.workflows.publish import Outbox, publish, read_insights

    insights = read_insights(file)  # a malformed file fails at once, before the model loads
    node = unlock_wallet(wallet_name, password_env)
    result = publish(insights, node, lambda: load_embedder("minilm"), Outbox(), lambda: (open_store(), open_registry()))
    print_outbox_result(result.committed, result.pending)


@click.group()
def outbox() -> None:
    """Batches that are prepared but not yet committed on-chain."""


@outbox.command("list")
def outbox_list() -> None:
    """Show the batches waiting in the outbox."""
    from dso.workflows.publish import Outbox

    entries = Outbox().entries()
    if not entries:
        console.print("the outbox is empty")
    for e in entries:
        console.print(f"{e.root} {e.count} experiences, {e.bytes:,} bytes, {e.state}: {e.last_error or ''}")


@outbox.command("flush")
@wallet_options
def outbox_flush(wallet_name: str, password_env: str | None) -> None:
    """Pin and commit every batch in the outbox (each exactly once)."""
    from dso.workflows.publish import Outbox

    node = unlock_wallet(wallet_name, password_env)
    print_outbox_result(*Outbox().flush(open_store(), open_registry(), node))
