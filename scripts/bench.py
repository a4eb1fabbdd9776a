"""Benchmarks behind the README's figures: `python scripts/bench.py NAME [--markdown]`.

Each benchmark writes bench/results/NAME.json; `--markdown` prints the README table from the
stored results without rerunning (tests/test_readme.py checks the README against those files).
A benchmark with options of its own (`agent`: --questions, --conditions, ...) parses them in its
`options(argv)`; the others take none.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from dso.edges.files import atomic_write_text
from dso.errors import DsoError

RESULTS_DIR = Path(__file__).resolve().parent.parent / "bench" / "results"
# Each module under dso/bench/ exposes run() -> results dict and markdown_table(results) -> str.
BENCHMARKS = {
    "gas": "dso.bench.gas",
    "size": "dso.bench.size",
    "retrieval": "dso.bench.retrieval",
    "store": "dso.bench.store",
    "crossmodel": "dso.bench.crossmodel",
    "byzantine": "dso.bench.byzantine",
    "scale": "dso.bench.scale",
    "mcp": "dso.bench.mcp",
    "gate": "dso.bench.gate",
    "agent": "dso.bench.agent",
    "network": "dso.bench.network",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in BENCHMARKS and {"-h", "--help"} & set(argv[1:]):
        module = importlib.import_module(BENCHMARKS[argv[0]])
        if hasattr(module, "options"):  # its own options' help, not this script's
            module.options(["--help"])
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=sorted(BENCHMARKS))
    parser.add_argument("--markdown", action="store_true", help="print the README table from stored results")
    args, rest = parser.parse_known_args(argv)
    module = importlib.import_module(BENCHMARKS[args.name])
    run, render = module.run, module.markdown_table
    if rest and not hasattr(module, "options"):
        parser.error(f"{args.name} takes no options: {' '.join(rest)}")
    path = RESULTS_DIR / f"{args.name}.json"
    if not args.markdown:
        try:
            results = run(**module.options(rest)) if hasattr(module, "options") else run()
        except DsoError as exc:  # bad input or a missing model: one line that says what to do, no traceback
            print(f"error: {exc}", file=sys.stderr)
            return 2
        atomic_write_text(path, json.dumps(results, indent=2) + "\n")
        print(f"wrote {path}", file=sys.stderr)
    print(render(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
