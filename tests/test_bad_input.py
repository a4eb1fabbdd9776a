"""Bad input (issue 5 item 6): malformed JSONL, huge texts, unicode edge cases, NaN embeddings, wrong
model ids, malformed CIDs, valid CBOR of the wrong schema and oversized IPFS objects each end in one
clear error naming the problem: no traceback from the command line, and nothing written half."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import subprocess
import sys
import time
import unicodedata
from pathlib import Path
from typing import Iterator

import cbor2
import httpx
import numpy as np
import pytest
from conftest import deploy_dao
from hypothesis import given, settings
from hypothesis import strategies as st

from dso.core.batch import MAX_DOCUMENT_BYTES, BatchDocument, BatchError, build_batch, parse_document, verify_document
from dso.core.codec import CodecError, codec_for, get_codec
from dso.core.experience import MAX_METADATA_BYTES, MAX_TEXT_BYTES, Experience, ExperienceError, check_embedding, validate_metadata, validate_text
from dso.edges import files as config_module
from dso.edges.chain import Status
from dso.edges.config import NetworkConfig, save_config
from dso.edges.datasets import gsm8k_insights
from dso.edges.embed import EmbeddingError, load_embedder
from dso.edges.files import atomic_write_bytes
from dso.edges.ipfs import CID_PREFIX, MAX_OBJECT_BYTES, KuboClient, cid_from_bytes, cid_of, cid_to_bytes
from dso.edges.wallet import create_dev_wallets
from dso.errors import DsoError, InvalidCid, ObjectTooLarge
from dso.interfaces.cli import main
from dso.workflows.publish import InputError, Outbox, insights_to_jsonl, prepare_batch, publish, read_insights

GOOD = json.dumps({"text": "Check the units before adding two quantities.", "domain": "math", "confidence": 0.8})


@pytest.fixture(scope="module")
def embedder():
    return load_embedder("minilm")


def files_under(path: Path) -> dict[str, bytes]:
    """Every file below `path` with its content: to show that a failed command wrote nothing."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------ malformed JSONL


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (f"{GOOD}\n{GOOD[:-1]}\n{{oops}}\n".encode(), r":2: not valid JSON"),
        (f"{GOOD}\n{GOOD}\n[1, 2]\n".encode(), r":3: each line must be a JSON object"),
        (b'{"text": "x", "domain": "math"}\n', r":1: missing fields \['confidence'\]"),
        (b'{"domain": "math", "confidence": 1}\n', r":1: missing fields \['text'\]"),
        (b'{"text": 5, "domain": "math", "confidence": 0.5}\n', r":1: text must be a string, got int"),
        (b'{"text": "x", "domain": ["math"], "confidence": 0.5}\n', r":1: domain \['math'\] must be a dotted lowercase path"),
        (b'{"text": "x", "domain": "math", "confidence": "high"}\n', r":1: confidence must be a number"),
        (b'{"text": "x", "domain": "math", "confidence": true}\n', r":1: confidence must be a number"),
        (b'{"text": "x", "domain": "math", "confidence": 1e999}\n', r":1: confidence must be in \[0, 1\]"),
        (b'{"text": "x", "domain": "math", "confidence": 0.5, "metadata": [1]}\n', r":1: metadata must be an object"),
        (b'{"text": "x", "domain": "math", "confidence": 0.5, "metadata": {"k": 1.5}}\n', r":1: metadata value for 'k'"),
        (b'{"text": "x", "text": "y", "domain": "math", "confidence": 0.5}\n', r":1: not usable JSON \(field 'text' given more than once\)"),
        (b'{"text": "x", "domain": "math", "confidence": ' + b"9" * 5_000 + b"}\n", r":1: not usable JSON \(Exceeds the limit"),
        (b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b', "domain": "math", "confidence": 0.5}\n', r":1: not usable JSON \(maximum recursion"),
        (GOOD.encode()[:-5], r":1: not valid JSON"),  # the last line cut off
        (b"", r"holds no experiences"),
        (b"\n \r\n\t\n", r"holds no experiences"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", r"is not UTF-8 text"),
        (b"\x00\x01\x02 binary but valid UTF-8", r":1: not valid JSON"),
        (GOOD.encode("utf-16"), r"is not UTF-8 text"),
        (GOOD.replace("units", "unit\u00e9s").encode("latin-1"), r"is not UTF-8 text"),
    ],
    ids=lambda v: None if isinstance(v, bytes) else v[:30],
)
def test_malformed_jsonl_is_an_InputError_naming_the_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_insights(path)


@pytest.mark.parametrize(
    "content",
    [
        "\ufeff" + GOOD + "\n",  # a byte order mark from a Windows editor
        GOOD + "\r\n" + GOOD.replace("units", "signs") + "\r\n",  # CRLF line ends
        GOOD,  # no final newline
        "\n\n" + GOOD + "\n\n",
    ],
    ids=["bom", "crlf", "no-final-newline", "blank-lines"],
)
def test_harmless_file_conventions_are_accepted(tmp_path, content):
    path = tmp_path / "ok.jsonl"
    path.write_bytes(content.encode("utf-8"))
    insights = read_insights(path)
    assert insights[0].text == "Check the units before adding two quantities." and insights[0].confidence == 0.8


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x0c", "\x1e"])
def test_a_line_is_split_only_at_newline_so_unicode_separators_inside_strings_stay_in_their_line(tmp_path, separator):
    """str.splitlines used to cut a JSON string holding U+2028 (or a form feed, ...) in two."""
    text = f"First halve the bill.{separator}Then round up."
    path = tmp_path / "sep.jsonl"
    path.write_text(json.dumps({"text": text, "domain": "math", "confidence": 0.5}, ensure_ascii=False) + "\n" + GOOD + "\n", encoding="utf-8")
    if unicodedata.category(separator) == "Cc":  # form feed, record separator: control characters
        with pytest.raises(InputError, match=r":1: text contains control"):
            read_insights(path)
    else:
        assert [i.text for i in read_insights(path)] == [text, json.loads(GOOD)["text"]]


def test_a_directory_or_a_missing_file_is_an_InputError(tmp_path):
    with pytest.raises(InputError, match="cannot be read: Is a directory"):
        read_insights(tmp_path)
    with pytest.raises(InputError, match="not found"):
        read_insights(tmp_path / "missing.jsonl")


# ------------------------------------------------------------------------------ huge texts


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("x" * MAX_TEXT_BYTES, True),
        ("x" * (MAX_TEXT_BYTES + 1), False),
        ("\u20ac" * (MAX_TEXT_BYTES // 3), True),  # 999 bytes
        ("\u20ac" * (MAX_TEXT_BYTES // 3 + 1), False),  # 1,002 bytes in 334 characters
        ("\U0001f600" * (MAX_TEXT_BYTES // 4), True),
        ("\U0001f600" * (MAX_TEXT_BYTES // 4) + "x", False),
        ("e\u0301" * 333, True),  # 999 bytes in NFD, 666 once normalized to NFC: the limit is on NFC
        ("  " + "x" * MAX_TEXT_BYTES + "  \n", True),  # surrounding whitespace is stripped first
        ("x" * 5_000_000, False),
    ],
    ids=["limit", "limit+1", "euro-999", "euro-1002", "emoji-1000", "emoji-1001", "nfd", "padded", "5MB"],
)
def test_the_text_limit_is_on_nfc_utf8_bytes_and_the_error_names_it(text, accepted):
    started = time.monotonic()
    if accepted:
        assert len(validate_text(text).encode("utf-8")) <= MAX_TEXT_BYTES
    else:
        with pytest.raises(ExperienceError, match=rf"bytes in UTF-8; the limit is {MAX_TEXT_BYTES}"):
            validate_text(text)
    assert time.monotonic() - started < 2.0


def test_a_huge_line_in_a_file_names_the_line_and_the_limit(tmp_path):
    path = tmp_path / "huge.jsonl"
    path.write_text(GOOD + "\n" + json.dumps({"text": "y" * 2_000_000, "domain": "math", "confidence": 0.5}) + "\n")
    with pytest.raises(InputError, match=rf":2: text is 2000000 bytes in UTF-8; the limit is {MAX_TEXT_BYTES}"):
        read_insights(path)


def test_oversized_metadata_names_its_limit():
    with pytest.raises(ExperienceError, match=f"metadata exceeds {MAX_METADATA_BYTES} bytes"):
        validate_metadata({f"k{i}": "v" * 100 for i in range(30)})


def test_a_batch_too_big_for_one_ipfs_block_is_refused_before_anything_is_written(tmp_path):
    node = bytes(20)
    experiences = [
        # random codes: incompressible, so even compressed the document exceeds one IPFS block
        Experience.create("x" * 900 + str(i), "math", 1, "all-MiniLM-L6-v2", "bitdelta-1", random.Random(i).randbytes(4000), node, 0)
        for i in range(300)
    ]
    outbox = Outbox(tmp_path / "outbox")
    with pytest.raises(BatchError, match="split it"):
        outbox.add(build_batch(experiences, dim=384, baseline=bytes(32), created_at=0))
    assert not outbox.path.exists() or files_under(outbox.path) == {}


# ------------------------------------------------------------------------------ unicode edge cases


def _experience(text: str, **overrides) -> Experience:
    fields = {"domain": "math", "confidence": 0.5, "model": "all-MiniLM-L6-v2", "codec": "bitdelta-1", "code": b"\x01" * 50,
              "node": bytes(20), "created_at": 1_700_000_000}
    return Experience.create(text, **{**fields, **overrides})


def test_nfc_and_nfd_spellings_are_one_experience_and_one_batch_entry(tmp_path, embedder):
    nfc, nfd = "Caf\u00e9 bills: divide, then round.", "Cafe\u0301 bills: divide, then round."
    assert nfc != nfd and _experience(nfc) == _experience(nfd)
    assert _experience(nfc).canonical_bytes() == _experience(nfd).canonical_bytes()
    path = tmp_path / "forms.jsonl"
    path.write_text("".join(json.dumps({"text": t, "domain": "math", "confidence": 0.5}) + "\n" for t in (nfc, nfd)), encoding="utf-8")
    document = prepare_batch(read_insights(path), "0x" + "11" * 20, embedder, now=1_700_000_000)
    assert [e.text for e in document.experiences] == [nfc]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("\u200b", "text is empty"),  # zero-width space only
        ("\u200b\u200c\u200d\ufeff \u2060", "text is empty"),  # invisible format characters and a space
        ("\u202e", "text is empty"),  # a lone right-to-left override
        ("Split \ud800 evenly", r"control or unassigned characters: \['0xd800'\]"),  # lone surrogate
        ("Split \udfff evenly", r"control or unassigned characters: \['0xdfff'\]"),
        ("Split\x00evenly", r"control or unassigned characters: \['0x0'\]"),  # NUL
        ("Split\x1b[31m evenly", r"control or unassigned characters: \['0x1b'\]"),  # terminal escape
        ("Split \U000e0001\U0010ffff", r"control or unassigned characters"),  # private use / unassigned
        ("\u202eDivide by three\u202c, then check.", "bidirectional control"),  # display spoofing (issue 11)
    ],
)
def test_invisible_surrogate_and_control_texts_are_refused_by_name(text, problem):
    with pytest.raises(ExperienceError, match=problem):
        _experience(text)


@pytest.mark.parametrize(
    "text",
    [
        "\u05d7\u05dc\u05e7 \u05d0\u05ea \u05d4\u05d7\u05e9\u05d1\u05d5\u05df \u05dc\u05e9\u05dc\u05d5\u05e9\u05d4",  # Hebrew (RTL)
        "Add a\u200bb carefully",  # a zero-width space inside a word
        "\U0001f468\u200d\U0001f469\u200d\U0001f467 families split 3 ways \U0001f44d\U0001f3fd",  # ZWJ emoji, skin tone
        "\u0627\u0644\u0642\u0633\u0645\u0629 \u0639\u0644\u0649 \u0663",  # Arabic with an Arabic-Indic digit
        "Line one\nline two\ttabbed",
    ],
)
def test_legitimate_unicode_is_kept_exactly_and_round_trips(text):
    experience = _experience(text)
    assert experience.text == unicodedata.normalize("NFC", text).strip()
    assert Experience.from_bytes(experience.canonical_bytes()) == experience


@settings(max_examples=300, deadline=None)
@given(codepoints=st.lists(st.integers(0, 0x10FFFF), max_size=40), meta_codepoints=st.lists(st.integers(0, 0x10FFFF), max_size=8))
def test_any_string_of_code_points_is_an_experience_or_an_ExperienceError(codepoints, meta_codepoints):
    """Including lone surrogates, which have no UTF-8 encoding and used to escape as
    UnicodeEncodeError from validate_text and from metadata keys and values."""
    text, meta = "".join(map(chr, codepoints)), "".join(map(chr, meta_codepoints))
    for metadata in ({"note": meta}, {meta or "k": "v"}):
        try:
            experience = _experience(text, metadata=metadata)
        except ExperienceError:
            continue
        assert Experience.from_bytes(experience.canonical_bytes()) == experience


@pytest.mark.parametrize("metadata", [{"k": "\ud800"}, {"\udc00": "v"}, {"k": "ok \udbff"}])
def test_lone_surrogates_in_metadata_are_an_ExperienceError(metadata, tmp_path):
    with pytest.raises(ExperienceError, match="lone surrogate"):
        validate_metadata(metadata)
    path = tmp_path / "meta.jsonl"
    key, value = next(iter(metadata.items()))
    path.write_text(json.dumps({"text": "x", "domain": "math", "confidence": 0.5, "metadata": {key: value}}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=":1: metadata (key|value) .* lone surrogate"):
        read_insights(path)


# ------------------------------------------------------------------------------ NaN embeddings


@pytest.mark.parametrize(
    ("vector", "problem"),
    [
        ([math.nan] * 384, "NaN or infinite"),
        ([math.inf] + [0.1] * 383, "NaN or infinite"),
        ([-math.inf] + [0.1] * 383, "NaN or infinite"),
        ([1e39] + [0.1] * 383, "beyond float32"),  # finite in float64, inf once stored as float32
        ([2**1100] + [0.1] * 383, "not a list of numbers"),  # too large even for float64
        ([0.0] * 384, "all zeros"),
        ([1 + 2j] + [0.1] * 383, "not a list of numbers"),
        ([[0.1] * 384], "shape"),
        ([0.1] * 768, "shape"),
        ([], "shape"),
        (None, "shape"),
        ("0.1" * 384, "not a list of numbers"),
    ],
    ids=["nan", "inf", "-inf", "1e39", "2^1100", "zeros", "complex", "2d", "768", "empty", "none", "string"],
)
def test_unusable_embeddings_are_an_ExperienceError(vector, problem):
    with pytest.raises(ExperienceError, match=problem):
        check_embedding(vector, 384)


@pytest.mark.parametrize("codec_id", ["bitdelta-1", "ternary-2"])
@pytest.mark.parametrize(
    ("vectors", "problem"),
    [
        (np.full((2, 384), np.nan, dtype=np.float32), "NaN or infinity"),
        (np.vstack([np.ones(384), np.full(384, np.inf)]), "NaN or infinity"),
        (np.zeros((1, 384)), "zero vector"),
        (np.ones((1, 383)), "shape"),
        (np.array([["a"] * 384]), "real numbers"),
    ],
    ids=["nan", "inf", "zero", "dim", "strings"],
)
def test_codecs_refuse_unusable_vectors_with_CodecError(codec_id, vectors, problem):
    with pytest.raises(CodecError, match=problem):
        get_codec(codec_id).encode(vectors)


class NanEmbedder:
    """The real model's interface, but a broken runtime: every vector is NaN."""

    dim = 384
    model_id = "sentence-transformers/all-MiniLM-L6-v2"

    def embed(self, texts, batch_size: int = 64) -> np.ndarray:
        return np.full((len(texts), self.dim), np.nan, dtype=np.float32)


def test_an_embedder_producing_nan_fails_the_submit_before_anything_is_queued(tmp_path, w3, accounts):
    dao = deploy_dao(w3, accounts, n_nodes=1)
    path = tmp_path / "in.jsonl"
    path.write_text(insights_to_jsonl(gsm8k_insights(3)))
    outbox = Outbox(tmp_path / "outbox")
    with pytest.raises(CodecError, match="NaN"):
        publish(read_insights(path), dao.nodes[0], NanEmbedder, outbox, lambda: (None, dao.registry))  # type: ignore[arg-type]
    assert not outbox.path.exists() and dao.registry.batch_count() == 0


# ------------------------------------------------------------------------------ wrong model ids


@pytest.mark.parametrize(
    ("field", "value"),
    [("model", ""), ("model", "all MiniLM"), ("model", "m" * 65), ("model", "mod\u00e8le"), ("model", None), ("codec", "-x"), ("codec", "bit delta")],
)
def test_malformed_model_and_codec_ids_are_refused(field, value):
    with pytest.raises(ExperienceError, match=f"{field} .* must be 1-64 ASCII"):
        _experience("Divide, then round.", **{field: value})


def test_unknown_embedders_codecs_and_baselines_are_named_errors():
    with pytest.raises(EmbeddingError, match="unknown embedder 'gpt-embed'"):
        load_embedder("gpt-embed")
    with pytest.raises(CodecError, match="unknown codec 'bitdelta-9'"):
        get_codec("bitdelta-9")
    with pytest.raises(CodecError, match="baseline"):
        codec_for("bitdelta-1", 384, b"\x42" * 32)
    with pytest.raises(CodecError, match="32 bytes"):
        codec_for("bitdelta-1", 384, b"\x42" * 31)


# ------------------------------------------------------------------------------ valid CBOR, wrong schema


def _document() -> BatchDocument:
    experiences = [_experience(f"Step {i}: write down what is known.", created_at=1_700_000_000 + i) for i in range(3)]
    return build_batch(experiences, dim=384, baseline=bytes(range(32)), created_at=1_700_000_100)


WRONG_VALUES = [None, True, -1, 2**64, 1.0, "", "1", b"", b"\x00" * 32, [], [1], {}, {"a": 1}, cbor2.CBORTag(1, 0)]


@pytest.mark.parametrize("field", ["v", "kind", "model", "dim", "codec", "baseline", "node", "ts", "count", "root", "leaves"])
def test_every_header_field_of_the_wrong_type_or_size_is_a_BatchError(field):
    document = _document()
    body = cbor2.loads(document.to_cbor())
    refused = 0
    for value in WRONG_VALUES:
        if type(value) is type(body[field]) and value == body[field]:
            continue
        data = cbor2.dumps({**body, field: value}, canonical=True)
        with pytest.raises(BatchError):
            verify_document(data, document.header.root, 3, document.header.schema_id)
        refused += 1
    assert refused >= len(WRONG_VALUES) - 1


@pytest.mark.parametrize("field", ["v", "text", "domain", "conf", "model", "codec", "code", "node", "ts", "meta"])
def test_every_experience_field_of_a_wrong_value_is_a_BatchError(field):
    document = _document()
    body = cbor2.loads(document.to_cbor())
    for value in WRONG_VALUES:
        leaf = cbor2.loads(body["leaves"][0])
        if field in leaf and type(value) is type(leaf[field]) and value == leaf[field]:
            continue
        leaf[field] = value
        leaves = [cbor2.dumps(leaf, canonical=True), *body["leaves"][1:]]
        # malformed: the experience is refused; valid but different ("1" is a fine text): the root
        with pytest.raises(BatchError, match="invalid experience|disagrees with the header|Merkle root"):
            parse_document(cbor2.dumps({**body, "leaves": leaves}, canonical=True))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda b: {**b, "v": 2}, "unsupported document"),
        (lambda b: {**b, "kind": "dso/batches"}, "unsupported document"),
        (lambda b: {**b, "signature": b"\x00" * 65}, r"unexpected \['signature'\]"),
        (lambda b: {k: v for k, v in b.items() if k != "ts"}, r"missing \['ts'\]"),
        (lambda b: {**b, "baseline": b["baseline"][:31]}, "baseline must be 32 bytes"),
        (lambda b: {**b, "node": b["node"] + b"\x00"}, "node must be 20 bytes"),
        (lambda b: {**b, "root": b["root"] * 2}, "root must be 32 bytes"),
        (lambda b: {**b, "leaves": []}, "non-empty list"),
        (lambda b: {**b, "leaves": tuple(b["leaves"]) + (b"",)}, "invalid experience"),
        (lambda b: {**b, "leaves": [cbor2.dumps({**cbor2.loads(b["leaves"][0]), "v": 2}, canonical=True), *b["leaves"][1:]]}, "encoding version 2"),
        (lambda b: {**b, "leaves": [cbor2.dumps({**cbor2.loads(b["leaves"][0]), "emb": [0.1]}, canonical=True), *b["leaves"][1:]]}, r"unexpected \['emb'\]"),
        (lambda b: {**b, "leaves": [cbor2.dumps({**cbor2.loads(b["leaves"][0]), "code": b""}, canonical=True), *b["leaves"][1:]]}, "code must be 1-4096 bytes"),
        (lambda b: {**b, "leaves": [cbor2.dumps({**cbor2.loads(b["leaves"][0]), "conf": 1_000_001}, canonical=True), *b["leaves"][1:]]}, r"conf must be an integer in \[0, 1000000\]"),
        (lambda b: {**b, "leaves": [cbor2.dumps({**cbor2.loads(b["leaves"][0]), "meta": {}}, canonical=True), *b["leaves"][1:]]}, "empty meta must be omitted"),
        (lambda b: [b], "must be a CBOR map"),
        (lambda b: cbor2.CBORTag(55799, b), "must be a CBOR map"),  # the self-described CBOR tag
    ],
    ids=["version", "kind", "extra", "missing", "baseline-31", "node-21", "root-64", "no-leaves", "empty-leaf", "leaf-version",
         "leaf-extra", "leaf-empty-code", "leaf-conf", "leaf-empty-meta", "array", "tagged"],
)
def test_valid_cbor_of_the_wrong_schema_says_what_is_wrong(change, problem):
    body = cbor2.loads(_document().to_cbor())
    with pytest.raises(BatchError, match=problem):
        parse_document(cbor2.dumps(change(body), canonical=True))


@pytest.mark.parametrize(
    "data",
    [
        b"\x5b" + (2**63).to_bytes(8, "big"),  # a byte string claiming 8 EiB
        b"\x9b" + (2**62).to_bytes(8, "big"),  # an array claiming 2**62 items
        b"\xbb" + (2**32).to_bytes(8, "big"),  # a map claiming 2**32 pairs
        b"\x81" * 200_000 + b"\x00",  # arrays nested 200,000 deep
        b"\xd8\x1c" * 100_000 + b"\x00",  # shareable tags nested 100,000 deep
        b"\xc2\x5a\x00\x0f\xff\xff" + b"\xff" * 0xFFFFF,  # a 1 MiB bignum
        bytes(MAX_DOCUMENT_BYTES + 1),
    ],
    ids=["bstr-8EiB", "array-2^62", "map-2^32", "deep-arrays", "deep-tags", "bignum-1MiB", "over-1MiB"],
)
def test_cbor_bombs_are_refused_quickly_with_a_BatchError(data):
    started = time.monotonic()
    with pytest.raises(BatchError):
        parse_document(data)
    with pytest.raises(ExperienceError):
        Experience.from_bytes(data)
    assert time.monotonic() - started < 2.0


cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6) | st.integers(-3, 3), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=cbor_values, field=st.sampled_from(["v", "model", "dim", "node", "count", "leaves", "meta", "text", "code"]))
def test_any_cbor_value_in_any_field_is_a_BatchError_never_a_crash(value, field):
    body = cbor2.loads(_document().to_cbor())
    if field in body:
        body[field] = value
    else:
        leaf = cbor2.loads(body["leaves"][1])
        leaf[field] = value
        body["leaves"] = [body["leaves"][0], cbor2.dumps(leaf, canonical=True), body["leaves"][2]]
    for encoded in (cbor2.dumps(body, canonical=True), cbor2.dumps(value)):
        try:
            parse_document(encoded)
        except BatchError:
            continue


# ------------------------------------------------------------------------------ oversized IPFS objects


class CountingTransport(httpx.HTTPTransport):
    """Talks to the real node and counts the body bytes the client actually pulled; with
    `hide_length` it drops Content-Length, so only the streaming cap can stop the read."""

    def __init__(self, hide_length: bool = False) -> None:
        super().__init__()
        self.hide_length = hide_length
        self.received = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        stream = response.stream

        def counted() -> Iterator[bytes]:
            try:
                for chunk in stream:
                    self.received += len(chunk)
                    yield chunk
            finally:
                stream.close()

        headers = [(k, v) for k, v in response.headers.items() if not (self.hide_length and k.lower() == "content-length")]
        return httpx.Response(response.status_code, headers=headers, stream=_Stream(counted()))


class _Stream(httpx.SyncByteStream):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks

    def close(self) -> None:
        self.chunks.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def oversized(ipfs_api) -> tuple[str, int]:
    """A 3 MiB raw block on the real IPFS node, added around dso (whose put refuses it), with a
    chunk size so large that its CID is a plain bafkrei... one, checkable from bytes."""
    data = os.urandom(3 * MAX_OBJECT_BYTES)
    answer = httpx.post(
        f"{ipfs_api}/api/v0/add",
        params={"cid-version": "1", "raw-leaves": "true", "chunker": f"size-{4 * MAX_OBJECT_BYTES}", "pin": "true", "cid-base": "base32"},
        files={"file": ("big", data, "application/octet-stream")},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    cid = json.loads(answer.text.splitlines()[-1])["Hash"]
    assert cid == cid_from_bytes(CID_PREFIX + hashlib.sha256(data).digest())
    return cid, len(data)


def test_an_oversized_object_on_the_node_is_refused_from_its_declared_length(ipfs_api, oversized):
    cid, size = oversized
    transport = CountingTransport()
    with KuboClient(ipfs_api, transport=transport) as client:
        with pytest.raises(ObjectTooLarge, match=f"{size:,} bytes"):
            client.get(cid)
    assert transport.received < 64 * 1024  # refused from the header, not read


def test_an_oversized_object_without_a_declared_length_is_cut_at_the_cap(ipfs_api, oversized):
    cid, size = oversized
    transport = CountingTransport(hide_length=True)
    with KuboClient(ipfs_api, transport=transport) as client:
        with pytest.raises(ObjectTooLarge, match=f"limit of {MAX_OBJECT_BYTES:,} bytes"):
            client.get(cid)
        assert transport.received <= MAX_OBJECT_BYTES + 256 * 1024 < size
        transport.received = 0
        with pytest.raises(ObjectTooLarge, match="limit of 10,000 bytes"):
            client.get(cid, max_bytes=10_000)
        assert transport.received <= 10_000 + 256 * 1024


# ------------------------------------------------------------------------------ the command line


@pytest.fixture
def home(tmp_path, monkeypatch, w3, accounts, anvil_url, ipfs_api):
    """A DSO_HOME on a fresh registry on the session devnet, with dev wallets."""
    monkeypatch.setenv("DSO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DSO_DEV_PASSWORD", "dev")
    dao = deploy_dao(w3, accounts, n_members=3, n_nodes=2)
    save_config(NetworkConfig(anvil_url, w3.eth.chain_id, dao.registry.address, 0, "test", ipfs_api))
    create_dev_wallets({"deployer": dao.deployer, **{f"member{i + 1}": m for i, m in enumerate(dao.members)}, "node1": dao.nodes[0], "node2": dao.nodes[1]})
    return tmp_path / "home", dao


def dso(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the `dso` entry point in-process (as the console script does): (exit code, out, err).
    An exception other than SystemExit escaping it would be a traceback for the user."""
    monkeypatch.setattr(sys, "argv", ["dso", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_clear_line(code: int, err: str, *needles: str) -> None:
    assert code == 1, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], err


SIGNER = ["--wallet", "node1", "--password-env", "DSO_DEV_PASSWORD"]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (f"{GOOD}\n{GOOD[:-1]}\n".encode(), "in.jsonl:2: not valid JSON"),
        (b'{"text": "x", "domain": "math"}\n', "in.jsonl:1: missing fields ['confidence']"),
        (json.dumps({"text": "z" * 1_500, "domain": "math", "confidence": 0.5}).encode() + b"\n", "the limit is 1000"),
        (b'{"text": "\\ud800", "domain": "math", "confidence": 0.5}\n', "0xd800"),
        (b'{"text": "ok", "domain": "math", "confidence": 0.5, "metadata": {"\\udc00": 1}}\n', "lone surrogate"),
        (b"\xff\xfe\x00\x00", "is not UTF-8 text"),
        (b"", "holds no experiences"),
    ],
    ids=["bad-json", "missing", "huge", "surrogate", "meta-surrogate", "binary", "empty"],
)
def test_submit_of_bad_input_is_one_clear_line_and_writes_nothing(home, monkeypatch, capsys, content, needle):
    path, dao = home
    bad = path.parent / "in.jsonl"
    bad.write_bytes(content)
    before = files_under(path)
    code, _, err = dso(monkeypatch, capsys, "submit", str(bad), *SIGNER)
    assert_one_clear_line(code, err, needle)
    assert files_under(path) == before and not (path / "outbox").exists()
    assert dao.registry.batch_count() == 0


def test_submit_of_a_directory_is_a_usage_error_without_traceback(home, monkeypatch, capsys):
    path, _ = home
    code, _, err = dso(monkeypatch, capsys, "submit", str(path.parent), *SIGNER)
    assert code == 2 and "is a directory" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["show", "zz" * 32], "is not a hex batch root"),
        (["show", "0x"], "names no batch"),
        (["show", "ab" * 32], "no BatchSubmitted event"),
    ],
)
def test_show_with_a_malformed_root_is_one_clear_line(home, monkeypatch, capsys, args, needle):
    code, _, err = dso(monkeypatch, capsys, *args)
    assert_one_clear_line(code, err, needle)


@pytest.mark.parametrize(
    ("cid", "needle"),
    [
        (bytes.fromhex("01701220") + bytes(32), "is not 36 bytes starting 01551220"),  # dag-pb
        (bytes.fromhex("1220") + bytes(32), "is not 36 bytes starting 01551220"),  # a CIDv0 multihash
        (b"\x01", "is not 36 bytes starting 01551220"),
        (b"bafkreigopzd4ftarbogozxc77z5nkkefs4g5lj7taopoxjmmzdsbpgyqru", "is not 36 bytes starting 01551220"),  # text, not binary
    ],
    ids=["dag-pb", "v0", "one-byte", "text-form"],
)
def test_show_of_a_batch_committed_with_a_malformed_cid_is_one_clear_line(home, monkeypatch, capsys, cid, needle):
    path, dao = home
    root = os.urandom(32)
    dao.registry.submit_batch(dao.nodes[0], root, cid, 3, os.urandom(32))
    code, _, err = dso(monkeypatch, capsys, "show", root.hex())
    assert_one_clear_line(code, err, "binary CID", needle)


def test_show_of_an_oversized_object_is_one_clear_line(home, monkeypatch, capsys, oversized):
    path, dao = home
    cid, size = oversized
    root = os.urandom(32)
    dao.registry.submit_batch(dao.nodes[0], root, cid_to_bytes(cid), 3, os.urandom(32))
    code, _, err = dso(monkeypatch, capsys, "show", root.hex()[:12])
    assert_one_clear_line(code, err, "larger than the limit of 1,048,576 bytes")


def test_the_real_console_script_prints_one_line_for_bad_input(home):
    path, dao = home
    bad = path.parent / "in.jsonl"
    bad.write_text(GOOD + "\n" + "{not json\n")
    result = subprocess.run(
        [sys.executable, "-m", "dso", "submit", str(bad), *SIGNER],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: {bad}:2: not valid JSON (Expecting property name enclosed in double quotes)"]
    assert not (path / "outbox").exists() and dao.registry.batch_count() == 0


# ------------------------------------------------------------------------------ sync paths


def _accept(dao, root: bytes) -> None:
    for member in dao.members:
        dao.registry.vote_on_batch(member, root, True)
    assert dao.registry.finalize_batch(dao.deployer, root).status == Status.ACCEPTED


@pytest.fixture
def sync_world(w3, accounts, embedder, ipfs_api, tmp_path):
    from dso.workflows.library import Library

    dao = deploy_dao(w3, accounts, n_members=3, n_nodes=2)
    store = KuboClient(ipfs_api)
    library = Library(tmp_path / "library.sqlite", embedder)
    yield dao, store, library, tmp_path / "sync.json"
    library.close()
    store.close()


def _publish_honest(dao, store, embedder, offset: int) -> BatchDocument:
    document = prepare_batch(gsm8k_insights(3, offset=offset), dao.nodes[0].address, embedder, now=1_764_000_000 + offset)
    h = document.header
    dao.registry.submit_batch(dao.nodes[0], h.root, cid_to_bytes(store.put(document.to_bytes())), h.count, h.schema_id)
    _accept(dao, h.root)
    return document


def test_sync_does_not_load_an_oversized_object_and_loads_the_rest(sync_world, embedder, oversized):
    """An object above the cap is never read, so its bytes are never checked against the CID: the
    store may be lying (issue 11), and the batch is retried on the next sync, never loaded."""
    from dso.workflows.sync import sync

    dao, store, library, state = sync_world
    honest = _publish_honest(dao, store, embedder, 1_100)
    cid, _ = oversized
    root = os.urandom(32)
    dao.registry.submit_batch(dao.nodes[1], root, cid_to_bytes(cid), 3, honest.header.schema_id)
    _accept(dao, root)
    report = sync(dao.registry, store, library, state)
    assert report.loaded == [honest.header.root.hex()]
    assert report.invalid == {} and list(report.unavailable) == [root.hex()] and "ObjectTooLarge" in report.unavailable[root.hex()]


def test_a_batch_of_a_model_the_client_cannot_read_neither_stops_sync_nor_enters_the_library(sync_world, embedder):
    """A node publishes codes of another model against an unknown baseline (valid identifiers,
    consistent document, matching schema); the DAO accepts it anyway. Its 50-byte codes cannot be
    1536-d bitdelta-1 codes, so verification refuses the batch (issue 11); the honest batch beside it
    loads as usual."""
    from dso.workflows.sync import sync

    dao, store, library, state = sync_world
    honest = _publish_honest(dao, store, embedder, 1_200)
    node = dao.nodes[1].address
    foreign = [Experience.create(f"Foreign insight {i}.", "math", 0.9, "text-embedding-3-small", "bitdelta-1", bytes([i]) * 50, node, 1)
               for i in range(3)]
    document = build_batch(foreign, dim=1536, baseline=bytes([7]) * 32, created_at=1)
    h = document.header
    dao.registry.submit_batch(dao.nodes[1], h.root, cid_to_bytes(store.put(document.to_bytes())), h.count, h.schema_id)
    _accept(dao, h.root)
    report = sync(dao.registry, store, library, state)
    assert honest.header.root.hex() in report.loaded
    assert all(library.get(e.experience_id) is None for e in foreign)


def test_a_batch_committed_with_a_malformed_cid_is_refused_and_does_not_stop_sync(sync_world, embedder):
    from dso.workflows.sync import sync

    dao, store, library, state = sync_world
    honest = _publish_honest(dao, store, embedder, 1_300)
    root = os.urandom(32)
    dao.registry.submit_batch(dao.nodes[1], root, bytes.fromhex("01701220") + bytes(32), 3, honest.header.schema_id)
    report = sync(dao.registry, store, library, state)
    assert report.loaded == [honest.header.root.hex()]
    _accept(dao, root)
    later = sync(dao.registry, store, library, state)
    assert list(later.invalid) == [root.hex()] and "InvalidCid" in later.invalid[root.hex()]


# ------------------------------------------------------------------------------ nothing written half


def test_an_outbox_write_that_dies_leaves_whole_files_or_none(tmp_path, monkeypatch):
    document = _document()
    outbox = Outbox(tmp_path / "outbox")
    real_replace = os.replace

    def die_on_the_state_file(src, dst):
        if str(dst).endswith(".json"):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", die_on_the_state_file)
    with pytest.raises(OSError, match="disk full"):
        outbox.add(document)
    monkeypatch.undo()
    files = files_under(outbox.path)
    assert not any(name.endswith(".tmp") for name in files)  # no torn temporary file
    assert outbox.entries() == []  # no state file, so no entry pointing at a missing document
    assert all(parse_document(data) == document for name, data in files.items() if name.endswith(".cbor"))
    entry = outbox.add(document)  # the retry completes it
    assert outbox.entries() == [entry] and parse_document(outbox.document(entry)) == document


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_an_atomic_write_that_fails_keeps_the_old_file(tmp_path, monkeypatch, failing):
    target = tmp_path / "config.json"
    target.write_text("old")

    def boom(*args, **kwargs):
        raise OSError(f"{failing} failed")

    if failing == "write":
        monkeypatch.setattr(config_module.os, "fdopen", lambda fd, mode: _FailingFile(fd))
    else:
        monkeypatch.setattr(config_module.os, failing, boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new" * 1_000)
    monkeypatch.undo()
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["config.json"]


class _FailingFile:
    """A file that accepts nothing: the disk filled up mid-write."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> "_FailingFile":
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def write(self, data: bytes) -> int:
        raise OSError("No space left on device")


def test_cid_helpers_refuse_malformed_input_with_InvalidCid():
    for bad in ("", "bafy", "Qm" + "1" * 44, "b" + "a" * 58, "/ipfs/" + cid_of(b"x")):
        with pytest.raises(InvalidCid):
            cid_to_bytes(bad)
    for raw in (b"", bytes(36), CID_PREFIX + bytes(31)):
        with pytest.raises(InvalidCid):
            cid_from_bytes(raw)
    assert isinstance(InvalidCid("x"), DsoError)
