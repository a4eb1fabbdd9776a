"""The local devnet: Anvil and an offline IPFS node (js-ipfs), each started and stopped by PID.

Why by PID and not through `npx`: killing npx leaves its child running. We start the native
binary ourselves in a new session, record its PID next to its log, and stop exactly that process.
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar

import httpx

from dso.edges.compile import PROJECT_ROOT
from dso.errors import DevnetError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

T = TypeVar("T")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_ANVIL_PORT = 8545
# Anvil's well-known development mnemonic: its keys are public, so they are fit for a devnet only.
DEV_MNEMONIC = "test test test test test test test test test test test junk"


def _platform_package() -> str:
    system = {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}.get(platform.system(), "")
    arch = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "")
    return f"@foundry-rs/anvil-{system}-{arch}"


def anvil_executable() -> Path:
    """Locate Anvil: $DSO_ANVIL, the project's npm install (native binary), or `anvil` on PATH."""
    override = os.environ.get("DSO_ANVIL")
    candidates = [Path(override)] if override else []
    candidates.append(PROJECT_ROOT / "node_modules" / _platform_package() / "bin" / "anvil")
    on_path = shutil.which("anvil")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise DevnetError("anvil not found: run scripts/setup.sh (npm install) or set DSO_ANVIL to its path")


@dataclass(frozen=True)
class ManagedProcess:
    """A background service identified by the PID file it writes in `state_dir`."""

    name: str
    state_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The recorded PID if that process is still alive, else None (and a stale file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            self.pid_file.unlink(missing_ok=True)
            return None
        except PermissionError:
            return pid
        if _is_zombie(pid):
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def start(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, die_with_parent: bool = False) -> int:
        """Start `argv` detached in its own session with output to the log file; return its PID.

        A devnet from `dso devnet up` outlives the command on purpose. `die_with_parent` is for
        services a test or benchmark starts for itself: the kernel sends SIGTERM when the starting
        thread dies, even by SIGKILL, so killed runs leave no daemons behind (Linux only)."""
        if self.pid() is not None:
            raise DevnetError(f"{self.name} already running (pid {self.pid()}); run `dso devnet down` first")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                preexec_fn=_die_with_parent if die_with_parent else None,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the process (SIGTERM, then SIGKILL after `timeout`); return whether one was running."""
        pid = self.pid()
        if pid is None:
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process_alive(pid):
                break
            time.sleep(0.05)
        else:
            _signal_group(pid, signal.SIGKILL)
        _reap(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the log, for error messages."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


PR_SET_PDEATHSIG = 1  # prctl(2) option: the signal this process gets when its parent thread dies


def _die_with_parent() -> None:
    """In the child before exec: ask the kernel for SIGTERM when the parent dies. Where prctl is
    missing (not Linux) the child simply outlives a killed parent, as before."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return False


def process_alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie awaiting its reaper counts as dead)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _is_zombie(pid)


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port on `host` that is free right now (for private test and benchmark devnets)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def ensure_port_free(host: str, port: int) -> None:
    """Refuse to start where something already listens: we would otherwise talk to a stranger."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        if sock.connect_ex((host, port)) == 0:
            raise DevnetError(f"{host}:{port} is already in use by another process; pick another --port")


def wait_until_ready(process: ManagedProcess, url: str, probe: Callable[[], T], timeout: float) -> T:
    """Call `probe` until it returns (transport or parse errors mean "not yet"); fail fast with the
    log tail if the process exits, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.pid() is None:
            raise DevnetError(f"{process.name} exited during start-up:\n{process.log_tail()}")
        try:
            return probe()
        except (httpx.HTTPError, KeyError, ValueError):
            time.sleep(0.05)
    raise DevnetError(f"{process.name} did not answer on {url} within {timeout:.0f}s:\n{process.log_tail()}")


def wait_for_rpc(url: str, process: ManagedProcess, timeout: float = 15.0) -> int:
    """Poll `eth_chainId` until the node answers; return the chain id or raise with the log tail."""
    payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    return wait_until_ready(process, url, lambda: int(httpx.post(url, json=payload, timeout=1.0).json()["result"], 16), timeout)


ANVIL_STATES_KEPT = 64  # historical states Anvil keeps (in memory) for calls at past blocks


def start_anvil(
    state_dir: Path,
    port: int = DEFAULT_ANVIL_PORT,
    host: str = DEFAULT_HOST,
    chain_id: int = 31337,
    accounts: int = 10,
    block_time: float | None = None,
    die_with_parent: bool = False,
) -> tuple[ManagedProcess, str]:
    """Start Anvil on host:port (in-memory chain, `accounts` funded dev accounts from the dev
    mnemonic); return (process, RPC URL) once it answers. `die_with_parent`: see ManagedProcess.start."""
    process = ManagedProcess("anvil", state_dir)
    if process.pid() is None:
        ensure_port_free(host, port)
    argv = [
        str(anvil_executable()),
        "--host", host,
        "--port", str(port),
        "--chain-id", str(chain_id),
        "--mnemonic", DEV_MNEMONIC,
        "--accounts", str(accounts),
        "--silent",
        # Keep recent states in memory only. By default Anvil writes every older state to
        # ~/.foundry/anvil/tmp (measured: 11 GB, 1,971 files of 8 MB, over one test session that
        # deploys a registry per test); a fresh CI machine ran out of disk. Nothing in dso reads
        # state further back than a receipt's own block.
        "--prune-history", str(ANVIL_STATES_KEPT),
    ]
    if block_time:
        argv += ["--block-time", str(block_time)]
    process.start(argv, die_with_parent=die_with_parent)
    url = f"http://{host}:{port}"
    try:
        wait_for_rpc(url, process)
    except DevnetError:
        process.stop()
        raise
    return process, url


def dev_accounts(count: int = 10) -> list["LocalAccount"]:
    """The funded accounts Anvil derives from the dev mnemonic (m/44'/60'/0'/0/i)."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    return [Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(count)]


# --- the devnet IPFS node (js-ipfs, ipfs/daemon.mjs) ---------------------------------------------

DEFAULT_IPFS_PORT = 5002
IPFS_DIR = PROJECT_ROOT / "ipfs"
IPFS_DAEMON = IPFS_DIR / "daemon.mjs"
# The packages daemon.mjs imports; their presence means `npm install` in ipfs/ has run.
_IPFS_PACKAGES = ("ipfs-core", "ipfs-http-server")


def node_executable() -> Path:
    """Locate Node.js: $DSO_NODE or `node` on PATH."""
    override = os.environ.get("DSO_NODE")
    candidate = override or shutil.which("node")
    if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
        return Path(candidate)
    raise DevnetError("Node.js not found: install it (scripts/setup.sh does) or set DSO_NODE to its path")


def ipfs_installed() -> bool:
    """Whether the devnet IPFS node can start: Node.js, ipfs/daemon.mjs and its npm packages."""
    try:
        node_executable()
    except DevnetError:
        return False
    packages = IPFS_DIR / "node_modules"
    return IPFS_DAEMON.is_file() and all((packages / name / "package.json").is_file() for name in _IPFS_PACKAGES)


def wait_for_ipfs(url: str, process: ManagedProcess, timeout: float = 30.0) -> str:
    """Poll the Kubo RPC `/api/v0/id` until the node answers; return its peer id or raise with the
    log tail (the process exiting early fails fast)."""
    return wait_until_ready(process, url, lambda: str(httpx.post(f"{url}/api/v0/id", timeout=1.0).json()["ID"]), timeout)


def start_ipfs(state_dir: Path, port: int = DEFAULT_IPFS_PORT, host: str = DEFAULT_HOST, die_with_parent: bool = False) -> tuple[ManagedProcess, str]:
    """Start the offline js-ipfs node (repo in state_dir/ipfs-repo, Kubo RPC API on host:port);
    return (process, API URL) once the API answers. Stop it with `process.stop()` (SIGTERM: the
    node closes its repo and exits 0).

    The node never starts libp2p: no peers, no swarm ports, no preload. Content added before a
    restart is still there (the repo persists in state_dir).
    """
    if not ipfs_installed():
        raise DevnetError("the devnet IPFS node is not installed: run scripts/setup.sh (npm install in ipfs/)")
    process = ManagedProcess("ipfs", state_dir)
    repo = state_dir / "ipfs-repo"
    if process.pid() is None:
        ensure_port_free(host, port)
        # A node killed by SIGKILL leaves its lock behind; no node of ours runs, so it is stale.
        shutil.rmtree(repo / "repo.lock", ignore_errors=True)
    argv = [str(node_executable()), str(IPFS_DAEMON), "--repo", str(repo), "--port", str(port), "--host", host]
    process.start(argv, cwd=IPFS_DIR, die_with_parent=die_with_parent)
    url = f"http://{host}:{port}"
    try:
        wait_for_ipfs(url, process)
    except DevnetError:
        process.stop()
        raise
    return process, url
