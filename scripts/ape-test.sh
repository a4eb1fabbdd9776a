#!/usr/bin/env bash
# Run the ape test suite the way CI does: `ape test tests/ape`, offline, exiting with ape's status.
# Extra arguments go to pytest, e.g. `bash scripts/ape-test.sh -k vote -x`.
#
# - Runs scripts/setup-ape.sh first (idempotent, quiet): solc wrapper for py-solc-x, native anvil.
# - Puts .venv/bin first on PATH: ape-foundry starts the first `anvil` on PATH.
# - Runs from the repo root: ape finds ape-config.yaml in the working directory.
# - tests/ape/pytest.ini makes tests/ape its own pytest rootdir, so pyproject.toml's
#   `-p no:ape_test` (meant for the main suite) and tests/conftest.py do not apply here.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SETUP_APE_QUIET=1 bash "$ROOT/scripts/setup-ape.sh"

export PATH="$ROOT/.venv/bin:$PATH"
# ape-foundry would connect to an Anvil named by APE_FOUNDRY_HOST instead of starting its own.
unset APE_FOUNDRY_HOST

status=0
"$ROOT/.venv/bin/ape" test tests/ape "$@" || status=$?
exit "$status"
