"""The `dso` command line: argument handling and output only; the work happens in the modules."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from dso import __version__
from dso.chain import Registry, Status, connect
from dso.config import NetworkConfig, atomic_write_text, dso_home, load_config, save_config
from dso.devnet import DEFAULT_ANVIL_PORT, DEFAULT_IPFS_PORT, ManagedProcess, dev_accounts, start_anvil, start_ipfs
from dso.errors import DsoError
from dso.wallet import load_keystore, password_from_env_or_prompt

console = Console()

DEVNET_ROLES = {"deployer": range(0, 1), "members": range(1, 6), "nodes": range(6, 10)}


def devnet_dir() -> Path:
    return dso_home() / "devnet"


@click.group()
@click.version_option(__version__, prog_name="dso")
def cli() -> None:
    """dso: a blockchain-backed, decentralized registry of AI-agent experiences."""


@cli.group()
def devnet() -> None:
    """A local devnet: Anvil on 127.0.0.1 with a freshly deployed registry."""


DEVNET_SERVICES = ("anvil", "ipfs")


@devnet.command("up")
@click.option("--port", default=DEFAULT_ANVIL_PORT, show_default=True, help="Anvil RPC port.")
@click.option("--ipfs-port", default=DEFAULT_IPFS_PORT, show_default=True, help="IPFS RPC API port.")
@click.option("--voting-period", default=3_600, show_default=True, help="Seconds each batch stays open for votes.")
@click.option("--quorum-bps", default=5_000, show_default=True, help="Quorum, basis points of the electorate.")
def devnet_up(port: int, ipfs_port: int, voting_period: int, quorum_bps: int) -> None:
    """Start Anvil and the IPFS node, deploy the registry with dev members and nodes, write the
    network config."""
    process, url = start_anvil(devnet_dir(), port=port)
    try:
        ipfs_process, ipfs_api = start_ipfs(devnet_dir(), port=ipfs_port)
    except BaseException:
        process.stop()
        raise
    try:
        accounts = dev_accounts(10)
        roles = {role: [accounts[i] for i in indexes] for role, indexes in DEVNET_ROLES.items()}
        w3 = connect(url)
        registry, deploy = Registry.deploy(
            w3,
            roles["deployer"][0],
            [a.address for a in roles["members"]],
            [a.address for a in roles["nodes"]],
            voting_period=voting_period,
            quorum_bps=quorum_bps,
        )
    except BaseException:
        process.stop()
        ipfs_process.stop()
        raise
    config = NetworkConfig(url, w3.eth.chain_id, registry.address, deploy.block_number, name="devnet", ipfs_api=ipfs_api)
    path = save_config(config)
    accounts_doc = {
        "mnemonic": "Anvil's public dev mnemonic (see dso.devnet.DEV_MNEMONIC): never use on a real network",
        "roles": {role: [{"index": i, "address": accounts[i].address} for i in indexes] for role, indexes in DEVNET_ROLES.items()},
    }
    atomic_write_text(devnet_dir() / "accounts.json", json.dumps(accounts_doc, indent=2) + "\n")
    table = Table(title="dso devnet", show_header=False)
    table.add_row("RPC", url)
    table.add_row("chain id", str(config.chain_id))
    table.add_row("registry", registry.address)
    table.add_row("deploy gas", f"{deploy.gas_used:,}")
    table.add_row("members", "\n".join(a.address for a in roles["members"]))
    table.add_row("nodes", "\n".join(a.address for a in roles["nodes"]))
    table.add_row("IPFS API", ipfs_api)
    table.add_row("pids", f"anvil {process.pid()}, ipfs {ipfs_process.pid()}")
    table.add_row("config", str(path))
    console.print(table)


@devnet.command("down")
def devnet_down() -> None:
    """Stop the devnet's Anvil and IPFS node (by PID). The chain is in memory: its state is gone;
    the IPFS repo stays under $DSO_HOME/devnet."""
    for name in DEVNET_SERVICES:
        stopped = ManagedProcess(name, devnet_dir()).stop()
        console.print(f"{name} stopped" if stopped else f"{name} was not running")


@devnet.command("status")
def devnet_status() -> None:
    """Show whether the devnet's Anvil and IPFS node are running."""
    for name in DEVNET_SERVICES:
        pid = ManagedProcess(name, devnet_dir()).pid()
        console.print(f"{name} running (pid {pid})" if pid else f"{name} not running")


@cli.command()
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


@cli.command()
def status() -> None:
    """Show the active network, its DAO and its batches."""
    config = load_config()
    registry = Registry.at(config.rpc_url, config.registry)
    params = registry.parameters()
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
    console.print(table)


def library_path() -> Path:
    return dso_home() / "library.sqlite"


@cli.command()
@click.argument("text")
@click.option("-k", "k", default=5, show_default=True, help="How many experiences to return.")
@click.option("--domain", default=None, help="Only this domain and below it (e.g. math).")
@click.option("--min-confidence", default=0.0, show_default=True, help="Only experiences at least this confident.")
@click.option("--format", "fmt", type=click.Choice(["table", "prompt", "json"]), default="table", show_default=True)
@click.option("--embedder", "embedder_name", type=click.Choice(["minilm", "minilm-int8"]), default="minilm", show_default=True)
def query(text: str, k: int, domain: str | None, min_confidence: float, fmt: str, embedder_name: str) -> None:
    """Retrieve the experiences most relevant to TEXT from the local library."""
    from dso.embed import load_embedder
    from dso.library import Library, export_json

    path = library_path()
    if not path.exists():
        raise DsoError(f"no library at {path}: sync one first (`dso sync`)")
    with Library(path, load_embedder(embedder_name)) as library:
        if fmt == "prompt":
            click.echo(library.context_for(text, k=k, domain=domain, min_confidence=min_confidence))
            return
        hits = library.search(text, k=k, domain=domain, min_confidence=min_confidence)
    if fmt == "json":
        click.echo(export_json(hits))
        return
    table = Table(title=f"top {k} for: {text}")
    for column in ("score", "domain", "confidence", "nodes", "experience"):
        table.add_column(column)
    for hit in hits:
        e = hit.experience
        table.add_row(f"{hit.score:.3f}", e.domain, f"{e.confidence:.2f}", str(hit.support), e.text)
    console.print(table)


@cli.command()
def demo() -> None:
    """Run the on-chain lifecycle on a private devnet: submit, relay, vote, finalize, govern, read back."""
    from dso.demo import run_demo

    summary = run_demo(console)
    if not (summary["accepted"] and summary["rejected"] and summary["member_added"]):
        raise DsoError(f"demo ended in an unexpected state: {summary}")


def main() -> None:
    """Entry point: user errors print one clear line, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except DsoError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(1)


__all__ = ["cli", "main", "Status"]
