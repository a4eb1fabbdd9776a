"""`dso submit` and `dso outbox`: a node publishes experiences from its wallet."""

from __future__ import annotations

from pathlib import Path

import click

from dso.errors import DsoError
from dso.interfaces.cli.options import console, echo_json, format_option, open_registry, open_store, plain_text, unlock_wallet, wallet_options


def wallet_names_by_address() -> dict[str, str]:
    """Local wallet names by lowercase address, to tell users which wallet owns an outbox entry."""
    from dso.edges.wallet import list_wallets

    try:
        return {w.address.lower(): w.name for w in list_wallets()}
    except DsoError:
        return {}


def print_flush_result(result) -> None:
    """One line per committed batch, per batch still waiting or refused, and per other wallet's
    batches; DsoError (exit 1) if any of this wallet's batches is still in the outbox."""
    for c in result.committed:
        gas = f"gas {c.gas_used:,}" if c.gas_used is not None else "already on-chain"
        console.print(f"[green]committed[/green] batch {c.root} ({c.count} experiences, {c.bytes:,} bytes, {gas}) cid {c.cid}")
    for p in result.pending:
        if p.state == "refused":
            console.print(f"[red]refused[/red] batch {p.root}: {plain_text(p.last_error or '')}; not retried: "
                          f"`dso outbox retry {p.root[:16]}` once the cause is fixed, or `dso outbox drop {p.root[:16]}`")
        else:
            console.print(f"[yellow]kept in the outbox[/yellow] batch {p.root} ({p.state}): {plain_text(p.last_error or '')}")
    if result.others:
        names = wallet_names_by_address()
        owners = sorted({names.get((e.node or "").lower(), e.node or "?") for e in result.others})
        console.print(f"{len(result.others)} other batch(es) in the outbox belong to other wallets ({', '.join(owners)}): "
                      "each is committed only by the wallet that prepared it (`--wallet` that one)")
    if result.pending:
        refused = len(result.refused)
        waiting = len(result.pending) - refused
        raise DsoError(", ".join(part for part in (f"{waiting} batch(es) wait in the outbox; fix the cause and run `dso outbox flush`" if waiting else "",
                                                   f"{refused} batch(es) refused by the chain" if refused else "") if part))


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@wallet_options
def submit(file: Path, wallet_name: str, password_env: str | None) -> None:
    """Validate, embed, batch, pin and commit the experiences in FILE (JSONL: text, domain,
    confidence, optional metadata) from a node wallet. Nothing is lost if a service is down."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    from dso.edges.embed import load_embedder
    from dso.workflows.publish import Outbox, publish, read_insights

    insights = read_insights(file)  # a malformed file fails at once, before the model loads
    node = unlock_wallet(wallet_name, password_env)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, object] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        result = publish(insights, node, lambda: load_embedder("minilm"), Outbox(), lambda: (open_store(), open_registry()), progress)
    print_flush_result(result)


@click.group()
def outbox() -> None:
    """Batches that are prepared but not yet committed on-chain."""


@outbox.command("list")
@format_option
def outbox_list(fmt: str) -> None:
    """Show the batches waiting in the outbox."""
    from dso.workflows.publish import Outbox

    entries = Outbox().entries()
    names = wallet_names_by_address()
    if fmt == "json":
        echo_json({"entries": [{"root": e.root, "count": e.count, "bytes": e.bytes, "state": e.state, "cid": e.cid,
                                "last_error": e.last_error, "node": e.node, "wallet": names.get((e.node or "").lower())} for e in entries]})
        return
    if not entries:
        console.print("the outbox is empty")
    for e in entries:
        owner = names.get((e.node or "").lower(), e.node)
        console.print(f"{e.root} {e.count} experiences, {e.bytes:,} bytes, wallet {owner}, {e.state}: {plain_text(e.last_error or '')}")


@outbox.command("flush")
@wallet_options
def outbox_flush(wallet_name: str, password_env: str | None) -> None:
    """Pin and commit every batch in the outbox (each exactly once)."""
    from dso.workflows.publish import Outbox

    node = unlock_wallet(wallet_name, password_env)
    print_flush_result(Outbox().flush(open_store(), open_registry(), node))


@outbox.command("retry")
@click.argument("root")
def outbox_retry(root: str) -> None:
    """Put refused batch ROOT (or a prefix) back in line, e.g. once its node is admitted; the next
    `dso outbox flush` from its wallet commits it."""
    from dso.workflows.publish import Outbox

    box = Outbox()
    entry = box.retry(box.find(root))
    console.print(f"batch {entry.root} is {entry.state} again; commit it with `dso outbox flush --wallet` (its wallet: {entry.node})")


@outbox.command("drop")
@click.argument("root")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def outbox_drop(root: str, yes: bool) -> None:
    """Delete batch ROOT (or a prefix) from the outbox for good; it is never committed."""
    from dso.workflows.publish import Outbox

    box = Outbox()
    entry = box.find(root)
    if not yes:
        click.confirm(f"drop batch {entry.root} ({entry.count} experiences, {entry.state}) for good?", abort=True)
    box.drop(entry)
    console.print(f"dropped batch {entry.root}")
