"""Compile the Solidity contracts through py-solc-x and keep the committed artifacts in sync.

Why committed artifacts: node operators and agent builders install dso from PyPI or a clone and never
need a compiler. Contributors recompile with `python scripts/compile_contracts.py`; a test fails when
the committed ABI/bytecode differ from a fresh compile, so the two never drift.

No native solc can be downloaded on our machines, so compilation goes through `scripts/solc`, a
wrapper over solcjs (npm `solc`) that speaks the native `--version` and `--standard-json` interface.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from dso.errors import CompileError, ToolchainError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = PROJECT_ROOT / "contracts"
ARTIFACTS_DIR = Path(__file__).resolve().parents[1] / "artifacts"
SOLC_WRAPPER = PROJECT_ROOT / "scripts" / "solc"

SOLC_VERSION = "0.8.30"
EVM_VERSION = "shanghai"  # PUSH0 but no transient storage: runs on every major EVM chain today
OPTIMIZER_RUNS = 10_000  # a registry is called far more often than it is deployed
CONTRACT_NAMES = ("ExperienceRegistry",)


def solc_executable() -> Path:
    """Return the solc executable: $DSO_SOLC if set, else the project's solcjs wrapper."""
    override = os.environ.get("DSO_SOLC")
    path = Path(override) if override else SOLC_WRAPPER
    if not path.exists():
        raise ToolchainError(f"solc not found at {path}; run scripts/setup.sh to install the toolchain")
    if shutil.which("node") is None and path == SOLC_WRAPPER:
        raise ToolchainError("Node.js is required by the solc wrapper; install node and npm")
    return path


def standard_json_input(sources: dict[str, str]) -> dict[str, Any]:
    """Build the compiler input: optimizer on, fixed EVM version, no metadata hash.

    The metadata hash is disabled so that bytecode depends on the sources only, not on absolute
    paths or comments' whitespace, which keeps the committed-artifact check meaningful everywhere.
    """
    return {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sorted(sources.items())},
        "settings": {
            "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
            "viaIR": True,
            "evmVersion": EVM_VERSION,
            "metadata": {"bytecodeHash": "none", "appendCBOR": False},
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
        },
    }


def read_sources(contracts_dir: Path = CONTRACTS_DIR) -> dict[str, str]:
    """Read every `.sol` file under `contracts_dir`, keyed by its path relative to it."""
    return {str(p.relative_to(contracts_dir)): p.read_text() for p in sorted(contracts_dir.rglob("*.sol"))}


def compile_contracts(contracts_dir: Path = CONTRACTS_DIR) -> dict[str, dict[str, Any]]:
    """Compile all contracts; return {name: {"abi", "bytecode", "deployedBytecode", ...}} for ours."""
    import solcx  # imported here: only contributors who recompile need it

    output = solcx.compile_standard(
        standard_json_input(read_sources(contracts_dir)),
        solc_binary=solc_executable(),
        base_path=str(contracts_dir),
        allow_paths=str(contracts_dir),
    )
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(e.get("formattedMessage", e["message"]) for e in errors))
    artifacts: dict[str, dict[str, Any]] = {}
    for source, contracts in output["contracts"].items():
        for name, data in contracts.items():
            if name in CONTRACT_NAMES:
                artifacts[name] = {
                    "contractName": name,
                    "sourceName": source,
                    "compiler": {"version": SOLC_VERSION, "evmVersion": EVM_VERSION, "optimizerRuns": OPTIMIZER_RUNS},
                    "abi": data["abi"],
                    "bytecode": "0x" + data["evm"]["bytecode"]["object"],
                    "deployedBytecode": "0x" + data["evm"]["deployedBytecode"]["object"],
                }
    missing = set(CONTRACT_NAMES) - artifacts.keys()
    if missing:
        raise CompileError(f"compiler output lacks {sorted(missing)}")
    return artifacts


def artifact_json(artifact: dict[str, Any]) -> str:
    """Serialize an artifact deterministically (sorted keys, trailing newline) for committing."""
    return json.dumps(artifact, indent=1, sort_keys=True) + "\n"


def write_artifacts(artifacts: dict[str, dict[str, Any]], directory: Path = ARTIFACTS_DIR) -> list[Path]:
    """Write each artifact to `directory/NAME.json` atomically; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, artifact in sorted(artifacts.items()):
        path = directory / f"{name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(artifact_json(artifact))
        os.replace(tmp, path)
        written.append(path)
    return written


def load_artifact(name: str = "ExperienceRegistry") -> dict[str, Any]:
    """Load a committed artifact (ABI + bytecode) from the package data."""
    path = ARTIFACTS_DIR / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ToolchainError(f"artifact {path} is missing; run python scripts/compile_contracts.py") from exc
