"""`dso ui`: the local review-and-vote page for DAO members."""

from __future__ import annotations

import click

from dso.errors import ConfigError
from dso.interfaces.cli.options import library_path, open_registry, open_store


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Keystore signing works on loopback only; elsewhere members sign with a browser wallet.")
@click.option("--port", default=8766, show_default=True, type=click.IntRange(1, 65535))
@click.option("--allowed-host", "allowed_hosts", multiple=True,
              help="Host header to accept besides 127.0.0.1/localhost/[::1] (e.g. review.example.org:8766); repeat.")
@click.option("--no-library", is_flag=True, help="Do not open the local library (no 'in your library' column, no model load).")
def ui_command(host: str, port: int, allowed_hosts: tuple[str, ...], no_library: bool) -> None:
    """Serve the review page: batches and proposals (pending first) with deadlines, tallies and
    quorum progress; each batch fetched and verified with its experiences; vote with an optional
    on-chain reason, on several batches at once, and finalize."""
    from dso.edges.config import load_config
    from dso.edges.wallet import list_wallets, load_wallet
    from dso.interfaces.web.app import Services, build_app, is_loopback, serve

    config = load_config()
    if not is_loopback(host) and not allowed_hosts:
        raise ConfigError(f"binding {host} serves the page to other machines: name the Host they use with --allowed-host NAME:PORT")

    def open_library():
        path = library_path()
        if no_library or not path.exists():
            return None
        from dso.edges.embed import load_embedder
        from dso.workflows.library import Library

        return Library(path, load_embedder("minilm"))

    services = Services(open_registry(), open_store(), config.deploy_block, open_library, list_wallets, load_wallet)
    app = build_app(services, port, host, allowed_hosts)
    click.echo(f"dso ui: http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/ (Ctrl-C stops it)", err=True)
    serve(app, host, port)
