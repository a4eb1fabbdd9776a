"""`dso deploy` and `dso status`: which network dso talks to, and its DAO."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from dso.edges.chain import Registry, connect
from dso.edges.config import NetworkConfig, dso_home, load_config, save_config
from dso.edges.wallet import load_keystore, password_from_env_or_prompt
from dso.interfaces.cli.options import console, echo_json, format_option, library_path


@click.command()
@click.option("--rpc-url", required=True, help="JSON-RPC endpoint of the target EVM network.")
@click.option("--keystore", "keystore", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Deployer's keystore (V3 JSON).")
@click.option("--password-env", default=None, help="Read the keystore password from this environment variable instead of a prompt.")
@click.option("--member", "members", multiple=True, required=True, help="Seed DAO member address (repeat).")
@click.option("--node", "nodes", multiple=True, help="Seed node address (repeat).")
@click.option("--voting-period", default=3 * 24 * 3_600, show_default=True, help="Seconds each batch stays open.")
@click.option("--quorum-bps", default=5_000, show_default=True, help="Quorum, basis points of the electorate.")
@click.option("--name", default="custom", show_default=True, help="Name recorded in the network config.")
def deploy(rpc_url: str, keystore: Path, password_env: str | None, members: tuple[str, ...], nodes: tuple[str, ...], voting_period: int, quorum_bps: int, name: str) -> None:
    """Deploy the registry to any EVM network and make it the active network config."""
    deployer = load_keystore(keystore, password_from_env_or_prompt(password_env))
    w3 = connect(rpc_url)
    registry, tx = Registry.deploy(w3, deployer, list(members), list(nodes), voting_period=voting_period, quorum_bps=quorum_bps)
    path = save_config(NetworkConfig(rpc_url, w3.eth.chain_id, registry.address, tx.block_number, name=name))
    console.print(f"registry deployed at {registry.address} (block {tx.block_number}, gas {tx.gas_used:,}); config {path}")


@click.command()
@format_option
def status(fmt: str) -> None:
    """Show the active network, its DAO and its batches."""
    config = load_config()
    registry = Registry.at(config.rpc_url, config.registry)
    params = registry.parameters()
    if fmt == "json":
        counts: dict[str, int] = {}
        for info in registry.all_batches():
            counts[info.tally.status.name.lower()] = counts.get(info.tally.status.name.lower(), 0) + 1
        echo_json({
            "network": {"name": config.name, "rpc_url": config.rpc_url, "chain_id": config.chain_id, "registry": config.registry,
                        "deploy_block": config.deploy_block, "ipfs_api": config.ipfs_api, "ipfs_mirrors": list(config.ipfs_mirrors)},
            "voting_period": params["voting_period"],
            "quorum_bps": params["quorum_bps"],
            "membership_clock": params["membership_clock"],
            "members": registry.members(),
            "nodes": [{"id": node_id, "address": address, "active": active} for node_id, address, active in registry.nodes()],
            "batches": counts,
            "proposals": registry.proposal_count(),
            "chain_time": registry.chain_time(),
            "library": library_status(),
        })
        return
    table = Table(title=f"{config.name}: {config.registry}", show_header=False)
    table.add_row("RPC / chain id", f"{config.rpc_url} / {config.chain_id}")
    table.add_row("IPFS API", config.ipfs_api or f"embedded local store ({dso_home() / 'blocks'})")
    table.add_row("voting period", f"{params['voting_period']} s")
    table.add_row("quorum", f"{params['quorum_bps'] / 100:g}% of the electorate")
    table.add_row("members", str(params["member_count"]))
    table.add_row("nodes", str(sum(active for _, _, active in registry.nodes())))
    counts: dict[str, int] = {}
    for info in registry.all_batches():
        counts[info.tally.status.name.lower()] = counts.get(info.tally.status.name.lower(), 0) + 1
    table.add_row("batches", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none")
    lib = library_status()
    if lib is not None:
        left = lib["left_out"]
        table.add_row("library", f"{lib['entries']:,} entries ({lib['local']:,} local), {lib['pending']:,} awaiting support, {lib['reports']:,} reports")
        table.add_row("left out", f"{left['dropped_reports']:,} reports from nodes not admitted, {left['capped_reports']:,} over the per-node cap, "
                                  f"{left['forged_reports']:,} whose code is not their text's")
        table.add_row("index", f"{lib['index_rows']:,} rows; {lib['unindexed']:,} texts not embedded yet (`dso index`)")
    console.print(table)
    console.print(reputation_table(config.registry, config.deploy_block))


def library_status() -> dict | None:
    """The local library's counts (None when there is no library yet): entries, what the last
    aggregation left out and why, and how much of the index is embedded."""
    if not library_path().exists():
        return None
    from dso.edges.embed import LazyEmbedder
    from dso.workflows.library import Library

    with Library(library_path(), LazyEmbedder("minilm")) as library:
        lib = library.status()
    last = lib.last_aggregation or {}
    return {"entries": lib.entries, "local": lib.local, "pending": lib.pending, "reports": lib.reports, "index_rows": lib.index_rows,
            "unindexed": lib.unindexed, "left_out": {k: last.get(k, 0) for k in ("dropped_reports", "capped_reports", "forged_reports")}}


def reputation_table(registry: str, deploy_block: int) -> Table | str:
    """Each admitted node's reputation weight and the record it comes from, as of the last `dso sync`
    (the weights the local library was aggregated with)."""
    from dso.core.reputation import EPOCH_BLOCKS
    from dso.workflows.sync import SyncState, chain_records, node_weights

    path = dso_home() / "sync.json"
    if not path.exists():
        return "reputation: no sync yet (`dso sync` reads the chain's record and weighs each node)"
    state = SyncState.load(path, registry, deploy_block)
    if state.lacks_blocks:
        return "reputation: the sync checkpoint predates reputation; the next `dso sync` reads the blocks it needs"
    as_of = max(state.next_block - 1, 0)
    records, weights = chain_records(state, as_of), node_weights(state, as_of)
    table = Table(title=f"reputation as of block {as_of} (last sync; epochs of {EPOCH_BLOCKS:,} blocks)")
    for column in ("node", "address", "admitted at block", "epochs with work accepted", "batches rejected",
                   "batches revoked", "experiences revoked", "weight"):
        table.add_column(column, justify="left" if column == "address" else "right")
    for node, record in records.items():
        table.add_row(str(node), state.admitted[str(node)], str(record.admitted_block), str(record.accepted_epochs),
                      str(record.rejected_batches), str(record.revoked_batches), str(record.revoked_leaves), f"{weights[node]:.3f}")
    return table
