#!/usr/bin/env bash
# Per-machine preparation for `ape compile` / `ape test` (run from anywhere, after the venv and
# node_modules exist; safe to run again). Everything stays offline:
#
#  1. solc: ape-solidity 0.8.6 asks py-solc-x for an installed `solc-v<version>` in
#     $SOLCX_BINARY_PATH (default ~/.solcx) and would otherwise *download* one. No native solc can be
#     downloaded here, so link the project's solcjs wrapper (scripts/solc) in as solc-v0.8.30.
#     It must be a symlink, not a copy: the wrapper finds node_modules relative to its real path.
#  2. anvil: ape-foundry runs the first `anvil` on PATH. Link the native binary of the npm package
#     @foundry-rs/anvil into .venv/bin (on PATH whenever the venv is active; scripts/ape-test.sh
#     adds it explicitly). The node shim node_modules/.bin/anvil is avoided on purpose: ape stops
#     Anvil by signalling the process it started, and a shim would leave the real Anvil running.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SOLC_VERSION="0.8.30"
SOLC_WRAPPER="$ROOT/scripts/solc"
VENV_BIN="$ROOT/.venv/bin"

die() { echo "setup-ape: $*" >&2; exit 1; }
say() { [[ "${SETUP_APE_QUIET:-0}" == 1 ]] || echo "setup-ape: $*"; }

[[ -x "$VENV_BIN/ape" ]] || die "missing $VENV_BIN/ape; create .venv and pip install -e '.[dev]' first"
[[ -d "$ROOT/node_modules/solc" ]] || die "missing node_modules/solc; run scripts/setup.sh first"
command -v node >/dev/null || die "node is required by scripts/solc"
[[ -x "$SOLC_WRAPPER" ]] || chmod +x "$SOLC_WRAPPER"

# --- 1. solc for py-solc-x / ape-solidity -------------------------------------------------------
SOLCX_DIR="${SOLCX_BINARY_PATH:-$HOME/.solcx}"
mkdir -p "$SOLCX_DIR"
SOLC_LINK="$SOLCX_DIR/solc-v$SOLC_VERSION"
if [[ -e "$SOLC_LINK" && ! -L "$SOLC_LINK" ]]; then
  # A real solc installed by solcx.install_solc on a machine with internet: just as good, keep it.
  say "keeping existing $SOLC_LINK (not a symlink)"
elif [[ "$(readlink "$SOLC_LINK" 2>/dev/null || true)" != "$SOLC_WRAPPER" ]]; then
  # Absent, or a link to another checkout's wrapper: point it at this one.
  ln -sfn "$SOLC_WRAPPER" "$SOLC_LINK"
  say "linked $SOLC_LINK -> $SOLC_WRAPPER"
fi
reported="$("$SOLC_LINK" --version | sed -n 's/^Version: //p')"
[[ "$reported" == "$SOLC_VERSION+"* ]] || die "$SOLC_LINK reports version '$reported', expected $SOLC_VERSION"

# --- 2. native anvil on the venv's PATH ----------------------------------------------------------
anvil_native=""
for candidate in "$ROOT"/node_modules/@foundry-rs/anvil-*/bin/anvil; do
  [[ -x "$candidate" ]] && { anvil_native="$candidate"; break; }
done
[[ -n "$anvil_native" ]] || die "no native anvil under node_modules/@foundry-rs/anvil-*/bin; run scripts/setup.sh first"
# Relative link: survives moving the checkout (the venv's own scripts do not, but that is pip's call).
rel_target="../../${anvil_native#"$ROOT/"}"
if [[ "$(readlink "$VENV_BIN/anvil" 2>/dev/null || true)" != "$rel_target" ]]; then
  ln -sfn "$rel_target" "$VENV_BIN/anvil"
  say "linked $VENV_BIN/anvil -> $rel_target"
fi
"$VENV_BIN/anvil" --version >/dev/null || die "$VENV_BIN/anvil --version failed"

say "ok (solc $reported, $("$VENV_BIN/anvil" --version | head -n1))"
