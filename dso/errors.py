"""The one exception hierarchy of dso: every failure a user can act on has a type here."""

from __future__ import annotations


class DsoError(Exception):
    """Base class of every error dso raises on purpose; the CLI prints these without a traceback."""


class ConfigError(DsoError):
    """A configuration file or setting is missing or malformed."""


class ToolchainError(DsoError):
    """A tool dso drives (solc wrapper, Anvil, npm packages) is missing or failed."""


class CompileError(ToolchainError):
    """The Solidity compiler reported errors."""


class DevnetError(DsoError):
    """The local devnet could not be started, stopped or reached."""


class ChainError(DsoError):
    """Talking to the EVM node failed (unreachable RPC, timeout, dropped transaction)."""


class RpcUnavailable(ChainError):
    """The RPC endpoint did not answer; nothing was sent, or it is unknown whether it was."""


class ContractRevert(ChainError):
    """The registry contract reverted. `name` and `args` are the decoded custom error."""

    def __init__(self, name: str, args: tuple[object, ...] = (), message: str | None = None) -> None:
        self.name = name
        self.args_ = tuple(args)
        rendered = ", ".join(str(a) for a in self.args_)
        super().__init__(message or f"contract reverted with {name}({rendered})")


class BatchRefused(ChainError):
    """The chain refuses a batch for good (the wallet is not an admitted node, or another node
    already committed its root): retrying cannot help. `dso outbox list` shows the reason."""


class SignatureError(DsoError):
    """A signature could not be made or does not verify."""


class EmbeddingError(DsoError):
    """An embedder name is unknown, its input is not a list of texts, or it produced unusable vectors."""


class EmbedderUnavailable(EmbeddingError):
    """The package that ships an embedding model, or the runtime that executes it, is not installed."""


class CodecError(DsoError):
    """Vectors or codes do not fit a codec: wrong dimension or width, NaN/inf, zero vector, unknown codec id."""


class StoreError(DsoError):
    """The content store (IPFS node or local blockstore) failed to store, find or verify an object."""


class StoreUnavailable(StoreError):
    """The IPFS RPC API could not be reached (refused, unroutable); nothing was stored or read."""


class StoreTimeout(StoreUnavailable):
    """The IPFS RPC API accepted the connection but did not answer within the client's timeout."""


class ContentNotFound(StoreError):
    """The store does not hold the object, or the node could not retrieve it within its timeout."""


class CidMismatch(StoreError):
    """Bytes do not hash to the CID they were stored or fetched under: corruption or a lying node."""


class ObjectTooLarge(StoreError):
    """A payload exceeds the single-block limit, or a fetched object exceeds the caller's max_bytes."""


class InvalidCid(StoreError):
    """A CID is malformed, or is not the form dso stores (CIDv1, raw codec, sha2-256)."""


class AggregationError(DsoError):
    """Reports or aggregation settings are unusable: a malformed report, vectors of mixed dimension,
    an unknown aggregator, weights an aggregator cannot honour, or an invalid acceptance policy."""


class InsufficientReports(AggregationError):
    """A robust aggregator's precondition fails for this many inputs (Krum needs n > 2f + 2, a trimmed
    mean n > 2f): collect reports from more nodes or assume fewer Byzantine ones."""


class AlignmentError(DsoError):
    """Anchor or query vectors cannot be used for a cross-model alignment (wrong shape, NaN/inf, too
    few anchors, a dimension the alignment was not fitted for), or alignment bytes are malformed."""


# ---- input and data


class ExperienceError(DsoError):
    """An experience (or its encoding) is invalid; the message names the field and the rule."""


class BatchError(DsoError):
    """A batch document is malformed, inconsistent, or does not match the chain."""


class ProofError(DsoError):
    """An inclusion proof is malformed or does not verify against the root."""


class InputError(DsoError):
    """An input file of experiences is malformed; the message names the line and the field."""


class QueuedInOutbox(DsoError):
    """Batches were prepared and are safe in the outbox, but could not be committed now (a service is down)."""


class LibraryError(DsoError):
    """The library file is unusable, or a query is malformed."""


class WalletError(DsoError):
    """A keystore is missing, malformed, or its password is wrong."""


class DatasetError(DsoError):
    """A shared data set is missing or malformed."""


# ---- language models


class LLMError(DsoError):
    """A language model (the in-process one or an OpenAI-compatible endpoint) could not answer."""


class LLMUnavailable(LLMError):
    """The model cannot be reached: its runtime or weights package is not installed, or the endpoint
    refused the connection or kept failing after the client's retries."""


class LLMTimeout(LLMUnavailable):
    """The endpoint accepted the request but did not answer within the client's timeout."""


class LLMRequestError(LLMError):
    """The request was refused as malformed (bad messages or sampling settings, an unknown model,
    a wrong API key): retrying the same request cannot help."""


class LLMResponseError(LLMError):
    """The endpoint answered, but not with a chat completion dso can read (no choices, no text)."""


class ModelIntegrityError(LLMError):
    """A model file's bytes do not hash to the sha256 dso pins for it: a corrupt or altered download."""
