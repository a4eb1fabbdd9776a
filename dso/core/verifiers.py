"""Rewards for the learning loop: a verifier scores one reply against a task's reference answer.

Training-Free GRPO (arXiv 2510.08191, section 3) needs only a scalar reward per rollout; for tasks
with a checkable answer that reward comes from a rule, not a judge model. `NumericVerifier` is the
rule for GSM8K-style tasks: the reference is the number after "####" (GSM8K's own format) or the
whole reference; the reply's final answer is its last "Answer: X" line, else a "#### X" or
"\\boxed{X}", else the last number it writes (small models often forget the format, and their last
number is their answer far more often than any other). Reward 1 when the two are equal as exact
fractions, or when the reply wrote a decimal with at least 2 places that is the reference rounded
to those places (0.33 for 1/3). No relative tolerance: 999,999 is not 1,000,000.

Other task kinds plug in through the `Verifier` protocol and `VERIFIERS` (a verifier is chosen by
name in the tasks file or on the command line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

from dso.errors import InputError

_NUMBER = r"-?\$?\s?\d[\d,]*(?:\.\d+)?(?:\s?/\s?\d+)?|-?\$?\.\d+"
_FINAL_PATTERNS = (
    re.compile(rf"answer\s*(?:is|:)\s*\**\s*({_NUMBER})", re.IGNORECASE),
    re.compile(rf"####\s*({_NUMBER})"),
    re.compile(rf"\\boxed\{{\s*({_NUMBER})\s*\}}"),
)
_ANY_NUMBER = re.compile(_NUMBER)


@dataclass(frozen=True)
class Verdict:
    """A reward in [0, 1], the answer read from the reply (None: none found) and the expected one."""

    reward: float
    predicted: str | None
    expected: str


class Verifier(Protocol):
    """Scores a reply against a reference answer. Must be deterministic and pure."""

    name: str

    def verify(self, reply: str, reference: str) -> Verdict:
        """The reward of `reply` for a task whose reference answer is `reference`."""
        ...


def parse_number(text: str) -> Fraction | None:
    """A number as written in a math answer ("1,234", "$5.50", "-3", "3/4", ".5") as an exact
    Fraction; None if `text` is not one."""
    cleaned = text.replace("$", "").replace(",", "").replace(" ", "").strip().rstrip(".")
    if not cleaned:
        return None
    try:
        if "/" in cleaned:
            numerator, denominator = cleaned.split("/", 1)
            return Fraction(Fraction(numerator), Fraction(denominator)) if Fraction(denominator) != 0 else None
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def final_number(reply: str) -> str | None:
    """The reply's final answer as written: the last "Answer: X" / "#### X" / "\\boxed{X}", else its last number."""
    for pattern in _FINAL_PATTERNS:
        found = pattern.findall(reply)
        if found:
            return found[-1].strip()
    numbers = _ANY_NUMBER.findall(reply)
    return numbers[-1].strip() if numbers else None


def reference_number(reference: str) -> Fraction:
    """The number a GSM8K-style reference answer ends in ("... #### 72"), or the whole reference
    if it is a number; InputError otherwise (a task without a checkable answer)."""
    text = reference.rsplit("####", 1)[1] if "####" in reference else reference
    value = parse_number(text)
    if value is None:
        raise InputError(f"reference answer {reference[-60:]!r} has no number to check against (GSM8K form: '... #### 72')")
    return value


@dataclass(frozen=True)
class NumericVerifier:
    """Reward 1 when the reply's final number is the reference's (exactly, or rounded to the
    2 or more decimal places the reply wrote), else 0."""

    name: str = "numeric"

    def verify(self, reply: str, reference: str) -> Verdict:
        """Compare the final numbers (see the module docstring)."""
        expected = reference_number(reference)
        written = final_number(reply)
        predicted = parse_number(written) if written is not None else None
        return Verdict(1.0 if predicted is not None and _same(predicted, expected, written or "") else 0.0, written, _show(expected))


def _same(predicted: Fraction, expected: Fraction, written: str) -> bool:
    """Exactly equal, or `written` has >= 2 decimal places and is `expected` rounded to them."""
    if predicted == expected:
        return True
    places = len(written.rstrip(".").split(".", 1)[1]) if "." in written.rstrip(".") else 0
    return "/" not in written and places >= 2 and abs(predicted - expected) <= Fraction(1, 2 * 10**places)


def _show(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else str(float(value))


VERIFIERS: dict[str, Verifier] = {"numeric": NumericVerifier()}


def get_verifier(name: str) -> Verifier:
    """The verifier registered as `name`; InputError listing the known ones otherwise."""
    if name not in VERIFIERS:
        raise InputError(f"unknown verifier {name!r}; known: {', '.join(sorted(VERIFIERS))}")
    return VERIFIERS[name]
