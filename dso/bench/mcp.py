"""MCP memory server benchmark: latency of one `search_experiences` call through `dso mcp` at 10k
experiences, and the server's cold start, against `dso query`'s process per question.

A library of 10,000 experiences (GSM8K lessons distilled by `dso.edges.datasets.gsm8k_insights`,
then unique STS-B sentences, stored as local entries: the same codes, index and two-stage search as
synced entries) is built once in a temporary DSO_HOME with the real MiniLM model. `dso mcp` then
runs as an MCP client starts it: a subprocess over stdio, driven by the official SDK's
`ClientSession`. Cold start is the time from spawning the server to its first answered search (it
includes Python and torch imports, the model load and the index load); each warm call is one
`call_tool("search_experiences", k=5)` round trip with a distinct held-out GSM8K question, timed in
the client. The same questions are timed in-process (`Library.search`, what the server does inside
each call) with torch's default thread count and with the one thread `dso mcp` sets, and one
`dso query` subprocess is timed end to end. Medians, because the machine is shared: the load
average is recorded before and after. The library is cached in `.cache/bench-mcp/` (about 15
minutes to build on 2 busy cores).
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dso.core.codec import DEFAULT_CODEC, baseline_id, get_codec, load_baseline
from dso.core.experience import Experience, validate_text
from dso.core.models import MODEL_NAME
from dso.edges.datasets import gsm8k_insights, gsm8k_questions, sts_pairs, unique
from dso.edges.embed import load_embedder
from dso.errors import ExperienceError
from dso.workflows.library import LOCAL_NODE, Library

SIZE = 10_000
QUERIES = 200
K = 5
QUERY_OFFSET = 7_200  # held-out GSM8K questions: the library's lessons come from the first 7,000
CHUNK = 1_000
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "bench-mcp"


def corpus() -> list[tuple[str, str, float]]:
    """(text, domain, confidence) candidates: GSM8K lessons, then STS-B sentences."""
    out = [(i.text, i.domain, i.confidence) for i in gsm8k_insights(7_000)]
    sentences = unique([s for p in sts_pairs("train") for s in (p.first, p.second)])
    out += [(s, "general.sts", 0.8) for s in sentences]
    return [(t, d, c) for t, d, c in out if _valid(t)]


def _valid(text: str) -> bool:
    try:
        validate_text(text)
    except ExperienceError:
        return False
    return True


def build_library(path: Path, embedder: Any, size: int = SIZE) -> int:
    """Store `size` distinct experiences (near-duplicates are refused by the library and skipped)."""
    baseline = load_baseline()
    codec = get_codec(DEFAULT_CODEC, embedder.dim, baseline)
    baseline_bytes = bytes.fromhex(baseline_id(baseline))
    candidates = corpus()
    with Library(path, embedder) as library:
        position = 0
        while len(library) < size and position < len(candidates):
            chunk = candidates[position : position + min(CHUNK, size - len(library))]
            position += len(chunk)
            codes = codec.encode(embedder.embed([t for t, _, _ in chunk]))
            experiences = [Experience.create(t, d, c, MODEL_NAME, DEFAULT_CODEC, bytes(code), LOCAL_NODE, 1_763_000_000)
                           for (t, d, c), code in zip(chunk, codes)]
            library.add_many(experiences, baseline_bytes)
        return len(library)


async def through_server(home: Path, queries: list[str]) -> dict[str, Any]:
    """Spawn `dso mcp` over stdio, time the cold start and one search call per query."""
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "dso", "mcp"], env={"DSO_HOME": str(home)})
    started = time.perf_counter()
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        initialized = time.perf_counter() - started
        first = await session.call_tool("search_experiences", {"query": queries[0], "k": K})
        cold = time.perf_counter() - started
        assert not first.is_error, first.content
        latencies = []
        for query in queries[1:]:
            t = time.perf_counter()
            result = await session.call_tool("search_experiences", {"query": query, "k": K})
            latencies.append((time.perf_counter() - t) * 1000)
            assert not result.is_error and len(result.structured_content["results"]) == K
    return {"initialize_s": round(initialized, 2), "cold_start_to_first_result_s": round(cold, 2), "latencies_ms": latencies}


def in_process(path: Path, embedder: Any, queries: list[str], threads: int | None) -> list[float]:
    import torch

    default = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _timed_searches(path, embedder, queries)
    finally:
        torch.set_num_threads(default)


def _timed_searches(path: Path, embedder: Any, queries: list[str]) -> list[float]:
    with Library(path, embedder) as library:
        library.search(queries[0], k=K)  # loads the index
        out = []
        for query in queries[1:]:
            t = time.perf_counter()
            library.search(query, k=K)
            out.append((time.perf_counter() - t) * 1000)
    return out


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered), 2), "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 2),
            "min": round(ordered[0], 2), "max": round(ordered[-1], 2), "calls": len(ordered)}


def run() -> dict[str, Any]:
    """Build the library, measure, return the results document."""
    import torch

    load_before = os.getloadavg()
    embedder = load_embedder("minilm")
    default_threads = torch.get_num_threads()
    cached = CACHE / "library.sqlite"
    build_s = None
    if not cached.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        partial = CACHE / "building.sqlite"
        for leftover in CACHE.glob("building.sqlite*"):
            leftover.unlink()
        build_library(partial, embedder)
        build_s = round(time.perf_counter() - t, 1)
        partial.rename(cached)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        path = home / "library.sqlite"
        shutil.copyfile(cached, path)
        with Library(path, embedder) as library:
            size = len(library)
        queries = gsm8k_questions(QUERY_OFFSET + QUERIES + 1)[QUERY_OFFSET : QUERY_OFFSET + QUERIES + 1]
        server = asyncio.run(through_server(home, queries))
        library_ms = in_process(path, embedder, queries, 1)
        library_default_ms = in_process(path, embedder, queries, None)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dso", "query", queries[0], "-k", str(K), "--format", "json", "--embedder", "minilm"], check=True,
                       env={**os.environ, "DSO_HOME": str(home)}, capture_output=True)
        query_cli_s = time.perf_counter() - t
    return {
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
                        "load_average_after": [round(x, 2) for x in os.getloadavg()], "model": embedder.model_id, "k": K},
        "experiences": size,
        "library_build_s": build_s,
        "server": {"initialize_s": server["initialize_s"], "cold_start_to_first_result_s": server["cold_start_to_first_result_s"],
                   "search_call_ms": summary(server["latencies_ms"]), "torch_threads": 1},
        "library_search_in_process_ms": summary(library_ms),
        "library_search_in_process_default_threads_ms": {**summary(library_default_ms), "torch_threads": default_threads},
        "dso_query_cold_process_s": round(query_cli_s, 2),
    }


def markdown_table(results: dict[str, Any]) -> str:
    """The README's MCP table, rendered from a results document."""
    s, lib, env = results["server"], results["library_search_in_process_ms"], results["environment"]
    default = results["library_search_in_process_default_threads_ms"]
    call = s["search_call_ms"]
    return "\n".join([
        f"| one search, k={env['k']}, {results['experiences']:,} experiences | median | p90 | calls |",
        "|---|---:|---:|---:|",
        f"| `search_experiences` through `dso mcp` (stdio, SDK client) | {call['median']} ms | {call['p90']} ms | {call['calls']} |",
        f"| `Library.search` in-process, 1 torch thread (the work inside one call) | {lib['median']} ms | {lib['p90']} ms | {lib['calls']} |",
        f"| `Library.search` in-process, torch's default {default['torch_threads']} threads | {default['median']} ms | {default['p90']} ms | {default['calls']} |",
        "",
        "| cold start | seconds |",
        "|---|---:|",
        f"| `dso mcp` spawned to MCP session initialized | {s['initialize_s']} |",
        f"| `dso mcp` spawned to first search answered (imports, model, index) | {s['cold_start_to_first_result_s']} |",
        f"| `dso query --embedder minilm` (a new process per question, the server's model) | {results['dso_query_cold_process_s']} |",
        "",
        f"{env['cpus']} CPUs, load average {env['load_average_before'][0]} before and {env['load_average_after'][0]} after (1 min)"
        + (f"; library built in {results['library_build_s']} s." if results["library_build_s"] else "; library from the cache."),
    ])
