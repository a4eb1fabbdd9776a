"""`dso devnet`: a local devnet on 127.0.0.1 (Anvil, the IPFS node, a freshly deployed registry)."""

from __future__ import annotations

import json

import click
from rich.table import Table

from dso.edges.config import NetworkConfig, load_config, save_config
from dso.edges.files import atomic_write_text
from dso.edges.services import DEFAULT_ANVIL_PORT, DEFAULT_IPFS_PORT, ManagedProcess
from dso.edges.wallet import DEV_PASSWORD_ENV, create_dev_wallets, dev_password
from dso.interfaces.cli.options import console, devnet_dir
from dso.workflows.devnet import DEVNET_ROLES, DEVNET_SERVICES, bring_up, resume


@click.group()
def devnet() -> None:
    """A local devnet: Anvil and an IPFS node on 127.0.0.1, with a freshly deployed registry."""


@devnet.command("up")
@click.option("--port", default=DEFAULT_ANVIL_PORT, show_default=True, help="Anvil RPC port.")
@click.option("--ipfs-port", default=DEFAULT_IPFS_PORT, show_default=True, help="IPFS RPC API port.")
@click.option("--voting-period", default=3_600, show_default=True, help="Seconds each batch stays open for votes.")
@click.option("--quorum-bps", default=5_000, show_default=True, help="Quorum, basis points of the electorate.")
def devnet_up(port: int, ipfs_port: int, voting_period: int, quorum_bps: int) -> None:
    """Start Anvil and the IPFS node, deploy the registry with dev members and nodes, write the
    network config. If the devnet's Anvil still runs, start only what is missing (the IPFS node)
    and keep the chain."""
    running = ManagedProcess("anvil", devnet_dir()).pid() is not None
    if running:
        config = load_config()
        resumed = resume(devnet_dir(), config.rpc_url, config.registry, config.ipfs_api, ipfs_port)
        if resumed is not None:
            console.print(f"anvil already running (pid {resumed.anvil_pid}, registry {config.registry} kept); "
                          f"started the IPFS node (pid {resumed.ipfs_pid}) on {resumed.ipfs_api}")
            return
    stale_ipfs = ManagedProcess("ipfs", devnet_dir())
    if stale_ipfs.pid() is not None:  # its chain is gone: a fresh devnet gets a fresh node (the repo is kept)
        stale_ipfs.stop()
    net = bring_up(devnet_dir(), port, ipfs_port, voting_period, quorum_bps)
    config = NetworkConfig(net.rpc_url, net.registry.chain_id(), net.registry.address, net.deploy.block_number, name="devnet", ipfs_api=net.ipfs_api)
    path = save_config(config)
    accounts_doc = {
        "mnemonic": "Anvil's public dev mnemonic (see dso.edges.services.DEV_MNEMONIC): never use on a real network",
        "roles": {role: [{"index": i, "address": net.accounts[i].address} for i in indexes] for role, indexes in DEVNET_ROLES.items()},
    }
    atomic_write_text(devnet_dir() / "accounts.json", json.dumps(accounts_doc, indent=2) + "\n")
    dev_names = net.wallet_names()
    create_dev_wallets(dev_names)
    table = Table(title="dso devnet", show_header=False)
    table.add_row("RPC", net.rpc_url)
    table.add_row("chain id", str(config.chain_id))
    table.add_row("registry", net.registry.address)
    table.add_row("deploy gas", f"{net.deploy.gas_used:,}")
    table.add_row("members", "\n".join(a.address for a in net.members))
    table.add_row("nodes", "\n".join(a.address for a in net.nodes))
    table.add_row("IPFS API", net.ipfs_api)
    table.add_row("pids", f"anvil {net.anvil.pid()}, ipfs {net.ipfs.pid()}")
    table.add_row("wallets", f"{', '.join(dev_names)} (password {dev_password()!r}, or ${DEV_PASSWORD_ENV})")
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
