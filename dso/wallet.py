"""Node and member wallets: encrypted eth-account keystores (never raw keys on a command line)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from dso.errors import DsoError


class WalletError(DsoError):
    """A keystore is missing, malformed, or its password is wrong."""


def load_keystore(path: Path, password: str) -> LocalAccount:
    """Decrypt an Ethereum keystore (V3 JSON) into a signing account."""
    try:
        keystore = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise WalletError(f"keystore {path} not found") from exc
    except json.JSONDecodeError as exc:
        raise WalletError(f"keystore {path} is not valid JSON: {exc}") from exc
    try:
        key = Account.decrypt(keystore, password)
    except ValueError as exc:
        raise WalletError(f"cannot decrypt keystore {path}: wrong password or corrupt file ({exc})") from exc
    return Account.from_key(key)


def password_from_env_or_prompt(env_var: str | None, prompt: str = "Keystore password") -> str:
    """Read a password from `env_var` if given and set, else prompt without echo."""
    if env_var:
        value = os.environ.get(env_var)
        if value is None:
            raise WalletError(f"environment variable {env_var} is not set")
        return value
    import click

    return click.prompt(prompt, hide_input=True)
