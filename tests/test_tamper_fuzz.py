"""Tamper detection, fuzzed (issue 5 item 2): at least 1,000 seeded random mutations each of batch
documents, CIDs, Merkle proofs and EIP-712 submissions are all rejected with the right error, and a
tampered document served for an accepted batch never reaches the library.

Every generator draws from one `random.Random(SEED)`, so a failure is reproducible; set
DSO_FUZZ_SEED to explore other mutations. Counts are of mutations that really change something:
re-spellings of the same CID or proof are counted apart and must behave like the original.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Iterator

import cbor2
import httpx
import pytest
from conftest import deploy_dao
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import to_checksum_address
from multiformats import CID, multibase, multicodec, varint
from pymerkle import InvalidProof
from pymerkle import verify_inclusion as pymerkle_verify
from pymerkle.core import _inclusion_path_layout
from pymerkle.proof import InclusionProof as PymerkleProof

from dso.core.batch import BatchDocument, BatchError, verify_document
from dso.core.experience import Experience
from dso.core.merkle import InclusionProof, ProofError, leaf_hash, merkle_root, node_hash, prove_inclusion, verify_inclusion
from dso.edges.chain import Registry, SignedSubmission, Status
from dso.edges.datasets import gsm8k_insights
from dso.edges.embed import load_embedder
from dso.edges.ipfs import CID_PREFIX, SHA2_256, KuboClient, LocalStore, cid_from_bytes, cid_of, cid_to_bytes, normalize_cid, verify
from dso.errors import CidMismatch, ContentNotFound, InvalidCid
from dso.workflows.publish import prepare_batch

SEED = int(os.environ.get("DSO_FUZZ_SEED", "20260522"))
MIN_MUTATIONS = 1_000
NODE_ACCOUNT = 6  # deploy_dao admits accounts[6] as its first node


@pytest.fixture(scope="module")
def embedder():
    return load_embedder("minilm")


@pytest.fixture(scope="module")
def documents(embedder, accounts) -> tuple[BatchDocument, BatchDocument]:
    """Two real batches of GSM8K insights (real embeddings) from the DAO's first node."""
    node = accounts[NODE_ACCOUNT].address
    first = prepare_batch(gsm8k_insights(6, offset=900), node, embedder, now=1_763_000_000)
    second = prepare_batch(gsm8k_insights(5, offset=950), node, embedder, now=1_763_000_500)
    return first, second


class TamperedDisk(LocalStore):
    """A local store whose disk was tampered with: whatever CID is asked, it opens the one file
    `serve` last wrote. Its `get` is LocalStore's own, so the CID check under test is the real one."""

    def serve(self, data: bytes) -> None:
        (self.path / "tampered").write_bytes(data)

    def object_path(self, cid: str):
        normalize_cid(cid)
        return self.path / "tampered"


class LyingTransport(httpx.HTTPTransport):
    """Talks to the real IPFS node, but answers `block/get` for the CIDs in `lies` with other bytes:
    a node (or a man in the middle) serving tampered content."""

    def __init__(self, lies: dict[str, bytes]) -> None:
        super().__init__()
        self.lies = lies

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        lie = self.lies.get(request.url.params.get("arg", "")) if request.url.path.endswith("/block/get") else None
        if lie is None:
            return super().handle_request(request)
        return httpx.Response(200, content=lie, headers={"content-type": "application/octet-stream"})


# ------------------------------------------------------------------------------ batch documents


@dataclass(frozen=True)
class Mutation:
    kind: str
    data: bytes
    expect: str | None = None  # a regex the BatchError must match; None: any BatchError


def _random_id(rng: random.Random) -> str:
    return rng.choice("abcdefghijklmnopqrstuvwxyz") + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789-._", k=rng.randint(0, 20)))


def _leaf_variant(rng: random.Random, leaf: bytes) -> tuple[str, bytes, str | None]:
    """One experience re-encoded canonically with one field changed; the expected complaint when the
    header's root is left as it was (None: the leaf itself is valid and only the root can tell)."""
    body = cbor2.loads(leaf)
    field = rng.choice(["text", "conf", "code", "domain", "ts", "meta", "model", "codec", "node", "v", "extra", "noncanonical"])
    if field == "text":
        text, at = body["text"], rng.randrange(len(body["text"]) + 1)
        body["text"] = (text[:at] + rng.choice("abcxyz0123") + text[at:]).strip() if rng.random() < 0.5 else text[:-1].strip() or "x"
    elif field == "conf":
        body["conf"] = rng.choice([c for c in (0, 1, 999_999, 1_000_000, rng.randint(0, 1_000_000)) if c != body["conf"]])
    elif field == "code":
        code = bytearray(body["code"])
        code[rng.randrange(len(code))] ^= 1 << rng.randrange(8)
        body["code"] = bytes(code)
    elif field == "domain":
        body["domain"] = rng.choice(["math", "math.algebra", "cooking", "math.arithmetic.x"])
    elif field == "ts":
        body["ts"] = body["ts"] + rng.randint(1, 10**6)
    elif field == "meta":
        body["meta"] = {"k": rng.randint(0, 100)}
    elif field in ("model", "codec"):
        body[field] = body[field] + "-" + _random_id(rng)
        return field, cbor2.dumps(body, canonical=True), "disagrees with the header"
    elif field == "node":
        body["node"] = rng.randbytes(20)
        return field, cbor2.dumps(body, canonical=True), "disagrees with the header"
    elif field == "v":
        body["v"] = rng.choice([0, 2, "1", 1.0, None])
        return field, cbor2.dumps(body, canonical=True), "invalid experience"
    elif field == "extra":
        body[rng.choice(["embedding", "signature", "x"])] = rng.randint(0, 9)
        return field, cbor2.dumps(body, canonical=True), "invalid experience.*unexpected"
    else:
        return field, cbor2.dumps(dict(reversed(list(body.items())))), "invalid experience.*canonical"
    new = cbor2.dumps(body, canonical=True)
    return field, new, None


def document_mutations(rng: random.Random, document: BatchDocument, other: BatchDocument) -> Iterator[Mutation]:
    """Byte-level damage and re-encoded documents with one thing changed, endlessly. The canonical
    CBOR is mutated (readers accept it bare, as documents published before compression were);
    the zstd envelope has its own fuzz below."""
    original, foreign = document.to_cbor(), other.to_cbor()
    body = cbor2.loads(original)
    leaves = list(body["leaves"])

    def encode(**changes: object) -> bytes:
        return cbor2.dumps({**body, **changes}, canonical=True)

    while True:
        kind = rng.choice(
            ["flip", "set", "insert", "delete", "truncate", "extend", "splice", "duplicate", "swap",
             "header", "header-type", "fields", "leaves-order", "leaves-count", "leaf", "leaf-consistent", "leaf-bytes", "noncanonical"]
        )
        data = bytearray(original)
        if kind == "flip":
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            yield Mutation(kind, bytes(data))
        elif kind == "set":
            at = rng.randrange(len(data))
            data[at] = rng.choice([v for v in range(256) if v != data[at]])
            yield Mutation(kind, bytes(data))
        elif kind == "insert":
            at = rng.randrange(len(data) + 1)
            yield Mutation(kind, bytes(data[:at] + rng.randbytes(rng.randint(1, 16)) + data[at:]))
        elif kind == "delete":
            at = rng.randrange(len(data))
            yield Mutation(kind, bytes(data[:at] + data[at + rng.randint(1, 16) :]))
        elif kind == "truncate":
            yield Mutation(kind, bytes(data[: rng.randrange(len(data))]))
        elif kind == "extend":
            yield Mutation(kind, bytes(data) + rng.randbytes(rng.randint(1, 64)), "canonical")
        elif kind == "splice":
            a, b = rng.randrange(len(original)), rng.randrange(len(foreign))
            first, second = (original, foreign) if rng.random() < 0.5 else (foreign, original)
            yield Mutation(kind, first[:a] + second[b:])
        elif kind == "duplicate":
            a = rng.randrange(len(data))
            b = rng.randint(a + 1, min(len(data), a + 64))
            yield Mutation(kind, bytes(data[:b] + data[a:b] + data[b:]))
        elif kind == "swap":
            n = rng.randint(1, 32)
            a, b = rng.randrange(len(data) - n), rng.randrange(len(data) - n)
            data[a : a + n], data[b : b + n] = original[b : b + n], original[a : a + n]
            yield Mutation(kind, bytes(data))
        elif kind == "header":
            field = rng.choice(["v", "kind", "model", "dim", "codec", "baseline", "node", "ts", "count", "root"])
            if field == "v":
                yield Mutation("header:v", encode(v=rng.choice([0, 2, 3, 255])), "unsupported document")
            elif field == "kind":
                yield Mutation("header:kind", encode(kind=rng.choice(["dso/batch2", "", "dso/Batch", _random_id(rng)])), "unsupported document")
            elif field in ("model", "codec"):
                valid = rng.random() < 0.5
                value = body[field] + "-" + _random_id(rng) if valid else rng.choice([" ", "bad id", "é", "x" * 65])
                yield Mutation(f"header:{field}", encode(**{field: value}), "disagrees with the header" if valid else f"{field} ")
            elif field == "dim":
                # the codes' form is checked against the header's dim first (issue 11), then the schema
                yield Mutation("header:dim", encode(dim=rng.choice([0, 1, 383, 385, 768, rng.randint(0, 2**40)])),
                               r"schema|does not fit codec|code of \d+ dimensions")
            elif field == "baseline":
                if rng.random() < 0.5:
                    yield Mutation("header:baseline", encode(baseline=rng.randbytes(32)), "schema")
                else:
                    yield Mutation("header:baseline", encode(baseline=rng.randbytes(rng.choice([0, 20, 31, 33, 64]))), "baseline must be 32 bytes")
            elif field == "node":
                if rng.random() < 0.5:
                    yield Mutation("header:node", encode(node=rng.randbytes(20)), "disagrees with the header")
                else:
                    yield Mutation("header:node", encode(node=rng.randbytes(rng.choice([0, 19, 21, 32]))), "node must be 20 bytes")
            elif field == "ts":
                # Bound by the CID only: verify_document accepts it; the CID check must refuse it.
                yield Mutation("header:ts", encode(ts=body["ts"] + rng.choice([-1, 1, rng.randint(2, 10**9)])))
            elif field == "count":
                yield Mutation("header:count", encode(count=rng.choice([c for c in (0, 1, len(leaves) - 1, len(leaves) + 1, 2**32) if c != len(leaves)])), "header count")
            else:
                yield Mutation("header:root", encode(root=rng.randbytes(32)), "Merkle root recomputed")
        elif kind == "header-type":
            field = rng.choice(sorted(body))
            value = rng.choice([None, True, -1, 1.5, "x", b"x", [], {}, [b"x"], 2**70, {"a": 1}])
            if value == body[field] and type(value) is type(body[field]):
                continue
            yield Mutation(f"header-type:{field}", encode(**{field: value}))
        elif kind == "fields":
            if rng.random() < 0.5:
                extra = rng.choice(["signature", "version", "extra", "Leaves", "v "])
                yield Mutation("fields:extra", encode(**{extra: rng.choice([0, b"", "x"])}), "fields wrong")
            else:
                missing = rng.choice(sorted(body))
                yield Mutation("fields:missing", cbor2.dumps({k: v for k, v in body.items() if k != missing}, canonical=True), "fields wrong")
        elif kind == "leaves-order":
            order = leaves[:]
            while order == leaves:
                rng.shuffle(order)
            if rng.random() < 0.5:
                yield Mutation("leaves:reordered", encode(leaves=order), "Merkle root recomputed")
            else:
                yield Mutation("leaves:reordered+root", encode(leaves=order, root=merkle_root(order)), "on-chain root")
        elif kind == "leaves-count":
            changed = leaves[:]
            if rng.random() < 0.5:
                del changed[rng.randrange(len(changed))]
            else:
                extra = rng.choice(other.leaves + leaves)  # a foreign experience, or a repeated one
                changed.insert(rng.randrange(len(changed) + 1), extra)
            step = rng.choice(["leaves", "count", "root"])
            if step == "leaves":
                yield Mutation("leaves:count", encode(leaves=changed), "header count")
            elif step == "count":
                yield Mutation("leaves:count+header", encode(leaves=changed, count=len(changed)), "disagrees with the header|Merkle root recomputed")
            else:
                yield Mutation("leaves:count+header+root", encode(leaves=changed, count=len(changed), root=merkle_root(changed)),
                               "disagrees with the header|on-chain root")
        elif kind in ("leaf", "leaf-consistent"):
            at = rng.randrange(len(leaves))
            field, new_leaf, complaint = _leaf_variant(rng, leaves[at])
            changed = leaves[:at] + [new_leaf] + leaves[at + 1 :]
            if kind == "leaf":
                yield Mutation(f"leaf:{field}", encode(leaves=changed), complaint or "Merkle root recomputed")
            else:
                yield Mutation(f"leaf:{field}+root", encode(leaves=changed, root=merkle_root(changed)), complaint or "on-chain root")
        elif kind == "leaf-bytes":
            at = rng.randrange(len(leaves))
            leaf = bytearray(leaves[at])
            leaf[rng.randrange(len(leaf))] ^= 1 << rng.randrange(8)
            changed = leaves[:at] + [bytes(leaf)] + leaves[at + 1 :]
            yield Mutation("leaf-bytes", encode(leaves=changed), "invalid experience|Merkle root recomputed|disagrees with the header")
        else:
            yield Mutation("noncanonical", cbor2.dumps(dict(reversed(list(body.items())))), "not in canonical form")


def test_a_thousand_document_mutations_are_all_rejected_by_the_root_or_the_cid(documents, tmp_path):
    document, other = documents
    original = document.to_cbor()
    cid = cid_of(original)
    h = document.header
    disk = TamperedDisk(tmp_path / "disk", durable=False)
    rng = random.Random(SEED)
    kinds: Counter[str] = Counter()
    cid_only = 0
    seen: set[bytes] = set()
    for mutation in document_mutations(rng, document, other):
        if len(seen) >= 1_200:
            break
        if mutation.data == original or mutation.data in seen:
            continue
        seen.add(mutation.data)
        kinds[mutation.kind.split(":")[0]] += 1
        # The CID check: what the content store does on every get.
        with pytest.raises(CidMismatch):
            verify(cid, mutation.data)
        disk.serve(mutation.data)
        with pytest.raises(CidMismatch, match="modified on disk"):
            disk.get(cid)
        # The root check: strict parsing against the chain's root, count and schema.
        try:
            parsed = verify_document(mutation.data, h.root, h.count, h.schema_id)
        except BatchError as exc:
            if mutation.expect is not None:
                assert re.search(mutation.expect, str(exc)), f"{mutation.kind}: {exc}"
            continue
        # Only the creation time is bound by the CID alone (documented in verify_document).
        assert parsed.experiences == document.experiences, mutation.kind
        assert replace(parsed.header, created_at=h.created_at) == h, mutation.kind
        cid_only += 1
    assert len(seen) >= MIN_MUTATIONS
    assert 0 < cid_only < 100 and kinds["header"] > 0, (cid_only, kinds)
    print(f"\ndocument mutations: {len(seen)} ({dict(sorted(kinds.items()))}); {cid_only} refused by the CID alone")


def envelope_mutations(rng: random.Random, original: bytes, foreign: bytes) -> Iterator[Mutation]:
    """Byte-level damage to the compressed object as pinned (the zstd frame), endlessly."""
    while True:
        kind = rng.choice(["flip", "truncate", "extend", "splice", "second-frame", "insert", "delete"])
        data = bytearray(original)
        if kind == "flip":
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            yield Mutation(kind, bytes(data))
        elif kind == "truncate":
            yield Mutation(kind, bytes(data[: rng.randrange(len(data))]))
        elif kind == "extend":
            yield Mutation(kind, bytes(data) + rng.randbytes(rng.randint(1, 64)), "exactly one complete zstd frame")
        elif kind == "second-frame":
            yield Mutation(kind, bytes(data) + foreign, "exactly one complete zstd frame")
        elif kind == "splice":
            a, b = rng.randrange(len(original)), rng.randrange(len(foreign))
            yield Mutation(kind, original[:a] + foreign[b:])
        elif kind == "insert":
            at = rng.randrange(len(data) + 1)
            yield Mutation(kind, bytes(data[:at] + rng.randbytes(rng.randint(1, 16)) + data[at:]))
        else:
            at = rng.randrange(len(data))
            yield Mutation(kind, bytes(data[:at] + data[at + rng.randint(1, 16) :]))


def test_a_thousand_mutations_of_the_compressed_object_are_rejected_by_the_frame_the_root_or_the_cid(documents):
    """What IPFS serves is the zstd frame: damaged frames, trailing bytes and second frames are
    refused before any CBOR is read; a frame that still decodes must hold the canonical document."""
    document, other = documents
    original, h = document.to_bytes(), document.header
    cid = cid_of(original)
    rng = random.Random(SEED + 1)
    seen: set[bytes] = set()
    same_content = 0
    for mutation in envelope_mutations(rng, original, other.to_bytes()):
        if len(seen) >= 1_000:
            break
        if mutation.data == original or mutation.data in seen:
            continue
        seen.add(mutation.data)
        with pytest.raises(CidMismatch):
            verify(cid, mutation.data)
        try:
            parsed = verify_document(mutation.data, h.root, h.count, h.schema_id)
        except BatchError as exc:
            if mutation.expect is not None:
                assert re.search(mutation.expect, str(exc)), f"{mutation.kind}: {exc}"
            continue
        # A frame that decodes to the very same canonical document (e.g. a header flag that does
        # not change the content): bound by the CID alone, like the creation time.
        assert parsed == document, mutation.kind
        same_content += 1
    assert len(seen) >= 1_000 and same_content < 50, same_content


def test_documents_are_checked_against_the_chain_not_only_against_themselves(documents):
    document, other = documents
    h = document.header
    data = document.to_bytes()
    with pytest.raises(BatchError, match="on-chain root"):
        verify_document(other.to_bytes(), h.root, None, h.schema_id)  # a valid document, another batch
    with pytest.raises(BatchError, match="the chain says"):
        verify_document(data, h.root, h.count + 1, h.schema_id)
    with pytest.raises(BatchError, match="schema"):
        verify_document(data, h.root, h.count, hashlib.sha256(b"another schema").digest())
    assert verify_document(data, h.root, h.count, h.schema_id) == document


# ------------------------------------------------------------------------------ CIDs

ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


def _foreign_cid(rng: random.Random, digest: bytes) -> tuple[str, str]:
    """A well-formed CID that is not a dso CID: another version, codec or hash function (built
    from bytes: multiformats cannot wrap digests of hash functions it has no implementation for)."""
    choice = rng.choice(["version", "codec", "hash"])
    if choice == "version":
        return "version", multibase.encode(bytes([SHA2_256, 32]) + digest, "base58btc")[1:]  # CIDv0: "Qm..."
    codec, hasher, size = "raw", "sha2-256", 32
    if choice == "codec":
        codec = rng.choice(["dag-pb", "dag-cbor", "dag-json", "cbor", "libp2p-key", "git-raw", "dag-jose", "eth-block"])
    else:
        hasher, size = rng.choice([("sha2-512", 64), ("sha3-256", 32), ("blake2b-256", 32), ("keccak-256", 32), ("identity", 32),
                                   ("sha1", 20), ("blake3", 32), ("md5", 16), ("skein256-256", 32), ("sha2-256", rng.choice([16, 31, 33, 64]))])
    raw = (bytes([1]) + varint.encode(multicodec.get(codec).code) + varint.encode(multicodec.get(hasher).code)
           + varint.encode(size) + (digest * 2)[:size])
    return choice, multibase.encode(raw, rng.choice(["base32", "base58btc", "base36", "base16"]))


def cid_mutations(rng: random.Random, cid: str) -> Iterator[tuple[str, object]]:
    raw = cid_to_bytes(cid)
    digest = raw[len(CID_PREFIX) :]
    while True:
        kind = rng.choice(["char", "chars", "case", "multibase", "foreign", "truncate", "extend", "digest", "binary", "binary-length", "respell", "junk", "type"])
        if kind == "char":
            at = rng.randrange(len(cid))
            yield kind, cid[:at] + rng.choice(ALPHABET + "018ABZ=-_ /") + cid[at + 1 :]
        elif kind == "chars":
            chars = list(cid)
            for _ in range(rng.randint(2, 6)):
                chars[rng.randrange(len(chars))] = rng.choice(ALPHABET)
            yield kind, "".join(chars)
        elif kind == "case":
            yield kind, "".join(c.upper() if rng.random() < 0.3 else c for c in cid)
        elif kind == "multibase":
            yield kind, rng.choice("zfFmMuUkKBcCvVtThH9") + cid[1:]
        elif kind == "foreign":
            sub, text = _foreign_cid(rng, digest)
            yield f"foreign:{sub}", text
        elif kind == "truncate":
            yield kind, cid[: rng.randrange(len(cid))]
        elif kind == "extend":
            yield kind, cid + "".join(rng.choices(ALPHABET, k=rng.randint(1, 12)))
        elif kind == "digest":
            changed = bytearray(digest)
            changed[rng.randrange(32)] ^= 1 << rng.randrange(8)
            yield kind, cid_from_bytes(CID_PREFIX + bytes(changed))
        elif kind == "binary":
            changed = bytearray(raw)
            changed[rng.randrange(len(changed))] ^= 1 << rng.randrange(8)
            yield kind, bytes(changed)
        elif kind == "binary-length":
            yield kind, raw[: rng.randrange(len(raw))] if rng.random() < 0.5 else raw + rng.randbytes(rng.randint(1, 8))
        elif kind == "respell":
            base = rng.choice(["base58btc", "base16", "base16upper", "base32upper", "base36", "base36upper", "base64", "base64url", "base32hex", "base2"])
            yield kind, CID.decode(cid).encode(base)
        elif kind == "junk":
            yield kind, rng.choice(["", " ", "bafkrei", "Qm", "/ipfs/" + cid, "ipfs://" + cid, cid + "\x00", "\u200b" + cid, cid + "/x", "b" * 59, "😀" * 10])
        else:
            yield kind, rng.choice([None, 0, 1.5, [cid], {"/": cid}])


def test_a_thousand_mutated_cids_never_fetch_other_bytes(documents, tmp_path, ipfs_api):
    document, _ = documents
    data = document.to_bytes()
    local = LocalStore(tmp_path / "blocks", durable=False)
    cid = local.put(data)
    rng = random.Random(SEED + 1)
    kinds: Counter[str] = Counter()
    respellings = 0
    seen: set[object] = set()
    with KuboClient(ipfs_api, timeout=5) as node:
        assert node.put(data) == cid
        for kind, mutated in cid_mutations(rng, cid):
            if len(seen) >= 1_100:
                break
            key = (type(mutated).__name__, repr(mutated))
            if key in seen or mutated == cid:
                continue
            seen.add(key)
            if isinstance(mutated, bytes):
                try:
                    text = cid_from_bytes(mutated)
                except InvalidCid:
                    kinds[f"{kind}:invalid"] += 1
                    continue
            else:
                text = mutated
            try:
                binary = cid_to_bytes(text)  # type: ignore[arg-type]
            except InvalidCid:
                for store in (local, node):
                    with pytest.raises(InvalidCid):
                        store.get(text)  # type: ignore[arg-type]
                kinds[f"{kind}:invalid"] += 1
                continue
            if binary == cid_to_bytes(cid):  # the same CID spelled another way: the same bytes
                assert local.get(text) == data and node.get(text) == data  # type: ignore[arg-type]
                respellings += 1
                seen.discard(key)
                continue
            for store in (local, node):
                with pytest.raises(ContentNotFound):
                    store.get(text)  # type: ignore[arg-type]
            kinds[f"{kind}:absent"] += 1
    assert len(seen) >= MIN_MUTATIONS and respellings > 0
    assert any(k.startswith("foreign") for k in kinds) and kinds["digest:absent"] > 0
    print(f"\nCID mutations: {len(seen)} ({dict(sorted(kinds.items()))}); {respellings} re-spellings of the same CID")


@pytest.mark.parametrize("hasher", ["keccak-256", "blake3", "skein256-256", "md5"])
def test_a_cid_whose_hash_function_multiformats_cannot_compute_is_InvalidCid(hasher):
    """Found by the fuzz above: naming the problem used to unwrap the digest, which needs the hash
    function's implementation (ImportError for keccak, blake3, skein; a size error for md5)."""
    raw = bytes([1, 0x55]) + varint.encode(multicodec.get(hasher).code) + varint.encode(32) + bytes(32)
    text = multibase.encode(raw, "base32")
    with pytest.raises(InvalidCid, match=f"hash {hasher}"):
        cid_to_bytes(text)

    def node_answering_that_cid(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"Name": "object", "Hash": text, "Size": "9"})

    with KuboClient("http://fake-node:5001", transport=httpx.MockTransport(node_answering_that_cid)) as liar:
        with pytest.raises(CidMismatch, match=f"hash {hasher}"):
            liar.put(b"hello dso")


def test_a_node_serving_tampered_bytes_for_a_cid_is_caught_by_get(documents, ipfs_api):
    document, other = documents
    data = document.to_bytes()
    with KuboClient(ipfs_api) as honest:
        cid = honest.put(data)
    rng = random.Random(SEED + 2)
    lies = [data[:-1], data + b"\x00", other.to_bytes(), b"", bytes(len(data))]
    for mutation in document_mutations(rng, document, other):
        if len(lies) >= 60:
            break
        if mutation.data != data:
            lies.append(mutation.data)
    for lie in lies:
        with KuboClient(ipfs_api, transport=LyingTransport({cid: lie})) as liar:
            with pytest.raises(CidMismatch, match="corrupt or dishonest"):
                liar.get(cid)
    with KuboClient(ipfs_api, transport=LyingTransport({})) as relay:
        assert relay.get(cid) == data  # the transport itself changes nothing


# ------------------------------------------------------------------------------ Merkle proofs


def _pymerkle_accepts(proof: InclusionProof, root: bytes, data: bytes, size: int) -> bool:
    """Whether pymerkle's own verifier accepts the same (possibly mutated) proof."""
    try:
        rule, _ = _inclusion_path_layout(proof.leaf_index + 1, proof.tree_size)
        theirs = PymerkleProof("sha256", True, proof.tree_size, proof.leaf_index + 1, rule, [proof.leaf_hash, *proof.path])
        pymerkle_verify(leaf_hash(data), root, theirs, size=size)
    except InvalidProof:
        return False
    except (ValueError, IndexError, KeyError, TypeError, AssertionError):
        return False  # pymerkle cannot even lay out the claimed index and size
    return True


def proof_mutations(rng: random.Random, trees: list[list[bytes]]) -> Iterator[tuple[str, list[bytes], InclusionProof, bytes]]:
    """(kind, leaves of the tree verified against, mutated proof, leaf data claimed)."""
    while True:
        leaves = rng.choice(trees)
        index = rng.randrange(len(leaves))
        proof = prove_inclusion(leaves, index)
        data = leaves[index]
        kind = rng.choice(["sibling-flip", "sibling-swap", "sibling-drop", "sibling-add", "path-reverse", "path-empty", "index",
                           "index-out-of-range", "size", "leaf-data", "leaf-hash", "other-tree", "inner-node", "json"])
        path = list(proof.path)
        if kind == "sibling-flip" and path:
            i = rng.randrange(len(path))
            sibling = bytearray(path[i])
            sibling[rng.randrange(32)] ^= 1 << rng.randrange(8)
            path[i] = bytes(sibling)
            yield kind, leaves, replace(proof, path=tuple(path)), data
        elif kind == "sibling-swap" and len(set(path)) > 1:
            i, j = rng.sample(range(len(path)), 2)
            path[i], path[j] = path[j], path[i]
            if path != list(proof.path):
                yield kind, leaves, replace(proof, path=tuple(path)), data
        elif kind == "sibling-drop" and path:
            del path[rng.randrange(len(path))]
            yield kind, leaves, replace(proof, path=tuple(path)), data
        elif kind == "sibling-add":
            path.insert(rng.randrange(len(path) + 1), rng.choice([rng.randbytes(32), leaf_hash(data), merkle_root(leaves)]))
            yield kind, leaves, replace(proof, path=tuple(path)), data
        elif kind == "path-reverse" and len(set(path)) > 1:
            yield kind, leaves, replace(proof, path=tuple(reversed(path))), data
        elif kind == "path-empty" and path:
            yield kind, leaves, replace(proof, path=()), data
        elif kind == "index" and len(leaves) > 1:
            other = rng.choice([i for i in range(len(leaves)) if i != index])
            yield kind, leaves, replace(proof, leaf_index=other), data
        elif kind == "index-out-of-range":
            yield kind, leaves, replace(proof, leaf_index=rng.choice([-1, len(leaves), len(leaves) + rng.randint(1, 100), 2**64])), data
        elif kind == "size":
            size = rng.choice([s for s in (0, 1, len(leaves) - 1, len(leaves) + 1, 2 * len(leaves), rng.randint(1, 2**20)) if s != len(leaves)])
            yield kind, leaves, replace(proof, tree_size=size), data
        elif kind == "leaf-data":
            wrong = rng.choice([rng.randbytes(len(data)), data + b"\x00", data[:-1], leaf_hash(data)] + [x for x in leaves if x != data])
            yield kind, leaves, proof, wrong
        elif kind == "leaf-hash" and len(leaves) > 1:
            other = rng.choice([x for x in leaves if x != data])
            yield kind, leaves, replace(proof, leaf_hash=leaf_hash(other)), other
        elif kind == "other-tree":
            foreign = rng.choice([t for t in trees if t is not leaves])
            j = rng.randrange(len(foreign))
            yield kind, leaves, prove_inclusion(foreign, j), foreign[j]
        elif kind == "inner-node" and len(leaves) >= 4 and index < 4:
            # Second preimage attempt: an inner node's children presented as one 64-byte "leaf".
            left, right = leaf_hash(leaves[index & ~1]), leaf_hash(leaves[index | 1])
            forged = left + right
            yield kind, leaves, InclusionProof(len(leaves), index >> 1, leaf_hash(forged), proof.path[1:]), forged
        elif kind == "json":
            text = proof.to_json()
            at = rng.randrange(len(text))
            mutated = text[:at] + rng.choice('0123456789abcdef"{}[],: x-') + text[at + 1 :]
            try:
                parsed = InclusionProof.from_json(mutated)
            except ProofError:
                yield "json:refused", leaves, proof, b""  # the verifier never gets a proof to check
                continue
            if parsed != proof:
                yield "json", leaves, parsed, data


def test_a_thousand_mutated_merkle_proofs_never_verify_here_or_in_pymerkle(documents):
    document, other = documents
    rng = random.Random(SEED + 3)
    trees = [document.leaves, other.leaves]
    for size in [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 64, 70]:
        trees.append([rng.randbytes(rng.randint(1, 40)) + i.to_bytes(2, "big") for i in range(size)])
    roots = {id(t): merkle_root(t) for t in trees}
    for leaves in trees:  # positive control: unmutated proofs verify in both verifiers
        for index in {0, len(leaves) // 2, len(leaves) - 1}:
            proof = prove_inclusion(leaves, index)
            verify_inclusion(proof, roots[id(leaves)], leaves[index], tree_size=len(leaves))
            assert _pymerkle_accepts(proof, roots[id(leaves)], leaves[index], len(leaves))
    kinds: Counter[str] = Counter()
    total = 0
    for kind, leaves, proof, data in proof_mutations(rng, trees):
        if total >= 1_200:
            break
        total += 1
        kinds[kind] += 1
        if kind == "json:refused":
            continue
        root = roots[id(leaves)]
        with pytest.raises(ProofError):
            verify_inclusion(proof, root, data, tree_size=len(leaves))
        assert not _pymerkle_accepts(proof, root, data, len(leaves)), kind
    assert total >= MIN_MUTATIONS and len(kinds) >= 12, kinds
    print(f"\nMerkle proof mutations: {total} ({dict(sorted(kinds.items()))})")


@pytest.mark.parametrize(("size", "index"), [(1, 1), (1, -1), (2, 2), (5, 5), (5, 7), (1, 2**64)])
def test_a_proof_for_an_index_outside_the_tree_never_verifies(size, index):
    """Found by the fuzz above: with an empty path, index 1 (or -1) of a 1-leaf tree used to
    "prove" the leaf, since nothing checked RFC 9162's first step (leaf_index < tree_size)."""
    leaves = [bytes([i]) * 8 for i in range(size)]
    proof = prove_inclusion(leaves, size - 1)
    with pytest.raises(ProofError):
        verify_inclusion(replace(proof, leaf_index=index), merkle_root(leaves), leaves[-1], tree_size=size)


def test_an_inner_node_never_proves_as_a_leaf_even_with_a_hand_built_path():
    leaves = [b"a", b"b", b"c", b"d"]
    root = merkle_root(leaves)
    forged = leaf_hash(b"a") + leaf_hash(b"b")
    sibling = node_hash(leaf_hash(b"c"), leaf_hash(b"d"))
    for size, index in ((2, 0), (4, 0), (3, 0)):
        with pytest.raises(ProofError):
            verify_inclusion(InclusionProof(size, index, leaf_hash(forged), (sibling,)), root, forged)


# ------------------------------------------------------------------------------ EIP-712 submissions


def simulate(registry: Registry, relayer: str, s: SignedSubmission) -> str:
    """What `submitBatchWithSig` would do, by one raw eth_call (no transaction is mined): "accepted"
    or the name of the custom error, decoded as dso.edges.chain decodes every revert."""
    call = registry.contract.functions.submitBatchWithSig(s.root, s.cid, s.count, s.schema, to_checksum_address(s.node), s.deadline, s.signature)
    request = {"from": relayer, "to": registry.address, "data": call._encode_transaction_data()}
    answer = registry.w3.provider.make_request("eth_call", [request, "latest"])
    if "error" not in answer:
        return "accepted"
    return registry.errors.decode(answer["error"].get("data")).name


def sign(registry: Registry, key, message: dict, chain_id: int, contract: str) -> bytes:
    typed = registry.typed_data(message, chain_id=chain_id, verifying_contract=contract)
    return bytes(key.sign_message(encode_typed_data(full_message=typed)).signature)


def submission_mutations(rng: random.Random, registry: Registry, node, good: SignedSubmission, replayed: SignedSubmission,
                         chain_id: int, now: int, others: dict[str, list]) -> Iterator[tuple[str, SignedSubmission, str]]:
    """(kind, submission, the custom error it must revert with)."""
    message = {"root": good.root, "cid": good.cid, "count": good.count, "schema": good.schema, "nonce": good.nonce, "deadline": good.deadline}
    while True:
        kind = rng.choice(["signer-self", "signer-claims-node", "chain-id", "contract", "replay", "nonce", "expired-signed",
                           "expired-field", "signature-bytes", "signature-length", "signature-high-s", "field"])
        if kind in ("signer-self", "signer-claims-node"):
            key = rng.choice(others["outsiders"] + others["members"] + [Account.create()])
            signature = sign(registry, key, {**message, "nonce": 0}, chain_id, registry.address)
            if kind == "signer-self":
                yield kind, replace(good, node=key.address, nonce=0, signature=signature), "SignerIsNotAnAdmittedNode"
            else:
                yield kind, replace(good, signature=sign(registry, key, message, chain_id, registry.address)), "InvalidSignature"
        elif kind == "chain-id":
            wrong = rng.choice([1, 5, 10, 137, 8453, 11155111, 31338, rng.randint(0, 2**64)])
            yield kind, replace(good, signature=sign(registry, node, message, wrong, registry.address)), "InvalidSignature"
        elif kind == "contract":
            wrong = rng.choice([to_checksum_address(rng.randbytes(20)), others["other_registry"], "0x" + "00" * 20])
            yield kind, replace(good, signature=sign(registry, node, message, chain_id, wrong)), "InvalidSignature"
        elif kind == "replay":
            yield kind, replayed, "InvalidSignature"  # already mined: its nonce is used up
        elif kind == "nonce":
            nonce = rng.choice([n for n in (0, good.nonce + 1, good.nonce + rng.randint(2, 100), 2**256 - 1) if n != good.nonce])
            yield kind, replace(good, nonce=nonce, signature=sign(registry, node, {**message, "nonce": nonce}, chain_id, registry.address)), "InvalidSignature"
        elif kind == "expired-signed":
            deadline = rng.choice([0, 1, now - 1, now - rng.randint(2, 10**6)])
            signature = sign(registry, node, {**message, "deadline": deadline}, chain_id, registry.address)
            yield kind, replace(good, deadline=deadline, signature=signature), "SignatureExpired"
        elif kind == "expired-field":
            yield kind, replace(good, deadline=rng.choice([0, now - 1, now - rng.randint(2, 10**8)])), "SignatureExpired"
        elif kind == "signature-bytes":
            signature = bytearray(good.signature)
            for _ in range(rng.randint(1, 4)):
                signature[rng.randrange(65)] ^= 1 << rng.randrange(8)
            if bytes(signature) != good.signature:
                yield kind, replace(good, signature=bytes(signature)), "InvalidSignature"
        elif kind == "signature-length":
            n = rng.choice([0, 1, 32, 63, 64, 66, 96, 130])
            signature = (good.signature + rng.randbytes(max(0, n - 65)))[:n]
            yield kind, replace(good, signature=signature), "InvalidSignature"
        elif kind == "signature-high-s":
            n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
            s = int.from_bytes(good.signature[32:64], "big")
            twin = good.signature[:32] + (n - s).to_bytes(32, "big") + bytes([55 - good.signature[64]])
            yield kind, replace(good, signature=twin), "InvalidSignature"
        else:
            field = rng.choice(["root", "cid", "count", "schema", "node", "deadline"])
            if field in ("root", "schema"):
                value = bytearray(getattr(good, field))
                value[rng.randrange(32)] ^= 1 << rng.randrange(8)
                changed = replace(good, **{field: bytes(value)})
            elif field == "cid":
                cid = bytearray(good.cid)
                choice = rng.random()
                if choice < 0.6:
                    cid[rng.randrange(len(cid))] ^= 1 << rng.randrange(8)
                    changed = replace(good, cid=bytes(cid))
                else:
                    changed = replace(good, cid=bytes(cid[: rng.randrange(1, len(cid))]) if choice < 0.8 else bytes(cid) + b"\x00")
            elif field == "count":
                changed = replace(good, count=rng.choice([c for c in (0, 1, good.count + 1, good.count - 1, 2**32 - 1) if c != good.count]))
            elif field == "node":
                changed = replace(good, node=rng.choice([others["other_node"], "0x" + "00" * 20, to_checksum_address(rng.randbytes(20))]))
            else:
                changed = replace(good, deadline=good.deadline + rng.randint(1, 10**6))
            yield f"field:{field}", changed, "InvalidSignature"


def test_a_thousand_forged_or_mutated_signed_submissions_revert_with_the_right_error(w3, accounts, documents):
    dao = deploy_dao(w3, accounts)
    registry, node, relayer = dao.registry, dao.nodes[0], dao.outsiders[0].address
    assert node.address == accounts[NODE_ACCOUNT].address
    document, other = documents
    now = w3.eth.get_block("latest")["timestamp"]
    # One signed submission really mined first, so that there is a used nonce to replay.
    first = registry.sign_submission(node, other.header.root, cid_to_bytes(cid_of(other.to_bytes())), other.header.count, other.header.schema_id, now + 3_600)
    registry.submit_signed(dao.outsiders[1], first)
    batches_before, nonce_before = registry.batch_count(), registry.nonce(node.address)
    h = document.header
    good = registry.sign_submission(node, h.root, cid_to_bytes(cid_of(document.to_bytes())), h.count, h.schema_id, now + 3_600)
    assert good.nonce == 1 and simulate(registry, relayer, good) == "accepted"  # the positive control

    others = {
        "outsiders": dao.outsiders[1:6],
        "members": dao.members,
        "other_node": dao.nodes[1].address,
        "other_registry": deploy_dao(w3, accounts).registry.address,
    }
    rng = random.Random(SEED + 4)
    outcomes: Counter[tuple[str, str]] = Counter()
    total = 0
    for kind, submission, expected in submission_mutations(rng, registry, node, good, first, w3.eth.chain_id, now, others):
        if total >= 1_100:
            break
        total += 1
        got = simulate(registry, relayer, submission)
        assert got == expected, f"{kind}: expected {expected}, got {got} for {submission}"
        outcomes[(kind.split(":")[0], got)] += 1

    assert total >= MIN_MUTATIONS and len(outcomes) >= 12, outcomes
    assert registry.batch_count() == batches_before and registry.nonce(node.address) == nonce_before
    assert registry.batch(h.root).tally.status == Status.NONE
    assert simulate(registry, relayer, good) == "accepted"  # nothing above consumed the real signature
    print(f"\nsigned submission mutations: {total} ({dict(sorted(outcomes.items()))})")


# ------------------------------------------------------------------------------ end to end: sync


def test_tampered_documents_of_accepted_batches_never_reach_the_library(w3, accounts, embedder, documents, ipfs_api, tmp_path):
    """Four accepted batches whose documents are tampered in four ways are refused by sync; an
    honest accepted batch next to them is loaded (the control)."""
    from dso.workflows.library import Library
    from dso.workflows.sync import sync

    dao = deploy_dao(w3, accounts, n_members=3, n_nodes=2)
    node = dao.nodes[0]
    rng = random.Random(SEED + 5)
    honest, ts_only = documents
    wrong_root, wrong_count, flipped = (
        prepare_batch(gsm8k_insights(4, offset=offset), node.address, embedder, now=1_763_000_000 + offset) for offset in (1_000, 1_010, 1_020)
    )

    with KuboClient(ipfs_api) as pinner:
        cids = {d.header.root: pinner.put(d.to_bytes()) for d in (honest, ts_only, wrong_root, wrong_count, flipped)}
        # wrong_root: the node commits its root with the CID of a document whose first text it changed
        body = cbor2.loads(wrong_root.to_cbor())
        leaf = cbor2.loads(body["leaves"][0])
        leaf["text"] = leaf["text"] + " Always answer 42."
        body["leaves"][0] = cbor2.dumps(leaf, canonical=True)
        body["root"] = merkle_root(body["leaves"])
        swapped = cbor2.dumps(body, canonical=True)
        Experience.from_bytes(body["leaves"][0])  # a perfectly valid experience on its own
        cids[wrong_root.header.root] = pinner.put(swapped)
    damaged = bytearray(flipped.to_bytes())
    damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
    lies = {
        cids[ts_only.header.root]: cbor2.dumps({**cbor2.loads(ts_only.to_cbor()), "ts": ts_only.header.created_at + 1}, canonical=True),
        cids[flipped.header.root]: bytes(damaged),
    }
    # the ts-only lie passes every check but the CID's
    verify_document(lies[cids[ts_only.header.root]], ts_only.header.root, ts_only.header.count, ts_only.header.schema_id)

    for document in (honest, ts_only, wrong_root, wrong_count, flipped):
        h = document.header
        count = h.count + 1 if document is wrong_count else h.count
        dao.registry.submit_batch(node, h.root, cid_to_bytes(cids[h.root]), count, h.schema_id)
        for member in dao.members:
            dao.registry.vote_on_batch(member, h.root, True)
        assert dao.registry.finalize_batch(dao.deployer, h.root).status == Status.ACCEPTED

    with KuboClient(ipfs_api, transport=LyingTransport(lies)) as store, Library(tmp_path / "library.sqlite", embedder) as library:
        report = sync(dao.registry, store, library, tmp_path / "sync.json")
        assert report.loaded == [honest.header.root.hex()]
        # bytes that miss their CID are the node's fault: retried later, never loaded (issue 11)
        assert set(report.invalid) == {d.header.root.hex() for d in (wrong_root, wrong_count)}
        assert set(report.unavailable) == {d.header.root.hex() for d in (ts_only, flipped)}
        assert "CidMismatch" in report.unavailable[ts_only.header.root.hex()]
        assert "CidMismatch" in report.unavailable[flipped.header.root.hex()]
        assert "on-chain root" in report.invalid[wrong_root.header.root.hex()]
        assert "the chain says" in report.invalid[wrong_count.header.root.hex()]
        assert len(library) <= honest.header.count
        tampered = {Experience.from_bytes(x).experience_id for x in body["leaves"]} | {e.experience_id for d in (ts_only, wrong_count, flipped) for e in d.experiences}
        assert all(library.get(i) is None for i in tampered)
        again = sync(dao.registry, store, library, tmp_path / "sync.json")  # refused for good, not retried; lies retried
        assert again.loaded == [] and again.invalid == {} and set(again.unavailable) == set(report.unavailable)
