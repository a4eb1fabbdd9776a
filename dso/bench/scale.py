"""Scale: verified sync, incremental sync, aggregation, search, submit and many writers at once.

`python scripts/bench.py scale` runs every part, each in its own process (so each reports its own
peak RSS), and writes bench/results/scale.json; `DSO_BENCH_SCALE_PARTS=sync,search` reruns some
parts and keeps the stored results of the others. Every row records the load average: this
2-core machine is shared, so compare ratios measured in the same run.

Data. Real texts and real MiniLM vectors where the figure depends on them (clustering agreement;
the seeds of the search corpus), synthetic where a million real embeddings would take hours:

- report sets: topics, each stated in several wordings whose vectors are the topic's vector
  plus noise (cosine ~0.95 between wordings); nodes report topics with a popularity drawn per
  topic and one wording each (`report_set`). Texts are real GSM8K-distilled lessons with the
  topic and wording numbers in them, so text lengths are real.
- the search corpus: real embeddings of GSM8K questions and STS-B sentences (cached under
  .cache/embeddings), plus descendants normalize(s_a + mu (s_b - s_c)) of random seeds, with mu set so
  that a descendant has cosine ~0.85 to its parent (`search_corpus`).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dso.core.codec import baseline_id, get_codec, load_baseline
from dso.core.experience import Experience, Insight, text_hash
from dso.core.models import MODEL_NAME
from dso.edges.files import atomic_write_text

PARTS = ("sync", "aggregate", "agreement", "search", "query", "submit", "concurrency")
SYNC_SIZES = (1_024, 4_096, 16_384, 65_536)
SYNC_NODES = 8
BATCH_LEAVES = 2_048  # 65,536 experiences = 32 batches of 2,048
AGGREGATE_NODES, AGGREGATE_PER_NODE, AGGREGATE_TOPICS = 100, 10_000, 20_000
SEARCH_SIZES = (10_000, 100_000, 1_000_000)
QUERIES = 100
SUBMIT_LINES = 65_536
WRITERS, READERS, WRITER_LINES = 8, 4, 256
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "scale.json"
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "bench-scale"

# What the issue measured before the redesign (issue 9's table), for the README's comparison.
BEFORE = {
    "sync_experiences_per_second_1k_real_model": 35,
    "sync_experiences_per_second_64k_no_embedding": 2_900,
    "incremental_sync_16_into_64k_seconds": 8.6,
    "aggregate_1m_seconds": 561,
    "aggregate_1m_peak_gb": 4.45,
    "search_1m_warm_ms": 2_300,
    "query_1m_cold_seconds": 147,
    "query_1m_cold_peak_gb": 3.88,
    "bytes_per_experience_256": 328,
}


def environment() -> dict[str, Any]:
    return {"loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


# ------------------------------------------------------------------------------ data


def lesson_texts(count: int) -> list[str]:
    """Real GSM8K-distilled lesson texts (cycled if more are asked than GSM8K has)."""
    from dso.edges.datasets import gsm8k_insights

    base = [i.text for i in gsm8k_insights(min(count, 7_000))]
    return [base[i % len(base)] for i in range(count)]


def report_set(nodes: int, per_node: int, topics: int, wordings: int = 4, seed: int = 0) -> list[list[tuple[str, np.ndarray, float]]]:
    """Per node, its reports (text, vector, confidence): see the module docstring."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((topics, 384)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    vectors = centers[:, None, :] + rng.standard_normal((topics, wordings, 384)).astype(np.float32) * 0.012
    vectors /= np.linalg.norm(vectors, axis=2, keepdims=True)
    texts = lesson_texts(topics)
    popularity = rng.uniform(0.02, 1.0, topics)
    popularity *= per_node / popularity.sum()
    out = []
    for _ in range(nodes):
        chosen = np.flatnonzero(rng.random(topics) < np.minimum(popularity, 1.0))[:per_node]
        wording = rng.integers(0, wordings, len(chosen))
        confidence = np.clip(rng.normal(0.75, 0.1, len(chosen)), 0, 1)
        out.append([(f"{texts[t]} (lesson {t}, wording {w})", vectors[t, w], float(c)) for t, w, c in zip(chosen, wording, confidence)])
    return out


def experiences_of(reports: list[tuple[str, np.ndarray, float]], node: bytes, created: int = 1_763_000_000) -> list[Experience]:
    codec = get_codec("bitdelta-1", 384)
    codes = codec.encode(np.stack([v for _, v, _ in reports])) if reports else []
    return [Experience.create(t, "math.reasoning", c, MODEL_NAME, "bitdelta-1", bytes(code), node, created) for (t, _, c), code in zip(reports, codes)]


def baseline() -> bytes:
    return bytes.fromhex(baseline_id(load_baseline()))


# ------------------------------------------------------------------------------ parts


def aggregate_library(nodes: int, per_node: int, topics: int) -> tuple[Path, float]:
    """A library holding `nodes` x `per_node` reports and no entries yet, built once and kept
    under .cache (the data is seeded); returns its path and the seconds storing took (0 if cached)."""
    from dso.edges.embed import LazyEmbedder
    from dso.workflows.library import Library, Source

    path = CACHE / f"aggregate-{nodes}x{per_node}-{topics}.sqlite"
    if path.exists():
        return path, 0.0
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        leftover.unlink(missing_ok=True)
    started = time.perf_counter()
    library = Library(partial, LazyEmbedder())
    for node, items in enumerate(report_set(nodes, per_node, topics), 1):
        address = node.to_bytes(20, "big")
        experiences = experiences_of(items, address)
        for part in range(0, len(experiences), BATCH_LEAVES):
            root = node.to_bytes(16, "big") + part.to_bytes(16, "big")
            library.add_reports(experiences[part : part + BATCH_LEAVES], baseline(), Source(root, node, address, node * 1_000 + part))
    library.close()
    partial.rename(path)
    return path, time.perf_counter() - started


def aggregate_once(path: str, nodes: int) -> dict[str, Any]:
    """One full aggregation of the library at `path` (run in its own process, so its peak RSS is
    the aggregation's alone, not the data generation's)."""
    from dso.edges.embed import LazyEmbedder
    from dso.workflows.library import Library

    library = Library(Path(path), LazyEmbedder())
    texts = library._db.execute("SELECT COUNT(DISTINCT text_hash) FROM reports").fetchone()[0]
    started = time.perf_counter()
    summary = library.aggregate(set(range(1, nodes + 1)))
    seconds = time.perf_counter() - started
    library.close()
    return {"reports": summary.reports, "distinct_texts": texts, "aggregate_seconds": round(seconds, 1), "accepted": summary.accepted,
            "pending": summary.pending, "components": summary.recomputed_components, **environment()}


def part_aggregate() -> dict[str, Any]:
    """Full aggregations of 100 nodes x 1k and x 10k reports (about 100k and 1M reports, 8k and
    80k distinct texts), each in a fresh process on a fresh copy of the stored library."""
    rows = []
    for per_node, topics in ((AGGREGATE_PER_NODE // 10, AGGREGATE_TOPICS // 10), (AGGREGATE_PER_NODE, AGGREGATE_TOPICS)):
        path, stored = aggregate_library(AGGREGATE_NODES, per_node, topics)
        with tempfile.TemporaryDirectory() as work:
            copy = Path(work) / "library.sqlite"
            shutil.copyfile(path, copy)
            done = subprocess.run([sys.executable, "-m", "dso.bench.scale", "aggregate-once", str(copy), str(AGGREGATE_NODES)],
                                  capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"aggregation failed:\n{done.stderr[-3000:]}")
        rows.append({"nodes": AGGREGATE_NODES, "per_node": per_node, "store_seconds": round(stored, 1),
                     **json.loads(done.stdout.strip().splitlines()[-1])})
    return {"rows": rows, **rows[-1]}


def part_agreement() -> dict[str, Any]:
    """How far clusters found from the codes are from today's clusters of float vectors (cosine
    >= 0.9), on real paraphrases: GSM8K lessons in every wording dso knows and STS-B pairs."""
    from dso.bench.byzantine import GSM8K_PHRASINGS, STS_FRAMINGS
    from dso.bench.retrieval import cached_embeddings
    from dso.core.aggregate import Report, cluster_reports
    from dso.edges.datasets import STYLES, gsm8k_records, sts_pairs
    from dso.edges.datasets import distill as distilled

    rng = np.random.default_rng(3)
    records = gsm8k_records(1_200)
    texts: list[str] = []
    for n, record in enumerate(records):
        base = distilled(record["question"], record["answer"])
        situation, step = base.text.removeprefix("When ").split(", start with this step: ", 1) if ", start with this step: " in base.text else (None, None)
        if situation is None:
            continue
        forms = [s.replace("{situation}", "{s}").replace("{step}", "{a}") for s in STYLES] + list(GSM8K_PHRASINGS)
        texts += [f.format(s=situation, a=step.rstrip(".")) for f in rng.choice(forms, 4, replace=False)]
    for pair in [p for p in sts_pairs("dev") if p.score >= 3.5][:600]:
        texts += [STS_FRAMINGS[int(rng.integers(len(STS_FRAMINGS)))].format(x=x) for x in (pair.first, pair.second)]
    texts = list(dict.fromkeys(texts))
    vectors = cached_embeddings("minilm", texts)
    codes = get_codec("bitdelta-1", 384).encode(vectors)
    node_of = rng.integers(1, 21, len(texts))
    reports = [Report(f"{i:064x}", int(node_of[i]), t, "x", 0.8, vectors[i], bytes(32), bytes(codes[i])) for i, t in enumerate(texts)]
    started = time.perf_counter()
    exact = cluster_reports(reports)
    exact_seconds = time.perf_counter() - started
    started = time.perf_counter()
    code_label = _code_labels(texts, codes, node_of)
    code_seconds = time.perf_counter() - started
    exact_label = {r.text: n for n, cluster in enumerate(exact) for r in cluster}
    agreement = _agreement([exact_label[t] for t in texts], [code_label[t] for t in texts])
    return {"texts": len(texts), "exact_clusters": len(exact), "code_clusters": len(set(code_label.values())),
            "exact_float_seconds": round(exact_seconds, 2), "code_seconds": round(code_seconds, 2), **agreement, **environment()}


def _code_labels(texts: list[str], codes: np.ndarray, node_of: np.ndarray) -> dict[str, int]:
    """Cluster labels as the library finds them: groups in text-hash order, neighbours from the
    codes, leader clustering with each group's reporting node."""
    from dso.core.aggregate.cluster import leader_clusters
    from dso.core.aggregate.code_neighbours import code_terms, neighbour_pairs

    codec = get_codec("bitdelta-1", 384)
    order = sorted(range(len(texts)), key=lambda i: text_hash(texts[i]))
    terms = code_terms(codec, codes[order])
    qi, bj = neighbour_pairs(terms, terms, skip_self=True)
    neighbours: list[set[int]] = [set() for _ in order]
    for i, j in zip(qi.tolist(), bj.tolist()):
        neighbours[i].add(j)
    clusters = leader_clusters([frozenset({int(node_of[order[g]])}) for g in range(len(order))], [sorted(n) for n in neighbours])
    return {texts[order[g]]: n for n, cluster in enumerate(clusters) for g in cluster}


def _agreement(a: list[int], b: list[int]) -> dict[str, float]:
    """Adjusted Rand index, pairwise precision/recall of "same cluster", identical clusters."""
    from collections import Counter

    n = len(a)
    pairs = Counter(zip(a, b))
    comb = lambda x: x * (x - 1) / 2  # noqa: E731
    both = sum(comb(v) for v in pairs.values())
    in_a, in_b = sum(comb(v) for v in Counter(a).values()), sum(comb(v) for v in Counter(b).values())
    expected = in_a * in_b / comb(n)
    ari = (both - expected) / ((in_a + in_b) / 2 - expected)
    clusters_a: dict[int, set[int]] = {}
    clusters_b: dict[int, set[int]] = {}
    for i, (x, y) in enumerate(zip(a, b)):
        clusters_a.setdefault(x, set()).add(i)
        clusters_b.setdefault(y, set()).add(i)
    same = {frozenset(c) for c in clusters_a.values()} & {frozenset(c) for c in clusters_b.values()}
    return {"adjusted_rand_index": round(ari, 4), "pair_precision": round(both / in_b, 4) if in_b else 1.0,
            "pair_recall": round(both / in_a, 4) if in_a else 1.0, "identical_clusters": round(len(same) / len(clusters_a), 4)}


def search_corpus(rows: int, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """(rows x 384 float16 vectors, 100 query vectors): real seeds and their descendants."""
    from dso.bench.retrieval import cached_embeddings
    from dso.edges.datasets import gsm8k_questions, sts_pairs

    texts = list(dict.fromkeys(gsm8k_questions()[:6_000] + [x for p in sts_pairs("train") for x in (p.first, p.second)][:8_000]))
    real = cached_embeddings("minilm", texts).astype(np.float32)
    rng = np.random.default_rng(seed)
    queries, seeds = real[:QUERIES], real[QUERIES:]
    mu = 0.46  # median cosine 0.85 to the parent (calibrated on 20k descendants)
    out = np.empty((rows, 384), dtype=np.float16)
    for start in range(0, rows, 100_000):
        n = min(100_000, rows - start)
        a, b, c = rng.integers(0, len(seeds), (3, n))
        v = seeds[a] + mu * (seeds[b] - seeds[c])
        out[start : start + n] = v / np.linalg.norm(v, axis=1, keepdims=True)
    out[: min(rows, len(seeds))] = seeds[: min(rows, len(seeds))]
    return out, queries


def part_search() -> dict[str, Any]:
    """Library.search's index at 10k, 100k and 1M entries: warm latency and recall@10 against the
    exhaustive two-stage search (asymmetric code cosine over every entry, top 100 re-ranked by
    float vectors), which is what search did before the index."""
    from dso.workflows.index import IndexRow, SearchIndex

    codec = get_codec("bitdelta-1", 384)
    rows_out = []
    for size in SEARCH_SIZES:
        vectors, queries = search_corpus(size)
        codes = codec.encode(vectors.astype(np.float32))
        with tempfile.TemporaryDirectory() as home:
            index = SearchIndex(Path(home) / "index", codec)
            started = time.perf_counter()
            with index.writing():
                for start in range(0, size, 100_000):
                    index.append([IndexRow(f"{i:064x}", bytes(32), bytes(codes[i]), 0.8, 3, "math", False, vectors[i]) for i in range(start, min(size, start + 100_000))])
                index.commit(1)
            build = time.perf_counter() - started
            everything = np.arange(size)
            floats = vectors.astype(np.float32)
            latencies, found = [], 0
            for query in queries:
                scores = index._code_scores(query, everything)
                top100 = np.argpartition(-scores, 100)[:100]
                truth = top100[np.argsort(-(floats[top100] @ query))[:10]]
                index.search(query, 10, None, 0.0, 100)  # warm the caches of this query path
                started = time.perf_counter()
                hits = index.search(query, 10, None, 0.0, 100)
                latencies.append((time.perf_counter() - started) * 1000)
                found += len({h.row for h in hits} & set(truth.tolist()))
            disk = sum(p.stat().st_size for p in (Path(home) / "index").rglob("*") if p.is_file())
        rows_out.append({"entries": size, "build_seconds": round(build, 1), "warm_ms_median": round(float(np.median(latencies)), 2),
                         "warm_ms_p90": round(float(np.percentile(latencies, 90)), 2), "recall_at_10": round(found / (10 * len(queries)), 4),
                         "disk_mb": round(disk / 2**20, 1), **environment()})
    return {"rows": rows_out}


def part_query() -> dict[str, Any]:
    """A cold `dso query` process on a library of 1M entries: wall time and peak RSS, with the
    int8 ONNX embedder and with the torch one."""
    from dso.edges.embed import LazyEmbedder
    from dso.workflows.library import Library

    size = SEARCH_SIZES[-1]
    vectors, queries = search_corpus(size)
    codec = get_codec("bitdelta-1", 384)
    home = CACHE / "query-home"
    if not (home / "library.sqlite").exists():
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        library = Library(home / "library.sqlite", LazyEmbedder())
        texts = lesson_texts(20_000)
        with library._transaction():
            for start in range(0, size, 50_000):
                n = min(50_000, size - start)
                codes = codec.encode(vectors[start : start + n].astype(np.float32))
                rows = []
                for i in range(start, start + n):
                    text = f"{texts[i % len(texts)]} ({i})"
                    experience = Experience.create(text, "math", 0.8, MODEL_NAME, "bitdelta-1", bytes(codes[i - start]), (i % 97).to_bytes(20, "big"), 1)
                    rows.append((experience.experience_id, experience.canonical_bytes(), text, "math", 0.8, "bitdelta-1", baseline(), bytes(codes[i - start]),
                                 text_hash(text), 3, "[1, 2, 3]", None, 1, 1))
                library._db.executemany("INSERT INTO experiences (id, origin, accepted, canonical, text, domain, confidence, codec, baseline, code, "
                                        "text_hash, support, node_ids, reason, added_at, component) "
                                        "VALUES (?, 'network', 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            library._bump("entries_version")
        started = time.perf_counter()
        library.search("warm up", k=1, query_vector=queries[0])  # builds the index once
        build = time.perf_counter() - started
        library.close()
    else:
        build = None
    env = {**os.environ, "DSO_HOME": str(home)}
    runs = []
    for embedder in ("minilm-int8", "minilm"):
        for attempt in range(3):
            started = time.perf_counter()
            done = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "dso", "query", "How do I split a bill three ways?", "-k", "5",
                                   "--format", "json", "--embedder", embedder], capture_output=True, text=True, env=env)
            wall = time.perf_counter() - started
            if done.returncode:
                raise RuntimeError(done.stderr)
            runs.append({"embedder": embedder, "attempt": attempt, "wall_seconds": round(wall, 2),
                         "peak_rss_mb": round(int(done.stderr.strip().splitlines()[-1]) / 1024, 1), "hits": len(json.loads(done.stdout))})
    return {"entries": size, "index_build_seconds": None if build is None else round(build, 1), "runs": runs, **environment()}


def _devnet(home: Path):
    from dso.edges.services import free_port
    from dso.workflows.devnet import bring_up

    return bring_up(home, anvil_port=free_port(), ipfs_port=free_port(), voting_period=3_600, die_with_parent=True)


def _commit(net, store, node_account, experiences: list[Experience], created: int) -> bytes:
    """Pin a batch and commit it from `node_account` (no embedding: codes are given)."""
    from dso.core.batch import build_batch
    from dso.edges.ipfs import cid_to_bytes

    document = build_batch(experiences, 384, baseline(), created)
    cid = store.put(document.to_bytes())
    net.registry.submit_batch(node_account, document.header.root, cid_to_bytes(cid), document.header.count, document.header.schema_id)
    return document.header.root


def _accept(net, roots: list[bytes]) -> None:
    """Every member votes yes, so each batch is decided at once (3 of the devnet's 5 members
    are not a 2/3 majority while 2 could still vote no)."""
    for root in roots:
        for member in net.members:
            net.registry.vote_on_batch(member, root, True)
        net.registry.finalize_batch(net.deployer, root)


def part_sync() -> dict[str, Any]:
    """Verified sync of 1k-64k experiences (8 nodes; 64k = 32 batches of 2,048) on a real Anvil and
    js-ipfs node, then 16 new experiences into the 64k library, the first query after sync, and
    the indexer's throughput with 1 and 2 threads."""
    from dso.edges.embed import load_embedder
    from dso.edges.ipfs import KuboClient

    rows = []
    load_embedder("minilm")  # the process has the model loaded, as a long-running client would
    for size in SYNC_SIZES:
        # A fresh chain per size: a client syncs from the registry's deploy block (its NodeAdmitted
        # events decide whose batches count), so sizes cannot share one registry.
        with tempfile.TemporaryDirectory() as home:
            net = _devnet(Path(home))
            try:
                with KuboClient(net.ipfs_api, timeout=60) as store:
                    rows.append(_sync_row(net, store, Path(home), size))
            finally:
                net.stop()
    return {"rows": rows, "indexer": _indexer_rates()}


def _sync_row(net, store, home: Path, size: int) -> dict[str, Any]:
    """Commit and accept `size` experiences from SYNC_NODES nodes, then time a fresh client's sync
    (and, at the largest size, the first query and an incremental sync of 16 more)."""
    from dso.edges.embed import LazyEmbedder
    from dso.workflows.library import Library
    from dso.workflows.sync import sync

    data = report_set(SYNC_NODES, size // SYNC_NODES, max(64, size // 6), seed=size)
    roots = []
    for n, items in enumerate(data):
        account = net.nodes[n % len(net.nodes)]
        experiences = experiences_of(items, bytes.fromhex(account.address[2:]), created=1_763_000_000 + size)
        per_batch = min(BATCH_LEAVES, max(1, size // (4 * SYNC_NODES)))
        for start in range(0, len(experiences), per_batch):
            roots.append(_commit(net, store, account, experiences[start : start + per_batch], 1_763_000_000 + size + start))
    _accept(net, roots)
    library = Library(home / "library.sqlite", LazyEmbedder())
    aggregating = []  # seconds spent in Library.aggregate during each sync: the part that grows with clusters
    real_aggregate = library.aggregate

    def timed_aggregate(*args, **kwargs):
        started = time.perf_counter()
        try:
            return real_aggregate(*args, **kwargs)
        finally:
            aggregating.append(time.perf_counter() - started)

    library.aggregate = timed_aggregate
    try:
        started = time.perf_counter()
        report = sync(net.registry, store, library, home / "sync.json")
        seconds = time.perf_counter() - started
        if report.invalid or report.unavailable or len(report.loaded) != len(roots):
            raise RuntimeError(f"sync loaded {len(report.loaded)} of {len(roots)} batches: {report.invalid or report.unavailable}")
        experiences = sum(len(d) for d in data)
        row = {"experiences": experiences, "batches": len(roots), "seconds": round(seconds, 2),
               "experiences_per_second": round(experiences / seconds, 1), "accepted": report.aggregation.accepted,
               "components": report.aggregation.recomputed_components, "aggregate_seconds": round(sum(aggregating), 2), **environment()}
        if size == SYNC_SIZES[-1]:
            started = time.perf_counter()
            hits = library.search(data[0][0][0], k=5)
            row["first_query_ms"] = round((time.perf_counter() - started) * 1000, 1)
            row["first_query_hits"] = len(hits)
            row["first_query_by_code_only"] = sum(h.by_code_only for h in hits)
            extra = experiences_of(report_set(1, 16, 16, seed=99)[0], bytes.fromhex(net.nodes[0].address[2:]), created=1_900_000_000)
            _accept(net, [_commit(net, store, net.nodes[0], extra, 1_900_000_000)])
            started = time.perf_counter()
            later = sync(net.registry, store, library, home / "sync.json")
            row["incremental_16_seconds"] = round(time.perf_counter() - started, 3)
            row["incremental_recomputed_components"] = later.aggregation.recomputed_components
            row["incremental_loaded_batches"] = len(later.loaded)
        return row
    finally:
        library.close()


def _indexer_rates() -> list[dict[str, Any]]:
    """Texts embedded per second by the indexer's model with 1 and 2 threads, each in a fresh
    process (threads are fixed at load), on 2,048 real lesson texts."""
    code = ("import sys, time, json; from dso.edges.embed import load_embedder; from dso.bench.scale import lesson_texts; "
            "e = load_embedder(sys.argv[1]); texts = lesson_texts(2048); e.embed(texts[:64]); t = time.perf_counter(); e.embed(texts); "
            "print(json.dumps(round(len(texts) / (time.perf_counter() - t), 1)))")
    rates = []
    for embedder in ("minilm", "minilm-int8"):
        for threads in (1, 2):
            done = subprocess.run([sys.executable, "-c", code, embedder], capture_output=True, text=True, env={**os.environ, "DSO_THREADS": str(threads)})
            if done.returncode:
                raise RuntimeError(done.stderr)
            rates.append({"embedder": embedder, "threads": threads, "texts_per_second": json.loads(done.stdout), **environment()})
    return rates


def part_submit() -> dict[str, Any]:
    """`dso submit` of a 65,536-line JSONL file end to end on a devnet: planned into batches before
    the model runs, embedded, queued, pinned and committed one transaction each."""
    from dso.edges.config import NetworkConfig, save_config
    from dso.edges.wallet import create_dev_wallets
    from dso.workflows.publish import insights_to_jsonl

    with tempfile.TemporaryDirectory() as home:
        net = _devnet(Path(home) / "devnet")
        try:
            env = {**os.environ, "DSO_HOME": str(Path(home) / "dso"), "DSO_DEV_PASSWORD": "dev"}
            os.environ["DSO_HOME"] = env["DSO_HOME"]
            save_config(NetworkConfig(net.rpc_url, 31337, net.registry.address, 0, "bench", net.ipfs_api))
            create_dev_wallets({"node1": net.nodes[0]})
            texts = lesson_texts(SUBMIT_LINES)
            path = Path(home) / "big.jsonl"
            path.write_text(insights_to_jsonl(Insight(f"{t} ({n})", "math.reasoning", 0.8) for n, t in enumerate(texts)))
            started = time.perf_counter()
            done = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "dso", "submit", str(path), "--wallet", "node1",
                                   "--password-env", "DSO_DEV_PASSWORD"], capture_output=True, text=True, env=env)
            wall = time.perf_counter() - started
            if done.returncode:
                raise RuntimeError(done.stderr[-2000:])
            batches = net.registry.batch_count()
            committed = sum(b.count for b in net.registry.all_batches())
        finally:
            net.stop()
            os.environ.pop("DSO_HOME", None)
    return {"lines": SUBMIT_LINES, "wall_seconds": round(wall, 1), "lines_per_second": round(SUBMIT_LINES / wall, 1), "batches": batches,
            "committed_experiences": committed, "peak_rss_mb": round(int(done.stderr.strip().splitlines()[-1]) / 1024, 1),
            "loadavg": environment()["loadavg"]}


def part_concurrency() -> dict[str, Any]:
    """8 node processes run `dso submit` at once while 4 clients run `dso sync` in a loop: every
    batch is committed exactly once and every client ends with the same entries."""
    from dso.edges.config import NetworkConfig, save_config
    from dso.edges.wallet import create_dev_wallets
    from dso.workflows.publish import insights_to_jsonl

    with tempfile.TemporaryDirectory() as home:
        base = Path(home)
        net = _devnet(base / "devnet")
        try:
            from eth_account import Account

            writers = [Account.create() for _ in range(WRITERS)]
            for account in writers:
                net.registry.w3.provider.make_request("anvil_setBalance", [account.address, hex(10**20)])
            proposals = [net.registry.propose_admit_node(net.members[0], a.address).proposal_id for a in writers]
            for pid in proposals:
                for member in net.members:  # all 5: 3 yes with 2 still to vote is not yet a 2/3 majority
                    net.registry.vote_on_proposal(member, pid, True)
                net.registry.finalize_proposal(net.deployer, pid)
            texts = lesson_texts(WRITERS * WRITER_LINES)
            homes = []
            for n, account in enumerate(writers):
                h = base / f"writer{n}"
                os.environ["DSO_HOME"] = str(h)
                save_config(NetworkConfig(net.rpc_url, 31337, net.registry.address, 0, "bench", net.ipfs_api))
                create_dev_wallets({"node": account})
                lines = [Insight(texts[(n * WRITER_LINES + i) % len(texts)] if i % 2 else texts[i], "math.reasoning", 0.8) for i in range(WRITER_LINES)]
                (h / "in.jsonl").write_text(insights_to_jsonl(lines))
                homes.append(h)
            readers = []
            for n in range(READERS):
                h = base / f"reader{n}"
                os.environ["DSO_HOME"] = str(h)
                save_config(NetworkConfig(net.rpc_url, 31337, net.registry.address, 0, "bench", net.ipfs_api))
                readers.append(h)
            os.environ.pop("DSO_HOME", None)
            started = time.perf_counter()
            writing = [subprocess.Popen([sys.executable, "-m", "dso", "submit", str(h / "in.jsonl"), "--wallet", "node", "--password-env", "DSO_DEV_PASSWORD"],
                                        env={**os.environ, "DSO_HOME": str(h), "DSO_DEV_PASSWORD": "dev"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                       for h in homes]
            syncs = 0
            voted: set[bytes] = set()
            while any(w.poll() is None for w in writing):
                for info in net.registry.all_batches():
                    if info.root not in voted:
                        _accept(net, [info.root])
                        voted.add(info.root)
                for h in readers:
                    subprocess.run([sys.executable, "-m", "dso", "sync", "--no-index"], env={**os.environ, "DSO_HOME": str(h)}, capture_output=True)
                    syncs += 1
            failures = [w.stderr.read().decode()[-500:] for w in writing if w.returncode]
            writing_seconds = time.perf_counter() - started
            for info in net.registry.all_batches():
                if info.root not in voted:
                    _accept(net, [info.root])
            for h in readers:
                subprocess.run([sys.executable, "-m", "dso", "sync", "--no-index"], env={**os.environ, "DSO_HOME": str(h)}, capture_output=True, check=True)
            import sqlite3

            entries = []
            for h in readers:
                with sqlite3.connect(h / "library.sqlite") as db:
                    entries.append(sorted(r[0] for r in db.execute("SELECT id FROM experiences WHERE accepted = 1")))
            batches = list(net.registry.all_batches())
        finally:
            net.stop()
    roots = [b.root for b in batches]
    return {"writers": WRITERS, "readers": READERS, "lines_per_writer": WRITER_LINES, "batches": len(batches),
            "distinct_roots": len(set(roots)), "failed_writers": failures, "writing_seconds": round(writing_seconds, 1),
            "batches_per_second": round(len(batches) / writing_seconds, 3), "reader_syncs_during_writing": syncs,
            "identical_libraries": all(e == entries[0] for e in entries), "entries_per_library": len(entries[0]), **environment()}


def run() -> dict[str, Any]:
    """Run the parts named in $DSO_BENCH_SCALE_PARTS (default: all), each in its own process."""
    wanted = [p for p in os.environ.get("DSO_BENCH_SCALE_PARTS", ",".join(PARTS)).split(",") if p]
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.setdefault("parts", {})
    for part in wanted:
        if part not in PARTS:
            raise SystemExit(f"unknown part {part!r}; choose from {PARTS}")
        print(f"scale: {part} ...", file=sys.stderr, flush=True)
        done = subprocess.run([sys.executable, "-m", "dso.bench.scale", part], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"part {part} failed:\n{done.stderr[-3000:]}")
        results["parts"][part] = json.loads(done.stdout.strip().splitlines()[-1])
        results["before"] = BEFORE
        results["environment"] = {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.machine()}
        atomic_write_text(RESULTS, json.dumps(results, indent=2) + "\n")  # a later part's failure keeps this one
    return results


def markdown_table(results: dict[str, Any]) -> str:
    p = results["parts"]
    before = results["before"]
    lines = ["| job | measured | before (issue 9) | target | load avg | peak RSS |", "|---|---:|---:|---|---|---:|"]
    if "sync" in p:
        for row in p["sync"]["rows"]:
            lines.append(f"| verified sync, {row['experiences']:,} experiences ({row['batches']} batches) | {row['experiences_per_second']:,} /s "
                         f"({row['seconds']} s, aggregation {row['aggregate_seconds']} s of it) | {before['sync_experiences_per_second_64k_no_embedding']:,} /s at 64k without embedding, "
                         f"{before['sync_experiences_per_second_1k_real_model']} /s with | >= 5,000 /s at 64k | {row['loadavg']} | {row['peak_rss_mb']:,} MB |")
        last = p["sync"]["rows"][-1]
        if "incremental_16_seconds" in last:
            lines.append(f"| sync of 16 new experiences into the {last['experiences']:,} library | {last['incremental_16_seconds']} s "
                         f"({last['incremental_recomputed_components']} components recomputed) | {before['incremental_sync_16_into_64k_seconds']} s | <= 0.5 s | "
                         f"{last['loadavg']} | {last['peak_rss_mb']:,} MB |")
            lines.append(f"| first query after that sync | {last['first_query_ms']} ms, {last['first_query_hits']} hits "
                         f"({last['first_query_by_code_only']} ranked by codes only) | – | answers | {last['loadavg']} | – |")
        for rate in p["sync"]["indexer"]:
            lines.append(f"| indexer: re-embedding texts, {rate['embedder']}, {rate['threads']} thread(s) | {rate['texts_per_second']:,} texts/s | – | reported | "
                         f"{rate['loadavg']} | {rate['peak_rss_mb']:,} MB |")
    if "aggregate" in p:
        for a in p["aggregate"].get("rows", [p["aggregate"]]):
            million = a["reports"] > 500_000
            lines.append(f"| full aggregation, {a['nodes']} nodes, {a['reports']:,} reports, {a['distinct_texts']:,} texts | {a['aggregate_seconds']} s | "
                         + (f"{before['aggregate_1m_seconds']} s, {before['aggregate_1m_peak_gb']} GB | <= 60 s, <= 2 GB" if million else "– | –")
                         + f" | {a['loadavg']} | {a['peak_rss_mb']:,} MB |")
    if "search" in p:
        for row in p["search"]["rows"]:
            lines.append(f"| Library.search, {row['entries']:,} entries, warm | {row['warm_ms_median']} ms (p90 {row['warm_ms_p90']}), recall@10 {row['recall_at_10']} | "
                         + (f"{before['search_1m_warm_ms']:,} ms" if row["entries"] == 1_000_000 else "–")
                         + f" | <= 10 ms, recall >= 0.99 at 1M | {row['loadavg']} | {row['peak_rss_mb']:,} MB |")
    if "query" in p:
        for embedder in ("minilm-int8", "minilm"):
            runs = [r for r in p["query"]["runs"] if r["embedder"] == embedder]
            wall = sorted(r["wall_seconds"] for r in runs)[len(runs) // 2]
            rss = max(r["peak_rss_mb"] for r in runs)
            lines.append(f"| cold `dso query` at {p['query']['entries']:,} entries, {embedder} (median of {len(runs)}) | {wall} s | "
                         f"{before['query_1m_cold_seconds']} s, {before['query_1m_cold_peak_gb']} GB | <= 3 s, <= 1.5 GB | {p['query']['loadavg']} | {rss:,} MB |")
    if "submit" in p:
        s = p["submit"]
        lines.append(f"| `dso submit` of {s['lines']:,} lines | {s['wall_seconds']} s ({s['lines_per_second']} lines/s), {s['batches']} batches, "
                     f"{s['committed_experiences']:,} committed | failed after 245 s at 5,000 lines | completes | {s['loadavg']} | {s['peak_rss_mb']:,} MB |")
    if "agreement" in p:
        g = p["agreement"]
        lines.append(f"| clusters from codes vs float cosine >= 0.9, {g['texts']:,} real paraphrases | ARI {g['adjusted_rand_index']}, pairs "
                     f"precision {g['pair_precision']} / recall {g['pair_recall']}, {g['identical_clusters']:.0%} identical clusters | (floats) | same answers | "
                     f"{g['loadavg']} | {g['peak_rss_mb']:,} MB |")
    if "concurrency" in p:
        c = p["concurrency"]
        lines.append(f"| {c['writers']} writers + {c['readers']} readers at once | {c['batches']} batches ({c['distinct_roots']} distinct), "
                     f"{c['batches_per_second']} batches/s, libraries identical: {c['identical_libraries']}, writer failures: {len(c['failed_writers'])} | – | "
                     f"exactly once, identical | {c['loadavg']} | {c['peak_rss_mb']:,} MB |")
    return "\n".join(lines)


def main(part: str, *arguments: str) -> None:
    if part == "aggregate-once":  # part_aggregate's measuring process
        print(json.dumps(aggregate_once(arguments[0], int(arguments[1]))))
        return
    functions: dict[str, Callable[[], dict[str, Any]]] = {
        "sync": part_sync, "aggregate": part_aggregate, "agreement": part_agreement, "search": part_search, "query": part_query,
        "submit": part_submit, "concurrency": part_concurrency,
    }
    print(json.dumps(functions[part]()))


if __name__ == "__main__":
    main(*sys.argv[1:])
