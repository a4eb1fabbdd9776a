"""The local agent memory: experiences in SQLite, retrieved top-k for a query.

Retrieval is two-stage. The compressed codes (what the network ships, ~1 bit per dimension) rank
every stored experience against the float query embedding; the best `rescore` candidates are then
re-ranked with float embeddings recomputed locally from their texts (cached in the database),
which restores the recall the 1-bit codes lose (bench/results/retrieval.json has the figures).
Filters (domain prefix, minimum confidence) apply before ranking.

Near-duplicates (cosine >= 0.9 between local float embeddings, a deterministic function of the
texts) are not stored twice: the existing entry gains a source instead, which is what the robust
aggregation later counts.

State lives in one SQLite file in WAL mode; every change is one transaction, so a crash leaves the
library as it was before or after the change, never in between.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from dso.embed import Embedder
from dso.errors import DsoError
from dso.experience import Experience, domain_matches, validate_domain

SCHEMA_VERSION = 1
NEAR_DUPLICATE_COSINE = 0.9
DEFAULT_RESCORE = 100

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS experiences (
    id TEXT PRIMARY KEY,
    canonical BLOB NOT NULL,
    text TEXT NOT NULL,
    domain TEXT NOT NULL,
    confidence REAL NOT NULL,
    model TEXT NOT NULL,
    codec TEXT NOT NULL,
    baseline BLOB NOT NULL,
    code BLOB NOT NULL,
    vector BLOB NOT NULL,
    added_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS experiences_domain ON experiences(domain);
CREATE TABLE IF NOT EXISTS sources (
    experience_id TEXT NOT NULL REFERENCES experiences(id) ON DELETE CASCADE,
    reported_id TEXT NOT NULL,
    batch_root BLOB NOT NULL,
    node_id INTEGER NOT NULL,
    PRIMARY KEY (experience_id, reported_id, batch_root)
);
CREATE INDEX IF NOT EXISTS sources_batch ON sources(batch_root);
"""


class LibraryError(DsoError):
    """The library file is unusable, or a query is malformed."""


@dataclass(frozen=True)
class Source:
    """Where a report of an experience came from: the batch (root) and the submitting node id."""

    batch_root: bytes
    node_id: int


@dataclass(frozen=True)
class AddOutcome:
    """What `add` did: `stored` a new entry, or attached the report to `existing` (same id, or a
    near-duplicate with cosine `similarity`)."""

    experience_id: str
    stored: bool
    existing: str | None = None
    similarity: float | None = None


@dataclass(frozen=True)
class Hit:
    """One retrieved experience: its similarity to the query and its support (distinct nodes)."""

    experience: Experience
    score: float
    support: int


class Library:
    """An agent's experience memory backed by one SQLite file."""

    def __init__(self, path: Path | str, embedder: Embedder, codecs: Any = None) -> None:
        """Open (or create) the library at `path`. `embedder` embeds queries and re-embeds texts
        for rescoring; `codecs` resolves (codec id, dim, baseline id) to a codec (default
        `dso.codec.codec_for`)."""
        self.path = Path(path)
        self.embedder = embedder
        if codecs is None:
            from dso.codec import codec_for

            codecs = codec_for
        self._codec_for = codecs
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            version = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise LibraryError(f"{self.path} is not a usable dso library: {exc}") from exc
        if version is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif version[0] != str(SCHEMA_VERSION):
            raise LibraryError(f"{self.path} has library schema {version[0]}; this dso reads {SCHEMA_VERSION}")
        self._index: _Index | None = None

    # ------------------------------------------------------------------ writing

    def add(self, experience: Experience, baseline: bytes, source: Source | None = None) -> AddOutcome:
        """Store `experience` unless it (or a near-duplicate) is already here; record `source`."""
        return self.add_many([experience], baseline, source)[0]

    def add_many(self, experiences: Sequence[Experience], baseline: bytes, source: Source | None = None) -> list[AddOutcome]:
        """Add several experiences in one transaction (all or nothing)."""
        if not experiences:
            return []
        index = self._load_index()
        # Experiences already stored (a sync rerun, a repeated report) need no embedding.
        unknown = [e for e in experiences if e.experience_id not in index.position]
        embedded = dict(zip((e.experience_id for e in unknown), self._local_vectors([e.text for e in unknown]))) if unknown else {}
        vectors = [embedded.get(e.experience_id) for e in experiences]
        outcomes: list[AddOutcome] = []
        new_rows: list[tuple[str, np.ndarray]] = []
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for experience, vector in zip(experiences, vectors):
                outcome = self._add_one(experience, baseline, vector, index, new_rows)
                if source is not None:
                    self._db.execute(
                        "INSERT OR IGNORE INTO sources VALUES (?, ?, ?, ?)",
                        (outcome.existing or outcome.experience_id, experience.experience_id, bytes(source.batch_root), source.node_id),
                    )
                outcomes.append(outcome)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            self._index = None  # rebuilt from the database on next use
            raise
        return outcomes

    def _add_one(self, experience: Experience, baseline: bytes, vector: np.ndarray | None, index: "_Index", new_rows: list[tuple[str, np.ndarray]]) -> AddOutcome:
        """`vector` is None only for an experience that was stored before this call began."""
        eid = experience.experience_id
        if eid in index.position:
            return AddOutcome(eid, stored=False, existing=eid, similarity=1.0)
        duplicate = index.nearest(vector, extra=new_rows)
        if duplicate is not None and duplicate[1] >= NEAR_DUPLICATE_COSINE:
            return AddOutcome(eid, stored=False, existing=duplicate[0], similarity=round(duplicate[1], 6))
        self._db.execute(
            "INSERT INTO experiences VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                eid,
                experience.canonical_bytes(),
                experience.text,
                experience.domain,
                experience.confidence,
                experience.model,
                experience.codec,
                bytes(baseline),
                experience.code,
                vector.astype(np.float16).tobytes(),
                int(time.time()),
            ),
        )
        index.append(eid, experience, bytes(baseline), vector)
        new_rows.append((eid, vector))
        return AddOutcome(eid, stored=True)

    def remove_batch(self, batch_root: bytes) -> int:
        """Forget reports from a revoked batch; drop experiences left with no source. Returns how
        many experiences were dropped."""
        root = bytes(batch_root)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            affected = [r[0] for r in self._db.execute("SELECT DISTINCT experience_id FROM sources WHERE batch_root = ?", (root,))]
            self._db.execute("DELETE FROM sources WHERE batch_root = ?", (root,))
            dropped = 0
            for eid in affected:
                if self._db.execute("SELECT 1 FROM sources WHERE experience_id = ?", (eid,)).fetchone() is None:
                    dropped += self._db.execute("DELETE FROM experiences WHERE id = ?", (eid,)).rowcount
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._index = None
        return dropped

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM experiences").fetchone()[0]

    def get(self, experience_id: str) -> Experience | None:
        """The stored experience with this id, if any."""
        row = self._db.execute("SELECT canonical FROM experiences WHERE id = ?", (experience_id,)).fetchone()
        return Experience.from_bytes(row[0]) if row else None

    def support(self, experience_id: str) -> int:
        """Number of distinct nodes that reported this experience (or a near-duplicate of it)."""
        return self._db.execute("SELECT COUNT(DISTINCT node_id) FROM sources WHERE experience_id = ?", (experience_id,)).fetchone()[0]

    def search(
        self,
        query: str,
        k: int = 5,
        domain: str | None = None,
        min_confidence: float = 0.0,
        rescore: int = DEFAULT_RESCORE,
    ) -> list[Hit]:
        """Top-k experiences for `query`: codes rank all matches of the filters, the best
        `rescore` are re-ranked by local float embeddings (rescore=0 ranks by codes alone)."""
        if k < 1:
            raise LibraryError("k must be at least 1")
        if domain is not None:
            validate_domain(domain)
        index = self._load_index()
        mask = index.filter(domain, min_confidence)
        if not mask.any():
            return []
        query_vector = self.embedder.embed([query])[0]
        candidates = np.flatnonzero(mask)
        code_scores = index.code_scores(query_vector, candidates, self._codec_for)
        depth = max(k, rescore) if rescore else k
        order = np.argsort(-code_scores, kind="stable")[:depth]
        chosen = candidates[order]
        scores = code_scores[order]
        if rescore:
            scores = index.vectors[chosen].astype(np.float32) @ query_vector
            reorder = np.argsort(-scores, kind="stable")
            chosen, scores = chosen[reorder], scores[reorder]
        return [Hit(self._experience_at(index, i), float(s), self.support(index.ids[i])) for i, s in zip(chosen[:k], scores[:k])]

    def context_for(self, query: str, k: int = 5, domain: str | None = None, min_confidence: float = 0.0) -> str:
        """A prompt block with the top-k experiences, ready to prepend to any LLM prompt."""
        hits = self.search(query, k=k, domain=domain, min_confidence=min_confidence)
        if not hits:
            return ""
        lines = ["Relevant experiences from the dso library (verified on-chain; use them if they apply):"]
        for n, hit in enumerate(hits, 1):
            e = hit.experience
            lines.append(f"{n}. [{e.domain}, confidence {e.confidence:.2f}, {hit.support} node(s)] {e.text}")
        return "\n".join(lines)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _local_vectors(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.embedder.embed(list(texts)), dtype=np.float32)

    def _experience_at(self, index: "_Index", i: int) -> Experience:
        row = self._db.execute("SELECT canonical FROM experiences WHERE id = ?", (index.ids[i],)).fetchone()
        return Experience.from_bytes(row[0])

    def _load_index(self) -> "_Index":
        if self._index is None:
            rows = self._db.execute("SELECT id, domain, confidence, codec, baseline, code, vector FROM experiences ORDER BY rowid").fetchall()
            self._index = _Index.from_rows(rows, self.embedder.dim)
        return self._index


class _Index:
    """In-memory arrays over the stored experiences, in insertion order; codes are kept as one
    uint8 matrix per (codec, baseline) so that scoring is a single vectorised call per codec."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.ids: list[str] = []
        self.position: dict[str, int] = {}
        self.domains: list[str] = []
        self.confidences: list[float] = []
        self.group_keys: list[tuple[str, bytes]] = []
        self._group_of: list[int] = []
        self._local_of: list[int] = []
        self._group_codes: list[list[bytes]] = []
        self._vectors: list[np.ndarray] = []
        self._cache: dict[str, Any] = {}

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[Any, ...]], dim: int) -> "_Index":
        index = cls(dim)
        for eid, domain, confidence, codec, baseline, code, vector in rows:
            index._push(eid, domain, confidence, (codec, bytes(baseline)), bytes(code), np.frombuffer(vector, dtype=np.float16))
        return index

    def _push(self, eid: str, domain: str, confidence: float, codec_key: tuple[str, bytes], code: bytes, vector: np.ndarray) -> None:
        if codec_key not in self.group_keys:
            self.group_keys.append(codec_key)
            self._group_codes.append([])
        group = self.group_keys.index(codec_key)
        self.position[eid] = len(self.ids)
        self.ids.append(eid)
        self.domains.append(domain)
        self.confidences.append(confidence)
        self._group_of.append(group)
        self._local_of.append(len(self._group_codes[group]))
        self._group_codes[group].append(code)
        self._vectors.append(vector.astype(np.float16))
        self._cache.clear()

    def append(self, eid: str, experience: Experience, baseline: bytes, vector: np.ndarray) -> None:
        self._push(eid, experience.domain, experience.confidence, (experience.codec, baseline), experience.code, vector)

    def _cached(self, name: str, build: Any) -> Any:
        if name not in self._cache:
            self._cache[name] = build()
        return self._cache[name]

    @property
    def vectors(self) -> np.ndarray:
        return self._cached("vectors", lambda: np.vstack(self._vectors) if self._vectors else np.zeros((0, self.dim), np.float16))

    def _code_matrix(self, group: int) -> np.ndarray:
        codes = self._group_codes[group]
        return self._cached(f"codes{group}", lambda: np.frombuffer(b"".join(codes), dtype=np.uint8).reshape(len(codes), -1))

    def nearest(self, vector: np.ndarray, extra: Sequence[tuple[str, np.ndarray]] = ()) -> tuple[str, float] | None:
        """The most similar stored (or just-added) experience by local float cosine."""
        best: tuple[str, float] | None = None
        if self.ids:
            sims = self.vectors.astype(np.float32) @ vector
            i = int(np.argmax(sims))
            best = (self.ids[i], float(sims[i]))
        for eid, other in extra:
            sim = float(other @ vector)
            if best is None or sim > best[1]:
                best = (eid, sim)
        return best

    def filter(self, domain: str | None, min_confidence: float) -> np.ndarray:
        confidences = self._cached("confidences", lambda: np.asarray(self.confidences, dtype=np.float64))
        mask = confidences >= min_confidence
        if domain is not None:
            mask &= np.fromiter((domain_matches(d, domain) for d in self.domains), dtype=bool, count=len(self.domains))
        return mask

    def code_scores(self, query: np.ndarray, candidates: np.ndarray, codec_for: Any) -> np.ndarray:
        """Asymmetric code scores of `candidates`, one vectorised call per codec group."""
        group_of = self._cached("group_of", lambda: np.asarray(self._group_of, dtype=np.int32))
        local_of = self._cached("local_of", lambda: np.asarray(self._local_of, dtype=np.int64))
        scores = np.empty(len(candidates), dtype=np.float32)
        candidate_groups = group_of[candidates]
        for group, (codec_id, baseline) in enumerate(self.group_keys):
            members = np.flatnonzero(candidate_groups == group)
            if members.size:
                codec = codec_for(codec_id, self.dim, baseline)
                scores[members] = codec.score(query, self._code_matrix(group)[local_of[candidates[members]]])
        return scores


def export_json(hits: Sequence[Hit]) -> str:
    """Hits as JSON for programs (`dso query --format json`)."""
    return json.dumps([{**hit.experience.to_json(), "score": round(hit.score, 6), "support": hit.support} for hit in hits], indent=2)
