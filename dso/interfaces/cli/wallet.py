"""`dso wallet`: create, import and list encrypted wallets. Argument handling and output only; the
keystores are dso.edges.wallet's business. A private key is read from a file or stdin, never from argv,
and never printed."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dso.edges.wallet import (
    WalletError,
    check_new_name,
    create_wallet,
    import_wallet,
    list_wallets,
    password_from_env_or_prompt,
    wallet_info,
    wallets_dir,
)
from dso.interfaces.cli.options import echo_json, format_option

PASSWORD_ENV_HELP = "Read the password from this environment variable instead of a prompt."


@click.group()
def wallet() -> None:
    """Encrypted wallets (V3 keystores in $DSO_HOME/wallets) for nodes and DAO members."""


@wallet.command("new")
@click.argument("name")
@click.option("--password-env", default=None, help=PASSWORD_ENV_HELP)
def wallet_new(name: str, password_env: str | None) -> None:
    """Create wallet NAME with a fresh random key."""
    check_new_name(name)
    info = create_wallet(name, new_password(password_env))
    click.echo(f"created wallet {info.name}: {info.address}")
    click.echo(f"keystore {info.path}: back it up; the password cannot be recovered")


@wallet.command("import")
@click.argument("name")
@click.option("--key-file", required=True, type=click.Path(dir_okay=False, allow_dash=True, path_type=str),
              help="File holding the hex private key, or - for stdin (first line). Never pass the key itself.")
@click.option("--password-env", default=None, help=PASSWORD_ENV_HELP)
def wallet_import(name: str, key_file: str, password_env: str | None) -> None:
    """Encrypt an existing private key as wallet NAME."""
    check_new_name(name)
    key = read_key(key_file)
    info = import_wallet(name, key, new_password(password_env))
    click.echo(f"imported wallet {info.name}: {info.address}")
    click.echo(f"keystore {info.path}; you may now delete the plain key file")


@wallet.command("list")
@format_option
def wallet_list(fmt: str) -> None:
    """List wallets (name, address, file) without decrypting them."""
    infos = list_wallets()
    if fmt == "json":
        echo_json({"wallets": [{"name": i.name, "address": i.address, "path": str(i.path), "problem": i.problem} for i in infos]})
        return
    if not infos:
        click.echo(f"no wallets in {wallets_dir()}; create one with `dso wallet new NAME`")
        return
    table = Table(title="wallets")
    table.add_column("name", no_wrap=True)
    table.add_column("address", no_wrap=True)
    table.add_column("path", overflow="fold")
    for info in infos:
        address = Text(info.address) if info.address else Text("malformed", style="red")
        table.add_row(Text(info.name), address, Text(str(info.path)))
    console = Console()
    console.print(table)
    for info in infos:
        if info.problem:
            console.print(Text.assemble(("malformed ", "red"), f"{info.name}: {info.problem}"))


@wallet.command("show")
@click.argument("name")
def wallet_show(name: str) -> None:
    """Print the address of wallet NAME (no password needed)."""
    click.echo(wallet_info(name).address)


def new_password(password_env: str | None) -> str:
    """The password for a new keystore: from `password_env`, else prompted twice without echo."""
    if password_env:
        return password_from_env_or_prompt(password_env)
    return click.prompt("New wallet password", hide_input=True, confirmation_prompt=True)


def read_key(key_file: str) -> str:
    """The hex private key from file `key_file`, or for "-" from stdin: a hidden prompt on a
    terminal, else its first line (so that a password prompt may read the lines after it)."""
    if key_file != "-":
        try:
            return Path(key_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise WalletError(f"cannot read key file {key_file}: {exc.strerror}") from exc
        except UnicodeDecodeError:
            raise WalletError(f"key file {key_file} is not text: it must hold the key as 64 hex digits") from None
    # sys.stdin itself, not a fresh wrapper: a wrapper would buffer the lines the prompt reads next.
    if sys.stdin.isatty():
        return click.prompt("Private key (hex)", hide_input=True)
    line = sys.stdin.readline()
    if not line.strip():
        raise WalletError("no private key on stdin: pipe the hex key in, or use --key-file PATH")
    return line
