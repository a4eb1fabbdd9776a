"""dso: a blockchain-backed, decentralized registry of AI-agent experiences.

The supported Python API is what `__all__` lists, importable from here (``from dso import Library,
Registry``); module paths below `dso.core`, `dso.edges`, `dso.workflows` and `dso.interfaces` may
move. Names are loaded on first use, so ``import dso`` stays cheap (no web3, torch or SQLite until
a name that needs them is touched).

Layers (imports point one way):
- `dso.core`: experiences, codecs, Merkle trees, batch documents, robust aggregation, alignment;
  bytes and numbers in, bytes and numbers out.
- `dso.edges`: the chain, IPFS, wallets, embedding models, config, files, devnet services, data sets;
  every call has a timeout and a typed error.
- `dso.workflows`: publish, verify, sync, the library and its index, the devnet bring-up.
- `dso.interfaces`: the command line and the demo.
Every error dso raises on purpose is a `DsoError` from `dso.errors`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_ERRORS = (
    "DsoError", "ConfigError", "ToolchainError", "CompileError", "DevnetError", "ChainError", "RpcUnavailable",
    "ContractRevert", "BatchRefused", "SignatureError", "EmbeddingError", "EmbedderUnavailable", "CodecError", "StoreError",
    "StoreUnavailable", "StoreTimeout", "ContentNotFound", "CidMismatch", "ObjectTooLarge", "InvalidCid",
    "AggregationError", "InsufficientReports", "AlignmentError", "ExperienceError", "BatchError", "ProofError",
    "InputError", "QueuedInOutbox", "LibraryError", "WalletError", "DatasetError", "LLMError", "LLMUnavailable", "LLMTimeout", "LLMRequestError",
    "LLMResponseError", "ModelIntegrityError",
)

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    **{name: "dso.errors" for name in _ERRORS},
    # core
    **dict.fromkeys(("Experience", "Insight"), "dso.core.experience"),
    **dict.fromkeys(("BatchDocument", "BatchHeader", "build_batch", "parse_document", "verify_document"), "dso.core.batch"),
    **dict.fromkeys(("InclusionProof", "merkle_root", "prove_inclusion", "verify_inclusion"), "dso.core.merkle"),
    **dict.fromkeys(("Codec", "get_codec", "codec_for"), "dso.core.codec"),
    **dict.fromkeys(("AcceptancePolicy", "Report", "aggregate"), "dso.core.aggregate"),
    **dict.fromkeys(("Alignment", "AlignedQueryEmbedder", "fit_procrustes", "fit_query_model"), "dso.core.align"),
    # edges
    **dict.fromkeys(("Registry", "Status", "ProposalKind", "connect"), "dso.edges.chain"),
    **dict.fromkeys(("ContentStore", "KuboClient", "LocalStore", "cid_of"), "dso.edges.ipfs"),
    **dict.fromkeys(("Embedder", "load_embedder", "load_query_model"), "dso.edges.embed"),
    **dict.fromkeys(("NetworkConfig", "load_config", "save_config", "dso_home"), "dso.edges.config"),
    **dict.fromkeys(("ChatModel", "Completion", "HttpChatModel", "LocalChatModel", "LLMSettings", "open_chat_model"), "dso.edges.llm"),
    **dict.fromkeys(("create_wallet", "import_wallet", "load_wallet", "list_wallets"), "dso.edges.wallet"),
    # workflows
    **dict.fromkeys(("publish", "FlushResult", "read_insights", "prepare_batch", "Outbox", "OutboxEntry", "Committed"), "dso.workflows.publish"),
    **dict.fromkeys(("fetch_and_verify", "find_commitment", "Commitment"), "dso.workflows.verify"),
    **dict.fromkeys(("sync", "SyncReport"), "dso.workflows.sync"),
    **dict.fromkeys(("Library", "Hit", "Source", "AggregationSummary"), "dso.workflows.library"),
    **dict.fromkeys(("bring_up", "Devnet"), "dso.workflows.devnet"),
    **dict.fromkeys(("ask", "Answer", "RelevanceGate"), "dso.workflows.agent"),
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dso' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
