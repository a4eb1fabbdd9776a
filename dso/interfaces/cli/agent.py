"""`dso ask` and `dso learn`: the local agent answers with gated experiences, and learns new ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

import click
from rich.table import Table
from rich.text import Text

from dso.errors import DsoError
from dso.interfaces.cli.options import console, echo_json, format_option, library_path, open_registry, open_store, plain_text, text_cell, unlock_wallet

F = TypeVar("F", bound=Callable[..., Any])


def llm_options(fn: F) -> F:
    """--base-url, --model, --threads: which model answers (README, "The local agent")."""
    fn = click.option("--threads", type=click.IntRange(1, 64), default=None,
                      help="Threads of the in-process model (env DSO_LLM_THREADS; default 1: faster than 2 on a busy 2-core machine).")(fn)
    fn = click.option("--model", default=None,
                      help="Bundled model (qwen2.5-coder-1.5b, smollm2-135m) or the endpoint's model name (env DSO_LLM_MODEL).")(fn)
    return click.option("--base-url", default=None,
                        help="An OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1 (env DSO_LLM_BASE_URL; key in DSO_LLM_API_KEY). "
                             "Without one the bundled model runs in-process.")(fn)


def open_model(base_url: str | None, model: str | None, threads: int | None):
    """The chat model the options name (an endpoint client or the in-process model)."""
    from dso.edges.llm import LLMSettings, open_chat_model

    return open_chat_model(LLMSettings.resolve(base_url, model, threads))


def open_library_if_any():
    """The agent's library, or None when there is none yet (the agent then answers alone)."""
    from dso.edges.embed import load_embedder
    from dso.workflows.library import Library

    path = library_path()
    return Library(path, load_embedder("minilm-int8")) if path.exists() else None


@click.command("ask")
@click.argument("question")
@llm_options
@click.option("-k", "k", default=3, show_default=True, type=click.IntRange(1, 20), help="At most this many experiences in the prompt.")
@click.option("--min-similarity", default=None, type=click.FloatRange(-1, 1),
              help="Gate: least similarity to the question (default 0.30, calibrated: `python scripts/bench.py gate`).")
@click.option("--domain", default=None, help="Gate: only this domain and below it (e.g. math).")
@click.option("--min-confidence", default=0.5, show_default=True, type=click.FloatRange(0, 1), help="Gate: least consensus confidence.")
@click.option("--min-support", default=1, show_default=True, type=click.IntRange(0), help="Gate: least admitted nodes behind a network entry.")
@click.option("--no-experiences", is_flag=True, help="Answer without the library (a baseline).")
@click.option("--max-tokens", default=512, show_default=True, type=click.IntRange(1, 8192))
@click.option("--temperature", default=0.0, show_default=True, type=click.FloatRange(0, 2))
@click.option("--show-prompt", is_flag=True, help="Print the messages sent to the model.")
@format_option
def ask_command(question: str, base_url: str | None, model: str | None, threads: int | None, k: int, min_similarity: float | None,
                domain: str | None, min_confidence: float, min_support: int, no_experiences: bool, max_tokens: int, temperature: float,
                show_prompt: bool, fmt: str) -> None:
    """Answer QUESTION with the library's relevant experiences injected; show which were used."""
    from dso.workflows.agent import DEFAULT_MIN_SIMILARITY, RelevanceGate, ask

    gate = RelevanceGate(DEFAULT_MIN_SIMILARITY if min_similarity is None else min_similarity, domain, min_confidence, min_support, k)
    chat = open_model(base_url, model, threads)
    library = None
    try:
        library = None if no_experiences else open_library_if_any()
        answer = ask(question, chat, library, gate, max_tokens=max_tokens, temperature=temperature)
    finally:
        chat.close()
        if library is not None:
            library.close()
    if fmt == "json":
        echo_json({"question": answer.question, "answer": answer.text, "model": chat.name,
                   "used": [_hit_json(h) for h in answer.selection.used],
                   "refused": [{**_hit_json(h), "reason": why} for h, why in answer.selection.refused],
                   "tokens": {"prompt": answer.completion.prompt_tokens, "completion": answer.completion.completion_tokens},
                   "seconds": round(answer.completion.seconds, 3)})
        return
    if show_prompt:
        for message in answer.messages:
            console.print(f"[bold]{message['role']}:[/bold] {plain_text(message['content'])}")
    if answer.selection.used:
        table = Table(title=Text(f"experiences used ({len(answer.selection.used)})"))
        for column in ("id", "similarity", "domain", "confidence", "nodes", "experience"):
            table.add_column(column)
        for hit in answer.selection.used:
            table.add_row(hit.experience.experience_id[:12], f"{hit.score:.3f}", hit.domain, f"{hit.confidence:.2f}",
                          str(hit.support) if hit.origin == "network" else "local", text_cell(hit.experience.text))
        console.print(table)
    elif no_experiences:
        console.print("no experiences: --no-experiences")
    elif library is None:
        console.print(f"no experiences: no library at {library_path()} (`dso sync`, or `dso learn`)")
    else:
        best = answer.selection.refused[0] if answer.selection.refused else None
        why = f" (best: {best[1]})" if best else " (the library is empty)"
        console.print(f"no experience qualified{why}: answered without experiences")
    for line in answer.text.split("\n"):  # line breaks kept, other controls escaped, never parsed as markup (LaTeX's "\[" stays)
        console.print(text_cell(line))
    c = answer.completion
    console.print(f"[dim]{chat.name}: {c.prompt_tokens} prompt + {c.completion_tokens} completion tokens in {c.seconds:.1f} s "
                  f"({c.tokens_per_second:.1f} tokens/s)[/dim]")


def _hit_json(hit) -> dict[str, Any]:
    return {"id": hit.experience.experience_id, "text": hit.experience.text, "similarity": round(float(hit.score), 6), "domain": hit.domain,
            "confidence": hit.confidence, "support": hit.support, "origin": hit.origin}



@click.command("learn")
@click.argument("tasks_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@llm_options
@click.option("-G", "--group-size", default=4, show_default=True, type=click.IntRange(2, 64), help="Rollouts per task.")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(1, 64), help="Tasks whose operations are reconciled together.")
@click.option("--temperature", default=0.7, show_default=True, type=click.FloatRange(0, 2, min_open=True), help="Of the rollouts.")
@click.option("--max-tokens", default=450, show_default=True, type=click.IntRange(1, 8192), help="Per rollout.")
@click.option("--learn-max-tokens", default=300, show_default=True, type=click.IntRange(16, 8192), help="Per learning step.")
@click.option("--lessons-per-group", default=2, show_default=True, type=click.IntRange(1, 10))
@click.option("--domain", default="math", show_default=True, help="Domain of the lessons written.")
@click.option("--verifier", default="numeric", show_default=True, help="How rollouts are rewarded (numeric: GSM8K final answers).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0))
@click.option("--limit", default=None, type=click.IntRange(1), help="Learn from at most this many more tasks now (whole batches).")
@click.option("--state", "state_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Run state directory (default $DSO_HOME/learn/<tasks file>-<sha256 prefix>); rerun to resume.")
@click.option("--out", "output", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Lessons JSONL for `dso submit` (default STATE/lessons.jsonl).")
@click.option("--no-library", is_flag=True, help="Do not add the lessons to the local library at the end.")
@click.option("--publish-every", type=click.IntRange(min=1), default=None,
              help="Publish from --wallet once this many lessons are new or changed since the last publication.")
@click.option("--publish-drift", type=click.FloatRange(min=0.0, max=2.0, min_open=True), default=None,
              help="Publish from --wallet once the pool's cosine drift from what it last published reaches this (e.g. 0.05).")
@click.option("--wallet", "wallet_name", default=None, help="Node wallet that publishes (with --publish-every / --publish-drift).")
@click.option("--password-env", default=None, help="Read the wallet password from this environment variable.")
def learn_command(tasks_file: Path, base_url: str | None, model: str | None, threads: int | None, group_size: int, batch_size: int,
                  temperature: float, max_tokens: int, learn_max_tokens: int, lessons_per_group: int, domain: str, verifier: str, seed: int,
                  limit: int | None, state_dir: Path | None, output: Path | None, no_library: bool, publish_every: int | None,
                  publish_drift: float | None, wallet_name: str | None, password_env: str | None) -> None:
    """Learn lessons from TASKS_FILE ({"question", "answer"} per line) with Training-Free GRPO.

    With --publish-every and/or --publish-drift the loop publishes its new lessons itself, from
    --wallet, after the batch at which either rule fires (the seeds' semantic event)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dso.edges.config import dso_home
    from dso.edges.embed import load_embedder
    from dso.workflows.learn import Learner, LearnSettings, PublishPolicy, lesson_publisher, read_tasks
    from dso.workflows.library import Library

    tasks, sha = read_tasks(tasks_file)
    publishing = publish_every is not None or publish_drift is not None
    if publishing != (wallet_name is not None):
        raise DsoError("--publish-every/--publish-drift and --wallet go together: the wallet publishes what the rules decide")
    policy = PublishPolicy(publish_every, publish_drift) if publishing else None
    publisher = None
    if publishing:
        from dso.workflows.publish import Outbox

        node = unlock_wallet(wallet_name, password_env)  # before any LLM time is spent: a wrong password fails now
        publisher = lesson_publisher(node, lambda: load_embedder("minilm"), Outbox(), lambda: (open_store(), open_registry()))
    settings = LearnSettings(group_size, batch_size, temperature, max_tokens, learn_max_tokens, lessons_per_group, domain=domain,
                             verifier=verifier, seed=seed)
    state = state_dir or dso_home() / "learn" / f"{tasks_file.stem}-{sha[:12]}"
    chat = open_model(base_url, model, threads)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            job = bar.add_task("learning", total=len(tasks))

            def show(p) -> None:
                bar.update(job, completed=p.tasks_done,
                           description=f"{p.stage:<10} {p.lessons} lesson(s), {p.completion_tokens} tokens, {p.tokens_per_second:.1f} tokens/s")

            learner = Learner(chat, load_embedder("minilm-int8"), tasks, sha, state, settings, output=output, progress=show, publisher=publisher,
                              policy=policy)
            report = learner.run(limit)
        stored = 0
        if not no_library:
            with Library(library_path(), load_embedder("minilm-int8")) as library:
                stored = learner.store_in(library)
    finally:
        chat.close()
    console.print(f"{report.tasks} of {len(tasks)} tasks, {report.rollouts} rollouts (mean reward {report.mean_reward:.2f}); groups used "
                  f"{report.groups_used}, skipped without reward variance {report.groups_skipped}")
    refused = ", ".join(f"{reason} {count}" for reason, count in sorted(report.refused.items())) or "none"
    console.print(f"lessons kept: {len(report.lessons)}; refused by the guard rails: {refused}; unreadable LLM replies: {report.unreadable}")
    for key, text, confidence in report.lessons:
        console.print(f"  {key} [{confidence:.2f}] {plain_text(text)}")
    console.print(f"{report.completion_tokens} tokens generated in {report.llm_seconds:.0f} s of LLM time ({report.tokens_per_second:.1f} tokens/s), "
                  f"{report.prompt_tokens} prompt tokens; state: {state}")
    for event in report.publications:
        console.print(f"published after batch {event['batch'] + 1}: {event['lessons']} lesson(s) ({event['reason']}): {plain_text(event['outcome'])}")
    console.print(f"lessons for `dso submit`: {report.output}" + ("" if no_library else f"; {stored} new in the local library"))
