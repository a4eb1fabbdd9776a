"""`dso sync` and `dso query`: an agent builds its library from the chain and asks it."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from dso.core.experience import display_text
from dso.edges.config import load_config
from dso.edges.embed import QUERY_MODEL_LOADERS, LazyEmbedder, thread_count
from dso.errors import DsoError
from dso.interfaces.cli.options import console, echo_json, format_option, library_path, open_registry, open_store, plain_text, text_cell

# `dso sync` exit statuses besides 0 (done), 1 (an error: nothing changed) and 2 (usage).
EXIT_REFUSED = 3
EXIT_UNAVAILABLE = 4


@click.command("sync", epilog=f"Exit status: 0 when every accepted batch is in the library; {EXIT_REFUSED} when batches were refused "
                              f"(they fail verification: never loaded, listed with the reason); {EXIT_UNAVAILABLE} when none was refused "
                              "but some could not be fetched yet (retried on the next sync); 1 on an error (the checkpoint did not move); "
                              "2 on a usage error.")
@click.option("--confirmations", default=0, show_default=True, type=click.IntRange(min=0),
              help="Ignore the newest N blocks (reorg safety on real networks).")
@click.option("--min-nodes", default=3, show_default=True, help="Distinct admitted nodes that must endorse an experience (at least 2).")
@click.option("--support-fraction", default=0.05, show_default=True, help="...and this share of the weight of the nodes that reported anything.")
@click.option("--min-confidence", default=0.5, show_default=True, help="A node endorses an experience it reports at this confidence or more.")
@click.option("--index/--no-index", "run_indexer", default=True, show_default=True,
              help="After verifying, embed the new entries' texts for rescoring (interruptible; `dso index` resumes).")
@format_option
def sync_command(confirmations: int, min_nodes: int, support_fraction: float, min_confidence: float, run_indexer: bool, fmt: str) -> None:
    """Load every accepted, verified batch, drop revoked ones, and aggregate the reports of
    admitted nodes into the local library (robust statistics, one voice per node, weighed by its
    reputation on chain). Nothing waits for the embedding model until the library is complete;
    then the new entries' texts are embedded for rescoring (searchable by their codes meanwhile)."""
    from contextlib import nullcontext

    from rich.progress import Progress

    from dso.core.aggregate import AcceptancePolicy
    from dso.workflows.library import Library
    from dso.workflows.sync import sync

    config = load_config()
    registry = open_registry()
    policy = AcceptancePolicy(min_nodes, support_fraction, min_confidence)
    progress_bar = Progress(console=console, transient=True) if fmt == "table" else nullcontext()
    with Library(library_path(), LazyEmbedder("minilm")) as library:
        with progress_bar as bar:
            task = bar.add_task("fetching and verifying batches", total=None) if bar else None
            report = sync(registry, open_store(), library, deploy_block=config.deploy_block, confirmations=confirmations,
                          progress=(lambda root, done, total: bar.update(task, completed=done, total=total)) if bar else None, policy=policy)
        indexed = None
        if run_indexer and library.unindexed():
            indexed = run_index(library) if fmt == "table" else library.index_texts()
    a = report.aggregation
    status = EXIT_REFUSED if report.invalid else EXIT_UNAVAILABLE if report.unavailable else 0
    if fmt == "json":
        echo_json({
            "from_block": report.from_block, "to_block": report.to_block, "loaded": ["0x" + r for r in report.loaded],
            "revoked": ["0x" + r for r in report.revoked], "revoked_experiences": report.revoked_experiences,
            "refused": {"0x" + r: why for r, why in report.invalid.items()},
            "unavailable": {"0x" + r: why for r, why in report.unavailable.items()},
            "reports_added": report.reports_added, "seconds": report.seconds,
            "policy": {"min_nodes": policy.min_nodes, "support_fraction": policy.support_fraction, "min_confidence": policy.min_confidence},
            "library": {"accepted": a.accepted, "pending": a.pending, "reports": a.reports, "active_nodes": a.active_nodes,
                        "required_support": a.required_support, "dropped_reports": a.dropped_reports,
                        "capped_reports": a.capped_reports, "invalid_codes": a.invalid_codes, "forged_reports": a.forged_reports,
                        "unchanged": a.unchanged},
            "index": None if indexed is None else {"embedded": indexed.embedded, "remaining": indexed.remaining,
                                                   "texts_per_second": indexed.texts_per_second, "forged": indexed.forged},
            "weights": {str(node): round(weight, 6) for node, weight in sorted(report.weights.items())},
            "exit_status": status,
        })
        if status:
            raise click.exceptions.Exit(status)
        return
    blocks = (f"blocks {report.from_block}-{report.to_block}" if report.to_block >= report.from_block
              else f"no new blocks since the last sync (checkpoint at block {report.from_block})")
    console.print(
        f"{blocks}: loaded {len(report.loaded)} batch(es) "
        f"(+{report.reports_added} reports), dropped {len(report.revoked)} revoked batch(es) and "
        f"{report.revoked_experiences} revoked experience(s), {len(report.invalid)} refused, "
        f"{len(report.unavailable)} not yet available ({report.seconds} s)"
    )
    if a.required_support > a.active_nodes:
        bar = (f"no experience can be accepted yet: the policy needs {a.required_support} distinct nodes per experience "
               f"but only {a.active_nodes} admitted node(s) reported anything; wait for more nodes or lower --min-nodes")
    else:
        bar = (f">= {a.required_support} of {a.active_nodes} active nodes endorsing it (reporting it at confidence >= "
               f"{policy.min_confidence}; a node with a short record counts as part of a voice)")
    console.print(
        f"library: {a.accepted} experiences accepted, {a.pending} awaiting support ({bar}); "
        f"{a.reports} reports, {a.dropped_reports} from nodes not admitted"
        + (f", {a.capped_reports} over the per-node cap" if a.capped_reports else "")
        + (f", {a.invalid_codes} malformed codes left out of the vote" if a.invalid_codes else "")
        + (f", {a.forged_reports} whose code is not their text's left out" if a.forged_reports else "")
    )
    if report.weights:
        console.print(weights_summary(report.weights))
    for root, reason in report.invalid.items():
        console.print(f"[red]refused[/red] {root[:16]}: {plain_text(reason)}")
    for root, reason in report.unavailable.items():
        console.print(f"[yellow]not yet available[/yellow] {root[:16]}: {plain_text(reason)} (retried on the next sync)")
    if indexed is not None:
        console.print(f"index: embedded {indexed.embedded} text(s) ({indexed.texts_per_second} texts/s), {indexed.remaining} left "
                      "(searchable by their codes meanwhile; `dso index` continues)"
                      + (f"; {indexed.forged} report(s) whose code is not their text's left out, library re-aggregated" if indexed.forged else ""))
    if report.invalid:
        console.print(f"{len(report.invalid)} batch(es) refused: exit status {EXIT_REFUSED}")
        raise click.exceptions.Exit(EXIT_REFUSED)
    if report.unavailable:
        console.print(f"{len(report.unavailable)} batch(es) not yet available: exit status {EXIT_UNAVAILABLE}")
        raise click.exceptions.Exit(EXIT_UNAVAILABLE)


def run_index(library, limit: int | None = None, model=None):
    """Run the indexer with a progress bar (`model`: embed the entries' texts with that model for
    `dso query --query-model`); Ctrl-C stops it between chunks, losing nothing."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from dso.workflows.library import IndexProgress

    if model is None:
        remaining, step, what = library.unindexed, library.index_texts, "embedding texts for rescoring"
    else:
        remaining, what = (lambda: library.unindexed_for(model.model_id)), f"embedding texts with {model.model_id}"

        def step(limit, progress):
            return library.index_texts_for(model, limit, progress)

    total = remaining() if limit is None else min(limit, remaining())
    columns = (TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    started = time.monotonic()
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("index", total=total)
        try:
            return step(limit, lambda done, _: bar.update(task, completed=done))
        except KeyboardInterrupt:
            left = remaining()
            return IndexProgress(max(total - left, 0), left, round(time.monotonic() - started, 3))


@click.command("index")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Embed at most this many texts now.")
@click.option("--model", "model_name", type=click.Choice(sorted(QUERY_MODEL_LOADERS)), default=None,
              help="Embed the visible entries' texts with this model instead, for `dso query --query-model` (exact in its own space).")
def index_command(limit: int | None, model_name: str | None) -> None:
    """Embed the library's texts that have no local embedding yet (what rescoring uses), resuming
    where the last run stopped; entries are searchable by their codes meanwhile. With --model, embed
    them with another agent's model so that it searches the library in its own space."""
    from dso.edges.embed import load_query_model
    from dso.workflows.library import Library

    path = library_path()
    if not path.exists():
        raise DsoError(f"no library at {path}: sync one first (`dso sync`)")
    with Library(path, LazyEmbedder("minilm")) as library:
        done = run_index(library, limit, load_query_model(model_name) if model_name else None)
    console.print(f"embedded {done.embedded} text(s)" + (f" with {model_name}" if model_name else "") + f" in {done.seconds} s "
                  f"({done.texts_per_second} texts/s, {thread_count()} thread(s), DSO_THREADS); {done.remaining} left")


def weights_summary(weights: dict[int, float]) -> str:
    """One line on the reputation weights a sync used: their range, and the lightest nodes."""
    values = sorted(weights.values())
    median = values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
    lightest = sorted(weights.items(), key=lambda item: (item[1], item[0]))[:3]
    return (f"reputation: {len(values)} admitted node(s) weigh {values[0]:.3f} to {values[-1]:.3f} (median {median:.3f}; "
            f"1 = a mature node with a clean record); lightest: "
            + ", ".join(f"node {node} {weight:.3f}" for node, weight in lightest) + " (`dso status` lists every node)")


@click.command()
@click.argument("text")
@click.option("-k", "k", default=5, show_default=True, help="How many experiences to return.")
@click.option("--domain", default=None, help="Only this domain and below it (e.g. math).")
@click.option("--min-confidence", default=0.0, show_default=True, help="Only experiences at least this confident.")
@click.option("--format", "fmt", type=click.Choice(["table", "prompt", "json"]), default="table", show_default=True)
@click.option("--embedder", "embedder_name", type=click.Choice(["minilm", "minilm-int8"]), default="minilm-int8", show_default=True,
              help="How TEXT is embedded: the int8 build of the library's model starts without torch (a one-off query answers in about a "
                   "third of the time; its vectors have cosine 0.9996 to the float model's).")
@click.option("--query-model", type=click.Choice(sorted(QUERY_MODEL_LOADERS)), default=None,
              help="Embed TEXT with this model instead: searched in its own space once `dso index --model` embedded the library with it, "
                   "else mapped into the library's space with --alignment.")
@click.option("--alignment", "alignment_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Map --query-model's vector into the library's space with this file (`dso align fit`).")
def query(text: str, k: int, domain: str | None, min_confidence: float, fmt: str, embedder_name: str, query_model: str | None, alignment_file: Path | None) -> None:
    """Retrieve the experiences most relevant to TEXT from the local library."""
    from dso.core.align import AlignedQueryEmbedder, Alignment
    from dso.edges.embed import load_embedder, load_query_model
    from dso.workflows.library import Library, context_block, export_json

    if alignment_file and not query_model:
        raise DsoError("--alignment needs --query-model MODEL: the model the alignment was fitted for (`dso align show FILE` prints its dimensions)")
    alignment = Alignment.from_bytes(alignment_file.read_bytes()) if alignment_file else None
    path = library_path()
    if not path.exists():
        raise DsoError(f"no library at {path}: sync one first (`dso sync`)")
    with Library(path, load_embedder(embedder_name)) as library:
        if query_model and not alignment:
            hits, missing = _search_in_model(library, query_model, text, k, domain, min_confidence)
            if fmt == "prompt":
                click.echo(context_block(hits))
                return
            if fmt == "json":
                click.echo(export_json(hits))
                return
            _print_hits(hits, k, text, f" ({query_model}, in its own space)")
            if missing:
                console.print(f"{missing} visible entr{'y' if missing == 1 else 'ies'} not ranked: not embedded with {query_model} yet "
                              f"(`dso index --model {query_model}`)")
            return
        vector = None
        if query_model and alignment:
            model = load_query_model(query_model)
            queries = AlignedQueryEmbedder(model, alignment, target_dim=library.embedder.dim)  # dimensions first
            alignment.check_models(model.model_id, library.embedder.model_id)
            vector = queries.embed([text])[0]
        if fmt == "prompt":
            click.echo(library.context_for(text, k=k, domain=domain, min_confidence=min_confidence, query_vector=vector))
            return
        hits = library.search(text, k=k, domain=domain, min_confidence=min_confidence, query_vector=vector)
    if fmt == "json":
        click.echo(export_json(hits))
        return
    coded_only = sum(h.by_code_only for h in hits)
    _print_hits(hits, k, text, f" ({query_model}, alignment {alignment.alignment_id[:12]})" if query_model and alignment else "")
    if coded_only:
        console.print(f"{coded_only} of {len(hits)} ranked by their 1-bit codes only: their texts are not embedded yet (`dso index`)")


def _search_in_model(library, model_name: str, text: str, k: int, domain: str | None, min_confidence: float):
    """`dso query --query-model M` without an alignment: the library ranked in M's own space."""
    from dso.edges.embed import load_query_model

    model = load_query_model(model_name)
    if not library.indexed_for(model.model_id):
        raise DsoError(
            f"the library is not embedded with {model_name} yet: run `dso index --model {model_name}` once (exact in {model_name}'s own "
            f"space; it embeds every visible entry's text), or map queries into the library's space with an alignment: "
            f"`dso align fit {model_name} -o {model_name}.align`, then --alignment {model_name}.align"
        )
    return library.search_in(model, text, k=k, domain=domain, min_confidence=min_confidence)


def _print_hits(hits, k: int, text: str, via: str) -> None:
    table = Table(title=Text(f"top {k} for: {display_text(text)}{via}"))
    for column in ("score", "domain", "confidence", "nodes", "experience"):
        table.add_column(column)
    for hit in hits:
        nodes = str(hit.support) if hit.origin == "network" else "local"
        table.add_row(f"{hit.score:.3f}", hit.domain, f"{hit.confidence:.2f}", nodes, text_cell(hit.experience.text))
    console.print(table)
