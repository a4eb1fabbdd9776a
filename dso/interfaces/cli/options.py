"""What every command group shares: the console, the wallet options, and opening the configured
network, content store and library."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

import click
from rich.console import Console

from dso.edges.chain import Registry
from dso.edges.config import dso_home, load_config
from dso.errors import DsoError

console = Console()
F = TypeVar("F", bound=Callable[..., Any])


def wallet_options(fn: F) -> F:
    """--wallet NAME and --password-env VAR, shared by every command that signs."""
    fn = click.option("--password-env", default=None, help="Read the wallet password from this environment variable.")(fn)
    return click.option("--wallet", "wallet_name", required=True, help="Wallet name (see `dso wallet list`).")(fn)


def unlock_wallet(name: str, password_env: str | None):
    """The wallet's account, its password from `password_env` or a prompt."""
    from dso.edges.wallet import unlock

    return unlock(name, password_env)


def library_path() -> Path:
    """The agent's library: $DSO_HOME/library.sqlite."""
    return dso_home() / "library.sqlite"


def devnet_dir() -> Path:
    """Where `dso devnet up` keeps the services' PIDs, logs and the IPFS repo."""
    return dso_home() / "devnet"


def open_registry() -> Registry:
    """The registry of the configured network."""
    config = load_config()
    return Registry.at(config.rpc_url, config.registry)


def open_store():
    """The configured content store: the Kubo RPC API if one is set, else the embedded store."""
    from dso.edges.ipfs import KuboClient, LocalStore

    config = load_config()
    return KuboClient(config.ipfs_api) if config.ipfs_api else LocalStore(dso_home() / "blocks")


def resolve_root(registry: Registry, text: str) -> bytes:
    """A batch root from its full hex or a unique prefix of it (as `dso batches` prints)."""
    wanted = text.lower().removeprefix("0x")
    if len(wanted) == 64:
        try:
            return bytes.fromhex(wanted)
        except ValueError as exc:
            raise DsoError(f"{text!r} is not a hex batch root") from exc
    matches = [b.root for b in registry.all_batches() if b.root.hex().startswith(wanted)] if wanted else []
    if len(matches) != 1:
        raise DsoError(f"{text!r} matches {len(matches)} batches; give more hex digits of the root")
    return matches[0]
