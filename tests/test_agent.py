"""The local agent on real components: a library on disk, the int8 MiniLM query embedder, the
relevance gate, and SmolLM2-135M answering in-process."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dso.core.codec import baseline_id, get_codec, load_baseline
from dso.core.experience import Experience
from dso.edges.embed import load_embedder
from dso.errors import LibraryError
from dso.workflows.agent import EXPERIENCE_HEADER, RelevanceGate, add_lessons, ask, build_messages, select_experiences
from dso.workflows.library import Library, Source

LESSONS = [
    ("When a quantity is described as a fraction of another, compute the base quantity first and then take the fraction.", "math", 0.8),
    ("When rates are given per hour, multiply the rate by the time worked to get the total earned.", "math", 0.8),
    ("When computing profit, subtract the total cost from the total revenue.", "math.money", 0.9),
    ("When a shared total is split among friends, divide it by the number of friends.", "math", 0.2),  # too unsure to use
]
ON_TOPIC = "Weng earns $12 an hour for babysitting. Yesterday she did 50 minutes of babysitting. How much did she earn?"
OFF_TOPIC = "What is the capital city of Australia?"


@pytest.fixture(scope="module")
def embedder():
    return load_embedder("minilm-int8")


@pytest.fixture
def library(tmp_path, embedder):
    with Library(tmp_path / "library.sqlite", embedder) as lib:
        add_lessons(lib, embedder, LESSONS, created_at=1_763_000_000)
        yield lib


def test_an_on_topic_question_gets_the_relevant_lessons_and_only_those(library):
    selection = select_experiences(library, ON_TOPIC, RelevanceGate(k=2))
    used = [h.experience.text for h in selection.used]
    assert used and used[0] == LESSONS[1][0]
    assert all(h.score >= 0.30 for h in selection.used)


def test_a_similar_but_unsure_lesson_is_refused_for_its_confidence(library):
    selection = select_experiences(library, "Four friends share a $48 dinner bill equally. How much does each pay?", RelevanceGate())
    reasons = {h.experience.text: why for h, why in selection.refused}
    assert reasons[LESSONS[3][0]] == "confidence 0.20 < 0.50"
    assert LESSONS[3][0] not in [h.experience.text for h in selection.used]


def test_an_off_topic_question_gets_no_experience_block_at_all(library, embedder):
    selection = select_experiences(library, OFF_TOPIC, RelevanceGate())
    assert selection.used == () and all(why.startswith("similarity") for _, why in selection.refused)
    messages = build_messages(OFF_TOPIC, [h.experience.text for h in selection.used])
    assert EXPERIENCE_HEADER not in messages[1]["content"] and messages[1]["content"] == f"Problem: {OFF_TOPIC}"


def test_the_domain_filter_and_the_similarity_threshold_are_applied(library):
    money = select_experiences(library, "A shop buys shirts for $5 and sells them for $9. What is its profit on 10 shirts?", RelevanceGate(domain="math.money"))
    assert [h.domain for h in money.used] == ["math.money"] and not money.refused
    strict = select_experiences(library, ON_TOPIC, RelevanceGate(min_similarity=0.99))
    assert strict.used == () and strict.refused


def test_network_entries_need_the_minimum_support(tmp_path, embedder):
    text = "When rates are given per hour, multiply the rate by the time worked to get the total earned."
    baseline = load_baseline()
    code = bytes(get_codec("bitdelta-1", embedder.dim, baseline).encode(embedder.embed([text]))[0])
    with Library(tmp_path / "net.sqlite", embedder) as library:
        for node_id in (1, 2, 3):
            node = bytes([node_id]) * 20
            experience = Experience.create(text, "math", 0.8, "all-MiniLM-L6-v2", "bitdelta-1", code, node, 1)
            library.add_reports([experience], bytes.fromhex(baseline_id(baseline)), Source(bytes([node_id]) * 32, node_id))
        assert library.aggregate({1, 2, 3}).accepted == 1
        assert len(select_experiences(library, ON_TOPIC, RelevanceGate(min_support=3)).used) == 1
        refused = select_experiences(library, ON_TOPIC, RelevanceGate(min_support=4))
        assert refused.used == () and refused.refused[0][1] == "support 3 < 4"


def test_bad_gate_settings_and_questions_are_LibraryError(library):
    for bad in ({"min_similarity": 2.0}, {"k": 0}, {"min_support": -1}, {"domain": "Not A Domain"}, {"min_confidence": True}):
        with pytest.raises(LibraryError):
            RelevanceGate(**bad)
    with pytest.raises(LibraryError):
        ask("   ", model=None, library=library)  # checked before the model is touched


pytest.importorskip("xllamacpp", reason="the agent extra is not installed: pip install 'dso[agent]'")


@pytest.fixture(scope="module")
def model():
    from dso.edges.llm import LocalChatModel

    chat = LocalChatModel("smollm2-135m", threads=1, context=2048)
    yield chat
    chat.close()


def test_ask_answers_with_the_selected_lessons_in_its_prompt(library, model):
    answer = ask(ON_TOPIC, model, library, max_tokens=24)
    assert answer.text.strip() and answer.completion.completion_tokens > 0
    assert answer.selection.used and all(h.experience.text in answer.messages[1]["content"] for h in answer.selection.used)
    alone = ask(OFF_TOPIC, model, library, max_tokens=8)
    assert alone.selection.used == () and EXPERIENCE_HEADER not in alone.messages[1]["content"]


def test_dso_ask_prints_the_experiences_it_used_or_that_none_qualified(tmp_path, monkeypatch, embedder, model):
    from dso.interfaces.cli import cli

    monkeypatch.setenv("DSO_HOME", str(tmp_path))
    monkeypatch.delenv("DSO_LLM_BASE_URL", raising=False)
    with Library(tmp_path / "library.sqlite", embedder) as lib:
        add_lessons(lib, embedder, LESSONS[:2])
    runner = CliRunner()
    args = ["--model", "smollm2-135m", "--max-tokens", "8"]
    used = runner.invoke(cli, ["ask", ON_TOPIC, *args, "--format", "json"])
    assert used.exit_code == 0, used.output
    document = json.loads(used.output)
    assert document["used"][0]["text"] == LESSONS[1][0] and document["used"][0]["similarity"] >= 0.30 and document["answer"]
    none = runner.invoke(cli, ["ask", OFF_TOPIC, *args])
    assert none.exit_code == 0, none.output
    assert "no experience qualified" in none.output and "tokens/s" in none.output


def test_dso_ask_talks_to_an_openai_compatible_endpoint_with_the_key_from_the_environment(tmp_path, monkeypatch, model):
    from dso.interfaces.cli import cli

    endpoint = model.endpoint()  # the real xllamacpp HTTP server of the in-process model
    monkeypatch.setenv("DSO_HOME", str(tmp_path))
    monkeypatch.setenv("DSO_LLM_API_KEY", endpoint.api_key)
    result = CliRunner().invoke(cli, ["ask", OFF_TOPIC, "--base-url", endpoint.base_url, "--model", "smollm2-135m", "--max-tokens", "6",
                                      "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["answer"] and endpoint.api_key not in result.output
    monkeypatch.setenv("DSO_LLM_API_KEY", "wrong-key")
    refused = CliRunner().invoke(cli, ["ask", OFF_TOPIC, "--base-url", endpoint.base_url, "--model", "smollm2-135m", "--max-tokens", "6"])
    assert refused.exit_code != 0 and "401" in str(refused.exception) and "wrong-key" not in str(refused.exception)
