"""Where dso keeps its state and which network it talks to.

One JSON file (`$DSO_HOME/config.json`, default `~/.dso`) names the RPC URL, chain id and registry
address. `dso devnet up` and `dso deploy` write it; every other command reads it. Pointing dso at
another EVM network is a matter of this file (or the DSO_RPC_URL / DSO_REGISTRY environment
variables), never of code. The same goes for IPFS: `ipfs_api` (or DSO_IPFS_API) names any Kubo
RPC endpoint; without one, dso keeps objects in an embedded local store with the same CIDs.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dso.edges.files import atomic_write_text
from dso.errors import ConfigError

CONFIG_VERSION = 1


def dso_home() -> Path:
    """The state directory: $DSO_HOME, else ~/.dso."""
    return Path(os.environ.get("DSO_HOME", Path.home() / ".dso")).expanduser()


@dataclass(frozen=True)
class NetworkConfig:
    """The network dso talks to: an RPC endpoint and the registry deployed there."""

    rpc_url: str
    chain_id: int
    registry: str
    deploy_block: int = 0
    name: str = "custom"
    ipfs_api: str | None = None  # Kubo RPC API URL; None: the embedded local store under $DSO_HOME
    # Other Kubo RPC APIs to read from when `ipfs_api` does not have a batch or serves bad bytes.
    ipfs_mirrors: tuple[str, ...] = ()

    def to_json(self) -> str:
        """Serialize with a version field, keys sorted (no mirrors key when there are none)."""
        fields = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k != "ipfs_mirrors" or v}
        return json.dumps({"version": CONFIG_VERSION, **fields}, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "NetworkConfig":
        """Validate and build from parsed JSON; raise ConfigError naming the bad field."""
        if data.get("version") != CONFIG_VERSION:
            raise ConfigError(f"{source}: unsupported config version {data.get('version')!r}, expected {CONFIG_VERSION}")
        try:
            config = cls(
                rpc_url=str(data["rpc_url"]),
                chain_id=int(data["chain_id"]),
                registry=str(data["registry"]),
                deploy_block=int(data.get("deploy_block", 0)),
                name=str(data.get("name", "custom")),
                ipfs_api=str(data["ipfs_api"]) if data.get("ipfs_api") else None,
                ipfs_mirrors=tuple(str(m) for m in data.get("ipfs_mirrors") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: missing or malformed field ({exc})") from exc
        if not (config.registry.startswith("0x") and len(config.registry) == 42):
            raise ConfigError(f"{source}: registry {config.registry!r} is not a 20-byte hex address")
        check_rpc_url(config.rpc_url, source)
        return config


def check_rpc_url(url: str, source: str = "config") -> str:
    """`url` if it is an http(s) JSON-RPC endpoint; ConfigError otherwise (a file:// or other
    scheme would reach the HTTP library and fail there with a traceback)."""
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or not split.netloc:
        raise ConfigError(f"{source}: RPC URL {url!r} must be an http:// or https:// endpoint (e.g. http://127.0.0.1:8545)")
    return url


def config_path() -> Path:
    """Path of the active network config file."""
    return dso_home() / "config.json"


def save_config(config: NetworkConfig, path: Path | None = None) -> Path:
    """Write the network config atomically and return its path."""
    target = path or config_path()
    atomic_write_text(target, config.to_json())
    return target


def load_config(path: Path | None = None) -> NetworkConfig:
    """Read the network config, letting DSO_RPC_URL / DSO_REGISTRY override its fields."""
    source = path or config_path()
    try:
        data = json.loads(source.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"no network configured ({source} missing): run `dso devnet up` or `dso deploy`") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a JSON object")
    data = {**data}
    if os.environ.get("DSO_RPC_URL"):
        data["rpc_url"] = os.environ["DSO_RPC_URL"]
    if os.environ.get("DSO_REGISTRY"):
        data["registry"] = os.environ["DSO_REGISTRY"]
    if os.environ.get("DSO_IPFS_API"):
        data["ipfs_api"] = os.environ["DSO_IPFS_API"]
    if os.environ.get("DSO_IPFS_MIRRORS"):
        data["ipfs_mirrors"] = [m.strip() for m in os.environ["DSO_IPFS_MIRRORS"].split(",") if m.strip()]
    return NetworkConfig.from_dict(data, source=str(source))
