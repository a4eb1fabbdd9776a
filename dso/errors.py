"""The one exception hierarchy of dso: every failure a user can act on has a type here."""

from __future__ import annotations


class DsoError(Exception):
    """Base class of every error dso raises on purpose; the CLI prints these without a traceback."""


class ConfigError(DsoError):
    """A configuration file or setting is missing or malformed."""


class ToolchainError(DsoError):
    """A tool dso drives (solc wrapper, Anvil, npm packages) is missing or failed."""


class CompileError(ToolchainError):
    """The Solidity compiler reported errors."""


class DevnetError(DsoError):
    """The local devnet could not be started, stopped or reached."""


class ChainError(DsoError):
    """Talking to the EVM node failed (unreachable RPC, timeout, dropped transaction)."""


class RpcUnavailable(ChainError):
    """The RPC endpoint did not answer; nothing was sent, or it is unknown whether it was."""


class ContractRevert(ChainError):
    """The registry contract reverted. `name` and `args` are the decoded custom error."""

    def __init__(self, name: str, args: tuple[object, ...] = (), message: str | None = None) -> None:
        self.name = name
        self.args_ = tuple(args)
        rendered = ", ".join(str(a) for a in self.args_)
        super().__init__(message or f"contract reverted with {name}({rendered})")


class SignatureError(DsoError):
    """A signature could not be made or does not verify."""
