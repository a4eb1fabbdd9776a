"""`dso query` over a real local library, in each output format."""

from __future__ import annotations

import json

from click.testing import CliRunner

from dso.cli import cli
from dso.codec import baseline_id, get_codec, load_baseline
from dso.datasets import gsm8k_insights
from dso.embed import load_embedder
from dso.experience import Experience
from dso.library import Library, Source

NODE = bytes.fromhex("976ea74026e726554db657fa54763abd0c3a0aa9")


def test_query_formats(tmp_path, monkeypatch):
    monkeypatch.setenv("DSO_HOME", str(tmp_path))
    embedder = load_embedder("minilm")
    insights = gsm8k_insights(40)
    codes = get_codec("bitdelta-1", 384).encode(embedder.embed([i.text for i in insights]))
    with Library(tmp_path / "library.sqlite", embedder) as library:
        for node_id in (1, 2, 3):  # three nodes report the same lessons: enough support to be accepted
            node = bytes([node_id]) * 20
            experiences = [Experience.create(i.text, i.domain, i.confidence, "all-MiniLM-L6-v2", "bitdelta-1", bytes(c), node, 1) for i, c in zip(insights, codes)]
            library.add_reports(experiences, bytes.fromhex(baseline_id(load_baseline())), Source(bytes([node_id]) * 32, node_id))
        assert library.aggregate({1, 2, 3}).accepted == len(insights)
    runner = CliRunner()
    target = insights[11]
    as_json = runner.invoke(cli, ["query", target.text, "-k", "3", "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    hits = json.loads(as_json.output)
    assert hits[0]["text"] == target.text and len(hits) == 3 and hits[0]["support"] == 3
    prompt = runner.invoke(cli, ["query", target.text, "--format", "prompt", "-k", "2"])
    assert prompt.output.startswith("Relevant experiences") and target.text in prompt.output
    filtered = runner.invoke(cli, ["query", "money", "--domain", "math.money", "--format", "json", "-k", "10"])
    assert all(h["domain"] == "math.money" for h in json.loads(filtered.output))
    table = runner.invoke(cli, ["query", target.text, "-k", "1"])
    assert table.exit_code == 0 and "score" in table.output


def test_query_without_a_library_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("DSO_HOME", str(tmp_path))
    result = CliRunner().invoke(cli, ["query", "anything"])
    assert result.exit_code != 0 and "dso sync" in str(result.exception)
