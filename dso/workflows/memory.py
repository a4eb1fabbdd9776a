"""An agent's memory held open in one long-running process (what `dso mcp` serves).

`dso query` pays the torch import, the model load and the index load on every call; an
`AgentMemory` pays them once and then answers each search in milliseconds. It holds the embedding
model and the library open, answers with provenance (the verified reports behind each entry: batch
root, leaf index, node, CID), adds the agent's own local entries, and can run a sync.

A `dso sync` in another process rewrites the library and the sync checkpoint; the checkpoint's
modification time tells this process to reopen the library (the model stays loaded), so a
long-running server never answers from a stale index.

Every method returns plain JSON types; the shapes are documented in the README ("dso mcp").
Inputs are checked by the same rules as the command line (`LibraryError`/`ExperienceError`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from dso.core.aggregate import AcceptancePolicy
from dso.edges.chain import Registry
from dso.edges.config import NetworkConfig
from dso.edges.embed import Embedder
from dso.edges.ipfs import ContentStore
from dso.errors import DsoError, LibraryError
from dso.workflows.agent import add_lessons
from dso.workflows.library import Hit, Library
from dso.workflows.sync import SyncState, sync

MAX_K = 50
MAX_QUERY_CHARS = 2_000


class AgentMemory:
    """The library at `library_path`, searched with `embedder`, for the network in `config` (None:
    no network configured; search and local entries still work). `state_path` is the sync
    checkpoint. Thread-safe: one lock serializes every call."""

    def __init__(self, library_path: Path, embedder: Embedder, config: NetworkConfig | None, state_path: Path) -> None:
        self.library_path = Path(library_path)
        self.embedder = embedder
        self.config = config
        self.state_path = Path(state_path)
        self._lock = threading.Lock()
        self._library: Library | None = None
        self._opened_for: int | None = None
        self._state: SyncState | None = None
        with self._lock:
            self._open()

    # ------------------------------------------------------------------ tools

    def search(self, query: str, k: int = 5, domain: str | None = None, min_confidence: float = 0.0) -> dict[str, Any]:
        """The top-k entries for `query` with their consensus values and provenance."""
        query = _check_query(query)
        _check_k(k)
        with self._lock:
            library = self._open()
            hits = library.search(query, k=k, domain=domain, min_confidence=min_confidence)
            return {"query": query, "count": len(hits), "results": [self._hit_json(library, hit) for hit in hits]}

    def get(self, experience_id: str) -> dict[str, Any]:
        """One visible entry by id (64 hex digits), as search returns it; LibraryError if absent."""
        if not isinstance(experience_id, str) or len(experience_id) != 64 or any(c not in "0123456789abcdef" for c in experience_id):
            raise LibraryError(f"an experience id is 64 lowercase hex digits (search results give them); got {experience_id!r}")
        with self._lock:
            library = self._open()
            experience = library.get(experience_id)
            if experience is None:
                raise LibraryError(f"no visible experience {experience_id} in the library (it may be pending support, revoked, or never synced)")
            # The consensus values are a search hit's: the entry's own text finds it first.
            hits = library.search(experience.text, k=5)
            hit = next((h for h in hits if h.experience.experience_id == experience_id), None)
            if hit is None:
                hit = Hit(experience, 1.0, library.support(experience_id), experience.domain, experience.confidence,
                          "network" if library.support(experience_id) else "local")
            return self._hit_json(library, hit, with_score=False)

    def add(self, text: str, domain: str, confidence: float) -> dict[str, Any]:
        """Store one of the agent's own lessons as a local entry (visible at once, never published
        unless submitted with `dso submit`); near-duplicates of an entry are not stored twice."""
        with self._lock:
            [outcome] = add_lessons(self._open(), self.embedder, [(text, domain, confidence)])
            return {"id": outcome.experience_id, "stored": outcome.stored, "existing": outcome.existing, "similarity": outcome.similarity}

    def status(self) -> dict[str, Any]:
        """What the library holds and where it comes from."""
        with self._lock:
            library = self._open()
            state = self._state
            network = None
            if self.config is not None:
                network = {"name": self.config.name, "chain_id": self.config.chain_id, "rpc_url": self.config.rpc_url,
                           "registry": self.config.registry, "ipfs_api": self.config.ipfs_api}
            return {
                "entries": len(library),
                "pending": len(library.pending(limit=1_000_000)),
                "last_synced_block": state.next_block - 1 if state is not None else None,
                "batches_loaded": sum(1 for b in state.batches.values() if b.loaded) if state is not None else 0,
                "registry": self.config.registry if self.config else None,
                "network": network,
                "library": str(self.library_path),
                "model": self.embedder.model_id,
            }

    def sync(self, connect: Callable[[], tuple[Registry, ContentStore]], policy: AcceptancePolicy | None = None) -> dict[str, Any]:
        """Run `dso.workflows.sync.sync` into this library (`connect` opens the registry and store)."""
        if self.config is None:
            raise DsoError("no network configured: run `dso devnet up` or `dso deploy` first")
        registry, store = connect()
        with self._lock:
            library = self._open()
            report = sync(registry, store, library, state_path=self.state_path, deploy_block=self.config.deploy_block, policy=policy)
            self._opened_for = None  # reread the checkpoint next time
            self._library = library
            a = report.aggregation
            return {"from_block": report.from_block, "to_block": report.to_block, "loaded": len(report.loaded),
                    "refused": report.invalid, "unavailable": report.unavailable, "accepted": a.accepted, "pending": a.pending,
                    "seconds": report.seconds}

    def close(self) -> None:
        """Close the library."""
        with self._lock:
            if self._library is not None:
                self._library.close()
                self._library = None

    # ------------------------------------------------------------------ internals

    def _open(self) -> Library:
        """The library, reopened if a sync (here or in another process) rewrote the checkpoint."""
        stamp = self.state_path.stat().st_mtime_ns if self.state_path.exists() else 0
        if self._library is not None and stamp == self._opened_for:
            return self._library
        if self._library is not None and stamp != self._opened_for and self._opened_for is not None:
            self._library.close()
            self._library = None
        if self._library is None:
            self._library = Library(self.library_path, self.embedder)
            self._ensure_index()
        self._state = SyncState.load(self.state_path, self.config.registry, self.config.deploy_block) if self.config and self.state_path.exists() else None
        self._opened_for = stamp
        return self._library

    def _ensure_index(self) -> None:
        """Load the library's search index now rather than on the first question (a search with a
        filter nothing matches loads it without embedding anything)."""
        if self._library is not None:
            self._library.search("", k=1, min_confidence=1.0, domain="dso-warmup-no-such-domain")

    def _hit_json(self, library: Library, hit: Hit, with_score: bool = True) -> dict[str, Any]:
        experience = hit.experience
        provenance = []
        for ref in library.provenance(experience.experience_id):
            record = self._state.batches.get(ref.batch_root.hex()) if self._state is not None else None
            provenance.append({"batch_root": "0x" + ref.batch_root.hex(), "leaf_index": ref.leaf_index, "node_id": ref.node_id,
                               "node": "0x" + ref.node.hex(), "cid": record.cid if record is not None else None})
        out: dict[str, Any] = {
            "id": experience.experience_id,
            "text": experience.text,
            "domain": hit.domain,
            "confidence": round(hit.confidence, 6),
            "support": hit.support,
            "origin": hit.origin,
        }
        if with_score:
            out["score"] = round(hit.score, 6)
        out["nodes"] = sorted({p["node"] for p in provenance})
        out["provenance"] = provenance
        return out


def _check_query(query: Any) -> str:
    if not isinstance(query, str) or not query.strip():
        raise LibraryError("query must be a non-empty text: the situation or question to find lessons for")
    if len(query) > MAX_QUERY_CHARS:
        raise LibraryError(f"query is {len(query)} characters; keep it under {MAX_QUERY_CHARS} (one question or situation)")
    return query.strip()


def _check_k(k: Any) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise LibraryError(f"k must be a whole number from 1 to {MAX_K}; got {k!r}")
