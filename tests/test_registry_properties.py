"""Random sequences of submissions, votes, membership changes, time jumps and finalizations run
against a real Anvil and against an independent Python model of the registry's rules. Every call
must succeed or revert exactly as the model says, and every tally must match afterwards.

Invariants this checks: no double vote, no vote outside the window, no vote from outside the
snapshot electorate, acceptance iff quorum and 2/3, early finalization only when the outcome is
certain, no state change without a member (proposals) or node (submissions)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dso.chain import Registry, Status
from dso.errors import ContractRevert

from conftest import CID, SCHEMA, root_of

PERIOD = 100
QUORUM_BPS = 5_000


@dataclass
class ModelTally:
    deadline: int
    snapshot: int
    yes: int = 0
    no: int = 0
    status: Status = Status.PENDING
    voters: set[str] = field(default_factory=set)


@dataclass
class Model:
    """The registry's rules restated from the specification, not from the contract's code."""

    now: int
    clock: int = 0
    members: dict[str, tuple[int, int]] = field(default_factory=dict)  # address -> (joinedAt, leftAt)
    count_at: dict[int, int] = field(default_factory=dict)
    nodes: set[str] = field(default_factory=set)
    batches: dict[bytes, ModelTally] = field(default_factory=dict)
    proposals: dict[int, tuple[str, str, ModelTally]] = field(default_factory=dict)

    def is_member(self, account: str) -> bool:
        return account in self.members and self.members[account][1] == 0

    def add_member(self, account: str) -> bool:
        if self.is_member(account):
            return False
        self.clock += 1
        self.members[account] = (self.clock, 0)
        self.count_at[self.clock] = sum(self.is_member(a) for a in self.members)
        return True

    def remove_member(self, account: str) -> bool:
        if not self.is_member(account):
            return False
        self.clock += 1
        self.members[account] = (self.members[account][0], self.clock)
        self.count_at[self.clock] = sum(self.is_member(a) for a in self.members)
        return True

    def open(self) -> ModelTally:
        return ModelTally(deadline=self.now + PERIOD, snapshot=self.clock)

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
        electorate = self.count_at[tally.snapshot]
        quorum = max(1, -(-electorate * QUORUM_BPS // 10_000))
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


ops = st.one_of(
    st.tuples(st.just("submit"), st.integers(0, 2)),
    st.tuples(st.just("vote"), st.integers(0, 7), st.integers(0, 5), st.booleans()),
    st.tuples(st.just("vote"), st.integers(0, 7), st.integers(0, 5), st.booleans()),
    st.tuples(st.just("propose"), st.integers(0, 7), st.sampled_from(["add", "remove"]), st.integers(0, 7)),
    st.tuples(st.just("vote_proposal"), st.integers(0, 7), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("finalize"), st.integers(0, 5)),
    st.tuples(st.just("finalize_proposal"), st.integers(0, 3)),
    st.tuples(st.just("advance"), st.integers(1, 2 * PERIOD)),
)


@pytest.fixture(scope="module")
def fresh(w3, accounts):
    """A registry deployed once; each example runs from an EVM snapshot of it."""
    people = accounts[1:9]
    nodes = accounts[9:11]
    registry, _ = Registry.deploy(
        w3, accounts[0], [p.address for p in people[:4]], [n.address for n in nodes], voting_period=PERIOD, quorum_bps=QUORUM_BPS
    )
    return registry, people, nodes, accounts[0]


def outcome_of(action) -> str | None:
    try:
        action()
    except ContractRevert as exc:
        return exc.name
    return None


# No shrink phase: each replay is a few dozen Anvil transactions and shrinking took minutes; a
# failure still prints its whole operation sequence, which is short enough to read.
@settings(max_examples=50, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate], suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=st.lists(ops, min_size=5, max_size=30))
def test_random_operation_sequences_match_the_model(w3, fresh, sequence):
    registry, people, nodes, deployer = fresh
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    try:
        run_sequence(w3, registry, people, nodes, deployer, sequence)
    finally:
        w3.provider.make_request("evm_revert", [snapshot])


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


def run_sequence(w3, registry: Registry, people, nodes, deployer, sequence) -> None:
    now = w3.eth.get_block("latest")["timestamp"]
    model = Model(now=now)
    for person in people[:4]:
        model.add_member(person.address)
    model.nodes = {n.address for n in nodes}
    roots: list[bytes] = []
    proposal_ids: list[int] = []

    def at_next_second() -> None:
        model.now += 1
        w3.provider.make_request("evm_setNextBlockTimestamp", [model.now])

    for step, op in enumerate(sequence):
        kind = op[0]
        if kind == "advance":
            model.now += op[1]
            w3.provider.make_request("evm_setNextBlockTimestamp", [model.now])
            w3.provider.make_request("evm_mine", [])
            continue
        at_next_second()
        if kind == "submit":
            sender = (nodes + [people[0]])[op[1]]
            root = root_of(f"p{step}")
            expected = None if sender.address in model.nodes else "CallerIsNotAnAdmittedNode"
            got = outcome_of(lambda: registry.submit_batch(sender, root, CID, 3, SCHEMA))
            assert got == expected, (op, got, expected)
            if expected is None:
                model.batches[root] = model.open()
                roots.append(root)
        elif kind == "vote" and roots:
            voter, root, support = people[op[1]], roots[op[2] % len(roots)], op[3]
            check_vote(model, model.batches[root], voter, support, lambda: registry.vote_on_batch(voter, root, support), op)
        elif kind == "propose":
            proposer, action, target = people[op[1]], op[2], people[op[3]].address
            if action == "add" and model.is_member(target):
                expected = "AlreadyAMember"  # the target is checked before the caller
            elif action == "remove" and not model.is_member(target):
                expected = "NotAMember"
            elif not model.is_member(proposer.address):
                expected = "CallerIsNotAMember"
            else:
                expected = None
            call = registry.propose_add_member if action == "add" else registry.propose_remove_member
            result: list = []
            got = outcome_of(lambda: result.append(call(proposer, target)))
            assert got == expected, (op, got, expected)
            if expected is None:
                proposal_ids.append(result[0].proposal_id)
                model.proposals[result[0].proposal_id] = (action, target, model.open())
        elif kind == "vote_proposal" and proposal_ids:
            voter, pid, support = people[op[1]], proposal_ids[op[2] % len(proposal_ids)], op[3]
            check_vote(model, model.proposals[pid][2], voter, support, lambda: registry.vote_on_proposal(voter, pid, support), op)
        elif kind == "finalize" and roots:
            root = roots[op[1] % len(roots)]
            check_finalize(model, model.batches[root], lambda: registry.finalize_batch(deployer, root), op)
        elif kind == "finalize_proposal" and proposal_ids:
            pid = proposal_ids[op[1] % len(proposal_ids)]
            action, target, tally = model.proposals[pid]
            if check_finalize(model, tally, lambda: registry.finalize_proposal(deployer, pid), op) == Status.ACCEPTED:
                (model.add_member if action == "add" else model.remove_member)(target)

    for root, tally in model.batches.items():
        chain = registry.batch(root).tally
        assert (chain.status, chain.yes, chain.no, chain.snapshot) == (tally.status, tally.yes, tally.no, tally.snapshot)
        assert chain.yes + chain.no == len(tally.voters) <= model.count_at[tally.snapshot]
        assert all(registry.has_voted_on_batch(root, v) for v in tally.voters)
    for pid, (_, _, tally) in model.proposals.items():
        chain = registry.proposal(pid).tally
        assert (chain.status, chain.yes, chain.no) == (tally.status, tally.yes, tally.no)
    assert sorted(registry.members()) == sorted(a for a in model.members if model.is_member(a))
