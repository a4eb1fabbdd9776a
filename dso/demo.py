"""`dso demo`: the registry's on-chain lifecycle on a private devnet, narrated step by step.

What exists so far is the on-chain half: nodes commit batches (directly and through a relayer),
members vote, batches are finalized, the DAO admits a member by vote, a client reads it all back
from events. The off-chain pipeline (embeddings, codecs, Merkle batches, IPFS) plugs into the
`root` and `cid` fields when it lands; until then the demo commits a sha256 digest of real sample
experiences as a stand-in root, and says so.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.table import Table
from web3 import Web3

from dso.chain import Registry, Status, connect
from dso.devnet import dev_accounts, free_port, start_anvil

SAMPLE_EXPERIENCES = [
    ("math.algebra", "When solving a linear equation, verify the answer by substituting it back."),
    ("math.arithmetic", "When a word problem mixes units, convert everything to one unit before computing."),
    ("math.percent", "When a price changes by a percentage twice, apply the changes one after the other, not summed."),
    ("math.geometry", "When asked for an area, write the formula first and only then plug in numbers."),
]
SCHEMA = Web3.keccak(text="dso/demo|no-embedding|no-codec")


def stand_in_root(experiences: list[tuple[str, str]]) -> bytes:
    """sha256 over the canonical JSON of the sample experiences (a stand-in for the Merkle root)."""
    return hashlib.sha256(json.dumps(experiences, sort_keys=True, separators=(",", ":")).encode()).digest()


def stand_in_cid(root: bytes) -> bytes:
    """A binary CIDv1 (raw, sha2-256) of the same digest, as the pipeline will produce."""
    return bytes.fromhex("01551220") + root


def run_demo(console: Console, step: Callable[[str], None] | None = None) -> dict[str, object]:
    """Run the lifecycle on a private Anvil; return the summary figures. Anvil is always stopped."""
    say = step or (lambda text: console.print(f"[bold cyan]▶[/bold cyan] {text}"))
    started = time.monotonic()
    gas: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as state:
        say("Starting a private Anvil devnet")
        process, url = start_anvil(Path(state), port=free_port())
        try:
            w3 = connect(url)
            accounts = dev_accounts(10)
            deployer, members, nodes, relayer = accounts[0], accounts[1:6], accounts[6:10], accounts[0]
            say("Deploying ExperienceRegistry with 5 members and 4 nodes (no owner key)")
            registry, tx = Registry.deploy(w3, deployer, [m.address for m in members], [n.address for n in nodes], voting_period=600)
            gas["deploy"] = tx.gas_used

            good = SAMPLE_EXPERIENCES[:2]
            say(f"Node 1 commits a batch of {len(good)} experiences from its own wallet")
            first = registry.submit_batch(nodes[0], stand_in_root(good), stand_in_cid(stand_in_root(good)), len(good), SCHEMA)
            gas["submitBatch"] = first.tx.gas_used

            rest = SAMPLE_EXPERIENCES[2:]
            say("Node 2 signs a batch (EIP-712) and a relayer pays the gas")
            deadline = w3.eth.get_block("latest")["timestamp"] + 600
            signed = registry.sign_submission(nodes[1], stand_in_root(rest), stand_in_cid(stand_in_root(rest)), len(rest), SCHEMA, deadline)
            second = registry.submit_signed(relayer, signed)
            gas["submitBatchWithSig"] = second.tx.gas_used

            say("Members vote: batch 1 gets 4 yes, batch 2 gets 3 no")
            for member in members[:4]:
                gas["voteOnBatch"] = registry.vote_on_batch(member, first.root, True).gas_used
            for member in members[:3]:
                registry.vote_on_batch(member, second.root, False)
            say("Finalizing both early: the outstanding votes can no longer change either outcome")
            accepted = registry.finalize_batch(deployer, first.root)
            rejected = registry.finalize_batch(deployer, second.root)
            gas["finalizeBatch"] = accepted.tx.gas_used

            newcomer = dev_accounts(11)[10]
            say("The DAO votes a new member in (proposal, 4 yes, finalize executes it)")
            proposal = registry.propose_add_member(members[0], newcomer.address)
            for member in members[:4]:
                registry.vote_on_proposal(member, proposal.proposal_id, True)
            added = registry.finalize_proposal(deployer, proposal.proposal_id)

            say("A client reads the registry back from its events")
            events = registry.events(0).events
            batches = registry.batches()
        finally:
            process.stop()
    table = Table(title="dso demo summary")
    for column in ("batch", "node", "experiences", "yes", "no", "status"):
        table.add_column(column)
    for info in batches:
        table.add_row(info.root.hex()[:16] + "…", str(info.node_id), str(info.count), str(info.tally.yes), str(info.tally.no), info.tally.status.name.lower())
    console.print(table)
    gas_table = Table(title="gas (whole transaction)")
    gas_table.add_column("operation")
    gas_table.add_column("gas", justify="right")
    for name, value in gas.items():
        gas_table.add_row(name, f"{value:,}")
    console.print(gas_table)
    summary = {
        "accepted": accepted.status == Status.ACCEPTED,
        "rejected": rejected.status == Status.REJECTED,
        "member_added": bool(added.applied),
        "events": len(events),
        "gas": gas,
        "seconds": round(time.monotonic() - started, 2),
    }
    console.print(
        f"{len(events)} events read back; member added: {summary['member_added']}; "
        f"finished in {summary['seconds']} s. The devnet was stopped."
    )
    return summary
