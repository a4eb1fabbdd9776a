"""`dso batches`, `dso show`, `dso vote`, `dso finalize`: DAO members review and decide batches."""

from __future__ import annotations

import time

import click
from rich.table import Table

from dso.edges.chain import Status
from dso.edges.config import load_config
from dso.interfaces.cli.options import (
    console,
    echo_json,
    format_option,
    open_registry,
    open_store,
    resolve_root,
    text_cell,
    unlock_wallet,
    wallet_options,
)


@click.command()
@click.option("--status", "status_filter", type=click.Choice([s.name.lower() for s in Status if s != Status.NONE]), default=None)
@format_option
def batches(status_filter: str | None, fmt: str) -> None:
    """List batches, pending first, with their tallies, quorum and deadlines."""
    from dso.workflows.review import batch_json, list_batches

    listing = list_batches(open_registry(), load_config().deploy_block)
    rows = [r for r in listing.batches if not status_filter or r.info.tally.status.name.lower() == status_filter]
    if fmt == "json":
        echo_json({"chain_time": listing.now, "batches": [batch_json(r, listing.now) for r in rows]})
        return
    table = Table(title="batches")
    for column in ("root", "node", "experiences", "status", "yes", "no", "quorum", "electorate", "voting closes"):
        table.add_column(column)
    for row in rows:
        info = row.info
        closes = time.strftime("%Y-%m-%d %H:%M", time.gmtime(info.tally.deadline))
        table.add_row(info.root.hex()[:16], str(info.node_id), str(info.count), info.tally.status.name.lower(), str(info.tally.yes),
                      str(info.tally.no), str(info.tally.quorum), str(info.tally.electorate), closes)
    console.print(table)


@click.command()
@click.argument("batch")
@format_option
def show(batch: str, fmt: str) -> None:
    """Fetch batch BATCH (root or prefix), verify it against the chain, and print its experiences."""
    from dso.core.batch import summarize
    from dso.workflows.verify import fetch_and_verify, find_commitment

    registry = open_registry()
    root = resolve_root(registry, batch)
    if fmt == "json":
        from dso.workflows.review import review_batch, review_json

        review = review_batch(registry, open_store(), root, load_config().deploy_block)
        echo_json(review_json(review, registry.chain_time()))
        if review.verification != "verified":
            raise click.exceptions.Exit(1)
        return
    commitment, submitter = find_commitment(registry, root, load_config().deploy_block)
    document = fetch_and_verify(open_store(), root.hex(), commitment, submitter)
    info = registry.batch(root)
    console.print(f"batch {root.hex()}: {info.tally.status.name.lower()}, {info.tally.yes} yes / {info.tally.no} no; verified CID {commitment.cid}")
    console.print(summarize(document))
    table = Table()
    for column in ("#", "domain", "confidence", "experience"):
        table.add_column(column)
    for n, e in enumerate(document.experiences):
        table.add_row(str(n), e.domain, f"{e.confidence:.2f}", text_cell(e.text))
    console.print(table)


@click.command()
@click.argument("batch")
@click.option("--approve/--reject", required=True, help="Your vote.")
@wallet_options
def vote(batch: str, approve: bool, wallet_name: str, password_env: str | None) -> None:
    """Vote on batch BATCH as a DAO member."""
    registry = open_registry()
    root = resolve_root(registry, batch)
    tx = registry.vote_on_batch(unlock_wallet(wallet_name, password_env), root, approve)
    tally = registry.batch(root).tally
    console.print(f"voted {'yes' if approve else 'no'} on {root.hex()[:16]} (gas {tx.gas_used:,}); now {tally.yes} yes / {tally.no} no of {tally.electorate}")


@click.command()
@click.argument("batch")
@wallet_options
def finalize(batch: str, wallet_name: str, password_env: str | None) -> None:
    """Decide batch BATCH once its vote is over or its outcome is certain (anyone may send)."""
    registry = open_registry()
    root = resolve_root(registry, batch)
    result = registry.finalize_batch(unlock_wallet(wallet_name, password_env), root)
    console.print(f"batch {root.hex()[:16]} {result.status.name.lower()} (gas {result.tx.gas_used:,})")
