"""Every figure in the README comes from bench/results/, and the README states the real commands."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def between(marker: str) -> str:
    match = re.search(rf"<!-- {marker}:start -->\n(.*?)\n<!-- {marker}:end -->", README, re.S)
    assert match, f"README lacks the {marker} markers"
    return match.group(1).strip()


@pytest.mark.parametrize("name", ["gas", "retrieval", "size", "store", "crossmodel", "byzantine", "mcp", "gate", "agent", "scale", "network"])
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
    pinned, cbor = bitdelta["document_bytes_per_experience"]["256"], bitdelta["document_cbor_bytes_per_experience"]["256"]
    assert f"{pinned} B per experience, text included, at a\nbatch of 256 ({cbor} B uncompressed)" in README
    assert f"({round(size['text_bytes_mean'])} B on average here)" in README


def test_gas_results_meet_the_targets():
    gas = json.loads((ROOT / "bench" / "results" / "gas.json").read_text())["gas"]
    assert gas["submitBatch (later batch)"] <= 80_000
    assert gas["voteOnBatch (first voter)"] <= 50_000 and gas["voteOnBatch (later voter)"] <= 50_000


def test_readme_figures_in_prose_match_results():
    gas = json.loads((ROOT / "bench" / "results" / "gas.json").read_text())["gas"]
    first_overflow = gas["voteOnBatch (seat >= 64, first in its word)"]
    assert f"({first_overflow / 1000:.1f}k)" in README
    [small] = [g for name, g in gas.items() if name.startswith("proposeRevokeLeaf (16 leaves")]
    [largest] = [g for name, g in gas.items() if name.startswith("proposeRevokeLeaf (65,536 leaves")]
    assert f"costs {small / 1000:.1f}k gas in a 16-leaf batch and {largest / 1000:.1f}k in the largest batch" in README


def test_ci_runs_the_readme_test_command():
    command = "bash scripts/setup.sh && bash scripts/test.sh"
    assert f"```bash\n{command}\n```" in README
    assert command in (ROOT / ".ci" / "run").read_text()
    assert "```bash\nbash scripts/setup.sh && .venv/bin/dso demo\n```" in README


def test_readme_crossmodel_claims_match_results():
    rows = json.loads((ROOT / "bench" / "results" / "crossmodel.json").read_text())["rows"]

    def recall(model: str, dataset: str, approach: str, against: str) -> float:
        [row] = [r for r in rows if (r["model"], r["dataset"], r["approach"]) == (model, dataset, approach)]
        return row["recall_at_10"][against]

    reembed, aligned = "(a) re-embed docs with B, B float", "(b) procrustes pad, 1000 anchors, MiniLM float"
    assert f"({recall('mpnet', 'gsm8k', aligned, 'vs MiniLM top-10'):.3f} vs {recall('mpnet', 'gsm8k', reembed, 'vs MiniLM top-10'):.3f} for mpnet)" in README
    uncentered = "(b) procrustes pad, not centered, 1000 anchors, MiniLM float"
    assert f"({recall('e5-small', 'gsm8k', aligned, 'vs MiniLM top-10'):.2f} vs {recall('e5-small', 'gsm8k', uncentered, 'vs MiniLM top-10'):.2f} without)" in README
    assert f"matches only {recall('mpnet', 'gsm8k', 'reference: MiniLM query (native agent), MiniLM float', 'vs B top-10'):.3f}" in README


def test_readme_mcp_claims_match_results():
    results = json.loads((ROOT / "bench" / "results" / "mcp.json").read_text())
    call = results["server"]["search_call_ms"]
    assert results["experiences"] == 10_000
    assert f"takes {call['median']} ms (median; p90 {call['p90']} ms)" in README
    assert f"the search itself is {results['library_search_in_process_ms']['median']} ms" in README
    assert f"`dso query` with the same model costs {results['dso_query_cold_process_s']} s" in README


def test_readme_agent_claims_match_results():
    results = json.loads((ROOT / "bench" / "results" / "agent.json").read_text())
    a, e = results["conditions"]["a"], results["conditions"]["e"]
    answers = a["answered"] + e["answered"]
    wall = results["wall_seconds_this_invocation"]
    tokens_per_second = (a["completion_tokens"] + e["completion_tokens"]) / (a["llm_seconds"] + e["llm_seconds"])
    assert f"--questions {results['questions']['count']} --conditions a,e --model {results['model']} --threads {results['threads']}" in README
    assert f"{answers} answers in {wall:.0f} s ({wall / answers:.0f} s each, {tokens_per_second:.1f} generated tokens/s" in README
    assert f"Both conditions answered {a['correct']} of {a['answered']} right" in README and e["correct"] == a["correct"]
    pair = results["paired"]["e"]
    assert (pair["gained"], pair["lost"], pair["ci95"], pair["mcnemar_p"]) == (0, 0, [0.0, 0.0], 1.0)  # what the prose says about the interval
    assert f"{e['quality']['copies_task']:.0%} of them copy a" in README


def test_readme_scale_claims_match_results():
    parts = json.loads((ROOT / "bench" / "results" / "scale.json").read_text())["parts"]
    sync = parts["sync"]["rows"][-1]
    assert f"{sync['experiences_per_second']:,.0f} experiences/s at {sync['experiences']:,}" in README
    assert f"aggregation takes the other {sync['aggregate_seconds']:.1f} s" in README
    assert f"took {sync['incremental_16_seconds']} s (target 0.5 s" in README
    million = parts["aggregate"]["rows"][-1]
    assert f"**Missed: aggregation time at 1M reports**, {million['aggregate_seconds']:.0f} s" in README
    search = parts["search"]["rows"][-1]
    assert f"{search['warm_ms_median']} ms warm with recall@10 {search['recall_at_10']}" in README


def test_readme_network_claims_match_results():
    results = json.loads((ROOT / "bench" / "results" / "network.json").read_text())
    conditions, paired = results["eval"]["conditions"], results["eval"]["paired"]
    learn = results["learn"].values()
    assert f"{sum(f['completion_tokens'] for f in learn):,} generated tokens" in README
    assert f"{sum(f['groups_used'] for f in learn)} of the {sum(f['tasks'] for f in learn)} groups had reward variance" in README
    assert f"kept {sum(len(f['lessons']) for f in learn)}" in README and f"carried {results['network']['agent']['accepted']} to the" in README
    assert f"(a) answered {conditions['a']['correct']} right" in README
    for key in ("b", "c", "d"):
        low, high = paired[key]["ci95"]
        assert f"[{low:+.3f}, {high:+.3f}]" in README
        assert low <= 0.0 <= high  # what the prose says: every interval includes 0
