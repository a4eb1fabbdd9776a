"""The learning loop publishes its new lessons itself when its pool has changed enough (the seeds'
semantic event): the drift rule's pure functions, the loop's bookkeeping with a scripted LLM (the
guard rails and the publishing policy are what is tested, so the LLM's replies are fixed), and the
real publisher committing to Anvil and IPFS."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from learning_doubles import Alternating

from dso.core.lessons import pool_state, publication_due, semantic_drift
from dso.edges.embed import load_embedder
from dso.edges.llm import Completion
from dso.errors import DsoError, InputError, QueuedInOutbox
from dso.workflows.learn import Learner, LearnSettings, PublishPolicy, Task, lesson_publisher

LESSONS = ("When a price is given per item, multiply it by the number of items to get the total cost.",
           "When a quantity grows by a percentage, multiply the original amount by one plus the rate.",
           "When a rate is given per hour, multiply it by the hours worked to find the total earned.",
           "When items are shared equally among groups, divide the total by the number of groups.")


class ScriptedLLM:
    """An LLM whose replies are fixed per learning step; the advantage of task i is LESSONS[i]."""

    name = "scripted"

    def complete(self, messages, max_tokens=0, temperature=0.0, seed=None) -> Completion:
        prompt = messages[-1]["content"]
        if "Summaries of attempts" in prompt:
            text = f"- {LESSONS[int(prompt.split('Question number ')[1].split()[0])]}"
        elif prompt.startswith("Existing lessons") and "New lessons" in prompt:
            new = prompt.split("New lessons:\n", 1)[1].split("\n\n", 1)[0].split("] ", 1)[1]
            text = json.dumps([{"operation": "ADD", "id": None, "content": new}])
        elif "Changes proposed" in prompt:
            text = "not JSON"  # the mechanical merge takes over
        else:
            text = "The answer is 5."
        return Completion(text, 10, 5, 0.01, "stop")


class Recording:
    """A publisher that records what it is given; `fail` makes the next call raise that error."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, str, float]]] = []
        self.fail: Exception | None = None

    def __call__(self, lessons):
        if self.fail is not None:
            error, self.fail = self.fail, None
            if not isinstance(error, QueuedInOutbox):
                raise error
            self.calls.append(list(lessons))
            raise error
        self.calls.append(list(lessons))
        return f"committed {len(lessons)}"


TASKS = [Task(i, f"Question number {i} about apples and oranges?", "#### 5", str(i)) for i in range(4)]  # the number is the task index


@pytest.fixture(scope="module")
def embedder():
    return load_embedder("minilm-int8")


def learner(tmp_path, embedder, publisher, policy):
    return Learner(ScriptedLLM(), embedder, TASKS, "sha", tmp_path / "run", LearnSettings(group_size=2, batch_size=1), Alternating(),
                   publisher=publisher, policy=policy)


# ---------------------------------------------------------------------------------------------- the rule


def test_nothing_published_yet_is_full_drift_and_the_same_state_none():
    state = pool_state(np.eye(3)[:2])
    assert semantic_drift(None, state) == 1.0 and semantic_drift(state, state) == pytest.approx(0.0, abs=1e-12)
    assert semantic_drift(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)
    assert semantic_drift(np.zeros(2), np.array([0.0, 1.0])) == 1.0


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, (3, 5), elements=st.floats(-10, 10)).filter(lambda a: np.all(np.linalg.norm(a, axis=1) > 1e-3)),
       st.floats(0.1, 100))
def test_drift_is_a_distance_in_0_2_and_ignores_vector_scale(rows, scale):
    a, b = pool_state(rows[:2]), pool_state(rows[1:])
    drift = semantic_drift(a, b)
    assert 0.0 <= drift <= 2.0 and drift == pytest.approx(semantic_drift(b, a), abs=1e-9)
    assert pool_state(rows * scale) == pytest.approx(pool_state(rows))


def test_publication_is_due_at_n_new_lessons_or_at_the_drift_threshold_whichever_first():
    assert publication_due(0, 1.0, 1, 0.01) is None  # nothing new: nothing to publish, however far the pool moved
    assert publication_due(3, 0.0, 3, None) == "3 new lesson(s) >= 3"
    assert publication_due(2, 0.0, 3, 0.1) is None
    assert publication_due(1, 0.2, 3, 0.1) == "drift 0.200 >= 0.1"
    assert publication_due(5, 0.2, None, None) is None
    for bad in ({}, {"every": 0}, {"drift": 0.0}, {"drift": 3.0}, {"every": True}):
        with pytest.raises(InputError):
            PublishPolicy(**bad)


# ---------------------------------------------------------------------------------------------- the loop


def test_the_loop_publishes_only_new_lessons_when_the_rule_fires_and_remembers_it_across_runs(tmp_path, embedder):
    recording = Recording()
    report = learner(tmp_path, embedder, recording, PublishPolicy(every=2)).run(limit=1)
    assert len(report.lessons) == 1 and recording.calls == [] and report.publications == ()  # 1 new < 2
    report = learner(tmp_path, embedder, recording, PublishPolicy(every=2)).run(limit=1)  # resumed: a second lesson
    assert [[text for text, _, _ in call] for call in recording.calls] == [[LESSONS[0], LESSONS[1]]]
    assert all(domain == "math" and 0 < confidence <= 1 for _, domain, confidence in recording.calls[0])
    [event] = report.publications
    assert (event["batch"], event["lessons"], event["reason"], event["outcome"]) == (1, 2, "2 new lesson(s) >= 2", "committed 2")
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert sorted(state["published"]["texts"].values()) == sorted(LESSONS[:2]) and len(state["published"]["state"]) == 384
    recording.fail = DsoError("RPC down before anything was queued")
    report = learner(tmp_path, embedder, recording, PublishPolicy(every=1)).run(limit=1)
    assert len(recording.calls) == 1 and "not published" in report.publications[-1]["outcome"]  # not marked: retried next batch
    recording.fail = QueuedInOutbox("1 batch(es) are safe in the outbox, but the RPC is down")
    report = learner(tmp_path, embedder, recording, PublishPolicy(every=1)).run(limit=1)
    assert [text for text, _, _ in recording.calls[-1]] == [LESSONS[2], LESSONS[3]]  # the failed one and the new one, once
    assert report.publications[-1]["outcome"].startswith("queued:")
    assert len(json.loads((tmp_path / "run" / "state.json").read_text())["published"]["texts"]) == 4


def test_the_drift_rule_publishes_the_first_lessons_and_then_only_when_the_pool_has_moved(tmp_path, embedder):
    recording = Recording()
    report = learner(tmp_path, embedder, recording, PublishPolicy(drift=0.9)).run()
    drifts = [event["drift"] for event in report.publications]
    assert len(recording.calls) == 1 and drifts == [1.0]  # the first lesson is news; three related lessons move the mean < 0.9
    recording2 = Recording()
    report = learner(tmp_path / "low", embedder, recording2, PublishPolicy(drift=1e-6)).run()
    assert len(recording2.calls) == 4 and all(len(call) == 1 for call in recording2.calls)  # every change moves the pool


def test_publishing_needs_both_a_publisher_and_a_policy(tmp_path, embedder):
    with pytest.raises(InputError, match="both"):
        learner(tmp_path, embedder, Recording(), None)


# ---------------------------------------------------------------------------------------------- the real publisher


def test_the_lesson_publisher_commits_a_batch_from_the_node_wallet(w3, accounts, ipfs_api, tmp_path):
    from conftest import deploy_dao

    from dso.edges.ipfs import KuboClient
    from dso.workflows.publish import Outbox
    from dso.workflows.verify import fetch_and_verify, find_commitment

    dao = deploy_dao(w3, accounts, n_nodes=1)
    embedder = load_embedder("minilm")
    with KuboClient(ipfs_api) as store:
        send = lesson_publisher(dao.nodes[0], lambda: embedder, Outbox(tmp_path / "outbox"), lambda: (store, dao.registry))
        outcome = send([(LESSONS[0], "math", 0.5), (LESSONS[1], "math", 0.75)])
        assert outcome.startswith("committed ") and outcome.endswith("(2)")
        [batch] = dao.registry.all_batches()
        assert batch.root.hex().startswith(outcome.split()[1]) and batch.count == 2
        commitment, submitter = find_commitment(dao.registry, batch.root)
        assert submitter.hex() == dao.nodes[0].address.lower().removeprefix("0x")
        document = fetch_and_verify(store, batch.root.hex(), commitment, submitter)
        assert sorted(e.text for e in document.experiences) == sorted(LESSONS[:2])


def test_dso_learn_refuses_a_publishing_rule_without_a_wallet_before_any_llm_work(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from dso.interfaces.cli import cli

    monkeypatch.setenv("DSO_HOME", str(tmp_path / "home"))
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"question": "What is 2 + 3?", "answer": "#### 5"}) + "\n")
    for extra in (["--publish-every", "2"], ["--wallet", "node1"]):
        result = CliRunner().invoke(cli, ["learn", str(tasks), *extra])
        assert result.exit_code != 0 and "go together" in result.output + str(result.exception)
    result = CliRunner().invoke(cli, ["learn", str(tasks), "--publish-drift", "0"])
    assert result.exit_code == 2 and "--publish-drift" in result.output
