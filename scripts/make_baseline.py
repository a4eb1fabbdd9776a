"""Compute the published baseline (mean embedding) of all-MiniLM-L6-v2 that the codecs code against.

    .venv/bin/python scripts/make_baseline.py

Writes dso/data/all-MiniLM-L6-v2.mean.npy (384 float32, little-endian) and a sidecar .mean.json
with its baseline_id (hex sha256 of those bytes) and the provenance of the corpus. The corpus is
`dso.edges.datasets.baseline_corpus()`: GSM8K train questions 5,500-7,472 and the STS-B dev
sentences, disjoint from every text the retrieval benchmark indexes or queries, so the benchmark
measures the baseline on data it was not fitted on. The float model ("minilm") is the reference;
the int8 build shares its space.

Changing the baseline changes every code and the baseline_id in every batch header: published
batches keep decoding only while their baseline stays available under its id.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from dso.bench.retrieval import cached_embeddings, texts_digest
from dso.core.codec import DATA_DIR, DEFAULT_MODEL_ID, baseline_id, model_file_stem
from dso.edges.datasets import baseline_corpus
from dso.edges.files import atomic_write_text

EMBEDDER = "minilm"


def main() -> int:
    corpus = baseline_corpus()
    mean = cached_embeddings(EMBEDDER, corpus).astype(np.float64).mean(axis=0).astype("<f4")
    stem = model_file_stem(DEFAULT_MODEL_ID)
    np.save(DATA_DIR / f"{stem}.mean.npy", mean)
    meta = {
        "baseline_id": baseline_id(mean),
        "model_id": DEFAULT_MODEL_ID,
        "embedder": EMBEDDER,
        "dtype": "float32 little-endian",
        "dim": int(mean.shape[0]),
        "corpus": "GSM8K train questions 5500-7472 + distinct STS-B dev sentences not in STS-B train "
        "(dso.edges.datasets.baseline_corpus)",
        "texts": len(corpus),
        "texts_digest": texts_digest(corpus),
    }
    atomic_write_text(DATA_DIR / f"{stem}.mean.json", json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta, indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
