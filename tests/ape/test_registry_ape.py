"""ExperienceRegistry under ape: deploy, submit, vote, finalize, and the custom-error reverts.

Setup (conftest.py): 3 members, 2 nodes, votingPeriod 3600 s, quorumBps 5000 (quorum 2 of 3).
"""

import ape
from conftest import make_root

VOTING_PERIOD = 3600
QUORUM_BPS = 5000
PENDING, ACCEPTED, REJECTED = 1, 2, 3  # ExperienceRegistry.Status


def assert_error_inputs(revert_info, **expected):
    """ape.reverts(**inputs) skips names the error does not have; check the names exist too."""
    inputs = revert_info.value.inputs
    for name, value in expected.items():
        assert name in inputs, f"error has no input {name!r}: {inputs}"
        assert inputs[name] == value


def test_deploy_seeds_members_and_nodes(registry, members, nodes, outsider):
    assert registry.votingPeriod() == VOTING_PERIOD
    assert registry.quorumBps() == QUORUM_BPS
    assert registry.memberCount() == 3
    assert registry.activeNodeCount() == 2
    assert all(registry.isMember(m) for m in members)
    assert not registry.isMember(outsider)
    assert [registry.node(n).id for n in nodes] == [1, 2]
    assert registry.quorumFor(3) == 2


def test_submit_batch_emits_event_and_is_pending(registry, nodes, cid, schema, root):
    receipt = registry.submitBatch(root, cid, 3, schema, sender=nodes[0])

    events = receipt.events.filter(registry.BatchSubmitted)
    assert len(events) == 1
    event = events[0]
    assert event.root == root
    assert event.nodeId == 1
    assert event["schema"] == schema  # `event.schema` is pydantic's BaseModel.schema()
    assert event.cid == cid
    assert event.count == 3
    assert registry.nodeAddress(event.nodeId) == nodes[0].address

    view = registry.batch(root)
    assert view.root == root
    assert view.nodeId == 1
    assert view.count == 3
    assert view.tally.status == PENDING
    assert (view.tally.yes, view.tally.no) == (0, 0)
    assert view.tally.electorate == 3
    assert view.tally.deadline == receipt.timestamp + VOTING_PERIOD
    assert registry.batchCount() == 1


def test_duplicate_root_reverts(registry, nodes, submitted, cid, schema):
    root, _ = submitted
    # Also from the other node: a root is accepted once, whoever sends it.
    with ape.reverts(registry.BatchAlreadySubmitted, root=root) as info:
        registry.submitBatch(root, cid, 1, schema, sender=nodes[1])
    assert_error_inputs(info, root=root)
    assert registry.batchCount() == 1


def test_non_node_submit_reverts(registry, outsider, members, root, cid, schema):
    for caller in (outsider, members[0]):  # members vote; only nodes submit
        with ape.reverts(registry.CallerIsNotAnAdmittedNode) as info:
            registry.submitBatch(root, cid, 1, schema, sender=caller)
        assert_error_inputs(info, caller=caller.address)
    assert registry.batch(root).tally.status == 0


def test_two_yes_votes_then_finalize_accepts(registry, members, outsider, submitted):
    root, _ = submitted
    registry.voteOnBatch(root, True, sender=members[0])
    registry.voteOnBatch(root, True, sender=members[1])

    # 2 of 3 yes: the third vote cannot change the outcome, so anyone may finalize before the deadline.
    receipt = registry.finalizeBatch(root, sender=outsider)

    finalized = receipt.events.filter(registry.BatchFinalized)
    assert len(finalized) == 1
    assert finalized[0].status == ACCEPTED
    assert (finalized[0].yes, finalized[0].no, finalized[0].electorate) == (2, 0, 3)
    tally = registry.batch(root).tally
    assert tally.status == ACCEPTED
    assert (tally.yes, tally.no) == (2, 0)


def test_member_voting_twice_reverts(registry, members, submitted):
    root, _ = submitted
    registry.voteOnBatch(root, True, sender=members[0])
    assert registry.hasVotedOnBatch(root, members[0])

    # Changing one's mind is a second vote too.
    with ape.reverts(registry.AlreadyVoted, voter=members[0].address) as info:
        registry.voteOnBatch(root, False, sender=members[0])
    assert_error_inputs(info, voter=members[0].address)
    assert (registry.batch(root).tally.yes, registry.batch(root).tally.no) == (1, 0)


def test_finalize_before_decidable_reverts(registry, members, submitted):
    root, receipt = submitted
    deadline = receipt.timestamp + VOTING_PERIOD
    # One yes of 3: below quorum, but the 2 outstanding votes could still accept or reject it.
    registry.voteOnBatch(root, True, sender=members[0])

    with ape.reverts(registry.VotingStillOpen, deadline=deadline) as info:
        registry.finalizeBatch(root, sender=members[1])
    assert_error_inputs(info, deadline=deadline)
    assert registry.batch(root).tally.status == PENDING


def test_deadline_without_quorum_rejects(chain, registry, members, submitted):
    root, receipt = submitted
    registry.voteOnBatch(root, True, sender=members[0])

    chain.pending_timestamp = receipt.timestamp + VOTING_PERIOD
    finalized = registry.finalizeBatch(root, sender=members[1]).events.filter(registry.BatchFinalized)

    assert finalized[0].status == REJECTED  # 1 vote < quorum of 2 once voting has closed
    assert registry.batch(root).tally.status == REJECTED


def test_leaf_challenge_revokes_one_experience(registry, members, nodes, cid, schema):
    from dso.core.merkle import leaf_hash, merkle_root, prove_inclusion

    leaves = [b"experience a", b"experience b", b"experience c"]
    root = merkle_root(leaves)
    registry.submitBatch(root, cid, len(leaves), schema, sender=nodes[0])
    registry.voteOnBatch(root, True, sender=members[0])
    registry.voteOnBatch(root, True, sender=members[1])
    registry.finalizeBatch(root, sender=members[0])
    path = list(prove_inclusion(leaves, 1).path)

    with ape.reverts(registry.InvalidInclusionProof):
        registry.proposeRevokeLeaf(root, 1, b"experience z", path, sender=members[0])
    receipt = registry.proposeRevokeLeaf(root, 1, leaves[1], path, sender=members[0])
    [proposed] = receipt.events.filter(registry.ExperienceRevocationProposed)
    assert (proposed.root, proposed.leafIndex, proposed.leafHash) == (root, 1, leaf_hash(leaves[1]))

    registry.voteOnProposal(proposed.proposalId, True, sender=members[0])
    registry.voteOnProposal(proposed.proposalId, True, sender=members[1])
    [revoked] = registry.finalizeProposal(proposed.proposalId, sender=members[2]).events.filter(registry.ExperienceRevoked)
    assert (revoked.root, revoked.leafIndex, revoked.proposalId) == (root, 1, proposed.proposalId)
    assert [registry.isRevokedLeaf(root, i) for i in range(3)] == [False, True, False]


def test_second_challenge_of_a_pending_leaf_reverts_naming_it(registry, members, nodes, cid, schema):
    from dso.core.merkle import merkle_root, prove_inclusion

    leaves = [b"experience a", b"experience b"]
    root = merkle_root(leaves)
    registry.submitBatch(root, cid, len(leaves), schema, sender=nodes[0])
    registry.voteOnBatch(root, True, sender=members[0])
    registry.voteOnBatch(root, True, sender=members[1])
    registry.finalizeBatch(root, sender=members[0])
    path = list(prove_inclusion(leaves, 0).path)
    [first] = registry.proposeRevokeLeaf(root, 0, leaves[0], path, sender=members[0]).events.filter(registry.ExperienceRevocationProposed)

    with ape.reverts(registry.LeafChallengePending) as info:
        registry.proposeRevokeLeaf(root, 0, leaves[0], path, sender=members[1])
    assert_error_inputs(info, root=root, leafIndex=0, proposalId=first.proposalId)

    registry.voteOnProposal(first.proposalId, False, sender=members[0])
    registry.voteOnProposal(first.proposalId, False, sender=members[1])
    registry.finalizeProposal(first.proposalId, sender=members[2])  # rejected: the leaf may be challenged again
    [again] = registry.proposeRevokeLeaf(root, 0, leaves[0], path, sender=members[1]).events.filter(registry.ExperienceRevocationProposed)
    assert again.proposalId == first.proposalId + 1


def test_voting_parameter_change_applies_to_later_batches_only(registry, members, nodes, cid, schema):
    before = registry.submitBatch(make_root("before"), cid, 1, schema, sender=nodes[0])
    receipt = registry.proposeVotingParameterChange(2 * VOTING_PERIOD, 10_000, sender=members[0])
    [proposed] = receipt.events.filter(registry.VotingParametersProposed)
    assert (proposed.votingPeriod, proposed.quorumBps) == (2 * VOTING_PERIOD, 10_000)
    with ape.reverts(registry.InvalidQuorumBps) as info:
        registry.proposeVotingParameterChange(VOTING_PERIOD, 10_001, sender=members[0])
    assert_error_inputs(info, quorumBps=10_001, minimum=1, maximum=10_000)

    registry.voteOnProposal(proposed.proposalId, True, sender=members[0])
    registry.voteOnProposal(proposed.proposalId, True, sender=members[1])
    [changed] = registry.finalizeProposal(proposed.proposalId, sender=members[2]).events.filter(registry.VotingParametersChanged)
    assert (changed.votingPeriod, changed.quorumBps, changed.clock) == (2 * VOTING_PERIOD, 10_000, registry.membershipClock())
    assert (registry.votingPeriod(), registry.quorumBps()) == (2 * VOTING_PERIOD, 10_000)

    after = registry.submitBatch(make_root("after"), cid, 1, schema, sender=nodes[0])
    old, new = registry.batch(make_root("before")).tally, registry.batch(make_root("after")).tally
    assert (old.deadline, old.quorumBps) == (before.timestamp + VOTING_PERIOD, QUORUM_BPS)
    assert (new.deadline, new.quorumBps) == (after.timestamp + 2 * VOTING_PERIOD, 10_000)


def test_cast_batch_votes_emits_each_vote_and_reason(registry, members, outsider, submitted):
    root, _ = submitted
    receipt = registry.castBatchVotes([root], [True], ["checked every lesson"], sender=members[0])
    assert [(e.voter, e.support) for e in receipt.events.filter(registry.BatchVoteCast)] == [(members[0].address, True)]
    assert [e.reason for e in receipt.events.filter(registry.BatchVoteReason)] == ["checked every lesson"]
    with ape.reverts(registry.ReasonTooLong) as info:
        registry.castBatchVotes([root], [False], ["x" * 1001], sender=members[1])
    assert_error_inputs(info, index=0, length=1001, maxLength=1000)
