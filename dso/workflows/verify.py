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
    # Where the event stands on the chain (block << 24 | log index): the order in which one node's
    # reports count against the per-node cap, the same for every client.
    position: int = 0

    @classmethod
    def from_event(cls, event: RegistryEvent) -> "Commitment":
        """The commitment a `BatchSubmitted` event announces."""
        args = event.args
        return cls(committed_cid_text(args["cid"]), int(args["count"]), bytes(args["schema"]).hex(), int(args["nodeId"]),
                   (event.block_number << 24) | event.log_index)


def committed_cid_text(raw: bytes) -> str:
    """The CID a node committed, as text (or UNPARSEABLE + hex for one no client can parse)."""
    try:
        return cid_from_bytes(raw)
    except InvalidCid:
        return UNPARSEABLE + bytes(raw).hex()


def find_commitment(registry: Registry, root: bytes, deploy_block: int = 0) -> tuple[Commitment, bytes]:
    """The commitment of batch `root`, looked up by its indexed event topic, and its submitting
    node's address (node ids are never reused, so the id names one address for good); DsoError if
    the chain holds no such batch."""
    event = registry.batch_submission(root, from_block=deploy_block)
    if event is None:
        raise DsoError(f"no BatchSubmitted event for {root.hex()}: the registry {registry.address} holds no such batch")
    commitment = Commitment.from_event(event)
    return commitment, node_address(registry, commitment.node_id)


def node_address(registry: Registry, node_id: int) -> bytes:
    """The address of node `node_id` (20 bytes)."""
    addresses = registry.node_addresses(node_id - 1, 1)
    if node_id < 1 or not addresses:
        raise DsoError(f"the registry knows no node {node_id}")
    return bytes.fromhex(addresses[0][2:])


def fetch_and_verify(store: ContentStore, root: str, commitment: Commitment, submitter: bytes) -> BatchDocument:
    """Fetch batch `root` (hex) by its committed CID and check it against the chain's root, count,
    schema and submitting node (`submitter`, 20 bytes). Raises InvalidCid, ContentNotFound,
    CidMismatch, ObjectTooLarge, StoreUnavailable or BatchError."""
    if commitment.cid.startswith(UNPARSEABLE):
        cid_from_bytes(bytes.fromhex(commitment.cid[len(UNPARSEABLE):]))  # raises InvalidCid with the reason
    data = store.get(commitment.cid)
    return verify_document(data, bytes.fromhex(root), commitment.count, bytes.fromhex(commitment.schema), submitter)
