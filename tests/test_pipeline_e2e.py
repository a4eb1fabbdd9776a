"""The whole path on the devnet: real insights, real model and codec, a batch pinned to the real
IPFS node and committed on a real Anvil, then fetched by a client that trusts only the chain."""

from __future__ import annotations

import pytest
from conftest import deploy_dao

from dso.core.batch import BatchError, build_batch, verify_document
from dso.core.codec import baseline_id, get_codec, load_baseline
from dso.core.experience import Experience
from dso.core.merkle import prove_inclusion, verify_inclusion
from dso.edges.chain import Status
from dso.edges.datasets import gsm8k_insights
from dso.edges.embed import load_embedder
from dso.edges.ipfs import KuboClient, LocalStore, cid_from_bytes, cid_to_bytes
from dso.errors import CidMismatch
from dso.workflows.library import Library, Source


@pytest.fixture(scope="module")
def document(accounts):
    """16 GSM8K insights from node 1 (accounts[6]), embedded and coded with the defaults."""
    embedder = load_embedder("minilm")
    insights = gsm8k_insights(16)
    codes = get_codec("bitdelta-1", embedder.dim).encode(embedder.embed([i.text for i in insights]))
    node = accounts[6]
    experiences = [
        Experience.create(i.text, i.domain, i.confidence, "all-MiniLM-L6-v2", "bitdelta-1", bytes(c), node.address, 1_763_000_000 + n)
        for n, (i, c) in enumerate(zip(insights, codes))
    ]
    return build_batch(experiences, dim=embedder.dim, baseline=bytes.fromhex(baseline_id(load_baseline())), created_at=1_763_000_100)


def test_batch_travels_through_ipfs_and_the_chain_and_lands_in_the_library(w3, accounts, ipfs_api, document, tmp_path):
    dao = deploy_dao(w3, accounts, n_members=3, n_nodes=1)
    data = document.to_bytes()
    with KuboClient(ipfs_api) as store:
        cid = store.put(data)
        submitted = dao.registry.submit_batch(dao.nodes[0], document.header.root, cid_to_bytes(cid), document.header.count, document.header.schema_id)
        for member in dao.members[:2]:
            dao.registry.vote_on_batch(member, document.header.root, True)
        assert dao.registry.finalize_batch(dao.deployer, document.header.root).status == Status.ACCEPTED

        # A client: everything below comes from the chain and IPFS, nothing from the node.
        [event] = [e for e in dao.registry.events(submitted.tx.block_number).events if e.name == "BatchSubmitted"]
        onchain = dao.registry.batch(event.args["root"])
        assert onchain.tally.status == Status.ACCEPTED
        fetched = store.get(cid_from_bytes(event.args["cid"]))
    verified = verify_document(fetched, event.args["root"], onchain.count, event.args["schema"])
    assert verified == document

    proof = prove_inclusion(verified.leaves, 5)
    verify_inclusion(proof, event.args["root"], verified.leaves[5], tree_size=onchain.count)

    with Library(tmp_path / "agent.sqlite", load_embedder("minilm")) as library:
        source = Source(event.args["root"], event.args["nodeId"])
        assert library.add_reports(list(verified.experiences), verified.header.baseline, source) == onchain.count
        summary = library.aggregate({event.args["nodeId"]})
        # one node alone never suffices: every experience waits for support from two more nodes
        assert (summary.accepted, summary.pending, len(library)) == (0, onchain.count, 0)
        assert {p.support for p in library.pending()} == {1}


def test_a_document_tampered_on_disk_never_reaches_the_library(tmp_path, document):
    store = LocalStore(tmp_path / "blocks")
    cid = store.put(document.to_bytes())
    path = store.object_path(cid)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CidMismatch):
        store.get(cid)
    with pytest.raises(BatchError):
        verify_document(bytes(raw), document.header.root, document.header.count, document.header.schema_id)
