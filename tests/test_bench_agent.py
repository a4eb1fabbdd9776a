"""The agent benchmark: paired statistics, the lesson quality report, its inputs and its resumable question loop."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dso.bench import agent as bench
from dso.core.lessons import GENERIC_ADVICE, copies_task, lesson_quality, task_vocabulary
from dso.core.paired import compare_paired, mcnemar_exact_p, paired_bootstrap_interval
from dso.errors import InputError
from dso.workflows.agent import RelevanceGate

ROOT = Path(__file__).resolve().parent.parent
outcomes = st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60)

# ---------------------------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("gained, lost, expected", [
    (10, 3, 2 * 378 / 8192),  # 0.0923: the 40-question measurement
    (3, 10, 2 * 378 / 8192),
    (0, 6, 2 / 64),
    (1, 1, 1.0),  # 2 * P(X <= 1) = 1.5, capped
    (0, 0, 1.0),  # no discordant pair: no evidence either way
    (0, 1, 1.0),
])
def test_mcnemar_exact_p_is_the_doubled_binomial_tail_of_the_smaller_count(gained, lost, expected):
    assert mcnemar_exact_p(gained, lost) == pytest.approx(expected)


def test_mcnemar_for_ten_against_three_is_about_0_092():
    assert round(mcnemar_exact_p(10, 3), 3) == 0.092


@given(st.integers(0, 40), st.integers(0, 40))
def test_mcnemar_p_is_symmetric_and_a_probability(gained, lost):
    p = mcnemar_exact_p(gained, lost)
    assert p == mcnemar_exact_p(lost, gained) and 0.0 < p <= 1.0


@settings(max_examples=60, deadline=None)
@given(outcomes)
def test_the_bootstrap_interval_contains_the_point_estimate(pairs):
    base, treat = [b for b, _ in pairs], [t for _, t in pairs]
    low, high = paired_bootstrap_interval(base, treat, resamples=2_000, seed=1)
    difference = np.mean(treat) - np.mean(base)
    assert -1.0 <= low <= difference + 1e-12 and difference - 1e-12 <= high <= 1.0


def test_the_bootstrap_interval_is_seeded_and_collapses_when_conditions_agree():
    base = [True, False, True, True, False, False, True, False] * 3
    treat = [True, True, False, True, False, True, True, False] * 3
    assert paired_bootstrap_interval(base, treat, seed=7) == paired_bootstrap_interval(base, treat, seed=7)
    assert paired_bootstrap_interval(base, base) == (0.0, 0.0)


def test_compare_paired_counts_what_was_gained_and_lost():
    base = [True] * 26 + [False] * 14
    treat = [True] * 16 + [False] * 10 + [True] * 3 + [False] * 11  # 10 lost, 3 gained: 26 -> 19
    result = compare_paired(base, treat)
    assert (result.n, result.gained, result.lost) == (40, 3, 10)
    assert result.difference == pytest.approx(19 / 40 - 26 / 40)
    assert result.interval[0] < result.difference < result.interval[1] and result.interval[1] < 0.05
    assert result.p_value == pytest.approx(mcnemar_exact_p(3, 10))


@pytest.mark.parametrize("base, treat", [([True], [True, False]), ([], []), ([True, "yes"], [True, False])])
def test_unpaired_or_non_boolean_outcomes_are_InputError(base, treat):
    with pytest.raises(InputError):
        compare_paired(base, treat)


# ---------------------------------------------------------------------------------------------- lesson quality


def unit(rows):
    array = np.asarray(rows, dtype=np.float64)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


VOCABULARY = task_vocabulary(["Natalia sold clips to 48 of her friends in April.", "Weng earns $12 an hour for babysitting."])


def test_a_lesson_copies_a_task_when_it_writes_its_numbers_or_names():
    assert copies_task("When Natalia sells clips, add the two months.", VOCABULARY)
    assert copies_task("When someone earns 12 dollars an hour, multiply by the hours.", VOCABULARY)
    assert not copies_task("When an hourly wage is given, multiply it by the hours worked.", VOCABULARY)
    assert not copies_task("In April, totals are computed the same way as in May.", VOCABULARY)  # months are not names


def test_lesson_quality_counts_copies_near_duplicates_and_generic_advice():
    texts = ["When Natalia sells clips, add both months together.", "When a rate is per hour, multiply by hours.",
             "When a rate is hourly, multiply it by the hours.", "Always double-check each calculation."]
    vectors = unit([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0.99, 0.1, 0], [0, 0, 0, 1]])
    generic = unit([[0, 0, 0.1, 1]])
    quality = lesson_quality(texts, vectors, generic, VOCABULARY)
    assert quality.lessons == 4
    assert quality.copies_task == 0.25 and quality.near_duplicate == 0.5 and quality.generic == 0.25
    assert quality.mean_words == pytest.approx(np.mean([8, 9, 10, 4]))


def test_lesson_quality_of_an_empty_set_has_no_shares():
    assert lesson_quality([], np.zeros((0, 4)), unit([[1, 0, 0, 0]]), VOCABULARY).copies_task is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(-1, 1, allow_nan=False), min_size=3, max_size=3).filter(lambda v: np.linalg.norm(v) > 0.1),
                min_size=1, max_size=12))
def test_lesson_quality_shares_are_fractions_and_a_doubled_set_is_all_duplicates(rows):
    texts = [f"When case {chr(97 + i % 26)} holds, apply the matching rule." for i in range(len(rows))]
    generic = unit([[1, 0, 0]])
    quality = lesson_quality(texts, unit(rows), generic, VOCABULARY)
    assert all(0.0 <= share <= 1.0 for share in (quality.copies_task, quality.near_duplicate, quality.generic))
    assert lesson_quality(texts * 2, unit(rows * 2), generic, VOCABULARY).near_duplicate == 1.0


def test_lesson_quality_with_the_real_embedder_finds_generic_paraphrases():
    from dso.edges.embed import load_embedder

    embedder = load_embedder(bench.EMBEDDER)
    texts = ["Break the problem into smaller parts and solve each one.",
             "When a quantity is described as a fraction of another, compute the base quantity first."]
    quality = lesson_quality(texts, unit(embedder.embed(texts)), unit(embedder.embed(list(GENERIC_ADVICE))), VOCABULARY)
    assert quality.generic == 0.5


# ---------------------------------------------------------------------------------------------- inputs and state


def test_the_held_out_questions_are_gsm8k_test_in_a_fixed_order():
    questions = bench.test_questions()
    assert len(questions) == 1319
    order = bench.question_order(len(questions))
    assert list(order[:5]) == list(bench.question_order(len(questions))[:5]) and sorted(order) == list(range(1319))
    from dso.edges.datasets import gsm8k_questions

    train = set(gsm8k_questions())
    assert not any(questions[i].question in train for i in order[:200])


def test_a_bad_lessons_file_is_InputError_naming_the_line(tmp_path):
    path = tmp_path / "lessons.jsonl"
    path.write_text(json.dumps({"text": "When a price is per item, multiply by the count."}) + "\n" + json.dumps({"confidence": 0.5}) + "\n")
    with pytest.raises(InputError, match="lessons.jsonl:2"):
        bench.read_lessons(path)
    path.write_text("\n")
    with pytest.raises(InputError, match="no lessons"):
        bench.read_lessons(path)


def test_conditions_without_their_input_are_skipped_and_unknown_ones_refused(tmp_path):
    built = bench.build_conditions(["a", "b", "c", "d", "e"], None, None)
    assert [c.skipped is not None for c in built] == [False, True, True, False, False]
    assert len(built[3].lessons) == len(bench.IRRELEVANT_LESSONS) and built[3].gate.min_similarity == -1.0
    assert len(built[4].lessons) == bench.DEMO_LESSONS and built[4].gate == RelevanceGate()  # the templated demo lessons, gated like `dso ask`
    for keys in (["a", "x"], ["e"], ["a", "a"], []):
        with pytest.raises(InputError):
            bench.build_conditions(keys, None, None)


def test_a_synced_library_is_searched_from_a_copy_with_its_support(tmp_path):
    from contextlib import ExitStack

    from dso.core.codec import baseline_id, get_codec, load_baseline
    from dso.core.experience import Experience
    from dso.edges.embed import load_embedder
    from dso.workflows.agent import select_experiences
    from dso.workflows.library import Library, Source

    embedder = load_embedder(bench.EMBEDDER)
    text = "When rates are given per hour, multiply the rate by the time worked to get the total earned."
    baseline = load_baseline()
    code = bytes(get_codec("bitdelta-1", embedder.dim, baseline).encode(embedder.embed([text]))[0])
    path = tmp_path / "library.sqlite"
    with Library(path, embedder) as library:
        for node_id in (1, 2, 3):
            node = bytes([node_id]) * 20
            experience = Experience.create(text, "math", 0.8, "all-MiniLM-L6-v2", "bitdelta-1", code, node, 1)
            library.add_reports([experience], bytes.fromhex(baseline_id(baseline)), Source(bytes([node_id]) * 32, node_id))
        assert library.aggregate({1, 2, 3}).accepted == 1
    before = path.read_bytes()
    [_, network] = bench.build_conditions(["a", "c"], None, path)
    assert network.lessons == ((text, "math", 0.8),) and network.library_file == path
    with ExitStack() as stack:
        copy = bench._library(stack, network, embedder)
        [hit] = select_experiences(copy, "Weng earns $12 an hour. She worked 5 hours. How much did she earn?", network.gate).used
        assert (hit.origin, hit.support) == ("network", 3) and copy.path != path
    assert path.read_bytes() == before
    (tmp_path / "not-a-library").write_text("hello")
    with pytest.raises(InputError, match="not a dso library"):
        bench.build_conditions(["a", "c"], None, tmp_path / "not-a-library")


def test_a_torn_last_line_is_cut_and_other_settings_are_refused(tmp_path):
    path = tmp_path / "state.jsonl"
    bench.append_line(path, {"version": bench.STATE_VERSION, "settings": {"model": "m"}})
    bench.append_line(path, {"question": 1, "condition": "a"})
    with path.open("ab") as handle:
        handle.write(b'{"question": 2, "cond')
    assert bench.load_state(path, {"model": "m"}) == [{"question": 1, "condition": "a"}]
    assert path.read_bytes().endswith(b'"question": 1}\n')
    with pytest.raises(InputError, match="another benchmark run"):
        bench.load_state(path, {"model": "other"})
    path.write_bytes(b'{"settings": {"mo')  # killed while writing its header
    assert bench.load_state(path, {"model": "m"}) == [] and path.read_bytes() == b""


def test_bench_script_passes_options_only_to_a_benchmark_that_takes_them():
    spec = importlib.util.spec_from_file_location("bench_script", ROOT / "scripts" / "bench.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(SystemExit):
        script.main(["gate", "--questions", "3"])
    assert bench.options(["--questions", "6", "--conditions", "a,e", "--threads", "1"])["conditions"] == ["a", "e"]
    assert script.main(["agent", "--questions", "0", "--conditions", "a"]) == 2  # InputError: one line, exit 2


# ---------------------------------------------------------------------------------------------- the question loop


needs_llm = pytest.mark.skipif(importlib.util.find_spec("xllamacpp") is None, reason="the agent extra is not installed: pip install 'dso[agent]'")


class Counting:
    """A real model that counts its completions."""

    def __init__(self, model):
        self.model, self.name, self.calls = model, model.name, 0

    def complete(self, messages, **kwargs):
        self.calls += 1
        return self.model.complete(messages, **kwargs)

    def close(self):
        self.model.close()


@needs_llm
def test_the_bench_answers_every_question_per_condition_and_resumes_where_it_stopped(tmp_path, monkeypatch):
    from dso.edges.llm import LocalChatModel

    monkeypatch.setenv("DSO_HOME", str(tmp_path / "home"))
    state = tmp_path / "state.jsonl"
    first = bench.run(questions=2, conditions=["a", "d"], model="smollm2-135m", max_tokens=4, state=state, log=lambda _: None)
    assert first["model"] == "smollm2-135m" and first["threads"] == 1 and first["max_tokens"] == 4
    assert first["questions"]["count"] == 2 and len(first["questions"]["indices"]) == 2
    for key in ("a", "d"):
        entry = first["conditions"][key]
        assert entry["status"] == "done" and entry["answered"] == 2 and 0 <= entry["correct"] <= 2 and entry["completion_tokens"] > 0
    assert first["conditions"]["d"]["questions_with_lessons"] == 2 and first["conditions"]["d"]["mean_lessons_injected"] == 3
    assert first["conditions"]["d"]["quality"]["lessons"] == len(bench.IRRELEVANT_LESSONS)
    assert set(first["paired"]) == {"d"} and first["paired"]["d"]["questions"] == 2
    assert len(state.read_text().splitlines()) == 1 + 4
    assert "| (d) irrelevant lessons, no gate |" in bench.markdown_table(first)

    with state.open("ab") as handle:
        handle.write(b'{"question": 99, "condi')  # killed in mid-write
    model = Counting(LocalChatModel("smollm2-135m", threads=1, context=2048))
    try:
        second = bench.run(questions=3, conditions=["a", "d"], max_tokens=4, state=state, chat=model, log=lambda _: None)
    finally:
        model.close()
    assert model.calls == 2  # only the third question, under both conditions
    assert second["questions"]["indices"][:2] == first["questions"]["indices"]
    assert second["conditions"]["a"]["answered"] == 3 and second["paired"]["d"]["questions"] == 3
    assert len(state.read_text().splitlines()) == 1 + 6


@needs_llm
def test_the_bench_runs_unchanged_against_an_openai_compatible_endpoint(tmp_path, monkeypatch):
    from dso.edges.llm import LocalChatModel

    server = LocalChatModel("smollm2-135m", threads=1, context=2048)
    try:
        endpoint = server.endpoint()
        monkeypatch.setenv("DSO_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("DSO_LLM_API_KEY", endpoint.api_key)
        results = bench.run(questions=1, conditions=["a"], base_url=endpoint.base_url, model="smollm2-135m", max_tokens=4, log=lambda _: None)
    finally:
        server.close()
    assert results["backend"] == "OpenAI-compatible endpoint" and results["threads"] is None
    assert results["conditions"]["a"]["answered"] == 1 and results["paired"] == {}
    assert list((tmp_path / "home" / "bench").glob("agent-*.jsonl"))


@needs_llm
def test_a_condition_that_injects_nothing_reuses_the_baseline_answer_and_the_control_matches_its_count(tmp_path, monkeypatch):
    from dso.edges.llm import LocalChatModel

    monkeypatch.setenv("DSO_HOME", str(tmp_path / "home"))
    lessons = tmp_path / "own.jsonl"  # bears on the first held-out question (money held by several people), not on the second (eating rates)
    lessons.write_text(json.dumps({"text": "When one person has a stated amount more money than another, add the amounts to find the total.",
                                   "domain": "math", "confidence": 0.9}) + "\n")
    state = tmp_path / "state.jsonl"
    model = Counting(LocalChatModel("smollm2-135m", threads=1, context=2048))
    try:
        results = bench.run(questions=2, conditions=["a", "d", "b"], lessons=lessons, max_tokens=4, state=state, chat=model, log=lambda _: None)
    finally:
        model.close()
    rows = {(r["question"], r["condition"]): r for r in bench.load_state(state, json.loads(state.read_text().splitlines()[0])["settings"])}
    first, second = results["questions"]["indices"]
    assert len(rows[(first, "b")]["lessons"]) == 1 and not rows[(first, "b")].get("same_prompt_as")
    assert len(rows[(first, "d")]["lessons"]) == 1  # as many irrelevant lessons as (b) injected
    for key in ("b", "d"):  # (b)'s gate selected nothing for the second question: (a)'s prompt, (a)'s answer, no call
        row = rows[(second, key)]
        assert row["same_prompt_as"] == "a" and row["lessons"] == [] and row["completion_tokens"] == 0
        assert (row["correct"], row["predicted"]) == (rows[(second, "a")]["correct"], rows[(second, "a")]["predicted"])
    assert model.calls == 2 + 1 + 1
    assert results["conditions"]["b"]["same_prompt_as_a"] == 1 and results["paired"]["d"]["questions"] == 2


@needs_llm
def test_parts_sharing_one_state_file_answer_disjoint_questions_and_any_run_reports_all(tmp_path, monkeypatch):
    from dso.edges.llm import LocalChatModel

    monkeypatch.setenv("DSO_HOME", str(tmp_path / "home"))
    state = tmp_path / "state.jsonl"
    model = Counting(LocalChatModel("smollm2-135m", threads=1, context=2048))
    try:
        one = bench.run(questions=3, conditions=["a"], max_tokens=4, state=state, chat=model, part=(1, 2), log=lambda _: None)
        assert model.calls == 2 and one["conditions"]["a"]["answered"] == 2  # questions 1 and 3 of the run
        two = bench.run(questions=3, conditions=["a"], max_tokens=4, state=state, chat=model, part=(2, 2), log=lambda _: None)
        assert model.calls == 3 and two["conditions"]["a"]["answered"] == 3 and two["conditions"]["a"]["status"] == "done"
        again = bench.run(questions=3, conditions=["a"], max_tokens=4, state=state, chat=model, log=lambda _: None)
        assert model.calls == 3 and again["conditions"]["a"] == two["conditions"]["a"]
    finally:
        model.close()
    assert bench.options(["--part", "2/3"])["part"] == (2, 3)
    for bad in ("3/2", "x", "0/2"):
        with pytest.raises(InputError, match="--part"):
            bench.run(questions=1, conditions=["a"], part=bench.options(["--part", bad])["part"], log=lambda _: None) if "/" in bad else bench.options(["--part", bad])
