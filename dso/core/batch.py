"""Batch documents: many experiences in one canonical, content-addressed object.

A batch document is deterministic CBOR: a header (version, embedding model and dimension, codec,
baseline id, node, creation time, count, Merkle root) and the list of leaves, each the canonical
bytes of one experience. Its IPFS CID is computed over these bytes and committed on-chain with the
root. A client that fetched a document checks, with `verify_document`, that it decodes strictly,
that every leaf is a valid experience consistent with the header, and that the root recomputed
from the leaves equals both the header's and the chain's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

import cbor2
import zstandard as zstd

from dso.core.cbor import decode_map
from dso.core.codec import first_bad_code
from dso.core.experience import Experience, ExperienceError, validate_identifier
from dso.core.merkle import merkle_root
from dso.errors import BatchError, CodecError

DOCUMENT_VERSION = 1
DOCUMENT_KIND = "dso/batch"
MAX_DOCUMENT_BYTES = 1 << 20  # one IPFS block: the CID stays verifiable from the bytes alone
# The canonical CBOR inside a compressed document, bounded before anything is decompressed (a
# decompression bomb declares a huge size or none; both are refused from the frame header).
MAX_DOCUMENT_CBOR_BYTES = 32 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_LEVEL = 3  # measured: 131 B/experience at level 3, 124 at 9, 120 at 19 (batch of 256), 0.5 ms vs 42 ms
_MAX_WINDOW = 1 << 23
MAX_LEAVES = 65_536
DOCUMENT_FIELDS = frozenset({"v", "kind", "model", "dim", "codec", "baseline", "node", "ts", "count", "root", "leaves"})


@dataclass(frozen=True)
class BatchHeader:
    """What every experience in a batch shares, and the commitment to them."""

    model: str
    dim: int
    codec: str
    baseline: bytes  # sha256 id of the codec's baseline vector (32 bytes; zeros when none)
    node: bytes
    created_at: int
    count: int
    root: bytes

    @property
    def schema_id(self) -> bytes:
        """32-byte id of (document version, model, dim, codec, baseline): the contract's indexed
        `schema`, so clients can filter batches they can read without fetching them."""
        label = f"{DOCUMENT_KIND}/{DOCUMENT_VERSION}|{self.model}|{self.dim}|{self.codec}|{self.baseline.hex()}"
        return hashlib.sha256(label.encode()).digest()


@dataclass(frozen=True)
class BatchDocument:
    """A header plus its experiences, in leaf order."""

    header: BatchHeader
    experiences: tuple[Experience, ...]

    @property
    def leaves(self) -> list[bytes]:
        return [e.canonical_bytes() for e in self.experiences]

    def to_bytes(self) -> bytes:
        """The object pinned to IPFS, whose CID is committed: `to_cbor()` in one zstd frame that
        declares its size. BatchError if it exceeds one IPFS block (split the batch).

        The compressed bytes are not canonical (another zstd version may compress differently):
        the root binds the leaves and `to_cbor()` is canonical; the CID binds the bytes pinned."""
        data = compress_document(self.to_cbor())
        if len(data) > MAX_DOCUMENT_BYTES:
            raise BatchError(f"batch document is {len(data):,} bytes compressed; split it (limit {MAX_DOCUMENT_BYTES:,}, one IPFS block)")
        return data

    def to_cbor(self) -> bytes:
        """The canonical CBOR of the document (header and leaves): what `parse_document` checks."""
        h = self.header
        body = {
            "v": DOCUMENT_VERSION,
            "kind": DOCUMENT_KIND,
            "model": h.model,
            "dim": h.dim,
            "codec": h.codec,
            "baseline": h.baseline,
            "node": h.node,
            "ts": h.created_at,
            "count": h.count,
            "root": h.root,
            "leaves": self.leaves,
        }
        return cbor2.dumps(body, canonical=True)


def compress_document(cbor: bytes) -> bytes:
    """One zstd frame of `cbor` that declares its content size (so readers bound it up front)."""
    return zstd.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True, write_checksum=False).compress(cbor)


def document_cbor(data: bytes) -> bytes:
    """The CBOR of a fetched document: decompressed from a single zstd frame that declares at most
    MAX_DOCUMENT_CBOR_BYTES and is followed by nothing; or `data` itself if it is not zstd (documents
    published before compression). BatchError names what is wrong, before any large allocation."""
    if not data.startswith(ZSTD_MAGIC):
        return data
    try:
        size = zstd.frame_content_size(data)
    except zstd.ZstdError as exc:
        raise BatchError(f"document is not a valid zstd frame: {exc}") from exc
    if size < 0:
        raise BatchError("compressed document does not declare its size; refused unread (a decompression bomb could hide behind it)")
    if size > MAX_DOCUMENT_CBOR_BYTES:
        raise BatchError(f"compressed document declares {size:,} bytes, above the {MAX_DOCUMENT_CBOR_BYTES:,} limit; refused unread")
    reader = zstd.ZstdDecompressor(max_window_size=_MAX_WINDOW).decompressobj()
    try:
        cbor = reader.decompress(data)
    except zstd.ZstdError as exc:
        raise BatchError(f"compressed document is corrupt: {exc}") from exc
    if not reader.eof or reader.unused_data or len(cbor) != size:
        raise BatchError("compressed document is not exactly one complete zstd frame of its declared size")
    return cbor


def build_batch(experiences: Sequence[Experience], dim: int, baseline: bytes, created_at: int) -> BatchDocument:
    """Bundle experiences of one node, model and codec into a document with its Merkle root."""
    if not experiences:
        raise BatchError("a batch needs at least one experience")
    if len(experiences) > MAX_LEAVES:
        raise BatchError(f"a batch holds at most {MAX_LEAVES} experiences, got {len(experiences)}")
    first = experiences[0]
    for e in experiences:
        if (e.model, e.codec, e.node) != (first.model, first.codec, first.node):
            raise BatchError("all experiences of a batch must share model, codec and node")
    ids = [e.experience_id for e in experiences]
    if len(set(ids)) != len(ids):
        raise BatchError("a batch must not repeat an experience")
    if len(baseline) != 32:
        raise BatchError("baseline id must be 32 bytes")
    header = BatchHeader(
        model=first.model,
        dim=dim,
        codec=first.codec,
        baseline=bytes(baseline),
        node=first.node,
        created_at=created_at,
        count=len(experiences),
        root=merkle_root([e.canonical_bytes() for e in experiences]),
    )
    return BatchDocument(header, tuple(experiences))


def parse_document(data: bytes) -> BatchDocument:
    """Strictly decode document bytes: schema, canonical form, valid leaves, header consistency
    and the Merkle root recomputed from the leaves. Raise BatchError saying what is wrong."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise BatchError(f"document is {len(data):,} bytes, above the {MAX_DOCUMENT_BYTES:,} limit")
    cbor = document_cbor(data)
    body = decode_map(cbor, "document", DOCUMENT_FIELDS, frozenset(), BatchError)
    if body["v"] != DOCUMENT_VERSION or body["kind"] != DOCUMENT_KIND:
        raise BatchError(f"unsupported document {body['kind']!r} version {body['v']!r}")
    leaves = body["leaves"]
    if not isinstance(leaves, list) or not all(isinstance(x, bytes) for x in leaves) or not leaves:
        raise BatchError("leaves must be a non-empty list of byte strings")
    for name in ("dim", "ts", "count"):
        # Below 2**63 like an experience's time: a CBOR bignum here would pass every check (the
        # time is bound by the CID only) and then overflow whatever formats it as a date.
        if isinstance(body[name], bool) or not isinstance(body[name], int) or not 0 <= body[name] < 2**63:
            raise BatchError(f"{name} must be a non-negative integer below 2**63")
    for name, size in (("baseline", 32), ("node", 20), ("root", 32)):
        if not isinstance(body[name], bytes) or len(body[name]) != size:
            raise BatchError(f"{name} must be {size} bytes")
    try:
        model = validate_identifier(body["model"], "model")
        codec = validate_identifier(body["codec"], "codec")
        experiences = tuple(Experience.from_bytes(leaf) for leaf in leaves)
    except ExperienceError as exc:
        raise BatchError(f"invalid experience in document: {exc}") from exc
    header = BatchHeader(model, body["dim"], codec, body["baseline"], body["node"], body["ts"], body["count"], body["root"])
    if header.count != len(leaves):
        raise BatchError(f"header count {header.count} but {len(leaves)} leaves")
    for e in experiences:
        if (e.model, e.codec, e.node) != (model, codec, header.node):
            raise BatchError(f"experience {e.experience_id[:12]} disagrees with the header's model, codec or node")
    if merkle_root(leaves) != header.root:
        raise BatchError("Merkle root recomputed from the leaves differs from the header's root")
    # Codes are checked once the leaves are known to be the committed ones: a code no client can
    # decode refuses the batch here, by leaf, instead of being skipped later in every aggregation.
    try:
        bad_code = first_bad_code(codec, header.dim, [e.code for e in experiences])
    except CodecError as exc:
        raise BatchError(f"header dim {header.dim} does not fit codec {codec}: {exc}") from exc
    if bad_code is not None:
        raise BatchError(f"leaf {bad_code[0]}: {bad_code[1]}")
    document = BatchDocument(header, experiences)
    if document.to_cbor() != cbor:
        raise BatchError("document bytes are not in canonical form")
    return document


def verify_document(
    data: bytes,
    onchain_root: bytes,
    onchain_count: int | None = None,
    onchain_schema: bytes | None = None,
    onchain_node: bytes | None = None,
) -> BatchDocument:
    """Parse `data` and check it against what the chain committed (root, count, schema, and the
    address of the node that submitted it); raise BatchError on mismatch.

    Provenance: the header's node (which `parse_document` already holds every leaf's node to) must
    be the on-chain submitter, or a batch one wallet prepared could enter every library under the
    name of whichever node committed it.

    CAUTION: the root binds the leaves, the schema binds model, dim, codec and baseline, but the
    header's creation time is bound only by the document's CID: callers must also check the CID
    of the fetched bytes (the content store's `get` does).
    """
    document = parse_document(data)
    if onchain_schema is not None and document.header.schema_id != bytes(onchain_schema):
        raise BatchError("document schema (model, dim, codec, baseline) differs from the on-chain schema")
    if document.header.root != bytes(onchain_root):
        raise BatchError(f"document root {document.header.root.hex()} differs from the on-chain root {bytes(onchain_root).hex()}")
    if onchain_count is not None and document.header.count != onchain_count:
        raise BatchError(f"document holds {document.header.count} experiences; the chain says {onchain_count}")
    if onchain_node is not None and document.header.node != bytes(onchain_node):
        raise BatchError(f"the batch names node 0x{document.header.node.hex()} in its header and leaves, but node "
                         f"0x{bytes(onchain_node).hex()} committed it on-chain: refused, its experiences are not that node's")
    return document


def summarize(document: BatchDocument) -> dict[str, Any]:
    """A readable header for CLI output."""
    h = document.header
    return {
        "model": h.model,
        "dim": h.dim,
        "codec": h.codec,
        "baseline": h.baseline.hex(),
        "node": "0x" + h.node.hex(),
        "created_at": h.created_at,
        "count": h.count,
        "root": h.root.hex(),
        "schema": h.schema_id.hex(),
    }
