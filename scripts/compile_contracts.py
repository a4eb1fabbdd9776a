"""Recompile contracts/*.sol and rewrite the committed artifacts in dso/artifacts/."""

from dso.edges.compile import compile_contracts, write_artifacts

if __name__ == "__main__":
    for path in write_artifacts(compile_contracts()):
        print(f"wrote {path}")
