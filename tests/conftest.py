"""Shared fixtures: one real Anvil per test session, a fresh registry per test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from dso.edges.chain import Registry, connect
from dso.edges.services import dev_accounts, free_port, start_anvil, start_ipfs

# ape's own test suite lives in tests/ape and runs under `ape test`, not plain pytest.
collect_ignore = ["ape"]

VOTING_PERIOD = 3_600


@pytest.fixture(scope="session")
def anvil_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Anvil devnet for the whole session, stopped by PID at the end."""
    process, url = start_anvil(tmp_path_factory.mktemp("anvil"), port=free_port(), accounts=20, die_with_parent=True)
    try:
        yield url
    finally:
        process.stop()


@pytest.fixture(scope="session")
def ipfs_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real devnet IPFS node (js-ipfs, offline) for the whole session, stopped by PID."""
    process, url = start_ipfs(tmp_path_factory.mktemp("ipfs"), port=free_port(), die_with_parent=True)
    try:
        yield url
    finally:
        process.stop()


@pytest.fixture(scope="session")
def w3(anvil_url: str) -> Web3:
    return connect(anvil_url)


@pytest.fixture(scope="session")
def accounts() -> list[LocalAccount]:
    """Anvil's funded dev accounts: 0 deployer/relayer, 1-5 members, 6-8 nodes, 9-19 outsiders."""
    return dev_accounts(20)


@dataclass
class Dao:
    """A freshly deployed registry with named roles."""

    registry: Registry
    deployer: LocalAccount
    members: list[LocalAccount]
    nodes: list[LocalAccount]
    outsiders: list[LocalAccount]


def deploy_dao(
    w3: Web3,
    accounts: list[LocalAccount],
    n_members: int = 3,
    n_nodes: int = 2,
    quorum_bps: int = 5_000,
    voting_period: int = VOTING_PERIOD,
) -> Dao:
    """Deploy a registry with the first `n_members` of accounts[1:6] and `n_nodes` of accounts[6:9]."""
    members = accounts[1 : 1 + n_members]
    nodes = accounts[6 : 6 + n_nodes]
    registry, _ = Registry.deploy(
        w3,
        accounts[0],
        [m.address for m in members],
        [n.address for n in nodes],
        voting_period=voting_period,
        quorum_bps=quorum_bps,
    )
    return Dao(registry, accounts[0], list(members), list(nodes), accounts[9:])


@pytest.fixture
def dao(w3: Web3, accounts: list[LocalAccount]) -> Dao:
    """3 members, 2 nodes, quorum 50%, voting period one hour."""
    return deploy_dao(w3, accounts)


def advance_time(w3: Web3, seconds: int) -> None:
    """Move the devnet clock forward and mine a block."""
    w3.provider.make_request("evm_increaseTime", [seconds])
    w3.provider.make_request("evm_mine", [])


def funded_account(w3: Web3) -> LocalAccount:
    """A new random account with 100 ETH on the devnet."""
    account = Account.create()
    w3.provider.make_request("anvil_setBalance", [account.address, hex(100 * 10**18)])
    return account


def root_of(label: str | int) -> bytes:
    """A deterministic nonzero 32-byte stand-in for a Merkle root."""
    return Web3.keccak(text=f"root:{label}")


CID = bytes.fromhex("01551220") + bytes(range(32))  # CIDv1, raw codec, sha2-256 digest
SCHEMA = Web3.keccak(text="dso/1|all-MiniLM-L6-v2|bitdelta-1")
