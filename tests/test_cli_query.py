"""`dso query` over a real local library, in each output format; `dso align fit/show` and
`dso query --query-model e5-small --alignment FILE` with the real models, end to end."""

from __future__ import annotations

import json
import re

import click
import numpy as np
from click.testing import CliRunner

from dso.core.align import HEADER, Alignment, fit_procrustes
from dso.core.codec import baseline_id, get_codec, load_baseline
from dso.core.experience import Experience
from dso.core.models import MODEL_ID
from dso.edges.datasets import gsm8k_insights
from dso.edges.embed import QUERY_MODEL_LOADERS, load_embedder, load_query_model
from dso.edges.files import atomic_write_bytes
from dso.errors import AlignmentError
from dso.interfaces.cli import cli
from dso.workflows.library import Library, Source

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


def local_library(path, count: int) -> list:
    """A library at `path` holding the first `count` GSM8K lessons as local entries."""
    embedder = load_embedder("minilm")
    insights = gsm8k_insights(count)
    codes = get_codec("bitdelta-1", 384).encode(embedder.embed([i.text for i in insights]))
    with Library(path, embedder) as library:
        library.add_many([Experience.create(i.text, i.domain, i.confidence, "all-MiniLM-L6-v2", "bitdelta-1", bytes(c), NODE, 1)
                          for i, c in zip(insights, codes)], bytes.fromhex(baseline_id(load_baseline())))
    return insights


def test_align_fit_then_show_then_an_e5_query_through_the_alignment(tmp_path, monkeypatch):
    monkeypatch.setenv("DSO_HOME", str(tmp_path))
    insights = local_library(tmp_path / "library.sqlite", 60)
    runner = CliRunner()
    file = tmp_path / "e5-small.align"
    fitted = runner.invoke(cli, ["align", "fit", "e5-small", "-o", str(file), "--anchors", "400"])
    assert fitted.exit_code == 0, fitted.output
    alignment = Alignment.from_bytes(file.read_bytes())
    # the file names both models (issue 11): a length byte and the id of each, then the arrays
    assert (alignment.source_model, alignment.target_model) == (load_query_model("e5-small").model_id, MODEL_ID)
    names = 2 + len(alignment.source_model) + len(alignment.target_model)
    assert len(file.read_bytes()) == HEADER.size + names + 4 * (384 + 384 + 384 * 384)
    assert f"alignment {alignment.alignment_id}" in fitted.output
    assert re.search(r"on 400 anchors: embedding [0-9.]+ s, fit [0-9.]+ s", fitted.output)
    assert not list(tmp_path.glob(".e5-small.align.*"))  # written atomically: no temporary file left

    shown = runner.invoke(cli, ["align", "show", str(file)])
    assert shown.exit_code == 0 and alignment.alignment_id in shown.output
    assert f"source dim 384 -> target dim 384, scale {alignment.scale:.6g}" in shown.output
    assert f"query model {alignment.source_model} -> library model {MODEL_ID}" in shown.output

    paraphrases = gsm8k_insights(60, style=2)
    found = 0
    for n in range(0, 60, 6):  # 10 paraphrased lessons, asked with e5
        result = runner.invoke(cli, ["query", paraphrases[n].text, "--query-model", "e5-small", "--alignment", str(file), "--format", "json"])
        assert result.exit_code == 0, result.output
        found += insights[n].text in [h["text"] for h in json.loads(result.output)]
    assert found >= 8, f"only {found} of 10 paraphrases found their lesson in the top 5"
    table = runner.invoke(cli, ["query", insights[3].text, "--query-model", "e5-small", "--alignment", str(file), "-k", "1"])
    assert table.exit_code == 0 and f"alignment {alignment.alignment_id[:12]}" in table.output
    prompt = runner.invoke(cli, ["query", insights[3].text, "--query-model", "e5-small", "--alignment", str(file), "--format", "prompt", "-k", "2"])
    assert prompt.exit_code == 0 and insights[3].text in prompt.output


def test_query_refuses_an_alignment_of_the_wrong_dimensions_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("DSO_HOME", str(tmp_path))
    local_library(tmp_path / "library.sqlite", 5)
    rng = np.random.default_rng(0)
    for name, (d_s, d_t), message in (
        ("mpnet.align", (768, 384), "maps 768-d vectors but the query model gives 384-d ones"),
        ("into-mpnet.align", (384, 768), "maps into a 768-d space but the library's vectors are 384-d"),
    ):
        atomic_write_bytes(tmp_path / name, fit_procrustes(rng.standard_normal((40, d_s)), rng.standard_normal((40, d_t))).to_bytes())
        result = CliRunner().invoke(cli, ["query", "How do I split a bill?", "--query-model", "e5-small", "--alignment", str(tmp_path / name)])
        assert result.exit_code != 0 and isinstance(result.exception, AlignmentError)
        assert message in str(result.exception) and "dso align fit" in str(result.exception)
        assert "\n" not in str(result.exception)


def test_query_model_before_the_library_is_embedded_with_it_names_both_ways(tmp_path, monkeypatch):
    monkeypatch.setenv("DSO_HOME", str(tmp_path))
    local_library(tmp_path / "library.sqlite", 3)
    result = CliRunner().invoke(cli, ["query", "anything", "--query-model", "e5-small"])
    message = str(result.exception)
    assert result.exit_code != 0 and "dso index --model e5-small" in message and "dso align fit e5-small" in message and "\n" not in message
    orphan = tmp_path / "x.align"
    orphan.write_bytes(b"")
    result = CliRunner().invoke(cli, ["query", "anything", "--alignment", str(orphan)])
    assert result.exit_code != 0 and "--query-model" in str(result.exception)


def test_index_with_another_model_then_its_queries_rank_exactly_as_that_model_does(tmp_path, monkeypatch):
    """Issue 9 item 1: `dso index --model e5-small` re-embeds the library's texts with e5, and
    `dso query --query-model e5-small` then finds exactly e5's own top-k (the alignment reaches
    0.28-0.46 of it, README "An agent on another embedding model"). Resumable: --limit stops early."""
    monkeypatch.setenv("DSO_HOME", str(tmp_path))
    insights = local_library(tmp_path / "library.sqlite", 40)
    runner = CliRunner()
    partial = runner.invoke(cli, ["index", "--model", "e5-small", "--limit", "10"])
    assert partial.exit_code == 0 and "embedded 10 text(s) with e5-small" in partial.output and "30 left" in partial.output
    asked = runner.invoke(cli, ["query", insights[0].text, "--query-model", "e5-small", "-k", "3"])
    assert asked.exit_code == 0 and "30 visible entries not ranked" in asked.output
    rest = runner.invoke(cli, ["index", "--model", "e5-small"])
    assert rest.exit_code == 0 and "embedded 30 text(s)" in rest.output and "0 left" in rest.output

    e5 = load_query_model("e5-small")
    texts = [i.text for i in insights]
    documents = e5.embed_passages(texts)
    questions = [p.text for p in gsm8k_insights(40, style=2)][::5]  # paraphrased lessons, asked in other words
    for question in questions:
        exact = np.argsort(-(documents @ e5.embed([question])[0]), kind="stable")[:5]
        result = runner.invoke(cli, ["query", question, "--query-model", "e5-small", "-k", "5", "--format", "json"])
        assert result.exit_code == 0, result.output
        assert [h["text"] for h in json.loads(result.output)] == [texts[i] for i in exact]
    prompt = runner.invoke(cli, ["query", questions[0], "--query-model", "e5-small", "--format", "prompt", "-k", "2"])
    assert prompt.output.startswith("Relevant experiences")


def test_align_show_rejects_a_file_that_is_not_an_alignment(tmp_path):
    bogus = tmp_path / "bogus.align"
    bogus.write_bytes(b"not an alignment at all")
    result = CliRunner().invoke(cli, ["align", "show", str(bogus)])
    assert result.exit_code != 0 and isinstance(result.exception, AlignmentError)


def test_the_cli_offers_every_query_model_dso_embed_can_load():
    offered = {name: next(p.type.choices for p in command.params if p.name in ("query_model", "model"))
               for name, command in (("query", cli.get_command(click.Context(cli), "query")),
                                     ("align fit", cli.get_command(click.Context(cli), "align").commands["fit"]))}
    assert all(sorted(choices) == sorted(QUERY_MODEL_LOADERS) for choices in offered.values())
