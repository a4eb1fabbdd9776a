"""From reports to the global library: cluster, give each node one voice, take robust statistics
per cluster, apply the acceptance policy.

Pure: no I/O. The caller passes reports it has verified against their batches, the set of node ids
admitted on chain, and (optionally) a weight per node.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from dso.core.aggregate.clipped_code import clipped_bitdelta_consensus
from dso.core.aggregate.cluster import NEAR_DUPLICATE_COSINE, cluster_reports, report_sort_key
from dso.core.aggregate.core_words import core_words_index
from dso.core.aggregate.geometric_median import geometric_median
from dso.core.aggregate.krum import krum, multi_krum
from dso.core.aggregate.majority import bitdelta_consensus
from dso.core.aggregate.median import coordinate_median, weighted_median
from dso.core.aggregate.medoid import medoid_index
from dso.core.aggregate.policy import AcceptancePolicy, ceil_fraction
from dso.core.aggregate.records import Report
from dso.core.aggregate.trimmed_mean import trimmed_mean
from dso.core.codec import SCALE_BYTES, unpack_scales
from dso.errors import AggregationError, CodecError, InsufficientReports

# (voice vectors (n, d), voice weights (n,)) -> consensus vector (d,)
VectorAggregator = Callable[[np.ndarray, np.ndarray], np.ndarray]

VECTOR_AGGREGATORS = ("median", "trimmed_mean", "geometric_median", "krum", "multi_krum")
# Those that take no weights: asking for them with unequal node weights is an error, not a shrug.
UNWEIGHTED_AGGREGATORS = frozenset({"trimmed_mean", "krum", "multi_krum"})
# The share of a cluster's voices assumed Byzantine by the aggregators that need a count f:
# f = ceil(0.25 n), so at least one attacker is assumed in every cluster.
DEFAULT_BYZANTINE_FRACTION = 0.25
DEFAULT_POLICY = AcceptancePolicy()
# How a cluster's code is formed from its voices' codes: "clipped" (`clipped_code`, the default) or
# "majority" (the per-bit majority of `majority.bitdelta_consensus`, the earlier default).
CODE_RULES: dict[str, Callable[[np.ndarray, np.ndarray], bytes]] = {
    "clipped": clipped_bitdelta_consensus,
    "majority": bitdelta_consensus,
}
# How a cluster's text is chosen: "core_words" (`core_words`, the default) or "medoid" (the
# embedding medoid alone, the earlier default).
TEXT_RULES = ("core_words", "medoid")


@dataclass(frozen=True, eq=False)
class ClusterResult:
    """One experience as the network reported it, with its robust statistics and the verdict.

    `experience_id`, `text` are those of the representative voice's report (the text rule's
    choice); `domain` is the weighted plurality of the voices' domains (ties: alphabetical);
    `confidence` is the weighted median confidence of the endorsing voices (of all voices under the
    policy's "median" rule, or when none endorses); `vector` the consensus vector (None when the
    chosen aggregator's precondition fails for this many voices); `code` the code rule's consensus of
    the voices' codes (None when no voice carries one). `support` = len(node_ids), distinct admitted
    nodes; `endorsements` of them count towards acceptance, weighing `support_weight` in all.
    `experience_ids` and `batch_roots` list every report's provenance. `reason` is None iff accepted.
    """

    experience_id: str
    text: str
    domain: str
    confidence: float
    vector: np.ndarray | None
    code: bytes | None
    support: int
    node_ids: tuple[int, ...]
    experience_ids: tuple[str, ...]
    batch_roots: tuple[bytes, ...]
    accepted: bool
    reason: str | None
    endorsements: int = 0
    support_weight: float = 0.0


@dataclass(frozen=True)
class Aggregation:
    """The outcome of one aggregation window: every cluster (accepted first, then by support), the
    numbers the acceptance bar was computed from, how many reports were dropped because their node is
    not admitted, and how many reports' codes were left out of the vote as malformed.
    `required_weight` is the endorsing weight a cluster needs besides its min_nodes voices
    (`AcceptancePolicy.required_weight`) out of the window's `active_weight` (without node weights,
    both count nodes)."""

    clusters: tuple[ClusterResult, ...]
    active_reporters: int
    required_support: int
    dropped_reports: int
    invalid_codes: int
    active_weight: float = 0.0
    required_weight: float = 0.0

    @property
    def accepted(self) -> tuple[ClusterResult, ...]:
        """The clusters that enter the global library."""
        return tuple(c for c in self.clusters if c.accepted)


@dataclass(frozen=True, eq=False)
class _Voice:
    """One node's say in one cluster: the median confidence of its reports there, and its own
    medoid report (text, domain, vector, code)."""

    node_id: int
    confidence: float
    report: Report


def aggregate(
    reports: Iterable[Report],
    admitted_node_ids: Collection[int],
    policy: AcceptancePolicy = DEFAULT_POLICY,
    vector_aggregator: str | VectorAggregator | None = "median",
    *,
    node_weights: Mapping[int, float] | None = None,
    byzantine_fraction: float = DEFAULT_BYZANTINE_FRACTION,
    similarity: float = NEAR_DUPLICATE_COSINE,
    code_rule: str = "clipped",
    text_rule: str = "core_words",
    clusters: Iterable[tuple[Report, ...]] | None = None,
    active_reporters: Collection[int] | None = None,
) -> Aggregation:
    """Cluster `reports`, compute each cluster's robust statistics and decide its acceptance.

    1. Reports whose `node_id` is not in `admitted_node_ids` are dropped (counted in
       `dropped_reports`): addresses the chain has not admitted carry no weight at all.
    2. `cluster_reports` (exact id/text, then cosine >= `similarity`).
    3. In each cluster every node gets one voice: the median confidence of its reports there, and
       its own medoid report for text, domain, vector and code. (An actual report, not the median
       of its vectors: the median of 50 noisy near-duplicates is more central than any single honest
       report, so a flooding node would win the medoid text; with one report per voice, flooding
       buys it no more than choosing one well-placed text would.)
    4. Statistics over the voices (sorted by node id, so ties go to the lowest id): weighted median
       confidence of the endorsing voices (`AcceptancePolicy`), the text by `text_rule`
       (``"core_words"``: `core_words`; ``"medoid"``: the embedding medoid), plurality domain,
       `vector_aggregator` (``"median"``, ``"trimmed_mean"``, ``"geometric_median"``, ``"krum"``,
       ``"multi_krum"``, a callable ``(vectors, weights) -> vector``, or None for no vector: a caller
       that keeps only the code, like a library, skips the cost), the code by `code_rule`
       (``"clipped"``: `clipped_code`; ``"majority"``: the per-bit majority).
    5. `policy` decides; a cluster whose aggregator precondition fails is rejected with that reason.

    `node_weights` (node id -> weight > 0, e.g. `dso.core.reputation.reputation_weights`) weight
    every statistic and the policy's weight bar, never the distinct-node count (min_nodes).
    WARNING: a node with half the total weight dictates every weighted statistic. The trimmed mean
    and Krum take no weights and refuse unequal ones.

    Codes are the nodes' own bytes: one that is not a ``bitdelta-1`` code of the vectors' dimension
    (wrong length, or a scale no encoder writes) is left out of the vote and counted in
    `invalid_codes`, so one node cannot make the whole aggregation fail. Pass code=None for reports
    of another codec or baseline.

    `byzantine_fraction` sets f = ceil(fraction * voices) for the trimmed mean and (Multi-)Krum.
    At the default 0.25, Krum needs n > 2f + 2, i.e. at least 7 voices, and the trimmed mean 3.

    A caller that clusters by itself (a library re-aggregating only what changed,
    dso.workflows.aggregation) passes `clusters` (which replace step 2; `reports` must then be
    their reports) and `active_reporters`, the ids of the admitted nodes that reported anything in
    the whole window, which the acceptance bar is relative to (`node_weights` must then weigh each).

    Raises AggregationError for malformed input or settings.
    """
    if not isinstance(policy, AcceptancePolicy):
        raise AggregationError(f"policy must be an AcceptancePolicy; got {type(policy).__name__}")
    admitted = _check_node_ids(admitted_node_ids)
    reports = list(reports)
    if any(not isinstance(r, Report) for r in reports):
        raise AggregationError("reports must be Report records")
    kept = [r for r in reports if r.node_id in admitted]
    reporters = sorted({r.node_id for r in kept})
    weights = _check_node_weights(node_weights, reporters)
    combine = _vector_aggregator(vector_aggregator, byzantine_fraction, weights)
    if code_rule not in CODE_RULES:
        raise AggregationError(f"unknown code rule {code_rule!r}; choose one of {list(CODE_RULES)}")
    if text_rule not in TEXT_RULES:
        raise AggregationError(f"unknown text rule {text_rule!r}; choose one of {list(TEXT_RULES)}")
    if active_reporters is None:
        window = _Window.of(policy, weights)
    else:  # the bar is relative to every node active in the whole window, not only these clusters'
        active_ids = sorted(set(active_reporters) & admitted)
        window = _Window.of(policy, _check_node_weights(node_weights, active_ids))
    if clusters is None:
        kept, invalid_codes = _without_invalid_codes(kept)
        grouped = cluster_reports(kept, similarity)
    else:
        grouped, invalid_codes = [], 0
        for cluster in clusters:
            members, bad = _without_invalid_codes([r for r in cluster if r.node_id in admitted])
            invalid_codes += bad
            if members:
                grouped.append(tuple(sorted(members, key=report_sort_key)))
    results = [_cluster_result(cluster, weights, combine, policy, window, CODE_RULES[code_rule], text_rule) for cluster in grouped]
    results.sort(key=lambda c: (not c.accepted, -c.support, c.experience_id))
    return Aggregation(tuple(results), window.active, policy.required_support(window.active), len(reports) - len(kept),
                       invalid_codes, window.active_weight, float(policy.required_weight(window.active_weight)))


@dataclass(frozen=True)
class _Window:
    """What the acceptance bar depends on: the active reporters, their total weight, the weight of a
    whole voice (`AcceptancePolicy.voice_weight` of their weighted median weight), and whether all
    weigh the same (then the bar counts nodes, exactly as without weights)."""

    active: int
    active_weight: float
    voice_weight: float
    uniform: bool

    @classmethod
    def of(cls, policy: AcceptancePolicy, weights: Mapping[int, float]) -> "_Window":
        values = np.array(list(weights.values()), dtype=np.float64)
        if not len(values):
            return cls(0, 0.0, 1.0, True)
        return cls(len(values), float(values.sum()), policy.voice_weight(weighted_median(values, values)), len(set(values.tolist())) == 1)


def _cluster_result(
    cluster: tuple[Report, ...],
    node_weights: Mapping[int, float],
    combine: VectorAggregator | None,
    policy: AcceptancePolicy,
    window: _Window,
    code_rule: Callable[[np.ndarray, np.ndarray], bytes],
    text_rule: str,
) -> ClusterResult:
    voices = _voices(cluster)
    w = np.array([node_weights[v.node_id] for v in voices])
    vectors = np.stack([v.report.vector for v in voices])
    units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    if text_rule == "core_words":
        chosen = voices[core_words_index([v.report.text for v in voices], units, w)].report
    else:
        chosen = voices[medoid_index(units, w)].report
    confidences = np.array([v.confidence for v in voices])
    endorsing = np.array([policy.endorses(c) for c in confidences.tolist()])
    counted = endorsing if endorsing.any() else np.ones(len(voices), dtype=bool)
    confidence = weighted_median(confidences[counted], w[counted])
    reasons = []
    vector: np.ndarray | None = None
    if combine is not None:
        try:
            vector = np.array(combine(vectors, w), dtype=np.float64)
            vector.setflags(write=False)
        except InsufficientReports as exc:
            reasons.append(str(exc))
    endorsements, support_weight = int(endorsing.sum()), float(w[endorsing].sum())
    if window.uniform:
        policy_reason = policy.rejection(endorsements, confidence, window.active)
    else:
        whole_voices = float(np.minimum(1.0, w[endorsing] / window.voice_weight).sum())
        policy_reason = policy.rejection(endorsements, confidence, window.active, voices=whole_voices, support_weight=support_weight,
                                         active_weight=window.active_weight)
    if policy_reason:
        reasons.insert(0, policy_reason)
    return ClusterResult(
        experience_id=chosen.experience_id,
        text=chosen.text,
        domain=_plurality([v.report.domain for v in voices], w),
        confidence=confidence,
        vector=vector,
        code=_consensus_code(voices, w, code_rule),
        support=len(voices),
        node_ids=tuple(v.node_id for v in voices),
        experience_ids=tuple(sorted({r.experience_id for r in cluster})),
        batch_roots=tuple(sorted({r.batch_root for r in cluster})),
        accepted=not reasons,
        reason="; ".join(reasons) or None,
        endorsements=endorsements,
        support_weight=support_weight,
    )


def _voices(cluster: tuple[Report, ...]) -> list[_Voice]:
    """One voice per node, in node id order (the cluster is sorted by node, then id)."""
    by_node: dict[int, list[Report]] = {}
    for report in cluster:
        by_node.setdefault(report.node_id, []).append(report)
    voices = []
    for node_id in sorted(by_node):
        own = by_node[node_id]
        if len(own) == 1:
            voices.append(_Voice(node_id, own[0].confidence, own[0]))
            continue
        vectors = np.stack([r.vector for r in own])
        units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        confidence = weighted_median(np.array([r.confidence for r in own]))
        voices.append(_Voice(node_id, confidence, own[medoid_index(units)]))
    return voices


def _plurality(labels: list[str], weights: np.ndarray) -> str:
    tally: dict[str, float] = {}
    for label, weight in zip(labels, weights.tolist()):
        tally[label] = tally.get(label, 0.0) + weight
    return min(tally, key=lambda label: (-tally[label], label))


def _consensus_code(voices: list[_Voice], weights: np.ndarray, code_rule: Callable[[np.ndarray, np.ndarray], bytes]) -> bytes | None:
    coded = [(v.report.code, w) for v, w in zip(voices, weights.tolist()) if v.report.code is not None]
    if not coded:
        return None
    codes = np.stack([np.frombuffer(code, dtype=np.uint8) for code, _ in coded])
    return code_rule(codes, np.array([w for _, w in coded]))


def _vector_aggregator(choice: str | VectorAggregator | None, byzantine_fraction: float,
                       node_weights: Mapping[int, float]) -> VectorAggregator | None:
    if isinstance(byzantine_fraction, bool) or not isinstance(byzantine_fraction, (int, float)) or not 0 <= byzantine_fraction < 0.5:
        raise AggregationError(f"byzantine_fraction must be in [0, 0.5); got {byzantine_fraction!r}")
    if choice is None or callable(choice):
        return choice
    if choice not in VECTOR_AGGREGATORS:
        raise AggregationError(f"unknown vector aggregator {choice!r}; choose one of {list(VECTOR_AGGREGATORS)} or pass a callable")
    if choice in UNWEIGHTED_AGGREGATORS and len(set(node_weights.values())) > 1:
        raise AggregationError(f"{choice} takes no weights and the node weights differ: use 'median' or 'geometric_median'")

    def f_of(vectors: np.ndarray) -> int:
        return ceil_fraction(byzantine_fraction, len(vectors))

    table: dict[str, VectorAggregator] = {
        "median": coordinate_median,
        "geometric_median": lambda x, w: geometric_median(x, w),
        "trimmed_mean": lambda x, w: trimmed_mean(x, f_of(x)),
        "krum": lambda x, w: krum(x, f_of(x)),
        "multi_krum": lambda x, w: multi_krum(x, f_of(x)),
    }
    return table[choice]


def _check_node_ids(node_ids: Collection[int]) -> frozenset[int]:
    ids = frozenset(node_ids)
    if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids):
        raise AggregationError("admitted_node_ids must be on-chain node ids (integers >= 0)")
    return ids


def _check_node_weights(node_weights: Mapping[int, float] | None, reporters: list[int]) -> dict[int, float]:
    """A weight for every reporting node: 1.0 each when none are given; otherwise every reporter
    needs a finite weight > 0 (a missing one is an error, not a silent default)."""
    if node_weights is None:
        return {node: 1.0 for node in reporters}
    missing = [node for node in reporters if node not in node_weights]
    if missing:
        raise AggregationError(f"node_weights has no weight for reporting nodes {missing[:10]}")
    weights = {}
    for node in reporters:
        value = node_weights[node]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
            raise AggregationError(f"node {node}'s weight must be a finite number > 0; got {value!r}")
        weights[node] = float(value)
    return weights


def _without_invalid_codes(reports: list[Report]) -> tuple[list[Report], int]:
    """The reports with every code that is not a bitdelta-1 code of the vectors' dimension replaced
    by None, and how many were replaced."""
    if not reports:
        return reports, 0
    dim = reports[0].vector.shape[0]
    valid: dict[bytes, bool] = {}  # many reports of a text share its code: check each code once

    def readable(code: bytes) -> bool:
        if code not in valid:
            valid[code] = _is_bitdelta_code(code, dim)
        return valid[code]

    cleaned = [r if r.code is None or readable(r.code) else replace(r, code=None) for r in reports]
    return cleaned, sum(a is not b for a, b in zip(reports, cleaned))


def _is_bitdelta_code(code: bytes, dim: int) -> bool:
    if dim % 8 or len(code) != dim // 8 + SCALE_BYTES:
        return False
    try:
        unpack_scales(np.frombuffer(code[-SCALE_BYTES:], dtype=np.uint8))
    except CodecError:
        return False
    return True
