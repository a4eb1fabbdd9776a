"""The `dso` command line."""

from dso.interfaces.cli.app import cli, main

__all__ = ["cli", "main"]
