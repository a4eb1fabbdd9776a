"""The in-memory search index over a library's visible entries.

Arrays in insertion order: ids, consensus domain/confidence/support/origin, codes grouped per
(codec, baseline) into one uint8 matrix each (so scoring is one vectorised call per codec), and the
float16 local embeddings used for rescoring and near-duplicate checks. `dso.workflows.library`
builds it from SQLite and keeps it in step with its own writes.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from dso.core.experience import domain_matches


class SearchIndex:
    """In-memory arrays over the stored experiences, in insertion order; codes are kept as one
    uint8 matrix per (codec, baseline) so that scoring is a single vectorised call per codec."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.ids: list[str] = []
        self.position: dict[str, int] = {}
        self.domains: list[str] = []
        self.confidences: list[float] = []
        self.supports: list[int] = []
        self.origins: list[str] = []
        self.group_keys: list[tuple[str, bytes]] = []
        self._group_of: list[int] = []
        self._local_of: list[int] = []
        self._group_codes: list[list[bytes]] = []
        self._vectors: list[np.ndarray] = []
        self._cache: dict[str, Any] = {}

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[Any, ...]], dim: int) -> "SearchIndex":
        index = cls(dim)
        for eid, domain, confidence, codec, baseline, code, vector, support, origin in rows:
            index.append(eid, domain, confidence, (codec, bytes(baseline)), bytes(code), np.frombuffer(vector, dtype=np.float16), support, origin)
        return index

    def append(
        self, eid: str, domain: str, confidence: float, codec_key: tuple[str, bytes], code: bytes, vector: np.ndarray, support: int, origin: str
    ) -> None:
        if codec_key not in self.group_keys:
            self.group_keys.append(codec_key)
            self._group_codes.append([])
        group = self.group_keys.index(codec_key)
        self.position[eid] = len(self.ids)
        self.ids.append(eid)
        self.domains.append(domain)
        self.confidences.append(confidence)
        self.supports.append(support)
        self.origins.append(origin)
        self._group_of.append(group)
        self._local_of.append(len(self._group_codes[group]))
        self._group_codes[group].append(code)
        self._vectors.append(vector.astype(np.float16))
        self._cache.clear()

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
