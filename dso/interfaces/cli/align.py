"""`dso align`: let an agent on another embedding model query the MiniLM library."""

from __future__ import annotations

from pathlib import Path

import click

from dso.core.align import MAX_ANCHORS
from dso.edges.embed import QUERY_MODEL_LOADERS
from dso.interfaces.cli.options import console


@click.group()
def align() -> None:
    """Alignments: let an agent on another embedding model query the MiniLM library (README,
    "An agent on another embedding model")."""


@align.command("fit")
@click.argument("model", type=click.Choice(sorted(QUERY_MODEL_LOADERS)))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Where to write the alignment.")
@click.option("--anchors", default=MAX_ANCHORS, show_default=True, type=click.IntRange(2, MAX_ANCHORS),
              help="Anchor sentences to fit on (the cross-model benchmark's set, a prefix of it).")
@click.option("--embedder", "embedder_name", type=click.Choice(["minilm", "minilm-int8"]), default="minilm", show_default=True,
              help="The library's model, the alignment's target.")
def align_fit(model: str, output: Path, anchors: int, embedder_name: str) -> None:
    """Fit the map from MODEL's query vectors into the library's space and write it to OUTPUT."""
    from dso.core.align import fit_query_model
    from dso.edges.datasets import anchor_sentences
    from dso.edges.embed import load_embedder, load_query_model
    from dso.edges.files import atomic_write_bytes

    fitted = fit_query_model(load_query_model(model), load_embedder(embedder_name), anchor_sentences(anchors))
    data = fitted.alignment.to_bytes()
    atomic_write_bytes(output, data)
    a = fitted.alignment
    if fitted.anchors <= max(a.source_dim, a.target_dim):
        console.print(f"[yellow]warning:[/yellow] {fitted.anchors} anchors for {max(a.source_dim, a.target_dim)} dimensions leave the map "
                      "undetermined outside the anchors' span; use more (the benchmark's 1,000)")
    click.echo(f"alignment {a.alignment_id}")
    click.echo(f"{model} ({a.source_dim}-d) -> {embedder_name} ({a.target_dim}-d) on {fitted.anchors:,} anchors: "
               f"embedding {fitted.embed_seconds} s, fit {fitted.fit_seconds} s; wrote {output} ({len(data):,} bytes)")
    click.echo(f"use it: dso query TEXT --query-model {model} --alignment {output}")


@align.command("show")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def align_show(file: Path) -> None:
    """Print an alignment file's dimensions, scale and id."""
    from dso.core.align import Alignment

    data = file.read_bytes()
    a = Alignment.from_bytes(data)
    click.echo(f"alignment {a.alignment_id}")
    click.echo(f"source dim {a.source_dim} -> target dim {a.target_dim}, scale {a.scale:.6g}, {len(data):,} bytes")
    click.echo(f"query model {a.source_model or '(not recorded: refit with `dso align fit`)'} -> library model {a.target_model or '(not recorded)'}")
