"""The local agent memory: experiences in SQLite, retrieved top-k for a query.

Two kinds of entries live here:

- **network** entries, the global library. Sync stores every verified report (one experience as
  one node published it in one accepted batch, keyed by batch root and leaf index) in `reports`;
  `aggregate` then runs `dso.core.aggregate` over all reports from currently admitted nodes (one voice
  per node, robust statistics, the acceptance policy) and replaces the network entries with its
  clusters. The library is therefore a pure function of (verified reports, admitted nodes,
  policy): loading a batch twice, or syncing in another order, gives the same entries.
- **local** entries, the agent's own (`add`/`add_many` without a source): always visible, never
  aggregated or revoked.

Retrieval is two-stage. The compressed codes (what the network ships, ~1 bit per dimension) rank
every visible entry against the float query embedding; the best `rescore` candidates are then
re-ranked with float embeddings recomputed locally from their texts (cached in `vectors`, one row
per distinct text), which restores the recall the 1-bit codes lose (bench/results/retrieval.json).
Filters (domain prefix, minimum confidence) apply before ranking, on the consensus values.

State lives in one SQLite file in WAL mode; every change is one transaction, so a crash leaves the
library as it was before or after the change, never in between. This module owns the storage; the
in-memory arrays searched are `dso.workflows.index.SearchIndex`, and which code an entry carries
is `dso.workflows.codespace`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

import numpy as np

from dso.core.aggregate import NEAR_DUPLICATE_COSINE, AcceptancePolicy, Report, aggregate
from dso.core.experience import Experience, validate_domain
from dso.edges.embed import Embedder
from dso.errors import LibraryError
from dso.workflows.codespace import CodeSpace
from dso.workflows.index import SearchIndex

SCHEMA_VERSION = 2
DEFAULT_RESCORE = 100
# Reports one node may contribute to an aggregation (its earliest ones count). Clustering costs
# O(G^2) in distinct texts, so without a bound one admitted node could make every client's sync
# quadratic by flooding near-duplicates; honest nodes publish far fewer experiences than this.
MAX_REPORTS_PER_NODE = 5_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (text_hash BLOB PRIMARY KEY, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS reports (
    batch_root BLOB NOT NULL,
    leaf_index INTEGER NOT NULL,
    experience_id TEXT NOT NULL,
    node_id INTEGER NOT NULL,
    canonical BLOB NOT NULL,
    baseline BLOB NOT NULL,
    text_hash BLOB NOT NULL REFERENCES vectors(text_hash),
    PRIMARY KEY (batch_root, leaf_index)
);
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
    text_hash BLOB NOT NULL REFERENCES vectors(text_hash),
    support INTEGER NOT NULL,
    node_ids TEXT NOT NULL,
    reason TEXT,
    added_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS experiences_visible ON experiences(accepted);
"""


@dataclass(frozen=True)
class Source:
    """Where a batch of reports came from: the batch (root), the submitting node's id and, when
    known, its address (20 bytes): every report must then carry that address as its node."""

    batch_root: bytes
    node_id: int
    node: bytes | None = None


@dataclass(frozen=True)
class AddOutcome:
    """What a local `add` did: `stored` a new entry, or found it already here (`existing`: the same
    id, or a near-duplicate with cosine `similarity`)."""

    experience_id: str
    stored: bool
    existing: str | None = None
    similarity: float | None = None


@dataclass(frozen=True)
class AggregationSummary:
    """What one `Library.aggregate` produced. `unchanged` means nothing it depends on changed since
    the last run, so the entries were left as they were (the other figures are then those of the
    last run)."""

    accepted: int
    pending: int
    reports: int
    active_nodes: int
    required_support: int
    dropped_reports: int  # from nodes that are not admitted
    capped_reports: int  # beyond MAX_REPORTS_PER_NODE for their node
    invalid_codes: int
    unchanged: bool = False


@dataclass(frozen=True)
class Hit:
    """One retrieved entry: the experience as published (for a network entry, the report whose text
    is the cluster's medoid), its similarity to the query, and the consensus the network reached:
    `domain` and `confidence` (weighted median over node voices) and `support` (distinct admitted
    nodes; 0 for a local entry)."""

    experience: Experience
    score: float
    support: int
    domain: str
    confidence: float
    origin: str = "network"


@dataclass(frozen=True)
class PendingEntry:
    """A cluster of reports the acceptance policy has not (yet) let in, and why."""

    experience_id: str
    text: str
    support: int
    confidence: float
    reason: str


def text_hash(text: str) -> bytes:
    """The key of a text's cached local embedding."""
    return hashlib.sha256(text.encode("utf-8")).digest()


class Library:
    """An agent's experience memory backed by one SQLite file."""

    def __init__(self, path: Path | str, embedder: Embedder, codecs: Any = None) -> None:
        """Open (or create) the library at `path`. `embedder` embeds queries and re-embeds texts
        for rescoring and clustering; `codecs` resolves (codec id, dim, baseline id) to a codec
        (default `dso.core.codec.codec_for`)."""
        self.path = Path(path)
        self.embedder = embedder
        if codecs is None:
            from dso.core.codec import codec_for

            codecs = codec_for
        self._codec_for = codecs
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
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

    def _has_meta(self) -> bool:
        return self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is not None

    # ------------------------------------------------------------------ local entries

    def add(self, experience: Experience, baseline: bytes) -> AddOutcome:
        """Store one of the agent's own experiences unless it (or a near-duplicate) is here."""
        return self.add_many([experience], baseline)[0]

    def add_many(self, experiences: Sequence[Experience], baseline: bytes) -> list[AddOutcome]:
        """Store the agent's own experiences in one transaction (all or nothing). A local entry is
        visible at once and never aggregated, counted as support, or revoked."""
        if not experiences:
            return []
        index = self._load_index()
        unknown = [e for e in experiences if e.experience_id not in index.position]
        vectors = self._vectors([e.text for e in unknown])
        outcomes: list[AddOutcome] = []
        new_rows: list[tuple[str, np.ndarray]] = []
        now = int(time.time())
        with self._transaction():
            self._store_vectors(vectors)
            for experience in experiences:
                eid = experience.experience_id
                if eid in index.position:
                    outcomes.append(AddOutcome(eid, stored=False, existing=eid, similarity=1.0))
                    continue
                vector = vectors[text_hash(experience.text)]
                duplicate = index.nearest(vector, extra=new_rows)
                if duplicate is not None and duplicate[1] >= NEAR_DUPLICATE_COSINE:
                    outcomes.append(AddOutcome(eid, stored=False, existing=duplicate[0], similarity=round(duplicate[1], 6)))
                    continue
                self._db.execute(
                    "INSERT INTO experiences VALUES (?, 'local', 1, ?, ?, ?, ?, ?, ?, ?, ?, 0, '[]', NULL, ?)",
                    (eid, experience.canonical_bytes(), experience.text, experience.domain, experience.confidence,
                     experience.codec, bytes(baseline), experience.code, text_hash(experience.text), now),
                )
                index.append(eid, experience.domain, experience.confidence, (experience.codec, bytes(baseline)), experience.code, vector, 0, "local")
                new_rows.append((eid, vector))
                outcomes.append(AddOutcome(eid, stored=True))
        return outcomes

    # ------------------------------------------------------------------ network reports

    def add_reports(self, experiences: Sequence[Experience], baseline: bytes, source: Source, leaf_indices: Sequence[int] | None = None) -> int:
        """Store the verified reports of one batch (leaf i = experiences[i] unless `leaf_indices`
        says otherwise) in one transaction; returns how many were new. Reports are not visible
        until `aggregate` runs."""
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
        vectors = self._vectors([e.text for _, e in fresh])
        with self._transaction():
            self._store_vectors(vectors)
            self._db.executemany(
                "INSERT INTO reports VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(root, i, e.experience_id, source.node_id, e.canonical_bytes(), bytes(baseline), text_hash(e.text)) for i, e in fresh],
            )
            self._bump_reports_version()
        return len(fresh)

    def remove_batch(self, batch_root: bytes) -> int:
        """Forget every report of a revoked batch; returns how many were removed. Entries change
        at the next `aggregate`."""
        return self._remove("DELETE FROM reports WHERE batch_root = ?", (bytes(batch_root),))

    def remove_report(self, batch_root: bytes, leaf_index: int) -> int:
        """Forget one report (an experience the DAO revoked by leaf challenge); returns 0 or 1."""
        return self._remove("DELETE FROM reports WHERE batch_root = ? AND leaf_index = ?", (bytes(batch_root), int(leaf_index)))

    def _remove(self, sql: str, args: tuple[Any, ...]) -> int:
        with self._transaction():
            removed = self._db.execute(sql, args).rowcount
            if removed:
                self._bump_reports_version()
        return removed

    def report_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM reports").fetchone()[0]

    def aggregate(
        self,
        admitted_node_ids: Collection[int],
        policy: AcceptancePolicy | None = None,
        force: bool = False,
        node_weights: Mapping[int, float] | None = None,
    ) -> AggregationSummary:
        """Recompute the network entries from every stored report (see the module docstring).
        `node_weights` (node id -> weight, e.g. `dso.workflows.sync.node_weights`) weight the
        statistics and the acceptance bar; None gives every node the same weight.

        Skipped (`unchanged=True`) when the reports, the admitted set, the policy and the weights are
        what the last run saw, so calling it after every sync is cheap. One transaction: readers see
        the old entries or the new ones.
        """
        policy = policy or AcceptancePolicy()
        admitted = sorted({int(n) for n in admitted_node_ids})
        weights = None if node_weights is None else sorted((int(n), float(w)) for n, w in node_weights.items())
        fingerprint = json.dumps({"reports": self._meta("reports_version", "0"), "admitted": admitted,
                                  "policy": [getattr(policy, f.name) for f in fields(policy)], "weights": weights})
        last = self._meta("aggregation")
        if not force and last is not None and json.loads(last)["fingerprint"] == fingerprint:
            return AggregationSummary(**json.loads(last)["summary"], unchanged=True)
        space = CodeSpace.of(self.embedder.model_id, self.embedder.dim)
        reports, published, capped = self._load_reports(space)
        result = aggregate(reports, admitted, policy, node_weights=node_weights)
        now = int(time.time())
        rows = []
        vector_of = {r.experience_id: r.vector for r in reports}
        for cluster in result.clusters:
            experience, published_baseline = published[cluster.experience_id]
            codec, code, baseline = space.entry_code(cluster.code, experience, published_baseline, vector_of[cluster.experience_id])
            rows.append((cluster.experience_id, int(cluster.accepted), experience.canonical_bytes(), cluster.text, cluster.domain,
                         cluster.confidence, codec, baseline, code, text_hash(cluster.text), cluster.support,
                         json.dumps(list(cluster.node_ids)), cluster.reason, now))
        summary = AggregationSummary(len(result.accepted), len(result.clusters) - len(result.accepted), len(reports),
                                     result.active_reporters, result.required_support, result.dropped_reports, capped, result.invalid_codes)
        summary_json = {k: v for k, v in asdict(summary).items() if k != "unchanged"}
        with self._transaction(invalidates=True):
            self._db.execute("DELETE FROM experiences WHERE origin = 'network'")
            self._db.executemany("INSERT OR IGNORE INTO experiences VALUES (?, 'network', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.execute(
                "DELETE FROM vectors WHERE text_hash NOT IN (SELECT text_hash FROM reports) AND text_hash NOT IN (SELECT text_hash FROM experiences)"
            )
            self._set_meta("aggregation", json.dumps({"fingerprint": fingerprint, "summary": summary_json}))
        return summary

    def _load_reports(self, space: CodeSpace) -> tuple[list[Report], dict[str, tuple[Experience, bytes]], int]:
        """Every stored report as a `dso.core.aggregate.Report` (capped per node, earliest first), the
        published experience and baseline by id, and how many reports the cap left out. Codes
        vote only if made in the library's code space."""
        per_node: dict[int, int] = {}
        reports: list[Report] = []
        published: dict[str, tuple[Experience, bytes]] = {}
        capped = 0
        rows = self._db.execute(
            "SELECT r.batch_root, r.node_id, r.canonical, r.baseline, v.vector FROM reports r "
            "JOIN vectors v ON v.text_hash = r.text_hash ORDER BY r.rowid"
        )
        for batch_root, node_id, canonical, baseline, vector in rows:
            if per_node.get(node_id, 0) >= MAX_REPORTS_PER_NODE:
                capped += 1
                continue
            per_node[node_id] = per_node.get(node_id, 0) + 1
            e = Experience.from_bytes(canonical)
            votes = space.votes(e, baseline)
            reports.append(Report(e.experience_id, node_id, e.text, e.domain, e.confidence,
                                  np.frombuffer(vector, dtype=np.float16), bytes(batch_root), e.code if votes else None))
            published.setdefault(e.experience_id, (e, bytes(baseline)))
        return reports, published, capped

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

    def pending(self, limit: int = 100) -> list[PendingEntry]:
        """Clusters not accepted (yet), most supported first."""
        rows = self._db.execute(
            "SELECT id, text, support, confidence, reason FROM experiences WHERE accepted = 0 ORDER BY support DESC, id LIMIT ?", (limit,)
        )
        return [PendingEntry(*row) for row in rows]

    def search(
        self,
        query: str,
        k: int = 5,
        domain: str | None = None,
        min_confidence: float = 0.0,
        rescore: int = DEFAULT_RESCORE,
        query_vector: np.ndarray | None = None,
    ) -> list[Hit]:
        """Top-k entries for `query`: codes rank all matches of the filters, the best `rescore`
        are re-ranked by local float embeddings (rescore=0 ranks by codes alone).

        `query_vector`, if given, is the query already in the library's space (another model's
        query mapped by `dso.core.align`, e.g. ``alignment.apply(model_b.embed([query]))[0]``); it is
        searched instead of embedding `query`, which then only names the query. It is normalized
        here; LibraryError unless it is a finite, non-zero 1-d vector of the library's dimension.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise LibraryError(f"k must be a whole number of at least 1; got {k!r}")
        if isinstance(min_confidence, bool) or not isinstance(min_confidence, (int, float)) or not 0.0 <= min_confidence <= 1.0:
            # NaN fails both comparisons: without this check it filtered out everything, silently
            raise LibraryError(f"min_confidence must be a number in [0, 1]; got {min_confidence!r}")
        if domain is not None:
            validate_domain(domain)
        if query_vector is not None:
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
            query_vector = (given / norm).astype(np.float32)
        index = self._load_index()
        mask = index.filter(domain, min_confidence)
        if not mask.any():
            return []
        if query_vector is None:
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
        return [
            Hit(self._experience_at(index, i), float(s), index.supports[i], index.domains[i], index.confidences[i], index.origins[i])
            for i, s in zip(chosen[:k], scores[:k])
        ]

    def context_for(
        self, query: str, k: int = 5, domain: str | None = None, min_confidence: float = 0.0, query_vector: np.ndarray | None = None
    ) -> str:
        """A prompt block with the top-k experiences, ready to prepend to any LLM prompt
        (`query_vector` as in `search`)."""
        hits = self.search(query, k=k, domain=domain, min_confidence=min_confidence, query_vector=query_vector)
        if not hits:
            return ""
        lines = ["Relevant experiences from the dso library (verified on-chain; use them if they apply):"]
        for n, hit in enumerate(hits, 1):
            origin = f"{hit.support} node(s)" if hit.origin == "network" else "local"
            lines.append(f"{n}. [{hit.domain}, confidence {hit.confidence:.2f}, {origin}] {hit.experience.text}")
        return "\n".join(lines)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _transaction(self, invalidates: bool = False) -> "_Transaction":
        return _Transaction(self, invalidates)

    def _vectors(self, texts: Sequence[str]) -> dict[bytes, np.ndarray]:
        """Local float embeddings by text hash: cached ones read back, the rest embedded now."""
        wanted = {text_hash(t): t for t in texts}
        found: dict[bytes, np.ndarray] = {}
        keys = list(wanted)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in self._db.execute(f"SELECT text_hash, vector FROM vectors WHERE text_hash IN ({marks})", chunk):
                found[bytes(key)] = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
        missing = [k for k in keys if k not in found]
        if missing:
            embedded = np.asarray(self.embedder.embed([wanted[k] for k in missing]), dtype=np.float32)
            found.update(zip(missing, embedded))
        return found

    def _store_vectors(self, vectors: dict[bytes, np.ndarray]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO vectors VALUES (?, ?)", [(k, v.astype(np.float16).tobytes()) for k, v in vectors.items()])

    def _meta(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _bump_reports_version(self) -> None:
        self._set_meta("reports_version", str(int(self._meta("reports_version", "0")) + 1))

    def _experience_at(self, index: "SearchIndex", i: int) -> Experience:
        row = self._db.execute("SELECT canonical FROM experiences WHERE id = ?", (index.ids[i],)).fetchone()
        return Experience.from_bytes(row[0])

    def _load_index(self) -> "SearchIndex":
        if self._index is None:
            rows = self._db.execute(
                "SELECT e.id, e.domain, e.confidence, e.codec, e.baseline, e.code, v.vector, e.support, e.origin "
                "FROM experiences e JOIN vectors v ON v.text_hash = e.text_hash WHERE e.accepted = 1 ORDER BY e.rowid"
            ).fetchall()
            self._index = SearchIndex.from_rows(rows, self.embedder.dim)
        return self._index


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT; on any error ROLLBACK and drop the in-memory index (it may hold
    rows the database no longer has). `invalidates` drops it after a commit too, for changes to
    the visible entries that the index does not track itself."""

    def __init__(self, library: Library, invalidates: bool) -> None:
        self.library = library
        self.invalidates = invalidates

    def __enter__(self) -> None:
        self.library._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, *rest: object) -> None:
        library = self.library
        if kind is None:
            try:
                library._db.execute("COMMIT")
            except sqlite3.Error as exc:
                kind, error = type(exc), exc
        if kind is not None:
            library._index = None
            try:
                library._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite already rolled the transaction back (e.g. on SQLITE_FULL)
            if isinstance(error, sqlite3.Error):
                raise LibraryError(f"could not write the library {library.path} ({error}); nothing was changed") from error
        elif self.invalidates:
            library._index = None


def export_json(hits: Sequence[Hit]) -> str:
    """Hits as JSON for programs (`dso query --format json`): the experience as published, with
    `domain` and `confidence` replaced by the network's consensus (the published values are kept
    as `published_domain` and `published_confidence`)."""
    out = []
    for hit in hits:
        published = hit.experience.to_json()
        out.append({**published, "published_domain": published["domain"], "published_confidence": published["confidence"],
                    "domain": hit.domain, "confidence": round(hit.confidence, 6), "score": round(hit.score, 6),
                    "support": hit.support, "origin": hit.origin})
    return json.dumps(out, indent=2)
