"""Cross-model alignment: map one embedding model's vectors into another model's space.

An agent whose model B (say all-mpnet-base-v2, 768-d) differs from the library's model A
(all-MiniLM-L6-v2, 384-d) can still query the library: embed the same anchor sentences with both
models, fit a map B -> A on them, and send B's queries through the map before searching A's
vectors or codes. The map is orthogonal Procrustes (Schönemann 1966, "A generalized solution of
the orthogonal Procrustes problem"), with the isotropic scale of extended Procrustes, fitted on
centered anchors:

    W = U Vᵀ  where  U S Vᵀ = svd((X - μ_X)ᵀ (Y - μ_Y)),   s = tr(S) / ‖X - μ_X‖²_F
    apply(x) = normalize(s (x - μ_X) W + μ_Y)

Centering matters: sentence embeddings share a large common component (their mean), which a
rotation alone cannot move onto the other model's mean. Measured for multilingual-e5-small ->
MiniLM, recall@10 against MiniLM's top-10 drops from 0.41 to 0.19 (GSM8K) and 0.56 to 0.32 (STS-B)
without it; for all-mpnet-base-v2 it makes no difference (±0.01).

Unequal dimensions (d_s ≠ d_t): the thin SVD above is exactly Procrustes after padding the smaller
side with zero columns: W (d_s × d_t) then has orthonormal rows or columns. The alternative,
``reduce="pca"``, first projects the larger side onto its top principal components of the anchors.
``dso.bench.crossmodel`` measured both for all-mpnet-base-v2 (768-d) -> MiniLM (384-d) on 1,000 anchors
(``bench/results/crossmodel.json``): recall@10 against MiniLM's top-10 0.504 (pad) vs 0.501 (pca) on
GSM8K and 0.651 vs 0.645 on STS-B. Padding is the default: as good, and no extra choice to make.

Either way the stored map is one (d_s × d_t) float32 matrix plus the two means and the scale, so
an alignment serializes to a few hundred KB to ~1 MB (``to_bytes``) and is named by its sha256
(``alignment_id``) so peers can share and cite it.

WARNING: with fewer anchors than dimensions (n ≤ max(d_s, d_t)) the cross-covariance has rank
< n, and the map is only determined on the anchors' span; directions outside it are arbitrary.
Fitting is allowed (n ≥ 2), but use well over max(d_s, d_t) anchors (the benchmark uses 1,000).

Using one (``dso align fit`` / ``dso query --query-model`` do the same from the command line)::

    from dso.core.align import AlignedQueryEmbedder, fit_query_model
    from dso.edges.datasets import anchor_sentences
    from dso.edges.embed import load_embedder, load_query_model

    e5 = load_query_model("e5-small")
    alignment = fit_query_model(e5, load_embedder("minilm"), anchor_sentences(1_000)).alignment
    queries = AlignedQueryEmbedder(e5, alignment, target_dim=library.embedder.dim)
    hits = library.search(question, k=5, query_vector=queries.embed([question])[0])
"""

from __future__ import annotations

import hashlib
import struct
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from dso.errors import AlignmentError

if TYPE_CHECKING:
    from dso.core.models import Embedder

FORMAT_MAGIC = b"DSOALGN"
FORMAT_VERSION = 1  # no model names (fit from bare vectors)
NAMED_FORMAT_VERSION = 2  # the header is followed by the source and target model ids
# magic, version, d_s, d_t, scale: little-endian, then (version 2) two model ids, each a length
# byte and UTF-8, then mean_s, mean_t, map row-major, all <f4.
HEADER = struct.Struct("<7sBIIf")
MAX_MODEL_ID_BYTES = 255
REDUCTIONS = ("pad", "pca")
MIN_ANCHORS = 2
# The shared anchor set (dso.edges.datasets.anchor_sentences) holds 1,000.
MAX_ANCHORS = 1_000


def _name_bytes(model_id: str) -> bytes:
    """A model id as stored in an alignment: a length byte, then UTF-8."""
    raw = model_id.encode("utf-8")
    if len(raw) > MAX_MODEL_ID_BYTES:
        raise AlignmentError(f"model id {model_id[:40]!r}... is longer than {MAX_MODEL_ID_BYTES} bytes")
    return bytes([len(raw)]) + raw


def _check_matrix(vectors: np.ndarray, what: str, dim: int | None = None) -> np.ndarray:
    """`vectors` as a finite 2-d float64 array (with `dim` columns if given), else AlignmentError."""
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise AlignmentError(f"{what} must be a non-empty 2-d array (rows = sentences); got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise AlignmentError(f"{what} have {array.shape[1]} columns but the alignment expects {dim}: "
                             "embed them with the model the alignment was fitted for")
    if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
        raise AlignmentError(f"{what} contain NaN, inf or non-numbers: drop those rows before aligning")
    return array.astype(np.float64)


def _top_components(centered: np.ndarray, k: int) -> np.ndarray:
    """(d × k) orthonormal basis of the k leading principal directions of centered rows."""
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    basis = np.zeros((centered.shape[1], k))
    rank = min(k, vt.shape[0])
    basis[:, :rank] = vt[:rank].T
    return basis


@dataclass(frozen=True, eq=False)
class Alignment:
    """A fitted map from a source model's space (d_s) into a target model's space (d_t)."""

    source_mean: np.ndarray  # (d_s,) float32
    target_mean: np.ndarray  # (d_t,) float32
    matrix: np.ndarray  # (d_s, d_t) float32 with orthonormal rows or columns
    scale: float  # a float32 value
    # The models the map was fitted for (their `model_id`s); "" when fitted from bare vectors.
    source_model: str = ""
    target_model: str = ""

    @property
    def source_dim(self) -> int:
        """Length of the vectors `apply` accepts."""
        return int(self.matrix.shape[0])

    @property
    def target_dim(self) -> int:
        """Length of the vectors `apply` returns."""
        return int(self.matrix.shape[1])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Map (m, d_s) source-model vectors to (m, d_t) L2-normalized float32 target-space vectors.

        Raises AlignmentError on a wrong width, NaN/inf, or a row that maps to the zero vector.
        """
        array = np.asarray(vectors)
        single = array.ndim == 1
        rows = _check_matrix(array[None] if single else array, "vectors to align", self.source_dim)
        mapped = self.scale * (rows - self.source_mean) @ self.matrix + self.target_mean
        norms = np.linalg.norm(mapped, axis=1, keepdims=True)
        if np.any(norms == 0):
            raise AlignmentError("a vector maps to zero in the target space; it cannot be searched by cosine")
        out = (mapped / norms).astype(np.float32)
        return out[0] if single else out

    def to_bytes(self) -> bytes:
        """The one byte encoding: a 20-byte header (magic, version, d_s, d_t, scale), the two model
        ids if known (version 2), then source mean, target mean and the map, little-endian float32,
        row-major. An alignment without model names is version 1."""
        named = bool(self.source_model or self.target_model)
        header = HEADER.pack(FORMAT_MAGIC, NAMED_FORMAT_VERSION if named else FORMAT_VERSION, self.source_dim, self.target_dim, self.scale)
        names = b"".join(_name_bytes(n) for n in (self.source_model, self.target_model)) if named else b""
        body = [np.ascontiguousarray(a, dtype="<f4").tobytes() for a in (self.source_mean, self.target_mean, self.matrix)]
        return header + names + b"".join(body)

    @classmethod
    def from_bytes(cls, data: bytes) -> Alignment:
        """Parse `to_bytes` output; AlignmentError if the header, length or values are wrong."""
        if len(data) < HEADER.size:
            raise AlignmentError(f"alignment bytes too short ({len(data)} < {HEADER.size} header bytes)")
        magic, version, d_s, d_t, scale = HEADER.unpack_from(data)
        if magic != FORMAT_MAGIC or version not in (FORMAT_VERSION, NAMED_FORMAT_VERSION):
            raise AlignmentError(f"not a version-{FORMAT_VERSION} or -{NAMED_FORMAT_VERSION} dso alignment (magic {magic!r}, version {version})")
        offset, names = HEADER.size, ["", ""]
        if version == NAMED_FORMAT_VERSION:
            for i in range(2):
                if offset >= len(data) or offset + 1 + data[offset] > len(data):
                    raise AlignmentError("alignment bytes end inside the model names")
                try:
                    names[i] = data[offset + 1 : offset + 1 + data[offset]].decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise AlignmentError(f"alignment model name is not UTF-8: {exc}") from exc
                offset += 1 + data[offset]
        expected = offset + 4 * (d_s + d_t + d_s * d_t)
        if len(data) != expected or d_s == 0 or d_t == 0:
            raise AlignmentError(f"alignment bytes have length {len(data)}; a {d_s}x{d_t} alignment has {expected}")
        values = np.frombuffer(data, dtype="<f4", offset=offset).astype(np.float32)
        if not np.all(np.isfinite(values)) or not np.isfinite(scale) or scale <= 0:
            raise AlignmentError("alignment bytes hold NaN/inf values or a non-positive scale")
        return cls(values[:d_s], values[d_s : d_s + d_t], values[d_s + d_t :].reshape(d_s, d_t), float(scale), names[0], names[1])

    @property
    def alignment_id(self) -> str:
        """sha256 hex digest of `to_bytes()`: equal ids mean byte-identical alignments."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def check_models(self, source_model: str | None = None, target_model: str | None = None) -> None:
        """Raise AlignmentError unless this alignment was fitted for query model `source_model` and
        library model `target_model` (model ids; None skips that side). An alignment fitted from
        bare vectors names no models and is refused whenever a side is asked: its dimensions
        alone cannot tell two 384-d models apart."""
        for side, wanted, recorded, fix in (("query", source_model, self.source_model, "for this query model"),
                                            ("library", target_model, self.target_model, "against the library's model")):
            if wanted is None or wanted == recorded:
                continue
            if not recorded:
                raise AlignmentError(f"this alignment records no {side} model (an older or hand-made file): "
                                     f"refit it {fix} with `dso align fit MODEL -o FILE`")
            raise AlignmentError(f"this alignment was fitted for {side} model {recorded}, not {wanted}: "
                                 f"fit one {fix} (`dso align fit MODEL -o FILE`)")

    def check_dims(self, source_dim: int | None = None, target_dim: int | None = None) -> None:
        """Raise AlignmentError unless this alignment takes `source_dim`-d vectors (the query model's)
        and returns `target_dim`-d ones (the library's); None skips that side."""
        if source_dim is not None and source_dim != self.source_dim:
            raise AlignmentError(
                f"this alignment maps {self.source_dim}-d vectors but the query model gives {source_dim}-d ones: "
                "it was fitted for another model; fit one for this model (`dso align fit MODEL -o FILE`)"
            )
        if target_dim is not None and target_dim != self.target_dim:
            raise AlignmentError(
                f"this alignment maps into a {self.target_dim}-d space but the library's vectors are {target_dim}-d: "
                "it was fitted for another library model; fit one against the library's (`dso align fit MODEL -o FILE`)"
            )


def fit_procrustes(source: np.ndarray, target: np.ndarray, reduce: str = "pad", center: bool = True) -> Alignment:
    """Fit the alignment mapping `source` rows (n, d_s) onto `target` rows (n, d_t), row i of both
    being the same anchor sentence embedded by the two models.

    `reduce` handles d_s ≠ d_t: ``"pad"`` (default; zero-pad the smaller side, i.e. a thin SVD) or
    ``"pca"`` (project the larger side onto its top min(d_s, d_t) anchor principal components; the
    projection is folded into the stored matrix). `center=False` exists only to measure what
    centering buys; leave it on.

    WARNING: n < max(d_s, d_t) is accepted but leaves the map undetermined outside the anchors' span.
    Raises AlignmentError for mismatched row counts, fewer than 2 anchors, NaN/inf, constant anchors,
    or an unknown `reduce`.
    """
    if reduce not in REDUCTIONS:
        raise AlignmentError(f"unknown reduce={reduce!r}; choose one of {REDUCTIONS}")
    x = _check_matrix(source, "source anchors")
    y = _check_matrix(target, "target anchors")
    if x.shape[0] != y.shape[0]:
        raise AlignmentError(f"source has {x.shape[0]} anchors, target {y.shape[0]}: row i of both must embed the same sentence")
    if x.shape[0] < MIN_ANCHORS:
        raise AlignmentError(f"need at least {MIN_ANCHORS} anchors to fit an alignment (use ~1,000); got {x.shape[0]}")
    mean_x = x.mean(axis=0) if center else np.zeros(x.shape[1])
    mean_y = y.mean(axis=0) if center else np.zeros(y.shape[1])
    xc, yc = x - mean_x, y - mean_y
    if not np.any(xc) or not np.any(yc):
        raise AlignmentError("all anchors embed to the same vector; use distinct anchor sentences")
    # Project the larger side onto its leading components: the rotation is then square.
    k = min(x.shape[1], y.shape[1])
    project_x = _top_components(xc, k) if reduce == "pca" and x.shape[1] > k else np.eye(x.shape[1])
    project_y = _top_components(yc, k) if reduce == "pca" and y.shape[1] > k else np.eye(y.shape[1])
    xp, yp = xc @ project_x, yc @ project_y
    u, s, vt = np.linalg.svd(xp.T @ yp, full_matrices=False)
    rotation = u @ vt
    # Rounded to float32 here, as stored, so a round trip through bytes changes nothing.
    scale = float(np.float32(s.sum() / np.sum(xp * xp)))
    matrix = project_x @ rotation @ project_y.T
    return Alignment(mean_x.astype(np.float32), mean_y.astype(np.float32), matrix.astype(np.float32), scale)


# ---------------------------------------------------------------------------- using an alignment


class AlignedQueryEmbedder:
    """Another model's query embeddings, delivered in the library's space: `embed(texts)` embeds
    with `model` and maps the vectors through `alignment` (unit rows of `alignment.target_dim`).

    `model` is an Embedder (e.g. ``dso.edges.embed.load_query_model("e5-small")``) or any function
    texts -> (n, d_s) array. With `target_dim` (the library's, ``library.embedder.dim``), a
    dimension mismatch on either side fails here, before anything is embedded.

    WARNING: for queries only. It has no ``model_id`` on purpose and is not an Embedder: never open
    a Library with it, since the library embeds its stored texts with its own model.
    """

    def __init__(self, model: "Embedder | Callable[[list[str]], np.ndarray]", alignment: Alignment, target_dim: int | None = None) -> None:
        """Wrap `model` (see the class docstring); AlignmentError if the dimensions do not fit."""
        self._embed = model.embed if hasattr(model, "embed") else model
        if not callable(self._embed):
            raise AlignmentError(f"model must be an Embedder or a function of texts, not {type(model).__name__}")
        alignment.check_dims(getattr(model, "dim", None), target_dim)
        if alignment.source_model:  # named alignments also refuse another model of the same width
            alignment.check_models(getattr(model, "model_id", None))
        self.alignment = alignment

    @property
    def dim(self) -> int:
        """Length of the vectors `embed` returns: the library's dimension."""
        return self.alignment.target_dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32 unit rows in the library's space, one per text, in order; pass a row
        as ``Library.search(text, query_vector=row)``."""
        if isinstance(texts, (str, bytes)):
            raise AlignmentError("embed() takes a sequence of texts, not one string: wrap it as [text]")
        items = list(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.alignment.apply(np.asarray(self._embed(items)))


@dataclass(frozen=True)
class FittedAlignment:
    """An alignment fitted by `fit_query_model` and what it cost."""

    alignment: Alignment
    anchors: int
    embed_seconds: float  # both models embedding the anchors
    fit_seconds: float


def fit_query_model(model: "Embedder", library_embedder: "Embedder", anchors: Sequence[str]) -> FittedAlignment:
    """Fit the map from `model`'s query space into `library_embedder`'s space on `anchors`: each
    model embeds every anchor (`model` as queries, as it will embed the queries the map is for),
    then `fit_procrustes` with its defaults (pad, centered). The alignment records both models'
    ids, so it is refused for any other pair. Embeds afresh; nothing is cached."""
    texts = list(anchors)
    start = time.perf_counter()
    source = model.embed(texts)
    target = library_embedder.embed(texts)
    embedded = time.perf_counter()
    alignment = replace(fit_procrustes(source, target), source_model=model.model_id, target_model=library_embedder.model_id)
    return FittedAlignment(alignment, len(texts), round(embedded - start, 2), round(time.perf_counter() - embedded, 3))
