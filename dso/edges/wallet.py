"""Node and member wallets: encrypted eth-account keystores (never raw keys on a command line).

A wallet is a V3 keystore at `$DSO_HOME/wallets/NAME.json` (directory mode 0700, file mode 0600),
encrypted with scrypt. A private key enters dso only through `create_wallet` (fresh randomness) or
`import_wallet` (the CLI reads it from a file or stdin); it never appears in argv, in an error
message or in a log line. Unlocking a wallet takes a password from a prompt or, for scripts, from an
environment variable named on the command line.

Dev wallets (`create_dev_wallets`, called by `dso devnet up`) hold Anvil's publicly known dev keys,
encrypted with a cheap KDF under the password "dev" (or $DSO_DEV_PASSWORD).
WARNING: their keys are public; never send real funds to a dev wallet or use one on a real network.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import is_hex_address, to_checksum_address

from dso.edges.config import dso_home
from dso.edges.files import atomic_write_text
from dso.errors import WalletError

# scrypt work factor N (r=8, p=1): 2**18 is geth's and eth-account's "standard" cost, ~0.8 s and
# 256 MiB per unlock on a laptop, which is what a key that holds voting power deserves.
DEFAULT_KDF_ITERATIONS = 2**18
# A cost that only suits keys that are public anyway (devnet dev wallets) or thrown away (tests).
CHEAP_KDF_ITERATIONS = 2**10
DEV_PASSWORD = "dev"
DEV_PASSWORD_ENV = "DSO_DEV_PASSWORD"

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_HEX_KEY = re.compile(r"(?:0x)?[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class WalletInfo:
    """One wallet file. `address` is None and `problem` says why when the keystore is unreadable."""

    name: str
    address: str | None
    path: Path
    problem: str | None = None


def wallets_dir() -> Path:
    """The directory that holds every wallet: $DSO_HOME/wallets."""
    return dso_home() / "wallets"


def validate_name(name: str) -> str:
    """Return `name` if it is a valid wallet name (lowercase letters, digits, `_`, `-`; at most 64
    characters, starting with a letter or digit), else raise WalletError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise WalletError(
            f"invalid wallet name {name!r}: use 1-64 lowercase letters, digits, '_' or '-', starting with a letter or digit"
        )
    return name


def wallet_path(name: str) -> Path:
    """Where wallet `name` lives (whether or not it exists)."""
    return wallets_dir() / f"{validate_name(name)}.json"


def check_new_name(name: str) -> Path:
    """The path a new wallet `name` would take; WalletError if the name is invalid or taken.
    Lets the CLI fail before it asks for a key or a password."""
    path = wallet_path(name)
    if path.exists():
        raise WalletError(f"wallet {name!r} already exists ({path}); choose another name")
    return path


def create_wallet(name: str, password: str, kdf_iterations: int | None = None) -> WalletInfo:
    """Generate a fresh key, encrypt it under `password` and store it as wallet `name`.

    `kdf_iterations` is the scrypt work factor N (a power of two); None means
    DEFAULT_KDF_ITERATIONS. Raises WalletError if the name is invalid or already taken.
    """
    return _store_new(name, Account.create(), password, kdf_iterations)


def import_wallet(name: str, private_key_hex: str, password: str, kdf_iterations: int | None = None) -> WalletInfo:
    """Encrypt an existing private key (64 hex digits, optional 0x) under `password` as wallet `name`.

    CAUTION: take `private_key_hex` from a file or stdin, never from argv: command lines are visible to
    every user of the machine and end up in shell history. Raises WalletError without echoing the key.
    """
    check_new_name(name)
    return _store_new(name, _parse_private_key(private_key_hex), password, kdf_iterations)


def list_wallets() -> list[WalletInfo]:
    """Every wallet, sorted by name, read without decrypting: only each keystore's address field.
    A malformed file is listed with `problem` set instead of raising."""
    directory = wallets_dir()
    if not directory.is_dir():
        return []
    return [_read_info(path) for path in sorted(directory.glob("*.json")) if not path.name.startswith(".")]


def wallet_info(name: str) -> WalletInfo:
    """The address of wallet `name` without decrypting it; WalletError if missing or malformed."""
    info = _read_info(_existing_path(name))
    if info.problem:
        raise WalletError(f"wallet {name!r} is unreadable: {info.problem}")
    return info


def load_wallet(name: str, password: str) -> LocalAccount:
    """Decrypt wallet `name`. Raises WalletError if it is missing, malformed, the password is wrong,
    or the key does not match the address the file advertises (what `dso wallet list` shows)."""
    path = _existing_path(name)
    keystore = _read_keystore(path)
    account = _decrypt(keystore, password, f"wallet {name!r}")
    if account.address != _keystore_address(keystore):
        raise WalletError(f"wallet {name!r} ({path}) is corrupt: its key does not match its address field")
    return account


def unlock(name: str, password_env: str | None) -> LocalAccount:
    """Decrypt wallet `name` with the password from environment variable `password_env` if given,
    else from a prompt (checking the wallet exists before asking)."""
    _existing_path(name)
    return load_wallet(name, password_from_env_or_prompt(password_env, prompt=f"Password for wallet {name}"))


def dev_password() -> str:
    """The password of dev wallets: $DSO_DEV_PASSWORD if set and non-empty, else "dev"."""
    return os.environ.get(DEV_PASSWORD_ENV) or DEV_PASSWORD


def create_dev_wallets(accounts: dict[str, LocalAccount]) -> list[WalletInfo]:
    """Store each named account as a dev wallet (cheap KDF, password `dev_password()`).

    Idempotent: an existing wallet of the same name is replaced only if it advertises the same
    address; otherwise nothing at all is written and WalletError names the conflicts.
    WARNING: for Anvil's public dev keys only. The password is known and the KDF is cheap, so a
    dev wallet protects nothing; never hold real funds in one.
    """
    conflicts = []
    for name, account in accounts.items():
        path = wallet_path(name)
        if path.exists():
            existing = _read_info(path)
            if existing.address != account.address:
                found = existing.address or f"an unreadable keystore ({existing.problem})"
                conflicts.append(f"{name} ({path} holds {found}, not {account.address})")
    if conflicts:
        raise WalletError(
            "refusing to replace wallets that hold other keys: " + "; ".join(conflicts)
            + ". Rename or move those files, then run `dso devnet up` again"
        )
    password = dev_password()
    _ensure_wallets_dir()
    infos = []
    for name, account in accounts.items():
        path = wallet_path(name)
        atomic_write_text(path, _encrypt(account, password, CHEAP_KDF_ITERATIONS))
        infos.append(WalletInfo(name, account.address, path))
    return infos


def load_keystore(path: Path, password: str) -> LocalAccount:
    """Decrypt an Ethereum keystore (V3 JSON) into a signing account."""
    return _decrypt(_read_keystore(Path(path)), password, f"keystore {path}")


def password_from_env_or_prompt(env_var: str | None, prompt: str = "Keystore password") -> str:
    """Read a password from `env_var` if given and set, else prompt without echo."""
    if env_var:
        value = os.environ.get(env_var)
        if value is None:
            raise WalletError(f"environment variable {env_var} is not set: export it, or omit --password-env to be prompted")
        return value
    import click

    return click.prompt(prompt, hide_input=True)


def _store_new(name: str, account: LocalAccount, password: str, kdf_iterations: int | None) -> WalletInfo:
    path = check_new_name(name)
    if not password:
        raise WalletError("refusing an empty password: choose one to encrypt the wallet with")
    iterations = DEFAULT_KDF_ITERATIONS if kdf_iterations is None else kdf_iterations
    _ensure_wallets_dir()
    _write_new_file(path, _encrypt(account, password, iterations))
    return WalletInfo(name, account.address, path)


def _encrypt(account: LocalAccount, password: str, iterations: int) -> str:
    if iterations < 2 or iterations & (iterations - 1):
        raise WalletError(f"scrypt work factor must be a power of two >= 2, got {iterations}")
    # kdf is explicit so ETH_ACCOUNT_KDF in the environment cannot silently change the format.
    keystore = Account.encrypt(account.key, password, kdf="scrypt", iterations=iterations)
    return json.dumps(keystore, indent=2, sort_keys=True) + "\n"


def _ensure_wallets_dir() -> None:
    directory = wallets_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkdir's mode is masked by the umask and ignored for an existing directory.
    directory.chmod(0o700)


def _write_new_file(path: Path, text: str) -> None:
    """Write `text` to a file that must not exist yet: a reader never sees a torn file, and two
    concurrent writers cannot both win (link(2) fails if the target exists, unlike rename(2))."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError as exc:
            raise WalletError(f"wallet {path.stem!r} already exists ({path}); choose another name") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)


def _parse_private_key(text: str) -> LocalAccount:
    # Messages here never include the input, and `from None` keeps it out of chained tracebacks.
    stripped = text.strip()
    if not _HEX_KEY.fullmatch(stripped):
        raise WalletError("the private key must be 64 hex digits (optionally 0x-prefixed) on its own")
    try:
        return Account.from_key(stripped)
    except ValueError:
        raise WalletError("the private key is out of range for secp256k1 (zero or not below the group order)") from None


def _existing_path(name: str) -> Path:
    path = wallet_path(name)
    if not path.exists():
        raise WalletError(f"no wallet named {name!r} in {wallets_dir()}: see `dso wallet list`, or create one with `dso wallet new`")
    return path


def _read_keystore(path: Path) -> dict[str, Any]:
    try:
        keystore = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise WalletError(f"keystore {path} not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WalletError(f"keystore {path} is not valid JSON: {exc}") from exc
    if not isinstance(keystore, dict):
        raise WalletError(f"keystore {path} must hold a JSON object")
    return keystore


def _keystore_address(keystore: dict[str, Any]) -> str | None:
    address = keystore.get("address")
    if not isinstance(address, str):
        return None
    prefixed = address if address.lower().startswith("0x") else "0x" + address
    return to_checksum_address(prefixed) if is_hex_address(prefixed) else None


def _read_info(path: Path) -> WalletInfo:
    name = path.stem
    if not _NAME.fullmatch(name):
        return WalletInfo(name, None, path, "file name is not a valid wallet name")
    try:
        keystore = _read_keystore(path)
    except (WalletError, OSError) as exc:
        return WalletInfo(name, None, path, str(exc))
    address = _keystore_address(keystore)
    if address is None:
        return WalletInfo(name, None, path, "keystore has no valid address field")
    return WalletInfo(name, address, path)


def _decrypt(keystore: dict[str, Any], password: str, label: str) -> LocalAccount:
    try:
        key = Account.decrypt(keystore, password)
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise WalletError(f"wrong password for {label}") from exc
        raise WalletError(f"cannot decrypt {label}: corrupt keystore ({exc})") from exc
    except (KeyError, TypeError, NotImplementedError) as exc:
        raise WalletError(f"cannot decrypt {label}: malformed keystore ({type(exc).__name__}: {exc})") from exc
    return Account.from_key(key)
