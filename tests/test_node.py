"""Submitting from a node: input validation, and an outbox that loses nothing and commits once."""

from __future__ import annotations

import json

import pytest
from conftest import deploy_dao
from web3 import Web3

from dso.edges.chain import Registry, Status
from dso.edges.datasets import gsm8k_insights
from dso.edges.embed import load_embedder
from dso.edges.ipfs import KuboClient, LocalStore, cid_from_bytes, cid_to_bytes
from dso.edges.services import free_port
from dso.errors import RpcUnavailable
from dso.workflows.publish import InputError, Outbox, insights_to_jsonl, prepare_batch, publish, read_insights


@pytest.fixture(scope="module")
def embedder():
    return load_embedder("minilm")


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "insights.jsonl"
    path.write_text(insights_to_jsonl(gsm8k_insights(8)))
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "x", "domain": "math", "confidence": 0.5}\nnot json\n', ":2: not valid JSON"),
        ('{"text": "x", "domain": "math", "confidence": NaN}\n', r":1: confidence must be in \[0, 1\]"),
        ('{"text": "x", "domain": "Math", "confidence": 0.5}\n', ":1: domain"),
        ('{"text": "", "domain": "math", "confidence": 0.5}\n', ":1: text is empty"),
        ('{"text": "x", "domain": "math", "confidence": 0.5, "embedding": [1]}\n', "unknown fields"),
        ('["x"]\n', "JSON object"),
        ("\n\n", "holds no experiences"),
    ],
)
def test_malformed_input_names_the_line_and_field(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_insights(path)


def test_missing_input_file_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_insights(tmp_path / "nope.jsonl")


def test_submit_pins_commits_and_empties_the_outbox(w3, accounts, ipfs_api, embedder, jsonl, tmp_path):
    dao = deploy_dao(w3, accounts, n_nodes=1)
    outbox = Outbox(tmp_path / "outbox")
    with KuboClient(ipfs_api) as store:
        committed, pending, _ = publish(read_insights(jsonl), dao.nodes[0], lambda: embedder, outbox, lambda: (store, dao.registry))
        assert pending == [] and outbox.entries() == []
        [done] = committed
        info = dao.registry.batch(bytes.fromhex(done.root))
        assert info.tally.status == Status.PENDING and info.count == 8 and done.gas_used <= 80_000
        [event] = [e for e in dao.registry.events(0).events if e.name == "BatchSubmitted"]
        assert cid_from_bytes(event.args["cid"]) == done.cid and store.get(done.cid)


def test_ipfs_down_keeps_the_batch_and_a_later_flush_commits_it_once(w3, accounts, ipfs_api, embedder, jsonl, tmp_path):
    dao = deploy_dao(w3, accounts, n_nodes=1)
    outbox = Outbox(tmp_path / "outbox")
    with KuboClient(f"http://127.0.0.1:{free_port()}", timeout=2) as dead:
        committed, pending, _ = publish(read_insights(jsonl), dao.nodes[0], lambda: embedder, outbox, lambda: (dead, dao.registry))
    assert committed == [] and len(pending) == 1 and "StoreUnavailable" in pending[0].last_error
    assert dao.registry.batch_count() == 0
    assert json.loads((outbox.path / f"{pending[0].root}.json").read_text())["state"] == "queued"
    with KuboClient(ipfs_api) as store:
        committed, pending, _ = outbox.flush(store, dao.registry, dao.nodes[0])
        again, _, _ = outbox.flush(store, dao.registry, dao.nodes[0])
    assert len(committed) == 1 and pending == [] and again == []
    assert dao.registry.batch_count() == 1


def test_rpc_down_keeps_the_batch_pinned_for_the_next_flush(w3, accounts, embedder, jsonl, tmp_path):
    dao = deploy_dao(w3, accounts, n_nodes=1)
    store, outbox = LocalStore(tmp_path / "blocks"), Outbox(tmp_path / "outbox")
    dead_chain = Registry(Web3(Web3.HTTPProvider(f"http://127.0.0.1:{free_port()}", request_kwargs={"timeout": 2})), dao.registry.address)
    committed, pending, _ = publish(read_insights(jsonl), dao.nodes[0], lambda: embedder, outbox, lambda: (store, dead_chain))
    assert committed == [] and pending[0].state == "pinned" and "RpcUnavailable" in pending[0].last_error
    root = pending[0].root
    committed, pending, _ = outbox.flush(store, dao.registry, dao.nodes[0])
    assert [c.root for c in committed] == [root] and pending == []
    assert dao.registry.batch_count() == 1


def test_a_batch_committed_before_a_crash_is_recognised_not_resent(w3, accounts, embedder, jsonl, tmp_path):
    dao = deploy_dao(w3, accounts, n_nodes=1)
    store, outbox = LocalStore(tmp_path / "blocks"), Outbox(tmp_path / "outbox")
    document = prepare_batch(read_insights(jsonl), dao.nodes[0].address, embedder)
    entry = outbox.add(document)
    cid = store.put(document.to_bytes())
    # the process committed, then died before removing the outbox entry
    dao.registry.submit_batch(dao.nodes[0], document.header.root, cid_to_bytes(cid), document.header.count, document.header.schema_id)
    committed, pending, _ = outbox.flush(store, dao.registry, dao.nodes[0])
    assert [(c.root, c.gas_used) for c in committed] == [(entry.root, None)] and pending == []
    assert dao.registry.batch_count() == 1 and outbox.entries() == []


def test_a_corrupted_outbox_document_is_never_committed(w3, accounts, embedder, jsonl, tmp_path):
    dao = deploy_dao(w3, accounts, n_nodes=1)
    store, outbox = LocalStore(tmp_path / "blocks"), Outbox(tmp_path / "outbox")
    entry = outbox.add(prepare_batch(read_insights(jsonl), dao.nodes[0].address, embedder))
    path = outbox.path / f"{entry.root}.cbor"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    committed, pending, _ = outbox.flush(store, dao.registry, dao.nodes[0])
    assert committed == [] and "BatchError" in pending[0].last_error
    assert dao.registry.batch_count() == 0


def test_rpc_unavailable_is_the_error_type_for_a_dead_endpoint():
    dead = Registry(Web3(Web3.HTTPProvider(f"http://127.0.0.1:{free_port()}", request_kwargs={"timeout": 2})), "0x" + "11" * 20)
    with pytest.raises(RpcUnavailable):
        dead.batch_count()


# ------------------------------------------------------------------------------ large files (issue 9)


class CountingEmbedder:
    """The real model, counting the texts it embeds."""

    def __init__(self, inner) -> None:
        self.inner, self.model_id, self.dim, self.texts = inner, inner.model_id, inner.dim, 0

    def embed(self, texts, batch_size: int = 64):
        self.texts += len(texts)
        return self.inner.embed(texts, batch_size)


def test_batches_are_planned_by_exact_leaf_size_before_anything_is_embedded():
    from dso.workflows.publish import plan_batches

    insights = gsm8k_insights(40, offset=5_000)
    node = "0x" + "11" * 20
    plans = plan_batches(insights, node, code_bytes=50, max_cbor=3_000)
    assert [i for plan in plans for i in plan] == insights and len(plans) > 3
    sizes = [sum(len(i.text.encode()) for i in plan) for plan in plans]
    assert all(size <= 3_000 for size in sizes)
    assert len(plan_batches(insights, node, code_bytes=50, max_leaves=7)) == 6  # 40 leaves, 7 at most per batch


def test_a_file_too_large_for_one_batch_is_split_committed_once_each_and_resumed_without_duplicates(
        w3, accounts, ipfs_api, embedder, tmp_path, monkeypatch):
    """`dso submit` of a 5,000-line file used to fail after 245 s of embedding ("split it"): now
    sizes are planned first, each batch is queued and committed with one transaction, and a submit
    interrupted midway and run again embeds only what it had not queued and commits nothing twice."""
    import dso.workflows.publish as publish_module

    monkeypatch.setattr(publish_module, "PLANNED_BATCH_CBOR_BYTES", 4_000)
    dao = deploy_dao(w3, accounts, n_nodes=1)
    insights = gsm8k_insights(48, offset=5_100)
    outbox = Outbox(tmp_path / "outbox")
    counting = CountingEmbedder(embedder)
    stages: list[tuple[str, int, int]] = []

    def interrupt_after_the_second_batch(stage: str, done: int, total: int) -> None:
        stages.append((stage, done, total))
        if stage == "embedding" and len([s for s in stages if s[0] == "embedding"]) == 2:
            raise KeyboardInterrupt

    with KuboClient(ipfs_api) as store:
        with pytest.raises(KeyboardInterrupt):
            publish(insights, dao.nodes[0], lambda: counting, outbox, lambda: (store, dao.registry), interrupt_after_the_second_batch)
        embedded_first = counting.texts
        assert dao.registry.batch_count() == 0 and len(outbox.entries()) == 1  # the first batch was queued, nothing sent
        result = publish(insights, dao.nodes[0], lambda: counting, outbox, lambda: (store, dao.registry), lambda *a: stages.append(a))
    planned = publish_module.plan_batches(insights, dao.nodes[0].address, 50)
    assert len(planned) >= 4 and len(result.committed) == len(planned) == dao.registry.batch_count()
    assert counting.texts == embedded_first + len(insights) - len(planned[0])  # the queued batch was not embedded again
    assert sum(c.count for c in result.committed) == len(insights) and outbox.entries() == []
    assert not list((outbox.path / "submissions").glob("*.json"))  # the record is closed once all is committed
    assert ("committing", 0, len(planned)) in stages
