"""The search index of a library: flat arrays on disk, memory-mapped by every process that searches.

Why on disk: a `dso query` process used to rebuild its index from SQLite row by row (87 s and
3.9 GB at a million entries). Here a library keeps, next to its SQLite file, one directory of
fixed-width arrays, one row per visible entry (accepted network entries and local ones):

    bits.u8      the code's sign bits (dim/8 bytes): the Hamming prefilter (faiss) searches them
    terms.f4     scale, baseline . levels, norm: the asymmetric cosine without decoding the code
    vectors.f2   the text's local float16 embedding, zeros until the indexer has computed it
    meta.f4      consensus confidence, support (distinct nodes), domain number, flags (alive,
                 has a vector, local), as four float32 columns
    keys.b32     the entry id (32 bytes) and the text hash (32 bytes) of the row
    manifest.json  rows, generation (the library's entries version it reflects), domains, codec,
                   and the data directory holding the arrays

Sync appends rows for new entries and clears the alive flag of replaced ones; the indexer writes
vectors in place. The manifest is written last and atomically: a reader sees the rows it counts,
and a crash before it leaves a manifest whose generation the library recognises as stale, so the
index is rebuilt from SQLite on the next open (never searched out of step). A rebuild (also once
more than a quarter of the rows are dead) writes a new data directory and then points the manifest
at it, so a process still searching the old arrays keeps a consistent view. One writer at a time
holds the directory's lock file.

Search is two-stage, as measured in bench/results/scale.json: the top R rows by levels . query
over the sign bits (`sign_scan`, faiss fast-scan), the exact asymmetric cosine of the float query
against those R codes, then the best `rescore` re-ranked by local float vectors once the indexer
has computed them for every candidate.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from dso.core.codec import SCALE_BYTES, Codec, unpack_scales
from dso.core.experience import domain_matches
from dso.edges.files import atomic_write_text
from dso.errors import LibraryError

INDEX_VERSION = 1
ALIVE, HAS_VECTOR, LOCAL = 1, 2, 4
PREFILTER = 500  # candidates per query from the sign scan, re-scored exactly (bench/results/scale.json: recall at 1M)
EXHAUSTIVE_BELOW = 20_000  # fewer candidate rows than this: score them all, no prefilter
META_COLUMNS = 4  # confidence, support, domain, flags


@dataclass(frozen=True)
class IndexRow:
    """One entry as the index stores it."""

    entry_id: str
    text_hash: bytes
    code: bytes
    confidence: float
    support: int
    domain: str
    local: bool
    vector: np.ndarray | None = None


@dataclass(frozen=True)
class Candidate:
    """A ranked row: its entry id, its score, and whether a float vector or only the code ranked it."""

    row: int
    entry_id: str
    score: float
    by_code_only: bool


class SearchIndex:
    """The arrays of one library, opened read-only (memory maps) or appended to by the library."""

    def __init__(self, path: Path, codec: Codec) -> None:
        self.path = Path(path)
        self.codec = codec
        self.dim = codec.dim
        self._faiss = None
        self._load_manifest()

    # ------------------------------------------------------------------ files

    def _load_manifest(self) -> None:
        manifest = self.path / "manifest.json"
        try:
            data = json.loads(manifest.read_text()) if manifest.exists() else None
            self._manifest_stamp = manifest.stat().st_mtime_ns if manifest.exists() else None
        except (OSError, json.JSONDecodeError):
            data, self._manifest_stamp = None, None
        if data is None or data.get("version") != INDEX_VERSION or data.get("baseline") != self.codec.baseline_id:
            self.rows, self.generation, self.domains, self.data = 0, -1, [], "d0"
        else:
            self.rows, self.generation, self.domains, self.data = int(data["rows"]), int(data["generation"]), list(data["domains"]), str(data["data"])
        self._domain_number = {d: i for i, d in enumerate(self.domains)}
        self._maps: dict[str, np.ndarray] = {}
        self._faiss = None

    def refresh(self) -> None:
        """Follow the manifest if another process (or a commit here) changed it."""
        manifest = self.path / "manifest.json"
        stamp = manifest.stat().st_mtime_ns if manifest.exists() else None
        if stamp != self._manifest_stamp:
            self._load_manifest()

    def _file(self, name: str) -> Path:
        return self.path / self.data / name

    @contextlib.contextmanager
    def writing(self) -> Iterator["SearchIndex"]:
        """Hold the index's writer lock (one writer at a time, across processes)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / "lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self.refresh()
                yield self
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _columns(self, name: str) -> tuple[str, int]:
        body = self.dim // 8
        return {"bits.u8": ("u1", body), "terms.f4": ("<f4", 3), "vectors.f2": ("<f2", self.dim), "meta.f4": ("<f4", META_COLUMNS),
                "keys.b32": ("u1", 64)}[name]

    def _map(self, name: str, writable: bool = False) -> np.ndarray:
        """The first `rows` rows of one array file, memory-mapped (a view; not copied)."""
        key = f"{name}:{writable}"
        if key not in self._maps:
            dtype, width = self._columns(name)
            if self.rows == 0:
                return np.zeros((0, width), dtype=dtype)
            self._maps[key] = np.memmap(self._file(name), dtype=dtype, mode="r+" if writable else "r", shape=(self.rows, width))
        return self._maps[key]

    def _write_manifest(self) -> None:
        atomic_write_text(self.path / "manifest.json", json.dumps({
            "version": INDEX_VERSION, "rows": self.rows, "generation": self.generation, "domains": self.domains, "data": self.data,
            "codec": self.codec.codec_id, "baseline": self.codec.baseline_id, "dim": self.dim}) + "\n")
        self._manifest_stamp = (self.path / "manifest.json").stat().st_mtime_ns

    def commit(self, generation: int) -> None:
        """Write what was changed in place to disk, then the manifest: the commit point."""
        for array in self._maps.values():
            if isinstance(array, np.memmap) and array.mode == "r+":
                array.flush()
        self.generation = generation
        self._write_manifest()

    def discard(self) -> None:
        """Forget appends that were not committed (the library's transaction rolled back)."""
        self._load_manifest()

    # ------------------------------------------------------------------ writing

    def start_rebuild(self) -> str:
        """Begin an empty index in a fresh data directory (committed by `commit`); return the old
        data directory, which `drop_data` removes once the new manifest is written."""
        old = self.data
        number = int(old[1:]) + 1 if old[1:].isdigit() else 1
        self.data = f"d{number}"
        shutil.rmtree(self.path / self.data, ignore_errors=True)
        (self.path / self.data).mkdir(parents=True)
        for name in ("bits.u8", "terms.f4", "vectors.f2", "meta.f4", "keys.b32"):
            self._file(name).write_bytes(b"")
        self._maps.clear()
        self._faiss = None
        self.rows, self.domains, self._domain_number = 0, [], {}
        return old

    def drop_data(self, name: str) -> None:
        """Delete an old data directory (processes that still map its files keep them until they close)."""
        if name != self.data:
            shutil.rmtree(self.path / name, ignore_errors=True)

    def append(self, rows: Sequence[IndexRow]) -> list[int]:
        """Append rows (written to the files at once, counted only at the next `flush`); return
        their row numbers."""
        if not rows:
            return []
        (self.path / self.data).mkdir(parents=True, exist_ok=True)
        codes = np.frombuffer(b"".join(r.code for r in rows), dtype=np.uint8).reshape(len(rows), -1)
        codes = self.codec.check_codes(codes)
        scales = unpack_scales(codes[:, -SCALE_BYTES:]).astype(np.float64)
        levels_dot = self.codec.levels(codes).astype(np.float64) @ self.codec.baseline.astype(np.float64)
        b2 = float(self.codec.baseline.astype(np.float64) @ self.codec.baseline)
        norms = np.sqrt(np.maximum(b2 + 2 * scales * levels_dot + scales * scales * self.codec.level_norms(codes), np.finfo(np.float32).tiny))
        vectors = np.zeros((len(rows), self.dim), dtype="<f2")
        flags = np.full(len(rows), ALIVE, dtype=np.int32)
        for n, row in enumerate(rows):
            if row.vector is not None:
                vectors[n] = row.vector
                flags[n] |= HAS_VECTOR
            if row.local:
                flags[n] |= LOCAL
        for row in rows:
            if row.domain not in self._domain_number:
                self._domain_number[row.domain] = len(self.domains)
                self.domains.append(row.domain)
        meta = np.column_stack([[r.confidence for r in rows], [r.support for r in rows],
                                [self._domain_number[r.domain] for r in rows], flags]).astype("<f4")
        keys = np.frombuffer(b"".join(bytes.fromhex(r.entry_id) + r.text_hash for r in rows), dtype=np.uint8).reshape(len(rows), 64)
        first = self.rows
        # Files may hold rows beyond `rows` from an append that never reached its manifest: cut them.
        for name, block in (("bits.u8", codes[:, : self.dim // 8]), ("terms.f4", np.column_stack([scales, levels_dot, norms]).astype("<f4")),
                            ("vectors.f2", vectors), ("meta.f4", meta), ("keys.b32", keys)):
            dtype, width = self._columns(name)
            with open(self._file(name), "ab") as handle:
                handle.truncate(first * width * np.dtype(dtype).itemsize)
                handle.write(np.ascontiguousarray(block, dtype=dtype).tobytes())
        self.rows += len(rows)
        self._maps.clear()
        self._faiss = None
        return list(range(first, self.rows))

    def retire(self, rows: Sequence[int]) -> None:
        """Mark rows dead (their entries were replaced or removed)."""
        if len(rows):
            meta = self._map("meta.f4", writable=True)
            index = np.asarray(rows, dtype=np.int64)
            meta[index, 3] = (meta[index, 3].astype(np.int32) & ~ALIVE).astype("<f4")

    def set_vectors(self, rows: Sequence[int], vectors: np.ndarray) -> None:
        """Store local float embeddings for rows (the indexer)."""
        if len(rows):
            index = np.asarray(rows, dtype=np.int64)
            self._map("vectors.f2", writable=True)[index] = np.asarray(vectors, dtype="<f2")
            meta = self._map("meta.f4", writable=True)
            meta[index, 3] = (meta[index, 3].astype(np.int32) | HAS_VECTOR).astype("<f4")

    # ------------------------------------------------------------------ reading

    def flags(self) -> np.ndarray:
        return self._map("meta.f4")[:, 3].astype(np.int32)

    def dead_fraction(self) -> float:
        return float((self.flags() & ALIVE == 0).mean()) if self.rows else 0.0

    def entry_id(self, row: int) -> str:
        return bytes(self._map("keys.b32")[row, :32]).hex()

    def text_hashes(self) -> np.ndarray:
        return self._map("keys.b32")[:, 32:]

    def unvectored_rows(self) -> np.ndarray:
        """Alive rows whose text has no local embedding yet (the indexer's work list)."""
        flags = self.flags()
        return np.flatnonzero((flags & ALIVE != 0) & (flags & HAS_VECTOR == 0))

    def mask(self, domain: str | None, min_confidence: float) -> np.ndarray:
        """Alive rows that pass the filters (domain prefix, minimum consensus confidence)."""
        meta = self._map("meta.f4")
        mask = (meta[:, 3].astype(np.int32) & ALIVE != 0) & (meta[:, 0] >= np.float32(min_confidence) - np.float32(1e-7))
        if domain is not None:
            wanted = np.array([domain_matches(d, domain) for d in self.domains] or [False])
            mask &= wanted[meta[:, 2].astype(np.int64)]
        return mask

    def search(self, query: np.ndarray, k: int, domain: str | None, min_confidence: float, rescore: int) -> list[Candidate]:
        """The top-k rows for a unit float query: prefilter (large indexes: the best PREFILTER rows
        by levels . query, over-fetched and then filtered), asymmetric code cosine, then float
        rescoring of the best `rescore` where vectors exist."""
        if not self.rows:
            return []
        depth = max(k, rescore) if rescore else k
        candidates = None
        if self.rows > EXHAUSTIVE_BELOW:
            found = self._prefilter(query, min(self.rows, 2 * max(PREFILTER, depth)))
            candidates = found[self._passes(found, domain, min_confidence)][: max(PREFILTER, depth)]
            if len(candidates) < depth:  # a selective filter removed most of them: score every row that passes
                candidates = None
        if candidates is None:
            candidates = np.flatnonzero(self.mask(domain, min_confidence))
        if not len(candidates):
            return []
        scores = self._code_scores(query, candidates)
        order = np.argsort(-scores, kind="stable")[:depth]
        chosen, scores = candidates[order], scores[order]
        by_code = np.ones(len(chosen), dtype=bool)
        if rescore and len(chosen):
            # Float rescoring only when every candidate has its float: code and float cosines are on
            # different scales, and a ranking that mixes them is worse than codes alone (measured:
            # recall 0.37 with a quarter of the vectors present, 0.67 by codes only).
            has = self._map("meta.f4")[chosen, 3].astype(np.int32) & HAS_VECTOR != 0
            if has.all():
                scores = self._map("vectors.f2")[chosen].astype(np.float32) @ query
                by_code = ~has
                reorder = np.argsort(-scores, kind="stable")
                chosen, scores, by_code = chosen[reorder], scores[reorder], by_code[reorder]
        return [Candidate(int(row), self.entry_id(int(row)), float(score), bool(code_only))
                for row, score, code_only in zip(chosen[:k], scores[:k], by_code[:k])]

    def _passes(self, rows: np.ndarray, domain: str | None, min_confidence: float) -> np.ndarray:
        """`mask` for some rows only (reads just their metadata)."""
        meta = np.asarray(self._map("meta.f4")[rows]) if len(rows) else np.zeros((0, META_COLUMNS), "<f4")
        keep = (meta[:, 3].astype(np.int32) & ALIVE != 0) & (meta[:, 0] >= np.float32(min_confidence) - np.float32(1e-7))
        if domain is not None:
            wanted = np.array([domain_matches(d, domain) for d in self.domains] or [False])
            keep &= wanted[meta[:, 2].astype(np.int64)]
        return keep

    def _prefilter(self, query: np.ndarray, depth: int) -> np.ndarray:
        """The `depth` rows with the largest levels . query, best first (`sign_scan`), dead or not."""
        if self._faiss is None:
            self._faiss = self._load_scan()
        _, found = self._faiss.search(np.asarray(query, dtype=np.float32)[None, :], depth)
        return found[0][found[0] >= 0]

    def _load_scan(self):
        """The sign scan of the current rows: read from the data directory (memory-mapped) if a
        process already built it for this many rows, else built (about 1 s per million rows) and
        left there for the next process. Derived data: any process may write it, atomically."""
        import faiss

        path = self._file(f"scan-{self.rows}.faiss")
        if path.exists():
            try:
                faiss.omp_set_num_threads(1)
                return faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            except RuntimeError:  # a torn or foreign file: build it again
                pass
        scan = sign_scan(np.asarray(self._map("bits.u8")))
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        try:
            faiss.write_index(scan, str(partial))
            os.replace(partial, path)
            for stale in path.parent.glob("scan-*.faiss"):
                if stale != path:
                    stale.unlink(missing_ok=True)
        except (OSError, RuntimeError):
            partial.unlink(missing_ok=True)  # a read-only library still searches, it just builds the scan each time
        return scan

    def _code_scores(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """cos(query, decode(code)) for `rows`, from the stored terms (no decoding)."""
        out = np.empty(len(rows), dtype=np.float32)
        bits_map, terms = self._map("bits.u8"), self._map("terms.f4")
        q_dot_b = float(query @ self.codec.baseline)
        signs = 2 * query.astype(np.float32)  # levels = 2 bits - 1, so levels . q = bits . 2q - sum(q)
        q_sum = float(query.sum())
        for start in range(0, len(rows), 65_536):
            chunk = rows[start : start + 65_536]  # (callers pass few rows, or all of them in order)
            bits = np.unpackbits(np.asarray(bits_map[chunk]), axis=1).astype(np.float32)
            levels_q = bits @ signs - q_sum
            t = np.asarray(terms[chunk], dtype=np.float32)
            out[start : start + len(chunk)] = (q_dot_b + t[:, 0] * levels_q) / t[:, 2]
        return out


# The 16 sign patterns of 4 dimensions (+1 for a set bit, most significant bit first, as np.unpackbits).
_SIGN_PATTERNS = 2 * np.unpackbits(np.arange(16, dtype=np.uint8)[:, None], axis=1)[:, 4:].astype(np.float32) - 1


def sign_scan(bits: np.ndarray):
    """A faiss `IndexPQFastScan` that scores packed sign bits (n, dim/8) by levels . query (levels
    in {-1, +1}) without decoding or training: dim/4 sub-quantizers of 4 bits whose 16 centroids
    are the 16 sign patterns of 4 dimensions, so each nibble of a code is its own PQ code. Fast-scan
    rounds its look-up tables to 8 bits, so its order is approximate: `search` re-scores the best
    PREFILTER exactly. One SIMD pass over the codes: 1.8-2.4 ms for a million rows (measured in
    bench/results/scale.json, against 24 ms and recall 0.987 for a Hamming prefilter)."""
    import faiss

    faiss.omp_set_num_threads(1)  # one query at a time: threads only wait for each other on a shared machine
    rows, width = bits.shape
    dim = width * 8
    pq = faiss.IndexPQ(dim, dim // 4, 4, faiss.METRIC_INNER_PRODUCT)
    faiss.copy_array_to_vector(np.tile(_SIGN_PATTERNS[None], (dim // 4, 1, 1)).ravel(), pq.pq.centroids)
    pq.is_trained = True
    # faiss stores the first sub-quantizer of a byte in its low nibble; ours is the high one
    nibbles = np.ascontiguousarray((bits >> 4) | ((bits & 0x0F) << 4), dtype=np.uint8)
    faiss.copy_array_to_vector(nibbles.ravel(), pq.codes)
    pq.ntotal = rows
    return faiss.IndexPQFastScan(pq, 32)


def open_index(path: Path, codec: Codec) -> SearchIndex:
    """The index in `path` (empty if there is none yet)."""
    if path.exists() and not path.is_dir():
        raise LibraryError(f"{path} should be the library's index directory; move the file aside")
    return SearchIndex(path, codec)
