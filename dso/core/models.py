"""The embedding model every node and client shares, named once, and what an embedder is.

Experiences carry the model's short name (`MODEL_NAME`), batch headers and codec baselines are
keyed by it, and the embedders in `dso.edges.embed` load it. A library, a codec baseline and a
batch agree on the space their vectors live in only through these values.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384


def model_file_stem(model_id: str) -> str:
    """The short name of a model id: its last path part ("all-MiniLM-L6-v2"), which experiences
    carry and package data files are named after."""
    return model_id.rsplit("/", 1)[-1]


MODEL_NAME = model_file_stem(MODEL_ID)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into points of one model's vector space.

    ``model_id`` names the space (vectors from embedders with equal ``model_id`` are comparable and
    share a codec baseline); ``dim`` is the vector length.
    """

    model_id: str
    dim: int

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Return an (n, dim) float32 array of L2-normalized, finite rows, one per text, in order."""
        ...
