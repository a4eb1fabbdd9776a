"""Random sequences of operations run against a real Anvil and against an independent Python model
of the registry's rules. Every call must succeed or revert exactly as the model says, and the
chain's whole state must match the model afterwards.

The operations: submissions (direct, and EIP-712 signed: valid, by the wrong key, replayed, expired,
cancelled by `useNonce`), batch and proposal votes (inside and outside the window, twice, from
outside the snapshot electorate), time jumps, finalizations, and every kind of proposal (add and
remove members, admit and remove nodes, revoke a batch, revoke one experience by Merkle proof,
change the voting period and quorum, within and outside their bounds).

Invariants this checks: no double vote; no vote outside the window; no vote from outside the
snapshot electorate (a member admitted after a tally opened cannot vote on it); acceptance iff
quorum and 2/3, for batches and proposals; early finalization only when the outcome is certain; an
accepted proposal applies exactly when its target has not changed meanwhile; at most one pending
challenge per experience, and a rejected one can be raised again; a voting-parameter change applies
to batches and proposals created after it only (deadline and quorum fixed at creation); no state change
without a member (proposals), an admitted node (submissions) or that node's valid, unexpired,
unused signature (relayed submissions).

A second property cross-checks the contract's RFC 9162 proof verification against dso.core.merkle on
random trees and random, partly tampered proofs (eth_call, no transactions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import CID, SCHEMA
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from web3.exceptions import ContractCustomError, ContractLogicError

from dso.core.merkle import InclusionProof, ProofError, build_tree, compute_root, leaf_hash, merkle_root, prove_inclusion
from dso.edges.chain import Registry, SignedSubmission, Status
from dso.errors import ContractRevert

PERIOD = 100
QUORUM_BPS = 5_000
MIN_PERIOD, MAX_PERIOD = 60, 30 * 24 * 3600  # the contract's bounds, restated


@dataclass
class ModelTally:
    deadline: int
    snapshot: int
    yes: int = 0
    no: int = 0
    status: Status = Status.PENDING
    voters: set[str] = field(default_factory=set)


@dataclass
class ModelBatch:
    leaves: list[bytes]
    node_id: int
    tally: ModelTally


@dataclass
class ModelProposal:
    action: str  # add | remove | admit | remove_node | revoke_batch | revoke_leaf | set_params
    target: Any  # an address, a root, (root, leaf index), or (voting period, quorum bps)
    tally: ModelTally
    applied: bool | None = None


@dataclass
class Model:
    """The registry's rules restated from the specification, not from the contract's code."""

    now: int
    period: int = PERIOD
    quorum_bps: int = QUORUM_BPS
    clock: int = 0
    members: dict[str, tuple[int, int]] = field(default_factory=dict)  # address -> (joinedAt, leftAt)
    count_at: dict[int, tuple[int, int]] = field(default_factory=dict)  # clock -> (members, quorum bps)
    nodes: dict[str, tuple[int, bool]] = field(default_factory=dict)  # address -> (id, active)
    nonces: dict[str, int] = field(default_factory=dict)
    batches: dict[bytes, ModelBatch] = field(default_factory=dict)
    proposals: dict[int, ModelProposal] = field(default_factory=dict)
    revoked_leaves: set[tuple[bytes, int]] = field(default_factory=set)

    def is_member(self, account: str) -> bool:
        return account in self.members and self.members[account][1] == 0

    def is_node(self, account: str) -> bool:
        return self.nodes.get(account, (0, False))[1]

    def tick(self) -> None:
        """Advance the clock and record who is a member and the quorum in force from it on."""
        self.clock += 1
        self.count_at[self.clock] = (sum(self.is_member(a) for a in self.members), self.quorum_bps)

    def add_member(self, account: str) -> bool:
        if self.is_member(account):
            return False
        self.members[account] = (self.clock + 1, 0)
        self.tick()
        return True

    def remove_member(self, account: str) -> bool:
        if not self.is_member(account):
            return False
        self.members[account] = (self.members[account][0], self.clock + 1)
        self.tick()
        return True

    def set_params(self, target: tuple[int, int]) -> bool:
        if target == (self.period, self.quorum_bps):
            return False
        self.period, self.quorum_bps = target
        self.tick()
        return True

    def admit_node(self, account: str) -> bool:
        if account in self.nodes:  # a removed node keeps its id and is never re-admitted
            return False
        self.nodes[account] = (len(self.nodes) + 1, True)
        return True

    def remove_node(self, account: str) -> bool:
        if not self.is_node(account):
            return False
        self.nodes[account] = (self.nodes[account][0], False)
        return True

    def revoke_batch(self, root: bytes) -> bool:
        if self.batches[root].tally.status != Status.ACCEPTED:
            return False
        self.batches[root].tally.status = Status.REVOKED
        return True

    def revoke_leaf(self, target: tuple[bytes, int]) -> bool:
        if target in self.revoked_leaves:
            return False
        self.revoked_leaves.add(target)
        return True

    def apply(self, proposal: ModelProposal) -> bool:
        act = {
            "add": self.add_member,
            "remove": self.remove_member,
            "admit": self.admit_node,
            "remove_node": self.remove_node,
            "revoke_batch": self.revoke_batch,
            "revoke_leaf": self.revoke_leaf,
            "set_params": self.set_params,
        }[proposal.action]
        return act(proposal.target)

    def open(self) -> ModelTally:
        return ModelTally(deadline=self.now + self.period, snapshot=self.clock)

    def vote_error(self, tally: ModelTally, voter: str) -> str | None:
        if tally.status != Status.PENDING:
            return "NotPending"
        if self.now >= tally.deadline:
            return "VotingClosed"
        if voter not in self.members:
            return "CallerIsNotAMember"
        joined, left = self.members[voter]
        if joined > tally.snapshot or (left != 0 and left <= tally.snapshot):
            return "NotInSnapshotElectorate"
        if voter in tally.voters:
            return "AlreadyVoted"
        return None

    def decide(self, tally: ModelTally) -> Status:
        electorate, quorum_bps = self.count_at[tally.snapshot]
        quorum = max(1, -(-electorate * quorum_bps // 10_000))
        cast = tally.yes + tally.no

        def outcome(yes: int, total: int) -> bool:
            return total >= quorum and 3 * yes >= 2 * total

        if self.now >= tally.deadline:
            return Status.ACCEPTED if outcome(tally.yes, cast) else Status.REJECTED
        remaining = max(electorate - cast, 0)
        # Decided early only if every way the remaining members could vote or abstain (a more yes,
        # b more no) gives the same result.
        results = {
            outcome(tally.yes + a, cast + a + b) for a in range(remaining + 1) for b in range(remaining + 1 - a)
        }
        if results == {True}:
            return Status.ACCEPTED
        if results == {False}:
            return Status.REJECTED
        return Status.PENDING

    def propose_error(self, action: str, target: Any, proposer: str, valid_proof: bool = True) -> str | None:
        """The revert a proposal must meet: its target is checked before its proposer."""
        if action == "add" and self.is_member(target):
            return "AlreadyAMember"
        if action == "remove" and not self.is_member(target):
            return "NotAMember"
        if action == "admit" and target in self.nodes:
            return "AlreadyAnAdmittedNode"
        if action == "remove_node" and not self.is_node(target):
            return "NotAnAdmittedNode"
        if action in ("revoke_batch", "revoke_leaf"):
            root = target[0] if action == "revoke_leaf" else target
            if root not in self.batches or self.batches[root].tally.status != Status.ACCEPTED:
                return "BatchIsNotAccepted"
        if action == "set_params":
            period, quorum_bps = target
            if not MIN_PERIOD <= period <= MAX_PERIOD:
                return "InvalidVotingPeriod"
            if not 1 <= quorum_bps <= 10_000:
                return "InvalidQuorumBps"
            if target == (self.period, self.quorum_bps):
                return "VotingParametersUnchanged"
        if action == "revoke_leaf":
            root, index = target
            if index >= len(self.batches[root].leaves):
                return "LeafIndexOutOfRange"
            if target in self.revoked_leaves:
                return "ExperienceAlreadyRevoked"
            if any(p.action == "revoke_leaf" and p.target == target and p.tally.status == Status.PENDING for p in self.proposals.values()):
                return "LeafChallengePending"
            if not valid_proof:
                return "InvalidInclusionProof"
        if not self.is_member(proposer):
            return "CallerIsNotAMember"
        return None


people_ids = st.integers(0, 7)
# Voting parameters: in force at deployment, other valid values (bounds included), out of bounds.
parameter_pairs = st.tuples(
    st.sampled_from([PERIOD, PERIOD, MIN_PERIOD, 250, MAX_PERIOD, MIN_PERIOD - 1, MAX_PERIOD + 1]),
    st.sampled_from([QUORUM_BPS, QUORUM_BPS, 1, 7_500, 10_000, 0, 10_001]),
)
votes = st.lists(st.sampled_from([True, True, False, None]), min_size=8, max_size=8)  # per person: yes, no, abstain
mostly_yes = st.lists(st.sampled_from([True, True, True, True, False, None]), min_size=8, max_size=8)
proposals = st.one_of(
    st.tuples(st.just("propose"), people_ids, st.sampled_from(["add", "remove"]), people_ids),
    st.tuples(st.just("propose"), people_ids, st.sampled_from(["admit", "remove_node"]), st.integers(0, 4)),
    st.tuples(st.just("propose"), people_ids, st.just("revoke_batch"), st.integers(-6, 5)),
    st.tuples(st.just("propose_leaf"), people_ids, st.integers(-6, 5), st.integers(0, 6), st.booleans()),
    st.tuples(st.just("propose"), people_ids, st.just("set_params"), parameter_pairs),
)
single_ops = st.one_of(
    st.tuples(st.just("submit"), st.integers(0, 4), st.integers(1, 6)),
    st.tuples(st.just("submit_signed"), st.integers(0, 4), st.sampled_from(["valid", "wrong_key", "replay", "expired", "cancelled"])),
    st.tuples(st.just("vote"), people_ids, st.integers(-6, 5), st.booleans()),
    st.tuples(st.just("vote_proposal"), people_ids, st.integers(-6, 5), st.booleans()),
    st.tuples(st.just("burst"), st.sampled_from(["batch", "proposal"]), st.integers(-6, 5), votes),
    proposals,
    st.tuples(st.just("finalize"), st.integers(-6, 5)),
    st.tuples(st.just("finalize_proposal"), st.integers(-6, 5)),
    st.tuples(st.just("advance"), st.integers(1, 2 * PERIOD)),
)


@st.composite
def lifecycle(draw) -> list:
    """A batch's whole life and a proposal after it, by mostly seated voters (negative indexes
    count from the newest item): random operations alone rarely get as deep as an accepted
    proposal about an accepted batch."""
    submit = draw(st.one_of(
        st.tuples(st.just("submit"), st.integers(0, 2), st.integers(1, 6)),
        st.tuples(st.just("submit_signed"), st.integers(0, 2), st.just("valid")),
    ))
    proposer = st.integers(0, 4)
    proposal = draw(st.one_of(
        st.tuples(st.just("propose"), proposer, st.just("add"), st.integers(4, 7)),
        st.tuples(st.just("propose"), proposer, st.just("remove"), people_ids),
        st.tuples(st.just("propose"), proposer, st.just("admit"), st.integers(2, 4)),
        st.tuples(st.just("propose"), proposer, st.just("remove_node"), st.integers(0, 3)),
        st.tuples(st.just("propose"), proposer, st.just("revoke_batch"), st.just(-1)),
        st.tuples(st.just("propose_leaf"), proposer, st.just(-1), st.integers(0, 3), st.sampled_from([True, True, True, False])),
        st.tuples(st.just("propose"), proposer, st.just("set_params"), parameter_pairs),
    ))
    ops = [submit, ("burst", "batch", -1, draw(mostly_yes))]
    if draw(st.booleans()):
        ops.append(("advance", draw(st.integers(1, 2 * PERIOD))))
    ops += [("finalize", -1), proposal]
    if proposal[0] == "propose_leaf" or draw(st.booleans()):  # the same proposal again while the first is pending
        ops.append(proposal)
    ops.append(("burst", "proposal", -1, draw(mostly_yes)))
    if draw(st.booleans()):
        ops.append(("advance", draw(st.integers(1, 2 * PERIOD))))
    ops.append(("finalize_proposal", -1))
    if draw(st.booleans()):  # and once more after it was decided (a rejected challenge may be re-raised)
        ops.append(proposal)
    return ops


# Each example: one to three lifecycles, each followed by up to eight random operations.
operation_sequences = st.lists(st.tuples(lifecycle(), st.lists(single_ops, max_size=8)), min_size=1, max_size=3).map(
    lambda chunks: [op for life, singles in chunks for op in life + singles]
)


@dataclass
class World:
    """A registry deployed once per module, and who plays which role in it."""

    registry: Registry
    people: list  # 0-3 are the seed members, 4-7 outsiders who may be voted in
    nodes: list  # 0-1 seed nodes, 2-3 accounts that may be admitted, 4 a member who is no node
    deployer: Any


@pytest.fixture(scope="module")
def world(w3, accounts):
    """Each example runs from an EVM snapshot of this deployment."""
    people, seed_nodes = accounts[1:9], accounts[9:11]
    registry, _ = Registry.deploy(
        w3, accounts[0], [p.address for p in people[:4]], [n.address for n in seed_nodes], voting_period=PERIOD, quorum_bps=QUORUM_BPS
    )
    return World(registry, people, seed_nodes + accounts[11:13] + [people[0]], accounts[0])


def outcome_of(action) -> str | None:
    try:
        action()
    except ContractRevert as exc:
        return exc.name
    return None


def in_snapshot(w3, run) -> None:
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    try:
        run()
    finally:
        w3.provider.make_request("evm_revert", [snapshot])


# No shrink phase: each replay is a few dozen Anvil transactions and shrinking took minutes; a
# failure still prints its whole operation sequence, which is short enough to read.
ALL_YES, ALL_NO = [True] * 4 + [None] * 4, [False] * 4 + [None] * 4  # the four seed members vote

# A leaf challenged twice while pending, rejected, raised again, accepted, and challenged once more.
LEAF_CHALLENGE_LIFE = [
    ("submit", 0, 4), ("burst", "batch", -1, ALL_YES), ("finalize", -1),
    ("propose_leaf", 0, -1, 1, True), ("propose_leaf", 1, -1, 1, True), ("propose_leaf", 2, -1, 1, False),
    ("burst", "proposal", -1, ALL_NO), ("finalize_proposal", -1),
    ("propose_leaf", 1, -1, 1, True), ("propose_leaf", 0, -1, 1, True),
    ("burst", "proposal", -1, ALL_YES), ("finalize_proposal", -1), ("propose_leaf", 2, -1, 1, True),
]

# The quorum raised to 100% and the period to 250 s (twice: the second applies as a no-op) while a
# batch is open; a batch after it; a member admitted under the new quorum; then the same change again.
PARAMETER_CHANGE_LIFE = [
    ("submit", 0, 2), ("propose", 0, "set_params", (250, 10_000)), ("propose", 1, "set_params", (250, 10_000)),
    ("burst", "proposal", -2, ALL_YES), ("finalize_proposal", -2), ("burst", "proposal", -1, ALL_YES), ("finalize_proposal", -1),
    ("submit", 1, 3), ("burst", "batch", -2, [True] * 3 + [None] * 5), ("burst", "batch", -1, [True] * 3 + [None] * 5),
    ("finalize", -2), ("finalize", -1), ("propose", 2, "add", 4), ("burst", "proposal", -1, ALL_YES), ("finalize_proposal", -1),
    ("submit", 0, 1), ("advance", 120), ("finalize", -2), ("propose", 3, "set_params", (250, 10_000)),
]


@settings(max_examples=50, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate], suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=operation_sequences)
@example(sequence=LEAF_CHALLENGE_LIFE)
@example(sequence=PARAMETER_CHANGE_LIFE)
def test_random_operation_sequences_match_the_model(w3, world, sequence):
    in_snapshot(w3, lambda: run_sequence(w3, world, sequence))


def check_vote(model: Model, tally: ModelTally, voter, support: bool, send, op) -> None:
    """Send a vote; it must succeed or revert exactly as the model says, and update the model."""
    expected = model.vote_error(tally, voter.address)
    got = outcome_of(send)
    assert got == expected, (op, got, expected)
    if expected is None:
        tally.voters.add(voter.address)
        tally.yes += support
        tally.no += not support


def check_finalize(model: Model, tally: ModelTally, send, op) -> Status | None:
    """Send a finalize; it must succeed or revert as the model says. Returns the new status, if any."""
    decided = model.decide(tally) if tally.status == Status.PENDING else None
    expected = "NotPending" if decided is None else ("VotingStillOpen" if decided == Status.PENDING else None)
    got = outcome_of(send)
    assert got == expected, (op, got, expected, tally)
    if expected is not None:
        return None
    tally.status = decided
    return decided


class Runner:
    """Plays one operation sequence on the chain and on the model side by side."""

    def __init__(self, w3, world: World) -> None:
        self.w3, self.world, self.reg = w3, world, world.registry
        self.model = Model(now=w3.eth.get_block("latest")["timestamp"])
        for person in world.people[:4]:
            self.model.add_member(person.address)
        for node in world.nodes[:2]:
            self.model.admit_node(node.address)
        self.roots: list[bytes] = []
        self.proposal_ids: list[int] = []
        self.used_signatures: list[SignedSubmission] = []

    def next_second(self) -> None:
        """Move to the next second: an empty block at it, and the next transaction's block at it too.
        The client simulates each transaction (eth_estimateGas) at the latest block's time; with
        both at `model.now`, the simulation meets exactly the error the mined transaction would."""
        self.model.now += 1
        self.w3.provider.make_request("evm_setNextBlockTimestamp", [self.model.now])
        self.w3.provider.make_request("evm_mine", [])
        self.w3.provider.make_request("evm_setNextBlockTimestamp", [self.model.now])

    def advance(self, seconds: int) -> None:
        self.model.now += seconds
        self.w3.provider.make_request("evm_setNextBlockTimestamp", [self.model.now])
        self.w3.provider.make_request("evm_mine", [])

    def record_batch(self, root: bytes, leaves: list[bytes], sender: str) -> None:
        self.model.batches[root] = ModelBatch(leaves, self.model.nodes[sender][0], self.model.open())
        self.roots.append(root)

    def submit(self, step: int, op) -> None:
        sender, n = self.world.nodes[op[1]], op[2]
        leaves = [f"step {step} leaf {i}".encode() for i in range(n)]
        root = merkle_root(leaves)
        expected = None if self.model.is_node(sender.address) else "CallerIsNotAnAdmittedNode"
        got = outcome_of(lambda: self.reg.submit_batch(sender, root, CID, n, SCHEMA))
        assert got == expected, (op, got, expected)
        if expected is None:
            self.record_batch(root, leaves, sender.address)

    def submit_signed(self, step: int, op) -> None:
        """A relayer (the deployer, never a member or node) sends a node's signed submission."""
        signer, variant = self.world.nodes[op[1]], op[2]
        model, relayer = self.model, self.world.deployer
        if variant == "replay":
            if self.used_signatures:
                replayed = self.used_signatures[step % len(self.used_signatures)]
                expected = "SignatureExpired" if model.now > replayed.deadline else "InvalidSignature"  # its nonce is used up
                got = outcome_of(lambda: self.reg.submit_signed(relayer, replayed))
                assert got == expected, (op, got, expected)
            return
        nonce = model.nonces.get(signer.address, 0)
        if variant == "cancelled":  # the node burns the nonce it signed before the relayer sends
            self.reg.use_nonce(signer)
            model.nonces[signer.address] = nonce + 1
            self.next_second()
        # model.now is the next block's timestamp: a deadline at that very second is still valid.
        deadline = model.now - 1 if variant == "expired" else model.now + (step % 3) * (PERIOD // 2)
        leaves = [f"signed step {step}".encode()]
        root = merkle_root(leaves)
        if variant == "wrong_key":  # an outsider signs, claiming to be the node
            forged = self.reg.sign_submission(self.world.people[7], root, CID, 1, SCHEMA, deadline, nonce=nonce)
            signed = SignedSubmission(**{**forged.__dict__, "node": signer.address})
        else:
            signed = self.reg.sign_submission(signer, root, CID, 1, SCHEMA, deadline, nonce=nonce)
        if variant == "expired":
            expected = "SignatureExpired"
        elif variant in ("wrong_key", "cancelled"):
            expected = "InvalidSignature"
        elif not model.is_node(signer.address):
            expected = "SignerIsNotAnAdmittedNode"
        else:
            expected = None
        got = outcome_of(lambda: self.reg.submit_signed(relayer, signed))
        assert got == expected, (op, got, expected)
        if expected is None:
            model.nonces[signer.address] = nonce + 1
            self.used_signatures.append(signed)
            self.record_batch(root, leaves, signer.address)

    def propose(self, op) -> None:
        proposer, action = self.world.people[op[1]], op[2]
        if action in ("add", "remove"):
            target = self.world.people[op[3]].address
        elif action in ("admit", "remove_node"):
            target = self.world.nodes[op[3]].address
        elif action == "set_params":
            target = op[3]
        elif self.roots:
            target = self.roots[op[3] % len(self.roots)]
        else:
            return
        call = {
            "add": self.reg.propose_add_member,
            "remove": self.reg.propose_remove_member,
            "admit": self.reg.propose_admit_node,
            "remove_node": self.reg.propose_remove_node,
            "revoke_batch": self.reg.propose_revoke_batch,
            "set_params": lambda proposer, target: self.reg.propose_voting_parameters(proposer, *target),
        }[action]
        self.send_proposal(op, action, target, proposer, lambda: call(proposer, target))

    def propose_leaf(self, op) -> None:
        if not self.roots:
            return
        proposer, root, index, honest = self.world.people[op[1]], self.roots[op[2] % len(self.roots)], op[3], op[4]
        leaves = self.model.batches[root].leaves
        proof = prove_inclusion(leaves, min(index, len(leaves) - 1)).path
        leaf = leaves[index] if honest and index < len(leaves) else b"an experience never submitted"
        self.send_proposal(
            op, "revoke_leaf", (root, index), proposer, lambda: self.reg.propose_revoke_experience(proposer, root, index, leaf, proof), honest
        )

    def send_proposal(self, op, action: str, target: Any, proposer, send, valid_proof: bool = True) -> None:
        expected = self.model.propose_error(action, target, proposer.address, valid_proof)
        result: list = []
        got = outcome_of(lambda: result.append(send()))
        assert got == expected, (op, got, expected)
        if expected is None:
            self.proposal_ids.append(result[0].proposal_id)
            self.model.proposals[result[0].proposal_id] = ModelProposal(action, target, self.model.open())

    def finalize_proposal(self, op) -> None:
        pid = self.proposal_ids[op[1] % len(self.proposal_ids)]
        proposal = self.model.proposals[pid]
        result: list = []
        status = check_finalize(self.model, proposal.tally, lambda: result.append(self.reg.finalize_proposal(self.world.deployer, pid)), op)
        if status is not None:
            proposal.applied = self.model.apply(proposal) if status == Status.ACCEPTED else False
            assert result[0].applied == proposal.applied, (op, result[0], proposal)

    def burst(self, op) -> None:
        """Everyone votes (or abstains) on one batch or proposal, each vote in its own second."""
        _, what, index, supports = op
        ids = self.roots if what == "batch" else self.proposal_ids
        if not ids:
            return
        item = ids[index % len(ids)]
        tally = self.model.batches[item].tally if what == "batch" else self.model.proposals[item].tally
        vote = self.reg.vote_on_batch if what == "batch" else self.reg.vote_on_proposal
        for voter, support in zip(self.world.people, supports):
            if support is not None:
                self.next_second()
                check_vote(self.model, tally, voter, support, lambda: vote(voter, item, support), op)

    def run(self, sequence) -> None:
        model, reg, people = self.model, self.reg, self.world.people
        for step, op in enumerate(sequence):
            kind = op[0]
            if kind == "advance":
                self.advance(op[1])
                continue
            self.next_second()
            if kind == "submit":
                self.submit(step, op)
            elif kind == "submit_signed":
                self.submit_signed(step, op)
            elif kind == "vote" and self.roots:
                voter, root, support = people[op[1]], self.roots[op[2] % len(self.roots)], op[3]
                check_vote(model, model.batches[root].tally, voter, support, lambda: reg.vote_on_batch(voter, root, support), op)
            elif kind == "propose":
                self.propose(op)
            elif kind == "propose_leaf":
                self.propose_leaf(op)
            elif kind == "vote_proposal" and self.proposal_ids:
                voter, pid, support = people[op[1]], self.proposal_ids[op[2] % len(self.proposal_ids)], op[3]
                tally = model.proposals[pid].tally
                check_vote(model, tally, voter, support, lambda: reg.vote_on_proposal(voter, pid, support), op)
            elif kind == "finalize" and self.roots:
                root = self.roots[op[1] % len(self.roots)]
                tally = model.batches[root].tally
                check_finalize(model, tally, lambda: reg.finalize_batch(self.world.deployer, root), op)
            elif kind == "finalize_proposal" and self.proposal_ids:
                self.finalize_proposal(op)
            elif kind == "burst":
                self.burst(op)

    def check_state(self) -> None:
        """The chain's whole state equals the model's."""
        model, reg = self.model, self.reg
        for root, batch in model.batches.items():
            chain = reg.batch(root)
            tally = batch.tally
            assert (chain.count, chain.node_id) == (len(batch.leaves), batch.node_id)
            assert (chain.tally.status, chain.tally.yes, chain.tally.no, chain.tally.snapshot) == (tally.status, tally.yes, tally.no, tally.snapshot)
            assert (chain.tally.deadline, (chain.tally.electorate, chain.tally.quorum_bps)) == (tally.deadline, model.count_at[tally.snapshot])
            assert chain.tally.yes + chain.tally.no == len(tally.voters) <= model.count_at[tally.snapshot][0]
            assert all(reg.has_voted_on_batch(root, p.address) == (p.address in tally.voters) for p in self.world.people)
            revoked = {i for i in range(len(batch.leaves)) if reg.is_experience_revoked(root, i)}
            assert revoked == {i for r, i in model.revoked_leaves if r == root}
        for pid, proposal in model.proposals.items():
            chain = reg.proposal(pid)
            assert (chain.tally.status, chain.tally.yes, chain.tally.no, chain.tally.snapshot) == (
                proposal.tally.status, proposal.tally.yes, proposal.tally.no, proposal.tally.snapshot
            )
            assert (chain.tally.deadline, (chain.tally.electorate, chain.tally.quorum_bps)) == (proposal.tally.deadline, model.count_at[proposal.tally.snapshot])
            assert all(reg.has_voted_on_proposal(pid, p.address) == (p.address in proposal.tally.voters) for p in self.world.people)
            if proposal.action == "revoke_leaf":
                root, index = proposal.target
                assert (chain.batch, chain.leaf_index, chain.leaf_hash) == (root, index, leaf_hash(model.batches[root].leaves[index]))
            if proposal.action == "set_params":
                assert (chain.voting_period, chain.quorum_bps) == proposal.target
        assert sorted(reg.members()) == sorted(a for a in model.members if model.is_member(a))
        assert reg.parameters() == {
            "voting_period": model.period, "quorum_bps": model.quorum_bps, "membership_clock": model.clock,
            "member_count": sum(model.is_member(a) for a in model.members),
        }
        assert sorted(reg.nodes()) == sorted((i, a, active) for a, (i, active) in model.nodes.items())
        for node in self.world.nodes:
            assert reg.nonce(node.address) == model.nonces.get(node.address, 0)
        assert reg.batch_count() == len(model.batches) and reg.proposal_count() == len(model.proposals)


def run_sequence(w3, world: World, sequence) -> None:
    runner = Runner(w3, world)
    runner.run(sequence)
    runner.check_state()


# ---------------------------------------------------------------- inclusion proofs: Solidity vs dso.core.merkle


@pytest.fixture(scope="module")
def prover(w3, accounts):
    """One member (quorum 1: a single yes accepts a batch) and one node."""
    registry, _ = Registry.deploy(w3, accounts[0], [accounts[1].address], [accounts[9].address], voting_period=PERIOD)
    return registry, accounts[1], accounts[9]


def contract_verdict(registry: Registry, member, root: bytes, index: int, leaf: bytes, path) -> str | None:
    """What proposeRevokeLeaf answers in an eth_call: None if it would open a proposal."""
    call = registry.contract.functions.proposeRevokeLeaf(root, index, leaf, list(path))
    try:
        call.call({"from": member.address})
    except (ContractCustomError, ContractLogicError) as exc:
        return registry.errors.decode(getattr(exc, "data", None)).name
    return None


def python_verdict(root: bytes, size: int, index: int, leaf: bytes, path) -> str | None:
    """dso.core.merkle's answer for a proof bound to the batch's committed size."""
    if index >= size:
        return "LeafIndexOutOfRange"
    try:
        ok = compute_root(InclusionProof(size, index, leaf_hash(leaf), tuple(path))) == root
    except ProofError:
        ok = False
    return None if ok else "InvalidInclusionProof"


sizes = st.one_of(st.integers(1, 40), st.sampled_from([63, 64, 65, 127, 128, 129, 255, 256, 257]), st.integers(41, 300))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=sizes, data=st.data())
def test_solidity_inclusion_proofs_agree_with_dso_merkle(w3, prover, size, data):
    registry, member, node = prover
    leaves = [f"proof example {size}: leaf {i}".encode() for i in range(size)]
    tree = build_tree(leaves)
    root = bytes(tree.get_root())

    def run() -> None:
        registry.submit_batch(node, root, CID, size, SCHEMA)
        registry.vote_on_batch(member, root, True)
        registry.finalize_batch(member, root)
        for _ in range(4):
            index = data.draw(st.integers(0, size - 1), label="index")
            path = list(prove_inclusion(leaves, index, tree).path)
            claim_index, leaf = index, leaves[index]
            mutation = data.draw(st.sampled_from(["none", "index", "flip", "drop", "extra", "other_size", "out_of_range"]), label="mutation")
            if mutation == "index":
                claim_index = data.draw(st.integers(0, size - 1), label="claimed index")
            elif mutation == "flip" and path:
                i = data.draw(st.integers(0, len(path) - 1), label="flipped level")
                path[i] = bytes([path[i][0] ^ 0x80]) + path[i][1:]
            elif mutation == "drop" and path:
                path = path[:-1]
            elif mutation == "extra":
                path = path + [data.draw(st.binary(min_size=32, max_size=32), label="extra hash")]
            elif mutation == "other_size":  # a genuine proof from a tree of another size over the same prefix
                other = data.draw(st.integers(max(1, index + 1), size + 40).filter(lambda m: m != size), label="other size")
                others = (leaves + [f"extra {i}".encode() for i in range(40)])[:other]
                path = list(prove_inclusion(others, index).path)
            elif mutation == "out_of_range":
                claim_index = size + data.draw(st.integers(0, 2**32 - 1 - size), label="beyond")
            expected = python_verdict(root, size, claim_index, leaf, path)
            got = contract_verdict(registry, member, root, claim_index, leaf, path)
            assert got == expected, (size, index, claim_index, mutation, len(path))

    in_snapshot(w3, run)
