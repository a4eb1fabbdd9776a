"""Which code a library entry carries: the consensus-code policy.

A library searches codes in one space: bitdelta-1 (`CONSENSUS_CODEC`) on the published baseline of
its own embedding model. A report's code votes in a cluster's per-bit consensus only if it was made
in that space; an accepted cluster with no such code (every voice used another model, codec or
baseline, which this client may not even decode) is coded from its medoid text's local embedding,
so every entry is searchable. Libraries on a model with no published baseline keep the medoid
report's own code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dso.core.aggregate.majority import CONSENSUS_CODEC
from dso.core.codec import Codec, get_codec
from dso.core.experience import Experience
from dso.core.models import model_file_stem
from dso.errors import DsoError


@dataclass(frozen=True)
class CodeSpace:
    """The space a library's consensus codes live in, or none (`codec` None)."""

    model: str  # the short model name experiences carry
    codec: Codec | None

    @classmethod
    def of(cls, model_id: str, dim: int) -> "CodeSpace":
        """bitdelta-1 on the published baseline of `model_id`; no codec if none is shipped."""
        try:
            codec = get_codec(CONSENSUS_CODEC, dim, model_id=model_id)
        except DsoError:
            codec = None
        return cls(model_file_stem(model_id), codec)

    @property
    def baseline(self) -> bytes | None:
        """The 32-byte id of the consensus baseline, if there is one."""
        return bytes.fromhex(self.codec.baseline_id) if self.codec is not None else None

    def votes(self, experience: Experience, baseline: bytes) -> bool:
        """Whether this report's code is in the consensus space and so takes part in the vote."""
        return experience.codec == CONSENSUS_CODEC and experience.model == self.model and bytes(baseline) == self.baseline

    def entry_code(self, consensus: bytes | None, medoid: Experience, medoid_baseline: bytes) -> tuple[str, bytes, bytes]:
        """(codec id, code, baseline id) of an entry: the cluster's consensus code if its voices had
        one, else the medoid report's own code. An entry whose code is not in this space is not
        searchable until the indexer has embedded its text (`code_from_vector`)."""
        if consensus is not None and self.baseline is not None:
            return CONSENSUS_CODEC, consensus, self.baseline
        return medoid.codec, medoid.code, medoid_baseline

    def in_space(self, codec_id: str, baseline: bytes) -> bool:
        """Whether a code of `codec_id` made against `baseline` can be searched here."""
        return self.baseline is not None and codec_id == CONSENSUS_CODEC and bytes(baseline) == self.baseline

    def code_from_vector(self, vector: np.ndarray) -> bytes:
        """A local embedding coded in this space (for entries whose published codes are not)."""
        if self.codec is None:
            raise DsoError("this library's model has no published baseline: nothing can be coded in its space")
        return bytes(self.codec.encode(np.asarray(vector, dtype=np.float32)[None, :])[0])
