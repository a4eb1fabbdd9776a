"""What every command group shares: the console, the wallet options, and opening the configured
network, content store and library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from dso.core.experience import display_text
from dso.edges.config import dso_home, load_config
from dso.errors import DsoError

if TYPE_CHECKING:
    from dso.edges.chain import Registry

console = Console()
F = TypeVar("F", bound=Callable[..., Any])


def plain_text(text: str) -> str:
    """Untrusted text (an experience, a node's error) for a console markup string: control and
    format characters escaped (`display_text`) and rich markup such as "[red]" shown literally."""
    return escape(display_text(text))


def text_cell(text: str) -> Text:
    """Untrusted text for a table cell: escaped like `plain_text`, never parsed as markup."""
    return Text(display_text(text))


# Version of every `--format json` document; fields are only ever added under the same version.
JSON_VERSION = 1


def format_option(fn: F) -> F:
    """--format table|json, shared by every command that lists or shows something."""
    return click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
                        help="json: one JSON document on stdout with a stable shape (README, \"JSON output\").")(fn)


def echo_json(document: dict[str, Any]) -> None:
    """Print a `--format json` document: {"version": 1, ...}, UTF-8, keys in a fixed order."""
    click.echo(json.dumps({"version": JSON_VERSION, **document}, indent=2, ensure_ascii=False))


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


def open_registry() -> "Registry":
    """The registry of the configured network."""
    from dso.edges.chain import Registry

    config = load_config()
    return Registry.at(config.rpc_url, config.registry)


def open_store():
    """The configured content store: the Kubo RPC API if one is set, else the embedded store."""
    from dso.edges.ipfs import KuboClient, LocalStore, MirroredStore

    config = load_config()
    primary = KuboClient(config.ipfs_api) if config.ipfs_api else LocalStore(dso_home() / "blocks")
    return MirroredStore([primary, *(KuboClient(m) for m in config.ipfs_mirrors)]) if config.ipfs_mirrors else primary


def resolve_root(registry: "Registry", text: str) -> bytes:
    """A batch root from its full hex or a unique prefix of it (as `dso batches` prints)."""
    wanted = text.lower().removeprefix("0x")
    if len(wanted) == 64:
        try:
            return bytes.fromhex(wanted)
        except ValueError as exc:
            raise DsoError(f"{text!r} is not a hex batch root") from exc
    if not wanted:
        raise DsoError(f"{text!r} names no batch: give a batch root or the first hex digits of one (`dso batches` lists them)")
    if any(c not in "0123456789abcdef" for c in wanted):
        raise DsoError(f"{text!r} is not a hex batch root or prefix")
    matches = [b.root for b in registry.all_batches() if b.root.hex().startswith(wanted)]
    if not matches:
        raise DsoError(f"no batch root starts with {wanted} on this registry (`dso batches` lists them)")
    if len(matches) > 1:
        raise DsoError(f"{text!r} matches {len(matches)} batches; give more hex digits of the root")
    return matches[0]
