"""`dso demo`: the four user jobs on a private devnet, narrated step by step.

1. bring up Anvil and the IPFS node, deploy the registry (5 DAO members, 4 nodes, no owner);
2. each node distils experiences from GSM8K solutions and submits them from its wallet: embed,
   compress, batch, Merkle root, pin to IPFS, commit on-chain (through the durable outbox);
   node 4 publishes a careless batch (off-topic sentences labelled as math) and node 2 repeats
   some of node 1's experiences;
3. members vote: three batches accepted, node 4's rejected; all finalized;
4. an agent syncs the accepted batches (CID, root, count and schema verified against the chain)
   into its local library and answers a few questions with retrieved experiences.

All state lives in a temporary directory; both services are stopped at the end.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from dso.chain import Registry, connect
from dso.datasets import gsm8k_insights, gsm8k_records, sts_pairs
from dso.devnet import dev_accounts, free_port, start_anvil, start_ipfs
from dso.embed import load_embedder
from dso.experience import Insight
from dso.ipfs import KuboClient
from dso.library import Library
from dso.node import Outbox, insights_to_jsonl, submit
from dso.sync import sync

BATCH_SIZE = 24
QUESTIONS_OFFSET = 7_000  # GSM8K problems far from the ones the nodes distil


@dataclass(frozen=True)
class SubmittedBatch:
    node: int
    root: str
    count: int
    bytes: int
    gas: int
    label: str


def node_inputs() -> list[tuple[str, list[Insight]]]:
    """What each of the 4 nodes publishes (a label and its insights)."""
    insights = gsm8k_insights(3 * BATCH_SIZE)
    first, second, third = insights[:BATCH_SIZE], insights[BATCH_SIZE : 2 * BATCH_SIZE], insights[2 * BATCH_SIZE :]
    overlap = first[:4] + second[4:]  # node 2 also reports 4 of node 1's experiences
    careless = [Insight(p.first, "math.algebra", 0.99) for p in sts_pairs("dev")[:BATCH_SIZE]]
    return [
        ("GSM8K insights 0-23", first),
        ("GSM8K insights 28-47 + 4 of node 1's", overlap),
        ("GSM8K insights 48-71", third),
        ("off-topic sentences labelled as algebra", careless),
    ]


def run_demo(console: Console) -> dict[str, object]:
    """Run the whole demo; return the summary figures. Services are always stopped."""
    say = lambda text: console.print(f"[bold cyan]▶[/bold cyan] {text}")  # noqa: E731
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dso-demo-") as home:
        state = Path(home)
        say("Starting the devnet: Anvil and an offline IPFS node")
        anvil, rpc_url = start_anvil(state, port=free_port())
        try:
            ipfs, ipfs_api = start_ipfs(state, port=free_port())
        except BaseException:
            anvil.stop()
            raise
        try:
            return _run(console, say, state, rpc_url, ipfs_api, started)
        finally:
            ipfs.stop()
            anvil.stop()
            say("Devnet stopped")


def _run(console: Console, say, state: Path, rpc_url: str, ipfs_api: str, started: float) -> dict[str, object]:
    w3 = connect(rpc_url)
    accounts = dev_accounts(10)
    deployer, members, nodes = accounts[0], accounts[1:6], accounts[6:10]
    say("Deploying ExperienceRegistry: 5 DAO members, 4 admitted nodes, no owner key")
    registry, deploy = Registry.deploy(w3, deployer, [m.address for m in members], [n.address for n in nodes], voting_period=600)

    say("Loading the embedding model (all-MiniLM-L6-v2, offline)")
    embedder = load_embedder("minilm")
    submitted: list[SubmittedBatch] = []
    inputs = node_inputs()
    shared_text = inputs[0][1][0].text  # node 1's first experience, which node 2 repeats
    with KuboClient(ipfs_api) as store:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("nodes submitting batches", total=4)
            for index, (label, insights) in enumerate(inputs):
                path = state / f"node{index + 1}.jsonl"
                path.write_text(insights_to_jsonl(insights))
                outbox = Outbox(state / f"outbox-node{index + 1}")
                committed, pending = submit(path, nodes[index], embedder, store, registry, outbox)
                if pending:
                    raise RuntimeError(f"node {index + 1} could not commit: {pending[0].last_error}")
                c = committed[0]
                submitted.append(SubmittedBatch(index + 1, c.root, c.count, c.bytes, c.gas_used or 0, label))
                bar.advance(task)
        for b in submitted:
            say(f"Node {b.node} committed {b.count} experiences ({b.label}): root {b.root[:12]}…, {b.bytes:,} B on IPFS, {b.gas:,} gas")

        say("DAO members review and vote: nodes 1-3 accepted, node 4's off-topic batch rejected")
        for b in submitted:
            approve = b.node != 4
            for member in members[:4]:
                registry.vote_on_batch(member, bytes.fromhex(b.root), approve)
        statuses = {b.root: registry.finalize_batch(deployer, bytes.fromhex(b.root)).status for b in submitted}
        say("Finalized early (the fifth vote could not change any outcome): " + ", ".join(f"node {b.node} {statuses[b.root].name.lower()}" for b in submitted))

        say("An agent syncs the accepted batches, verifying each against the chain")
        with Library(state / "agent.sqlite", embedder) as library:
            report = sync(registry, store, library, state / "sync.json")
            size = len(library)
            say(f"Library: {size} experiences from {len(report.loaded)} batches in {report.seconds} s "
                f"(node 2's 4 repeats merged, counted as support from 2 nodes)")
            questions = [r["question"] for r in gsm8k_records(QUESTIONS_OFFSET + 3)[QUESTIONS_OFFSET:]]
            for question in questions:
                console.print(f"\n[bold]Agent question:[/bold] {question}")
                console.print(library.context_for(question, k=3) or "(no experience applies)")
            supported = max((library.support(h.experience.experience_id) for h in library.search(shared_text, k=1)), default=0)

    table = Table(title="dso demo summary")
    for column in ("node", "batch", "experiences", "bytes", "submit gas", "status"):
        table.add_column(column)
    for b in submitted:
        table.add_row(str(b.node), b.root[:16] + "…", str(b.count), f"{b.bytes:,}", f"{b.gas:,}", statuses[b.root].name.lower())
    console.print(table)
    seconds = round(time.monotonic() - started, 1)
    console.print(f"deploy gas {deploy.gas_used:,}; sync {report.seconds} s; library {size} experiences; whole demo {seconds} s")
    return {
        "statuses": {b.node: statuses[b.root].name.lower() for b in submitted},
        "library_size": size,
        "loaded": len(report.loaded),
        "support_of_shared": supported,
        "submit_gas": [b.gas for b in submitted],
        "sync_seconds": report.seconds,
        "seconds": seconds,
    }
