"""Faults, for real: processes SIGKILLed mid-submit and mid-sync, the IPFS node killed under a
submit and a sync, Anvil restarted with its state lost, an RPC endpoint that never answers, a full
disk under the library. Afterwards nothing is committed twice, nothing is lost from the outbox,
and the library equals what an uninterrupted sync of the same chain builds.

Jobs that get killed run in their own process (tests/fault_driver.py), which stops at a named point
so that the kill lands exactly there; a final test kills a sync at random moments instead.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import deploy_dao

from dso.edges.chain import Registry, Status
from dso.edges.datasets import gsm8k_insights
from dso.edges.embed import load_embedder
from dso.edges.ipfs import KuboClient, LocalStore, cid_to_bytes
from dso.edges.services import free_port, start_anvil, start_ipfs
from dso.errors import DsoError, RpcUnavailable, StoreUnavailable
from dso.workflows.library import Library, LibraryError
from dso.workflows.publish import Outbox, insights_to_jsonl, prepare_batch, publish, read_insights
from dso.workflows.sync import sync

DRIVER = Path(__file__).with_name("fault_driver.py")
LESSONS = 6


@pytest.fixture(scope="module")
def embedder():
    return load_embedder("minilm")


# ---------------------------------------------------------------------------- helpers


def run_driver(mode: str, config: dict, tmp_path: Path, env: dict[str, str] | None = None, kill_at: str | None = None,
               kill_after: float | None = None) -> str:
    """Run the driver; SIGKILL it when it reports `kill_at` (or `kill_after` seconds after it
    started its job). Returns its output; fails the test if the kill point is never reached."""
    config_path = tmp_path / f"{mode}-{time.monotonic_ns()}.json"
    config_path.write_text(json.dumps({**config, "kill_point": kill_at}))
    process = subprocess.Popen([sys.executable, str(DRIVER), mode, str(config_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env={**os.environ, **(env or {})})
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line)
            if kill_at and line.strip() == f"AT {kill_at}":
                process.send_signal(signal.SIGKILL)
                break
            if kill_after is not None and line.strip() == "STARTED":
                time.sleep(kill_after)
                process.send_signal(signal.SIGKILL)
                break
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = "".join(lines)
    if kill_at:
        assert f"AT {kill_at}" in output, output
        assert process.returncode == -signal.SIGKILL
    elif kill_after is None:
        assert process.returncode == 0 and "DONE" in output, output
    return output


def publish_decided(dao, store, embedder, node_index: int, offset: int, count: int = LESSONS, approve: bool = True) -> bytes:
    """Node `node_index` submits lessons offset.. in its own wording; the members decide."""
    insights = gsm8k_insights(count, offset=offset, style=node_index % 4)
    document = prepare_batch(insights, dao.nodes[node_index].address, embedder, now=1_763_000_000 + offset + node_index)
    cid = store.put(document.to_bytes())
    root = document.header.root
    dao.registry.submit_batch(dao.nodes[node_index], root, cid_to_bytes(cid), document.header.count, document.header.schema_id)
    for member in dao.members:
        dao.registry.vote_on_batch(member, root, approve)
    assert dao.registry.finalize_batch(dao.deployer, root).status == (Status.ACCEPTED if approve else Status.REJECTED)
    return root


def network(dao, store, embedder) -> list[bytes]:
    """Three nodes each report lessons 0-5 and 10-15 (two batches each); one batch is rejected."""
    roots = [publish_decided(dao, store, embedder, n, offset) for offset in (0, 10) for n in range(3)]
    publish_decided(dao, store, embedder, 0, offset=40, approve=False)
    return roots


def library_view(path: Path) -> tuple[list[tuple], list[tuple]]:
    """What an agent sees (entries with their consensus values) and every stored report."""
    with sqlite3.connect(path) as db:
        entries = db.execute("SELECT id, origin, accepted, text, domain, confidence, code, support, node_ids FROM experiences ORDER BY id").fetchall()
        reports = db.execute("SELECT batch_root, leaf_index, experience_id, node_id FROM reports ORDER BY batch_root, leaf_index").fetchall()
    return entries, reports


def reference_view(dao, store, embedder, tmp_path: Path) -> tuple[list[tuple], list[tuple]]:
    """The library an uninterrupted sync builds from the same chain."""
    with Library(tmp_path / "reference.sqlite", embedder) as library:
        report = sync(dao.registry, store, library, tmp_path / "reference-sync.json")
        assert report.aggregation.accepted == 2 * LESSONS
    return library_view(tmp_path / "reference.sqlite")


def batch_events(dao) -> list[str]:
    return [e.args["root"].hex() for e in dao.registry.events(0).events if e.name == "BatchSubmitted"]


# ---------------------------------------------------------------------------- SIGKILL


@pytest.mark.parametrize("kill_at", ["stored-1", "stored-3", "aggregate", "checkpoint"])
def test_sync_killed_at_any_stage_then_rerun_equals_an_uninterrupted_sync(w3, accounts, embedder, tmp_path, kill_at):
    dao = deploy_dao(w3, accounts, n_members=3, n_nodes=3)
    store = LocalStore(tmp_path / "blocks")
    network(dao, store, embedder)
    config = {"rpc_url": w3.provider.endpoint_uri, "registry": dao.registry.address, "blocks": str(tmp_path / "blocks"),
              "library": str(tmp_path / "agent.sqlite"), "state": str(tmp_path / "sync.json")}
    run_driver("sync", config, tmp_path, kill_at=kill_at)
    assert not (tmp_path / "sync.json").exists()  # the checkpoint never runs ahead of the library
    run_driver("sync", config, tmp_path)
    assert library_view(tmp_path / "agent.sqlite") == reference_view(dao, store, embedder, tmp_path)


@pytest.mark.parametrize("kill_at", ["pinned", "committed"])
def test_submit_killed_mid_way_then_flush_commits_exactly_once(w3, accounts, embedder, tmp_path, kill_at):
    dao = deploy_dao(w3, accounts, n_members=3, n_nodes=1)
    jsonl = tmp_path / "lessons.jsonl"
    jsonl.write_text(insights_to_jsonl(gsm8k_insights(LESSONS, offset=60)))
    config = {"rpc_url": w3.provider.endpoint_uri, "registry": dao.registry.address, "blocks": str(tmp_path / "blocks"),
              "jsonl": str(jsonl), "outbox": str(tmp_path / "outbox")}
    run_driver("submit", config, tmp_path, env={"DSO_TEST_NODE_KEY": dao.nodes[0].key.hex()}, kill_at=kill_at)
    outbox = Outbox(tmp_path / "outbox")
    [entry] = outbox.entries()  # the killed process lost nothing
    assert entry.state == ("queued" if kill_at == "pinned" else "pinned")  # killed before / after recording the pin
    assert len(batch_events(dao)) == (1 if kill_at == "committed" else 0)
    committed, pending, _ = outbox.flush(LocalStore(tmp_path / "blocks"), dao.registry, dao.nodes[0])
    assert [c.root for c in committed] == [entry.root] and pending == [] and outbox.entries() == []
    assert batch_events(dao) == [entry.root]  # committed exactly once
    assert (committed[0].gas_used is None) == (kill_at == "committed")  # recognised, not resent


def test_sync_killed_at_random_moments_converges_to_the_same_library(w3, accounts, embedder, tmp_path):
    dao = deploy_dao(w3, accounts, n_members=3, n_nodes=3)
    store = LocalStore(tmp_path / "blocks")
    network(dao, store, embedder)
    config = {"rpc_url": w3.provider.endpoint_uri, "registry": dao.registry.address, "blocks": str(tmp_path / "blocks"),
              "library": str(tmp_path / "agent.sqlite"), "state": str(tmp_path / "sync.json")}
    chooser = random.Random(20261122)
    for _ in range(3):
        run_driver("sync", config, tmp_path, kill_after=chooser.uniform(0.0, 1.5))
    run_driver("sync", config, tmp_path)
    assert library_view(tmp_path / "agent.sqlite") == reference_view(dao, store, embedder, tmp_path)


# ---------------------------------------------------------------------------- IPFS node killed


class KillingStore:
    """A real KuboClient whose node is SIGKILLed at the `after`-th call of `method`."""

    def __init__(self, client: KuboClient, pid: int, method: str, after: int = 1) -> None:
        self.client, self.pid, self.method, self.after, self.calls = client, pid, method, after, 0
        self.lock = threading.Lock()

    def __getattr__(self, name: str):
        real = getattr(self.client, name)
        if name != self.method:
            return real

        def wrapped(*args, **kwargs):
            with self.lock:
                self.calls += 1
                if self.calls == self.after:
                    os.kill(self.pid, signal.SIGKILL)
                    time.sleep(0.3)
            return real(*args, **kwargs)

        return wrapped


def test_ipfs_killed_during_submit_keeps_the_batch_and_a_restarted_node_gets_it_committed_once(w3, accounts, embedder, tmp_path):
    dao = deploy_dao(w3, accounts, n_members=3, n_nodes=1)
    jsonl = tmp_path / "lessons.jsonl"
    jsonl.write_text(insights_to_jsonl(gsm8k_insights(LESSONS, offset=70)))
    outbox = Outbox(tmp_path / "outbox")
    node, api = start_ipfs(tmp_path / "ipfs", port=free_port(), die_with_parent=True)
    try:
        with KuboClient(api, timeout=3) as client:
            committed, pending, _ = publish(read_insights(jsonl), dao.nodes[0], lambda: embedder, outbox, lambda: (KillingStore(client, node.pid(), "put"), dao.registry))
        assert committed == [] and "StoreUnavailable" in pending[0].last_error and len(outbox.entries()) == 1
        assert dao.registry.batch_count() == 0
    finally:
        node.stop()
    node, api = start_ipfs(tmp_path / "ipfs", port=free_port(), die_with_parent=True)  # the same repo, after an unclean death
    try:
        with KuboClient(api) as client:
            committed, pending, _ = outbox.flush(client, dao.registry, dao.nodes[0])
            assert len(committed) == 1 and pending == [] and outbox.entries() == []
            assert client.get(committed[0].cid)
    finally:
        node.stop()
    assert batch_events(dao) == [committed[0].root]


def test_ipfs_killed_during_sync_leaves_the_checkpoint_and_a_restarted_node_completes_it(w3, accounts, embedder, tmp_path):
    dao = deploy_dao(w3, accounts, n_members=3, n_nodes=3)
    node, api = start_ipfs(tmp_path / "ipfs", port=free_port(), die_with_parent=True)
    try:
        with KuboClient(api) as client:
            network(dao, client, embedder)
            with Library(tmp_path / "agent.sqlite", embedder) as library, pytest.raises(StoreUnavailable):
                sync(dao.registry, KillingStore(client, node.pid(), "get", after=2), library, tmp_path / "sync.json")
        assert not (tmp_path / "sync.json").exists()
    finally:
        node.stop()
    node, api = start_ipfs(tmp_path / "ipfs", port=free_port(), die_with_parent=True)
    try:
        with KuboClient(api) as client:
            with Library(tmp_path / "agent.sqlite", embedder) as library:
                report = sync(dao.registry, client, library, tmp_path / "sync.json")
                assert report.unavailable == {} and report.invalid == {}
            assert library_view(tmp_path / "agent.sqlite") == reference_view(dao, client, embedder, tmp_path)
    finally:
        node.stop()


# ---------------------------------------------------------------------------- the chain


def test_anvil_restarted_with_its_state_lost_is_detected_not_synced_over(accounts, embedder, tmp_path):
    process, url = start_anvil(tmp_path / "anvil", port=free_port(), die_with_parent=True)
    port = int(url.rsplit(":", 1)[1])
    try:
        from dso.edges.chain import connect

        first = deploy_dao(connect(url), accounts, n_members=3, n_nodes=3)
        store = LocalStore(tmp_path / "blocks")
        network(first, store, embedder)
        with Library(tmp_path / "agent.sqlite", embedder) as library:
            assert sync(first.registry, store, library, tmp_path / "sync.json").aggregation.accepted == 2 * LESSONS
    finally:
        process.stop()
    process, url = start_anvil(tmp_path / "anvil2", port=port, die_with_parent=True)  # a fresh chain on the same endpoint
    try:
        w3 = connect(url)
        again = deploy_dao(w3, accounts, n_members=3, n_nodes=3)
        assert again.registry.address == first.registry.address  # same deployer, same nonce: same address
        for _ in range(40):  # the new chain grows past the checkpoint's block
            w3.provider.make_request("evm_mine", [])
        with Library(tmp_path / "agent.sqlite", embedder) as library:
            before = library_view(tmp_path / "agent.sqlite")
            with pytest.raises(DsoError, match="no longer has block"):
                sync(again.registry, store, library, tmp_path / "sync.json")
        assert library_view(tmp_path / "agent.sqlite") == before
    finally:
        process.stop()


@pytest.fixture
def silent_rpc():
    """An endpoint that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def test_an_rpc_that_times_out_keeps_the_batch_for_the_next_flush(w3, accounts, embedder, tmp_path, silent_rpc):
    from web3 import Web3

    dao = deploy_dao(w3, accounts, n_members=3, n_nodes=1)
    jsonl = tmp_path / "lessons.jsonl"
    jsonl.write_text(insights_to_jsonl(gsm8k_insights(LESSONS, offset=80)))
    store, outbox = LocalStore(tmp_path / "blocks"), Outbox(tmp_path / "outbox")
    hanging = Registry(Web3(Web3.HTTPProvider(silent_rpc, request_kwargs={"timeout": 1})), dao.registry.address)
    started = time.monotonic()
    committed, pending, _ = publish(read_insights(jsonl), dao.nodes[0], lambda: embedder, outbox, lambda: (store, hanging))
    assert time.monotonic() - started < 30
    assert committed == [] and "RpcUnavailable" in pending[0].last_error and pending[0].state == "pinned"
    with Library(tmp_path / "agent.sqlite", embedder) as library, pytest.raises(RpcUnavailable):
        sync(hanging, store, library, tmp_path / "sync.json")
    assert not (tmp_path / "sync.json").exists()
    committed, pending, _ = outbox.flush(store, dao.registry, dao.nodes[0])
    assert len(committed) == 1 and pending == [] and dao.registry.batch_count() == 1


# ---------------------------------------------------------------------------- the disk


def test_a_full_disk_under_the_library_fails_cleanly_and_the_next_sync_completes(w3, accounts, embedder, tmp_path):
    dao = deploy_dao(w3, accounts, n_members=3, n_nodes=3)
    store = LocalStore(tmp_path / "blocks")
    network(dao, store, embedder)
    path = tmp_path / "agent.sqlite"
    with Library(path, embedder) as library:
        # SQLite's own out-of-space path (SQLITE_FULL), as on a full disk: the file may not grow
        pages = library._db.execute("PRAGMA page_count").fetchone()[0]
        library._db.execute(f"PRAGMA max_page_count = {pages + 3}")
        with pytest.raises(LibraryError, match="could not write the library .* nothing was changed"):
            sync(dao.registry, store, library, tmp_path / "sync.json")
        partial = library_view(path)
    assert not (tmp_path / "sync.json").exists()
    batches_stored = {root for root, *_ in partial[1]}
    assert all(sum(r[0] == root for r in partial[1]) == LESSONS for root in batches_stored)  # whole batches or none
    with Library(path, embedder) as library:  # space freed
        sync(dao.registry, store, library, tmp_path / "sync.json")
    assert library_view(path) == reference_view(dao, store, embedder, tmp_path)
