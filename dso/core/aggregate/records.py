"""The record aggregation consumes: one node's report of one experience."""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np

from dso.errors import AggregationError

BATCH_ROOT_BYTES = 32


@dataclass(frozen=True, eq=False)
class Report:
    """One experience as one admitted node published it, with the client's own embedding of its text.

    `node_id` is the node's on-chain id (one voice per id, however many reports it sends).
    `vector` is the float embedding the *client* computed from `text` (not the node's code, which
    the node chose); it is stored as a read-only float64 copy. `code` is the published
    ``bitdelta-1`` code, optional, for the per-bit majority; every code in one aggregation must come
    from the same codec, dimension and baseline. `batch_root` is the 32-byte Merkle root of the batch
    the report came in (provenance; it takes no part in the statistics).

    The caller has verified the report against its batch (Merkle proof, content id): in particular
    one `experience_id` always comes with one text. Raises AggregationError for a malformed field.
    """

    experience_id: str
    node_id: int
    text: str
    domain: str
    confidence: float
    vector: np.ndarray
    batch_root: bytes
    code: bytes | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.experience_id, str) or not self.experience_id:
            raise AggregationError(f"experience_id must be a non-empty string; got {self.experience_id!r}")
        if isinstance(self.node_id, bool) or not isinstance(self.node_id, int) or self.node_id < 0:
            raise AggregationError(f"node_id must be the node's on-chain id, an integer >= 0; got {self.node_id!r}")
        if not isinstance(self.text, str) or not self.text:
            raise AggregationError(f"report {self.experience_id}: text must be a non-empty string")
        if not isinstance(self.domain, str) or not self.domain:
            raise AggregationError(f"report {self.experience_id}: domain must be a non-empty string")
        confidence = self.confidence
        number = isinstance(confidence, (int, float)) and not isinstance(confidence, bool)
        if not number or not math.isfinite(confidence) or not 0 <= confidence <= 1:
            raise AggregationError(f"report {self.experience_id}: confidence must be in [0, 1]; got {confidence!r}")
        object.__setattr__(self, "confidence", float(confidence))
        object.__setattr__(self, "vector", frozen_vector(self.vector, self.experience_id))
        if not isinstance(self.batch_root, (bytes, bytearray)) or len(self.batch_root) != BATCH_ROOT_BYTES:
            raise AggregationError(f"report {self.experience_id}: batch_root must be {BATCH_ROOT_BYTES} bytes")
        object.__setattr__(self, "batch_root", bytes(self.batch_root))
        if self.code is not None:
            if not isinstance(self.code, (bytes, bytearray)) or not self.code:
                raise AggregationError(f"report {self.experience_id}: code must be non-empty bytes or None")
            object.__setattr__(self, "code", bytes(self.code))


# The vectors this module validated and froze, by id, as weak references (an entry leaves when its
# array dies, before the id can be reused): a report built from one of them shares it instead of
# copying and checking it again (a library's reports of one text all carry its code's vector).
_FROZEN: dict[int, weakref.ref] = {}


def frozen_vector(vector: object, experience_id: str) -> np.ndarray:
    """`vector` as a validated read-only float64 array (what Report stores); `experience_id` names
    the report in the error. Freezing a vector once lets many reports share it."""
    known = _FROZEN.get(id(vector))
    if known is not None and known() is vector and not vector.flags.writeable:  # type: ignore[union-attr]
        return vector  # type: ignore[return-value]
    try:
        array = np.array(vector, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AggregationError(f"report {experience_id}: vector is not a list of numbers: {exc}") from exc
    if array.ndim != 1 or array.size == 0:
        raise AggregationError(f"report {experience_id}: vector must be one-dimensional and non-empty; got shape {array.shape}")
    if not np.isfinite(array).all() or not array.any():
        raise AggregationError(f"report {experience_id}: vector must be finite and not all zeros (re-embed the text)")
    array.setflags(write=False)
    key = id(array)
    _FROZEN[key] = weakref.ref(array, lambda _, key=key: _FROZEN.pop(key, None))
    return array
