"""Strict decoding of the CBOR maps dso hashes: a map with exactly the expected fields, or an error.

Experiences and batch documents both open with this step; each then checks its own fields and
that the bytes re-encode to themselves (canonical form).
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

import cbor2

from dso.errors import DsoError

# What cbor2 raises on malformed or hostile input (truncation, bad tags, 2**64-digit bignums,
# nesting deep enough to exhaust the stack).
DECODE_ERRORS = (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError)


def decode_map(data: bytes, what: str, required: Set[str], optional: Set[str], error: type[DsoError]) -> dict[Any, Any]:
    """Decode `data` as a CBOR map holding every `required` field and otherwise only `optional`
    ones; raise `error` naming `what` and the problem."""
    try:
        body = cbor2.loads(data)
    except DECODE_ERRORS as exc:
        raise error(f"{what} is not valid CBOR: {exc}") from exc
    if not isinstance(body, dict):
        raise error(f"{what} must be a CBOR map")
    missing, extra = required - body.keys(), body.keys() - required - optional
    if missing or extra:
        raise error(f"{what} fields wrong: missing {sorted(missing)}, unexpected {sorted(map(str, extra))}")
    return body
