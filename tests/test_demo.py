"""`dso demo` runs the four jobs to the expected end state and leaves no service behind."""

from __future__ import annotations

import io

from rich.console import Console

from dso.demo import BATCH_SIZE, run_demo


def test_demo_accepts_three_batches_rejects_the_careless_one_and_merges_repeats():
    output = io.StringIO()
    summary = run_demo(Console(file=output, width=200))
    assert summary["statuses"] == {1: "accepted", 2: "accepted", 3: "accepted", 4: "rejected"}
    assert summary["loaded"] == 3
    assert summary["library_size"] == 3 * BATCH_SIZE - 4  # node 2's four repeats are merged
    assert summary["support_of_shared"] == 2
    assert all(gas <= 80_000 for gas in summary["submit_gas"])
    text = output.getvalue()
    assert text.count("Relevant experiences") == 3 and "Devnet stopped" in text
