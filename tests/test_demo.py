"""`dso demo` runs the lifecycle to the expected end state and leaves no Anvil behind."""

from __future__ import annotations

import io

from rich.console import Console

from dso.demo import run_demo


def test_demo_accepts_one_batch_rejects_the_other_and_admits_a_member():
    summary = run_demo(Console(file=io.StringIO()))
    assert summary["accepted"] and summary["rejected"] and summary["member_added"]
    assert summary["gas"]["submitBatch"] <= 80_000
