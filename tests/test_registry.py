"""ExperienceRegistry on a real Anvil: every revert path by its custom error, the decision rule's
boundaries, the snapshot rule, signatures, pagination and events."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import pytest
from conftest import CID, SCHEMA, VOTING_PERIOD, Dao, advance_time, deploy_dao, funded_account, root_of
from eth_account import Account
from eth_account.messages import encode_typed_data
from web3 import Web3

from dso.core.merkle import InclusionProof, compute_root, leaf_hash, merkle_root, node_hash, prove_inclusion
from dso.edges.chain import ProposalKind, Registry, SignedSubmission, Status
from dso.errors import ContractRevert

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MIN_PERIOD, MAX_PERIOD = 60, 30 * 24 * 3600  # the contract's voting-period bounds


@contextmanager
def reverts(name: str) -> Iterator[None]:
    """Expect the registry to revert with custom error `name`."""
    with pytest.raises(ContractRevert) as info:
        yield
    assert info.value.name == name, f"expected {name}, got {info.value}"


def submit(dao: Dao, label: str | int = "a", node: int = 0, count: int = 4) -> bytes:
    return dao.registry.submit_batch(dao.nodes[node], root_of(label), CID, count, SCHEMA).root


def far_deadline(w3: Web3) -> int:
    return w3.eth.get_block("latest")["timestamp"] + 3_600


# ---------------------------------------------------------------- deployment


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"voting_period": 0}, "InvalidVotingPeriod"),
        ({"voting_period": MIN_PERIOD - 1}, "InvalidVotingPeriod"),
        ({"voting_period": MAX_PERIOD + 1}, "InvalidVotingPeriod"),
        ({"quorum_bps": 0}, "InvalidQuorumBps"),
        ({"quorum_bps": 10_001}, "InvalidQuorumBps"),
        ({"n_members": 0}, "NoInitialMembers"),
    ],
)
def test_deploy_rejects_bad_parameters(w3, accounts, kwargs, error):
    with reverts(error):
        deploy_dao(w3, accounts, **kwargs)


@pytest.mark.parametrize(("voting_period", "quorum_bps"), [(MIN_PERIOD, 1), (MAX_PERIOD, 10_000)])
def test_deploy_accepts_the_bounds_themselves_and_announces_them(w3, accounts, voting_period, quorum_bps):
    dao = deploy_dao(w3, accounts, voting_period=voting_period, quorum_bps=quorum_bps)
    params = dao.registry.parameters()
    assert (params["voting_period"], params["quorum_bps"]) == (voting_period, quorum_bps)
    [announced] = [e for e in dao.registry.events(0).events if e.name == "VotingParametersChanged"]
    assert announced.args == {"votingPeriod": voting_period, "quorumBps": quorum_bps, "clock": 0}


def test_deploy_rejects_duplicate_member_with_AlreadyAMember(w3, accounts):
    with reverts("AlreadyAMember"):
        Registry.deploy(w3, accounts[0], [accounts[1].address, accounts[1].address])


def test_deploy_rejects_duplicate_node_with_AlreadyAnAdmittedNode(w3, accounts):
    with reverts("AlreadyAnAdmittedNode"):
        Registry.deploy(w3, accounts[0], [accounts[1].address], [accounts[6].address, accounts[6].address])


def test_deploy_rejects_zero_address_member_with_ZeroAddress(w3, accounts):
    with reverts("ZeroAddress"):
        Registry.deploy(w3, accounts[0], ["0x" + "00" * 20])


def test_deploy_seeds_members_and_nodes_without_an_owner(dao):
    reg = dao.registry
    assert reg.members() == [m.address for m in dao.members]
    assert reg.nodes() == [(i + 1, n.address, True) for i, n in enumerate(dao.nodes)]
    assert not reg.is_member(dao.deployer.address)
    assert reg.node(dao.deployer.address) == (0, False)
    assert reg.parameters() == {"voting_period": VOTING_PERIOD, "quorum_bps": 5_000, "membership_clock": 3, "member_count": 3}
    assert not any(item.get("name") in {"owner", "transferOwnership"} for item in reg.abi)


# ---------------------------------------------------------------- submission


def test_submit_records_pending_batch_and_emits_everything_a_client_indexes(dao, w3):
    reg = dao.registry
    result = reg.submit_batch(dao.nodes[1], root_of("x"), CID, 16, SCHEMA)
    assert result.node_id == 2
    info = reg.batch(result.root)
    assert (info.node_id, info.count, info.tally.status, info.tally.electorate) == (2, 16, Status.PENDING, 3)
    assert info.tally.deadline == w3.eth.get_block(result.tx.block_number)["timestamp"] + VOTING_PERIOD
    [event] = [e for e in reg.events(result.tx.block_number).events if e.name == "BatchSubmitted"]
    assert event.args == {"root": root_of("x"), "nodeId": 2, "schema": SCHEMA, "cid": CID, "count": 16}


@pytest.mark.parametrize("who", ["member", "outsider", "deployer"])
def test_submit_by_non_node_reverts_with_CallerIsNotAnAdmittedNode(dao, who):
    sender = {"member": dao.members[0], "outsider": dao.outsiders[0], "deployer": dao.deployer}[who]
    with reverts("CallerIsNotAnAdmittedNode"):
        dao.registry.submit_batch(sender, root_of(1), CID, 1, SCHEMA)


def test_duplicate_root_reverts_with_BatchAlreadySubmitted_even_from_another_node(dao):
    submit(dao, "dup", node=0)
    with reverts("BatchAlreadySubmitted"):
        submit(dao, "dup", node=1)


@pytest.mark.parametrize(
    ("root", "cid", "count", "error"),
    [(bytes(32), CID, 1, "EmptyMerkleRoot"), (root_of(2), b"", 1, "EmptyCid"), (root_of(3), CID, 0, "EmptyBatch")],
)
def test_malformed_submission_reverts(dao, root, cid, count, error):
    with reverts(error):
        dao.registry.submit_batch(dao.nodes[0], root, cid, count, SCHEMA)


# ---------------------------------------------------------------- EIP-712 submission


def test_signed_submission_is_sent_by_a_relayer_and_bumps_the_nonce(dao, w3):
    reg, node = dao.registry, dao.nodes[0]
    signed = reg.sign_submission(node, root_of("sig"), CID, 8, SCHEMA, far_deadline(w3))
    result = reg.submit_signed(dao.outsiders[0], signed)
    assert result.node_id == 1
    assert reg.batch(root_of("sig")).count == 8
    assert reg.nonce(node.address) == 1


def test_replayed_signature_reverts(dao, w3):
    reg = dao.registry
    signed = reg.sign_submission(dao.nodes[0], root_of("replay"), CID, 8, SCHEMA, far_deadline(w3))
    reg.submit_signed(dao.outsiders[0], signed)
    with reverts("InvalidSignature"):  # the nonce it signed is used up
        reg.submit_signed(dao.outsiders[1], signed)


def test_expired_signature_reverts_with_SignatureExpired(dao, w3):
    reg = dao.registry
    signed = reg.sign_submission(dao.nodes[0], root_of("late"), CID, 8, SCHEMA, deadline=far_deadline(w3))
    advance_time(w3, 3_601)
    with reverts("SignatureExpired"):
        reg.submit_signed(dao.outsiders[0], signed)


def test_signature_by_non_node_reverts_with_SignerIsNotAnAdmittedNode(dao, w3):
    reg = dao.registry
    signed = reg.sign_submission(dao.outsiders[0], root_of("x"), CID, 8, SCHEMA, far_deadline(w3))
    with reverts("SignerIsNotAnAdmittedNode"):
        reg.submit_signed(dao.outsiders[1], signed)


def test_signature_by_another_key_claiming_a_node_reverts_with_InvalidSignature(dao, w3):
    reg = dao.registry
    forged = reg.sign_submission(dao.outsiders[0], root_of("x"), CID, 8, SCHEMA, far_deadline(w3), nonce=0)
    claimed = SignedSubmission(dao.nodes[0].address, *[getattr(forged, f) for f in ("root", "cid", "count", "schema", "nonce", "deadline", "signature")])
    with reverts("InvalidSignature"):
        reg.submit_signed(dao.outsiders[1], claimed)


@pytest.mark.parametrize("field", ["root", "cid", "count", "schema", "deadline"])
def test_signature_over_other_fields_reverts_with_InvalidSignature(dao, w3, field):
    reg = dao.registry
    signed = reg.sign_submission(dao.nodes[0], root_of("orig"), CID, 8, SCHEMA, far_deadline(w3))
    changed = {"root": root_of("other"), "cid": CID[:-1] + b"\xff", "count": 9, "schema": root_of("s"), "deadline": signed.deadline + 1}
    tampered = SignedSubmission(**{**signed.__dict__, field: changed[field]})
    with reverts("InvalidSignature"):
        reg.submit_signed(dao.outsiders[0], tampered)


@pytest.mark.parametrize("domain", ["chain_id", "contract"])
def test_signature_for_another_domain_reverts_with_InvalidSignature(dao, w3, domain):
    reg, node = dao.registry, dao.nodes[0]
    message = {"root": root_of("d"), "cid": CID, "count": 8, "schema": SCHEMA, "nonce": 0, "deadline": far_deadline(w3)}
    other = {"chain_id": {"chain_id": 1}, "contract": {"verifying_contract": dao.outsiders[0].address}}[domain]
    signature = node.sign_message(encode_typed_data(full_message=reg.typed_data(message, **other))).signature
    submission = SignedSubmission(node.address, message["root"], CID, 8, SCHEMA, 0, message["deadline"], bytes(signature))
    with reverts("InvalidSignature"):
        reg.submit_signed(dao.outsiders[0], submission)


def test_malleable_high_s_signature_reverts_with_InvalidSignature(dao, w3):
    reg = dao.registry
    signed = reg.sign_submission(dao.nodes[0], root_of("m"), CID, 8, SCHEMA, far_deadline(w3))
    r, s, v = signed.signature[:32], int.from_bytes(signed.signature[32:64], "big"), signed.signature[64]
    twin = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])  # the same point, the other s
    with reverts("InvalidSignature"):
        reg.submit_signed(dao.outsiders[0], SignedSubmission(**{**signed.__dict__, "signature": twin}))


@pytest.mark.parametrize("length", [0, 64, 66])
def test_signature_of_wrong_length_reverts_with_InvalidSignature(dao, w3, length):
    reg = dao.registry
    signed = reg.sign_submission(dao.nodes[0], root_of("l"), CID, 8, SCHEMA, far_deadline(w3))
    bad = (signed.signature + b"\x00")[:length]
    with reverts("InvalidSignature"):
        reg.submit_signed(dao.outsiders[0], SignedSubmission(**{**signed.__dict__, "signature": bad}))


def test_use_nonce_cancels_an_outstanding_signature(dao, w3):
    reg, node = dao.registry, dao.nodes[0]
    signed = reg.sign_submission(node, root_of("c"), CID, 8, SCHEMA, far_deadline(w3))
    reg.use_nonce(node)
    with reverts("InvalidSignature"):
        reg.submit_signed(dao.outsiders[0], signed)


# ---------------------------------------------------------------- voting


def test_vote_by_non_member_reverts_with_CallerIsNotAMember(dao):
    root = submit(dao)
    for outsider in (dao.outsiders[0], dao.nodes[0], dao.deployer):
        with reverts("CallerIsNotAMember"):
            dao.registry.vote_on_batch(outsider, root, True)


@pytest.mark.parametrize("second", [True, False])
def test_vote_twice_reverts_with_AlreadyVoted(dao, second):
    root = submit(dao)
    dao.registry.vote_on_batch(dao.members[0], root, True)
    with reverts("AlreadyVoted"):
        dao.registry.vote_on_batch(dao.members[0], root, second)
    assert dao.registry.has_voted_on_batch(root, dao.members[0].address)
    assert not dao.registry.has_voted_on_batch(root, dao.members[1].address)


def test_vote_at_or_after_deadline_reverts_with_VotingClosed(dao, w3):
    root = submit(dao)
    advance_time(w3, VOTING_PERIOD)
    with reverts("VotingClosed"):
        dao.registry.vote_on_batch(dao.members[0], root, True)


def test_vote_on_unknown_ids_reverts(dao):
    with reverts("UnknownBatch"):
        dao.registry.vote_on_batch(dao.members[0], root_of("nope"), True)
    with reverts("UnknownProposal"):
        dao.registry.vote_on_proposal(dao.members[0], 7, True)


def test_vote_after_finalize_reverts_with_NotPending(dao):
    root = submit(dao)
    dao.registry.vote_on_batch(dao.members[0], root, True)
    dao.registry.vote_on_batch(dao.members[1], root, True)
    dao.registry.finalize_batch(dao.deployer, root)
    with reverts("NotPending"):
        dao.registry.vote_on_batch(dao.members[2], root, True)


def test_a_single_upvote_does_not_accept(dao, w3):
    """The seeds' bug: their registry accepted a batch on its first upvote."""
    root = submit(dao)
    dao.registry.vote_on_batch(dao.members[0], root, True)
    with reverts("VotingStillOpen"):
        dao.registry.finalize_batch(dao.deployer, root)
    assert dao.registry.batch(root).tally.status == Status.PENDING


def test_inline_and_overflow_seats_each_vote_once(w3, accounts):
    """Seats 0..63 are recorded in the tally word, seats >= 64 in overflow words."""
    members = [funded_account(w3) for _ in range(70)]
    registry, _ = Registry.deploy(w3, accounts[0], [m.address for m in members], [accounts[6].address], quorum_bps=100)
    root = registry.submit_batch(accounts[6], root_of("seats"), CID, 1, SCHEMA).root
    for seat in (0, 63, 64, 69):
        registry.vote_on_batch(members[seat], root, True)
        with reverts("AlreadyVoted"):
            registry.vote_on_batch(members[seat], root, False)
    voted = [registry.has_voted_on_batch(root, m.address) for m in members]
    assert [i for i, v in enumerate(voted) if v] == [0, 63, 64, 69]
    assert registry.batch(root).tally.yes == 4


# ---------------------------------------------------------------- decision rule


def expected_status(yes: int, no: int, electorate: int, quorum_bps: int) -> Status:
    """The rule, restated independently: quorum ceil(electorate*bps/1e4) (>= 1) and 2/3 of cast."""
    quorum = max(1, -(-electorate * quorum_bps // 10_000))
    cast = yes + no
    return Status.ACCEPTED if cast >= quorum and 3 * yes >= 2 * cast else Status.REJECTED


@pytest.mark.parametrize(
    ("yes", "no", "quorum_bps"),
    [
        (0, 0, 5_000),  # nobody voted
        (2, 0, 5_000),  # quorum is 3 of 5: two yes are not enough
        (3, 0, 5_000),  # exactly quorum
        (2, 1, 5_000),  # exactly 2/3
        (3, 2, 5_000),  # 60% < 2/3
        (4, 1, 5_000),  # 80%
        (1, 0, 1),  # quorum rounds up to 1
        (4, 0, 10_000),  # full quorum missed by one
        (5, 0, 10_000),
    ],
)
def test_decision_rule_after_deadline_matches_quorum_and_two_thirds(w3, accounts, yes, no, quorum_bps):
    dao = deploy_dao(w3, accounts, n_members=5, quorum_bps=quorum_bps)
    root = submit(dao)
    for i in range(yes + no):
        dao.registry.vote_on_batch(dao.members[i], root, i < yes)
    advance_time(w3, VOTING_PERIOD)
    result = dao.registry.finalize_batch(dao.deployer, root)
    assert result.status == expected_status(yes, no, 5, quorum_bps)
    assert dao.registry.batch(root).tally.status == result.status


def test_finalize_early_once_acceptance_is_certain(w3, accounts):
    dao = deploy_dao(w3, accounts, n_members=5)
    root = submit(dao)
    for i in range(3):
        dao.registry.vote_on_batch(dao.members[i], root, True)
    with reverts("VotingStillOpen"):  # 3 yes, 2 outstanding: 3/5 < 2/3 if both vote no
        dao.registry.finalize_batch(dao.deployer, root)
    dao.registry.vote_on_batch(dao.members[3], root, True)  # 4 yes: 4/5 >= 2/3 whatever the last does
    assert dao.registry.finalize_batch(dao.deployer, root).status == Status.ACCEPTED


def test_finalize_early_once_rejection_is_certain(w3, accounts):
    dao = deploy_dao(w3, accounts, n_members=5)
    root = submit(dao)
    dao.registry.vote_on_batch(dao.members[0], root, False)
    with reverts("VotingStillOpen"):
        dao.registry.finalize_batch(dao.deployer, root)
    dao.registry.vote_on_batch(dao.members[1], root, False)  # best case now 3 yes of 5: < 2/3
    assert dao.registry.finalize_batch(dao.deployer, root).status == Status.REJECTED


def test_finalize_twice_reverts_with_NotPending_and_unknown_with_UnknownBatch(dao, w3):
    root = submit(dao)
    advance_time(w3, VOTING_PERIOD)
    dao.registry.finalize_batch(dao.deployer, root)
    with reverts("NotPending"):
        dao.registry.finalize_batch(dao.deployer, root)
    with reverts("UnknownBatch"):
        dao.registry.finalize_batch(dao.deployer, root_of("never"))


# ---------------------------------------------------------------- governance and the snapshot rule


def pass_proposal(dao: Dao, proposal_id: int, voters: list | None = None):
    for member in voters if voters is not None else dao.members:
        dao.registry.vote_on_proposal(member, proposal_id, True)
    return dao.registry.finalize_proposal(dao.deployer, proposal_id)


def test_member_admitted_after_submission_cannot_vote_on_that_batch(dao):
    reg, newcomer = dao.registry, dao.outsiders[0]
    before = submit(dao, "before")
    assert pass_proposal(dao, reg.propose_add_member(dao.members[0], newcomer.address).proposal_id).applied
    assert reg.is_member(newcomer.address)
    with reverts("NotInSnapshotElectorate"):
        reg.vote_on_batch(newcomer, before, True)
    after = submit(dao, "after")
    reg.vote_on_batch(newcomer, after, True)
    assert reg.batch(before).tally.electorate == 3 and reg.batch(after).tally.electorate == 4


def test_member_removed_after_submission_still_votes_on_it_but_not_on_later_batches(dao):
    reg, leaving = dao.registry, dao.members[2]
    before = submit(dao, "before")
    assert pass_proposal(dao, reg.propose_remove_member(dao.members[0], leaving.address).proposal_id).applied
    assert not reg.is_member(leaving.address)
    reg.vote_on_batch(leaving, before, True)
    after = submit(dao, "after")
    with reverts("NotInSnapshotElectorate"):
        reg.vote_on_batch(leaving, after, True)
    with reverts("CallerIsNotAMember"):
        reg.propose_add_member(leaving, dao.outsiders[0].address)


def test_node_admission_and_removal_by_vote(dao):
    reg, newcomer = dao.registry, dao.outsiders[0]
    with reverts("CallerIsNotAnAdmittedNode"):
        reg.submit_batch(newcomer, root_of("n"), CID, 1, SCHEMA)
    pass_proposal(dao, reg.propose_admit_node(dao.members[0], newcomer.address).proposal_id)
    assert reg.node(newcomer.address) == (3, True)
    assert reg.submit_batch(newcomer, root_of("n"), CID, 1, SCHEMA).node_id == 3
    pass_proposal(dao, reg.propose_remove_node(dao.members[0], newcomer.address).proposal_id)
    assert reg.node(newcomer.address) == (3, False)
    with reverts("CallerIsNotAnAdmittedNode"):
        reg.submit_batch(newcomer, root_of("n2"), CID, 1, SCHEMA)
    with reverts("AlreadyAnAdmittedNode"):  # a removed identity is not re-admitted
        reg.propose_admit_node(dao.members[0], newcomer.address)


def test_revoke_accepted_batch_by_vote(dao):
    reg = dao.registry
    root = submit(dao)
    with reverts("BatchIsNotAccepted"):
        reg.propose_revoke_batch(dao.members[0], root)
    pass_proposal_batch = [reg.vote_on_batch(m, root, True) for m in dao.members[:2]]
    assert len(pass_proposal_batch) == 2 and reg.finalize_batch(dao.deployer, root).status == Status.ACCEPTED
    proposal = reg.propose_revoke_batch(dao.members[0], root).proposal_id
    assert reg.proposal(proposal).kind == ProposalKind.REVOKE_BATCH
    assert pass_proposal(dao, proposal).applied
    assert reg.batch(root).tally.status == Status.REVOKED
    names = [e.name for e in reg.events(0).events]
    assert "BatchRevoked" in names


def test_rejected_proposal_changes_nothing(dao, w3):
    reg = dao.registry
    proposal = reg.propose_add_member(dao.members[0], dao.outsiders[0].address).proposal_id
    reg.vote_on_proposal(dao.members[0], proposal, True)
    reg.vote_on_proposal(dao.members[1], proposal, False)
    reg.vote_on_proposal(dao.members[2], proposal, False)
    result = reg.finalize_proposal(dao.deployer, proposal)
    assert (result.status, result.applied) == (Status.REJECTED, False)
    assert not reg.is_member(dao.outsiders[0].address)


def test_second_proposal_for_the_same_change_executes_as_a_no_op(dao):
    reg, target = dao.registry, dao.outsiders[0].address
    first = reg.propose_add_member(dao.members[0], target).proposal_id
    second = reg.propose_add_member(dao.members[1], target).proposal_id
    assert pass_proposal(dao, first).applied
    result = pass_proposal(dao, second)
    assert (result.status, result.applied) == (Status.ACCEPTED, False)
    assert reg.parameters()["member_count"] == 4


@pytest.mark.parametrize(
    ("method", "who", "error"),
    [
        ("propose_add_member", "outsider", "CallerIsNotAMember"),
        ("propose_add_member", "member", "AlreadyAMember"),
        ("propose_add_member", "zero", "ZeroAddress"),
        ("propose_remove_member", "outsider", "NotAMember"),
        ("propose_admit_node", "node", "AlreadyAnAdmittedNode"),
        ("propose_admit_node", "zero", "ZeroAddress"),
        ("propose_remove_node", "outsider", "NotAnAdmittedNode"),
    ],
)
def test_invalid_proposals_revert(dao, method, who, error):
    target = {
        "outsider": dao.outsiders[1].address,
        "member": dao.members[1].address,
        "node": dao.nodes[0].address,
        "zero": "0x" + "00" * 20,
    }[who]
    proposer = dao.outsiders[0] if error == "CallerIsNotAMember" else dao.members[0]
    with reverts(error):
        getattr(dao.registry, method)(proposer, target)


# ---------------------------------------------------------------- pagination and events


def test_batches_page_in_submission_order_with_bounds(dao):
    roots = [submit(dao, i) for i in range(5)]
    reg = dao.registry
    assert [b.root for b in reg.batches(0, 2)] == roots[:2]
    assert [b.root for b in reg.batches(3, 10)] == roots[3:]
    assert reg.batches(5, 10) == [] and reg.batches(99, 1) == []
    assert [b.root for b in reg.all_batches()] == roots
    with reverts("PageTooLarge"):
        reg.batches(0, 201)


def test_member_and_node_pages_span_more_than_one_page(w3, accounts):
    members = [Account.create().address for _ in range(205)]
    registry, _ = Registry.deploy(w3, accounts[0], members, [accounts[6].address])
    assert registry.members() == members
    assert registry.seat_holders(200, 200) == members[200:]
    assert registry.node_addresses(0, 5) == [accounts[6].address]


def test_proposals_page(dao):
    reg = dao.registry
    ids = [reg.propose_add_member(dao.members[0], o.address).proposal_id for o in dao.outsiders[:3]]
    page = reg.proposals(1, 5)
    assert [p.proposal_id for p in page] == ids[1:]
    assert all(p.kind == ProposalKind.ADD_MEMBER and p.tally.status == Status.PENDING for p in page)


def test_events_resume_from_checkpoint_without_gaps_or_duplicates(dao, w3):
    reg = dao.registry
    start = w3.eth.block_number + 1
    first = submit(dao, "e1")
    reg.vote_on_batch(dao.members[0], first, True)
    page1 = reg.events(start)
    second = submit(dao, "e2")
    page2 = reg.events(page1.next_block)
    whole = reg.events(start, chunk=1)
    assert [e.name for e in page1.events] == ["BatchSubmitted", "BatchVoteCast"]
    assert [(e.name, e.args["root"]) for e in page2.events] == [("BatchSubmitted", second)]
    assert whole.events == page1.events + page2.events
    assert reg.events(page2.next_block).events == []


def test_events_respect_confirmations(dao, w3):
    reg = dao.registry
    start = w3.eth.block_number + 1
    submit(dao, "c")
    assert reg.events(start, confirmations=1).events == []
    assert len(reg.events(start).events) == 1


# ---------------------------------------------------------------- leaf challenges (one experience)


def leaves_of(n: int, label: str = "x") -> list[bytes]:
    return [f"{label}: experience {i}".encode() for i in range(n)]


def accepted_batch(dao: Dao, leaves: list[bytes], count: int | None = None) -> bytes:
    """Commit a batch over `leaves` (declaring `count` leaves, default the true number) and accept it."""
    root = dao.registry.submit_batch(dao.nodes[0], merkle_root(leaves), CID, count or len(leaves), SCHEMA).root
    for member in dao.members[:2]:
        dao.registry.vote_on_batch(member, root, True)
    assert dao.registry.finalize_batch(dao.deployer, root).status == Status.ACCEPTED
    return root


def challenge(dao: Dao, root: bytes, index: int, leaf: bytes, path, proposer=None):
    return dao.registry.propose_revoke_experience(proposer or dao.members[0], root, index, leaf, path)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 13, 16, 33])
def test_valid_inclusion_proof_opens_a_RevokeExperience_proposal(dao, n):
    leaves = leaves_of(n, f"n{n}")
    root = accepted_batch(dao, leaves)
    reg = dao.registry
    for index in sorted({0, n // 2, n - 1}):
        proof = prove_inclusion(leaves, index)
        result = challenge(dao, root, index, leaves[index], proof.path)
        p = reg.proposal(result.proposal_id)
        assert (p.kind, p.batch, p.leaf_index, p.leaf_hash) == (ProposalKind.REVOKE_EXPERIENCE, root, index, leaf_hash(leaves[index]))
        assert p.tally.status == Status.PENDING
        [created] = [e for e in reg.events(result.tx.block_number).events if e.name == "ExperienceRevocationProposed"]
        assert created.args == {"proposalId": result.proposal_id, "root": root, "leafIndex": index, "leafHash": leaf_hash(leaves[index])}


def flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


@pytest.mark.parametrize("mutation", ["leaf", "index", "sibling", "truncated", "extended", "reordered", "too_long"])
def test_tampered_proof_reverts_with_InvalidInclusionProof(dao, mutation):
    leaves = leaves_of(11)
    root = accepted_batch(dao, leaves)
    index, proof = 6, list(prove_inclusion(leaves, 6).path)
    leaf = leaves[index]
    if mutation == "leaf":
        leaf = leaves[index] + b" (edited)"
    elif mutation == "index":
        index = 7
    elif mutation == "sibling":
        proof[1] = flip(proof[1])
    elif mutation == "truncated":
        proof = proof[:-1]
    elif mutation == "extended":
        proof = proof + [bytes(32)]
    elif mutation == "reordered":
        proof = proof[::-1]
    else:
        proof = proof + [bytes(32)] * 40
    with reverts("InvalidInclusionProof"):
        challenge(dao, root, index, leaf, proof)


def test_proof_for_another_tree_size_reverts_with_InvalidInclusionProof(dao):
    """Leaf c of the 3-leaf tree (a, b, c) has a path that also proves it as leaf 1 of a 2-leaf
    tree: the contract takes the tree size from the batch's count, so that index is refused."""
    leaves = leaves_of(3, "abc")
    root = accepted_batch(dao, leaves)
    inner = node_hash(leaf_hash(leaves[0]), leaf_hash(leaves[1]))
    off_size = InclusionProof(tree_size=2, leaf_index=1, leaf_hash=leaf_hash(leaves[2]), path=(inner,))
    assert compute_root(off_size) == root  # valid RFC 9162 proof, for the wrong tree size
    with reverts("InvalidInclusionProof"):
        challenge(dao, root, 1, leaves[2], [inner])
    challenge(dao, root, 2, leaves[2], [inner])  # the same path at the true index and size


def test_proof_checked_against_the_on_chain_count_not_the_tree_it_came_from(dao):
    """The 3-vs-4 case: a node declared 4 leaves for a 3-leaf tree. Leaf 2's 3-leaf proof does not
    fit 4 leaves and is refused; leaf 0's path is the same for sizes 3 and 4, so it is accepted (the
    inclusion is true at that index whatever the size)."""
    leaves = leaves_of(3, "lying")
    root = accepted_batch(dao, leaves, count=4)
    assert compute_root(InclusionProof(4, 0, leaf_hash(leaves[0]), prove_inclusion(leaves, 0).path)) == root
    with reverts("InvalidInclusionProof"):
        challenge(dao, root, 2, leaves[2], prove_inclusion(leaves, 2).path)
    challenge(dao, root, 0, leaves[0], prove_inclusion(leaves, 0).path)


def test_leaf_index_beyond_the_count_reverts_with_LeafIndexOutOfRange(dao):
    leaves = leaves_of(4)
    root = accepted_batch(dao, leaves)
    for index in (4, 2**32 - 1):
        with reverts("LeafIndexOutOfRange"):
            challenge(dao, root, index, leaves[3], prove_inclusion(leaves, 3).path)
    with pytest.raises(ContractRevert) as info:
        challenge(dao, root, 7, leaves[3], [])
    assert info.value.args_ == (7, 4)


@pytest.mark.parametrize("state", ["unknown", "pending", "rejected", "revoked"])
def test_challenge_of_a_batch_that_is_not_accepted_reverts_with_BatchIsNotAccepted(dao, w3, state):
    reg, leaves = dao.registry, leaves_of(5, state)
    if state == "revoked":
        root = accepted_batch(dao, leaves)
        pass_proposal(dao, reg.propose_revoke_batch(dao.members[0], root).proposal_id)
    else:
        root = merkle_root(leaves)
        if state != "unknown":
            reg.submit_batch(dao.nodes[0], root, CID, 5, SCHEMA)
        if state == "rejected":
            advance_time(w3, VOTING_PERIOD)
            reg.finalize_batch(dao.deployer, root)
    with reverts("BatchIsNotAccepted"):
        challenge(dao, root, 1, leaves[1], prove_inclusion(leaves, 1).path)


def test_challenge_by_non_member_reverts_with_CallerIsNotAMember(dao):
    leaves = leaves_of(4)
    root = accepted_batch(dao, leaves)
    for outsider in (dao.outsiders[0], dao.nodes[0]):
        with reverts("CallerIsNotAMember"):
            challenge(dao, root, 1, leaves[1], prove_inclusion(leaves, 1).path, proposer=outsider)


def test_revoking_one_experience_by_vote_keeps_the_rest_of_the_batch(dao):
    reg = dao.registry
    leaves = leaves_of(300, "big")  # indexes 255 and 256 sit in different bitmap words
    root = accepted_batch(dao, leaves)
    for index in (256, 3):
        proposal = challenge(dao, root, index, leaves[index], prove_inclusion(leaves, index).path).proposal_id
        assert not reg.is_experience_revoked(root, index)
        result = pass_proposal(dao, proposal)
        assert (result.status, result.applied) == (Status.ACCEPTED, True)
        [revoked] = [e for e in reg.events(result.tx.block_number).events if e.name == "ExperienceRevoked"]
        assert revoked.args == {"root": root, "leafIndex": index, "leafHash": leaf_hash(leaves[index]), "proposalId": proposal}
    assert [i for i in range(300) if reg.is_experience_revoked(root, i)] == [3, 256]
    assert reg.batch(root).tally.status == Status.ACCEPTED  # the batch itself stays in
    with reverts("ExperienceAlreadyRevoked"):
        challenge(dao, root, 3, leaves[3], prove_inclusion(leaves, 3).path)


def test_second_pending_challenge_of_a_leaf_reverts_with_LeafChallengePending(dao, w3):
    reg, leaves = dao.registry, leaves_of(6)
    root = accepted_batch(dao, leaves)
    first = challenge(dao, root, 2, leaves[2], prove_inclusion(leaves, 2).path).proposal_id
    for proposer in dao.members:
        with pytest.raises(ContractRevert) as info:
            challenge(dao, root, 2, leaves[2], prove_inclusion(leaves, 2).path, proposer=proposer)
        assert (info.value.name, info.value.args_) == ("LeafChallengePending", ("0x" + root.hex(), 2, first))
    challenge(dao, root, 3, leaves[3], prove_inclusion(leaves, 3).path)  # another leaf of the batch is free
    advance_time(w3, VOTING_PERIOD)  # past its deadline but not finalized: still the pending challenge
    with reverts("LeafChallengePending"):
        challenge(dao, root, 2, leaves[2], prove_inclusion(leaves, 2).path)
    assert reg.finalize_proposal(dao.deployer, first).status == Status.REJECTED
    challenge(dao, root, 2, leaves[2], prove_inclusion(leaves, 2).path)


def test_rejected_challenge_revokes_nothing_and_can_be_raised_again(dao):
    reg, leaves = dao.registry, leaves_of(6)
    root = accepted_batch(dao, leaves)
    path = prove_inclusion(leaves, 2).path
    rejected = challenge(dao, root, 2, leaves[2], path).proposal_id
    for member in dao.members[:2]:
        reg.vote_on_proposal(member, rejected, False)
    assert reg.finalize_proposal(dao.deployer, rejected).status == Status.REJECTED
    assert not reg.is_experience_revoked(root, 2)
    again = challenge(dao, root, 2, leaves[2], path, proposer=dao.members[1]).proposal_id
    assert reg.proposal(again).leaf_hash == leaf_hash(leaves[2])
    result = pass_proposal(dao, again)
    assert (result.status, result.applied) == (Status.ACCEPTED, True)
    assert reg.is_experience_revoked(root, 2)
    with reverts("ExperienceAlreadyRevoked"):  # accepted: the leaf is done with, not pending
        challenge(dao, root, 2, leaves[2], path, proposer=dao.members[2])


# ---------------------------------------------------------------- voting parameters (period and quorum)


def change_parameters(dao: Dao, voting_period: int, quorum_bps: int):
    """Propose new voting parameters and pass the proposal with every member's vote."""
    return pass_proposal(dao, dao.registry.propose_voting_parameters(dao.members[0], voting_period, quorum_bps).proposal_id)


def test_voting_parameter_change_applies_only_to_later_batches(dao, w3):
    reg = dao.registry
    first = reg.submit_batch(dao.nodes[0], root_of("before"), CID, 4, SCHEMA)
    before = first.root
    open_proposal = reg.propose_add_member(dao.members[0], dao.outsiders[0].address).proposal_id
    result = change_parameters(dao, 2 * VOTING_PERIOD, 10_000)
    assert (result.status, result.applied) == (Status.ACCEPTED, True)
    [changed] = [e for e in reg.events(result.tx.block_number).events if e.name == "VotingParametersChanged"]
    assert changed.args == {"votingPeriod": 2 * VOTING_PERIOD, "quorumBps": 10_000, "clock": 4}
    assert reg.parameters() == {"voting_period": 2 * VOTING_PERIOD, "quorum_bps": 10_000, "membership_clock": 4, "member_count": 3}
    after = reg.submit_batch(dao.nodes[0], root_of("after"), CID, 4, SCHEMA)
    old, new = reg.batch(before).tally, reg.batch(after.root).tally
    assert (old.quorum_bps, old.quorum, old.snapshot) == (5_000, 2, 3)
    assert (new.quorum_bps, new.quorum, new.snapshot, new.electorate) == (10_000, 3, 4, 3)
    assert old.deadline == w3.eth.get_block(first.tx.block_number)["timestamp"] + VOTING_PERIOD
    assert new.deadline == w3.eth.get_block(after.tx.block_number)["timestamp"] + 2 * VOTING_PERIOD
    assert reg.proposal(open_proposal).tally.quorum_bps == 5_000
    for member in dao.members[:2]:
        reg.vote_on_batch(member, before, True)
        reg.vote_on_batch(member, after.root, True)
    assert reg.finalize_batch(dao.deployer, before).status == Status.ACCEPTED  # 2 of 3: quorum at creation
    with reverts("VotingStillOpen"):  # 2 of 3 is short of the new 100% quorum
        reg.finalize_batch(dao.deployer, after.root)
    advance_time(w3, VOTING_PERIOD)  # the old period is over, the new one is not
    with reverts("VotingClosed"):
        reg.vote_on_proposal(dao.members[0], open_proposal, True)
    reg.vote_on_batch(dao.members[2], after.root, True)
    assert reg.finalize_batch(dao.deployer, after.root).status == Status.ACCEPTED


def test_membership_change_after_a_parameter_change_keeps_the_new_quorum(dao):
    reg = dao.registry
    change_parameters(dao, VOTING_PERIOD, 7_500)
    assert pass_proposal(dao, reg.propose_add_member(dao.members[0], dao.outsiders[0].address).proposal_id).applied
    tally = reg.batch(submit(dao, "later")).tally
    assert (tally.electorate, tally.quorum_bps, tally.quorum) == (4, 7_500, 3)
    assert reg.parameters()["quorum_bps"] == 7_500


def test_voting_parameter_proposal_names_the_proposed_values(dao):
    reg = dao.registry
    result = reg.propose_voting_parameters(dao.members[1], 7 * 24 * 3600, 6_000)
    p = reg.proposal(result.proposal_id)
    assert (p.kind, p.voting_period, p.quorum_bps, p.account, p.batch) == (ProposalKind.SET_VOTING_PARAMETERS, 7 * 24 * 3600, 6_000, "0x" + "00" * 20, bytes(32))
    assert (p.tally.status, p.tally.quorum_bps) == (Status.PENDING, 5_000)  # decided under the quorum in force
    [proposed] = [e for e in reg.events(result.tx.block_number).events if e.name == "VotingParametersProposed"]
    assert proposed.args == {"proposalId": result.proposal_id, "votingPeriod": 7 * 24 * 3600, "quorumBps": 6_000}
    assert reg.parameters()["voting_period"] == VOTING_PERIOD  # nothing changes before the vote


@pytest.mark.parametrize(
    ("voting_period", "quorum_bps", "error", "args"),
    [
        (MIN_PERIOD - 1, 5_000, "InvalidVotingPeriod", (MIN_PERIOD - 1, MIN_PERIOD, MAX_PERIOD)),
        (MAX_PERIOD + 1, 5_000, "InvalidVotingPeriod", (MAX_PERIOD + 1, MIN_PERIOD, MAX_PERIOD)),
        (0, 5_000, "InvalidVotingPeriod", (0, MIN_PERIOD, MAX_PERIOD)),
        (VOTING_PERIOD, 0, "InvalidQuorumBps", (0, 1, 10_000)),
        (VOTING_PERIOD, 10_001, "InvalidQuorumBps", (10_001, 1, 10_000)),
        (VOTING_PERIOD, 5_000, "VotingParametersUnchanged", (VOTING_PERIOD, 5_000)),
    ],
)
def test_voting_parameter_proposal_outside_the_bounds_or_unchanged_reverts(dao, voting_period, quorum_bps, error, args):
    with pytest.raises(ContractRevert) as info:
        dao.registry.propose_voting_parameters(dao.members[0], voting_period, quorum_bps)
    assert (info.value.name, info.value.args_) == (error, args)
    assert dao.registry.proposal_count() == 0


@pytest.mark.parametrize(("voting_period", "quorum_bps"), [(MIN_PERIOD, 1), (MAX_PERIOD, 10_000), (VOTING_PERIOD, 5_001)])
def test_voting_parameters_at_the_bounds_can_be_proposed_and_applied(dao, voting_period, quorum_bps):
    assert change_parameters(dao, voting_period, quorum_bps).applied
    params = dao.registry.parameters()
    assert (params["voting_period"], params["quorum_bps"]) == (voting_period, quorum_bps)


def test_voting_parameter_proposal_by_non_member_reverts_with_CallerIsNotAMember(dao):
    for outsider in (dao.outsiders[0], dao.nodes[0], dao.deployer):
        with reverts("CallerIsNotAMember"):
            dao.registry.propose_voting_parameters(outsider, 2 * VOTING_PERIOD, 5_000)


def test_second_accepted_change_to_the_same_parameters_applies_as_a_no_op(dao):
    reg = dao.registry
    first = reg.propose_voting_parameters(dao.members[0], 2 * VOTING_PERIOD, 6_000).proposal_id
    second = reg.propose_voting_parameters(dao.members[1], 2 * VOTING_PERIOD, 6_000).proposal_id
    assert pass_proposal(dao, first).applied
    result = pass_proposal(dao, second)
    assert (result.status, result.applied) == (Status.ACCEPTED, False)
    assert [e.name for e in reg.events(result.tx.block_number).events] == ["ProposalFinalized"]
    assert reg.parameters()["membership_clock"] == 4  # advanced once
