"""The `dso` command as a user runs it: devnet up/down by PID, deploy from a keystore, clear errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from eth_account import Account

from dso.edges.chain import Registry
from dso.edges.services import free_port, process_alive

DSO = [sys.executable, "-m", "dso"]


def run_dso(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DSO, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DSO_HOME": str(home), "COLUMNS": "200", **(env or {})},
    )


def test_devnet_up_deploys_writes_config_and_down_stops_anvil_by_pid(tmp_path):
    port, ipfs_port = free_port(), free_port()
    up = run_dso(tmp_path, "devnet", "up", "--port", str(port), "--ipfs-port", str(ipfs_port))
    try:
        assert up.returncode == 0, up.stderr
        config = json.loads((tmp_path / "config.json").read_text())
        assert config["rpc_url"] == f"http://127.0.0.1:{port}" and config["chain_id"] == 31337
        registry = Registry.at(config["rpc_url"], config["registry"])
        assert len(registry.members()) == 5 and len(registry.nodes()) == 4
        assert config["ipfs_api"] == f"http://127.0.0.1:{ipfs_port}"
        pids = [int((tmp_path / "devnet" / f"{name}.pid").read_text()) for name in ("anvil", "ipfs")]
        assert all(process_alive(pid) for pid in pids)
        status = run_dso(tmp_path, "status")
        assert status.returncode == 0 and "50% of the electorate" in status.stdout
        again = run_dso(tmp_path, "devnet", "up", "--port", str(port), "--ipfs-port", str(ipfs_port))
        assert again.returncode == 1 and "already running" in again.stderr and "Traceback" not in again.stderr
    finally:
        down = run_dso(tmp_path, "devnet", "down")
    assert down.returncode == 0 and "anvil stopped" in down.stdout and "ipfs stopped" in down.stdout
    assert not any(process_alive(pid) for pid in pids)
    assert not any((tmp_path / "devnet" / f"{name}.pid").exists() for name in ("anvil", "ipfs"))
    gone = run_dso(tmp_path, "status")
    assert gone.returncode == 1 and "unreachable" in gone.stderr and "Traceback" not in gone.stderr


def test_devnet_up_refuses_a_port_in_use(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        result = run_dso(tmp_path, "devnet", "up", "--port", str(sock.getsockname()[1]))
    assert result.returncode == 1 and "already in use" in result.stderr
    assert not (tmp_path / "devnet" / "anvil.pid").exists()


def test_status_without_config_tells_the_user_what_to_run(tmp_path):
    result = run_dso(tmp_path, "status")
    assert result.returncode == 1 and "dso devnet up" in result.stderr and "Traceback" not in result.stderr


def test_malformed_config_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    result = run_dso(tmp_path, "status")
    assert result.returncode == 1 and "not valid JSON" in result.stderr


def test_deploy_to_an_rpc_url_with_a_keystore(tmp_path, anvil_url, accounts):
    keystore = tmp_path / "deployer.json"
    keystore.write_text(json.dumps(Account.encrypt(accounts[0].key, "s3cret", iterations=2)))
    member, node = accounts[1].address, accounts[6].address
    args = ["deploy", "--rpc-url", anvil_url, "--keystore", str(keystore), "--password-env", "DEPLOY_PW", "--member", member, "--node", node, "--name", "testnet"]
    result = run_dso(tmp_path, *args, env={"DEPLOY_PW": "s3cret"})
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["name"] == "testnet"
    registry = Registry.at(anvil_url, config["registry"])
    assert registry.members() == [member] and registry.nodes() == [(1, node, True)]
    assert "s3cret" not in result.stdout + result.stderr


def test_deploy_with_wrong_password_fails_cleanly(tmp_path, anvil_url, accounts):
    keystore = tmp_path / "deployer.json"
    keystore.write_text(json.dumps(Account.encrypt(accounts[0].key, "right", iterations=2)))
    result = run_dso(tmp_path, "deploy", "--rpc-url", anvil_url, "--keystore", str(keystore), "--password-env", "PW", "--member", accounts[1].address, env={"PW": "wrong"})
    assert result.returncode == 1 and "wrong password" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "config.json").exists()


def test_deploy_to_a_dead_rpc_fails_cleanly(tmp_path, accounts):
    keystore = tmp_path / "deployer.json"
    keystore.write_text(json.dumps(Account.encrypt(accounts[0].key, "pw", iterations=2)))
    dead = f"http://127.0.0.1:{free_port()}"
    result = run_dso(tmp_path, "deploy", "--rpc-url", dead, "--keystore", str(keystore), "--password-env", "PW", "--member", accounts[1].address, env={"PW": "pw"})
    assert result.returncode == 1 and "unreachable" in result.stderr and "Traceback" not in result.stderr


def test_anvil_keeps_no_history_on_disk_however_many_blocks_it_mines(tmp_path, monkeypatch):
    """Regression: by default Anvil writes every state older than its in-memory window to
    ~/.foundry/anvil/tmp (1,190 files for 1,200 mined blocks; 11 GB over one test session), which
    filled a fresh CI machine's disk mid-suite. dso's Anvil keeps a bounded window in memory only."""
    import httpx

    from dso.edges.services import ANVIL_STATES_KEPT, start_anvil

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    process, url = start_anvil(tmp_path / "anvil", port=free_port(), die_with_parent=True)
    try:
        mined = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "anvil_mine", "params": [hex(20 * ANVIL_STATES_KEPT)]}, timeout=60)
        assert "error" not in mined.json()
        head = httpx.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber", "params": []}, timeout=10).json()["result"]
        assert int(head, 16) == 20 * ANVIL_STATES_KEPT
        recent = {"jsonrpc": "2.0", "id": 3, "method": "eth_getBalance", "params": [Account.create().address, hex(int(head, 16) - 1)]}
        assert httpx.post(url, json=recent, timeout=10).json()["result"] == "0x0"  # a recent past block still answers
    finally:
        process.stop()
    spilled = [p for p in (tmp_path / "home").rglob("*") if p.is_file()]
    assert spilled == []
