"""Content-store benchmark: how fast a node pins and a client fetches batch documents.

Batch documents are 1 KB - 500 KB, so two workloads: 1,000 objects of 2 KB (many small batches,
per-request overhead dominates) and 50 objects of 200 KB (bandwidth and hashing dominate). Each
runs through `KuboClient` against a private devnet js-ipfs node started on a free port, and through
`LocalStore` (with and without fsync) for comparison. Every `get` includes the CID verification a
client must do, and every `put` the check that the node's CID equals the local one, because that is
the cost a real node pays. Objects are distinct random bytes (nothing deduplicates), sequential
calls over one pooled HTTP connection. MB/s counts 10^6 payload bytes per second.
"""

from __future__ import annotations

import os
import platform
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from dso.edges.ipfs import ContentStore, KuboClient, LocalStore
from dso.edges.services import free_port, node_executable, start_ipfs

WORKLOADS = ((1_000, 2_000), (50, 200_000))  # (objects, bytes each); KB = 1,000 bytes
SEED = 20_241_214


def payloads(count: int, size: int, seed: int = SEED) -> list[bytes]:
    """`count` distinct pseudo-random payloads of `size` bytes, the same on every run."""
    rng = random.Random(f"{seed}:{count}:{size}")
    return [rng.randbytes(size) for _ in range(count)]


def _rate(op: str, objects: list[bytes], seconds: float) -> dict[str, Any]:
    total = sum(len(o) for o in objects)
    return {
        "op": op,
        "seconds": round(seconds, 3),
        "objects_per_s": round(len(objects) / seconds, 1),
        "mb_per_s": round(total / seconds / 1e6, 2),
    }


def _timed(call: Callable[[], None]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def measure(store: ContentStore, objects: list[bytes]) -> list[dict[str, Any]]:
    """Put every object, then get (and verify) every object; return one rate per operation."""
    cids: list[str] = []
    put_seconds = _timed(lambda: cids.extend(store.put(o) for o in objects))
    fetched: list[bytes] = []
    get_seconds = _timed(lambda: fetched.extend(store.get(c) for c in cids))
    if fetched != objects:
        raise AssertionError(f"{store!r} returned different bytes than were stored")
    return [_rate("put", objects, put_seconds), _rate("get", objects, get_seconds)]


def _rss_mb(pid: int | None) -> float | None:
    """Resident memory of a process in MB, from /proc (None where there is no /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (FileNotFoundError, ValueError):
        return None
    return None


def run() -> dict[str, Any]:
    """Start a private js-ipfs node, run both workloads through it and LocalStore, stop the node."""
    rows: list[dict[str, Any]] = []
    # Other work on the machine skews every figure; record how busy it was.
    load_at_start = round(os.getloadavg()[0], 2)
    workloads = {(count, size): payloads(count, size) for count, size in WORKLOADS}
    with tempfile.TemporaryDirectory() as state:
        started = time.perf_counter()
        process, url = start_ipfs(Path(state), port=free_port(), die_with_parent=True)
        node_start = time.perf_counter() - started
        try:
            with KuboClient(url, timeout=30.0) as client:
                version = str(client.version().get("Version"))
                for (count, size), objects in workloads.items():
                    for rate in measure(client, objects):
                        rows.append({"store": f"KuboClient -> js-ipfs {version} (devnet)", "count": count, "size": size, **rate})
            node_rss = _rss_mb(process.pid())
        finally:
            process.stop()
        for durable in (True, False):
            label = "LocalStore (fsync)" if durable else "LocalStore (no fsync)"
            for (count, size), objects in workloads.items():
                store = LocalStore(Path(state) / f"local-{durable}-{count}", durable=durable)
                rows.extend({"store": label, "count": count, "size": size, **rate} for rate in measure(store, objects))
    node_version = subprocess.run([str(node_executable()), "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "environment": {
            "python": platform.python_version(),
            "node": node_version,
            "ipfs_node": f"js-ipfs (ipfs-core {version}), offline, flatfs blockstore with sync",
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_1m_at_start": load_at_start,
        },
        "node_start_seconds": round(node_start, 2),
        "node_rss_mb_after": node_rss,
        "results": rows,
    }


def markdown_table(results: dict[str, Any]) -> str:
    """The README's store table: objects/s and MB/s for put and verified get, per store and workload."""
    lines = [
        "| store | workload | put objects/s | put MB/s | get objects/s | get MB/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    by_case: dict[tuple[str, int, int], dict[str, dict[str, Any]]] = {}
    for row in results["results"]:
        by_case.setdefault((row["store"], row["count"], row["size"]), {})[row["op"]] = row
    for (store, count, size), ops in by_case.items():
        put, get = ops["put"], ops["get"]
        workload = f"{count:,} x {size / 1000:g} KB"
        lines.append(
            f"| {store} | {workload} | {put['objects_per_s']:,} | {put['mb_per_s']:,} | "
            f"{get['objects_per_s']:,} | {get['mb_per_s']:,} |"
        )
    rss = results.get("node_rss_mb_after")
    lines += [
        "",
        f"Node start {results['node_start_seconds']} s; node RSS after the runs {rss} MB; "
        f"{results['environment']['cpus']} CPUs, load average {results['environment']['load_average_1m_at_start']} at start. "
        "get includes CID verification; put includes the node-CID check.",
    ]
    return "\n".join(lines)
