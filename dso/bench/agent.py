"""Does the agent answer better with experiences? Accuracy on held-out GSM8K test questions, paired.

`python scripts/bench.py agent [--questions N] [--conditions a,e,b] [--lessons FILE] [--network FILE]`
answers the same GSM8K *test* questions under each condition through `dso.workflows.agent.ask`
(greedy, the same system prompt, the same max tokens) and scores each reply with the numeric
verifier of the learning loop (`dso.core.verifiers.NumericVerifier`):

- (a) no experiences: the agent alone, the baseline every other condition is compared with;
- (b) the agent's own lessons: a `dso learn` output JSONL (`--lessons`), through the default gate;
- (c) a network library: other nodes' lessons (`--network`), through the default gate. Either a
  library synced with `dso sync` (its SQLite file, e.g. ~/.dso/library.sqlite: copied first, the
  original is never written; its visible entries are searched with their support, so the gate's
  support rule applies), or a JSONL of text/domain/confidence (e.g. other nodes' `dso learn`
  outputs concatenated), whose lessons are stored as local entries, exempt from the support rule;
- (d) a control: hand-written lessons that bear on nothing in GSM8K (`IRRELEVANT_LESSONS`),
  injected with the gate open (similarity >= -1), per question as many as the most that (b) or
  (c) injected for it (DEFAULT_K when neither runs): what that many lessons cost, relevant or not;
- (e) the templated experiences the demo published before it used learned lessons:
  `gsm8k_insights(40)` (GSM8K train problems 0-39, template style 0), through the default gate.

Held out: the questions are GSM8K's test split (bench/data/gsm8k/test.jsonl, openai/grade-school-math,
MIT, sha256 pinned), which nothing in dso learns from, calibrates on or tunes prompts with (the
gate is calibrated on GSM8K train, `dso learn` runs on train, the demo distils train). They are
taken in a fixed seeded order (`question_order`), so `--questions 40` is a random sample and a
longer run extends it.

Paired: for each condition, the questions it shares with (a) give the accuracy difference, its
percentile bootstrap 95% interval (10,000 resamples of questions, seeded) and McNemar's exact p
(`dso.core.paired`). Next to each lesson set, `dso.core.lessons.lesson_quality`: the share of
lessons copying a number or a name from any GSM8K train question, near-duplicates, generic advice,
mean length.

Cost, measured: the 1.5B model (greedy, 450 tokens at most) takes ~45 s per answer on this 2-core
machine with other work running (issue 10: 12 test questions at ~43 s, ~7 tokens/s). The default
run, 40 questions x conditions a, e, b (b only when `--lessons` is given), is 120 answers, ~90
minutes; without `--lessons`, 80 answers, ~60 minutes. The interval it reaches: the standard error
of a paired difference is sqrt(d - g^2) / sqrt(n) for a share d of discordant questions and a net
gain g; issue 10's measurement had d = 13/40, so at 40 questions a 95% interval is about +-0.18
(+-0.15 if only a fifth of the questions are discordant): the default run resolves only large
effects. `--questions 200` narrows it to about +-0.08, at five times the cost.

Shared prompts: a question for which a condition's gate selects no lesson sends exactly the prompt
of (a) (`build_messages` with no lessons); decoding is greedy and seeded, so its answer is (a)'s,
and it is recorded as (a)'s answer (`same_prompt_as: "a"`, no tokens) instead of being generated
again. With a gate that rarely opens this is most of the run: the cost is (a) plus the questions
that do get lessons.

Parallel: `--part i/n` answers every n-th question from the i-th; n processes given the same
`--state` file share the run (one line per append), and any of them, or a plain rerun, reports
every answer in the file.

Resumable: each answer is appended to a state JSONL (one write of one line, fsynced; a torn last
line is cut off on the next start) under $DSO_HOME/bench/, named by a hash of the settings that
change answers (model, max tokens, seed, prompt, questions file). Rerunning the same command skips
every (question, condition) already answered; answers of a condition whose lessons changed are not
reused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import sys
import tempfile
import time
from contextlib import ExitStack, closing
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dso.core.experience import ExperienceError, validate_confidence, validate_domain, validate_text
from dso.core.lessons import GENERIC_ADVICE, REPORT_GENERIC_COSINE, LessonQuality, lesson_quality, task_vocabulary
from dso.core.paired import BOOTSTRAP_RESAMPLES, compare_paired
from dso.core.verifiers import NumericVerifier
from dso.edges.compile import PROJECT_ROOT
from dso.edges.config import dso_home
from dso.edges.datasets import gsm8k_insights, gsm8k_questions
from dso.edges.embed import Embedder, load_embedder
from dso.edges.llm import DEFAULT_LOCAL_MODEL, ChatModel, LLMSettings, open_chat_model
from dso.errors import DatasetError, InputError
from dso.workflows.agent import DEFAULT_K, SYSTEM_PROMPT, RelevanceGate, add_lessons, ask, select_experiences
from dso.workflows.library import Library

TEST_FILE = PROJECT_ROOT / "bench" / "data" / "gsm8k" / "test.jsonl"
TEST_SHA256 = "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"
EMBEDDER = "minilm-int8"  # the query embedder `dso ask` uses
DEFAULT_QUESTIONS = 40
DEFAULT_CONDITIONS = ("a", "e", "b")
DEFAULT_MAX_TOKENS = 450
DEMO_LESSONS = 40  # dso demo: 32 shared + 4 x 2 niche lessons, GSM8K train problems 0-39
STATE_VERSION = 1
ANSWER_ORDER = ("a", "b", "c", "e", "d")
MATCHED_BY_CONTROL = ("b", "c")  # (d) injects per question as many lessons as the most these injected
CONDITIONS = {
    "a": "(a) no experiences",
    "b": "(b) own lessons",
    "c": "(c) network library",
    "d": "(d) irrelevant lessons, no gate",
    "e": "(e) templated demo experiences",
}
# Lessons in the learned form ("When ..., ...") about things no GSM8K problem asks: the control (d).
IRRELEVANT_LESSONS = (
    "When cooking pasta, salt the water generously before adding the pasta.",
    "When repotting a plant, loosen the roots gently before placing it in fresh soil.",
    "When writing a formal email, state the request in the first paragraph.",
    "When a bicycle chain squeaks, clean it before applying a light lubricant.",
    "When learning a new language, practise speaking aloud every day.",
    "When packing for a hike, put the heaviest items close to your back.",
    "When painting a wall, cut in along the edges before rolling the middle.",
    "When a houseplant's leaves turn yellow, check whether the soil stays too wet.",
    "When preparing for an interview, research the organisation's recent work.",
    "When a laptop runs slowly, close programs that start automatically.",
    "When brewing tea, let green tea steep in water that is below boiling.",
    "When driving in fog, use low beams rather than high beams.",
    "When storing bread, keep it in a paper bag rather than in the refrigerator.",
    "When a cat scratches furniture, give it a scratching post nearby.",
    "When choosing running shoes, try them on late in the day.",
    "When writing a story, show the character's feelings through actions.",
)


@dataclass(frozen=True)
class Question:
    """A held-out question: its line in the test file (0-based), text and reference answer."""

    index: int
    question: str
    answer: str


@dataclass(frozen=True)
class Condition:
    """One way of answering: the lessons in its library (empty: no library) and the gate; or
    skipped, with why."""

    key: str
    source: str
    lessons: tuple[tuple[str, str, float], ...] = ()
    gate: RelevanceGate | None = None
    skipped: str | None = None
    library_file: Path | None = None  # a synced library to search (a copy of it); `lessons` are then its visible entries

    @property
    def digest(self) -> str:
        """Hash of what the condition injects from: a changed lesson file invalidates its answers."""
        gate = asdict(self.gate) if self.gate else None
        control = {"matched_to": list(MATCHED_BY_CONTROL)} if self.key == "d" else {}
        return _sha256_json({"lessons": self.lessons, "gate": gate, "synced": self.library_file is not None, **control})[:16]


# ---------------------------------------------------------------------------------------------- inputs


def test_questions() -> list[Question]:
    """GSM8K test, in file order; DatasetError if the bundled file is missing or altered."""
    try:
        data = TEST_FILE.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{TEST_FILE} cannot be read ({exc.strerror or exc}): it ships with the repository") from exc
    if hashlib.sha256(data).hexdigest() != TEST_SHA256:
        raise DatasetError(f"{TEST_FILE} does not hash to the pinned sha256: restore it with git checkout")
    records = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    return [Question(i, r["question"], r["answer"]) for i, r in enumerate(records)]


def question_order(count: int, seed: int = 0) -> np.ndarray:
    """A seeded permutation of range(count): the benchmark's questions are its first N."""
    return np.random.default_rng(seed).permutation(count)


def read_lessons(path: Path) -> tuple[tuple[str, str, float], ...]:
    """(text, domain, confidence) per line of a lessons JSONL (`dso learn` output: "text", and
    optionally "domain" (default math) and "confidence" (default 0.8); other fields ignored);
    InputError naming the first bad line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} cannot be read as UTF-8 text: {exc}") from exc
    lessons = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "text" not in record:
                raise InputError("each line must be a JSON object with a 'text' field")
            lessons.append((validate_text(record["text"]), validate_domain(record.get("domain", "math")),
                            validate_confidence(record.get("confidence", 0.8))))
        except (ValueError, ExperienceError, InputError) as exc:
            raise InputError(f"{path}:{number}: {exc}") from exc
    if not lessons:
        raise InputError(f"{path} holds no lessons")
    return tuple(lessons)


def library_texts(path: Path) -> tuple[tuple[str, str, float], ...]:
    """The visible entries (text, domain, confidence) of a synced library file, read only;
    InputError if it is not a dso library or holds no visible entry."""
    if not path.is_file():
        raise InputError(f"--network {path}: no such file (a library synced with `dso sync`, or a lessons .jsonl)")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT text, domain, confidence FROM experiences WHERE accepted = 1 ORDER BY rowid").fetchall()
    except sqlite3.DatabaseError as exc:
        raise InputError(f"--network {path} is not a dso library ({exc}); give a synced library or a lessons .jsonl") from exc
    if not rows:
        raise InputError(f"--network {path} holds no visible entry: run `dso sync` first")
    return tuple((str(t), str(d), float(c)) for t, d, c in rows)


def build_conditions(keys: Sequence[str], lessons: Path | None, network: Path | None) -> list[Condition]:
    """The conditions asked for, in the order given; (b) and (c) are skipped when their file is not given."""
    unknown = [k for k in keys if k not in CONDITIONS]
    if unknown or not keys or len(set(keys)) != len(keys):
        raise InputError(f"conditions must be distinct letters among {', '.join(CONDITIONS)}; got {','.join(keys)!r}")
    gated = RelevanceGate()
    built = []
    for key in keys:
        if key == "a":
            built.append(Condition("a", "none"))
        elif key in ("b", "c"):
            path = lessons if key == "b" else network
            option = "--lessons" if key == "b" else "--network"
            if path is None:
                built.append(Condition(key, "not given", skipped=f"no {option} file given"))
            elif key == "c" and Path(path).suffix != ".jsonl":
                built.append(Condition("c", f"synced library {Path(path).name}", library_texts(Path(path)), gated, library_file=Path(path)))
            else:
                built.append(Condition(key, f"{Path(path).name} (sha256 {_file_sha256(path)[:12]})", read_lessons(path), gated))
        elif key == "d":
            built.append(Condition("d", "dso.bench.agent.IRRELEVANT_LESSONS (hand-written)", tuple((t, "misc", 0.8) for t in IRRELEVANT_LESSONS),
                                   RelevanceGate(min_similarity=-1.0, min_confidence=0.0, min_support=0, k=DEFAULT_K)))
        else:
            insights = gsm8k_insights(DEMO_LESSONS)
            built.append(Condition("e", f"gsm8k_insights({DEMO_LESSONS}): GSM8K train problems 0-{DEMO_LESSONS - 1}, template style 0",
                                   tuple((i.text, i.domain, i.confidence) for i in insights), gated))
    if "a" not in keys:
        raise InputError("condition a (no experiences) is the baseline of every comparison: include it")
    return built


# ---------------------------------------------------------------------------------------------- state


def settings_digest(settings: dict[str, Any]) -> str:
    """What names a state file: the settings that change an answer."""
    return _sha256_json(settings)[:12]


def load_state(path: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The answers recorded in `path` (none if it does not exist). A torn last line (a kill in
    mid-write) is cut off so the next append starts on a line of its own; a header with other
    settings is refused."""
    if not path.exists():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with path.open("r+b") as handle:
            handle.truncate(keep)
        data = data[:keep]
    lines = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    if not lines:  # killed before its header was whole: a fresh run
        return []
    if lines[0].get("version") != STATE_VERSION or lines[0].get("settings") != settings:
        raise InputError(f"{path} belongs to another benchmark run (other settings or version): give another --state, or delete it")
    return lines[1:]


def append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single write, then fsync: a kill leaves whole lines and at most
    one torn last line, which `load_state` cuts off."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------- the run


def run(questions: int = DEFAULT_QUESTIONS, conditions: Sequence[str] = DEFAULT_CONDITIONS, lessons: Path | None = None,
        network: Path | None = None, model: str | None = None, threads: int = 1, base_url: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS, seed: int = 0, state: Path | None = None, chat: ChatModel | None = None,
        log: Callable[[str], None] | None = None, part: tuple[int, int] | None = None) -> dict[str, Any]:
    """Answer the first `questions` held-out questions under each condition (question by question,
    so a run stopped early still has paired answers), then compare. `chat` is an already opened
    model (else one is opened from `model`, `threads`, `base_url`); `state` the state JSONL; `part`
    (i, n): answer only every n-th question starting at the i-th, so n processes sharing one state
    file answer the run in parallel (the summary reads every part's answers from the file)."""
    if part is not None and (len(part) != 2 or not 1 <= part[0] <= part[1]):
        raise InputError(f"--part must be i/n with 1 <= i <= n; got {part!r}")
    say = log or (lambda text: print(text, file=sys.stderr, flush=True))
    if isinstance(questions, bool) or not isinstance(questions, int) or not 1 <= questions:
        raise InputError(f"--questions must be a whole number of at least 1; got {questions!r}")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InputError(f"--max-tokens must be a whole number of at least 1; got {max_tokens!r}")
    pool = test_questions()
    if questions > len(pool):
        raise InputError(f"--questions {questions}: the GSM8K test split has {len(pool)}")
    chosen = [pool[i] for i in question_order(len(pool), seed)[:questions]]
    built = build_conditions(list(conditions), lessons, network)
    active = [c for c in built if c.skipped is None]
    embedder = load_embedder(EMBEDDER)
    quality = quality_reports(built, embedder)
    for condition in built:
        if condition.skipped:
            say(f"{CONDITIONS[condition.key]}: skipped ({condition.skipped})")
        elif condition.key in quality:
            q = quality[condition.key]
            say(f"{CONDITIONS[condition.key]}: {q.lessons} lessons from {condition.source}; {q.copies_task:.0%} copy a number or name from a "
                f"GSM8K train question, {q.near_duplicate:.0%} near-duplicates, {q.generic:.0%} generic advice, {q.mean_words:.1f} words on average")
    with ExitStack() as stack:
        if chat is None:
            chat = open_chat_model(LLMSettings.resolve(base_url, model or (None if base_url else DEFAULT_LOCAL_MODEL), threads))
            stack.callback(chat.close)
        settings = {"model": chat.name, "max_tokens": max_tokens, "temperature": 0.0, "seed": seed, "embedder": EMBEDDER,
                    "system_prompt_sha256": hashlib.sha256(SYSTEM_PROMPT.encode()).hexdigest()[:16], "questions_sha256": TEST_SHA256[:16]}
        path = state or dso_home() / "bench" / f"agent-{settings_digest(settings)}.jsonl"
        records = load_state(path, settings)
        if not path.exists() or not path.stat().st_size:
            append_line(path, {"version": STATE_VERSION, "settings": settings})
        digests = {c.key: c.digest for c in active}
        matched = [c.key for c in active if c.key in MATCHED_BY_CONTROL]
        done = {(r["question"], r["condition"]): r for r in records if digests.get(r["condition"]) == r["digest"]}
        libraries = {c.key: _library(stack, c, embedder) for c in active}
        verifier = NumericVerifier()
        started, load_start = time.monotonic(), os.getloadavg()
        order = sorted(active, key=lambda c: ANSWER_ORDER.index(c.key))  # (a) first: the others may share its prompt; (d) last: it matches them
        mine = chosen if part is None else [q for n, q in enumerate(chosen) if n % part[1] == part[0] - 1]
        total = len(mine) * len(active)
        answered = sum((q.index, c.key) in done for q in mine for c in active)
        say(f"{answered} of {total} answers already in {path}")
        for question in mine:
            for condition in order:
                if (question.index, condition.key) in done:
                    continue
                gate = condition.gate
                if condition.key == "d" and matched:
                    injected = [len(done[(question.index, key)]["lessons"]) for key in matched if (question.index, key) in done]
                    if len(injected) < len(matched):
                        continue  # answered after (b)/(c) in the part that answers them
                    gate = replace(gate, k=max(injected)) if max(injected) else None
                selection = select_experiences(libraries[condition.key], question.question, gate) if gate else None
                if (selection is None or not selection.used) and condition.key != "a" and (question.index, "a") in done:
                    baseline = done[(question.index, "a")]  # the very prompt (a) sent: greedy decoding gives (a)'s answer
                    record = {"question": question.index, "condition": condition.key, "digest": condition.digest, "correct": baseline["correct"],
                              "predicted": baseline["predicted"], "expected": baseline["expected"], "lessons": [], "same_prompt_as": "a",
                              "prompt_tokens": 0, "completion_tokens": 0, "seconds": 0.0, "finish_reason": baseline["finish_reason"],
                              "load1": round(os.getloadavg()[0], 2)}
                else:
                    reply = ask(question.question, chat, libraries[condition.key] if gate else None, gate, max_tokens=max_tokens, temperature=0.0,
                                seed=seed)
                    verdict = verifier.verify(reply.text, question.answer)
                    completion = reply.completion
                    record = {"question": question.index, "condition": condition.key, "digest": condition.digest, "correct": verdict.reward >= 1.0,
                              "predicted": verdict.predicted, "expected": verdict.expected, "lessons": [h.experience.text for h in reply.selection.used],
                              "prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
                              "seconds": round(completion.seconds, 3), "finish_reason": completion.finish_reason, "load1": round(os.getloadavg()[0], 2)}
                append_line(path, record)
                done[(question.index, condition.key)] = record
                answered += 1
                say(f"[{answered}/{total}] q{question.index} {condition.key}: {'right' if record['correct'] else 'wrong'} "
                    f"({record['predicted']} vs {record['expected']}), {len(record['lessons'])} lessons, "
                    + ("same prompt as (a)" if record.get("same_prompt_as") else f"{record['completion_tokens']} tokens in {record['seconds']:.1f} s"))
        if part is not None:  # the other parts' answers, appended to the same state file meanwhile
            done = {(r["question"], r["condition"]): r for r in load_state(path, settings) if digests.get(r["condition"]) == r["digest"]}
        wall = time.monotonic() - started
        load_end = os.getloadavg()
    return summarise(chosen, built, done, quality, settings, threads=getattr(chat, "threads", None), base_url=base_url, wall=wall,
                     load=(load_start, load_end), state=path)


def _library(stack: ExitStack, condition: Condition, embedder: Embedder) -> Library | None:
    """A throwaway library holding the condition's lessons as local entries, or a copy of its
    synced library (SQLite's backup API: consistent even with a WAL; the copy's search index is
    rebuilt on first search). None: no lessons."""
    if not condition.lessons:
        return None
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"dso-bench-agent-{condition.key}-")))
    if condition.library_file is not None:
        with closing(sqlite3.connect(f"file:{condition.library_file}?mode=ro", uri=True)) as source, \
                closing(sqlite3.connect(folder / "library.sqlite")) as copy:
            source.backup(copy)
        return stack.enter_context(Library(folder / "library.sqlite", embedder))
    library = stack.enter_context(Library(folder / "library.sqlite", embedder))
    add_lessons(library, embedder, condition.lessons, created_at=1_763_000_000)
    return library


def quality_reports(conditions: Sequence[Condition], embedder: Embedder) -> dict[str, LessonQuality]:
    """`lesson_quality` of each condition's lesson set, against every GSM8K train question."""
    with_lessons = [c for c in conditions if c.lessons]
    if not with_lessons:
        return {}
    vocabulary = task_vocabulary(gsm8k_questions())
    generic = _unit(embedder.embed(list(GENERIC_ADVICE)))
    return {c.key: lesson_quality([t for t, _, _ in c.lessons], _unit(embedder.embed([t for t, _, _ in c.lessons])), generic, vocabulary)
            for c in with_lessons}


def summarise(chosen: Sequence[Question], built: Sequence[Condition], done: dict[tuple[int, str], dict[str, Any]],
              quality: dict[str, LessonQuality], settings: dict[str, Any], *, threads: int | None, base_url: str | None, wall: float,
              load: tuple[Sequence[float], Sequence[float]], state: Path) -> dict[str, Any]:
    """The results document: per condition its answers and costs, and each one paired with (a)."""
    report: dict[str, Any] = {}
    for condition in built:
        entry: dict[str, Any] = {"label": CONDITIONS[condition.key], "source": condition.source}
        if condition.skipped:
            report[condition.key] = entry | {"status": "skipped", "reason": condition.skipped}
            continue
        rows = [done[(q.index, condition.key)] for q in chosen if (q.index, condition.key) in done]
        tokens = sum(r["completion_tokens"] for r in rows)
        seconds = sum(r["seconds"] for r in rows)
        entry |= {"status": "done" if len(rows) == len(chosen) else "partial", "answered": len(rows), "correct": sum(r["correct"] for r in rows),
                  "accuracy": round(sum(r["correct"] for r in rows) / len(rows), 4) if rows else None,
                  "library_lessons": len(condition.lessons), "questions_with_lessons": sum(bool(r["lessons"]) for r in rows),
                  "mean_lessons_injected": round(float(np.mean([len(r["lessons"]) for r in rows])), 3) if rows else None,
                  "prompt_tokens": sum(r["prompt_tokens"] for r in rows), "completion_tokens": tokens, "llm_seconds": round(seconds, 1),
                  "tokens_per_second": round(tokens / seconds, 2) if seconds else None,
                  "stopped_at_max_tokens": sum(r["finish_reason"] == "length" for r in rows),
                  "same_prompt_as_a": sum(bool(r.get("same_prompt_as")) for r in rows),
                  "mean_load1": round(float(np.mean([r["load1"] for r in rows])), 2) if rows else None}
        if condition.key in quality:
            entry["quality"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(quality[condition.key]).items()}
        report[condition.key] = entry
    paired: dict[str, Any] = {}
    for condition in built:
        if condition.key == "a" or condition.skipped:
            continue
        shared = [q.index for q in chosen if (q.index, "a") in done and (q.index, condition.key) in done]
        if not shared:
            continue
        comparison = compare_paired([done[(i, "a")]["correct"] for i in shared], [done[(i, condition.key)]["correct"] for i in shared],
                                    seed=settings["seed"])
        paired[condition.key] = {"vs": "a", "questions": comparison.n, "difference": round(comparison.difference, 4),
                                 "ci95": [round(comparison.interval[0], 4), round(comparison.interval[1], 4)], "gained": comparison.gained,
                                 "lost": comparison.lost, "mcnemar_p": round(comparison.p_value, 4)}
    return {
        "model": settings["model"], "backend": "OpenAI-compatible endpoint" if base_url else "in-process xllamacpp", "threads": threads,
        "max_tokens": settings["max_tokens"], "temperature": 0.0, "seed": settings["seed"], "embedder": EMBEDDER,
        "questions": {"count": len(chosen), "source": f"GSM8K test split ({TEST_FILE.relative_to(PROJECT_ROOT)}, sha256 {TEST_SHA256[:16]}...), "
                      f"seeded order (seed {settings['seed']}), first {len(chosen)}", "indices": [q.index for q in chosen]},
        "gate": asdict(RelevanceGate()), "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "seed": settings["seed"], "level": 0.95},
        "generic_cosine": REPORT_GENERIC_COSINE,
        "conditions": report, "paired": paired,
        "wall_seconds_this_invocation": round(wall, 1),
        "load_average": {"start": [round(v, 2) for v in load[0]], "end": [round(v, 2) for v in load[1]]},
        "state": str(state),
    }


# ---------------------------------------------------------------------------------------------- output


def markdown_table(results: dict[str, Any]) -> str:
    """The README table: per condition its accuracy and the paired comparison with (a), then the
    quality of each lesson set."""
    rows = ["| condition | correct | accuracy | vs (a): difference [95% CI] | gained / lost | McNemar p | questions with lessons |",
            "|---|---|---|---|---|---|---|"]
    for key, entry in results["conditions"].items():
        if entry["status"] == "skipped":
            rows.append(f"| {entry['label']} | skipped: {entry['reason']} | | | | | |")
            continue
        pair = results["paired"].get(key)
        versus = f"{pair['difference']:+.3f} [{pair['ci95'][0]:+.3f}, {pair['ci95'][1]:+.3f}]" if pair else "baseline"
        discordant = f"{pair['gained']} / {pair['lost']}" if pair else ""
        p_value = f"{pair['mcnemar_p']:.3f}" if pair else ""
        accuracy = f"{entry['accuracy']:.3f}" if entry["accuracy"] is not None else "n/a"
        rows.append(f"| {entry['label']} | {entry['correct']} / {entry['answered']} | {accuracy} | {versus} | {discordant} | {p_value} | "
                    f"{entry['questions_with_lessons']} / {entry['answered']} |")
    quality = [(entry["label"], entry["quality"]) for entry in results["conditions"].values() if entry.get("quality")]
    if quality:
        rows += ["", "| lesson set | lessons | copy a number or name | near-duplicates | generic advice | mean words |", "|---|---|---|---|---|---|"]
        for label, q in quality:
            rows.append(f"| {label} | {q['lessons']} | {q['copies_task']:.0%} | {q['near_duplicate']:.0%} | {q['generic']:.0%} | {q['mean_words']:.1f} |")
    return "\n".join(rows)


def options(argv: Sequence[str]) -> dict[str, Any]:
    """run()'s keyword arguments from `scripts/bench.py agent` options."""
    parser = argparse.ArgumentParser(prog="scripts/bench.py agent", description="Agent accuracy with and without experiences (dso.bench.agent).")
    parser.add_argument("--questions", type=int, default=DEFAULT_QUESTIONS, help="held-out GSM8K test questions (default 40: ~90 min with a,e,b)")
    parser.add_argument("--conditions", default=",".join(DEFAULT_CONDITIONS), help="letters among a,b,c,d,e (a is required)")
    parser.add_argument("--lessons", type=Path, default=None, help="(b) the agent's own lessons: a `dso learn` output JSONL")
    parser.add_argument("--network", type=Path, default=None,
                        help="(c) other nodes' lessons: a synced library file (e.g. ~/.dso/library.sqlite) or a JSONL of text/domain/confidence")
    parser.add_argument("--model", default=None, help=f"bundled model or the endpoint's model name (default {DEFAULT_LOCAL_MODEL})")
    parser.add_argument("--threads", type=int, default=1, help="threads of the in-process model (default 1)")
    parser.add_argument("--base-url", default=None, help="an OpenAI-compatible endpoint instead of the in-process model")
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS)
    parser.add_argument("--seed", type=int, default=0, help="question order, bootstrap and sampling seed")
    parser.add_argument("--state", type=Path, default=None, help="state JSONL (default: $DSO_HOME/bench/agent-<settings hash>.jsonl)")
    parser.add_argument("--part", default=None, help="i/n: answer every n-th question from the i-th (n processes in parallel, one state file)")
    args = parser.parse_args(list(argv))
    part = None
    if args.part is not None:
        try:
            first, count = (int(x) for x in args.part.split("/"))
        except ValueError:
            raise InputError(f"--part must be i/n, e.g. 1/2; got {args.part!r}") from None
        part = (first, count)
    return {"questions": args.questions, "conditions": [c.strip() for c in args.conditions.split(",") if c.strip()], "lessons": args.lessons,
            "network": args.network, "model": args.model, "threads": args.threads, "base_url": args.base_url, "max_tokens": args.max_tokens,
            "seed": args.seed, "state": args.state, "part": part}


def _unit(vectors: Any) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float64)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def _sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise InputError(f"{path} cannot be read: {exc.strerror or exc}") from exc
