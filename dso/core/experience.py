"""What an experience is, and its one canonical byte encoding.

The canonical bytes are what gets hashed (the experience id), what the Merkle tree's leaves are,
and what a leaf challenge proves. So there is exactly one encoding: deterministic CBOR (RFC 8949
section 4.2: sorted map keys, shortest integers), a version field, no floats (confidence is stored
in parts per million), NFC-normalized text. Decoding is strict: bytes that do not re-encode to
themselves are refused, so nobody can publish two byte strings for one experience.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Mapping

import cbor2
import numpy as np

from dso.core.cbor import decode_map
from dso.errors import ExperienceError

ENCODING_VERSION = 1
MAX_TEXT_BYTES = 1_000
MAX_DOMAIN_CHARS = 128
MAX_ID_CHARS = 64
MAX_METADATA_BYTES = 2_048
MAX_CODE_BYTES = 4_096
CONFIDENCE_SCALE = 1_000_000
EXPERIENCE_FIELDS = frozenset({"v", "text", "domain", "conf", "model", "codec", "code", "node", "ts"})

_DOMAIN = re.compile(r"[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+-]*")
_FORBIDDEN_CHARS = {"Cc", "Cs", "Co", "Cn"}  # control, surrogate, private use, unassigned
# Bidirectional embeddings, overrides and isolates (LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI):
# they reorder how the text after them is displayed, so members reviewing a batch would read
# something other than what is signed ("Trojan Source", CVE-2021-42574). Marks (LRM, RLM, ALM)
# reorder nothing and stay allowed, as right-to-left scripts need them.
BIDI_CONTROLS = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
# Characters shown as escapes wherever dso prints a text: controls, format characters (bidi,
# zero-width) and the Unicode line and paragraph separators.
_ESCAPED_ON_DISPLAY = {"Cc", "Cf", "Zl", "Zp"}


def normalize_text(text: str) -> str:
    """NFC-normalize and strip, so that visually identical insights encode identically."""
    return unicodedata.normalize("NFC", text).strip()


def validate_text(text: Any) -> str:
    """Return the normalized text or raise: non-empty, <= MAX_TEXT_BYTES UTF-8, no control chars."""
    if not isinstance(text, str):
        raise ExperienceError(f"text must be a string, got {type(text).__name__}")
    normalized = normalize_text(text)
    if normalized and normalized.replace("\n", " ").replace("\t", " ").isprintable():
        # Fast path (nearly every text): no control, format, surrogate, private-use, unassigned or
        # separator character at all, so nothing below can refuse it but the size.
        size = len(normalized.encode("utf-8"))
        if size > MAX_TEXT_BYTES:
            raise ExperienceError(f"text is {size} bytes in UTF-8; the limit is {MAX_TEXT_BYTES}")
        return normalized
    if not any(not c.isspace() and unicodedata.category(c) != "Cf" for c in normalized):
        raise ExperienceError("text is empty (nothing but whitespace or invisible format characters)")
    # surrogatepass: a lone surrogate has no UTF-8 encoding; it is refused just below, by name.
    size = len(normalized.encode("utf-8", "surrogatepass"))
    if size > MAX_TEXT_BYTES:
        raise ExperienceError(f"text is {size} bytes in UTF-8; the limit is {MAX_TEXT_BYTES}")
    bad = sorted({c for c in normalized if c not in "\n\t" and unicodedata.category(c) in _FORBIDDEN_CHARS})
    if bad:
        raise ExperienceError(f"text contains control or unassigned characters: {[hex(ord(c)) for c in bad]}")
    bidi = sorted(set(normalized) & BIDI_CONTROLS)
    if bidi:
        names = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c).lower()}" for c in bidi)
        raise ExperienceError(f"text contains bidirectional control characters ({names}): they make it display differently "
                              "from what is signed; remove them")
    return normalized


def text_hash(text: str) -> bytes:
    """sha256 of a text's UTF-8: the key of its group of reports and of its local embedding."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def display_text(text: str) -> str:
    """`text` as dso shows it to people: every control or format character (bidi controls,
    zero-width characters, line breaks, tabs) written as a visible escape such as ``\\u202e``, so
    what a reviewer reads is what was signed, character for character."""
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in _ESCAPED_ON_DISPLAY else c for c in text)


def validate_domain(domain: Any) -> str:
    """A dotted lowercase path like `math.algebra` (segments [a-z0-9_-], prefix-matchable)."""
    if not isinstance(domain, str) or not _DOMAIN.fullmatch(domain) or len(domain) > MAX_DOMAIN_CHARS:
        raise ExperienceError(
            f"domain {domain!r} must be a dotted lowercase path like 'math.algebra' "
            f"(segments of a-z, 0-9, '_' or '-', at most {MAX_DOMAIN_CHARS} characters)"
        )
    return domain


def validate_confidence(confidence: Any) -> float:
    """A finite number in [0, 1]."""
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        raise ExperienceError(f"confidence must be a number in [0, 1], got {confidence!r}")
    value = float(confidence)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ExperienceError(f"confidence must be in [0, 1], got {confidence!r}")
    return value


def validate_identifier(value: Any, what: str) -> str:
    """Model and codec ids: short ASCII names like `all-MiniLM-L6-v2` or `bitdelta-1`."""
    if not isinstance(value, str) or not _ID.fullmatch(value) or len(value) > MAX_ID_CHARS:
        raise ExperienceError(f"{what} {value!r} must be 1-{MAX_ID_CHARS} ASCII letters, digits or ._/+-")
    return value


def validate_metadata(metadata: Any) -> dict[str, Any]:
    """Flat string keys to str/int/bool values, at most MAX_METADATA_BYTES encoded (no floats:
    they have more than one reasonable encoding)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ExperienceError("metadata must be an object of string keys to string, integer or boolean values")
    clean: dict[str, Any] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or len(key) > MAX_ID_CHARS:
            raise ExperienceError(f"metadata key {key!r} must be a non-empty string of at most {MAX_ID_CHARS} characters")
        for what, string in (("key", key), ("value", value)):
            if isinstance(string, str) and any(unicodedata.category(c) == "Cs" for c in string):
                raise ExperienceError(f"metadata {what} {string!r} contains a lone surrogate, which has no UTF-8 encoding")
        if isinstance(value, str):
            clean[key] = unicodedata.normalize("NFC", value)
        elif isinstance(value, (bool, int)) and (isinstance(value, bool) or -(2**63) <= value < 2**64):
            clean[key] = value
        else:
            raise ExperienceError(f"metadata value for {key!r} must be a string, integer or boolean, got {type(value).__name__}")
    if len(cbor2.dumps(clean, canonical=True)) > MAX_METADATA_BYTES:
        raise ExperienceError(f"metadata exceeds {MAX_METADATA_BYTES} bytes when encoded")
    return clean


def check_embedding(vector: Any, dim: int) -> np.ndarray:
    """An embedding as float32 of exactly `dim` finite values, or a clear error (NaN, inf, shape)."""
    try:
        array = np.asarray(vector, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ExperienceError(f"embedding is not a list of numbers: {exc}") from exc
    if array.shape != (dim,):
        raise ExperienceError(f"embedding has shape {array.shape}; the model produces ({dim},)")
    with np.errstate(over="ignore"):
        array = array.astype(np.float32)  # checked after the cast: 1e39 is finite only in float64
    if not np.all(np.isfinite(array)):
        raise ExperienceError("embedding contains NaN or infinite values (or values beyond float32)")
    if not np.any(array):
        raise ExperienceError("embedding is all zeros")
    return array


@dataclass(frozen=True)
class Experience:
    """One learned insight with its compressed embedding and provenance.

    Construct through `Experience.create` (validates and normalizes) or `Experience.from_bytes`
    (strict decode). `code` is the codec's compressed embedding; `model` and `codec` name how to
    read it. `node` is the 20-byte address of the node that published it.
    """

    text: str
    domain: str
    confidence_ppm: int
    model: str
    codec: str
    code: bytes
    node: bytes
    created_at: int
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def confidence(self) -> float:
        """Confidence in [0, 1] (stored to 1e-6)."""
        return self.confidence_ppm / CONFIDENCE_SCALE

    @classmethod
    def create(
        cls,
        text: str,
        domain: str,
        confidence: float,
        model: str,
        codec: str,
        code: bytes,
        node: bytes | str,
        created_at: int,
        metadata: Mapping[str, Any] | None = None,
    ) -> "Experience":
        """Validate every field and build the experience; raise ExperienceError naming the problem."""
        node_bytes = _node_bytes(node)
        if not isinstance(code, (bytes, bytearray)) or not 0 < len(code) <= MAX_CODE_BYTES:
            raise ExperienceError(f"code must be 1-{MAX_CODE_BYTES} bytes")
        if isinstance(created_at, bool) or not isinstance(created_at, int) or not 0 <= created_at < 2**63:
            raise ExperienceError(f"created_at must be a non-negative integer of seconds, got {created_at!r}")
        return cls(
            text=validate_text(text),
            domain=validate_domain(domain),
            confidence_ppm=round(validate_confidence(confidence) * CONFIDENCE_SCALE),
            model=validate_identifier(model, "model"),
            codec=validate_identifier(codec, "codec"),
            code=bytes(code),
            node=node_bytes,
            created_at=created_at,
            metadata=validate_metadata(metadata),
        )

    def to_cbor_map(self) -> dict[str, Any]:
        """The map that is encoded; `meta` only when non-empty."""
        body: dict[str, Any] = {
            "v": ENCODING_VERSION,
            "text": self.text,
            "domain": self.domain,
            "conf": self.confidence_ppm,
            "model": self.model,
            "codec": self.codec,
            "code": self.code,
            "node": self.node,
            "ts": self.created_at,
        }
        if self.metadata:
            body["meta"] = dict(self.metadata)
        return body

    def canonical_bytes(self) -> bytes:
        """The one byte encoding: deterministic CBOR of `to_cbor_map()` (computed once per
        experience: an experience is immutable, and a sync of 64k leaves hashes each several times)."""
        return self._canonical

    @functools.cached_property
    def _canonical(self) -> bytes:
        return cbor2.dumps(self.to_cbor_map(), canonical=True)

    @functools.cached_property
    def experience_id(self) -> str:
        """Hex sha256 of the canonical bytes: the experience's content id."""
        return hashlib.sha256(self._canonical).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Experience":
        """Strictly decode canonical bytes: schema, version, validity and canonical form."""
        body = decode_map(data, "experience", EXPERIENCE_FIELDS, frozenset({"meta"}), ExperienceError)
        if body["v"] != ENCODING_VERSION:
            raise ExperienceError(f"unsupported experience encoding version {body['v']!r}")
        conf = body["conf"]
        if isinstance(conf, bool) or not isinstance(conf, int) or not 0 <= conf <= CONFIDENCE_SCALE:
            raise ExperienceError(f"conf must be an integer in [0, {CONFIDENCE_SCALE}]")
        if "meta" in body and not body["meta"]:
            raise ExperienceError("empty meta must be omitted")
        experience = cls.create(
            text=body["text"],
            domain=body["domain"],
            confidence=conf / CONFIDENCE_SCALE,
            model=body["model"],
            codec=body["codec"],
            code=body["code"],
            node=body["node"],
            created_at=body["ts"],
            metadata=body.get("meta"),
        )
        if experience.canonical_bytes() != bytes(data):
            raise ExperienceError("experience bytes are not in canonical form")
        return experience

    def to_json(self) -> dict[str, Any]:
        """A readable view (for `dso show` and JSON output); not an encoding that is hashed."""
        return {
            "id": self.experience_id,
            "text": self.text,
            "domain": self.domain,
            "confidence": self.confidence,
            "model": self.model,
            "codec": self.codec,
            "code": self.code.hex(),
            "node": "0x" + self.node.hex(),
            "created_at": self.created_at,
            "metadata": dict(self.metadata),
        }


def _node_bytes(node: bytes | str) -> bytes:
    if isinstance(node, str):
        hex_part = node[2:] if node.startswith(("0x", "0X")) else node
        try:
            node = bytes.fromhex(hex_part)
        except ValueError as exc:
            raise ExperienceError(f"node {node!r} is not a hex address") from exc
    if not isinstance(node, (bytes, bytearray)) or len(node) != 20:
        raise ExperienceError("node must be a 20-byte address")
    return bytes(node)


@dataclass(frozen=True)
class Insight:
    """An experience as a node submits it, before it is embedded and compressed."""

    text: str
    domain: str
    confidence: float
    metadata: Mapping[str, Any] = field(default_factory=dict)


def domain_matches(domain: str, prefix: str) -> bool:
    """Whether `domain` is `prefix` or below it (`math` matches `math.algebra`, not `mathematics`)."""
    return domain == prefix or domain.startswith(prefix + ".")
