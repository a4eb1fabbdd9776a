"""Endorsing other nodes' lessons: how a learned lesson reaches the network's distinct-node bar.

A lesson one node publishes stays pending in every agent's library: the acceptance policy wants at
least 3 distinct admitted nodes behind an entry (`AcceptancePolicy.min_nodes`), which keeps a Sybil
or a careless node from filling libraries. Nodes that learn on their own problems rarely word a
lesson the same way, so a lesson gets its other voices by endorsement: a node that synced reads the
pending lessons of other nodes and reports again, from its own wallet, those that apply to its own
problems (`dso.core.lessons.endorsable`: embedding cosine >= the agent's gate threshold to at least
MIN_SHARE of its problems, and none of their numbers or names copied).

This checks generality, not usefulness: validating a lesson by rollouts on the endorser's problems
(reward with and without it) is the stronger rule, and costs ~40 s per rollout with the 1.5B model
on this machine.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from dso.core.lessons import endorsable
from dso.edges.embed import Embedder
from dso.workflows.agent import DEFAULT_MIN_SIMILARITY
from dso.workflows.library import PendingEntry

MIN_SHARE = 0.10  # of the endorser's problems a lesson must apply to (and at least MIN_TASKS)
MIN_TASKS = 2


def endorsements(pending: Sequence[PendingEntry], own_lessons: Sequence[str], problems: Sequence[str], embedder: Embedder,
                 min_similarity: float = DEFAULT_MIN_SIMILARITY) -> list[PendingEntry]:
    """The pending entries a node endorses: not its own lessons (exact text), applying to at least
    max(MIN_TASKS, ceil(MIN_SHARE x problems)) of its `problems`, copying none of their numbers or names."""
    mine = set(own_lessons)
    candidates = [p for p in pending if p.text not in mine]
    if not candidates or not problems:
        return []
    task_vectors = _unit(embedder.embed(list(problems)))
    lesson_vectors = _unit(embedder.embed([p.text for p in candidates]))
    least = max(MIN_TASKS, math.ceil(MIN_SHARE * len(problems)))
    text = "\n".join(problems)
    return [p for p, vector in zip(candidates, lesson_vectors) if endorsable(p.text, vector, task_vectors, text, min_similarity, least)]


def _unit(vectors: object) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float64)
    return array / np.linalg.norm(array, axis=1, keepdims=True)
