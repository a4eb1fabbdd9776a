"""`dso demo`: the four user jobs on a private devnet, narrated step by step.

1. bring up Anvil and the IPFS node, deploy the registry (5 DAO members, 4 nodes, no owner);
2. each node distils experiences from GSM8K solutions and submits them from its wallet: embed,
   compress, batch, Merkle root, pin to IPFS, commit on-chain (through the durable outbox).
   Each of 32 lessons is learned by three of the four nodes, each wording it its own way, and each
   node also has two lessons no other node reports; node 4 then publishes a careless batch
   (off-topic sentences labelled as math);
3. members vote: the four honest batches accepted, the careless one rejected; all finalized;
4. an agent syncs the accepted batches (CID, root, count and schema verified against the chain),
   aggregates the reports (one voice per admitted node: the 32 shared lessons reach the 3-node
   bar, the 8 single-node ones wait for support) and answers a few questions.

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

from dso.core.experience import Insight
from dso.edges.datasets import gsm8k_insights, gsm8k_records, sts_pairs
from dso.edges.embed import load_embedder
from dso.edges.ipfs import KuboClient
from dso.edges.services import free_port
from dso.workflows.devnet import Devnet, bring_up
from dso.workflows.library import Library
from dso.workflows.publish import Outbox, insights_to_jsonl, publish, read_insights
from dso.workflows.sync import sync

NODES = 4
SHARED_LESSONS = 32  # each learned by NODES - 1 nodes
NICHE_PER_NODE = 2  # lessons only one node reports
CARELESS_SIZE = 24
QUESTIONS_OFFSET = 7_000  # GSM8K problems far from the ones the nodes distil
VOTING_PERIOD = 600


@dataclass(frozen=True)
class SubmittedBatch:
    node: int
    root: str
    count: int
    bytes: int
    gas: int
    label: str
    honest: bool


def node_inputs() -> list[tuple[int, str, list[Insight], bool]]:
    """What the nodes publish: (node number, label, insights, honest). Node n skips shared lesson
    j when j % 4 == n - 1, so every shared lesson has three reporters, and words its lessons in
    its own style (dso.edges.datasets.STYLES)."""
    batches = []
    for n in range(1, NODES + 1):
        shared = [i for j, i in enumerate(gsm8k_insights(SHARED_LESSONS, style=n - 1)) if j % NODES != n - 1]
        niche = gsm8k_insights(NICHE_PER_NODE, offset=SHARED_LESSONS + NICHE_PER_NODE * (n - 1), style=n - 1)
        batches.append((n, f"{len(shared)} shared + {len(niche)} own lessons, style {n}", shared + niche, True))
    careless = [Insight(p.first, "math.algebra", 0.99) for p in sts_pairs("dev")[:CARELESS_SIZE]]
    batches.append((NODES, "off-topic sentences labelled as algebra", careless, False))
    return batches


def run_demo(console: Console) -> dict[str, object]:
    """Run the whole demo; return the summary figures. Services are always stopped."""
    say = lambda text: console.print(f"[bold cyan]▶[/bold cyan] {text}")  # noqa: E731
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dso-demo-") as home:
        state = Path(home)
        say("Starting the devnet: Anvil and an offline IPFS node; deploying ExperienceRegistry with 5 DAO members, 4 admitted nodes, no owner key")
        net = bring_up(state, anvil_port=free_port(), ipfs_port=free_port(), voting_period=VOTING_PERIOD, die_with_parent=True)
        try:
            return _run(console, say, state, net, started)
        finally:
            net.stop()
            say("Devnet stopped")


def _run(console: Console, say, state: Path, net: Devnet, started: float) -> dict[str, object]:
    registry, deploy, deployer, members, nodes = net.registry, net.deploy, net.deployer, net.members, net.nodes
    say("Loading the embedding model (all-MiniLM-L6-v2, offline)")
    embedder = load_embedder("minilm")
    submitted: list[SubmittedBatch] = []
    inputs = node_inputs()
    shared_text = inputs[1][2][0].text  # shared lesson 0 as node 2 words it (nodes 2-4 report it)
    with KuboClient(net.ipfs_api) as store:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("nodes submitting batches", total=len(inputs))
            for index, (node, label, insights, honest) in enumerate(inputs):
                path = state / f"batch{index + 1}.jsonl"
                path.write_text(insights_to_jsonl(insights))
                outbox = Outbox(state / f"outbox-node{node}")
                result = publish(read_insights(path), nodes[node - 1], lambda: embedder, outbox, lambda: (store, registry))
                if result.pending:
                    raise RuntimeError(f"node {node} could not commit: {result.pending[0].last_error}")
                c = result.committed[0]
                submitted.append(SubmittedBatch(node, c.root, c.count, c.bytes, c.gas_used or 0, label, honest))
                bar.advance(task)
        for b in submitted:
            say(f"Node {b.node} committed {b.count} experiences ({b.label}): root {b.root[:12]}…, {b.bytes:,} B on IPFS, {b.gas:,} gas")

        say("DAO members review and vote: the four honest batches accepted, the off-topic one rejected")
        for b in submitted:
            for member in members[:4]:
                registry.vote_on_batch(member, bytes.fromhex(b.root), b.honest)
        statuses = {b.root: registry.finalize_batch(deployer, bytes.fromhex(b.root)).status for b in submitted}
        say("Finalized early (the fifth vote could not change any outcome): " + ", ".join(
            f"batch {i} {statuses[b.root].name.lower()}" for i, b in enumerate(submitted, 1)))

        say("An agent syncs the accepted batches, verifying each against the chain, and aggregates the reports")
        with Library(state / "agent.sqlite", embedder) as library:
            report = sync(registry, store, library, state / "sync.json")
            a = report.aggregation
            size = len(library)
            say(f"{a.reports} verified reports from {len(report.loaded)} batches in {report.seconds} s → {a.accepted} experiences "
                f"accepted (each backed by >= {a.required_support} of {a.active_nodes} nodes, one voice per node), "
                f"{a.pending} single-node ones awaiting support")
            questions = [r["question"] for r in gsm8k_records(QUESTIONS_OFFSET + 3)[QUESTIONS_OFFSET:]]
            for question in questions:
                console.print(f"\n[bold]Agent question:[/bold] {question}")
                console.print(library.context_for(question, k=3) or "(no experience applies)")
            supported = max((h.support for h in library.search(shared_text, k=1)), default=0)

    table = Table(title="dso demo summary")
    for column in ("batch", "node", "root", "experiences", "bytes", "submit gas", "status"):
        table.add_column(column)
    for i, b in enumerate(submitted, 1):
        table.add_row(str(i), str(b.node), b.root[:16] + "…", str(b.count), f"{b.bytes:,}", f"{b.gas:,}", statuses[b.root].name.lower())
    console.print(table)
    seconds = round(time.monotonic() - started, 1)
    console.print(f"deploy gas {deploy.gas_used:,}; sync {report.seconds} s; library {size} experiences "
                  f"({a.pending} awaiting support); whole demo {seconds} s")
    return {
        "statuses": {i: statuses[b.root].name.lower() for i, b in enumerate(submitted, 1)},
        "library_size": size,
        "pending": a.pending,
        "reports": a.reports,
        "loaded": len(report.loaded),
        "support_of_shared": supported,
        "submit_gas": [b.gas for b in submitted],
        "sync_seconds": report.seconds,
        "seconds": seconds,
    }
