"""The content store: CID math, the local blockstore, and the Kubo RPC client against the real
devnet js-ipfs node and against fake nodes that lie, hang or stream forever."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from conftest import CID as CONTRACT_TEST_CID
from hypothesis import given, settings
from hypothesis import strategies as st
from multiformats import CID, multihash

from dso.edges.ipfs import (
    CID_BYTES,
    MAX_OBJECT_BYTES,
    ContentStore,
    KuboClient,
    LocalStore,
    api_base_url,
    cid_from_bytes,
    cid_of,
    cid_to_bytes,
    normalize_cid,
    verify,
)
from dso.edges.services import IPFS_DAEMON, IPFS_DIR, free_port, node_executable
from dso.errors import (
    CidMismatch,
    ContentNotFound,
    InvalidCid,
    ObjectTooLarge,
    StoreError,
    StoreTimeout,
    StoreUnavailable,
)

HELLO = b"hello dso"
# What the devnet js-ipfs node answered for these bytes (/add?cid-version=1&raw-leaves=true).
HELLO_CID = "bafkreigopzd4ftarbogozxc77z5nkkefs4g5lj7taopoxjmmzdsbpgyqru"
EMPTY_CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


@pytest.fixture
def kubo(ipfs_api: str) -> Iterator[KuboClient]:
    with KuboClient(ipfs_api, timeout=10.0) as client:
        yield client


def reference_cid(data: bytes, base: str = "base32") -> str:
    """The CID computed independently with the multiformats library."""
    return str(CID(base, 1, "raw", multihash.wrap(hashlib.sha256(data).digest(), "sha2-256")))


# --- CID math ------------------------------------------------------------------------------------


def test_cid_of_matches_known_node_answers() -> None:
    assert cid_of(HELLO) == HELLO_CID
    assert cid_of(b"") == EMPTY_CID


@settings(max_examples=300)
@given(st.binary(max_size=4096))
def test_cid_of_equals_multiformats_and_round_trips_through_binary(data: bytes) -> None:
    cid = cid_of(data)
    assert cid == reference_cid(data)
    assert cid.startswith("bafkrei")
    raw = cid_to_bytes(cid)
    assert len(raw) == CID_BYTES == 36
    assert raw == bytes.fromhex("01551220") + hashlib.sha256(data).digest()
    assert cid_from_bytes(raw) == cid


@given(st.binary(max_size=256), st.binary(max_size=256))
def test_different_data_gets_different_cids(a: bytes, b: bytes) -> None:
    assert (cid_of(a) == cid_of(b)) == (a == b)


def test_contract_test_fixture_cid_is_a_valid_binary_cid() -> None:
    assert cid_to_bytes(cid_from_bytes(CONTRACT_TEST_CID)) == CONTRACT_TEST_CID


def test_cid_in_another_multibase_normalizes_to_base32() -> None:
    assert normalize_cid(reference_cid(HELLO, "base58btc")) == HELLO_CID
    assert normalize_cid(HELLO_CID.upper()) == HELLO_CID


def test_payload_of_exactly_the_limit_has_a_cid_and_one_more_byte_is_refused() -> None:
    assert cid_of(bytes(MAX_OBJECT_BYTES)).startswith("bafkrei")
    with pytest.raises(ObjectTooLarge, match="split the batch"):
        cid_of(bytes(MAX_OBJECT_BYTES + 1))


def _other_cid(version: int, codec: str, hasher: str = "sha2-256", digest: bytes = bytes(32)) -> str:
    base = "base58btc" if version == 0 else "base32"
    return str(CID(base, version, codec, multihash.wrap(digest, hasher)))


@pytest.mark.parametrize(
    ("cid", "reason"),
    [
        ("", "expected a CID string"),
        ("   ", "expected a CID string"),
        ("hello", "not a valid CID"),
        ("bafy", "not a valid CID"),
        (HELLO_CID[:-1] + "x", "not a valid CID"),  # nonzero pad bits
        (HELLO_CID[:-4], "not a valid CID"),  # truncated digest
        (_other_cid(0, "dag-pb"), "version 0"),
        (_other_cid(1, "dag-pb"), "codec dag-pb"),
        (_other_cid(1, "dag-cbor"), "codec dag-cbor"),
        (_other_cid(1, "raw", "sha2-512", bytes(64)), "hash sha2-512"),
        (_other_cid(1, "raw", "identity", b"inline"), "hash identity"),
    ],
)
def test_malformed_or_foreign_cid_is_rejected_with_InvalidCid(cid: str, reason: str) -> None:
    with pytest.raises(InvalidCid, match=reason):
        cid_to_bytes(cid)


def test_non_string_cid_is_rejected() -> None:
    with pytest.raises(InvalidCid):
        cid_to_bytes(cid_to_bytes(HELLO_CID))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "raw", [b"", bytes(36), bytes.fromhex("01701220") + bytes(32), bytes.fromhex("01551220") + bytes(31)]
)
def test_binary_cid_of_wrong_length_or_prefix_is_rejected(raw: bytes) -> None:
    with pytest.raises(InvalidCid, match="36 bytes starting 01551220"):
        cid_from_bytes(raw)


def test_verify_accepts_matching_bytes_and_names_both_cids_on_mismatch() -> None:
    verify(HELLO_CID, HELLO)
    with pytest.raises(CidMismatch, match=f"{HELLO_CID}.*hash to {EMPTY_CID}"):
        verify(HELLO_CID, b"")


@pytest.mark.parametrize(
    ("given_api", "base"),
    [
        ("http://127.0.0.1:5001", "http://127.0.0.1:5001"),
        ("http://127.0.0.1:5001/", "http://127.0.0.1:5001"),
        ("http://127.0.0.1:5001/api/v0", "http://127.0.0.1:5001"),
        ("127.0.0.1:5002", "http://127.0.0.1:5002"),
        ("/ip4/127.0.0.1/tcp/5001", "http://127.0.0.1:5001"),
        ("/ip4/127.0.0.1/tcp/5001/http", "http://127.0.0.1:5001"),
        ("/ip6/::1/tcp/5001", "http://[::1]:5001"),
        ("/dns4/ipfs.example.org/tcp/443/https", "https://ipfs.example.org:443"),
    ],
)
def test_api_address_forms_give_the_same_base_url(given_api: str, base: str) -> None:
    assert api_base_url(given_api) == base


@pytest.mark.parametrize("bad", ["ftp://host:1", "/ip4/127.0.0.1/udp/5001", "/unix/tmp/sock"])
def test_unsupported_api_address_is_refused(bad: str) -> None:
    with pytest.raises(StoreError):
        api_base_url(bad)


# --- LocalStore ----------------------------------------------------------------------------------


def test_local_store_round_trip(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "blocks")
    assert isinstance(store, ContentStore)
    data = os.urandom(500_000)
    cid = store.put(data)
    assert cid == cid_of(data)
    assert store.has(cid)
    assert store.get(cid) == data
    store.pin(cid)
    assert store.put(data) == cid  # idempotent
    assert not [p for p in store.path.rglob("*.tmp")], "temporary files left behind"


def test_local_store_detects_a_modified_byte_on_disk_and_put_repairs_it(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    data = b"experience batch " * 100
    cid = store.put(data)
    path = store.object_path(cid)
    tampered = bytearray(path.read_bytes())
    tampered[len(tampered) // 2] ^= 0x01
    path.write_bytes(bytes(tampered))
    with pytest.raises(CidMismatch, match="modified on disk"):
        store.get(cid)
    assert store.put(data) == cid
    assert store.get(cid) == data


def test_local_store_missing_object(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert not store.has(HELLO_CID)
    with pytest.raises(ContentNotFound, match=HELLO_CID):
        store.get(HELLO_CID)
    with pytest.raises(ContentNotFound, match="cannot pin"):
        store.pin(HELLO_CID)


def test_local_store_enforces_max_bytes_and_refuses_oversize(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    cid = store.put(bytes(10_000))
    with pytest.raises(ObjectTooLarge, match="9,999"):
        store.get(cid, max_bytes=9_999)
    assert store.get(cid, max_bytes=10_000) == bytes(10_000)
    with pytest.raises(ObjectTooLarge):
        store.put(bytes(MAX_OBJECT_BYTES + 1))


def test_local_store_write_failure_leaves_neither_object_nor_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStore(tmp_path)

    def fail_replace(src: str, dst: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail_replace)
    with pytest.raises(OSError, match="disk full"):
        store.put(HELLO)
    assert not store.has(HELLO_CID)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_local_store_rejects_malformed_cids(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(InvalidCid):
        store.has("../../etc/passwd")
    with pytest.raises(InvalidCid):
        store.get(_other_cid(1, "dag-pb"))


# --- the real devnet node ------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 9, 2_048, 500_000, MAX_OBJECT_BYTES])
def test_node_round_trip_gives_the_locally_computed_cid(kubo: KuboClient, size: int) -> None:
    data = os.urandom(size)
    cid = kubo.put(data)
    assert cid == cid_of(data)
    assert kubo.has(cid)
    assert kubo.get(cid) == data


def test_node_put_pins_the_object(kubo: KuboClient, ipfs_api: str) -> None:
    cid = kubo.put(os.urandom(1_000))
    pins = httpx.post(f"{ipfs_api}/api/v0/pin/ls", params={"arg": cid, "type": "recursive"}, timeout=5)
    assert pins.status_code == 200, pins.text
    kubo.pin(cid)  # pinning again is harmless


def test_node_and_local_store_agree_on_cids(kubo: KuboClient, tmp_path: Path) -> None:
    local = LocalStore(tmp_path)
    for data in (HELLO, os.urandom(2_048), os.urandom(300_000)):
        assert kubo.put(data) == local.put(data)


def test_node_missing_cid_is_ContentNotFound_within_the_timeout(ipfs_api: str) -> None:
    missing = cid_of(os.urandom(64))
    with KuboClient(ipfs_api, timeout=2.0) as client:
        started = time.monotonic()
        with pytest.raises(ContentNotFound, match=missing):
            client.get(missing)
        with pytest.raises(ContentNotFound):
            client.pin(missing)
        assert not client.has(missing)
        assert time.monotonic() - started < 3 * 2.0


def test_node_get_reads_at_most_max_bytes(kubo: KuboClient) -> None:
    cid = kubo.put(os.urandom(200_000))
    with pytest.raises(ObjectTooLarge, match="1,000 bytes"):
        kubo.get(cid, max_bytes=1_000)


def test_node_refuses_oversize_payload_before_sending(kubo: KuboClient) -> None:
    with pytest.raises(ObjectTooLarge):
        kubo.put(bytes(MAX_OBJECT_BYTES + 1))


def test_devnet_node_is_offline(kubo: KuboClient, ipfs_api: str) -> None:
    assert kubo.version()["Version"]
    identity = httpx.post(f"{ipfs_api}/api/v0/id", timeout=5).json()
    assert identity["Addresses"] == []  # no swarm listener
    assert httpx.post(f"{ipfs_api}/api/v0/bootstrap/list", timeout=5).json()["Peers"] == []


def test_daemon_exits_0_on_sigterm_and_releases_its_repo(tmp_path: Path) -> None:
    port = free_port()
    repo = tmp_path / "repo"
    proc = subprocess.Popen(
        [str(node_executable()), str(IPFS_DAEMON), "--repo", str(repo), "--port", str(port)],
        cwd=IPFS_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready = proc.stdout.readline()  # type: ignore[union-attr]
        assert ready.startswith("dso-ipfs ready "), ready
        assert json.loads(ready.removeprefix("dso-ipfs ready "))["api"] == f"http://127.0.0.1:{port}"
        assert (repo / "repo.lock").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (repo / "repo.lock").exists()


# --- fake nodes: lying, hanging, unbounded, absent ------------------------------------------------


def _mock_client(handler: Callable[[httpx.Request], httpx.Response], timeout: float = 5.0) -> KuboClient:
    return KuboClient("http://fake-node:5001", timeout=timeout, transport=httpx.MockTransport(handler))


def test_node_serving_wrong_bytes_is_detected() -> None:
    client = _mock_client(lambda request: httpx.Response(200, content=b"hello dsO"))
    with pytest.raises(CidMismatch, match="corrupt or dishonest"):
        client.get(HELLO_CID)


def test_node_serving_the_right_bytes_passes_and_is_asked_with_a_node_timeout() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=HELLO)

    assert _mock_client(handler, timeout=5.0).get(HELLO_CID) == HELLO
    assert seen[0].url.path == "/api/v0/block/get"
    assert seen[0].url.params["arg"] == HELLO_CID
    assert seen[0].url.params["timeout"] == "4000ms"


@pytest.mark.parametrize(
    "answered",
    [_other_cid(1, "dag-pb", digest=hashlib.sha256(HELLO).digest()), cid_of(b"other bytes")],
    ids=["chunked-into-dag-pb", "another-raw-block"],
)
def test_node_answering_another_cid_on_add_is_detected(answered: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert b"Content-Type: application/octet-stream" in request.read()
        return httpx.Response(200, json={"Name": "object", "Hash": answered, "Size": "9"})

    with pytest.raises(CidMismatch, match=f"as {answered}, but their CID is {HELLO_CID}"):
        _mock_client(handler).put(HELLO)


def test_node_answering_the_same_cid_in_base58_is_accepted() -> None:
    answer = {"Name": "object", "Hash": reference_cid(HELLO, "base58btc"), "Size": "9"}
    assert _mock_client(lambda request: httpx.Response(200, json=answer)).put(HELLO) == HELLO_CID


def test_endless_response_is_cut_at_max_bytes() -> None:
    consumed = 0

    def endless() -> Iterator[bytes]:
        nonlocal consumed
        while consumed < 100 * MAX_OBJECT_BYTES:
            consumed += 65_536
            yield bytes(65_536)

    client = _mock_client(lambda request: httpx.Response(200, content=endless()))
    with pytest.raises(ObjectTooLarge):
        client.get(HELLO_CID, max_bytes=100_000)
    assert consumed <= 100_000 + 65_536


def test_declared_oversize_response_is_refused_before_reading() -> None:
    client = _mock_client(lambda request: httpx.Response(200, content=bytes(5_000)))
    with pytest.raises(ObjectTooLarge, match="5,000"):
        client.get(HELLO_CID, max_bytes=4_999)


def test_node_error_that_is_not_about_content_is_a_plain_StoreError() -> None:
    answer = {"Message": "Invalid request query input", "Code": 1, "Type": "error"}
    client = _mock_client(lambda request: httpx.Response(400, json=answer))
    with pytest.raises(StoreError, match="HTTP 400.*Invalid request query input") as raised:
        client.get(HELLO_CID)
    assert not isinstance(raised.value, ContentNotFound)


class _StallingHandler(BaseHTTPRequestHandler):
    """Accepts a request, then answers nothing (mode "hang") or one byte per 0.2 s ("drip"):
    what js-ipfs and an online Kubo do for a CID that nobody provides."""

    mode = "hang"
    queries: list[dict[str, list[str]]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        type(self).queries.append(parse_qs(urlsplit(self.path).query))
        if self.mode == "hang":
            time.sleep(5)
            return
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        for _ in range(25):
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.2)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stalling_node() -> Iterator[tuple[str, type[_StallingHandler]]]:
    handler = type("Handler", (_StallingHandler,), {"queries": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_get_from_a_hanging_node_times_out_with_a_clear_error(stalling_node: tuple[str, type]) -> None:
    url, handler = stalling_node
    with KuboClient(url, timeout=1.0) as client:
        started = time.monotonic()
        with pytest.raises(StoreTimeout, match=f"{url} did not answer /api/v0/block/get within 1.0s"):
            client.get(HELLO_CID)
        assert time.monotonic() - started < 2.0
    assert handler.queries[0]["timeout"] == ["800ms"]


def test_slow_drip_cannot_outlast_the_timeout(stalling_node: tuple[str, type]) -> None:
    url, handler = stalling_node
    handler.mode = "drip"
    with KuboClient(url, timeout=1.0) as client:
        started = time.monotonic()
        with pytest.raises(StoreTimeout):
            client.get(HELLO_CID)
        assert time.monotonic() - started < 2.0


def test_dead_api_url_is_StoreUnavailable_quickly() -> None:
    port = free_port()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "port unexpectedly in use"
    url = f"http://127.0.0.1:{port}"
    with KuboClient(url, timeout=5.0) as client:
        started = time.monotonic()
        for call in (lambda: client.put(HELLO), lambda: client.get(HELLO_CID), lambda: client.has(HELLO_CID)):
            with pytest.raises(StoreUnavailable, match=f"IPFS API at {url} is unreachable"):
                call()
        assert time.monotonic() - started < 1.0
