"""The local agent memory: experiences in SQLite, a search index on disk, retrieved top-k.

Two kinds of entries live here:

- **network** entries, the global library. Sync stores every verified report (one experience as
  one node published it in one accepted batch, keyed by batch root and leaf index) in `reports`,
  without embedding anything; `aggregate` then turns the reports of admitted nodes into entries
  (`dso.workflows.aggregation`: clusters found from the codes alone, one voice per node, robust
  statistics, the acceptance policy), recomputing only what new or removed reports touched. The
  library is therefore a pure function of (verified reports, admitted nodes, policy): loading a
  batch twice, or syncing in another order, gives the same entries.
- **local** entries, the agent's own (`add`/`add_many`): always visible, never aggregated or
  revoked.

Retrieval (`dso.workflows.index.SearchIndex`, memory-mapped arrays next to the SQLite file):
Hamming prefilter over the codes' sign bits, the asymmetric cosine of the float query against the
codes, then the best `rescore` re-ranked by local float embeddings of their texts. Those
embeddings are not computed during sync: `index_texts` (run by `dso sync` after verifying, or by
`dso index`) embeds them incrementally, in chunks, resumably. Until then an entry is found by its
code; a `Hit` says whether only its code ranked it.

State lives in one SQLite file in WAL mode; every change is one transaction, so a crash leaves the
library as it was before or after the change, never in between. The index follows each committed
change; a crash between the two leaves an index whose generation is stale, which is rebuilt from
SQLite on the next open.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

import numpy as np

from dso.core.aggregate import NEAR_DUPLICATE_COSINE, AcceptancePolicy
from dso.core.experience import Experience, domain_matches, text_hash, validate_domain
from dso.core.models import Embedder
from dso.errors import LibraryError
from dso.workflows.aggregation import AggregationSummary, Aggregator, policy_key, structure_key
from dso.workflows.codespace import CodeSpace
from dso.workflows.index import IndexRow, SearchIndex, open_index

SCHEMA_VERSION = 3
# The node id of the agent's own (local) entries: they carry no node; `dso submit` signs what it publishes.
LOCAL_NODE = bytes(20)
DEFAULT_RESCORE = 100
INDEX_CHUNK = 256  # texts embedded per indexer step (one transaction each)
# A report's sign bits further than this from the client's own coding of its text are not its
# text's code. Honest codes of one text differ by 0 bits (same model) and at most 12 between the
# float and int8 builds of MiniLM (measured); a code copied from another text differs by ~190.
FORGED_HAMMING = 48
REBUILD_DEAD_FRACTION = 0.25

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY,
    batch_root BLOB NOT NULL,
    leaf_index INTEGER NOT NULL,
    batch_position INTEGER NOT NULL,
    experience_id TEXT NOT NULL,
    node_id INTEGER NOT NULL,
    text_hash BLOB NOT NULL,
    text TEXT NOT NULL,
    domain TEXT NOT NULL,
    confidence REAL NOT NULL,
    code BLOB,
    forged INTEGER NOT NULL DEFAULT 0,
    canonical BLOB NOT NULL,
    baseline BLOB NOT NULL,
    UNIQUE (batch_root, leaf_index)
);
CREATE INDEX IF NOT EXISTS reports_text ON reports(text_hash);
CREATE INDEX IF NOT EXISTS reports_node ON reports(node_id);
CREATE INDEX IF NOT EXISTS reports_experience ON reports(experience_id);
CREATE TABLE IF NOT EXISTS groups (text_hash BLOB PRIMARY KEY, code BLOB, component INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS groups_component ON groups(component);
CREATE TABLE IF NOT EXISTS edges (a BLOB NOT NULL, b BLOB NOT NULL, PRIMARY KEY (a, b)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS edges_b ON edges(b);
CREATE TABLE IF NOT EXISTS dirty (text_hash BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vectors (text_hash BLOB PRIMARY KEY, vector BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS model_vectors (model TEXT NOT NULL, text_hash BLOB NOT NULL, vector BLOB NOT NULL,
                                          PRIMARY KEY (model, text_hash)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS experiences (
    id TEXT PRIMARY KEY,
    origin TEXT NOT NULL CHECK (origin IN ('local', 'network')),
    accepted INTEGER NOT NULL,
    canonical BLOB NOT NULL,
    text TEXT NOT NULL,
    domain TEXT NOT NULL,
    confidence REAL NOT NULL,
    codec TEXT NOT NULL,
    baseline BLOB NOT NULL,
    code BLOB NOT NULL,
    text_hash BLOB NOT NULL,
    support INTEGER NOT NULL,
    node_ids TEXT NOT NULL,
    reason TEXT,
    added_at INTEGER NOT NULL,
    component INTEGER,
    index_row INTEGER
);
CREATE INDEX IF NOT EXISTS experiences_visible ON experiences(accepted);
CREATE INDEX IF NOT EXISTS experiences_component ON experiences(component);
CREATE INDEX IF NOT EXISTS experiences_text ON experiences(text_hash);
CREATE TABLE IF NOT EXISTS entry_reports (entry_id TEXT NOT NULL, experience_id TEXT NOT NULL, PRIMARY KEY (entry_id, experience_id)) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Source:
    """Where a batch of reports came from: the batch (root), the submitting node's id, when known
    its address (20 bytes; every report must then carry it as its node), and its position on the
    chain (the order in which a node's reports count against the per-node cap)."""

    batch_root: bytes
    node_id: int
    node: bytes | None = None
    position: int = 0


@dataclass(frozen=True)
class AddOutcome:
    """What a local `add` did: `stored` a new entry, or found it already here (`existing`: the same
    id, or a near-duplicate with cosine `similarity`)."""

    experience_id: str
    stored: bool
    existing: str | None = None
    similarity: float | None = None


@dataclass(frozen=True)
class Hit:
    """One retrieved entry: the experience as published (for a network entry, the report whose text
    is the cluster's medoid), its similarity to the query, and the consensus the network reached:
    `domain` and `confidence` (weighted median over node voices) and `support` (distinct admitted
    nodes; 0 for a local entry). `by_code_only`: no local embedding of its text existed yet, so
    its 1-bit code alone ranked it (`dso index` computes them)."""

    experience: Experience
    score: float
    support: int
    domain: str
    confidence: float
    origin: str = "network"
    by_code_only: bool = False


@dataclass(frozen=True)
class ReportRef:
    """One verified report behind a network entry: leaf `leaf_index` of batch `batch_root`,
    published by node `node_id` from address `node` (20 bytes)."""

    batch_root: bytes
    leaf_index: int
    node_id: int
    node: bytes
    experience_id: str


@dataclass(frozen=True)
class PendingEntry:
    """A cluster of reports the acceptance policy has not (yet) let in, and why."""

    experience_id: str
    text: str
    support: int
    confidence: float
    reason: str


@dataclass(frozen=True)
class IndexProgress:
    """What `index_texts` did: texts embedded now, those still without an embedding, seconds."""

    embedded: int
    remaining: int
    seconds: float
    forged: int = 0  # reports whose code was found not to be their text's

    @property
    def texts_per_second(self) -> float:
        return round(self.embedded / self.seconds, 1) if self.seconds else 0.0


@dataclass(frozen=True)
class LibraryStatus:
    """Counts an operator wants at a glance (`dso status`)."""

    entries: int
    local: int
    pending: int
    reports: int
    unindexed: int
    index_rows: int
    last_aggregation: dict[str, Any] | None


class Library:
    """An agent's experience memory: one SQLite file and its search index directory."""

    def __init__(self, path: Path | str, embedder: Embedder, codecs: Any = None) -> None:
        """Open (or create) the library at `path`. `embedder` embeds queries and, in the indexer,
        texts for rescoring; `codecs` is accepted for compatibility and unused (codes are searched
        in the library's own code space, `dso.workflows.codespace`)."""
        self.path = Path(path)
        self.embedder = embedder
        self.space = CodeSpace.of(embedder.model_id, embedder.dim)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone() if self._has_meta() else None
            if version is not None and version[0] != str(SCHEMA_VERSION):
                raise LibraryError(
                    f"{self.path} has library schema {version[0]}; this dso reads {SCHEMA_VERSION}. "
                    "Move it aside and run `dso sync` to rebuild it from the chain (delete sync.json too)"
                )
            self._db.executescript(_SCHEMA)
            if version is None:
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as exc:
            raise LibraryError(f"{self.path} is not a usable dso library: {exc}") from exc
        self._index: SearchIndex | None = None

    @property
    def index_path(self) -> Path:
        """The search index directory: next to the SQLite file."""
        return self.path.with_name(self.path.name + ".index")

    def _has_meta(self) -> bool:
        return self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is not None

    # ------------------------------------------------------------------ local entries

    def add(self, experience: Experience, baseline: bytes) -> AddOutcome:
        """Store one of the agent's own experiences unless it (or a near-duplicate) is here."""
        return self.add_many([experience], baseline)[0]

    def add_many(self, experiences: Sequence[Experience], baseline: bytes) -> list[AddOutcome]:
        """Store the agent's own experiences in one transaction (all or nothing). A local entry is
        visible at once and never aggregated, counted as support, or revoked. A near-duplicate
        (local float cosine >= NEAR_DUPLICATE_COSINE with any visible entry) is not stored twice."""
        if not experiences:
            return []
        vectors = dict(zip((text_hash(e.text) for e in experiences), self.embedder.embed([e.text for e in experiences])))
        outcomes: list[AddOutcome] = []
        rows: list[tuple[Experience, np.ndarray]] = []
        for experience in experiences:
            eid = experience.experience_id
            if self._db.execute("SELECT 1 FROM experiences WHERE id = ?", (eid,)).fetchone() or any(e.experience_id == eid for e, _ in rows):
                outcomes.append(AddOutcome(eid, stored=False, existing=eid, similarity=1.0))
                continue
            vector = vectors[text_hash(experience.text)]
            duplicate = self._nearest(vector, rows)
            if duplicate is not None and duplicate[1] >= NEAR_DUPLICATE_COSINE:
                outcomes.append(AddOutcome(eid, stored=False, existing=duplicate[0], similarity=round(duplicate[1], 6)))
                continue
            rows.append((experience, vector))
            outcomes.append(AddOutcome(eid, stored=True))
        now = int(time.time())
        with self._changing_entries() as change:
            self._store_vectors({text_hash(e.text): v for e, v in rows})
            for experience, vector in rows:
                codec, code, code_baseline = experience.codec, experience.code, bytes(baseline)
                if not self.space.in_space(codec, code_baseline) and self.space.codec is not None:
                    codec, code, code_baseline = "bitdelta-1", self.space.code_from_vector(vector), self.space.baseline
                self._db.execute(
                    "INSERT INTO experiences (id, origin, accepted, canonical, text, domain, confidence, codec, baseline, code, text_hash, "
                    "support, node_ids, reason, added_at) VALUES (?, 'local', 1, ?, ?, ?, ?, ?, ?, ?, ?, 0, '[]', NULL, ?)",
                    (experience.experience_id, experience.canonical_bytes(), experience.text, experience.domain, experience.confidence,
                     codec, code_baseline, code, text_hash(experience.text), now))
                change.added.append(experience.experience_id)
        return outcomes

    def _nearest(self, vector: np.ndarray, pending: Sequence[tuple[Experience, np.ndarray]]) -> tuple[str, float] | None:
        """The most similar visible entry (or entry being added) by local float cosine. The index
        proposes candidates by code; their texts' float embeddings (cached, or computed now for
        the few that lack one) decide."""
        best: tuple[str, float] | None = None
        candidates = self.search("", k=10, rescore=0, query_vector=vector) if len(self) else []
        if candidates:
            texts = [c.experience.text for c in candidates]
            floats = self._vectors(texts)
            for hit in candidates:
                score = float(floats[text_hash(hit.experience.text)] @ vector)
                if best is None or score > best[1]:
                    best = (hit.experience.experience_id, score)
        for experience, other in pending:
            score = float(other @ vector)
            if best is None or score > best[1]:
                best = (experience.experience_id, score)
        return best

    # ------------------------------------------------------------------ network reports

    def add_reports(self, experiences: Sequence[Experience], baseline: bytes, source: Source, leaf_indices: Sequence[int] | None = None) -> int:
        """Store the verified reports of one batch (leaf i = experiences[i] unless `leaf_indices`
        says otherwise) in one transaction; returns how many were new. Nothing is embedded; the
        reports become visible at the next `aggregate`."""
        indices = list(range(len(experiences))) if leaf_indices is None else list(leaf_indices)
        if len(indices) != len(experiences):
            raise LibraryError("leaf_indices must give one index per experience")
        root = bytes(source.batch_root)
        if source.node is not None:
            foreign = [e for e in experiences if e.node != bytes(source.node)]
            if foreign:
                raise LibraryError(f"batch {root.hex()[:16]} was committed by node {source.node_id} (0x{bytes(source.node).hex()}) but "
                                   f"{len(foreign)} of its reports name node 0x{foreign[0].node.hex()}: refused, nothing stored")
        known = {row[0] for row in self._db.execute("SELECT leaf_index FROM reports WHERE batch_root = ?", (root,))}
        fresh = [(i, e) for i, e in zip(indices, experiences) if i not in known]
        if not fresh:
            return 0
        rows = []
        for i, e in fresh:
            votes = self.space.votes(e, baseline)
            rows.append((root, i, int(source.position), e.experience_id, source.node_id, text_hash(e.text), e.text, e.domain, e.confidence,
                         e.code if votes else None, e.canonical_bytes(), bytes(baseline)))
        with self._transaction():
            self._db.executemany("INSERT INTO reports (batch_root, leaf_index, batch_position, experience_id, node_id, text_hash, text, domain, "
                                 "confidence, code, canonical, baseline) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.executemany("INSERT OR IGNORE INTO dirty VALUES (?)", [(r[5],) for r in rows])
            self._bump("reports_version")
        return len(fresh)

    def remove_batch(self, batch_root: bytes) -> int:
        """Forget every report of a revoked batch; returns how many were removed. Entries change
        at the next `aggregate`."""
        return self._remove("batch_root = ?", (bytes(batch_root),))

    def remove_report(self, batch_root: bytes, leaf_index: int) -> int:
        """Forget one report (an experience the DAO revoked by leaf challenge); returns 0 or 1."""
        return self._remove("batch_root = ? AND leaf_index = ?", (bytes(batch_root), int(leaf_index)))

    def _remove(self, where: str, args: tuple[Any, ...]) -> int:
        with self._transaction():
            self._db.execute(f"INSERT OR IGNORE INTO dirty SELECT text_hash FROM reports WHERE {where}", args)
            removed = self._db.execute(f"DELETE FROM reports WHERE {where}", args).rowcount
            if removed:
                self._bump("reports_version")
        return removed

    def report_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM reports").fetchone()[0]

    def aggregate(self, admitted_node_ids: Collection[int], policy: AcceptancePolicy | None = None, force: bool = False,
                  node_weights: Mapping[int, float] | None = None) -> AggregationSummary:
        """Bring the network entries up to date with the stored reports, the admitted nodes and the
        policy (see dso.workflows.aggregation: only what changed is recomputed; `force` rebuilds
        everything). Skipped (`unchanged=True`) when nothing it depends on changed. One
        transaction: readers see the old entries or the new ones."""
        policy = policy or AcceptancePolicy()
        admitted = sorted({int(n) for n in admitted_node_ids})
        fingerprint = json.dumps({"reports": self._meta("reports_version", "0"), "structure": structure_key(admitted),
                                  "policy": policy_key(policy), "weights": sorted((int(k), float(v)) for k, v in (node_weights or {}).items())})
        raw = self._meta("aggregation")
        last = json.loads(raw) if raw else None
        if not force and last is not None and last["fingerprint"] == fingerprint:
            return AggregationSummary(**last["summary"], unchanged=True)
        with self._changing_entries() as change:
            aggregator = Aggregator(self._db, self.space, self.embedder.dim, admitted)
            summary, done = aggregator.run(policy, node_weights, None if force else last, int(time.time()))
            change.removed_rows += done.removed_rows
            change.added += done.added
            self._set_meta("aggregation", json.dumps({
                "fingerprint": fingerprint, "summary": summary.to_json(), **aggregator.keys, "admitted": admitted,
                "policy": policy_key(policy), "weights": sorted((int(k), float(v)) for k, v in node_weights.items()) if node_weights else None}))
        return summary

    # ------------------------------------------------------------------ the indexer

    def index_texts(self, limit: int | None = None, progress: Callable[[int, int], None] | None = None) -> IndexProgress:
        """Embed texts that have no local embedding yet, INDEX_CHUNK at a time (each chunk
        committed on its own: stop at any point and the next run resumes). Visible entries' texts
        come first: search rescores with them, and an entry whose published code this client cannot
        search (another model, codec or baseline) gets a code made from its embedding. Then every
        reported text, to check each report's code against the client's own coding of its text: a
        node that publishes a text with a code that is not its own (to pull the text into another
        lesson's cluster) has that report left out of aggregation, which then reruns with the last
        parameters. `limit` caps the texts embedded in this call."""
        started = time.monotonic()
        embedded = forged = 0
        while limit is None or embedded < limit:
            size = INDEX_CHUNK if limit is None else min(INDEX_CHUNK, limit - embedded)
            rows = self._unembedded(size)
            if not rows:
                break
            vectors = dict(zip((bytes(h) for h, _ in rows), np.asarray(self.embedder.embed([r[1] for r in rows]), dtype=np.float32)))
            with self._changing_entries() as change:
                self._store_vectors(vectors)
                self._code_unsearchable(vectors, change)
                forged += self._check_codes(vectors)
                change.vectors.update(vectors)
            embedded += len(rows)
            if progress:
                progress(embedded, embedded + self.unindexed())
        if forged:
            self._aggregate_again()
        return IndexProgress(embedded, self.unindexed(), round(time.monotonic() - started, 3), forged)

    def _unembedded(self, size: int) -> list[tuple[bytes, str]]:
        """Up to `size` texts without an embedding: visible entries' first, then reported ones."""
        rows = self._db.execute("SELECT DISTINCT e.text_hash, e.text FROM experiences e LEFT JOIN vectors v ON v.text_hash = e.text_hash "
                                "WHERE e.accepted = 1 AND v.text_hash IS NULL LIMIT ?", (size,)).fetchall()
        if len(rows) < size and self.space.codec is not None:
            rows += self._db.execute("SELECT r.text_hash, MIN(r.text) FROM reports r LEFT JOIN vectors v ON v.text_hash = r.text_hash "
                                     "WHERE v.text_hash IS NULL AND r.code IS NOT NULL GROUP BY r.text_hash LIMIT ?", (size - len(rows),)).fetchall()
        return list({bytes(h): (bytes(h), t) for h, t in rows}.values())

    def _check_codes(self, vectors: dict[bytes, np.ndarray]) -> int:
        """Flag reports whose code is not the client's coding of their text (sign bits further
        apart than FORGED_HAMMING) and mark their groups for re-aggregation; return how many."""
        if self.space.codec is None:
            return 0
        own = {h: self.space.code_from_vector(v) for h, v in vectors.items()}
        body = self.space.codec.dim // 8
        flagged = []
        for chunk in _chunks(list(vectors)):
            for report_id, th, code in self._db.execute(
                    f"SELECT id, text_hash, code FROM reports WHERE code IS NOT NULL AND forged = 0 AND text_hash IN ({','.join('?' * len(chunk))})", chunk):
                mine = np.frombuffer(own[bytes(th)][:body], dtype=np.uint8)
                theirs = np.frombuffer(bytes(code)[:body], dtype=np.uint8)
                if int(np.unpackbits(mine ^ theirs).sum()) > FORGED_HAMMING:
                    flagged.append((report_id, bytes(th)))
        self._db.executemany("UPDATE reports SET forged = 1 WHERE id = ?", [(r,) for r, _ in flagged])
        self._db.executemany("INSERT OR IGNORE INTO dirty VALUES (?)", [(h,) for _, h in flagged])
        if flagged:
            self._bump("reports_version")
        return len(flagged)

    def _aggregate_again(self) -> None:
        """Aggregate with the admitted set, policy and weights of the last run (reports changed)."""
        raw = self._meta("aggregation")
        if raw is None:
            return
        last = json.loads(raw)
        weights = {int(k): float(v) for k, v in last["weights"]} if last.get("weights") else None
        self.aggregate(last["admitted"], AcceptancePolicy(*last["policy"]), node_weights=weights)

    def _code_unsearchable(self, vectors: dict[bytes, np.ndarray], change: "_EntryChange") -> None:
        """Give entries whose code is not in this library's space a code made from their text's
        local embedding (they leave and re-enter the index)."""
        if self.space.codec is None:
            return
        for chunk in _chunks(list(vectors)):
            rows = self._db.execute(f"SELECT id, text_hash, codec, baseline, index_row FROM experiences WHERE text_hash IN ({','.join('?' * len(chunk))})",
                                    chunk).fetchall()
            for entry_id, th, codec, baseline, index_row in rows:
                if not self.space.in_space(codec, bytes(baseline)):
                    self._db.execute("UPDATE experiences SET codec = 'bitdelta-1', baseline = ?, code = ? WHERE id = ?",
                                     (self.space.baseline, self.space.code_from_vector(vectors[bytes(th)]), entry_id))
                    if index_row is not None:
                        change.removed_rows.append(index_row)
                    change.added.append(entry_id)

    # ------------------------------------------------------------------ another model's space

    def index_texts_for(self, model: Embedder, limit: int | None = None, progress: Callable[[int, int], None] | None = None) -> IndexProgress:
        """Embed the visible entries' texts with `model`, another agent's embedding model (e.g.
        ``load_query_model("e5-small")``), so that `search_in(model, ...)` ranks the library in
        that model's own space: exact for that model, where a query mapped into MiniLM's space by
        an alignment is not. INDEX_CHUNK texts per transaction: stop at any point, the next run
        resumes. Entries that arrive later need another run (`unindexed_for`)."""
        started = time.monotonic()
        embedded = 0
        while limit is None or embedded < limit:
            size = INDEX_CHUNK if limit is None else min(INDEX_CHUNK, limit - embedded)
            rows = self._unembedded_for(model.model_id, size)
            if not rows:
                break
            # documents in the model's document role where it has one (e5: "passage: "), queries as queries
            embed_documents = getattr(model, "embed_passages", model.embed)
            vectors = _checked_vectors(embed_documents([text for _, text in rows]), len(rows), model)
            with self._transaction():
                self._db.executemany("INSERT OR REPLACE INTO model_vectors VALUES (?, ?, ?)",
                                     [(model.model_id, h, v.astype("<f2").tobytes()) for (h, _), v in zip(rows, vectors)])
            embedded += len(rows)
            if progress:
                progress(embedded, embedded + self.unindexed_for(model.model_id))
        return IndexProgress(embedded, self.unindexed_for(model.model_id), round(time.monotonic() - started, 3))

    def _unembedded_for(self, model_id: str, size: int) -> list[tuple[bytes, str]]:
        rows = self._db.execute("SELECT DISTINCT e.text_hash, e.text FROM experiences e LEFT JOIN model_vectors v ON v.model = ? AND "
                                "v.text_hash = e.text_hash WHERE e.accepted = 1 AND v.text_hash IS NULL LIMIT ?", (model_id, size)).fetchall()
        return list({bytes(h): (bytes(h), t) for h, t in rows}.values())

    def unindexed_for(self, model_id: str) -> int:
        """Visible entries' texts not yet embedded with the model `model_id`."""
        return self._db.execute("SELECT COUNT(DISTINCT e.text_hash) FROM experiences e LEFT JOIN model_vectors v ON v.model = ? AND "
                                "v.text_hash = e.text_hash WHERE e.accepted = 1 AND v.text_hash IS NULL", (model_id,)).fetchone()[0]

    def indexed_for(self, model_id: str) -> int:
        """Texts embedded with the model `model_id` (0: `index_texts_for` never ran for it)."""
        return self._db.execute("SELECT COUNT(*) FROM model_vectors WHERE model = ?", (model_id,)).fetchone()[0]

    def search_in(self, model: Embedder, query: str, k: int = 5, domain: str | None = None, min_confidence: float = 0.0) -> tuple[list[Hit], int]:
        """Top-k visible entries for `query` by exact cosine in `model`'s own space, over the texts
        `index_texts_for(model)` embedded; also returns how many visible entries it could not rank
        (not embedded with `model` yet). Every entry that passes the filters is scored: the cost is
        one matrix product over them (the vectors are read from SQLite at each call)."""
        _check_filters(k, domain, min_confidence)
        rows = [r for r in self._db.execute(
            "SELECT e.id, e.domain, v.vector FROM experiences e LEFT JOIN model_vectors v ON v.model = ? AND v.text_hash = e.text_hash "
            "WHERE e.accepted = 1 AND e.confidence >= ? ORDER BY e.id", (model.model_id, float(min_confidence)))
            if domain is None or domain_matches(r[1], domain)]
        ranked = [(entry_id, vector) for entry_id, _, vector in rows if vector is not None]
        missing = len(rows) - len(ranked)
        if not ranked:
            return [], missing
        matrix = np.frombuffer(b"".join(bytes(v) for _, v in ranked), dtype="<f2").reshape(len(ranked), -1).astype(np.float32)
        query_vector = _checked_vectors(model.embed([query]), 1, model)[0]
        if matrix.shape[1] != query_vector.shape[0]:
            raise LibraryError(f"the stored {model.model_id} vectors have {matrix.shape[1]} dimensions, the model gives {query_vector.shape[0]}")
        scores = matrix @ query_vector / np.maximum(np.linalg.norm(matrix, axis=1), 1e-12)
        top = np.lexsort((np.arange(len(scores)), -scores))[:k]  # ties: the lowest entry id
        candidates = [_ModelCandidate(ranked[i][0], float(scores[i])) for i in top]
        return self._hits(candidates), missing

    def unindexed(self) -> int:
        """Texts with no local embedding yet: visible entries' and reported ones (with a code to check)."""
        entries = self._db.execute("SELECT COUNT(DISTINCT e.text_hash) FROM experiences e LEFT JOIN vectors v ON v.text_hash = e.text_hash "
                                   "WHERE e.accepted = 1 AND v.text_hash IS NULL").fetchone()[0]
        reported = self._db.execute("SELECT COUNT(DISTINCT r.text_hash) FROM reports r LEFT JOIN vectors v ON v.text_hash = r.text_hash "
                                    "WHERE v.text_hash IS NULL AND r.code IS NOT NULL AND r.text_hash NOT IN "
                                    "(SELECT text_hash FROM experiences WHERE accepted = 1)").fetchone()[0] if self.space.codec is not None else 0
        return entries + reported

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        """Visible entries: accepted network entries plus local ones."""
        return self._db.execute("SELECT COUNT(*) FROM experiences WHERE accepted = 1").fetchone()[0]

    def get(self, experience_id: str) -> Experience | None:
        """The visible entry with this id (as published), if any."""
        row = self._db.execute("SELECT canonical FROM experiences WHERE id = ? AND accepted = 1", (experience_id,)).fetchone()
        return Experience.from_bytes(row[0]) if row else None

    def support(self, experience_id: str) -> int:
        """Distinct admitted nodes behind this entry (0 for a local or unknown one)."""
        row = self._db.execute("SELECT support FROM experiences WHERE id = ?", (experience_id,)).fetchone()
        return row[0] if row else 0

    def provenance(self, experience_id: str) -> list[ReportRef]:
        """The verified reports behind entry `experience_id`, one per (batch, leaf), from the nodes
        counted in its support; [] for a local or unknown entry. A batch's CID is in the sync
        checkpoint (`dso.workflows.sync.SyncState`) or its `BatchSubmitted` event."""
        row = self._db.execute("SELECT node_ids FROM experiences WHERE id = ? AND origin = 'network'", (experience_id,)).fetchone()
        if row is None:
            return []
        counted = set(json.loads(row[0]))
        rows = self._db.execute(
            "SELECT r.batch_root, r.leaf_index, r.node_id, r.canonical, r.experience_id FROM entry_reports m "
            "JOIN reports r ON r.experience_id = m.experience_id WHERE m.entry_id = ? ORDER BY r.node_id, r.batch_root, r.leaf_index",
            (experience_id,),
        )
        return [ReportRef(bytes(root), leaf, node_id, Experience.from_bytes(canonical).node, eid)
                for root, leaf, node_id, canonical, eid in rows if node_id in counted]

    def pending(self, limit: int = 100) -> list[PendingEntry]:
        """Clusters not accepted (yet), most supported first."""
        rows = self._db.execute(
            "SELECT id, text, support, confidence, reason FROM experiences WHERE accepted = 0 ORDER BY support DESC, id LIMIT ?", (limit,)
        )
        return [PendingEntry(*row) for row in rows]

    def status(self) -> LibraryStatus:
        """Entry, report and index counts, and the last aggregation's figures."""
        entries, local = self._db.execute("SELECT COUNT(*), COALESCE(SUM(origin = 'local'), 0) FROM experiences WHERE accepted = 1").fetchone()
        pending = self._db.execute("SELECT COUNT(*) FROM experiences WHERE accepted = 0").fetchone()[0]
        raw = self._meta("aggregation")
        return LibraryStatus(entries, local, pending, self.report_count(), self.unindexed(), self._search_index().rows,
                             json.loads(raw)["summary"] if raw else None)

    def search(
        self,
        query: str,
        k: int = 5,
        domain: str | None = None,
        min_confidence: float = 0.0,
        rescore: int = DEFAULT_RESCORE,
        query_vector: np.ndarray | None = None,
    ) -> list[Hit]:
        """Top-k entries for `query`: codes rank the entries that pass the filters (Hamming
        prefilter, then the asymmetric cosine), the best `rescore` are re-ranked by local float
        embeddings where the indexer has computed them (rescore=0 ranks by codes alone).

        `query_vector`, if given, is the query already in the library's space (another model's
        query mapped by `dso.core.align`, e.g. ``alignment.apply(model_b.embed([query]))[0]``); it is
        searched instead of embedding `query`, which then only names the query. It is normalized
        here; LibraryError unless it is a finite, non-zero 1-d vector of the library's dimension.
        """
        _check_filters(k, domain, min_confidence)
        if query_vector is not None:
            query_vector = self._check_query_vector(query_vector)
        index = self._search_index()
        if not index.rows:
            return []
        if query_vector is None:
            query_vector = np.asarray(self.embedder.embed([query])[0], dtype=np.float32)
        candidates = index.search(query_vector, k, domain, min_confidence, rescore)
        return self._hits(candidates)

    def _check_query_vector(self, query_vector: np.ndarray) -> np.ndarray:
        given = np.asarray(query_vector)
        if given.ndim != 1 or given.shape[0] != self.embedder.dim or given.dtype.kind not in "fiu":
            raise LibraryError(
                f"query_vector must be one real vector of {self.embedder.dim} values in the library's space; got shape "
                f"{given.shape} of {given.dtype}: map another model's query with dso.core.align (Alignment.apply) first"
            )
        given = given.astype(np.float64)
        norm = float(np.linalg.norm(given))  # NaN or inf if any value is
        if not np.isfinite(norm) or norm == 0:
            raise LibraryError("query_vector holds NaN/inf or is all zeros: it cannot be ranked by cosine similarity")
        return (given / norm).astype(np.float32)

    def _hits(self, candidates: Sequence[Any]) -> list[Hit]:
        if not candidates:
            return []
        ids = [c.entry_id for c in candidates]
        rows = {r[0]: r[1:] for r in self._db.execute(
            f"SELECT id, canonical, support, domain, confidence, origin FROM experiences WHERE id IN ({','.join('?' * len(ids))})", ids)}
        hits = []
        for c in candidates:
            if c.entry_id in rows:  # an entry replaced since the index was read is skipped, not shown stale
                canonical, support, domain, confidence, origin = rows[c.entry_id]
                hits.append(Hit(Experience.from_bytes(canonical), c.score, support, domain, confidence, origin, c.by_code_only))
        return hits

    def context_for(
        self, query: str, k: int = 5, domain: str | None = None, min_confidence: float = 0.0, query_vector: np.ndarray | None = None
    ) -> str:
        """A prompt block with the top-k experiences, ready to prepend to any LLM prompt
        (`query_vector` as in `search`)."""
        return context_block(self.search(query, k=k, domain=domain, min_confidence=min_confidence, query_vector=query_vector))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the search index

    def _search_index(self) -> SearchIndex:
        """The index, opened once; followed when another process changed it; rebuilt from SQLite
        when it does not reflect the committed entries (a crash between the two, or no index yet)."""
        index = self._search_index_for_update()
        if index is None:
            raise LibraryError(f"no codec baseline is published for {self.embedder.model_id}: this library cannot be searched")
        index.refresh()
        generation = int(self._meta("entries_version", "0"))
        if index.generation != generation or index.dead_fraction() > REBUILD_DEAD_FRACTION:
            self._rebuild_index(index)
        return index

    def _rebuild_index(self, index: SearchIndex) -> None:
        """Write every visible, searchable entry into a fresh index data directory. Locks in the
        order every writer takes them: the library's SQLite write lock, then the index's; the
        entries' row numbers commit before the manifest names the new data, so a reader that
        follows the manifest never finds rows the entries do not point at."""
        transaction = _Transaction(self)
        transaction.__enter__()
        try:
            with index.writing():
                generation = int(self._meta("entries_version", "0"))
                if index.generation == generation and index.dead_fraction() <= REBUILD_DEAD_FRACTION:
                    transaction.__exit__(None, None)
                    return  # another process rebuilt it meanwhile
                old = index.start_rebuild()
                rows, ids = [], []
                for row in self._db.execute(
                        "SELECT e.id, e.text_hash, e.code, e.confidence, e.support, e.domain, e.origin, e.codec, e.baseline, v.vector "
                        "FROM experiences e LEFT JOIN vectors v ON v.text_hash = e.text_hash WHERE e.accepted = 1 ORDER BY e.rowid"):
                    if self.space.in_space(row[7], bytes(row[8])):
                        rows.append(_index_row(row))
                        ids.append(row[0])
                numbers = index.append(rows)
                self._db.execute("UPDATE experiences SET index_row = NULL WHERE index_row IS NOT NULL")
                self._db.executemany("UPDATE experiences SET index_row = ? WHERE id = ?", list(zip(numbers, ids)))
                transaction.__exit__(None, None)
                index.commit(generation)
                index.drop_data(old)
        except BaseException as exc:
            if self._db.in_transaction:
                transaction.__exit__(type(exc), exc)
            index.discard()
            raise

    def _search_index_for_update(self) -> SearchIndex | None:
        """The index to keep in step with a change (None when this library cannot search codes)."""
        if self.space.codec is None:
            return None
        if self._index is None:
            self._index = open_index(self.index_path, self.space.codec)
        return self._index

    def _changing_entries(self) -> "_EntryChange":
        return _EntryChange(self)

    # ------------------------------------------------------------------ internals

    def _transaction(self) -> "_Transaction":
        return _Transaction(self)

    def _vectors(self, texts: Sequence[str]) -> dict[bytes, np.ndarray]:
        """Local float embeddings by text hash: cached ones read back, the rest embedded now (and
        not stored: the indexer owns the cache)."""
        wanted = {text_hash(t): t for t in texts}
        found: dict[bytes, np.ndarray] = {}
        for chunk in _chunks(list(wanted)):
            for key, blob in self._db.execute(f"SELECT text_hash, vector FROM vectors WHERE text_hash IN ({','.join('?' * len(chunk))})", chunk):
                found[bytes(key)] = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
        missing = [k for k in wanted if k not in found]
        if missing:
            found.update(zip(missing, np.asarray(self.embedder.embed([wanted[k] for k in missing]), dtype=np.float32)))
        return found

    def _store_vectors(self, vectors: dict[bytes, np.ndarray]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO vectors VALUES (?, ?)", [(k, np.asarray(v).astype(np.float16).tobytes()) for k, v in vectors.items()])

    def _meta(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _bump(self, key: str) -> int:
        value = int(self._meta(key, "0")) + 1
        self._set_meta(key, str(value))
        return value


def _check_filters(k: object, domain: str | None, min_confidence: object) -> None:
    """LibraryError unless k is a whole number >= 1, min_confidence a number in [0, 1] and the
    domain (if any) a valid domain."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise LibraryError(f"k must be a whole number of at least 1; got {k!r}")
    if isinstance(min_confidence, bool) or not isinstance(min_confidence, (int, float)) or not 0.0 <= min_confidence <= 1.0:
        # NaN fails both comparisons: without this check it filtered out everything, silently
        raise LibraryError(f"min_confidence must be a number in [0, 1]; got {min_confidence!r}")
    if domain is not None:
        validate_domain(domain)


def context_block(hits: Sequence[Hit]) -> str:
    """Hits as a prompt block to prepend to any LLM prompt ("" for none)."""
    if not hits:
        return ""
    lines = ["Relevant experiences from the dso library (verified on-chain; use them if they apply):"]
    for n, hit in enumerate(hits, 1):
        origin = f"{hit.support} node(s)" if hit.origin == "network" else "local"
        lines.append(f"{n}. [{hit.domain}, confidence {hit.confidence:.2f}, {origin}] {hit.experience.text}")
    return "\n".join(lines)


@dataclass(frozen=True)
class _ModelCandidate:
    """An entry ranked in another model's space (the shape `_hits` reads)."""

    entry_id: str
    score: float
    by_code_only: bool = False


def _checked_vectors(vectors: Any, count: int, model: Embedder) -> np.ndarray:
    """`count` finite, non-zero vectors from `model`, normalized, as float32 (LibraryError otherwise)."""
    array = np.asarray(vectors, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] != count:
        raise LibraryError(f"{model.model_id} returned vectors of shape {array.shape} for {count} texts")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise LibraryError(f"{model.model_id} returned a NaN, infinite or zero vector")
    return (array / norms).astype(np.float32)


def _index_row(row: tuple) -> IndexRow:
    entry_id, th, code, confidence, support, domain, origin, _, _, vector = row
    return IndexRow(entry_id, bytes(th), bytes(code), float(confidence), int(support), domain, origin == "local",
                    None if vector is None else np.frombuffer(vector, dtype=np.float16))


def _chunks(values: Sequence[Any], size: int = 500) -> list[Sequence[Any]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT; on any error ROLLBACK. A SQLite failure becomes LibraryError
    (nothing was changed)."""

    def __init__(self, library: Library) -> None:
        self.library = library

    def __enter__(self) -> None:
        self.library._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, *rest: object) -> None:
        library = self.library
        if kind is None:
            try:
                library._db.execute("COMMIT")
                return
            except sqlite3.Error as exc:
                kind, error = type(exc), exc
        try:
            library._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite already rolled the transaction back (e.g. on SQLITE_FULL)
        if isinstance(error, sqlite3.Error):
            raise LibraryError(f"could not write the library {library.path} ({error}); nothing was changed") from error


class _EntryChange:
    """A transaction that changes visible entries, then the search index to match.

    Inside: the caller records entry ids added and index rows retired (`added`, `removed_rows`) and
    text vectors computed (`vectors`). The new rows are appended to the index files (not yet
    counted) and their numbers stored with the entries; the entries version is bumped; SQLite
    commits. Then the retired rows are marked dead, vectors written, and the index manifest moves
    to the new generation. A crash before that last step leaves the generation behind, and the
    next search rebuilds the index from SQLite.
    """

    def __init__(self, library: Library) -> None:
        self.library = library
        self.added: list[str] = []
        self.removed_rows: list[int] = []
        self.vectors: dict[bytes, np.ndarray] = {}
        self._transaction = _Transaction(library)

    def __enter__(self) -> "_EntryChange":
        self._transaction.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, *rest: object) -> None:
        library = self.library
        if kind is not None:
            self._transaction.__exit__(kind, error, *rest)
            return
        index = library._search_index_for_update()
        if index is None:  # no usable index yet: the next search builds it from the committed entries
            library._bump("entries_version")
            self._transaction.__exit__(None, None)
            return
        with index.writing():
            stale = index.generation != int(library._meta("entries_version", "0"))
            try:
                if not stale:
                    self._append(index)
                generation = library._bump("entries_version")
                self._transaction.__exit__(None, None)
            except BaseException as exc:
                index.discard()
                self._transaction.__exit__(type(exc), exc)
                raise
            if stale:
                return  # the index was already behind: the next search rebuilds it
            index.retire(self.removed_rows)
            self._write_vectors(index)
            index.commit(generation)

    def _append(self, index: SearchIndex) -> list[int]:
        db = self.library._db
        rows, ids = [], []
        for chunk in _chunks(self.added):
            for row in db.execute(
                    "SELECT e.id, e.text_hash, e.code, e.confidence, e.support, e.domain, e.origin, e.codec, e.baseline, v.vector "
                    f"FROM experiences e LEFT JOIN vectors v ON v.text_hash = e.text_hash WHERE e.accepted = 1 AND e.id IN ({','.join('?' * len(chunk))})",
                    chunk):
                if self.library.space.in_space(row[7], bytes(row[8])):
                    rows.append(_index_row(row))
                    ids.append(row[0])
        numbers = index.append(rows)
        db.executemany("UPDATE experiences SET index_row = ? WHERE id = ?", list(zip(numbers, ids)))
        return numbers

    def _write_vectors(self, index: SearchIndex) -> None:
        """Vectors the indexer computed, written into every row of an entry with one of those texts."""
        rows: list[int] = []
        vectors: list[np.ndarray] = []
        for chunk in _chunks(list(self.vectors)):
            for row, th in self.library._db.execute(
                    f"SELECT index_row, text_hash FROM experiences WHERE index_row IS NOT NULL AND text_hash IN ({','.join('?' * len(chunk))})", chunk):
                rows.append(row)
                vectors.append(self.vectors[bytes(th)])
        if rows:
            index.set_vectors(rows, np.stack(vectors))


def export_json(hits: Sequence[Hit]) -> str:
    """Hits as JSON for programs (`dso query --format json`): the experience as published, with
    `domain` and `confidence` replaced by the network's consensus (the published values are kept
    as `published_domain` and `published_confidence`)."""
    out = []
    for hit in hits:
        published = hit.experience.to_json()
        out.append({**published, "published_domain": published["domain"], "published_confidence": published["confidence"],
                    "domain": hit.domain, "confidence": round(hit.confidence, 6), "score": round(hit.score, 6),
                    "support": hit.support, "origin": hit.origin, "ranked_by_code_only": hit.by_code_only})
    return json.dumps(out, indent=2)
