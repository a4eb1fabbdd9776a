"""`castBatchVotes`: several batch votes in one transaction, each with an optional reason kept in a
`BatchVoteReason` event; all or nothing, with the same rules as `voteOnBatch`."""

from __future__ import annotations

import pytest
from conftest import CID, SCHEMA, root_of
from web3.exceptions import ContractCustomError

from dso.edges.chain import Status
from dso.errors import ContractRevert
from dso.workflows.review import batch_votes


def submit(dao, label: str) -> bytes:
    return dao.registry.submit_batch(dao.nodes[0], root_of(label), CID, 4, SCHEMA).root


def revert_name(dao, member, roots, votes, reasons) -> str:
    with pytest.raises(ContractCustomError) as caught:
        dao.registry.contract.functions.castBatchVotes(roots, votes, reasons).call({"from": member.address})
    return dao.registry.errors.decode(caught.value.data).name


def test_castBatchVotes_casts_every_vote_and_emits_each_reason(dao):
    a, b, c = (submit(dao, f"reasons-{n}") for n in range(3))
    tx = dao.registry.cast_batch_votes(dao.members[0], [(a, True, "Verified every lesson; all general."), (b, False, ""), (c, True, "重复的教训 ok")])
    assert tx.gas_used > 0
    assert [(dao.registry.batch(r).tally.yes, dao.registry.batch(r).tally.no) for r in (a, b, c)] == [(1, 0), (0, 1), (1, 0)]
    votes = {root: batch_votes(dao.registry, root) for root in (a, b, c)}
    assert [(v.voter, v.support, v.reason) for v in votes[a]] == [(dao.members[0].address, True, "Verified every lesson; all general.")]
    assert [(v.support, v.reason) for v in votes[b]] == [(False, None)]
    assert votes[c][0].reason == "重复的教训 ok"
    dao.registry.vote_on_batch(dao.members[1], a, True)  # the single vote still works beside it
    assert dao.registry.finalize_batch(dao.deployer, a).status == Status.ACCEPTED


def test_castBatchVotes_is_all_or_nothing_and_names_the_refused_batch(dao):
    a, b = submit(dao, "atomic-a"), submit(dao, "atomic-b")
    dao.registry.vote_on_batch(dao.members[0], b, True)
    with pytest.raises(ContractRevert) as refused:
        dao.registry.cast_batch_votes(dao.members[0], [(a, True, ""), (b, True, "")])
    assert refused.value.name == "AlreadyVoted" and f"vote on batch {b.hex()[:16]} refused" in str(refused.value)
    assert dao.registry.batch(a).tally.yes == 0  # the first vote was not kept


def test_castBatchVotes_refuses_a_repeated_root_with_AlreadyVoted(dao):
    a = submit(dao, "repeat")
    assert revert_name(dao, dao.members[0], [a, a], [True, True], ["", ""]) == "AlreadyVoted"


def test_castBatchVotes_refuses_lists_that_differ_with_VoteListsDiffer(dao):
    a = submit(dao, "differ")
    assert revert_name(dao, dao.members[0], [a], [True, False], [""]) == "VoteListsDiffer"
    assert revert_name(dao, dao.members[0], [a], [True], []) == "VoteListsDiffer"


def test_castBatchVotes_refuses_no_votes_or_more_than_200_with_VoteCountOutOfRange(dao):
    assert revert_name(dao, dao.members[0], [], [], []) == "VoteCountOutOfRange"
    roots = [root_of(f"many-{n}") for n in range(201)]
    assert revert_name(dao, dao.members[0], roots, [True] * 201, [""] * 201) == "VoteCountOutOfRange"


def test_castBatchVotes_refuses_a_reason_over_1000_bytes_with_ReasonTooLong(dao):
    a = submit(dao, "long")
    with pytest.raises(ContractRevert) as refused:
        dao.registry.cast_batch_votes(dao.members[0], [(a, True, "é" * 501)])  # 1,002 UTF-8 bytes
    assert refused.value.name == "ReasonTooLong" and refused.value.args_ == (0, 1002, 1000)
    dao.registry.cast_batch_votes(dao.members[0], [(a, True, "é" * 500)])  # exactly 1,000 bytes
    assert batch_votes(dao.registry, a)[0].reason == "é" * 500


def test_castBatchVotes_keeps_voteOnBatch_rules_for_outsiders_and_unknown_batches(dao):
    a = submit(dao, "rules")
    assert revert_name(dao, dao.outsiders[0], [a], [True], [""]) == "CallerIsNotAMember"
    assert revert_name(dao, dao.members[0], [root_of("nowhere")], [True], [""]) == "UnknownBatch"
