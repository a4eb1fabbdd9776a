"""The network run's publish / endorse / vote / sync phase on a real devnet, with hand-written
lessons standing in for what the nodes learned (the learning loop has its own tests; what it
learns with the 1.5B model takes hours, see bench/results/network.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dso.bench import network
from dso.core.lessons import endorsable
from dso.errors import DatasetError, InputError

GENERAL = ("When a price is given per item, multiply it by the number of items to get the total cost.",
           "When a rate is given per hour, multiply it by the hours worked to find the total earned.",
           "When items are shared equally among groups, divide the total by the number of groups.")
OFF_TOPIC = "When repotting a plant, loosen the roots gently before placing it in fresh soil."


def test_a_lesson_is_endorsed_only_if_it_applies_to_enough_of_the_nodes_problems_and_copies_none_of_them():
    tasks = np.eye(3)
    lesson = np.array([0.8, 0.6, 0.0])
    assert endorsable("When a price is per item, multiply by the count.", lesson, tasks, "Ann buys pens.", 0.5, 2)
    assert not endorsable("When a price is per item, multiply by the count.", lesson, tasks, "Ann buys pens.", 0.7, 2)  # applies to one
    assert not endorsable("When Ann buys pens, multiply by the count.", lesson, tasks, "Ann buys pens.", 0.5, 2)  # copies a name
    assert not endorsable("When a price is per item, multiply by the count.", lesson, np.zeros((0, 3)), "", 0.5, 1)
    with pytest.raises(InputError):
        endorsable("x", lesson, tasks, "", 0.5, 0)


def test_shards_are_disjoint_gsm8k_train_lines_and_bad_options_are_InputError():
    from dso.edges.datasets import gsm8k_records, gsm8k_shard_lines

    shards = [gsm8k_shard_lines(n) for n in range(1, 5)]
    assert all(len(s) == 40 for s in shards) and len(set().union(*map(set, shards))) == 160
    records = gsm8k_records(1_008)
    assert json.loads(shards[0][0]) == records[1000] and json.loads(shards[3][1]) == records[1007]
    with pytest.raises(DatasetError):
        gsm8k_shard_lines(5)
    with pytest.raises(InputError):
        network.options(["--phase", "train"])
    with pytest.raises(InputError):
        network.run(tasks_per_node=41, phases=["network"], log=lambda _: None)


def test_general_lessons_are_endorsed_into_the_fresh_agents_library_and_an_off_topic_one_stays_pending(tmp_path):
    state = tmp_path / "state"
    lessons = {1: [GENERAL[0]], 2: [GENERAL[1]], 3: [GENERAL[2]], 4: [OFF_TOPIC]}
    for node, texts in lessons.items():
        folder = state / f"learn-{node}"
        folder.mkdir(parents=True)
        entries = {f"L{i}": {"text": text, "confidence": 0.75} for i, text in enumerate(texts, 1)}
        (folder / "state.json").write_text(json.dumps({"settings": {"domain": "math"}, "lessons": entries}))
    results = network.run(tasks_per_node=8, phases=["network"], state=state, learned_dir=tmp_path / "learned", log=lambda _: None)
    figures = results["network"]
    own = [b for b in figures["batches"] if b["round"] == "own lessons"]
    assert len(own) == 4 and all(b["status"] == "accepted" and b["count"] == 1 for b in own)
    endorsed = {int(k): v["endorsed"] for k, v in figures["endorsements"].items()}
    assert all(OFF_TOPIC not in texts for texts in endorsed.values())
    for node, texts in endorsed.items():
        assert not set(texts) & set(lessons[node])  # a node never endorses its own lesson
    agent = figures["agent"]
    accepted = {entry["text"] for entry in agent["accepted_lessons"]}
    assert accepted == {t for t in GENERAL if sum(t in texts for texts in endorsed.values()) >= 2} and accepted
    assert OFF_TOPIC not in accepted and agent["pending"] >= 1 and agent["required_support"] == 3
    manifest = json.loads((tmp_path / "learned" / "MANIFEST.json").read_text())
    assert manifest["lessons_per_node"] == {"1": 1, "2": 1, "3": 1, "4": 1}
    assert (tmp_path / "learned" / "node-4.jsonl").read_text().count("\n") == 1
    assert "Fresh agent:" in network.markdown_table(results)
