"""Gas benchmark of the registry on a real Anvil: what each operation costs a node or a member.

Every figure is `gasUsed` from a mined receipt (whole transaction, including the 21k base), so it
compares directly with the anchors measured on this machine for EAS and OpenZeppelin Governor.
"""

from __future__ import annotations

import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3

from dso.core.batch import MAX_LEAVES
from dso.core.merkle import build_tree, prove_inclusion
from dso.edges.chain import Registry, connect
from dso.edges.compile import EVM_VERSION, OPTIMIZER_RUNS, SOLC_VERSION
from dso.edges.services import anvil_executable, dev_accounts, free_port, start_anvil

# Anchors measured on this machine (../shared/NOTES.md): whole-transaction gas.
ANCHORS = {
    "EAS attest (bytes32 root, string cid, uint32 count)": 317_000,
    "EAS attest (bytes32 only)": 200_000,
    "OpenZeppelin Governor castVote, first voter": 83_000,
    "OpenZeppelin Governor castVote, later voter": 66_000,
    "OpenZeppelin Governor propose": 67_000,
}
BATCH_SIZES = (1, 16, 256)
CID_BYTES = 36  # binary CIDv1, raw codec, sha2-256: what dso pins
VOTES_TO_ACCEPT = 4  # of 5 members: 4 yes make acceptance certain, so finalize need not wait
CHALLENGE_SIZES = (16, 256, MAX_LEAVES)  # audit paths of 4, 8 and 16 hashes; MAX_LEAVES is the largest batch
LEAF_BYTES = 325  # mean canonical bitdelta-1 leaf with its text (bench/results/size.json)
NEW_VOTING_PERIOD, NEW_QUORUM_BPS = 7 * 24 * 3600, 6_000  # the parameter change measured
# Vote reasons measured: a tweet-sized reason, the longest allowed, and the text of a CIDv1 (what a
# reason pinned to IPFS and referenced from the event would cost instead of the reason itself).
REASON_SIZES = (140, 1_000)
CID_TEXT_BYTES = 59
BULK_VOTES = 5


def _cid(label: str) -> bytes:
    return bytes.fromhex("01551220") + Web3.keccak(text=label)


def _root(label: str) -> bytes:
    return Web3.keccak(text=f"bench:{label}")


def measure(registry: Registry, w3: Web3, members: list, nodes: list, relayer) -> dict[str, int]:
    """Run each operation on a fresh registry and return gasUsed per operation."""
    schema = Web3.keccak(text="dso/1|all-MiniLM-L6-v2|bitdelta-1")
    gas: dict[str, int] = {}

    first = registry.submit_batch(nodes[0], _root("a"), _cid("a"), 16, schema)
    gas["submitBatch (node's first batch)"] = first.tx.gas_used
    gas["submitBatch (later batch)"] = registry.submit_batch(nodes[0], _root("b"), _cid("b"), 16, schema).tx.gas_used

    deadline = w3.eth.get_block("latest")["timestamp"] + 3_600
    signed = registry.sign_submission(nodes[1], _root("s1"), _cid("s1"), 16, schema, deadline)
    gas["submitBatchWithSig (node's first signature)"] = registry.submit_signed(relayer, signed).tx.gas_used
    signed = registry.sign_submission(nodes[1], _root("s2"), _cid("s2"), 16, schema, deadline)
    gas["submitBatchWithSig (later signature)"] = registry.submit_signed(relayer, signed).tx.gas_used

    root = first.root
    gas["voteOnBatch (first voter)"] = registry.vote_on_batch(members[0], root, True).gas_used
    gas["voteOnBatch (later voter)"] = registry.vote_on_batch(members[1], root, True).gas_used
    for member in members[2:VOTES_TO_ACCEPT]:
        registry.vote_on_batch(member, root, True)
    gas["finalizeBatch (accepted early)"] = registry.finalize_batch(relayer, root).tx.gas_used

    proposal = registry.propose_add_member(members[0], Account.create().address)
    gas["proposeAddMember"] = proposal.tx.gas_used
    gas["voteOnProposal (first voter)"] = registry.vote_on_proposal(members[0], proposal.proposal_id, True).gas_used
    for member in members[1:VOTES_TO_ACCEPT]:
        registry.vote_on_proposal(member, proposal.proposal_id, True)
    gas["finalizeProposal (accepted, adds a member)"] = registry.finalize_proposal(relayer, proposal.proposal_id).tx.gas_used
    return gas


def measure_challenges(registry: Registry, members: list, node, relayer) -> dict[str, int]:
    """Leaf challenges: proposeRevokeLeaf of a batch's last leaf at each batch size (the
    contract verifies the inclusion proof with the sha256 precompile), then the finalize that
    revokes one experience."""
    gas: dict[str, int] = {}
    proposal = None
    for n in CHALLENGE_SIZES:
        leaves = [Web3.keccak(text=f"leaf {n}:{i}") * (LEAF_BYTES // 32) + bytes(LEAF_BYTES % 32) for i in range(n)]
        tree = build_tree(leaves)
        root = registry.submit_batch(node, bytes(tree.get_root()), _cid(f"challenge{n}"), n, bytes(32)).root
        for member in members[:VOTES_TO_ACCEPT]:
            registry.vote_on_batch(member, root, True)
        registry.finalize_batch(relayer, root)
        proof = prove_inclusion(leaves, n - 1, tree)
        proposal = registry.propose_revoke_experience(members[0], root, n - 1, leaves[-1], proof.path)
        gas[f"proposeRevokeLeaf ({n:,} leaves, {len(proof.path)}-hash proof, {LEAF_BYTES} B leaf)"] = proposal.tx.gas_used
    for member in members[:VOTES_TO_ACCEPT]:
        registry.vote_on_proposal(member, proposal.proposal_id, True)
    gas["finalizeProposal (accepted, revokes an experience)"] = registry.finalize_proposal(relayer, proposal.proposal_id).tx.gas_used
    return gas


def measure_parameter_change(registry: Registry, members: list, relayer) -> dict[str, int]:
    """A SetVotingParameters proposal (a week, 60% quorum) and the finalize that applies it:
    the clock moves one step and records the new quorum next to the electorate."""
    proposal = registry.propose_voting_parameters(members[0], NEW_VOTING_PERIOD, NEW_QUORUM_BPS)
    for member in members[:VOTES_TO_ACCEPT]:
        registry.vote_on_proposal(member, proposal.proposal_id, True)
    return {
        "proposeVotingParameterChange": proposal.tx.gas_used,
        "finalizeProposal (accepted, changes voting parameters)": registry.finalize_proposal(relayer, proposal.proposal_id).tx.gas_used,
    }


def measure_vote_reasons(registry: Registry, member, node) -> dict[str, int]:
    """`castBatchVotes`: one vote without and with reasons (the reason is calldata and log data
    only), and several votes in one transaction instead of one transaction each."""
    gas: dict[str, int] = {}
    roots = [registry.submit_batch(node, _root(f"reason{i}"), _cid(f"reason{i}"), 16, bytes(32)).root for i in range(3 + len(REASON_SIZES) + BULK_VOTES)]
    gas["castBatchVotes (1 vote, no reason)"] = registry.cast_batch_votes(member, [(roots[0], True, "")]).gas_used
    gas[f"castBatchVotes (1 vote, {CID_TEXT_BYTES} B reason: a CID pointing to one)"] = registry.cast_batch_votes(member, [(roots[1], True, "b" * CID_TEXT_BYTES)]).gas_used
    for n, size in enumerate(REASON_SIZES, 2):
        gas[f"castBatchVotes (1 vote, {size:,} B reason)"] = registry.cast_batch_votes(member, [(roots[n], False, "r" * size)]).gas_used
    bulk = roots[-BULK_VOTES:]
    gas[f"castBatchVotes ({BULK_VOTES} votes, no reason)"] = registry.cast_batch_votes(member, [(r, True, "") for r in bulk]).gas_used
    return gas


def measure_overflow_seats(w3: Web3, deployer, node) -> dict[str, int]:
    """Votes from seats >= 64, which pay for a has-voted word outside the tally slot."""
    members = [Account.create() for _ in range(66)]
    for member in members:
        w3.provider.make_request("anvil_setBalance", [member.address, hex(10**18)])
    registry, _ = Registry.deploy(w3, deployer, [m.address for m in members], [node.address])
    root = registry.submit_batch(node, _root("overflow"), _cid("overflow"), 1, bytes(32)).root
    return {
        "voteOnBatch (seat >= 64, first in its word)": registry.vote_on_batch(members[64], root, True).gas_used,
        "voteOnBatch (seat >= 64, later in its word)": registry.vote_on_batch(members[65], root, True).gas_used,
    }


def amortized(gas: dict[str, int]) -> list[dict[str, Any]]:
    """Gas per experience at each batch size: submission alone, and the whole accept lifecycle."""
    submit = gas["submitBatch (later batch)"]
    lifecycle = (
        submit
        + gas["voteOnBatch (first voter)"]
        + (VOTES_TO_ACCEPT - 1) * gas["voteOnBatch (later voter)"]
        + gas["finalizeBatch (accepted early)"]
    )
    return [
        {"batch_size": n, "submit_per_experience": round(submit / n, 1), "lifecycle_per_experience": round(lifecycle / n, 1)}
        for n in BATCH_SIZES
    ]


def run() -> dict[str, Any]:
    """Start a private Anvil, deploy, measure, stop Anvil; return the results document."""
    with tempfile.TemporaryDirectory() as state:
        process, url = start_anvil(Path(state), port=free_port(), accounts=12, die_with_parent=True)
        try:
            w3 = connect(url)
            accounts = dev_accounts(12)
            deployer, members, nodes, relayer = accounts[0], accounts[1:6], accounts[6:10], accounts[11]
            registry, deploy = Registry.deploy(w3, deployer, [m.address for m in members], [n.address for n in nodes])
            gas = {"deploy (5 members, 4 nodes)": deploy.gas_used}
            gas.update(measure(registry, w3, members, nodes, relayer))
            gas.update(measure_challenges(registry, members, nodes[3], relayer))
            gas.update(measure_parameter_change(registry, members, relayer))
            gas.update(measure_vote_reasons(registry, members[4], nodes[1]))
            gas.update(measure_overflow_seats(w3, deployer, nodes[0]))
            # Submission cost does not depend on the batch size (count is one word): check it.
            sizes = {n: registry.submit_batch(nodes[2], _root(f"n{n}"), _cid(f"n{n}"), n, bytes(32)).tx.gas_used for n in BATCH_SIZES}
        finally:
            process.stop()
    return {
        "environment": {
            "anvil": subprocess.run([str(anvil_executable()), "--version"], capture_output=True, text=True).stdout.splitlines()[0],
            "solc": SOLC_VERSION,
            "evm_version": EVM_VERSION,
            "optimizer_runs": OPTIMIZER_RUNS,
            "via_ir": True,
            "python": platform.python_version(),
            "cid_bytes": CID_BYTES,
        },
        "gas": gas,
        "submit_gas_by_batch_size": {str(n): g for n, g in sizes.items()},
        "amortized": amortized(gas),
        "anchors": ANCHORS,
    }


def markdown_table(results: dict[str, Any]) -> str:
    """The README's gas tables, rendered from a results document."""
    lines = ["| operation | gas |", "|---|---:|"]
    lines += [f"| {name} | {value:,} |" for name, value in results["gas"].items()]
    lines += ["", f"| batch size | submit gas per experience | submit + {VOTES_TO_ACCEPT} votes + finalize, per experience |", "|---:|---:|---:|"]
    lines += [
        f"| {row['batch_size']} | {row['submit_per_experience']:,} | {row['lifecycle_per_experience']:,} |"
        for row in results["amortized"]
    ]
    lines += ["", "| anchor (measured here) | gas |", "|---|---:|"]
    lines += [f"| {name} | ~{value:,} |" for name, value in results["anchors"].items()]
    return "\n".join(lines)
