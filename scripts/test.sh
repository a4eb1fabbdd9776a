#!/usr/bin/env bash
# The whole test suite: pytest (contracts on a real Anvil, CLI, artifacts, README figures),
# then the ape suite (`ape test tests/ape`). Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
.venv/bin/python -m pytest "$@"
bash scripts/ape-test.sh -q
