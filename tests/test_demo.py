"""`dso demo` runs the four jobs to the expected end state and leaves no service behind."""

from __future__ import annotations

import io

from rich.console import Console

from dso.interfaces.demo import NICHE_PER_NODE, NODES, SHARED_LESSONS, run_demo


def test_demo_accepts_the_honest_batches_rejects_the_careless_one_and_aggregates_by_node():
    output = io.StringIO()
    summary = run_demo(Console(file=output, width=200))
    assert summary["statuses"] == {1: "accepted", 2: "accepted", 3: "accepted", 4: "accepted", 5: "rejected"}
    assert summary["loaded"] == NODES
    assert summary["reports"] == NODES * (SHARED_LESSONS * (NODES - 1) // NODES + NICHE_PER_NODE)
    # every shared lesson (3 reporters, three wordings) is one entry; single-node lessons wait
    assert summary["library_size"] == SHARED_LESSONS
    assert summary["pending"] == NODES * NICHE_PER_NODE
    assert summary["support_of_shared"] == NODES - 1
    assert all(gas <= 80_000 for gas in summary["submit_gas"])
    text = output.getvalue()
    assert text.count("Relevant experiences") == 3 and "Devnet stopped" in text
