"""`dso demo` runs the four jobs to the expected end state with the committed learned lessons and
leaves no service behind."""

from __future__ import annotations

import io
import json

from rich.console import Console

from dso.interfaces.demo import LEARNED_DIR, NODES, QUESTIONS, run_demo
from dso.workflows.publish import read_insights


def test_demo_publishes_learned_lessons_rejects_the_careless_batch_and_accepts_what_three_nodes_back():
    output = io.StringIO()
    summary = run_demo(Console(file=output, width=200))
    honest = summary["honest"]
    assert [summary["statuses"][i] for i in honest if not honest[i]] == ["rejected"]
    assert all(summary["statuses"][i] == "accepted" for i in honest if honest[i])
    learned = {node: [i.text for i in read_insights(LEARNED_DIR / f"node-{node}.jsonl")] if summary["learned"][node] else []
               for node in range(1, NODES + 1)}
    assert summary["learned"] == {node: len(texts) for node, texts in learned.items()}
    endorsed = summary["endorsed"]
    for node in range(1, NODES + 1):  # a node endorses other nodes' lessons only
        assert not set(endorsed[node]) & set(learned[node])
        assert set(endorsed[node]) <= {t for other, texts in learned.items() if other != node for t in texts}
    assert summary["reports"] == sum(map(len, learned.values())) + sum(map(len, endorsed.values()))
    backers = {t: 1 + sum(t in texts for texts in endorsed.values()) for texts in learned.values() for t in texts}
    assert summary["required_support"] == 3
    assert summary["library_size"] == sum(n >= 3 for n in backers.values())  # learned lessons are far apart: one entry each
    assert summary["library_size"] + summary["pending"] == len(backers)
    assert all(gas <= 120_000 for gas in summary["submit_gas"])
    text = output.getvalue()
    assert text.count("Agent question:") == QUESTIONS and "Devnet stopped" in text
    manifest = json.loads((LEARNED_DIR / "MANIFEST.json").read_text())
    assert manifest["made_by"].startswith("python scripts/bench.py network") and manifest["model"]
