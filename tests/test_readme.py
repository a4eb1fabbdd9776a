"""Every figure in the README comes from bench/results/, and the README states the real commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

import importlib

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def between(marker: str) -> str:
    match = re.search(rf"<!-- {marker}:start -->\n(.*?)\n<!-- {marker}:end -->", README, re.S)
    assert match, f"README lacks the {marker} markers"
    return match.group(1).strip()


@pytest.mark.parametrize("name", ["gas", "retrieval", "size", "store"])
def test_readme_tables_match_the_benchmark_results(name):
    results = json.loads((ROOT / "bench" / "results" / f"{name}.json").read_text())
    render = importlib.import_module(f"dso.bench.{name}").markdown_table
    assert between(f"{name}-table") == render(results).strip(), f"regenerate with: python scripts/bench.py {name} --markdown"


def test_readme_retrieval_claims_match_results():
    default = json.loads((ROOT / "bench" / "results" / "retrieval.json").read_text())["default"]
    recall = default["recall_at_10"]
    assert default["codec"] == "bitdelta-1" and default["rescore_top"] == 100
    assert f"recall@10 = {recall['gsm8k']:.3f} on GSM8K and {recall['sts-b']:.3f} on STS-B" in README


def test_readme_size_claims_match_results():
    size = json.loads((ROOT / "bench" / "results" / "size.json").read_text())
    bitdelta = size["codecs"]["bitdelta-1"]
    assert f"costs {round(bitdelta['leaf_bytes_mean'])} B in a batch" in README
    assert f"{bitdelta['compression_vs_float32']}x smaller than float32" in README
    assert f"({round(size['text_bytes_mean'])} B on average here)" in README


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
