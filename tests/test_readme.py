"""Every figure in the README comes from bench/results/, and the README states the real commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

from dso.bench.gas import markdown_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def between(marker: str) -> str:
    match = re.search(rf"<!-- {marker}:start -->\n(.*?)\n<!-- {marker}:end -->", README, re.S)
    assert match, f"README lacks the {marker} markers"
    return match.group(1).strip()


def test_gas_table_matches_the_benchmark_results():
    results = json.loads((ROOT / "bench" / "results" / "gas.json").read_text())
    assert between("gas-table") == markdown_table(results), "regenerate with: python scripts/bench.py gas --markdown"


def test_gas_results_meet_the_targets():
    gas = json.loads((ROOT / "bench" / "results" / "gas.json").read_text())["gas"]
    assert gas["submitBatch (later batch)"] <= 80_000
    assert gas["voteOnBatch (first voter)"] <= 50_000 and gas["voteOnBatch (later voter)"] <= 50_000


def test_readme_figures_in_prose_match_results():
    gas = json.loads((ROOT / "bench" / "results" / "gas.json").read_text())["gas"]
    first_overflow = gas["voteOnBatch (seat >= 64, first in its word)"]
    assert f"({first_overflow / 1000:.1f}k)" in README


def test_ci_runs_the_readme_test_command():
    command = "bash scripts/setup.sh && bash scripts/test.sh"
    assert f"```bash\n{command}\n```" in README
    assert command in (ROOT / ".ci" / "run").read_text()
    assert "```bash\nbash scripts/setup.sh && .venv/bin/dso demo\n```" in README
