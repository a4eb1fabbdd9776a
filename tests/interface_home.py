"""A DSO_HOME on the session devnet for the interface tests (`dso mcp`, `dso ui`, `--format json`):
a fresh registry with dev wallets, and batches submitted, voted and synced through the real
workflows."""

from __future__ import annotations

from pathlib import Path

from conftest import deploy_dao

from dso.edges.chain import Registry, Status
from dso.edges.config import NetworkConfig, save_config
from dso.edges.datasets import gsm8k_insights
from dso.edges.ipfs import KuboClient, cid_to_bytes
from dso.edges.wallet import create_dev_wallets
from dso.workflows.publish import prepare_batch


def make_home(home: Path, monkeypatch, w3, accounts, anvil_url: str, ipfs_api: str, n_members: int = 3, n_nodes: int = 3):
    """Point DSO_HOME at `home`, deploy a registry (members and nodes from the dev accounts) and
    write the dev wallets deployer, member1.., node1.. (password "dev"); returns the Dao."""
    monkeypatch.setenv("DSO_HOME", str(home))
    monkeypatch.setenv("DSO_DEV_PASSWORD", "dev")
    dao = deploy_dao(w3, accounts, n_members=n_members, n_nodes=n_nodes)
    save_config(NetworkConfig(anvil_url, w3.eth.chain_id, dao.registry.address, 0, "test", ipfs_api))
    create_dev_wallets({"deployer": dao.deployer, **{f"member{i + 1}": m for i, m in enumerate(dao.members)},
                        **{f"node{i + 1}": n for i, n in enumerate(dao.nodes)}})
    return dao


def submit(dao, ipfs_api: str, embedder, node_index: int, insights, now: int) -> bytes:
    """Node `node_index` pins and commits a batch of `insights`; returns its root."""
    node = dao.nodes[node_index]
    document = prepare_batch(insights, node.address, embedder, now=now)
    cid = KuboClient(ipfs_api).put(document.to_bytes())
    dao.registry.submit_batch(node, document.header.root, cid_to_bytes(cid), document.header.count, document.header.schema_id)
    return document.header.root


def accept(registry: Registry, dao, root: bytes) -> None:
    """Every member votes yes and the deployer finalizes."""
    for member in dao.members:
        registry.vote_on_batch(member, root, True)
    assert registry.finalize_batch(dao.deployer, root).status == Status.ACCEPTED


def lessons(count: int = 6, offset: int = 50):
    """GSM8K-derived insights every node reports (so they are accepted with 3 nodes' support)."""
    return gsm8k_insights(count, offset=offset)
