"""Sync on a real Anvil: only accepted, verified batches reach the library; reruns, crashes and
revocations leave it consistent with the chain."""

from __future__ import annotations

import pytest
from conftest import advance_time, deploy_dao

import dso.workflows.sync as sync_module
from dso.edges.chain import Status
from dso.edges.datasets import gsm8k_insights
from dso.edges.embed import load_embedder
from dso.edges.ipfs import LocalStore, cid_from_bytes, cid_of, cid_to_bytes
from dso.errors import DsoError
from dso.workflows.library import Library
from dso.workflows.publish import prepare_batch
from dso.workflows.sync import sync


@pytest.fixture(scope="module")
def embedder():
    return load_embedder("minilm")


def publish(dao, store, embedder, node_index: int, offset: int, count: int = 6, pin: bool = True, style: int = 0) -> bytes:
    """A node submits GSM8K insights offset..offset+count (worded in `style`); returns the batch root."""
    node = dao.nodes[node_index]
    document = prepare_batch(gsm8k_insights(count, offset=offset, style=style), node.address, embedder, now=1_763_000_000 + offset + style)
    data = document.to_bytes()
    cid = store.put(data) if pin else cid_of(data)
    dao.registry.submit_batch(node, document.header.root, cid_to_bytes(cid), document.header.count, document.header.schema_id)
    return document.header.root


def decide(dao, root: bytes, approve: bool) -> None:
    for member in dao.members:
        dao.registry.vote_on_batch(member, root, approve)
    assert dao.registry.finalize_batch(dao.deployer, root).status == (Status.ACCEPTED if approve else Status.REJECTED)


@pytest.fixture
def world(w3, accounts, embedder, tmp_path):
    dao = deploy_dao(w3, accounts, n_members=3, n_nodes=3)
    store = LocalStore(tmp_path / "blocks")
    library = Library(tmp_path / "library.sqlite", embedder)
    yield dao, store, library, tmp_path / "sync.json"
    library.close()


def test_only_accepted_and_verified_batches_are_loaded_and_reruns_change_nothing(world, embedder):
    dao, store, library, state = world
    good = publish(dao, store, embedder, 0, offset=0)
    rejected = publish(dao, store, embedder, 1, offset=100)
    tampered = publish(dao, store, embedder, 2, offset=200)
    missing = publish(dao, store, embedder, 0, offset=300, pin=False)
    for root, approve in ((good, True), (rejected, False), (tampered, True), (missing, True)):
        decide(dao, root, approve)
    events = dao.registry.events(0).events
    tampered_path = store.object_path(next(cid_from_bytes(e.args["cid"]) for e in events if e.name == "BatchSubmitted" and e.args["root"] == tampered))
    raw = bytearray(tampered_path.read_bytes())
    raw[-40] ^= 0x01
    tampered_path.write_bytes(bytes(raw))

    report = sync(dao.registry, store, library, state)
    assert report.loaded == [good.hex()]
    assert report.invalid == {} and "CidMismatch" in report.unavailable[tampered.hex()]  # the store's fault: retried
    assert "ContentNotFound" in report.unavailable[missing.hex()] and len(report.unavailable) == 2
    assert library.report_count() == 6 == report.reports_added

    again = sync(dao.registry, store, library, state)
    assert (again.loaded, again.invalid, library.report_count()) == ([], {}, 6)

    # the missing document appears on IPFS later: the next sync picks it up
    document = prepare_batch(gsm8k_insights(6, offset=300), dao.nodes[0].address, embedder, now=1_763_000_300)
    store.put(document.to_bytes())
    later = sync(dao.registry, store, library, state)
    assert later.loaded == [missing.hex()] and library.report_count() == 12

    # the tampered block is restored: its batch was never refused for good, so it loads now
    raw[-40] ^= 0x01
    tampered_path.write_bytes(bytes(raw))
    restored = sync(dao.registry, store, library, state)
    assert restored.loaded == [tampered.hex()] and library.report_count() == 18


def test_a_sync_killed_before_its_checkpoint_is_rerun_without_duplicates(world, embedder, monkeypatch):
    dao, store, library, state = world
    roots = [publish(dao, store, embedder, i, offset=400 + 10 * i) for i in range(3)]
    for root in roots:
        decide(dao, root, True)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed before the checkpoint was written")

    monkeypatch.setattr(sync_module, "atomic_write_text", crash)
    with pytest.raises(KeyboardInterrupt):
        sync(dao.registry, store, library, state)
    monkeypatch.undo()
    assert not state.exists() and library.report_count() == 18
    report = sync(dao.registry, store, library, state)
    assert sorted(report.loaded) == sorted(r.hex() for r in roots) and report.reports_added == 0
    assert library.report_count() == 18


def test_revoked_batches_leave_the_library(world, embedder, w3):
    dao, store, library, state = world
    keep, revoke = publish(dao, store, embedder, 0, offset=500), publish(dao, store, embedder, 1, offset=600)
    decide(dao, keep, True)
    decide(dao, revoke, True)
    sync(dao.registry, store, library, state)
    assert library.report_count() == 12
    proposal = dao.registry.propose_revoke_batch(dao.members[0], revoke).proposal_id
    for member in dao.members:
        dao.registry.vote_on_proposal(member, proposal, True)
    dao.registry.finalize_proposal(dao.deployer, proposal)
    report = sync(dao.registry, store, library, state)
    assert report.revoked == [revoke.hex()] and library.report_count() == 6


def test_checkpoint_of_another_registry_or_corrupt_is_a_clear_error(world, embedder, w3, accounts):
    dao, store, library, state = world
    sync(dao.registry, store, library, state)
    other = deploy_dao(w3, accounts)
    with pytest.raises(DsoError, match="belongs to registry"):
        sync(other.registry, store, library, state)
    state.write_text("{broken")
    with pytest.raises(DsoError, match="corrupt"):
        sync(dao.registry, store, library, state)


def test_pending_batches_wait_for_their_decision(world, embedder, w3):
    dao, store, library, state = world
    root = publish(dao, store, embedder, 0, offset=700)
    assert sync(dao.registry, store, library, state).loaded == [] and library.report_count() == 0
    advance_time(w3, 3_600)
    dao.registry.finalize_batch(dao.deployer, root)  # no votes: rejected at the deadline
    assert sync(dao.registry, store, library, state).loaded == [] and library.report_count() == 0


def test_lessons_three_admitted_nodes_report_are_accepted_and_a_removed_node_loses_its_voice(world, embedder):
    dao, store, library, state = world
    roots = [publish(dao, store, embedder, i, offset=800, style=i) for i in range(3)]
    for root in roots:
        decide(dao, root, True)
    report = sync(dao.registry, store, library, state)
    assert report.reports_added == 18 and report.aggregation.active_nodes == 3
    assert (report.aggregation.accepted, report.aggregation.pending) == (6, 0) and len(library) == 6
    assert {h.support for h in library.search("money", k=6)} == {3}

    proposal = dao.registry.propose_remove_node(dao.members[0], dao.nodes[2].address).proposal_id
    for member in dao.members:
        dao.registry.vote_on_proposal(member, proposal, True)
    dao.registry.finalize_proposal(dao.deployer, proposal)
    after = sync(dao.registry, store, library, state)
    assert after.loaded == [] and (after.aggregation.accepted, after.aggregation.pending) == (0, 6)
    assert len(library) == 0 and library.report_count() == 18  # the reports stay; node 3's voice does not


def test_an_experience_revoked_by_leaf_challenge_leaves_the_library_and_never_returns(world, embedder):
    from dso.core.batch import parse_document
    from dso.core.merkle import prove_inclusion

    dao, store, library, state = world
    roots = [publish(dao, store, embedder, i, offset=900, style=i) for i in range(3)]
    for root in roots:
        decide(dao, root, True)
    assert sync(dao.registry, store, library, state).aggregation.accepted == 6
    # A member proves leaf 2 of node 1's batch on chain; the DAO revokes that single experience.
    events = dao.registry.events(0).events
    cid = next(cid_from_bytes(e.args["cid"]) for e in events if e.name == "BatchSubmitted" and e.args["root"] == roots[0])
    document = parse_document(store.get(cid))
    proof = prove_inclusion(document.leaves, 2)
    proposal = dao.registry.propose_revoke_experience(dao.members[0], roots[0], 2, document.leaves[2], proof.path).proposal_id
    for member in dao.members:
        dao.registry.vote_on_proposal(member, proposal, True)
    dao.registry.finalize_proposal(dao.deployer, proposal)
    assert dao.registry.is_experience_revoked(roots[0], 2)

    report = sync(dao.registry, store, library, state)
    assert report.revoked_experiences == 1 and library.report_count() == 17
    # the lesson lost node 1's voice: two nodes remain, below the 3-node bar
    assert (report.aggregation.accepted, report.aggregation.pending) == (5, 1)
    assert all(h.experience.text != document.experiences[2].text for h in library.search(document.experiences[2].text, k=6))

    # a client syncing from scratch never stores it at all
    with Library(state.parent / "fresh.sqlite", embedder) as fresh:
        again = sync(dao.registry, store, fresh, state.parent / "fresh.json")
        assert again.revoked_experiences == 0 and fresh.report_count() == 17 and again.aggregation.accepted == 5
