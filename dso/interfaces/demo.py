"""`dso demo`: the four user jobs on a private devnet, narrated step by step, with learned lessons.

1. bring up Anvil and the IPFS node, deploy the registry (5 DAO members, 4 nodes, no owner);
2. each node publishes the lessons it learned with `dso learn` (Training-Free GRPO, Qwen2.5-Coder-1.5B)
   on its own 40 GSM8K train problems: `dso/data/learned/node-n.jsonl`, made by
   `python scripts/bench.py network` (MANIFEST.json there has the exact command, model, seed and
   settings): embed, compress, batch, Merkle root, pin to IPFS, commit on-chain through the durable
   outbox. Node 4 then publishes a careless batch (off-topic sentences labelled as math);
3. members vote: the learned batches accepted, the careless one rejected; all finalized;
4. a lesson one node reports stays pending (the network wants 3 distinct admitted nodes behind an
   entry), so each node syncs and endorses the other nodes' pending lessons that apply to its own
   problems (`dso.workflows.endorse`); those batches are voted on too;
5. a fresh agent syncs the accepted batches (CID, root, count and schema verified against the
   chain), aggregates the reports (one voice per admitted node) and, for a few GSM8K problems no
   node learned from, shows which lessons its relevance gate would inject (`dso ask` without the LLM).

All state lives in a temporary directory; both services are stopped at the end.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dso.core.experience import Insight
from dso.edges.datasets import LEARNED_DIR, NETWORK_NODES, gsm8k_records, gsm8k_shard_lines, sts_pairs
from dso.edges.embed import load_embedder
from dso.edges.ipfs import KuboClient
from dso.edges.services import free_port
from dso.errors import DsoError
from dso.workflows.agent import RelevanceGate, select_experiences
from dso.workflows.devnet import Devnet, bring_up
from dso.workflows.endorse import endorsements
from dso.workflows.library import Library
from dso.workflows.publish import Outbox, publish, read_insights
from dso.workflows.sync import sync

NODES = NETWORK_NODES
CARELESS_SIZE = 24
QUESTIONS_OFFSET = 7_000  # GSM8K train problems far from every node's shard (lines 1000-1159)
QUESTIONS = 3
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


def learned_lessons() -> dict[int, list[Insight]]:
    """Each node's learned lessons (dso/data/learned/node-n.jsonl; a node may have learned none)."""
    lessons = {}
    for node in range(1, NODES + 1):
        path = LEARNED_DIR / f"node-{node}.jsonl"
        if not path.exists():
            raise DsoError(f"{path} is missing: the demo publishes the lessons `python scripts/bench.py network` learned")
        lessons[node] = read_insights(path) if path.read_text(encoding="utf-8").strip() else []
    if not any(lessons.values()):
        raise DsoError(f"no node has a learned lesson in {LEARNED_DIR}")
    return lessons


def careless_batch() -> list[Insight]:
    """Off-topic sentences (STS-B) labelled as algebra: what the members must reject."""
    return [Insight(p.first, "math.algebra", 0.99) for p in sts_pairs("dev")[:CARELESS_SIZE]]


def run_demo(console: Console) -> dict[str, object]:
    """Run the whole demo; return the summary figures. Services are always stopped."""
    say = lambda text: console.print(f"[bold cyan]▶[/bold cyan] {text}")  # noqa: E731
    started = time.monotonic()
    lessons = learned_lessons()
    with tempfile.TemporaryDirectory(prefix="dso-demo-") as home:
        state = Path(home)
        say("Starting the devnet: Anvil and an offline IPFS node; deploying ExperienceRegistry with 5 DAO members, 4 admitted nodes, no owner key")
        net = bring_up(state, anvil_port=free_port(), ipfs_port=free_port(), voting_period=VOTING_PERIOD, die_with_parent=True)
        try:
            return _run(console, say, state, net, lessons, started)
        finally:
            net.stop()
            say("Devnet stopped")


def _run(console: Console, say, state: Path, net: Devnet, lessons: dict[int, list[Insight]], started: float) -> dict[str, object]:
    registry = net.registry
    manifest = json.loads((LEARNED_DIR / "MANIFEST.json").read_text()) if (LEARNED_DIR / "MANIFEST.json").exists() else {}
    say("Loading the embedding model (all-MiniLM-L6-v2, offline)")
    embedder = load_embedder("minilm")
    submitted: list[SubmittedBatch] = []
    with KuboClient(net.ipfs_api) as store:

        def submit(node: int, insights: list[Insight], label: str, honest: bool) -> SubmittedBatch:
            result = publish(insights, net.nodes[node - 1], lambda: embedder, Outbox(state / f"outbox-node{node}"), lambda: (store, registry))
            if result.pending:
                raise DsoError(f"node {node} could not commit: {result.pending[0].last_error}")
            c = result.committed[0]
            batch = SubmittedBatch(node, c.root, c.count, c.bytes, c.gas_used or 0, label, honest)
            submitted.append(batch)
            say(f"Node {node} committed {c.count} experience{'s' if c.count != 1 else ''} ({label}): root {c.root[:12]}…, {c.bytes:,} B on IPFS, {batch.gas:,} gas")
            return batch

        def vote(batches: list[SubmittedBatch]) -> dict[str, str]:
            for b in batches:
                for member in net.members[:4]:
                    registry.vote_on_batch(member, bytes.fromhex(b.root), b.honest)
            return {b.root: registry.finalize_batch(net.deployer, bytes.fromhex(b.root)).status.name.lower() for b in batches}

        say(f"Each node publishes the lessons it learned with `dso learn` ({manifest.get('model', 'see MANIFEST.json')}, "
            f"{manifest.get('made_by', '')}) on its own GSM8K train problems")
        first = [submit(node, insights, "learned lessons", True) for node, insights in lessons.items() if insights]
        first.append(submit(NODES, careless_batch(), "off-topic sentences labelled as algebra", False))
        statuses = vote(first)
        say("DAO members review and vote; finalized early (the fifth vote could not change any outcome): " + ", ".join(
            f"node {b.node} {statuses[b.root]}" for b in first))

        say("A lesson one node reports stays pending (3 distinct nodes are needed): each node syncs and endorses the "
            "other nodes' lessons that apply to its own problems")
        second = []
        endorsed_texts: dict[int, list[str]] = {}
        for node in range(1, NODES + 1):
            with Library(state / f"node{node}.sqlite", embedder) as library:
                sync(registry, store, library, state / f"node{node}-sync.json")
                pending = library.pending(limit=10_000)
            problems = [json.loads(line)["question"] for line in gsm8k_shard_lines(node)]
            chosen = endorsements(pending, [i.text for i in lessons[node]], problems, embedder)
            endorsed_texts[node] = [p.text for p in chosen]
            if chosen:
                insights = [Insight(p.text, "math", round(p.confidence, 6), {"source": "endorsement"}) for p in chosen]
                second.append(submit(node, insights, f"endorses {len(chosen)} of {len(pending)} pending lessons", True))
            else:
                say(f"Node {node} endorses none of the {len(pending)} pending lessons")
        statuses |= vote(second)

        say("A fresh agent syncs the accepted batches, verifying each against the chain, and aggregates the reports")
        with Library(state / "agent.sqlite", embedder) as library:
            report = sync(registry, store, library, state / "sync.json")
            a = report.aggregation
            size = len(library)
            say(f"{a.reports} verified reports from {len(report.loaded)} batches in {report.seconds} s → {a.accepted} lessons "
                f"accepted (each backed by >= {a.required_support} of {a.active_nodes} nodes, one voice per node), "
                f"{a.pending} awaiting support")
            gate = RelevanceGate()
            questions = [r["question"] for r in gsm8k_records(QUESTIONS_OFFSET + QUESTIONS)[QUESTIONS_OFFSET:]]
            injected = 0
            for question in questions:
                selection = select_experiences(library, question, gate)
                injected += bool(selection.used)
                console.print(f"\n[bold]Agent question:[/bold] {question}")
                if selection.used:
                    for hit in selection.used:
                        console.print(f"  [green]injected[/green] (similarity {hit.score:.2f}, {hit.support} nodes) {hit.experience.text}")
                else:
                    closest = selection.refused[0] if selection.refused else None
                    why = f"; closest: {closest[1]}" if closest else ""
                    console.print(f"  no lesson passes the relevance gate (similarity >= {gate.min_similarity}){why}: the agent answers alone")

    table = Table(title="dso demo summary")
    for column in ("batch", "node", "root", "experiences", "bytes", "submit gas", "status"):
        table.add_column(column)
    for i, b in enumerate(submitted, 1):
        table.add_row(str(i), str(b.node), b.root[:16] + "…", str(b.count), f"{b.bytes:,}", f"{b.gas:,}", statuses[b.root])
    console.print(table)
    seconds = round(time.monotonic() - started, 1)
    console.print(f"deploy gas {net.deploy.gas_used:,}; sync {report.seconds} s; library {size} lessons "
                  f"({a.pending} awaiting support); whole demo {seconds} s")
    return {
        "statuses": {i: statuses[b.root] for i, b in enumerate(submitted, 1)},
        "honest": {i: b.honest for i, b in enumerate(submitted, 1)},
        "learned": {node: len(insights) for node, insights in lessons.items()},
        "endorsed": endorsed_texts,
        "library_size": size,
        "pending": a.pending,
        "reports": a.reports,
        "loaded": len(report.loaded),
        "required_support": a.required_support,
        "questions_with_lessons": injected,
        "submit_gas": [b.gas for b in submitted],
        "sync_seconds": report.seconds,
        "seconds": seconds,
    }
