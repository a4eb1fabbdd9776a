"""Bytes per experience: the compressed code, the canonical leaf with and without its text, and
the batch document amortized over batch sizes 1, 16 and 256, next to float32 and the seeds' claims.

Experiences are 256 GSM8K-derived insights (dso.edges.datasets.gsm8k_insights), embedded with the real
all-MiniLM-L6-v2 and coded with each codec, so the text lengths and codes are real.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import cbor2
import numpy as np

from dso.core.batch import build_batch
from dso.core.codec import baseline_id, get_codec, load_baseline
from dso.core.experience import Experience
from dso.edges.datasets import gsm8k_insights
from dso.edges.embed import load_embedder
from dso.workflows.publish import MODEL_NAME

SEED_CLAIMS = {
    "seed DSO: BitDelta embedding (48 B signs + 4 B float32 scale)": 52,
    "seed DSO summary: experience with text (52 B + 256 B text, no encoding overhead)": 308,
}
BATCH_SIZES = (1, 16, 256)
NODE = bytes.fromhex("976ea74026e726554db657fa54763abd0c3a0aa9")
GAS_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "gas.json"


def _text_item_bytes(text: str) -> int:
    """Bytes the text occupies inside the CBOR map: its key, header and UTF-8 body."""
    return len(cbor2.dumps({"text": text})) - len(cbor2.dumps({}))


def measure_codec(codec_id: str, insights: list, vectors: np.ndarray) -> dict[str, Any]:
    baseline = load_baseline()
    codec = get_codec(codec_id, vectors.shape[1], baseline)
    codes = codec.encode(vectors)
    experiences = [
        Experience.create(i.text, i.domain, i.confidence, MODEL_NAME, codec_id, bytes(code), NODE, 1_763_000_000 + n)
        for n, (i, code) in enumerate(zip(insights, codes))
    ]
    leaves = [len(e.canonical_bytes()) for e in experiences]
    without_text = [leaf - _text_item_bytes(e.text) for leaf, e in zip(leaves, experiences)]
    documents, uncompressed = {}, {}
    for size in BATCH_SIZES:
        document = build_batch(experiences[:size], dim=vectors.shape[1], baseline=bytes.fromhex(baseline_id(baseline)), created_at=1_763_000_000)
        documents[str(size)] = round(len(document.to_bytes()) / size, 1)
        uncompressed[str(size)] = round(len(document.to_cbor()) / size, 1)
    return {
        "code_bytes": int(codes.shape[1]),
        "compression_vs_float32": round(4 * vectors.shape[1] / codes.shape[1], 1),
        "leaf_bytes_mean": round(statistics.mean(leaves), 1),
        "leaf_bytes_without_text_mean": round(statistics.mean(without_text), 1),
        "document_bytes_per_experience": documents,
        "document_cbor_bytes_per_experience": uncompressed,
    }


def run() -> dict[str, Any]:
    insights = gsm8k_insights(max(BATCH_SIZES))
    embedder = load_embedder("minilm")
    vectors = embedder.embed([i.text for i in insights])
    text_bytes = [len(i.text.encode("utf-8")) for i in insights]
    results: dict[str, Any] = {
        "experiences": len(insights),
        "source": "gsm8k_insights(256): GSM8K train problems 0-255 distilled by dso.edges.datasets.distill",
        "float32_vector_bytes": int(vectors.shape[1] * 4),
        "text_bytes_mean": round(statistics.mean(text_bytes), 1),
        "codecs": {codec_id: measure_codec(codec_id, insights, vectors) for codec_id in ("bitdelta-1", "ternary-2")},
        "seed_claims": SEED_CLAIMS,
    }
    if GAS_RESULTS.is_file():
        submit = json.loads(GAS_RESULTS.read_text())["gas"]["submitBatch (later batch)"]
        results["submit_gas_per_experience"] = {str(n): round(submit / n, 1) for n in BATCH_SIZES}
    return results


def markdown_table(results: dict[str, Any]) -> str:
    codecs = results["codecs"]
    names = list(codecs)
    lines = ["| bytes per experience | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    rows = [
        ("float32 embedding (384-d)", lambda c: results["float32_vector_bytes"]),
        ("compressed code", lambda c: c["code_bytes"]),
        ("compression of the embedding vs float32", lambda c: f"{c['compression_vs_float32']}x"),
        ("canonical leaf without its text (code + domain, confidence, model, codec, node, time, CBOR keys)", lambda c: c["leaf_bytes_without_text_mean"]),
        (f"canonical leaf with its text (mean text {results['text_bytes_mean']} B)", lambda c: c["leaf_bytes_mean"]),
    ]
    rows += [
        (f"batch document per experience, batch of {size}: canonical CBOR", lambda c, size=size: c["document_cbor_bytes_per_experience"][size])
        for size in codecs[names[0]]["document_bytes_per_experience"]
    ]
    rows += [
        (f"batch document per experience, batch of {size}: as pinned (zstd)", lambda c, size=size: c["document_bytes_per_experience"][size])
        for size in codecs[names[0]]["document_bytes_per_experience"]
    ]
    for label, value in rows:
        lines.append(f"| {label} | " + " | ".join(str(value(codecs[n])) for n in names) + " |")
    lines += ["", "| the seeds' claims | bytes |", "|---|---:|"]
    lines += [f"| {name} | {value} |" for name, value in results["seed_claims"].items()]
    return "\n".join(lines)
