"""Fetch a batch and verify it against the chain: the one path every reader takes.

`dso sync`, `dso show`, `dso dao revoke-experience` and any program that reads a batch go through
`fetch_and_verify`. What the chain committed for a batch (`Commitment`: CID, count, schema,
submitting node) comes from its `BatchSubmitted` event; the content store recomputes the CID from
the fetched bytes; `verify_document` recomputes the Merkle root and checks it, the count and the
schema against the commitment.
"""

from __future__ import annotations

from dataclasses import dataclass

from dso.core.batch import BatchDocument, verify_document
from dso.edges.chain import Registry, RegistryEvent
from dso.edges.ipfs import ContentStore, cid_from_bytes
from dso.errors import DsoError, InvalidCid

# Prefix of a committed CID no client can parse (the contract only checks it is non-empty): kept
# as hex so the batch is refused when it would be loaded, instead of stopping a sync at its event.
UNPARSEABLE = "unparseable:"


@dataclass
class Commitment:
    """What the chain committed for one batch, from its `BatchSubmitted` event."""

    cid: str
    count: int
    schema: str  # hex
    node_id: int

    @classmethod
    def from_event(cls, event: RegistryEvent) -> "Commitment":
        """The commitment a `BatchSubmitted` event announces."""
        args = event.args
        return cls(committed_cid_text(args["cid"]), int(args["count"]), bytes(args["schema"]).hex(), int(args["nodeId"]))


def committed_cid_text(raw: bytes) -> str:
    """The CID a node committed, as text (or UNPARSEABLE + hex for one no client can parse)."""
    try:
        return cid_from_bytes(raw)
    except InvalidCid:
        return UNPARSEABLE + bytes(raw).hex()


def find_commitment(registry: Registry, root: bytes, deploy_block: int = 0) -> Commitment:
    """The commitment of batch `root`, looked up by its indexed event topic; DsoError if the chain
    holds no such batch."""
    event = registry.batch_submission(root, from_block=deploy_block)
    if event is None:
        raise DsoError(f"no BatchSubmitted event for {root.hex()}: the registry {registry.address} holds no such batch")
    return Commitment.from_event(event)


def fetch_and_verify(store: ContentStore, root: str, commitment: Commitment) -> BatchDocument:
    """Fetch batch `root` (hex) by its committed CID and check it against the chain's root, count
    and schema. Raises InvalidCid, ContentNotFound, CidMismatch, ObjectTooLarge or BatchError."""
    if commitment.cid.startswith(UNPARSEABLE):
        cid_from_bytes(bytes.fromhex(commitment.cid[len(UNPARSEABLE):]))  # raises InvalidCid with the reason
    data = store.get(commitment.cid)
    return verify_document(data, bytes.fromhex(root), commitment.count, bytes.fromhex(commitment.schema))
