"""The network effect, end to end: four nodes learn on disjoint GSM8K train shards, publish through
the registry, endorse each other's lessons, members vote, and a fresh agent syncs and answers
held-out questions.

`python scripts/bench.py network [--tasks-per-node N] [--questions N] [--phase learn|network|eval|all] [--node N]`

1. learn: node n runs `dso learn` (`dso.workflows.learn.Learner`, Training-Free GRPO) on the first
   --tasks-per-node problems of its shard, GSM8K train lines 1000 + 4 i + (n - 1), i < 40 (`gsm8k_shard_lines`): no
   two nodes see the same problem and no problem is a held-out one. Each node's run is resumable in STATE/learn-n, so
   `--phase learn --node n` in several processes learns in parallel (one model each).
2. network: a private devnet (Anvil, the IPFS node, the registry with 5 members and 4 nodes); each
   node publishes its lessons from its wallet through the one publish path; the members vote and
   the batches are finalized. A lesson one node reports stays *pending*: the acceptance policy wants
   at least 3 distinct admitted nodes behind an entry (`AcceptancePolicy.min_nodes`), which is what
   keeps a Sybil or a careless node from filling agents' libraries. So each node then syncs, reads
   the pending lessons and endorses (reports again from its own wallet) the other nodes' lessons
   that apply to its own 40 problems (`dso.workflows.endorse`: generality, not usefulness). The
   endorsement batches are voted and finalized too, then a fresh
   agent syncs everything into STATE/agent.sqlite.
3. eval: `dso.bench.agent.run` on held-out GSM8K *test* questions: (a) no experiences, (b) node 1's
   own lessons (an agent that learned alone), (c) the fresh agent's synced network library, (d) as
   many irrelevant lessons as (b)/(c) injected.

The results (bench/results/network.json): per node its learning figures, kept lessons and refusals;
per batch its root, count and gas; the endorsements; what the fresh agent's library accepted; the
agent benchmark's paired comparison. The learned lessons are also written to dso/data/learned/
(node-n.jsonl and MANIFEST.json with the exact command, model, seed and settings) for `dso demo`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from dso.edges.config import dso_home
from dso.edges.datasets import LEARNED_DIR, SHARD_SIZE, gsm8k_shard_lines
from dso.edges.datasets import NETWORK_NODES as NODES
from dso.edges.embed import load_embedder
from dso.edges.files import atomic_write_text
from dso.edges.llm import DEFAULT_LOCAL_MODEL, ChatModel, LLMSettings, open_chat_model
from dso.errors import DsoError, InputError
from dso.workflows.endorse import endorsements

DEFAULT_TASKS_PER_NODE = 4  # what fitted in one session here (16 problems, ~2.5 h of LLM time with the 1.5B model)
# The learning settings of the committed run (dso.workflows.learn.LearnSettings fields).
LEARN_SETTINGS = {"group_size": 4, "batch_size": 4, "max_tokens": 400, "learn_max_tokens": 200, "seed": 0}
PHASES = ("learn", "network", "eval")


def write_shards(state: Path, tasks: int = SHARD_SIZE) -> list[Path]:
    """STATE/shard-n.jsonl for every node (rewritten only if different: a resumed run keeps its file)."""
    paths = []
    for node in range(1, NODES + 1):
        path = state / f"shard-{node}.jsonl"
        text = "".join(line + "\n" for line in gsm8k_shard_lines(node, tasks))
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------- 1. learn


def learn(state: Path, shards: Sequence[Path], nodes: Sequence[int], tasks_per_node: int, chat: ChatModel,
          say: Callable[[str], None]) -> dict[str, Any]:
    """Run (or resume) each node's learning up to its first `tasks_per_node` problems (whole
    batches); return its report figures by node."""
    from dso.workflows.learn import Learner, LearnSettings, read_tasks

    embedder = load_embedder("minilm-int8")
    reports = {}
    for node in nodes:
        tasks, sha = read_tasks(shards[node - 1])
        learner = Learner(chat, embedder, tasks, sha, state / f"learn-{node}", LearnSettings(**LEARN_SETTINGS))
        say(f"node {node}: learning from {len(tasks)} tasks ({learner.state['next_batch'] * LEARN_SETTINGS['batch_size']} done)")
        remaining = tasks_per_node - learner.state["next_batch"] * LEARN_SETTINGS["batch_size"]
        report = learner.run(remaining) if remaining > 0 else learner.report()
        reports[node] = node_figures(report)
        say(f"node {node}: {len(report.lessons)} lessons kept; groups used {report.groups_used}, skipped {report.groups_skipped}; "
            f"refused {report.refused}; {report.completion_tokens} tokens in {report.llm_seconds:.0f} s")
    return reports


def node_figures(report: Any) -> dict[str, Any]:
    """What the results file keeps of a node's `LearnReport`."""
    return {"tasks": report.tasks, "rollouts": report.rollouts, "mean_reward": round(report.mean_reward, 4), "groups_used": report.groups_used,
            "groups_skipped": report.groups_skipped, "lessons": [{"id": k, "text": t, "confidence": c} for k, t, c in report.lessons],
            "refused": report.refused, "unreadable": report.unreadable, "prompt_tokens": report.prompt_tokens,
            "completion_tokens": report.completion_tokens, "llm_seconds": round(report.llm_seconds, 1),
            "tokens_per_second": round(report.tokens_per_second, 2)}


def learned_lessons(state: Path, node: int) -> list[tuple[str, str, float]]:
    """Node `node`'s kept lessons (text, domain, confidence) from its learning state."""
    path = state / f"learn-{node}" / "state.json"
    if not path.exists():
        raise InputError(f"node {node} has not learned yet ({path} missing): run --phase learn first")
    data = json.loads(path.read_text())
    domain = data["settings"]["domain"]
    return [(entry["text"], domain, round(float(entry["confidence"]), 6)) for entry in data["lessons"].values()]


def write_learned(state: Path, folder: Path, command: str, model: str, learn_figures: dict[str, Any] | None) -> Path:
    """dso/data/learned/node-n.jsonl (for `dso submit` and `dso demo`) and MANIFEST.json saying how they were made."""
    from dso.core.experience import Insight
    from dso.workflows.publish import insights_to_jsonl

    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for node in range(1, NODES + 1):
        lessons = learned_lessons(state, node)
        counts[node] = len(lessons)
        atomic_write_text(folder / f"node-{node}.jsonl", insights_to_jsonl(Insight(t, d, c) for t, d, c in lessons))
    manifest = {"made_by": command, "model": model, "learn_settings": LEARN_SETTINGS, "shard": {"file": "GSM8K train (../shared/data/gsm8k/train.jsonl)",
                "lines": f"node n: 1000 + {NODES} i + (n - 1), i < {SHARD_SIZE}"}, "lessons_per_node": counts,
                "tasks_per_node": {n: f["tasks"] for n, f in (learn_figures or {}).items()}}
    atomic_write_text(folder / "MANIFEST.json", json.dumps(manifest, indent=2) + "\n")
    return folder


# ---------------------------------------------------------------------------------------------- 2. network


def network(state: Path, shards: Sequence[Path], say: Callable[[str], None]) -> dict[str, Any]:
    """Publish, vote, endorse, vote, and sync a fresh agent; STATE/agent.sqlite is its library."""
    from dso.bench.agent import library_texts
    from dso.core.experience import Insight
    from dso.edges.ipfs import KuboClient
    from dso.edges.services import free_port
    from dso.workflows.devnet import bring_up
    from dso.workflows.library import Library
    from dso.workflows.publish import Outbox, publish
    from dso.workflows.sync import sync

    embedder = load_embedder("minilm")
    figures: dict[str, Any] = {"batches": [], "endorsements": {}}
    with tempfile.TemporaryDirectory(prefix="dso-network-") as home:
        run = Path(home)
        net = bring_up(run, anvil_port=free_port(), ipfs_port=free_port(), die_with_parent=True)
        try:
            registry = net.registry
            with KuboClient(net.ipfs_api) as store:
                def publish_round(label: str, lessons_by_node: dict[int, list[tuple[str, str, float]]]) -> None:
                    roots = []
                    for node, lessons in lessons_by_node.items():
                        if not lessons:
                            continue
                        insights = [Insight(text, domain, confidence, {"source": "dso learn"}) for text, domain, confidence in lessons]
                        result = publish(insights, net.nodes[node - 1], lambda: embedder, Outbox(run / f"outbox-{node}"), lambda: (store, registry))
                        if result.pending:
                            raise DsoError(f"{label}: node {node} could not commit: {result.pending[0].last_error}")
                        for c in result.committed:
                            roots.append(c.root)
                            figures["batches"].append({"round": label, "node": node, "root": c.root, "count": c.count, "bytes": c.bytes,
                                                       "gas": c.gas_used})
                        say(f"{label}: node {node} committed {len(lessons)} lesson(s)")
                    for root in roots:
                        for member in net.members[:4]:
                            registry.vote_on_batch(member, bytes.fromhex(root), True)
                        status = registry.finalize_batch(net.deployer, bytes.fromhex(root)).status.name.lower()
                        for entry in figures["batches"]:
                            if entry["root"] == root:
                                entry["status"] = status
                    say(f"{label}: {len(roots)} batch(es) voted for by 4 of 5 members and finalized")

                own = {node: learned_lessons(state, node) for node in range(1, NODES + 1)}
                publish_round("own lessons", own)
                endorse: dict[int, list[tuple[str, str, float]]] = {}
                for node in range(1, NODES + 1):
                    with Library(run / f"node-{node}.sqlite", embedder) as library:
                        sync(registry, store, library, run / f"sync-{node}.json")
                        others = library.pending(limit=10_000)
                    questions = [json.loads(line)["question"] for line in shards[node - 1].read_text().splitlines()]
                    chosen = endorsements(others, [t for t, _, _ in own[node]], questions, embedder)
                    endorse[node] = [(p.text, "math", p.confidence) for p in chosen]
                    figures["endorsements"][node] = {"pending": len(others), "endorsed": [p.text for p in chosen]}
                    say(f"node {node}: endorses {len(chosen)} of the {len(others)} pending lessons (its own included)")
                publish_round("endorsements", endorse)
                agent_path = state / "agent.sqlite"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{agent_path}{suffix}").unlink(missing_ok=True)
                with Library(agent_path, embedder) as library:
                    report = sync(registry, store, library, run / "sync-agent.json")
                    a = report.aggregation
                    figures["agent"] = {"batches_loaded": len(report.loaded), "reports": a.reports, "accepted": a.accepted, "pending": a.pending,
                                        "required_support": a.required_support, "active_nodes": a.active_nodes}
                    say(f"fresh agent: {a.reports} reports from {len(report.loaded)} batches -> {a.accepted} accepted "
                        f"(>= {a.required_support} of {a.active_nodes} nodes), {a.pending} pending")
                figures["agent"]["accepted_lessons"] = [{"text": t, "confidence": c} for t, _, c in library_texts(agent_path)]
        finally:
            net.stop()
    return figures


# ---------------------------------------------------------------------------------------------- 3. eval and the whole run


def run(tasks_per_node: int = DEFAULT_TASKS_PER_NODE, questions: int = 40, phases: Sequence[str] = PHASES, nodes: Sequence[int] | None = None,
        model: str | None = None, threads: int = 1, base_url: str | None = None, state: Path | None = None,
        part: tuple[int, int] | None = None, log: Callable[[str], None] | None = None, learned_dir: Path = LEARNED_DIR) -> dict[str, Any]:
    """The phases asked for, in order; the results document (earlier phases' figures are kept in
    STATE/network.json, so a later invocation reports them too)."""
    from dso.bench import agent as agent_bench

    say = log or (lambda text: print(text, file=sys.stderr, flush=True))
    state = Path(state or dso_home() / "bench" / "network")
    state.mkdir(parents=True, exist_ok=True)
    figures_path = state / "network.json"
    figures: dict[str, Any] = json.loads(figures_path.read_text()) if figures_path.exists() else {}
    if not 1 <= tasks_per_node <= SHARD_SIZE:
        raise InputError(f"--tasks-per-node must be 1-{SHARD_SIZE}; got {tasks_per_node}")
    shards = write_shards(state)
    started = time.monotonic()
    chat = None
    try:
        if "learn" in phases or "eval" in phases:
            chat = open_chat_model(LLMSettings.resolve(base_url, model or (None if base_url else DEFAULT_LOCAL_MODEL), threads))
        if "learn" in phases:
            learned = learn(state, shards, list(nodes or range(1, NODES + 1)), tasks_per_node, chat, say)
            figures.setdefault("learn", {}).update({str(k): v for k, v in learned.items()})
            figures["model"] = chat.name
            atomic_write_text(figures_path, json.dumps(figures, indent=2) + "\n")
        if "network" in phases:
            figures["network"] = network(state, shards, say)
            command = f"python scripts/bench.py network --tasks-per-node {tasks_per_node}"
            figures["learned_dir"] = str(write_learned(state, learned_dir, command, figures.get("model", model or DEFAULT_LOCAL_MODEL),
                                                       {int(k): v for k, v in figures.get("learn", {}).items()}))
            atomic_write_text(figures_path, json.dumps(figures, indent=2) + "\n")
        if "eval" in phases:
            own = state / "own-node-1.jsonl"
            from dso.core.experience import Insight
            from dso.workflows.publish import insights_to_jsonl

            atomic_write_text(own, insights_to_jsonl(Insight(t, d, c) for t, d, c in learned_lessons(state, 1)))
            figures["eval"] = agent_bench.run(questions=questions, conditions=["a", "b", "c", "d"], lessons=own, network=state / "agent.sqlite",
                                              threads=threads, base_url=base_url, state=state / "eval.jsonl", chat=chat, log=say, part=part)
            atomic_write_text(figures_path, json.dumps(figures, indent=2) + "\n")
    finally:
        if chat is not None:
            chat.close()
    figures["tasks_per_node"] = tasks_per_node
    figures["wall_seconds_this_invocation"] = round(time.monotonic() - started, 1)
    figures["load_average"] = [round(v, 2) for v in os.getloadavg()]
    return figures


def markdown_table(results: dict[str, Any]) -> str:
    """Per node what it learned and endorsed; the fresh agent's library; the agent comparison."""
    from dso.bench import agent as agent_bench

    rows = ["| node | tasks | mean reward | groups used / skipped | lessons kept | refused | endorsed others' |", "|---|---|---|---|---|---|---|"]
    endorsed = results.get("network", {}).get("endorsements", {})
    for node, f in sorted(results.get("learn", {}).items()):
        refused = sum(f["refused"].values())
        rows.append(f"| {node} | {f['tasks']} | {f['mean_reward']:.2f} | {f['groups_used']} / {f['groups_skipped']} | {len(f['lessons'])} | {refused} | "
                    f"{len(endorsed.get(node, {}).get('endorsed', []))} |")
    agent = results.get("network", {}).get("agent")
    if agent:
        rows += ["", f"Fresh agent: {agent['reports']} reports from {agent['batches_loaded']} batches -> {agent['accepted']} accepted "
                     f"(>= {agent['required_support']} of {agent['active_nodes']} nodes), {agent['pending']} pending."]
    if results.get("eval"):
        rows += ["", agent_bench.markdown_table(results["eval"])]
    return "\n".join(rows)


def options(argv: Sequence[str]) -> dict[str, Any]:
    """run()'s keyword arguments from `scripts/bench.py network` options."""
    parser = argparse.ArgumentParser(prog="scripts/bench.py network", description="Four nodes learn, publish, endorse; a fresh agent syncs and answers.")
    parser.add_argument("--tasks-per-node", type=int, default=DEFAULT_TASKS_PER_NODE)
    parser.add_argument("--questions", type=int, default=40, help="held-out GSM8K test questions in the eval phase")
    parser.add_argument("--phase", default="all", help="learn, network, eval or all (comma-separated)")
    parser.add_argument("--node", type=int, action="append", default=None, help="learn only this node (repeatable; parallel processes)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--state", type=Path, default=None, help="state directory (default $DSO_HOME/bench/network)")
    parser.add_argument("--part", default=None, help="i/n: in the eval phase, answer every n-th question from the i-th")
    args = parser.parse_args(list(argv))
    phases = PHASES if args.phase == "all" else tuple(p.strip() for p in args.phase.split(","))
    if not phases or any(p not in PHASES for p in phases):
        raise InputError(f"--phase must be all or among {', '.join(PHASES)}; got {args.phase!r}")
    if args.tasks_per_node < 1:
        raise InputError(f"--tasks-per-node must be at least 1; got {args.tasks_per_node}")
    from dso.bench.agent import options as agent_options

    part = agent_options(["--part", args.part])["part"] if args.part else None
    return {"tasks_per_node": args.tasks_per_node, "questions": args.questions, "phases": phases, "nodes": args.node, "model": args.model,
            "threads": args.threads, "base_url": args.base_url, "state": args.state, "part": part}

