"""Aggregation: clusters do not depend on report order, a node is one voice however much it sends,
unadmitted nodes carry no weight, each aggregator matches a slow reference and keeps its breakdown
point, and acceptance holds at its boundaries (and beats the seeds' rule where that one fails)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from dso.core.aggregate import (
    AcceptancePolicy,
    Report,
    aggregate,
    bitdelta_consensus,
    centered_clipping,
    cluster_reports,
    coordinate_median,
    core_words,
    core_words_index,
    geometric_median,
    krum,
    krum_scores,
    majority_bits,
    medoid_index,
    multi_krum,
    trimmed_mean,
    weighted_median,
    weiszfeld_steps,
)
from dso.core.aggregate.clipped_code import clipped_bitdelta_consensus
from dso.core.aggregate.cluster import report_sort_key
from dso.core.codec import get_codec
from dso.errors import AggregationError, DsoError, InsufficientReports

DIM = 16
ROOT = bytes(32)


def report(
    experience_id: str,
    node: int,
    vector,
    text: str | None = None,
    confidence: float = 0.8,
    domain: str = "math.algebra",
    code: bytes | None = None,
    root: bytes = ROOT,
) -> Report:
    text = text or f"text of {experience_id}"
    return Report(experience_id, node, text, domain, confidence, np.asarray(vector, dtype=float), root, code)


def unit(rng: np.random.Generator, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal(dim)
    return v / np.linalg.norm(v)


def near(rng: np.random.Generator, v: np.ndarray, noise: float = 0.02) -> np.ndarray:
    """A near-duplicate of unit `v` (cosine ~0.99 at the default noise in 16-d)."""
    w = v + noise * rng.standard_normal(len(v))
    return w / np.linalg.norm(w)


def with_cosine(v: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at exactly `cosine` to unit `v`."""
    orthogonal = rng.standard_normal(len(v))
    orthogonal -= (orthogonal @ v) * v
    orthogonal /= np.linalg.norm(orthogonal)
    return cosine * v + math.sqrt(1 - cosine**2) * orthogonal


def experience(topic: np.ndarray, nodes, rng, prefix: str, confidence: float = 0.8) -> list[Report]:
    """One honest report per node of a paraphrase near `topic`."""
    return [report(f"{prefix}-{node}", node, near(rng, topic), confidence=confidence) for node in nodes]


def cluster_keys(clusters) -> list[tuple]:
    return [tuple(report_sort_key(r) for r in cluster) for cluster in clusters]


def result_view(result) -> list[tuple]:
    return [
        (c.experience_id, c.text, c.domain, c.confidence, None if c.vector is None else c.vector.tobytes(), c.code)
        + (c.support, c.node_ids, c.experience_ids, c.batch_roots, c.accepted, c.reason)
        for c in result.clusters
    ]


@st.composite
def report_sets(draw: st.DrawFn) -> list[Report]:
    """A messy window: a few topics in 8-d, paraphrases at noise levels that straddle the 0.9
    threshold, exact copies across nodes and batches, nodes that report one topic several times,
    bitdelta-1 codes (zero baseline) on about half the texts."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    topics = [unit(rng, 8) for _ in range(draw(st.integers(1, 4)))]
    reports = []
    for i in range(draw(st.integers(1, 30))):
        node = int(rng.integers(0, 8))
        topic = topics[int(rng.integers(len(topics)))]
        vector = near(rng, topic, float(rng.choice([0.05, 0.2, 0.35])))
        text = f"paraphrase {i}"
        confidence, domain = float(rng.uniform()), str(rng.choice(["math", "code"]))
        code = np.packbits(vector >= 0).tobytes() + np.float16(rng.uniform(0.01, 0.1)).tobytes() if rng.random() < 0.5 else None
        for copy in range(int(rng.integers(1, 3))):
            copy_node = node if copy == 0 else int(rng.integers(0, 8))
            root = bytes([copy]) * 32
            reports.append(report(f"e{i}-{copy_node}", copy_node, vector, text, confidence, domain, code, root))
    return reports


# --- Clustering and order independence ---------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(report_sets(), st.data())
def test_clusters_do_not_depend_on_report_order(reports, data):
    shuffled = data.draw(st.permutations(reports))
    assert cluster_keys(cluster_reports(shuffled)) == cluster_keys(cluster_reports(reports))
    # And they partition the input.
    assert sorted(k for c in cluster_keys(cluster_reports(reports)) for k in c) == sorted(map(report_sort_key, reports))


@settings(max_examples=30, deadline=None)
@given(report_sets(), st.data(), st.sampled_from(["median", "trimmed_mean", "geometric_median", "krum", "multi_krum"]))
def test_aggregation_does_not_depend_on_report_order(reports, data, aggregator):
    shuffled = data.draw(st.permutations(reports))
    policy = AcceptancePolicy(min_nodes=2, min_confidence=0.3)
    assert result_view(aggregate(shuffled, range(8), policy, aggregator)) == result_view(aggregate(reports, range(8), policy, aggregator))


def test_near_duplicates_join_at_cosine_0_9_and_not_below():
    rng = np.random.default_rng(1)
    a = unit(rng)
    joined = cluster_reports([report("a", 1, a), report("b", 2, with_cosine(a, 0.9 + 1e-9, rng))])
    apart = cluster_reports([report("a", 1, a), report("b", 2, with_cosine(a, 0.9 - 1e-9, rng))])
    assert len(joined) == 1 and len(apart) == 2


def test_equal_texts_from_different_nodes_are_an_exact_match_whatever_their_vectors():
    rng = np.random.default_rng(2)
    reports = [report(f"id{n}", n, unit(rng), text="verify by substitution") for n in range(3)]
    assert len(cluster_reports(reports)) == 1


def test_one_experience_id_with_two_texts_is_refused():
    rng = np.random.default_rng(3)
    with pytest.raises(AggregationError, match="two different texts"):
        cluster_reports([report("x", 1, unit(rng), text="one"), report("x", 2, unit(rng), text="two")])


def test_a_chain_of_near_duplicates_does_not_merge_distant_experiences():
    # Consecutive points at cosine 0.95, the ends 127 degrees apart: single linkage makes one cluster.
    step = math.acos(0.95)
    points = [np.r_[math.cos(k * step), math.sin(k * step), np.zeros(DIM - 2)] for k in range(8)]
    clusters = cluster_reports([report(f"p{k}", k, p) for k, p in enumerate(points)])
    assert len(clusters) >= 2
    for cluster in clusters:
        for r, s in itertools.combinations(cluster, 2):
            assert r.vector @ s.vector >= 2 * 0.9**2 - 1


def test_the_most_supported_text_leads_and_captures_its_paraphrases():
    rng = np.random.default_rng(4)
    topic = unit(rng)
    reports = experience(topic, range(1, 6), rng, "h")
    clusters = cluster_reports(reports)
    assert len(clusters) == 1 and len(clusters[0]) == 5


# --- Sybil weighting: one node, one voice ------------------------------------------------------


def test_fifty_copies_from_one_node_give_support_one():
    rng = np.random.default_rng(5)
    topic = unit(rng)
    copies = [report("same", 7, topic, text="buy my token", confidence=1.0, root=bytes([i]) * 32) for i in range(50)]
    result = aggregate(copies, {7}, AcceptancePolicy())
    (cluster,) = result.clusters
    assert cluster.support == 1 and cluster.node_ids == (7,)
    assert not cluster.accepted and "support 1 < 3" in cluster.reason
    assert len(cluster.batch_roots) == 50


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 60), st.integers(0, 2**32 - 1), st.integers(2, 5), st.floats(0, 1))
def test_one_node_flooding_near_duplicates_never_gets_an_experience_accepted(copies, seed, min_nodes, fraction):
    rng = np.random.default_rng(seed)
    topic = unit(rng)
    flood = [report(f"s{i}", 9, near(rng, topic), text=f"spam {i}", confidence=1.0) for i in range(copies)]
    result = aggregate(flood, {9}, AcceptancePolicy(min_nodes=min_nodes, support_fraction=fraction, min_confidence=0.0))
    assert all(c.support == 1 and not c.accepted for c in result.clusters)


def test_a_node_reporting_one_experience_several_times_votes_once_with_its_median_confidence():
    rng = np.random.default_rng(6)
    topic = unit(rng)
    honest = experience(topic, [1, 2, 3], rng, "h", confidence=0.6)
    loud = [report(f"l{i}", 4, near(rng, topic), text=f"loud {i}", confidence=c) for i, c in enumerate([1.0, 1.0, 1.0, 0.1, 1.0])]
    (cluster,) = aggregate(honest + loud, range(1, 5)).clusters
    assert cluster.support == 4 and cluster.node_ids == (1, 2, 3, 4)
    # Voices: 0.6, 0.6, 0.6 and node 4's own median 1.0; over copies it would be 1.0.
    assert cluster.confidence == pytest.approx(0.6)


def test_reports_from_nodes_not_admitted_are_dropped_and_counted():
    rng = np.random.default_rng(7)
    topic = unit(rng)
    honest = experience(topic, [1, 2], rng, "h")
    sybils = experience(topic, range(100, 110), rng, "s", confidence=1.0)
    result = aggregate(honest + sybils, admitted_node_ids={1, 2, 3})
    assert result.dropped_reports == 10 and result.active_reporters == 2
    (cluster,) = result.clusters
    assert cluster.node_ids == (1, 2) and not cluster.accepted


def test_colluders_one_short_of_the_bar_cannot_get_their_text_in_and_one_more_can():
    rng = np.random.default_rng(8)
    honest_topics = [unit(rng) for _ in range(20)]
    honest = [r for k, t in enumerate(honest_topics) for r in experience(t, range(5 * k, 5 * k + 5), rng, f"h{k}")]
    policy = AcceptancePolicy()  # 100 active reporters + colluders: required = ceil(0.05 * active)
    planted = unit(rng)
    for colluders, accepted in [(5, False), (6, True)]:
        bad = experience(planted, range(1000, 1000 + colluders), rng, "bad", confidence=1.0)
        result = aggregate(honest + bad, set(range(100)) | set(range(1000, 1000 + colluders)), policy)
        assert result.required_support == math.ceil(0.05 * (100 + colluders)) == 6
        planted_cluster = next(c for c in result.clusters if c.text.startswith("text of bad"))
        assert planted_cluster.accepted is accepted


# --- Robust statistics in a cluster ------------------------------------------------------------


def test_cluster_text_is_the_medoid_and_domain_the_plurality():
    rng = np.random.default_rng(9)
    topic = unit(rng)
    reports = [
        report("center", 1, topic, domain="math.algebra"),
        report("left", 2, with_cosine(topic, 0.97, rng), domain="math.algebra"),
        report("right", 3, with_cosine(topic, 0.97, rng), domain="code"),
        report("far", 4, with_cosine(topic, 0.93, rng), domain="code"),
        report("other", 5, with_cosine(topic, 0.96, rng), domain="zzz"),
    ]
    (cluster,) = aggregate(reports, range(1, 6)).clusters
    assert cluster.text == "text of center" and cluster.experience_id == "center"
    assert cluster.domain == "code"  # 2 votes each for code and math.algebra: alphabetical tie-break
    assert cluster.accepted and cluster.reason is None


def test_node_weights_weight_the_statistics_but_never_the_support():
    rng = np.random.default_rng(10)
    topic = unit(rng)
    reports = [report(f"r{n}", n, near(rng, topic), confidence=c) for n, c in [(1, 0.6), (2, 0.7), (3, 0.9)]]
    (plain,) = aggregate(reports, {1, 2, 3}).clusters
    (weighted,) = aggregate(reports, {1, 2, 3}, node_weights={1: 1, 2: 1, 3: 5}).clusters
    assert plain.confidence == pytest.approx(0.7) and weighted.confidence == pytest.approx(0.9)
    assert plain.support == weighted.support == 3
    assert (plain.support_weight, weighted.support_weight) == (3, 7)


def test_unequal_weights_are_refused_by_aggregators_that_take_none():
    rng = np.random.default_rng(11)
    reports = experience(unit(rng), [1, 2, 3], rng, "h")
    for name in ["trimmed_mean", "krum", "multi_krum"]:
        with pytest.raises(AggregationError, match="takes no weights"):
            aggregate(reports, {1, 2, 3}, vector_aggregator=name, node_weights={1: 1, 2: 2, 3: 1})
    with pytest.raises(AggregationError, match="no weight for reporting nodes"):
        aggregate(reports, {1, 2, 3}, node_weights={1: 1, 2: 2})


def test_krum_in_a_cluster_too_small_for_it_rejects_the_cluster_with_the_reason():
    rng = np.random.default_rng(12)
    reports = experience(unit(rng), range(6), rng, "h")
    (small,) = aggregate(reports, range(6), vector_aggregator="krum").clusters  # f = ceil(6/4) = 2
    assert small.vector is None and not small.accepted and "n > 2f + 2 = 6" in small.reason
    reports = experience(unit(rng), range(7), rng, "h")
    (enough,) = aggregate(reports, range(7), vector_aggregator="krum").clusters
    assert enough.accepted and enough.vector is not None


def test_a_callable_vector_aggregator_is_used_as_given():
    rng = np.random.default_rng(13)
    reports = experience(unit(rng), [1, 2, 3], rng, "h")
    (cluster,) = aggregate(reports, {1, 2, 3}, vector_aggregator=lambda x, w: x.max(axis=0)).clusters
    np.testing.assert_array_equal(cluster.vector, np.max([r.vector for r in reports], axis=0))


def test_bad_input_raises_dso_errors():
    rng = np.random.default_rng(14)
    good = report("a", 1, unit(rng))
    with pytest.raises(AggregationError, match="unknown vector aggregator"):
        aggregate([good], {1}, vector_aggregator="mean")
    with pytest.raises(AggregationError, match="embed every text with one model"):
        aggregate([good, report("b", 2, unit(rng, DIM + 8))], {1, 2})
    with pytest.raises(AggregationError, match="confidence"):
        report("d", 1, unit(rng), confidence=1.5)
    with pytest.raises(AggregationError, match="not all zeros"):
        report("e", 1, np.zeros(DIM))
    with pytest.raises(AggregationError, match="byzantine_fraction"):
        aggregate([good], {1}, byzantine_fraction=0.5)
    assert issubclass(InsufficientReports, AggregationError) and issubclass(AggregationError, DsoError)


def test_malformed_codes_are_left_out_of_the_vote_and_counted_not_fatal():
    codec = get_codec("bitdelta-1", 384)
    rng = np.random.default_rng(20)
    topic = unit(rng, 384)
    vectors = [near(rng, topic, 0.01) for _ in range(4)]
    good = codec.encode(np.stack(vectors[:2]))
    negative_scale = good[0].copy()
    negative_scale[-1] |= 0x80
    codes = [good[0].tobytes(), good[1].tobytes(), b"\x00" * 5, negative_scale.tobytes()]
    result = aggregate([report(f"r{i}", i, v, code=c) for i, (v, c) in enumerate(zip(vectors, codes))], range(4))
    assert result.invalid_codes == 2
    (cluster,) = result.clusters
    assert cluster.support == 4 and cluster.code == clipped_bitdelta_consensus(good)
    (majority,) = aggregate([report(f"r{i}", i, v, code=c) for i, (v, c) in enumerate(zip(vectors, codes))], range(4), code_rule="majority").clusters
    assert majority.code == bitdelta_consensus(good)


def test_cluster_code_is_the_clipped_consensus_of_the_voices_codes_or_their_majority_on_request():
    rng = np.random.default_rng(15)
    codec = get_codec("bitdelta-1", 384)
    topic = unit(rng, 384)
    vectors = [near(rng, topic, 0.001) for _ in range(5)]
    codes = codec.encode(np.stack([near(rng, topic, 0.05) for _ in range(5)]))  # codes that disagree on some bits
    reports = [report(f"r{i}", i, v, code=codes[i].tobytes()) for i, v in enumerate(vectors)]
    (cluster,) = aggregate(reports, range(5)).clusters
    assert cluster.code == clipped_bitdelta_consensus(codes)
    (majority,) = aggregate(reports, range(5), code_rule="majority").clusters
    assert majority.code == bitdelta_consensus(codes)
    assert len(cluster.code) == 50
    decoded = codec.decode(np.frombuffer(cluster.code, dtype=np.uint8)[None])[0]
    assert decoded @ topic / np.linalg.norm(decoded) > 0.5


def test_cluster_text_is_the_one_with_fewest_words_outside_the_core_or_the_medoid_on_request():
    rng = np.random.default_rng(21)
    topic = unit(rng)
    base = "When the sum looks wrong, add the numbers again from the right"
    texts = [base + ".", "Tip: " + base.lower() + ".", base + " column by column.", base + ". Never double-check the result."]
    # The poisoned text embeds right at the centre (the vector is the honest base's): the medoid takes it.
    vectors = [near(rng, topic, 0.05), near(rng, topic, 0.05), near(rng, topic, 0.05), topic]
    reports = [report(f"r{i}", i, v, text=t) for i, (v, t) in enumerate(zip(vectors, texts))]
    (medoid,) = aggregate(reports, range(4), text_rule="medoid").clusters
    (core,) = aggregate(reports, range(4)).clusters
    assert medoid.text == texts[3] and core.text == texts[0]
    with pytest.raises(AggregationError, match="unknown text rule"):
        aggregate(reports, range(4), text_rule="longest")
    with pytest.raises(AggregationError, match="unknown code rule"):
        aggregate(reports, range(4), code_rule="mean")


# --- Aggregators against slow reference implementations ----------------------------------------


@st.composite
def samples(draw: st.DrawFn, min_n: int = 1, max_n: int = 12, integer_weights: bool | None = None):
    """(vectors, weights): seeded Gaussian data, sometimes with repeated rows, and weights that are
    None, small integers (exact half-weight ties) or arbitrary floats."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, d = draw(st.integers(min_n, max_n)), draw(st.integers(1, 6))
    x = rng.standard_normal((n, d)) * draw(st.sampled_from([1e-3, 1.0, 1e3]))
    if n > 2 and draw(st.booleans()):
        x[: n // 2] = x[0]
    kind = draw(st.sampled_from(["none", "int", "float"]))
    weights = None if kind == "none" else rng.integers(1, 5, n).astype(float) if kind == "int" else rng.uniform(0.1, 3, n)
    return x, weights


def reference_weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The midpoint of the set of minimizers of sum_i w_i |x - v_i| (an interval between data points)."""
    cost = [sum(w * abs(x - v) for v, w in zip(values, weights)) for x in values]
    best = min(cost)
    minimizers = [x for x, c in zip(values, cost) if c <= best + 1e-9 * (abs(best) + 1)]
    return (min(minimizers) + max(minimizers)) / 2


@settings(max_examples=150, deadline=None)
@given(samples())
def test_coordinate_median_matches_the_minimizer_of_weighted_absolute_deviations(sample):
    x, w = sample
    ones = np.ones(len(x)) if w is None else w
    expected = [reference_weighted_median(x[:, j].tolist(), ones.tolist()) for j in range(x.shape[1])]
    np.testing.assert_allclose(coordinate_median(x, w), expected, rtol=1e-9, atol=1e-12)
    if w is None:
        np.testing.assert_array_equal(coordinate_median(x), np.median(x, axis=0))
    assert weighted_median(x[:, 0], w) == pytest.approx(expected[0], rel=1e-9, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(samples(min_n=1), st.integers(0, 6))
def test_trimmed_mean_matches_sorting_each_coordinate_by_hand(sample, f):
    x, _ = sample
    n = len(x)
    if n <= 2 * f:
        with pytest.raises(InsufficientReports, match=f"n > 2f = {2 * f}"):
            trimmed_mean(x, f)
        return
    expected = [sum(sorted(x[:, j])[f : n - f]) / (n - 2 * f) for j in range(x.shape[1])]
    np.testing.assert_allclose(trimmed_mean(x, f), expected, rtol=1e-9, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(samples(min_n=3, max_n=10))
def test_geometric_median_minimizes_the_weighted_sum_of_distances(sample):
    x, w = sample
    ones = np.ones(len(x)) if w is None else w
    scale = np.abs(x).max() + 1e-300

    def cost(z):
        return float(ones @ np.linalg.norm(x - z, axis=1))

    ours = geometric_median(x, w)
    options = {"xatol": 1e-12 * scale, "fatol": 1e-14 * scale, "maxiter": 20_000, "maxfev": 40_000}
    reference = minimize(cost, x.mean(axis=0), method="Nelder-Mead", options=options)
    best = min(cost(reference.x), *(cost(p) for p in x))
    # 1e-5: next to an input holding almost half the weight Weiszfeld crawls (1e-6 after 1,000 steps).
    assert cost(ours) <= best * (1 + 1e-5) + 1e-12 * scale


def slow_krum_scores(x: np.ndarray, f: int) -> list[float]:
    scores = []
    for i in range(len(x)):
        distances = sorted(sum((a - b) ** 2 for a, b in zip(x[i], x[j])) for j in range(len(x)) if j != i)
        scores.append(sum(distances[: len(x) - f - 2]))
    return scores


@settings(max_examples=100, deadline=None)
@given(samples(min_n=3, max_n=12), st.integers(0, 5), st.data())
def test_krum_and_multi_krum_match_blanchard_by_hand(sample, f, data):
    x, _ = sample
    n = len(x)
    if n <= 2 * f + 2:
        with pytest.raises(InsufficientReports, match=r"n > 2f \+ 2"):
            krum(x, f)
        return
    expected = slow_krum_scores(x, f)
    np.testing.assert_allclose(krum_scores(x, f), expected, rtol=1e-9, atol=1e-12 * np.abs(x).max() ** 2)
    assert np.any(np.all(krum(x, f) == x, axis=1))
    assert min(expected) == pytest.approx(expected[int(np.argmin(krum_scores(x, f)))], rel=1e-9, abs=1e-300)
    m = data.draw(st.integers(1, n - f))
    chosen = sorted(range(n), key=lambda i: (expected[i], i))[:m]
    np.testing.assert_allclose(multi_krum(x, f, m), x[chosen].mean(axis=0), rtol=1e-6, atol=1e-9 * np.abs(x).max())


@pytest.mark.parametrize("f", [0, 1, 2, 5])
def test_krum_needs_more_than_2f_plus_2_inputs(f):
    rng = np.random.default_rng(f)
    with pytest.raises(InsufficientReports, match=rf"Krum with f={f} needs n > 2f \+ 2 = {2 * f + 2} vectors; got {2 * f + 2}"):
        krum(rng.standard_normal((2 * f + 2, 3)), f)
    with pytest.raises(InsufficientReports):
        multi_krum(rng.standard_normal((2 * f + 2, 3)), f)
    assert krum(rng.standard_normal((2 * f + 3, 3)), f).shape == (3,)


def test_krum_has_no_default_f_and_multi_krum_keeps_at_most_n_minus_f():
    x = np.random.default_rng(0).standard_normal((7, 2))
    with pytest.raises(TypeError):
        krum(x)  # type: ignore[call-arg]
    with pytest.raises(AggregationError, match="m <= n - f = 5"):
        multi_krum(x, 2, m=6)
    np.testing.assert_allclose(multi_krum(x, 2), multi_krum(x, 2, m=5))


@settings(max_examples=100, deadline=None)
@given(samples(min_n=1, max_n=10))
def test_medoid_is_the_input_with_the_least_weighted_distance_lowest_index_on_ties(sample):
    x, w = sample
    ones = np.ones(len(x)) if w is None else w
    costs = [sum(wj * math.dist(xi, xj) for xj, wj in zip(x, ones)) for xi in x]
    best = min(costs)
    index = medoid_index(x, w)
    assert costs[index] <= best * (1 + 1e-12) + 1e-300
    # Exact duplicates tie exactly; the first of them wins.
    assert index == min(i for i in range(len(x)) if np.array_equal(x[i], x[index]))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 9), st.integers(1, 4), st.booleans())
def test_majority_bits_matches_a_vote_per_bit_and_ties_give_one(seed, n, k, weighted):
    rng = np.random.default_rng(seed)
    packed = rng.integers(0, 256, (n, k), dtype=np.uint8)
    weights = rng.integers(1, 4, n).astype(float) if weighted else np.ones(n)
    out = np.unpackbits(majority_bits(packed, weights if weighted else None))
    bits = np.unpackbits(packed, axis=1)
    for j in range(8 * k):
        ones = sum(w for w, b in zip(weights, bits[:, j]) if b)
        zeros = sum(w for w, b in zip(weights, bits[:, j]) if not b)
        assert out[j] == (1 if ones >= zeros else 0)


def test_majority_bit_ties():
    tie = np.array([[0b10101010], [0b01010101]], dtype=np.uint8)
    assert majority_bits(tie)[0] == 0b11111111
    assert majority_bits(tie, np.array([1.0, 1.5]))[0] == 0b01010101
    assert majority_bits(np.vstack([tie, np.zeros((1, 1), dtype=np.uint8)]))[0] == 0b00000000


def test_bitdelta_consensus_takes_the_median_scale():
    codec = get_codec("bitdelta-1", 384)
    rng = np.random.default_rng(16)
    codes = codec.encode(np.stack([unit(rng, 384) for _ in range(3)]))
    out = np.frombuffer(bitdelta_consensus(codes), dtype=np.uint8)[None]
    assert codec.scales(out)[0] == np.median(codec.scales(codes))
    with pytest.raises(AggregationError, match="not bitdelta-1 codes"):
        bitdelta_consensus(np.full((2, 4), 0xFF, dtype=np.uint8))


# --- The rules issue 14 added ------------------------------------------------------------------


@st.composite
def coded_voices(draw: st.DrawFn, max_n: int = 12):
    """(codes, integer weights): random bitdelta-1 codes of 64 dimensions with float16 scales."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, max_n))
    bits = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    scales = np.frombuffer(rng.uniform(0.001, 1.0, n).astype("<f2").tobytes(), dtype=np.uint8).reshape(n, 2)
    return np.hstack([bits, scales]), rng.integers(1, 5, n).astype(float)


@settings(max_examples=200, deadline=None)
@given(coded_voices())
def test_clipped_code_keeps_every_bit_that_two_thirds_of_the_weight_agree_on(voices):
    codes, weights = voices
    out = np.unpackbits(np.frombuffer(clipped_bitdelta_consensus(codes, weights), dtype=np.uint8)[:-2])
    ones = weights @ np.unpackbits(codes[:, :-2], axis=1)
    total = weights.sum()
    assert np.all(out[3 * ones >= 2 * total] == 1) and np.all(out[3 * ones <= total] == 0)


@settings(max_examples=150, deadline=None)
@given(coded_voices(max_n=8), st.data())
def test_bits_every_honest_voice_agrees_on_survive_any_codes_from_less_than_a_third_of_the_weight(voices, data):
    honest, weights = voices
    honest[:, :2] = honest[0, :2]  # the first 16 bits: every honest voice agrees
    limit = weights.sum() / 2  # attackers' weight < 1/3 of the total <=> < half the honest weight
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    attackers, attacker_weights = [], []
    while sum(attacker_weights) + 1 < limit and data.draw(st.booleans()):
        flipped = honest[0].copy()
        flipped[:2] ^= 0xFF
        flipped[-2:] = np.frombuffer(np.float16(rng.choice([1e-3, 1.0, 6e4])).tobytes(), dtype=np.uint8)
        attackers.append(flipped)
        attacker_weights.append(1.0)
    codes = np.vstack([honest, *attackers]) if attackers else honest
    out = clipped_bitdelta_consensus(codes, np.concatenate([weights, attacker_weights]))
    assert out[:2] == honest[0, :2].tobytes()


@settings(max_examples=60, deadline=None)
@given(coded_voices(max_n=2))
def test_clipped_code_of_one_or_two_voices_is_their_majority(voices):
    codes, weights = voices
    assert clipped_bitdelta_consensus(codes, weights) == bitdelta_consensus(codes, weights)


@settings(max_examples=60, deadline=None)
@given(coded_voices(), st.floats(1.0, 6e4))
def test_a_code_longer_than_the_median_counts_no_more_however_long(voices, factor):
    codes, weights = voices
    codec_scales = np.frombuffer(codes[:, -2:].tobytes(), dtype="<f2").astype(np.float64)
    longest = int(np.argmax(codec_scales))
    longer = codes.copy()
    longer[longest, -2:] = np.frombuffer(np.float16(min(codec_scales[longest] * factor, 6e4)).tobytes(), dtype=np.uint8)
    assert clipped_bitdelta_consensus(longer, weights)[:-2] == clipped_bitdelta_consensus(codes, weights)[:-2]


@settings(max_examples=100, deadline=None)
@given(samples(min_n=2, max_n=10), st.integers(0, 3), st.floats(0.01, 10.0), st.data())
def test_each_voice_moves_centered_clipping_at_most_its_share_of_tau_per_iteration(sample, iterations, tau, data):
    x, w = sample
    w = np.ones(len(x)) if w is None else w
    start = x.mean(axis=0) + 0.1
    liar = data.draw(st.integers(0, len(x) - 1))
    moved = x.copy()
    moved[liar] = x[liar] + 1e6 * np.sign(np.random.default_rng(0).standard_normal(x.shape[1]))
    a = centered_clipping(x, w, start=start, iterations=iterations, tau=tau)
    b = centered_clipping(moved, w, start=start, iterations=iterations, tau=tau)
    # The honest part of each step is non-expansive, so the liar's reach adds up: 2 x share x tau per step.
    assert np.linalg.norm(a - b) <= 2 * iterations * w[liar] / w.sum() * tau * (1 + 1e-9) + 1e-9 * (1 + np.abs(x).max())


def test_centered_clipping_has_no_default_start():
    with pytest.raises(TypeError):
        centered_clipping(np.ones((3, 2)))  # type: ignore[call-arg]


@settings(max_examples=100, deadline=None)
@given(samples(min_n=1, max_n=10), st.integers(1, 5))
def test_weiszfeld_steps_never_increase_the_weighted_sum_of_distances(sample, steps):
    x, w = sample
    ones = np.ones(len(x)) if w is None else w
    start = coordinate_median(x, w)
    cost = lambda z: float(ones @ np.linalg.norm(x - z, axis=1))  # noqa: E731
    # Non-increasing up to the smoothing: a start at an optimal data point may drift by ~nu.
    assert cost(weiszfeld_steps(x, w, start, steps)) <= cost(start) * (1 + 1e-6) + 1e-9 * (1 + np.abs(x).max())


@st.composite
def riding(draw: st.DrawFn):
    """Honest texts from a small vocabulary, and attackers (fewer than the honest voices) who each
    copy an honest text and insert novel words at its start, its end or in the middle."""
    vocabulary = [f"w{i}" for i in range(12)]
    honest = [" ".join(draw(st.lists(st.sampled_from(vocabulary), min_size=1, max_size=8))) for _ in range(draw(st.integers(1, 6)))]
    payload = " ".join(draw(st.lists(st.sampled_from(["never", "skip", "ignore", "x9"]), min_size=1, max_size=3)))
    attackers = []
    for _ in range(draw(st.integers(0, len(honest) - 1)) if len(honest) > 1 else 0):
        base = draw(st.sampled_from(honest))
        where = draw(st.sampled_from(["start", "end", "middle"]))
        words_ = base.split()
        if where == "start":
            attackers.append(f"{payload} {base}")
        elif where == "end":
            attackers.append(f"{base} {payload}.")
        else:
            attackers.append(" ".join(words_[: len(words_) // 2] + [payload] + words_[len(words_) // 2 :]))
    return honest, attackers


@settings(max_examples=200, deadline=None)
@given(riding(), st.integers(0, 2**32 - 1))
def test_a_minority_that_inserts_words_into_honest_texts_never_has_its_text_chosen(case, seed):
    honest, attackers = case
    texts = honest + attackers
    vectors = np.random.default_rng(seed).standard_normal((len(texts), 4))
    assert core_words_index(texts, vectors) < len(honest)


def test_core_words_are_case_folded_word_runs_held_by_more_than_half_the_weight():
    texts = ["Check the SUM.", "check the sum twice", "the sum, checked"]
    assert core_words(texts) == frozenset({"check", "the", "sum"})
    assert core_words(texts, np.array([1.0, 1.0, 3.0])) == frozenset({"the", "sum", "checked"})
    # Equal extras: the text missing fewer core words wins (dropping "not" loses to keeping it).
    assert core_words_index(["do not run it as root", "do run it as root", "never do not run it as root"], np.eye(3)) == 0


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(3, 8), st.integers(0, 10))
def test_voices_below_min_confidence_abstain_and_cannot_reject_what_others_endorse(seed, honest, doubters):
    rng = np.random.default_rng(seed)
    topic = unit(rng)
    reports = experience(topic, range(honest), rng, "h", confidence=0.8)
    reports += [report(f"d{n}", 100 + n, near(rng, topic), confidence=float(rng.uniform(0, 0.49))) for n in range(doubters)]
    admitted = set(range(honest)) | {100 + n for n in range(doubters)}
    (cluster,) = aggregate(reports, admitted).clusters
    assert cluster.accepted and cluster.endorsements == honest and cluster.confidence == pytest.approx(0.8)
    (median_rule,) = aggregate(reports, admitted, AcceptancePolicy(confidence_rule="median")).clusters
    if doubters > honest:  # under the earlier rule, a majority of doubters (or attackers at 0) rejects it
        assert not median_rule.accepted


@settings(max_examples=40, deadline=None)
@given(report_sets(), st.floats(0.01, 100.0))
def test_equal_node_weights_of_any_size_give_the_unweighted_result(reports, weight):
    admitted = {r.node_id for r in reports}
    plain = aggregate(reports, admitted)
    weighted = aggregate(reports, admitted, node_weights=dict.fromkeys(admitted, weight))
    assert [c[:-2] + c[-1:] for c in result_view(plain)] == [c[:-2] + c[-1:] for c in result_view(weighted)]


def test_new_nodes_count_as_a_fraction_of_a_voice_until_they_have_a_record():
    rng = np.random.default_rng(22)
    honest, junk = unit(rng), unit(rng)
    reports = experience(honest, range(6), rng, "h") + experience(junk, range(10, 16), rng, "j")
    admitted = set(range(6)) | set(range(10, 16))
    weights = dict.fromkeys(range(6), 0.9) | dict.fromkeys(range(10, 16), 1 / 16)
    by_id = {c.experience_id[0]: c for c in aggregate(reports, admitted, node_weights=weights).clusters}
    assert by_id["h"].accepted and not by_id["j"].accepted
    assert "counting 0.75 voices < 3 required" in by_id["j"].reason  # six nodes of 1/16 against a whole voice of 1/2
    # A young network: when most of the weight is new, every node is a whole voice.
    young = dict.fromkeys(admitted, 1 / 16) | {0: 0.2}
    assert all(c.accepted for c in aggregate(reports, admitted, node_weights=young).clusters)


# --- Breakdown: what attackers cannot do -------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(3, 25), st.data())
def test_minority_attackers_move_the_mean_but_not_the_robust_aggregators(seed, n, data):
    f = data.draw(st.integers(1, (n - 1) // 2))  # f < n / 2
    rng = np.random.default_rng(seed)
    honest = rng.standard_normal((n - f, 5))
    attack = np.full((f, 5), 1e6) * rng.choice([-1, 1], 5)
    x = np.vstack([honest, attack])[rng.permutation(n)]
    low, high = honest.min(axis=0), honest.max(axis=0)

    median = coordinate_median(x)
    assert np.all((low <= median) & (median <= high))
    mean = x.mean(axis=0)
    assert np.all((mean < low) | (mean > high))

    spread = np.linalg.norm(honest - honest.mean(axis=0), axis=1).max()
    assert np.linalg.norm(geometric_median(x) - honest.mean(axis=0)) < 10 * spread + 1
    trimmed = trimmed_mean(x, f)
    assert np.all((low - 1e-9 <= trimmed) & (trimmed <= high + 1e-9))
    if n > 2 * f + 2:
        assert any(np.array_equal(krum(x, f), h) for h in honest)
        assert np.all(np.abs(multi_krum(x, f)) < 10)
    assert np.abs(x[medoid_index(x)]).max() < 1e3


def test_trimming_fewer_than_the_attackers_breaks_the_trimmed_mean():
    honest = np.zeros((5, 2))
    x = np.vstack([honest, np.full((2, 2), 1e6)])
    assert np.all(trimmed_mean(x, 2) == 0)
    assert np.all(trimmed_mean(x, 1) > 1e5)


def test_a_minority_in_a_cluster_cannot_move_its_confidence_or_vector_out_of_the_honest_range():
    rng = np.random.default_rng(17)
    topic = unit(rng)
    honest = [report(f"h{n}", n, near(rng, topic, 0.01), confidence=c) for n, c in zip(range(4), [0.55, 0.6, 0.65, 0.7])]
    liars = [report(f"l{n}", n, near(rng, topic, 0.05), confidence=0.0) for n in range(10, 13)]
    (cluster,) = aggregate(honest + liars, set(range(4)) | {10, 11, 12}).clusters
    assert cluster.support == 7 and 0.55 <= cluster.confidence <= 0.7
    vectors = np.stack([r.vector for r in honest])
    assert np.all((vectors.min(axis=0) <= cluster.vector) & (cluster.vector <= vectors.max(axis=0)))


# --- Acceptance policy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "active, required",
    [(0, 3), (1, 3), (60, 3), (61, 4), (100, 5), (101, 6), (1_000, 50), (1_001, 51)],
)
def test_required_support_is_min_nodes_or_five_percent_of_active_reporters(active, required):
    assert AcceptancePolicy().required_support(active) == required


def test_support_fraction_is_exact_for_decimal_fractions():
    # 0.07 * 100 is 7.000000000000001 in floating point; ceil must still give 7.
    assert AcceptancePolicy(support_fraction=0.07).required_support(100) == 7


@pytest.mark.parametrize(
    "support, confidence, accepted",
    [(5, 0.5, True), (4, 0.5, False), (5, 0.4999, False), (100, 1.0, True), (4, 0.1, False)],
)
def test_acceptance_at_its_boundaries(support, confidence, accepted):
    reason = AcceptancePolicy().rejection(support, confidence, active_reporters=100)
    assert (reason is None) is accepted
    if support < 5:
        assert f"support {support} < 5" in reason
    if confidence < 0.5:
        assert "median confidence" in reason


def test_acceptance_boundaries_hold_end_to_end():
    rng = np.random.default_rng(18)
    topic = unit(rng)
    at_bar = experience(topic, range(3), rng, "h", confidence=0.5)
    (accepted,) = aggregate(at_bar, range(3)).clusters
    (short,) = aggregate(at_bar[:2], range(3)).clusters
    (unsure,) = aggregate(experience(topic, range(3), rng, "u", confidence=0.49), range(3)).clusters
    assert accepted.accepted and accepted.confidence == 0.5
    assert not short.accepted and not unsure.accepted


@pytest.mark.parametrize(
    "settings_", [{"min_nodes": 1}, {"min_nodes": 0}, {"support_fraction": 1.5}, {"min_confidence": -0.1}, {"min_nodes": 2.5}]
)
def test_policies_that_let_one_node_through_or_make_no_sense_are_refused(settings_):
    with pytest.raises(AggregationError):
        AcceptancePolicy(**settings_)


def seeds_rule(median_confidence: float, unique_nodes: int, total_nodes: int, threshold: float = 0.66) -> bool:
    """The seeds' rule (seed 002, SemanticAggregator.aggregate_experiences)."""
    return median_confidence * min(unique_nodes / total_nodes, 1.0) >= threshold


def test_seeds_rule_starves_large_networks_and_admits_two_colluders_in_small_ones():
    # N = 100: ten honest nodes at 0.9 score 0.09; it takes 74 nodes at 0.9, or 66 at 1.0.
    assert not seeds_rule(0.9, 10, 100)
    assert min(k for k in range(101) if seeds_rule(0.9, k, 100)) == 74
    assert min(k for k in range(101) if seeds_rule(1.0, k, 100)) == 66
    assert AcceptancePolicy().rejection(10, 0.9, active_reporters=100) is None
    # N = 3: two colluders at 1.0 pass the seeds' rule, not ours.
    assert seeds_rule(1.0, 2, 3)
    assert AcceptancePolicy().rejection(2, 1.0, active_reporters=3) is not None
    # The seeds' median runs over copies: one node's 50 copies at 1.0 outvote three honest nodes.
    votes = [1.0] * 50 + [0.2] * 3
    assert float(np.median(votes)) == 1.0
    rng = np.random.default_rng(19)
    topic = unit(rng)
    copies = [report("s", 4, near(rng, topic), confidence=1.0, root=bytes([i]) * 32) for i in range(50)]
    reports = experience(topic, [1, 2, 3], rng, "h", confidence=0.2) + copies
    (cluster,) = aggregate(reports, {1, 2, 3, 4}, AcceptancePolicy(confidence_rule="median")).clusters
    assert cluster.confidence == pytest.approx(0.2) and not cluster.accepted
    # Under the default rule the three doubters abstain and the flooder is one endorsing voice of 3 needed.
    (cluster,) = aggregate(reports, {1, 2, 3, 4}).clusters
    assert cluster.endorsements == 1 and not cluster.accepted
