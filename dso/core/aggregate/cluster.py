"""Which reports are about the same experience: exact matches first, then near-duplicates.

1. Exact: reports with the same experience id, or the same text, form one group. (The id hashes the
   publishing node and time too, so one text from two nodes has two ids; equal texts are the
   "exact hash" match across nodes.) One id arriving with two texts is refused: the caller verifies
   reports against their batches, so that is a bug upstream, not something to average over.
2. Near-duplicates: groups whose vectors (the coordinate-wise median of the group's vectors, unit
   length) have cosine >= `similarity` are neighbours. Leaders are taken in order of *neighbourhood
   support* (distinct nodes in the group and its neighbours), then own support, then sha256 of the
   text; each leader captures every still unassigned neighbour.

Why leaders and not connected components (single linkage): components chain, so a few bridging
texts merge two different experiences into one, and across a large library paraphrases drift from
"verify by substitution" to "check your work". Here every member is within `similarity` of its
leader, so a cluster's diameter is bounded (cosine >= 2 * 0.9**2 - 1 = 0.62 between any two members
at the default). Ordering leaders by distinct-node support, not by report count, means one node
adds at most one to any group's rank however many near-duplicates it floods, and the leader of a
crowd of honest paraphrases is its most central text, not whichever text hashes first.

The result depends only on the multiset of reports, never on their order: groups are sorted by their
text hash before any arithmetic, so even the floating-point rounding is the same for every order.

CAUTION: cost is O(G^2 d) time for G distinct texts (10,000 reports of 384-d take about 2 s) and
memory grows with the number of near-duplicate pairs, so k near-duplicate texts from one node cost
k^2. Bound what one node may contribute to a window before aggregating.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

from dso.core.aggregate.median import coordinate_median
from dso.core.aggregate.records import Report
from dso.errors import AggregationError

# Cosine at or above which two texts state the same experience: clusters here, and the local
# library's near-duplicate check (dso.workflows.library) imports it.
NEAR_DUPLICATE_COSINE = 0.9
# Rows of the group-similarity matrix computed at a time: bounds memory at CHUNK x groups floats.
_CHUNK = 256


def report_sort_key(report: Report) -> tuple[int, str, bytes, float, bytes, bytes]:
    """A total order on reports (node, id, batch, then the rest), used wherever order could leak."""
    return (report.node_id, report.experience_id, report.batch_root, report.confidence, report.code or b"", report.vector.tobytes())


def cluster_reports(reports: Iterable[Report], similarity: float = NEAR_DUPLICATE_COSINE) -> list[tuple[Report, ...]]:
    """Partition `reports` into clusters of the same experience, each a tuple sorted by
    `report_sort_key`, clusters in the order their leaders were taken.

    Raises AggregationError for vectors of different dimensions, an id with two texts, or a
    `similarity` outside (0, 1].
    """
    if isinstance(similarity, bool) or not isinstance(similarity, (int, float)) or not 0 < similarity <= 1:
        raise AggregationError(f"similarity must be a cosine in (0, 1]; got {similarity!r}")
    groups = _exact_groups(reports)
    if not groups:
        return []
    units = _unit_rows(np.stack([_group_vector(group) for group in groups]))
    neighbours = _neighbours(units, similarity)
    nodes = [frozenset(r.node_id for r in group) for group in groups]
    return [tuple(sorted((r for i in members for r in groups[i]), key=report_sort_key)) for members in leader_clusters(nodes, neighbours)]


def leader_clusters(nodes: Sequence[frozenset[int]], neighbours: Sequence[Sequence[int]]) -> list[list[int]]:
    """Partition groups 0..n-1 (numbered in text-hash order) into clusters, given each group's
    reporting nodes and its neighbours (a symmetric relation): leaders are taken by neighbourhood
    support, then own support, then number, and each captures its still unassigned neighbours.
    Returns each cluster's group numbers, leader first, clusters in the order their leaders were
    taken.

    A cluster never spans two connected components of the neighbour relation, and the order of
    groups within one component does not depend on any other: running this on each component
    alone (groups renumbered in the same relative order) gives the same clusters. That is what
    lets a library re-cluster only the components new reports touch (dso.workflows.library)."""
    reach = [len(nodes[i].union(*(nodes[j] for j in neighbours[i]))) for i in range(len(nodes))]
    order = sorted(range(len(nodes)), key=lambda i: (-reach[i], -len(nodes[i]), i))
    assigned = np.zeros(len(nodes), dtype=bool)
    clusters = []
    for leader in order:
        if assigned[leader]:
            continue
        members = [leader] + [j for j in neighbours[leader] if not assigned[j]]
        assigned[members] = True
        clusters.append(members)
    return clusters


def _exact_groups(reports: Iterable[Report]) -> list[list[Report]]:
    """Reports grouped by text (hence by id), groups sorted by sha256 of the text."""
    text_of_id: dict[str, str] = {}
    by_text: dict[str, list[Report]] = {}
    dim = None
    for report in reports:
        if not isinstance(report, Report):
            raise AggregationError(f"expected Report records; got {type(report).__name__}")
        if dim is None:
            dim = report.vector.shape[0]
        elif report.vector.shape[0] != dim:
            raise AggregationError(
                f"report {report.experience_id} has a {report.vector.shape[0]}-d vector, others {dim}-d: embed every text with one model"
            )
        known = text_of_id.setdefault(report.experience_id, report.text)
        if known != report.text:
            raise AggregationError(
                f"experience {report.experience_id} arrives with two different texts: verify reports against their batch before aggregating"
            )
        by_text.setdefault(report.text, []).append(report)
    hashed = sorted((hashlib.sha256(text.encode("utf-8")).digest(), text) for text in by_text)
    return [by_text[text] for _, text in hashed]


def _group_vector(group: list[Report]) -> np.ndarray:
    """The coordinate-wise median of a group's vectors (one text: normally equal vectors)."""
    return group[0].vector if len(group) == 1 else coordinate_median(np.stack([r.vector for r in group]))


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise AggregationError("a group's median vector is zero: its reports' vectors cancel out; re-embed the texts")
    return vectors / norms


def _neighbours(units: np.ndarray, similarity: float) -> list[list[int]]:
    """For each row, the other rows with cosine >= similarity (each pair computed once, so the
    relation is symmetric), in increasing index order."""
    neighbours: list[list[int]] = [[] for _ in range(len(units))]
    for start in range(0, len(units), _CHUNK):
        block = units[start : start + _CHUNK] @ units[start:].T
        rows, cols = np.nonzero(block >= similarity)
        for i, j in zip((rows + start).tolist(), (cols + start).tolist()):
            if j > i:
                neighbours[i].append(j)
                neighbours[j].append(i)
    return [sorted(n) for n in neighbours]
