"""Content store: batch documents by CID, verified on every read.

A node pins a batch document and commits its CID on-chain; a client fetches the bytes from any
node and must check them against that CID, because the node serving them is not trusted. So every
object dso stores is ONE raw IPFS block, and its CID is computed here from the bytes alone:

    CIDv1 | raw codec (0x55) | sha2-256 multihash (0x12, 32 bytes)  ->  36 bytes on-chain
    text form: multibase base32, lowercase, always starting "bafkrei"

WARNING: an IPFS node splits payloads larger than its chunk size into a dag-pb tree whose root CID
hashes protobuf links, not the bytes, and cannot be checked without the tree. We add with a chunk
size equal to MAX_OBJECT_BYTES and refuse anything larger, so node CID == local CID always.

Two implementations of one interface (`ContentStore`):
  - `KuboClient`: the Kubo RPC HTTP API (`POST /api/v0/...`), spoken identically to real Kubo and to
    the devnet's js-ipfs node (ipfs/daemon.mjs);
  - `LocalStore`: a directory of files named by CID, for nodes and tests without an IPFS daemon.

The CID math is pure (`cid_of`, `cid_to_bytes`, `cid_from_bytes`, `verify`); the stores are thin
I/O shells around it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable
from urllib.parse import urlsplit

import httpx
from multiformats import CID

from dso.edges.files import atomic_write_bytes
from dso.errors import (
    CidMismatch,
    ContentNotFound,
    InvalidCid,
    ObjectTooLarge,
    StoreError,
    StoreTimeout,
    StoreUnavailable,
)

# The largest object dso stores: 1 MiB. It is Kubo's maximum chunk size and its default block-size
# limit for `block/put` and bitswap, so a 1 MiB object is one block on every node we talk to.
MAX_OBJECT_BYTES = 1 << 20
CID_VERSION = 1
RAW_CODEC = 0x55
SHA2_256 = 0x12
DIGEST_BYTES = 32
CID_PREFIX = bytes([CID_VERSION, RAW_CODEC, SHA2_256, DIGEST_BYTES])
CID_BYTES = len(CID_PREFIX) + DIGEST_BYTES  # 36: what the registry contract stores
_CANONICAL_CHARS = 1 + (CID_BYTES * 8 + 4) // 5  # "b" + unpadded base32 of 36 bytes = 59
DEFAULT_TIMEOUT = 10.0
_ERROR_BODY_LIMIT = 64 * 1024  # how much of an error response we read to quote the node's message


# --- CID math (pure) -------------------------------------------------------------------------------


def cid_of(data: bytes) -> str:
    """The CID (CIDv1, raw, sha2-256, base32) under which `data` is stored.

    Raises ObjectTooLarge above MAX_OBJECT_BYTES: no node would give such data this CID.
    """
    _check_size(len(data), MAX_OBJECT_BYTES, "payload (one raw IPFS block at most; split the batch)")
    return cid_from_bytes(CID_PREFIX + hashlib.sha256(data).digest())


def cid_from_bytes(raw: bytes) -> str:
    """The text form (base32, "bafkrei...") of a 36-byte binary CID as the contract stores it."""
    raw = bytes(raw)
    if len(raw) != CID_BYTES or raw[: len(CID_PREFIX)] != CID_PREFIX:
        raise InvalidCid(
            f"binary CID {raw[:8].hex()}... ({len(raw)} bytes) is not {CID_BYTES} bytes starting "
            f"{CID_PREFIX.hex()} (CIDv1, raw, sha2-256)"
        )
    return "b" + base64.b32encode(raw).decode("ascii").lower().rstrip("=")


def cid_to_bytes(cid: str) -> bytes:
    """The 36-byte binary form of a CID string (any multibase), after checking it is a dso CID.

    Raises InvalidCid for malformed strings and for valid CIDs of another kind (CIDv0 "Qm...",
    dag-pb, dag-cbor, another hash function), which dso cannot verify against raw bytes.
    """
    if not isinstance(cid, str) or not cid.strip():
        raise InvalidCid(f"expected a CID string like 'bafkrei...', got {cid!r}")
    canonical = _decode_canonical(cid.strip())
    if canonical is not None:
        return canonical
    try:
        parsed = CID.decode(cid.strip())
        binary = bytes(parsed)
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise InvalidCid(f"{cid!r} is not a valid CID: {err}") from err
    if len(binary) == CID_BYTES and binary.startswith(CID_PREFIX):
        return binary
    # Name the problem from the CID's header alone: unwrapping a foreign digest would need its hash
    # function's implementation (keccak, blake3, ...), which multiformats imports lazily or lacks.
    problems = []
    if parsed.version != CID_VERSION:
        problems.append(f"version {parsed.version}")
    if parsed.codec.code != RAW_CODEC:
        problems.append(f"codec {parsed.codec.name}")
    if parsed.hashfun.code != SHA2_256:
        problems.append(f"hash {parsed.hashfun.name}")
    elif len(parsed.digest) != 2 + DIGEST_BYTES:
        problems.append(f"hash sha2-256 with a multihash of {len(parsed.digest)} bytes")
    raise InvalidCid(
        f"{cid} has {', '.join(problems) or 'an unexpected layout'}; dso stores single raw blocks only "
        "(CIDv1, raw codec, sha2-256: 'bafkrei...')"
    )


def _decode_canonical(text: str) -> bytes | None:
    """The binary CID if `text` is exactly the canonical form cid_from_bytes produces, else None.

    A fast path (~20x quicker than a general multibase parse): stores check a CID on every call.
    Anything else, valid or not, goes through multiformats for a precise answer.
    """
    if len(text) != _CANONICAL_CHARS or not text.startswith("b"):
        return None
    try:
        raw = base64.b32decode(text[1:].upper() + "=" * (-(len(text) - 1) % 8))
    except binascii.Error:
        return None
    if raw[: len(CID_PREFIX)] != CID_PREFIX or cid_from_bytes(raw) != text:
        return None
    return raw


def normalize_cid(cid: str) -> str:
    """The canonical base32 text form of a dso CID given in any multibase (validates it)."""
    return cid_from_bytes(cid_to_bytes(cid))


def verify(cid: str, data: bytes) -> None:
    """Raise CidMismatch unless `data` hashes to `cid` (which must be a valid dso CID)."""
    expected = cid_to_bytes(cid)
    actual = CID_PREFIX + hashlib.sha256(data).digest()
    if actual != expected:
        raise CidMismatch(
            f"{len(data)} bytes received for {cid_from_bytes(expected)} hash to "
            f"{cid_from_bytes(actual)}: the source is corrupt or dishonest; fetch from another node"
        )


def _check_size(size: int, limit: int, what: str) -> None:
    if size > limit:
        raise ObjectTooLarge(f"{what} is larger than the limit of {limit:,} bytes ({size:,} bytes or more)")


# --- the interface -----------------------------------------------------------------------------------


@runtime_checkable
class ContentStore(Protocol):
    """Where batch documents live, addressed by `cid_of(data)`; every read is verified."""

    def put(self, data: bytes) -> str:
        """Store and pin `data`; return its CID (always equal to `cid_of(data)`)."""
        ...

    def get(self, cid: str, max_bytes: int = MAX_OBJECT_BYTES) -> bytes:
        """The bytes stored under `cid`, verified against it; at most `max_bytes` are read."""
        ...

    def pin(self, cid: str) -> None:
        """Keep the object (fetching it first if the store can) so it survives garbage collection."""
        ...

    def has(self, cid: str) -> bool:
        """Whether the object is held locally (never fetches from a network)."""
        ...


# --- Kubo RPC client ---------------------------------------------------------------------------------


def api_base_url(api: str) -> str:
    """`http://host:port` from an API address: a URL (with or without /api/v0) or a multiaddr
    like Kubo's `/ip4/127.0.0.1/tcp/5001` (the form in $IPFS_PATH/api and Kubo's config)."""
    api = api.strip()
    if api.startswith("/"):
        parts = api.strip("/").split("/")
        if len(parts) < 4 or parts[0] not in {"ip4", "ip6", "dns", "dns4", "dns6"} or parts[2] != "tcp":
            raise StoreError(f"unsupported IPFS API multiaddr {api!r}; expected /ip4/HOST/tcp/PORT")
        host = f"[{parts[1]}]" if parts[0] == "ip6" else parts[1]
        scheme = "https" if "https" in parts[4:] else "http"
        return f"{scheme}://{host}:{parts[3]}"
    split = urlsplit(api if "://" in api else f"http://{api}")
    if split.scheme not in {"http", "https"} or not split.netloc:
        raise StoreError(f"IPFS API URL {api!r} must look like http://127.0.0.1:5001")
    path = split.path.rstrip("/")
    if path.endswith("/api/v0"):
        path = path[: -len("/api/v0")]
    return f"{split.scheme}://{split.netloc}{path}"


def _duration(seconds: float) -> str:
    """A duration both Kubo (Go time.ParseDuration) and js-ipfs (parse-duration) accept."""
    return f"{max(1, int(seconds * 1000))}ms"


class KuboClient:
    """A ContentStore on an IPFS node's Kubo RPC API (Kubo, or the devnet's js-ipfs node).

    Every call has a client-side `timeout` (seconds, per connect/read and for a whole body) and
    passes the node `timeout=` at 80% of it, so a CID nobody provides ends in the node's own error
    rather than a hang: js-ipfs and an online Kubo otherwise wait for a missing block forever.

    CAUTION: the RPC API is admin access to the node; point this at 127.0.0.1 or an authenticated
    proxy, never at a public port.
    """

    def __init__(
        self, api_url: str, timeout: float = DEFAULT_TIMEOUT, transport: httpx.BaseTransport | None = None
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.api_url = api_base_url(api_url)
        self.timeout = timeout
        self._node_timeout = timeout * 0.8
        self._client = httpx.Client(base_url=f"{self.api_url}/api/v0", timeout=timeout, transport=transport)

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        self._client.close()

    def __enter__(self) -> "KuboClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"KuboClient({self.api_url!r}, timeout={self.timeout})"

    def version(self) -> dict[str, object]:
        """The node's /version answer (Kubo and js-ipfs both report at least "Version")."""
        return _last_json_line(self._post("version", {}), self.api_url)

    def put(self, data: bytes) -> str:
        """Add and pin `data` as one raw block; raise CidMismatch if the node's CID differs."""
        cid = cid_of(data)
        params = {
            "cid-version": "1",
            "raw-leaves": "true",
            # One chunk up to MAX_OBJECT_BYTES, so the node never builds a dag-pb tree.
            "chunker": f"size-{MAX_OBJECT_BYTES}",
            "pin": "true",
            # js-ipfs answers CIDv1 in base58btc unless told; we compare binary forms anyway.
            "cid-base": "base32",
        }
        # js-ipfs answers HTTP 500 to a multipart part without a Content-Type.
        files = {"file": ("object", data, "application/octet-stream")}
        answer = _last_json_line(self._post("add", params, files=files), self.api_url)
        returned = answer.get("Hash")
        if not isinstance(returned, str):
            raise StoreError(f"IPFS node at {self.api_url} answered /add without a Hash: {answer!r}")
        mismatch = f"IPFS node at {self.api_url} stored {len(data):,} bytes as {returned}, but their CID is {cid}"
        try:
            node_cid = cid_to_bytes(returned)
        except InvalidCid as err:
            raise CidMismatch(f"{mismatch}: {err}") from err
        if node_cid != cid_to_bytes(cid):
            raise CidMismatch(f"{mismatch}; it chunked them differently or is not honest")
        return cid

    def get(self, cid: str, max_bytes: int = MAX_OBJECT_BYTES) -> bytes:
        """Fetch the block for `cid`, reading at most `max_bytes`, and verify it against `cid`."""
        cid = normalize_cid(cid)
        what = f"object {cid}"
        with self._stream("block/get", {"arg": cid}) as response:
            self._raise_for_status("block/get", response, missing=cid)
            declared = response.headers.get("content-length", "")
            if declared.isdigit():
                _check_size(int(declared), max_bytes, what)
            data = _read_capped(response, max_bytes, time.monotonic() + self.timeout, what)
        verify(cid, data)
        return data

    def pin(self, cid: str) -> None:
        """Pin `cid` on the node (Kubo fetches it from peers first; the devnet node is offline)."""
        cid = normalize_cid(cid)
        self._post("pin/add", {"arg": cid}, missing=cid)

    def has(self, cid: str) -> bool:
        """Whether the node holds the block, asked with offline=true so Kubo does not search peers."""
        cid = normalize_cid(cid)
        try:
            self._post("block/stat", {"arg": cid, "offline": "true"}, missing=cid)
        except ContentNotFound:
            return False
        return True

    # -- transport: every failure leaves as a dso.errors type ---------------------------------------

    @contextmanager
    def _stream(self, command: str, params: dict[str, str], files: dict | None = None) -> Iterator[httpx.Response]:
        params = {**params, "timeout": _duration(self._node_timeout)}
        try:
            with self._client.stream("POST", f"/{command}", params=params, files=files) as response:
                yield response
        except (httpx.ConnectError, httpx.ConnectTimeout) as err:
            raise StoreUnavailable(
                f"the IPFS API at {self.api_url} is unreachable ({type(err).__name__}: {err}); start the node "
                "(`dso devnet up` starts the devnet one) or point the IPFS API URL at a running Kubo"
            ) from err
        except httpx.TimeoutException as err:
            raise StoreTimeout(
                f"the IPFS API at {self.api_url} did not answer /api/v0/{command} within {self.timeout:.1f}s "
                f"({type(err).__name__}: {err}); the node is hung or overloaded, or ignores timeout="
            ) from err
        except httpx.TransportError as err:
            raise StoreUnavailable(
                f"the connection to the IPFS API at {self.api_url} broke during /api/v0/{command} "
                f"({type(err).__name__}: {err})"
            ) from err

    def _post(self, command: str, params: dict[str, str], files: dict | None = None, missing: str | None = None) -> bytes:
        """POST a command and return its body (at most MAX_OBJECT_BYTES); raise on any error."""
        with self._stream(command, params, files) as response:
            self._raise_for_status(command, response, missing)
            return _read_capped(response, MAX_OBJECT_BYTES, time.monotonic() + self.timeout, f"/{command} answer")

    def _raise_for_status(self, command: str, response: httpx.Response, missing: str | None) -> None:
        if response.status_code == 200:
            return
        message = _error_message(response)
        # HTTP 500 means the command ran and failed; for a CID we validated, that is "not found".
        if response.status_code == 500 and missing is not None:
            raise ContentNotFound(
                f"IPFS node at {self.api_url} could not provide {missing} "
                f"(node timeout {self._node_timeout:.1f}s): {message}"
            )
        raise StoreError(f"IPFS node at {self.api_url} refused /api/v0/{command} (HTTP {response.status_code}): {message}")


def _read_capped(response: httpx.Response, limit: int, deadline: float, what: str) -> bytes:
    """Read the body, refusing more than `limit` bytes or reading past `deadline`: a slow drip
    would otherwise reset the per-read timeout forever."""
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        _check_size(total, limit, what)
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout(f"{what} still arriving at the deadline ({total:,} bytes so far)")
        chunks.append(chunk)
    return b"".join(chunks)


def _error_message(response: httpx.Response) -> str:
    """The node's error message (Kubo and js-ipfs send {"Message": ...}), read with a bound."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= _ERROR_BODY_LIMIT:
            break
    text = bytes(body[:_ERROR_BODY_LIMIT]).decode("utf-8", errors="replace")
    try:
        message = json.loads(text).get("Message")
    except (ValueError, AttributeError):
        message = None
    return str(message) if message else text.strip()[:500] or "(empty body)"


def _last_json_line(body: bytes, api_url: str) -> dict[str, object]:
    """The last JSON object of an NDJSON answer (`add` may stream progress lines first)."""
    lines = [line for line in body.splitlines() if line.strip()]
    try:
        value = json.loads(lines[-1])
    except (IndexError, ValueError) as err:
        raise StoreError(f"IPFS node at {api_url} sent a non-JSON answer: {body[:200]!r}") from err
    if not isinstance(value, dict):
        raise StoreError(f"IPFS node at {api_url} sent unexpected JSON: {body[:200]!r}")
    return value


# --- local blockstore --------------------------------------------------------------------------------


class LocalStore:
    """A ContentStore in a directory: one file per object, named by its CID.

    Layout `<root>/<two characters before the last>/<cid>` (like Kubo's flatfs "next-to-last/2"),
    because every CID starts with the same "bafkrei". Writes are atomic (temporary file, fsync,
    os.replace), so a crash leaves either the whole object or none. Reads verify the CID, so a
    file modified on disk is detected, not served. Nothing is ever collected, so every object is
    pinned by construction.
    """

    def __init__(self, path: Path | str, durable: bool = True) -> None:
        self.path = Path(path)
        self.durable = durable
        self.path.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.path)!r})"

    def object_path(self, cid: str) -> Path:
        """Where the object for `cid` lives (whether or not it exists)."""
        cid = normalize_cid(cid)
        return self.path / cid[-3:-1] / cid

    def put(self, data: bytes) -> str:
        """Store `data` under `cid_of(data)`; an intact existing copy is kept as is."""
        cid = cid_of(data)
        target = self.object_path(cid)
        if target.is_file() and _file_matches(target, cid):
            return cid
        atomic_write_bytes(target, data, durable=self.durable)
        return cid

    def get(self, cid: str, max_bytes: int = MAX_OBJECT_BYTES) -> bytes:
        """The verified bytes of `cid`; ContentNotFound if absent, CidMismatch if tampered with."""
        target = self.object_path(cid)
        try:
            with open(target, "rb") as handle:
                _check_size(os.fstat(handle.fileno()).st_size, max_bytes, f"object {cid}")
                data = handle.read(max_bytes + 1)
        except FileNotFoundError as err:
            raise ContentNotFound(f"{cid} is not in the local store at {self.path}") from err
        _check_size(len(data), max_bytes, f"object {cid}")
        try:
            verify(cid, data)
        except CidMismatch as err:
            raise CidMismatch(f"{target} was modified on disk: {err}") from err
        return data

    def pin(self, cid: str) -> None:
        """Objects here are never collected; pinning only checks the object is present."""
        if not self.has(cid):
            raise ContentNotFound(f"cannot pin {cid}: not in the local store at {self.path}, which cannot fetch")

    def has(self, cid: str) -> bool:
        """Whether a file for `cid` exists (its content is verified on get, not here)."""
        return self.object_path(cid).is_file()


def _file_matches(path: Path, cid: str) -> bool:
    try:
        verify(cid, path.read_bytes())
    except CidMismatch:
        return False
    return True


# --- several nodes -----------------------------------------------------------------------------------


class MirroredStore:
    """A ContentStore over several: writes go to the first (the node's own), reads try each in turn.

    A read that fails at one store for reasons of that store (it does not have the object, it is
    unreachable, or it served bytes that are not the CID) moves on to the next; the error of the
    last store tried is raised only when none answered, except that a CidMismatch anywhere wins
    over "not found" (someone served bad bytes: the caller should know). Configure mirrors with
    `ipfs_mirrors` in the network config (or DSO_IPFS_MIRRORS, comma-separated).
    """

    def __init__(self, stores: list[ContentStore]) -> None:
        if not stores:
            raise StoreError("a mirrored store needs at least one store")
        self.stores = list(stores)

    def __repr__(self) -> str:
        return f"MirroredStore({self.stores!r})"

    def put(self, data: bytes) -> str:
        """Store and pin `data` on the first store."""
        return self.stores[0].put(data)

    def get(self, cid: str, max_bytes: int = MAX_OBJECT_BYTES) -> bytes:
        """The verified bytes of `cid` from the first store that has them."""
        failures: list[StoreError] = []
        for store in self.stores:
            try:
                return store.get(cid, max_bytes)
            except (ContentNotFound, CidMismatch, ObjectTooLarge, StoreUnavailable) as exc:
                failures.append(exc)
        lie = next((f for f in failures if isinstance(f, (CidMismatch, ObjectTooLarge))), None)
        worst = lie or failures[-1]
        raise type(worst)(f"{worst} (tried {len(self.stores)} IPFS node(s))") from worst

    def pin(self, cid: str) -> None:
        """Pin on the first store."""
        self.stores[0].pin(cid)

    def has(self, cid: str) -> bool:
        """Whether any store holds the object locally."""
        return any(store.has(cid) for store in self.stores)
