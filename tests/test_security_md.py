"""SECURITY.md maps each guarantee to tests: every test it names must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def named_tests() -> list[tuple[str, str]]:
    """(file, test) pairs: `file.py::name`, and `::name` for the file last named on that line."""
    pairs = []
    for line in (ROOT / "SECURITY.md").read_text().splitlines():
        current = None
        for file, name in re.findall(r"`(?:(test_\w+\.py))?::(test_\w+)`", line):
            current = file or current
            assert current, f"SECURITY.md names ::{name} before any test file on its line"
            pairs.append((current, name))
    return pairs


def test_every_test_security_md_cites_exists():
    pairs = named_tests()
    assert len(pairs) >= 40
    missing = [f"{file}::{name}" for file, name in pairs
               if not re.search(rf"^def {name}\(", (ROOT / "tests" / file).read_text(), re.M)]
    assert not missing, f"SECURITY.md cites tests that do not exist: {missing}"


def test_every_test_file_security_md_cites_exists():
    for file in set(re.findall(r"`(test_\w+\.py)`", (ROOT / "SECURITY.md").read_text())):
        assert (ROOT / "tests" / file).exists(), file
