"""Retrieval benchmark of the codecs: how much of the exact float top-10 a compressed index finds.

Ground truth is exact cosine top-10 over float32 all-MiniLM-L6-v2 vectors ("minilm"). Each
variant is a codec (``bitdelta-1``, ``ternary-2``), a baseline (none, the published mean, or for
comparison only a mean fitted without the benchmark's domain or on the indexed documents
themselves), an optional rotation applied before coding (random orthogonal, or ITQ learned on the
baseline corpus), and a scoring rule: ``hamming`` (code vs code, popcount), ``asymmetric``
(float query vs decoded code, cosine: ``Codec.score``), ``asymmetric-dot`` (same, unnormalized),
``hamming1000>asymmetric`` (Hamming prefilter of 1,000, then asymmetric). recall@10 is reported
without rescoring and after rescoring the top R candidates with float vectors re-embedded from
their texts (R = 50, 100, 200, 500): the library keeps every experience's text. Two rows show a
torch-less node: the int8 model embeds the query and re-embeds the candidates (codes as published),
and the int8 model's exact top-10 with no codec at all (its ceiling).

Data (``../shared/data``), three disjoint parts:
- GSM8K: questions 0-4,999 indexed, 5,000-5,499 queries.
- STS-B train: the first 5,000 distinct first sentences indexed; 500 of their partner sentences
  (evenly spread) as queries (27 of them also occur verbatim among the documents, as in real use).
- Baseline corpus (what ``scripts/make_baseline.py`` fits the published mean on, and ITQ is
  learned on): GSM8K questions 5,500-7,472 + STS-B dev sentences not in STS-B train.

Latency uses synthetic random codes (10k and 1M, one query, on the benchmark machine): numpy popcount, numpy
asymmetric scoring, faiss ``IndexBinaryFlat``, and float32 brute force for reference. Embeddings
are cached under ``.cache/embeddings`` keyed by embedder and a hash of the texts.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dso.core.codec import DEFAULT_CODEC, RESCORE_DEPTH, Codec, baseline_id, get_codec, load_baseline
from dso.edges.datasets import StsPair, baseline_corpus_parts, gsm8k_questions, sts_pairs, unique

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache" / "embeddings"

GSM8K_DOCS = 5_000
GSM8K_QUERIES = 500
STS_DOCS = 5_000
STS_QUERIES = 500
K = 10
RESCORE_DEPTHS = (50, 100, 200, 500)
PREFILTER = 1_000
LATENCY_SIZES = (10_000, 1_000_000)
THROUGHPUT_TEXTS = 256

# The shipped default (dso.core.codec: DEFAULT_CODEC, published baseline, Codec.score, RESCORE_DEPTH).
DEFAULT_SCORING = "asymmetric"


@dataclass(frozen=True)
class RetrievalSet:
    """Documents to index and queries to run against them."""

    name: str
    docs: list[str]
    queries: list[str]


def gsm8k_set(questions: list[str] | None = None) -> RetrievalSet:
    """GSM8K: questions 0-4,999 are the documents, questions 5,000-5,499 the held-out queries."""
    questions = questions if questions is not None else gsm8k_questions()
    return RetrievalSet("gsm8k", questions[:GSM8K_DOCS], questions[GSM8K_DOCS : GSM8K_DOCS + GSM8K_QUERIES])


def sts_set(pairs: list[StsPair] | None = None) -> RetrievalSet:
    """STS-B train: the first 5,000 distinct first sentences are documents; 500 of their partner
    sentences, spread evenly over the file, are queries (a query's partner is among the documents)."""
    pairs = pairs if pairs is not None else sts_pairs("train")
    docs = unique([p.first for p in pairs])[:STS_DOCS]
    indexed = set(docs)
    partners = unique([p.second for p in pairs if p.first in indexed and p.second != p.first])
    step = len(partners) // STS_QUERIES
    return RetrievalSet("sts-b", docs, partners[::step][:STS_QUERIES])


def texts_digest(texts: list[str]) -> str:
    """A short hash of an ordered list of texts: the cache key of their embeddings."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8")).digest())
    return digest.hexdigest()[:16]


def cached_embeddings(embedder_name: str, texts: list[str]) -> np.ndarray:
    """Embeddings of `texts`, computed once per (embedder, texts) and kept under .cache/ (gitignored)."""
    from dso.edges.embed import load_embedder

    path = CACHE_DIR / f"{embedder_name}-{texts_digest(texts)}.npy"
    if path.is_file():
        return np.load(path)
    vectors = load_embedder(embedder_name).embed(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def top_indices(scores: np.ndarray, depth: int) -> np.ndarray:
    """Column indices of the `depth` highest scores in each row, in no particular order."""
    depth = min(depth, scores.shape[1])
    return np.argpartition(-scores, depth - 1, axis=1)[:, :depth]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of `truth` that appears in the same row of `found`."""
    hits = [np.intersect1d(f, t).size for f, t in zip(found, truth)]
    return float(np.mean(hits) / truth.shape[1])


def rescore(candidates: np.ndarray, similarities: np.ndarray, k: int = K) -> np.ndarray:
    """The k candidates of each query with the highest `similarities` (query x document, float)."""
    picked = np.take_along_axis(similarities, candidates, axis=1)
    return np.take_along_axis(candidates, top_indices(picked, k), axis=1)


def recall_curve(scores: np.ndarray, rescore_similarities: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """recall@10 from code scores alone ("none") and after rescoring the top R, for each R."""
    curve = {"none": recall(top_indices(scores, K), truth)}
    for depth in RESCORE_DEPTHS:
        curve[str(depth)] = recall(rescore(top_indices(scores, depth), rescore_similarities), truth)
    return curve


def random_rotation(dim: int, seed: int = 0) -> np.ndarray:
    """A uniformly random orthogonal matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


def fit_itq(residuals: np.ndarray, iterations: int = 50, seed: int = 0) -> np.ndarray:
    """ITQ rotation (Gong & Lazebnik, CVPR 2011): the orthogonal R that minimizes the quantization
    error ||sign(XR) - XR||, by alternating B = sign(XR) with the Procrustes solution R = U V^T of
    X^T B = U S V^T. Learned on centered baseline-corpus embeddings, full dimension (no PCA cut)."""
    x = residuals.astype(np.float64)
    rotation = random_rotation(x.shape[1], seed).astype(np.float64)
    for _ in range(iterations):
        u, _, vt = np.linalg.svd(x.T @ np.where(x @ rotation >= 0, 1.0, -1.0))
        rotation = u @ vt
    return rotation.astype(np.float32)


def hamming_scores(codec: Codec, queries: np.ndarray, doc_codes: np.ndarray) -> np.ndarray:
    """Symmetric scores: each query is coded too, then compared code to code (popcount)."""
    query_codes = codec.encode(queries)
    return np.stack([codec.code_similarity(code, doc_codes) for code in query_codes]).astype(np.float32)


def prefiltered(first: np.ndarray, second: np.ndarray, keep: int = PREFILTER) -> np.ndarray:
    """`second` scores restricted to the top `keep` by `first` (others -inf): a two-stage search."""
    out = np.full_like(second, -np.inf)
    rows = np.arange(len(first))[:, None]
    kept = top_indices(first, keep)
    out[rows, kept] = second[rows, kept]
    return out


@dataclass(frozen=True)
class Space:
    """One data set's float vectors, for one way of coding: the queries, the documents, the baseline."""

    queries: np.ndarray
    docs: np.ndarray
    baseline: np.ndarray

    def rotated(self, rotation: np.ndarray | None) -> "Space":
        """The same space turned by an orthogonal matrix: dot products are unchanged, the coded
        coordinates are not (so a rotation needs no support in the codec itself)."""
        if rotation is None:
            return self
        return Space(self.queries @ rotation, self.docs @ rotation, self.baseline @ rotation)


SCORINGS: dict[str, Callable[[Codec, np.ndarray, np.ndarray], np.ndarray]] = {
    "hamming": hamming_scores,
    "asymmetric": lambda codec, queries, codes: codec.score(queries, codes),
    "asymmetric-dot": lambda codec, queries, codes: queries @ codec.decode(codes).T,
    f"hamming{PREFILTER}>asymmetric": lambda codec, queries, codes: prefiltered(
        hamming_scores(codec, queries, codes), codec.score(queries, codes)
    ),
}


def variant_row(
    dataset: str, codec_id: str, baseline: str, rotation: str, scoring: str, space: Space,
    rescore_similarities: np.ndarray, truth: np.ndarray, embedder: str = "minilm",
) -> dict[str, Any]:
    """Code the documents of `space` and measure one scoring rule: a row of the results."""
    codec = get_codec(codec_id, space.docs.shape[1], baseline=space.baseline)
    scores = SCORINGS[scoring](codec, space.queries, codec.encode(space.docs))
    return {
        "dataset": dataset, "codec": codec_id, "baseline": baseline, "rotation": rotation, "scoring": scoring,
        "query_embedder": embedder, "bytes_per_vector": codec.code_bytes,
        "recall_at_10": recall_curve(scores, rescore_similarities, truth),
    }


# (codec, baseline, rotation, scorings): every combination the table reports.
VARIANTS: list[tuple[str, str, str, tuple[str, ...]]] = [
    (codec_id, baseline, rotation, scorings)
    for codec_id in ("bitdelta-1", "ternary-2")
    for baseline, rotation, scorings in (
        ("none", "none", ("hamming", "asymmetric")),
        ("published", "none", ("hamming", "asymmetric", "asymmetric-dot", f"hamming{PREFILTER}>asymmetric")),
        ("published", "random", ("hamming", "asymmetric")),
        ("published", "itq", ("hamming", "asymmetric")),
    )
] + [
    # Robustness of the default: a mean fitted without this data set's domain, and (an oracle no
    # publisher can use) the mean of the indexed documents themselves.
    (DEFAULT_CODEC, "other-domain", "none", (DEFAULT_SCORING,)),
    (DEFAULT_CODEC, "indexed-docs", "none", (DEFAULT_SCORING,)),
]


def recall_rows(
    dataset: str, float_vectors: tuple[np.ndarray, np.ndarray], int8_vectors: tuple[np.ndarray, np.ndarray],
    baselines: dict[str, np.ndarray], rotations: dict[str, np.ndarray | None],
) -> list[dict[str, Any]]:
    """Every variant on one data set, plus what a torch-less node (int8 model) gets."""
    queries, docs = float_vectors
    queries8, docs8 = int8_vectors
    exact = queries @ docs.T
    truth = top_indices(exact, K)
    rows = []
    for codec_id, baseline, rotation, scorings in VARIANTS:
        space = Space(queries, docs, baselines[baseline]).rotated(rotations[rotation])
        rows += [variant_row(dataset, codec_id, baseline, rotation, s, space, exact, truth) for s in scorings]
    # A light node: int8 query against the published codes, candidates re-embedded with int8.
    light = Space(queries8, docs, baselines["published"])
    rows.append(variant_row(dataset, DEFAULT_CODEC, "published", "none", DEFAULT_SCORING, light, queries8 @ docs8.T, truth, "minilm-int8"))
    # The int8 model with no codec at all: the ceiling for a torch-less node.
    int8_top = top_indices(queries8 @ docs8.T, K)
    rows.append({
        "dataset": dataset, "codec": "float32", "baseline": "none", "rotation": "none", "scoring": "exact cosine",
        "query_embedder": "minilm-int8", "bytes_per_vector": 4 * docs.shape[1],
        "recall_at_10": {"none": recall(int8_top, truth)},
    })
    return rows


def synthetic_codes(codec: Codec, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random but valid codes (ternary: ~25 % nonzeros, signs only on nonzeros) for latency runs."""
    planes = codec.dim // 8
    scales = np.full((n, 1), 0.04, dtype="<f2").view(np.uint8)
    if codec.codec_id == "ternary-2":
        nonzero = rng.integers(0, 256, (n, planes), dtype=np.uint8) & rng.integers(0, 256, (n, planes), dtype=np.uint8)
        negative = nonzero & rng.integers(0, 256, (n, planes), dtype=np.uint8)
        return np.hstack([nonzero, negative, scales])
    return np.hstack([rng.integers(0, 256, (n, planes), dtype=np.uint8), scales])


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `fn` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 3)


def latency_rows(dim: int = 384, top: int = 100) -> list[dict[str, Any]]:
    """One query's latency (score + top-100) over 10k and 1M synthetic codes, numpy and faiss."""
    import faiss

    rng = np.random.default_rng(0)
    query = rng.standard_normal(dim).astype(np.float32)
    query /= np.linalg.norm(query)
    bitdelta, ternary = get_codec("bitdelta-1", dim), get_codec("ternary-2", dim)
    rows = []
    for n in LATENCY_SIZES:
        repeats = 20 if n <= 10_000 else 5
        bits, trits = synthetic_codes(bitdelta, n, rng), synthetic_codes(ternary, n, rng)
        floats = rng.standard_normal((n, dim), dtype=np.float32)
        index = faiss.IndexBinaryFlat(dim)
        index.add(bits[:, : dim // 8])
        query_bits = bitdelta.encode(query[None])[:, : dim // 8]
        query_code = bitdelta.encode(query[None])[0]
        trit_code = ternary.encode(query[None])[0]

        def two_stage() -> np.ndarray:
            _, ids = index.search(query_bits, PREFILTER)
            return ids[0][top_indices(bitdelta.score(query[None], bits[ids[0]]), top)[0]]

        methods = {
            "float32 exact cosine (numpy matmul)": lambda: top_indices((floats @ query)[None], top),
            "bitdelta-1 hamming (numpy popcount table)": lambda: top_indices(bitdelta.code_similarity(query_code, bits)[None], top),
            "bitdelta-1 hamming (faiss IndexBinaryFlat)": lambda: index.search(query_bits, top),
            "bitdelta-1 asymmetric (numpy)": lambda: top_indices(bitdelta.score(query, bits)[None], top),
            f"bitdelta-1 faiss hamming top-{PREFILTER} > asymmetric": two_stage,
            "ternary-2 ternary dot (numpy popcount table)": lambda: top_indices(ternary.code_similarity(trit_code, trits)[None], top),
            "ternary-2 asymmetric (numpy)": lambda: top_indices(ternary.score(query, trits)[None], top),
        }
        rows += [{"method": name, "codes": n, "ms": median_ms(fn, repeats)} for name, fn in methods.items()]
        del floats, index
    return rows


def embedding_throughput(texts: list[str]) -> dict[str, float]:
    """Texts per second of each embedder on `texts` (model already loaded): what rescoring costs
    when the candidates' float vectors are not kept locally and must be re-embedded."""
    from dso.edges.embed import load_embedder

    rates = {}
    for name in ("minilm", "minilm-int8"):
        embedder = load_embedder(name)
        embedder.embed(texts[:8])  # the first call pays one-off initialization, not throughput
        start = time.perf_counter()
        embedder.embed(texts)
        rates[name] = round(len(texts) / (time.perf_counter() - start), 1)
    return rates


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Row-wise cosine of two embeddings of the same texts: mean, 1st percentile, minimum."""
    cosines = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {
        "texts": int(len(cosines)), "mean": round(float(cosines.mean()), 5),
        "p01": round(float(np.percentile(cosines, 1)), 5), "min": round(float(cosines.min()), 5),
    }


def run() -> dict[str, Any]:
    """Embed (or load cached) data, measure every variant, the latencies and the int8 agreement."""
    import faiss
    import onnxruntime

    started = time.perf_counter()
    parts = baseline_corpus_parts()
    fit = {name: cached_embeddings("minilm", texts) for name, texts in parts.items()}
    published = load_baseline()
    rotations = {"none": None, "random": random_rotation(published.shape[0]), "itq": fit_itq(np.vstack(list(fit.values())) - published)}
    rows, float_all, int8_all = [], [], []
    for dataset in (gsm8k_set(), sts_set()):
        vectors = {e: (cached_embeddings(e, dataset.queries), cached_embeddings(e, dataset.docs)) for e in ("minilm", "minilm-int8")}
        other = "sts-b" if dataset.name == "gsm8k" else "gsm8k"
        baselines = {
            "none": np.zeros_like(published), "published": published,
            "other-domain": fit[other].mean(axis=0), "indexed-docs": vectors["minilm"][1].mean(axis=0),
        }
        rows += recall_rows(dataset.name, vectors["minilm"], vectors["minilm-int8"], baselines, rotations)
        float_all += list(vectors["minilm"])
        int8_all += list(vectors["minilm-int8"])
    default = {
        "codec": DEFAULT_CODEC, "baseline": "published", "rotation": "none", "scoring": DEFAULT_SCORING,
        "rescore_top": RESCORE_DEPTH,
        "recall_at_10": {
            r["dataset"]: r["recall_at_10"][str(RESCORE_DEPTH)] for r in rows if is_default(r)
        },
    }
    return {
        "environment": {
            "python": platform.python_version(), "numpy": np.__version__, "faiss": faiss.__version__,
            "onnxruntime": onnxruntime.__version__, "cpus": os.cpu_count(),
        },
        "model_id": "sentence-transformers/all-MiniLM-L6-v2",
        "baseline_id": baseline_id(published),
        "baseline_corpus_texts": {name: len(texts) for name, texts in parts.items()},
        "data": {"gsm8k": {"docs": GSM8K_DOCS, "queries": GSM8K_QUERIES}, "sts-b": {"docs": STS_DOCS, "queries": STS_QUERIES}},
        "default": default,
        "recall": rows,
        "int8_vs_float": agreement(np.vstack(float_all), np.vstack(int8_all)),
        "embed_texts_per_second": embedding_throughput(gsm8k_set().queries[:THROUGHPUT_TEXTS]),
        "latency_ms": latency_rows(),
        "runtime_s": round(time.perf_counter() - started, 1),
    }


ROW_KEY = ("codec", "baseline", "rotation", "scoring", "query_embedder", "bytes_per_vector")


def is_default(row: dict[str, Any]) -> bool:
    """Whether a results row is the shipped default (codec, published baseline, no rotation, float query)."""
    return (row["codec"], row["baseline"], row["rotation"], row["scoring"], row["query_embedder"]) == (
        DEFAULT_CODEC, "published", "none", DEFAULT_SCORING, "minilm"
    )


def markdown_table(results: dict[str, Any]) -> str:
    """The README's retrieval tables, rendered from a results document."""
    depths = ["none", *map(str, RESCORE_DEPTHS)]
    curves: dict[tuple, dict[str, dict[str, float]]] = {}
    for row in results["recall"]:
        curves.setdefault(tuple(row[f] for f in ROW_KEY), {})[row["dataset"]] = row["recall_at_10"]
    head = " | ".join(f"{d} {'codes only' if r == 'none' else 'R=' + r}" for d in ("GSM8K", "STS-B") for r in depths)
    lines = [
        "recall@10 vs exact float32 cosine top-10, from the codes alone and after rescoring the top R "
        "candidates with float vectors re-embedded from their texts (default in bold):",
        "",
        f"| codec | baseline | rotation | scoring | query model | bytes/vector | {head} |",
        "|---|---|---|---|---|---:|" + "---:|" * (2 * len(depths)),
    ]
    for key, by_dataset in curves.items():
        fields = dict(zip(ROW_KEY, key))
        name = f"**{fields['codec']}**" if is_default(fields) else fields["codec"]
        cells = [_cell(by_dataset.get(d, {}), r) for d in ("gsm8k", "sts-b") for r in depths]
        lines.append(f"| {name} | {' | '.join(str(v) for v in key[1:])} | {' | '.join(cells)} |")
    default = results["default"]
    lines += [
        "",
        f"Default: {default['codec']} on the published baseline, {default['scoring']} scoring, rescoring the "
        f"top {default['rescore_top']}: recall@10 "
        + ", ".join(f"{value:.3f} ({name})" for name, value in default["recall_at_10"].items()) + ".",
        "",
        "| one query, top-100, synthetic codes | 10k codes (ms) | 1M codes (ms) |",
        "|---|---:|---:|",
    ]
    latency: dict[str, dict[int, float]] = {}
    for row in results["latency_ms"]:
        latency.setdefault(row["method"], {})[row["codes"]] = row["ms"]
    lines += [f"| {m} | {t.get(LATENCY_SIZES[0], '–')} | {t.get(LATENCY_SIZES[1], '–')} |" for m, t in latency.items()]
    agree, rates = results["int8_vs_float"], results["embed_texts_per_second"]
    lines += [
        "",
        f"minilm-int8 vs minilm cosine over {agree['texts']:,} benchmark texts: mean {agree['mean']}, 1st percentile "
        f"{agree['p01']}, min {agree['min']}. Embedding throughput (GSM8K questions, {results['environment']['cpus']} cores): "
        + ", ".join(f"{name} {rate} texts/s" for name, rate in rates.items()) + ".",
    ]
    return "\n".join(lines)


def _cell(curve: dict[str, float], depth: str) -> str:
    return f"{curve[depth]:.3f}" if depth in curve else "–"
