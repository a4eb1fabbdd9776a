"""Wallets: encrypted keystores under $DSO_HOME/wallets, and `dso wallet` driven through CliRunner."""

from __future__ import annotations

import json
import stat

import click
import pytest
from click.testing import CliRunner
from eth_account import Account

import dso.edges.wallet
from dso.edges.services import dev_accounts
from dso.edges.wallet import (
    CHEAP_KDF_ITERATIONS,
    WalletError,
    create_dev_wallets,
    create_wallet,
    import_wallet,
    list_wallets,
    load_keystore,
    load_wallet,
    unlock,
    wallet_info,
)
from dso.interfaces.cli.wallet import wallet

CHEAP = CHEAP_KDF_ITERATIONS
STANDARD = dso.edges.wallet.DEFAULT_KDF_ITERATIONS  # read before the fixture makes the default cheap
# A throwaway key, not one of Anvil's: nothing anywhere should know it but its keystore.
SECRET = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """A private $DSO_HOME, and a cheap KDF for wallets the CLI creates with the default cost."""
    monkeypatch.setenv("DSO_HOME", str(tmp_path))
    monkeypatch.delenv("DSO_DEV_PASSWORD", raising=False)
    monkeypatch.setattr(dso.edges.wallet, "DEFAULT_KDF_ITERATIONS", CHEAP)
    return tmp_path


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None):
    return CliRunner().invoke(wallet, list(args), input=input, env=env)


# --- the library ---------------------------------------------------------------------------------


def test_create_list_load_round_trip(home):
    info = create_wallet("node1", "pw", kdf_iterations=CHEAP)
    assert info.path == home / "wallets" / "node1.json"
    assert list_wallets() == [info]
    assert load_wallet("node1", "pw").address == info.address
    keystore = json.loads(info.path.read_text())
    assert keystore["version"] == 3 and keystore["crypto"]["kdf"] == "scrypt"
    assert keystore["crypto"]["kdfparams"]["n"] == CHEAP


def test_default_kdf_is_scrypt_at_the_standard_cost():
    assert STANDARD == 2**18
    info = create_wallet("w", "pw")
    assert json.loads(info.path.read_text())["crypto"]["kdfparams"]["n"] == dso.edges.wallet.DEFAULT_KDF_ITERATIONS


def test_a_work_factor_scrypt_cannot_use_is_refused():
    with pytest.raises(WalletError, match="power of two"):
        create_wallet("w", "pw", kdf_iterations=1000)


def test_keystore_file_is_0600_and_directory_0700(home):
    info = create_wallet("member1", "pw", kdf_iterations=CHEAP)
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "wallets").stat().st_mode) == 0o700
    assert [p.name for p in (home / "wallets").iterdir()] == ["member1.json"]


def test_wrong_password_is_reported_as_such():
    create_wallet("w", "right", kdf_iterations=CHEAP)
    with pytest.raises(WalletError, match="wrong password for wallet 'w'"):
        load_wallet("w", "wrong")


def test_duplicate_name_is_refused_and_the_original_kept():
    first = create_wallet("dup", "pw", kdf_iterations=CHEAP)
    before = first.path.read_bytes()
    with pytest.raises(WalletError, match="already exists"):
        create_wallet("dup", "other", kdf_iterations=CHEAP)
    with pytest.raises(WalletError, match="already exists"):
        import_wallet("dup", SECRET, "other", kdf_iterations=CHEAP)
    assert first.path.read_bytes() == before
    assert load_wallet("dup", "pw").address == first.address


@pytest.mark.parametrize("name", ["", "Upper", "-lead", "_lead", "a/b", "../x", "a.b", "a b", "x" * 65, "ok\n"])
def test_invalid_names_are_refused(name):
    with pytest.raises(WalletError, match="invalid wallet name"):
        create_wallet(name, "pw", kdf_iterations=CHEAP)


def test_longest_valid_name_is_accepted():
    assert create_wallet("a" + "-_9" * 21, "pw", kdf_iterations=CHEAP).name == "a" + "-_9" * 21


def test_empty_password_is_refused():
    with pytest.raises(WalletError, match="empty password"):
        create_wallet("w", "", kdf_iterations=CHEAP)


def test_malformed_keystores_are_listed_not_fatal(home):
    good = create_wallet("good", "pw", kdf_iterations=CHEAP)
    (home / "wallets" / "broken.json").write_text("{not json")
    (home / "wallets" / "noaddr.json").write_text(json.dumps({"version": 3}))
    (home / "wallets" / "list.json").write_text("[]")
    by_name = {info.name: info for info in list_wallets()}
    assert by_name["good"] == good
    assert "not valid JSON" in by_name["broken"].problem and by_name["broken"].address is None
    assert "no valid address" in by_name["noaddr"].problem
    assert "JSON object" in by_name["list"].problem
    with pytest.raises(WalletError, match="unreadable"):
        wallet_info("broken")


def test_key_that_does_not_match_the_advertised_address_is_refused(home):
    info = create_wallet("w", "pw", kdf_iterations=CHEAP)
    keystore = json.loads(info.path.read_text())
    keystore["address"] = Account.create().address[2:].lower()
    info.path.write_text(json.dumps(keystore))
    with pytest.raises(WalletError, match="does not match its address"):
        load_wallet("w", "pw")


def test_import_keeps_the_address_and_never_stores_the_key_in_plain_text():
    info = import_wallet("imported", "0x" + SECRET.upper() + "\n", "pw", kdf_iterations=CHEAP)
    assert info.address == Account.from_key(SECRET).address
    assert SECRET not in info.path.read_text().lower()
    assert load_wallet("imported", "pw").key.hex().removeprefix("0x") == SECRET


@pytest.mark.parametrize("bad", ["", "12", SECRET + "00", "zz" * 32, "00" * 32, "ff" * 32])
def test_bad_private_keys_are_refused_without_echoing_them(bad):
    with pytest.raises(WalletError, match="private key") as excinfo:
        import_wallet("w", bad, "pw", kdf_iterations=CHEAP)
    error = excinfo.value
    assert not bad or bad not in str(error)
    # nothing chained that a traceback would print, and so nothing that could carry the key
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_missing_wallet_names_the_fix():
    with pytest.raises(WalletError, match="no wallet named 'ghost'.*dso wallet list"):
        load_wallet("ghost", "pw")


def test_unlock_reads_the_password_from_the_named_env_var(monkeypatch):
    info = create_wallet("w", "from-env", kdf_iterations=CHEAP)
    monkeypatch.setenv("W_PW", "from-env")
    assert unlock("w", "W_PW").address == info.address


def test_unlock_with_an_unset_env_var_is_a_clear_error():
    create_wallet("w", "pw", kdf_iterations=CHEAP)
    with pytest.raises(WalletError, match="environment variable NOPE_PW is not set"):
        unlock("w", "NOPE_PW")


def test_load_keystore_still_decrypts_a_keystore_anywhere(tmp_path):
    path = tmp_path / "deployer.json"
    account = Account.create()
    path.write_text(json.dumps(Account.encrypt(account.key, "pw", iterations=2)))
    assert load_keystore(path, "pw").address == account.address
    with pytest.raises(WalletError, match="wrong password"):
        load_keystore(path, "nope")


# --- dev wallets ---------------------------------------------------------------------------------


def test_dev_wallets_are_idempotent_for_the_same_addresses(monkeypatch):
    accounts = dict(zip(["deployer", "member1", "node1"], dev_accounts(3)))
    first = create_dev_wallets(accounts)
    again = create_dev_wallets(accounts)
    assert [i.address for i in first] == [i.address for i in again] == [a.address for a in accounts.values()]
    assert load_wallet("member1", "dev").address == accounts["member1"].address
    assert all(stat.S_IMODE(i.path.stat().st_mode) == 0o600 for i in again)
    monkeypatch.setenv("DSO_DEV_PASSWORD", "other")
    create_dev_wallets(accounts)
    assert unlock("node1", "DSO_DEV_PASSWORD").address == accounts["node1"].address


def test_dev_wallets_refuse_to_replace_a_different_key_and_write_nothing():
    mine = create_wallet("member2", "mine", kdf_iterations=CHEAP)
    before = mine.path.read_bytes()
    accounts = dict(zip(["member1", "member2"], dev_accounts(2)))
    with pytest.raises(WalletError, match=f"member2 .*{mine.address}"):
        create_dev_wallets(accounts)
    assert mine.path.read_bytes() == before
    assert [i.name for i in list_wallets()] == ["member2"]


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_new_prompts_twice_and_show_prints_the_address():
    result = run("new", "alice", input="pw\npw\n")
    assert result.exit_code == 0, result.output
    address = load_wallet("alice", "pw").address
    assert address in result.output and "Repeat for confirmation" in result.output
    shown = run("show", "alice")
    assert shown.exit_code == 0 and shown.output == address + "\n"


def test_cli_new_with_mismatched_passwords_asks_again():
    result = run("new", "alice", input="one\ntwo\npw\npw\n")
    assert result.exit_code == 0, result.output
    assert load_wallet("alice", "pw")


def test_cli_new_reads_the_password_from_env():
    result = run("new", "bob", "--password-env", "BOB_PW", env={"BOB_PW": "s3cret"})
    assert result.exit_code == 0, result.output
    assert load_wallet("bob", "s3cret") and "s3cret" not in result.output


def test_cli_new_with_a_missing_env_var_fails_clearly_and_writes_nothing(home):
    result = run("new", "bob", "--password-env", "MISSING_PW", env={"MISSING_PW": None})
    assert isinstance(result.exception, WalletError) and "MISSING_PW is not set" in str(result.exception)
    assert list_wallets() == []


def test_cli_new_refuses_a_taken_name_before_prompting():
    create_wallet("taken", "pw", kdf_iterations=CHEAP)
    result = run("new", "taken")
    assert isinstance(result.exception, WalletError) and "already exists" in str(result.exception)
    assert "password" not in result.output.lower()


def test_cli_import_from_a_key_file_never_prints_or_logs_the_key(tmp_path, caplog):
    key_file = tmp_path / "key.txt"
    key_file.write_text("0x" + SECRET + "\n")
    with caplog.at_level("DEBUG"):
        result = run("import", "carol", "--key-file", str(key_file), input="pw\npw\n")
    assert result.exit_code == 0, result.output
    info = wallet_info("carol")
    assert info.address == Account.from_key(SECRET).address and info.address in result.output
    assert SECRET not in result.output.lower() and SECRET not in info.path.read_text().lower()
    assert SECRET not in caplog.text.lower()


def test_cli_import_from_stdin_then_password_prompt():
    result = run("import", "dave", "--key-file", "-", input=SECRET + "\npw\npw\n")
    assert result.exit_code == 0, result.output
    assert load_wallet("dave", "pw").address == Account.from_key(SECRET).address
    assert SECRET not in result.output.lower()


def test_cli_import_from_stdin_with_password_env():
    result = run("import", "erin", "--key-file", "-", "--password-env", "PW", input=SECRET, env={"PW": "pw"})
    assert result.exit_code == 0, result.output
    assert load_wallet("erin", "pw").address == Account.from_key(SECRET).address


def test_cli_import_has_no_way_to_take_the_key_as_an_argument():
    result = run("import", "frank", SECRET)
    assert result.exit_code != 0 and list_wallets() == []
    assert SECRET not in result.output.lower()
    params = wallet.commands["import"].params
    assert [p.name for p in params if isinstance(p, click.Argument)] == ["name"]
    assert {p.name for p in params if isinstance(p, click.Option)} == {"key_file", "password_env"}


def test_cli_import_of_a_bad_key_does_not_echo_it(tmp_path):
    key_file = tmp_path / "key.txt"
    bad = SECRET[:-2] + "zz"
    key_file.write_text(bad)
    result = run("import", "gina", "--key-file", str(key_file), "--password-env", "PW", env={"PW": "pw"})
    assert isinstance(result.exception, WalletError)
    assert bad not in str(result.exception) and bad not in result.output


def test_cli_list_shows_wallets_and_flags_malformed_files(home):
    create_wallet("good", "pw", kdf_iterations=CHEAP)
    (home / "wallets" / "broken.json").write_text("{not json")
    result = run("list", env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "good" in result.output and wallet_info("good").address in result.output
    assert "malformed broken: " in result.output and "not valid JSON" in result.output


def test_cli_import_with_nothing_on_stdin_is_a_clear_error():
    result = run("import", "hana", "--key-file", "-", input="")
    assert isinstance(result.exception, WalletError) and "no private key on stdin" in str(result.exception)


def test_cli_list_with_no_wallets_says_how_to_create_one():
    result = run("list")
    assert result.exit_code == 0 and "dso wallet new" in result.output


def test_cli_show_of_a_missing_wallet_is_a_wallet_error():
    result = run("show", "ghost")
    assert isinstance(result.exception, WalletError) and "dso wallet list" in str(result.exception)
