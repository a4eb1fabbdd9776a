"""Reputation from the chain's record: bounded, low but not zero for new nodes, the same on every
client whatever order it read the events in, time-based so that volume cannot farm it, and quick to
fall when the DAO rejects or revokes a node's work."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dso.core.reputation import (
    EPOCH_BLOCKS,
    GOOD_EPOCHS_CAP,
    NEW_NODE_WEIGHT,
    WEIGHT_QUANTUM,
    BatchOutcome,
    NodeRecord,
    node_records,
    node_weight,
    reputation_weights,
)
from dso.edges.chain import RegistryEvent, Status
from dso.errors import AggregationError
from dso.workflows.sync import BatchRecord, SyncState, apply_events, node_weights

NOW = 100 * EPOCH_BLOCKS


def epochs(n: int) -> int:
    return n * EPOCH_BLOCKS


records = st.builds(
    NodeRecord,
    admitted_block=st.integers(0, NOW),
    accepted_epochs=st.integers(0, 200),
    rejected_batches=st.integers(0, 50),
    revoked_batches=st.integers(0, 20),
    revoked_leaves=st.integers(0, 100),
)


@settings(max_examples=300, deadline=None)
@given(records, st.integers(0, 2 * NOW))
def test_every_weight_is_at_least_the_new_node_weight_below_the_cap_and_on_the_quantum_grid(record, as_of):
    weight = node_weight(record, as_of)
    assert float(NEW_NODE_WEIGHT) <= weight < 1
    assert Fraction(weight) % WEIGHT_QUANTUM == 0


def test_a_node_admitted_this_epoch_weighs_the_new_node_weight_not_zero():
    assert node_weight(NodeRecord(admitted_block=NOW), NOW) == float(NEW_NODE_WEIGHT) == 1 / 16
    assert node_weight(NodeRecord(admitted_block=NOW - 1, accepted_epochs=1), NOW + EPOCH_BLOCKS - 1) == 1 / 16


def test_weight_is_the_documented_rational_function():
    # 14 epochs (the half-life): tenure 1/2; a clean record: standing 1. 1/16 + 15/16 x 1/2 = 17/32.
    assert node_weight(NodeRecord(0, accepted_epochs=5), epochs(14)) == 17 / 32
    # 28 epochs: tenure 4/5; one rejected batch against 3 good epochs: standing 4/5; raw 1/16 + 15/16 x 16/25 = 0.6625,
    # rounded down to 42/64.
    assert node_weight(NodeRecord(0, accepted_epochs=3, rejected_batches=1), epochs(28)) == 42 / 64


@settings(max_examples=200, deadline=None)
@given(records, st.integers(0, NOW), st.integers(1, 50))
def test_weight_never_falls_with_time_and_never_rises_with_bad_evidence(record, as_of, later):
    assert node_weight(record, as_of + later * EPOCH_BLOCKS) >= node_weight(record, as_of)
    worse = NodeRecord(record.admitted_block, record.accepted_epochs, record.rejected_batches + 1, record.revoked_batches, record.revoked_leaves + 1)
    assert node_weight(worse, as_of) <= node_weight(record, as_of)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["accepted", "rejected", "revoked"]), st.integers(0, NOW)), max_size=40),
       st.randoms(use_true_random=False))
def test_records_and_weights_do_not_depend_on_the_order_events_were_read_in(outcomes, random):
    admitted = {node: epochs(node) for node in range(6)}
    batches = [BatchOutcome(node, status, block) for node, status, block in outcomes]
    shuffled = list(batches)
    random.shuffle(shuffled)
    assert node_records(admitted, batches, {1: 2}) == node_records(admitted, shuffled, {1: 2})
    assert reputation_weights(node_records(admitted, batches), NOW) == reputation_weights(node_records(admitted, shuffled), NOW)


def test_many_tiny_batches_in_one_epoch_count_as_one_epoch_of_work():
    # Reputation farming: 500 one-experience batches accepted within three epochs of admission.
    farm = [BatchOutcome(7, "accepted", epochs(97) + k * 3 * EPOCH_BLOCKS // 500) for k in range(500)]
    steady = [BatchOutcome(8, "accepted", epochs(97) + k * EPOCH_BLOCKS) for k in range(3)]
    records = node_records({7: epochs(97), 8: epochs(97)}, farm + steady)
    assert records[7].accepted_epochs == records[8].accepted_epochs == 3
    weights = reputation_weights(records, NOW)
    assert weights[7] == weights[8] < 0.1
    # Time, not volume: the same node after two months with no more work than those three epochs.
    assert node_weight(records[7], epochs(97 + 60)) > 0.8


def test_a_slow_burn_node_is_never_stronger_than_an_honest_node_with_as_long_a_record():
    honest = NodeRecord(0, accepted_epochs=40)
    slow_burn = NodeRecord(0, accepted_epochs=400)  # behaved ten times longer: the good evidence is capped
    assert node_weight(slow_burn, NOW) == node_weight(honest, NOW) == node_weight(NodeRecord(0, GOOD_EPOCHS_CAP), NOW)


def test_a_long_clean_record_cannot_absorb_revoked_experiences():
    caught = NodeRecord(0, accepted_epochs=400, rejected_batches=1, revoked_leaves=10)
    assert node_weight(caught, NOW) < 0.4
    assert node_weight(NodeRecord(0, accepted_epochs=400, revoked_batches=3), NOW) <= 0.5


def test_records_of_nodes_not_admitted_are_ignored_and_unknown_statuses_refused():
    records = node_records({1: 0}, [BatchOutcome(2, "accepted", 5), BatchOutcome(1, "rejected", 5)], {2: 3})
    assert records == {1: NodeRecord(0, 0, 1, 0, 0)}
    with pytest.raises(AggregationError, match="accepted, rejected or revoked"):
        node_records({1: 0}, [BatchOutcome(1, "pending", 5)])


@pytest.mark.parametrize("bad", [{"admitted_block": -1}, {"accepted_epochs": True}, {"revoked_leaves": 1.5}])
def test_malformed_records_and_blocks_are_refused(bad):
    fields = {"admitted_block": 0} | bad
    with pytest.raises(AggregationError):
        NodeRecord(**fields)
    with pytest.raises(AggregationError, match="as_of_block"):
        node_weight(NodeRecord(0), -1)


def event(name: str, block: int, **args) -> RegistryEvent:
    return RegistryEvent(name, args, block, "0x" + "00" * 32, 0)


def test_sync_state_folds_admission_and_decision_blocks_and_weighs_every_admitted_node(tmp_path):
    root_a, root_b, root_c = bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32
    state = SyncState("0xregistry", 0)
    state.batches = {r.hex(): BatchRecord("cid", 4, "00", node) for r, node in ((root_a, 1), (root_b, 1), (root_c, 2))}
    apply_events(state, [
        event("NodeAdmitted", 1, nodeId=1, node="0x" + "11" * 20),
        event("NodeAdmitted", epochs(50), nodeId=2, node="0x" + "22" * 20),
        event("BatchFinalized", epochs(3), root=root_a, status=Status.ACCEPTED),
        event("BatchFinalized", epochs(4), root=root_b, status=Status.REJECTED),
        event("BatchFinalized", epochs(51), root=root_c, status=Status.ACCEPTED),
        event("ExperienceRevoked", epochs(52), root=root_c, leafIndex=0),
    ])
    assert state.admitted_blocks == {"1": 1, "2": epochs(50)}
    assert state.batches[root_a.hex()].decided_block == epochs(3)
    weights = node_weights(state, NOW)
    assert weights == reputation_weights({1: NodeRecord(1, 1, 1, 0, 0), 2: NodeRecord(epochs(50), 1, 0, 0, 1)}, NOW)
    assert weights[1] > weights[2] > 1 / 16
    # The checkpoint keeps the blocks: a client that restarts weighs every node the same.
    (tmp_path / "sync.json").write_text(state.to_json())
    assert node_weights(SyncState.load(tmp_path / "sync.json", "0xregistry", 0), NOW) == weights
