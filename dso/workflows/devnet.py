"""Bring up a private devnet: Anvil, the offline IPFS node, and a registry deployed with dev roles.

The one bring-up that `dso devnet up` and `dso demo` share. Roles come from Anvil's public dev
mnemonic (account 0 deploys, 1-5 are DAO members, 6-9 admitted nodes): their keys are public, so a
devnet is for trying dso, never for value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from dso.edges.chain import Registry, TxResult, connect
from dso.edges.services import DEFAULT_ANVIL_PORT, DEFAULT_IPFS_PORT, ManagedProcess, dev_accounts, start_anvil, start_ipfs
from dso.errors import DevnetError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

# Anvil dev account indexes of each role.
DEVNET_ROLES = {"deployer": range(0, 1), "members": range(1, 6), "nodes": range(6, 10)}
DEVNET_SERVICES = ("anvil", "ipfs")
DEFAULT_VOTING_PERIOD = 3_600
DEFAULT_QUORUM_BPS = 5_000


@dataclass(frozen=True)
class Devnet:
    """A running devnet: both services (stopped by `stop`), the registry and the role accounts."""

    anvil: ManagedProcess
    rpc_url: str
    ipfs: ManagedProcess
    ipfs_api: str
    registry: Registry
    deploy: TxResult
    accounts: tuple["LocalAccount", ...]

    def role(self, name: str) -> list["LocalAccount"]:
        """The accounts of role `name` (deployer, members, nodes)."""
        return [self.accounts[i] for i in DEVNET_ROLES[name]]

    @property
    def deployer(self) -> "LocalAccount":
        return self.role("deployer")[0]

    @property
    def members(self) -> list["LocalAccount"]:
        return self.role("members")

    @property
    def nodes(self) -> list["LocalAccount"]:
        return self.role("nodes")

    def wallet_names(self) -> dict[str, "LocalAccount"]:
        """Dev wallet names for the role accounts: deployer, member1..5, node1..4."""
        return {"deployer": self.deployer, **{f"member{i}": a for i, a in enumerate(self.members, 1)},
                **{f"node{i}": a for i, a in enumerate(self.nodes, 1)}}

    def stop(self) -> None:
        """Stop both services (IPFS first, then Anvil, whose in-memory chain is then gone)."""
        self.ipfs.stop()
        self.anvil.stop()


@dataclass(frozen=True)
class Resumed:
    """`resume`'s outcome: the running Anvil's PID and the IPFS node that was started (or None)."""

    anvil_pid: int
    ipfs_pid: int | None
    ipfs_api: str | None


def resume(state_dir: Path, rpc_url: str, registry_address: str, ipfs_api: str | None, ipfs_port: int = DEFAULT_IPFS_PORT) -> Resumed | None:
    """Start whatever of a devnet is missing while its chain still runs: today the IPFS node (its
    repo, hence its content, is kept). None if Anvil is not running: the chain is gone, bring up a
    new devnet. DevnetError if everything already runs; ChainError if Anvil runs but the configured
    registry is not there."""
    anvil, ipfs = ManagedProcess("anvil", state_dir), ManagedProcess("ipfs", state_dir)
    anvil_pid = anvil.pid()
    if anvil_pid is None:
        return None
    if ipfs.pid() is not None:
        raise DevnetError(f"the devnet is already running (anvil pid {anvil_pid}, ipfs pid {ipfs.pid()}); "
                          "`dso devnet down` first to start a fresh one (the chain's state is then gone)")
    Registry.at(rpc_url, registry_address)  # the chain we resume must hold the configured registry
    port = urlsplit(ipfs_api).port if ipfs_api else None
    process, api = start_ipfs(state_dir, port=port or ipfs_port)
    return Resumed(anvil_pid, process.pid(), api)


def bring_up(
    state_dir: Path,
    anvil_port: int = DEFAULT_ANVIL_PORT,
    ipfs_port: int = DEFAULT_IPFS_PORT,
    voting_period: int = DEFAULT_VOTING_PERIOD,
    quorum_bps: int = DEFAULT_QUORUM_BPS,
    die_with_parent: bool = False,
) -> Devnet:
    """Start Anvil and the IPFS node under `state_dir` and deploy the registry with the dev roles.
    Whatever was started is stopped again if a later step fails. `die_with_parent` ties both
    services to this process (a private devnet, such as the demo's; see ManagedProcess.start)."""
    anvil, rpc_url = start_anvil(state_dir, port=anvil_port, die_with_parent=die_with_parent)
    try:
        ipfs, ipfs_api = start_ipfs(state_dir, port=ipfs_port, die_with_parent=die_with_parent)
    except BaseException:
        anvil.stop()
        raise
    try:
        accounts = tuple(dev_accounts(max(max(r) for r in DEVNET_ROLES.values()) + 1))
        members = [accounts[i].address for i in DEVNET_ROLES["members"]]
        nodes = [accounts[i].address for i in DEVNET_ROLES["nodes"]]
        registry, deploy = Registry.deploy(connect(rpc_url), accounts[0], members, nodes, voting_period=voting_period, quorum_bps=quorum_bps)
    except BaseException:
        ipfs.stop()
        anvil.stop()
        raise
    return Devnet(anvil, rpc_url, ipfs, ipfs_api, registry, deploy, accounts)
