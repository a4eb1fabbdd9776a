"""`dso mcp`: serve the library to agents over the Model Context Protocol (stdio or streamable HTTP)."""

from __future__ import annotations

import os
import sys

import click

from dso.edges.config import dso_home
from dso.errors import ConfigError, DsoError
from dso.interfaces.cli.options import library_path
from dso.interfaces.hosts import is_loopback


@click.command("mcp")
@click.option("--http", "http", is_flag=True, help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind with --http; anything but loopback needs --token-env.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535), help="Port to bind with --http.")
@click.option("--token-env", default=None, help="Environment variable holding the bearer token agents must send with --http.")
@click.option("--allowed-host", "allowed_hosts", multiple=True, help="Extra Host header value accepted with --http (e.g. the server's DNS name); repeat.")
@click.option("--allow-sync", is_flag=True, help="Offer a `sync` tool (it reads the chain and IPFS; off by default).")
@click.option("--embedder", "embedder_name", type=click.Choice(["minilm", "minilm-int8"]), default="minilm", show_default=True)
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 64),
              help="torch threads for embedding a query (one query at a time: 1 is fastest on a busy machine; see bench/results/mcp.json).")
def mcp_command(http: bool, host: str, port: int, token_env: str | None, allowed_hosts: tuple[str, ...], allow_sync: bool, embedder_name: str,
                threads: int) -> None:
    """Serve this machine's library ($DSO_HOME/library.sqlite) to agents as an MCP memory server:
    tools search_experiences, get_experience, add_experience, library_status (and sync with
    --allow-sync). One process keeps the model and the library loaded."""
    try:
        from dso.interfaces import mcp_server
    except ImportError as exc:  # pragma: no cover - the extra is part of the default install
        raise DsoError(f"dso mcp needs the MCP SDK ({exc}): pip install 'dso[interfaces]'") from exc
    from dso.edges.config import load_config
    from dso.edges.embed import load_embedder
    from dso.workflows.memory import AgentMemory

    token = None
    if token_env:
        token = os.environ.get(token_env)
        if not token:
            raise ConfigError(f"environment variable {token_env} is not set or empty: export the bearer token there")
    if not http and (token_env or allowed_hosts or host != "127.0.0.1"):
        raise click.UsageError("--host, --token-env and --allowed-host apply to --http only")
    if http and not is_loopback(host) and not token:
        raise ConfigError(f"refusing to serve MCP on {host} without a bearer token: pass --token-env VAR, or bind 127.0.0.1")
    try:
        config = load_config()
    except ConfigError:
        if allow_sync:
            raise
        config = None  # search and local entries work without a network
    embedder = load_embedder(embedder_name)
    if "torch" in sys.modules:  # one short query per call: more threads only contend (median 585 ms vs 54 ms measured)
        sys.modules["torch"].set_num_threads(threads)
    memory = AgentMemory(library_path(), embedder, config, dso_home() / "sync.json")
    sync = None
    if allow_sync:
        from dso.interfaces.cli.options import open_registry, open_store

        def sync() -> dict:
            return memory.sync(lambda: (open_registry(), open_store()))

    server = mcp_server.build_server(memory, sync)
    try:
        if http:
            click.echo(f"dso mcp: serving http://{host}:{port}/mcp" + (" (bearer token required)" if token else ""), err=True)
            mcp_server.serve_http(server, host, port, token, list(allowed_hosts))
        else:
            mcp_server.serve_stdio(server)
    finally:
        memory.close()
