"""`dso learn`: Training-Free GRPO on a local (or endpoint) LLM, lessons out, model frozen.

The method is Training-Free GRPO (Cai et al., arXiv 2510.08191; youtu-agent `utu/practice`); the
prompts and text rules are in `dso.core.practice`, the guard rails and group statistics in
`dso.core.lessons`, the rewards in `dso.core.verifiers`. Per batch of tasks:

1. per task, G rollouts at temperature > 0 with the current lesson pool injected (the pool's k
   lessons most similar to the question, above the agent's similarity threshold: the pool is the
   run's own, so the gate's confidence and support rules do not apply);
2. rewards from the verifier; a group enters only if its mean reward is strictly between 0 and 1
   (all right or all wrong: nothing to contrast, skipped and counted);
3. for each entering group: summarise every rollout, extract the group's semantic advantage
   (lessons), turn them into operations on the pool (ADD / UPDATE / DELETE);
4. reconcile the batch's operations (an LLM step when several groups proposed changes, else the
   mechanical `merge_operations`; also the fallback when the LLM's JSON cannot be read), then
   apply them; every ADD/UPDATE passes the guard rails first (one sentence, nothing copied from
   the batch's tasks, no near-duplicate of a kept lesson, no copy of the prompt's lesson form, no
   generic advice).

The lessons are written after every batch to a JSONL that `dso submit` reads as it is
(text, domain, confidence, metadata), and at the end of the run stored in the local library as
the agent's own entries (not during the run: a later batch may still UPDATE or DELETE a lesson).

Measured (2 GSM8K train tasks, lines 301-302; G = 4, 350 tokens per rollout, 200 per learning step,
Qwen2.5-Coder-1.5B, 1 thread, load average ~2 from other work): 8 rollouts with rewards [0,0,0,0]
and [1,1,0,1], so one group entered; about 790 s of LLM time, 4.0 generated tokens/s overall (5.5
during the rollouts). The same rollouts came back on a rerun (seeded). With the first advantage
prompt its 2 lessons were generic ("When a problem is solved correctly, it follows a clear and
logical sequence of steps.", now refused as generic advice); with the current one both copied the
task's numbers and were refused. What this loop learns at scale is not measured yet.

Publishing as it learns (`PublishPolicy`, `lesson_publisher`): after each batch, the lessons new or
changed since the last publication are published from a node wallet when enough of them have
accumulated or when the pool has drifted far enough from what was last published (the seeds'
semantic-event rule, `dso.core.lessons.publication_due`); what was published is kept in the state.

Resumable: the run's state (`state.json` in the state directory: the next batch, the rollouts
of the current batch, the pool, counters) is rewritten atomically (temp file + os.replace) after
every task's rollouts and after every batch. A crash loses at most the LLM calls of one task's
rollouts or one batch's learning steps; rerunning the same command continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from dso.core.experience import ExperienceError, Insight, validate_confidence, validate_domain, validate_text
from dso.core.lessons import GENERIC_ADVICE, check_lesson, group_confidence, group_enters, pool_state, publication_due, semantic_drift
from dso.core.practice import (
    LESSON_FORM,
    Operation,
    advantage_messages,
    merge_operations,
    operation_messages,
    parse_lessons,
    parse_operations,
    reconcile_messages,
    summary_messages,
)
from dso.core.verifiers import Verifier, get_verifier, reference_number
from dso.edges.embed import Embedder
from dso.edges.files import atomic_write_text
from dso.edges.llm import ChatModel, Completion
from dso.errors import DsoError, InputError, QueuedInOutbox
from dso.workflows.agent import DEFAULT_MIN_SIMILARITY, add_lessons, build_messages
from dso.workflows.library import Library
from dso.workflows.publish import publish

STATE_VERSION = 1
TASK_FIELDS = frozenset({"question", "answer", "id"})


@dataclass(frozen=True)
class Task:
    """One training task: a question and its reference answer (GSM8K form: "... #### 72")."""

    index: int
    question: str
    answer: str
    task_id: str


@dataclass(frozen=True)
class LearnSettings:
    """How a run learns. Stored in the state: resuming with other settings is refused.

    group_size: rollouts per task (G); temperature: of the rollouts (> 0, or the group has no
    variance); max_tokens: per rollout; learn_max_tokens: per learning step; lessons_per_group:
    at most this many lessons extracted per group; k and min_similarity: the gate that picks
    the pool's lessons injected in a rollout; domain: of the lessons written."""

    group_size: int = 4
    batch_size: int = 4
    temperature: float = 0.7
    max_tokens: int = 450
    learn_max_tokens: int = 300
    lessons_per_group: int = 2
    k: int = 3
    min_similarity: float = DEFAULT_MIN_SIMILARITY
    domain: str = "math"
    verifier: str = "numeric"
    seed: int = 0

    def __post_init__(self) -> None:
        for name, least in (("group_size", 2), ("batch_size", 1), ("max_tokens", 1), ("learn_max_tokens", 16), ("lessons_per_group", 1),
                            ("k", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InputError(f"{name} must be a whole number of at least {least}; got {value!r}")
        if not isinstance(self.temperature, (int, float)) or not 0.0 < self.temperature <= 2.0:
            raise InputError(f"temperature must be in (0, 2]: rollouts at temperature 0 are identical, so no group has variance; got {self.temperature!r}")
        try:
            validate_domain(self.domain)
        except ExperienceError as exc:
            raise InputError(f"domain: {exc}") from exc
        get_verifier(self.verifier)


@dataclass(frozen=True)
class PublishPolicy:
    """When the learning loop publishes its new lessons itself (the seeds' semantic event): after a
    batch, once `every` lessons are new or changed since the last publication, or once the pool's
    semantic drift from what it last published reaches `drift` (`dso.core.lessons.publication_due`),
    whichever comes first. Not part of the stored settings: it may change between invocations."""

    every: int | None = None
    drift: float | None = None

    def __post_init__(self) -> None:
        if self.every is None and self.drift is None:
            raise InputError("a publishing policy needs --publish-every N, --publish-drift X or both")
        if self.every is not None and (isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1):
            raise InputError(f"--publish-every must be a whole number of at least 1; got {self.every!r}")
        if self.drift is not None and (not isinstance(self.drift, (int, float)) or not 0.0 < self.drift <= 2.0):
            raise InputError(f"--publish-drift is a cosine distance in (0, 2]; got {self.drift!r}")


# What the loop calls to publish: (text, domain, confidence) lessons -> a one-line account (batch roots).
# It raises QueuedInOutbox when the lessons are safe in the outbox but not committed yet (they count as
# published: the outbox commits them later), any other DsoError when nothing was queued (retried after
# the next batch).
Publisher = Callable[[Sequence[tuple[str, str, float]]], str]


@dataclass(frozen=True)
class LearnProgress:
    """Where a run is (sent to the progress callback after every LLM call)."""

    stage: str
    tasks_done: int
    tasks_total: int
    lessons: int
    completion_tokens: int
    llm_seconds: float

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of LLM time, over the whole run so far."""
        return self.completion_tokens / self.llm_seconds if self.llm_seconds > 0 else 0.0


@dataclass(frozen=True)
class LearnReport:
    """What a run did: counts, the final lessons (id, text, confidence), and where they went."""

    tasks: int
    groups_used: int
    groups_skipped: int
    rollouts: int
    mean_reward: float
    lessons: tuple[tuple[str, str, float], ...]
    refused: dict[str, int]
    unreadable: int
    prompt_tokens: int
    completion_tokens: int
    llm_seconds: float
    output: Path
    stored: int = 0
    log: tuple[dict[str, Any], ...] = field(default=(), repr=False)
    publications: tuple[dict[str, Any], ...] = ()  # each publication attempt: batch, lessons, drift, reason, outcome

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of LLM time."""
        return self.completion_tokens / self.llm_seconds if self.llm_seconds > 0 else 0.0


def read_tasks(path: Path) -> tuple[list[Task], str]:
    """The tasks of a JSONL file ({"question", "answer", "id"?} per line, GSM8K's own form) and the
    file's sha256; InputError naming the first bad line. Each answer must hold a checkable number."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text: {exc}") from exc
    tasks = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{path}:{number}: not valid JSON ({exc})") from exc
        if not isinstance(record, dict) or not {"question", "answer"} <= set(record) or set(record) - TASK_FIELDS:
            raise InputError(f"{path}:{number}: each line must be an object with 'question' and 'answer' (and optionally 'id')")
        question, answer = record["question"], record["answer"]
        if not isinstance(question, str) or not question.strip() or not isinstance(answer, (str, int, float)) or isinstance(answer, bool):
            raise InputError(f"{path}:{number}: 'question' must be non-empty text and 'answer' text or a number")
        try:
            reference_number(str(answer))
        except InputError as exc:
            raise InputError(f"{path}:{number}: {exc}") from exc
        tasks.append(Task(len(tasks), question.strip(), str(answer), str(record.get("id", f"line-{number}"))))
    if not tasks:
        raise InputError(f"{path} holds no tasks")
    return tasks, hashlib.sha256(data).hexdigest()


class Learner:
    """One resumable learning run over `tasks`, its state in `state_dir`."""

    def __init__(self, model: ChatModel, embedder: Embedder, tasks: Sequence[Task], tasks_sha256: str, state_dir: Path,
                 settings: LearnSettings = LearnSettings(), verifier: Verifier | None = None, output: Path | None = None,
                 progress: Callable[[LearnProgress], None] | None = None, publisher: Publisher | None = None,
                 policy: PublishPolicy | None = None) -> None:
        if (publisher is None) != (policy is None):
            raise InputError("publishing needs both a publisher (a node wallet) and a policy")
        self.model = model
        self.publisher = publisher
        self.policy = policy
        self.embedder = embedder
        self.tasks = list(tasks)
        self.settings = settings
        self.verifier = verifier or get_verifier(settings.verifier)
        self.state_path = Path(state_dir) / "state.json"
        self.output = output or Path(state_dir) / "lessons.jsonl"
        self.progress = progress
        self.state = self._load(tasks_sha256)
        self._vectors: dict[str, np.ndarray] = {}
        self._generic = self._embed(GENERIC_ADVICE)
        self._embed_pool()

    # ------------------------------------------------------------------ state

    def _load(self, tasks_sha256: str) -> dict[str, Any]:
        fresh = {"version": STATE_VERSION, "tasks_sha256": tasks_sha256, "tasks": len(self.tasks), "model": self.model.name,
                 "settings": asdict(self.settings), "next_batch": 0, "pending": {}, "lessons": {}, "next_id": 1, "log": [],
                 "stats": {"groups_used": 0, "groups_skipped": 0, "rollouts": 0, "reward_sum": 0.0, "refused": {}, "unreadable": 0,
                           "prompt_tokens": 0, "completion_tokens": 0, "llm_seconds": 0.0}}
        if not self.state_path.exists():
            return fresh
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.state_path} is not a readable learning state ({exc}): move it aside to start over") from exc
        for key, what in (("version", "state version"), ("tasks_sha256", "tasks file"), ("model", "model"), ("settings", "settings")):
            if state.get(key) != fresh[key]:
                raise InputError(f"{self.state_path} belongs to a run with another {what} ({state.get(key)!r}, now {fresh[key]!r}): "
                                 "rerun with the same tasks, model and settings, or give another --state directory")
        return state

    def _save(self) -> None:
        atomic_write_text(self.state_path, json.dumps(self.state, indent=1, sort_keys=True) + "\n")

    def _embed_pool(self) -> None:
        lessons = self.state["lessons"]
        if lessons:
            vectors = self._embed([entry["text"] for entry in lessons.values()])
            self._vectors = dict(zip(lessons, vectors))

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.asarray(self.embedder.embed(list(texts)), dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    # ------------------------------------------------------------------ the run

    def run(self, limit: int | None = None) -> LearnReport:
        """Learn from the tasks not done yet (at most `limit` more batches' worth of tasks, rounded
        up to whole batches), write the lessons JSONL after each batch, and report."""
        size = self.settings.batch_size
        batches = [self.tasks[i : i + size] for i in range(0, len(self.tasks), size)]
        stop = len(batches) if limit is None else min(len(batches), self.state["next_batch"] + max(1, -(-limit // size)))
        for number in range(self.state["next_batch"], stop):
            self._learn_batch(number, batches[number])
        self._write_output()
        return self.report()

    def _learn_batch(self, number: int, batch: Sequence[Task]) -> None:
        for task in batch:
            if str(task.index) not in self.state["pending"]:
                self.state["pending"][str(task.index)] = self._rollouts(task)
                self._save()
        proposed: list[Operation] = []
        contributing = 0
        for task in batch:
            rollouts = self.state["pending"][str(task.index)]
            rewards = [r["reward"] for r in rollouts]
            if not group_enters(rewards):
                self.state["stats"]["groups_skipped"] += 1
                continue
            self.state["stats"]["groups_used"] += 1
            operations = self._group_operations(task, rollouts, group_confidence(rewards))
            contributing += bool(operations)
            proposed.extend(operations)
        final = self._reconcile(proposed) if contributing > 1 else merge_operations(proposed)
        applied = self._apply(final, "\n".join(task.question for task in batch))
        self.state["log"].append({"batch": number, "tasks": [t.task_id for t in batch], "proposed": len(proposed), **applied})
        self.state["next_batch"] = number + 1
        self.state["pending"] = {}
        self._save()
        self._write_output()
        self._maybe_publish(number)

    def _maybe_publish(self, batch: int) -> None:
        """Publish the lessons new or changed since the last publication when the policy says the
        pool has changed enough. The state records what was published (texts and pool state) right
        after the publisher returns; a crash in between republishes those lessons on resume, as a
        second batch of the same node, which aggregation counts as one voice (one per node)."""
        if self.publisher is None or self.policy is None:
            return
        published = self.state.setdefault("published", {"texts": {}, "state": None, "events": []})
        fresh = [(key, entry) for key, entry in self.state["lessons"].items() if published["texts"].get(key) != entry["text"]]
        if not fresh:
            return
        current = pool_state(np.stack([self._vectors[key] for key in self.state["lessons"]]))
        drift = semantic_drift(None if published["state"] is None else np.asarray(published["state"]), current)
        reason = publication_due(len(fresh), drift, self.policy.every, self.policy.drift)
        if reason is None:
            return
        lessons = [(entry["text"], self.settings.domain, validate_confidence(round(float(entry["confidence"]), 6))) for _, entry in fresh]
        event = {"batch": batch, "lessons": len(lessons), "drift": round(drift, 6), "reason": reason}
        try:
            event["outcome"] = self.publisher(lessons)
        except QueuedInOutbox as exc:
            event["outcome"] = f"queued: {exc}"
        except DsoError as exc:
            published["events"].append(event | {"outcome": f"not published, retried after the next batch: {exc}"})
            self._save()
            return
        published["texts"].update({key: entry["text"] for key, entry in fresh})
        published["state"] = [float(x) for x in current]
        published["events"].append(event)
        self._save()

    def _rollouts(self, task: Task) -> list[dict[str, Any]]:
        """G answers to the task with the pool's relevant lessons injected, each with its reward."""
        lessons = self._lessons_for(task.question)
        messages = build_messages(task.question, lessons)
        results = []
        for attempt in range(self.settings.group_size):
            seed = self.settings.seed * 1_000_003 + task.index * 101 + attempt
            reply = self._call(messages, self.settings.max_tokens, self.settings.temperature, seed, "rollout", task)
            verdict = self.verifier.verify(reply.text, task.answer)
            results.append({"reply": reply.text, "reward": verdict.reward, "predicted": verdict.predicted, "expected": verdict.expected})
            self.state["stats"]["rollouts"] += 1
            self.state["stats"]["reward_sum"] += verdict.reward
        return results

    def _lessons_for(self, question: str) -> list[str]:
        if not self._vectors:
            return []
        ids = list(self._vectors)
        scores = np.stack([self._vectors[i] for i in ids]) @ self._embed([question])[0]
        ranked = [ids[i] for i in np.argsort(-scores) if scores[i] >= self.settings.min_similarity]
        return [self.state["lessons"][i]["text"] for i in ranked[: self.settings.k]]

    def _group_operations(self, task: Task, rollouts: Sequence[dict[str, Any]], confidence: float) -> list[Operation]:
        """Steps 1-3 for one entering group: summaries, semantic advantage, operations."""
        expected = rollouts[0]["expected"]
        summaries = []
        for rollout in rollouts:
            correct = rollout["reward"] >= 0.5
            reply = self._call(summary_messages(task.question, expected, rollout["reply"], correct), self.settings.learn_max_tokens, 0.0, None,
                               "summary", task)
            summaries.append((reply.text, correct))
        advantage = self._call(advantage_messages(task.question, summaries, self.settings.lessons_per_group), self.settings.learn_max_tokens,
                               0.0, None, "advantage", task)
        lessons = parse_lessons(advantage.text, self.settings.lessons_per_group)
        if not lessons:
            self.state["stats"]["unreadable"] += 1
            return []
        pool = {key: entry["text"] for key, entry in self.state["lessons"].items()}
        reply = self._call(operation_messages(pool, lessons), self.settings.learn_max_tokens, 0.0, None, "operations", task)
        operations = parse_operations(reply.text, list(pool), confidence)
        if operations is None:  # no JSON array: every extracted lesson is proposed as an ADD (the guard rails still apply)
            self.state["stats"]["unreadable"] += 1
            operations = [Operation("ADD", lesson, None, confidence) for lesson in lessons]
        return operations

    def _reconcile(self, proposed: Sequence[Operation]) -> list[Operation]:
        """Step 4 across the batch; each reconciled ADD/UPDATE takes the confidence of the proposal
        it is closest to (by embedding), since the LLM's reply carries none."""
        pool = {key: entry["text"] for key, entry in self.state["lessons"].items()}
        reply = self._call(reconcile_messages(pool, proposed), self.settings.learn_max_tokens, 0.0, None, "reconcile", None)
        reconciled = parse_operations(reply.text, list(pool))
        if reconciled is None:
            self.state["stats"]["unreadable"] += 1
            return merge_operations(proposed)
        sources = [op for op in proposed if op.content]
        if not sources:
            return merge_operations(reconciled)
        source_vectors = self._embed([op.content for op in sources])
        with_confidence = []
        for op in reconciled:
            if op.kind == "DELETE":
                with_confidence.append(op)
                continue
            nearest = int(np.argmax(source_vectors @ self._embed([op.content])[0]))
            with_confidence.append(Operation(op.kind, op.content, op.target, sources[nearest].confidence))
        return merge_operations(with_confidence)

    def _apply(self, operations: Sequence[Operation], batch_text: str) -> dict[str, Any]:
        """Apply the batch's operations to the pool, each ADD/UPDATE through the guard rails."""
        lessons, stats = self.state["lessons"], self.state["stats"]
        done: dict[str, list[Any]] = {"added": [], "updated": [], "deleted": [], "refused": []}
        for op in operations:
            if op.kind == "DELETE":
                if op.target in lessons:
                    del lessons[op.target]
                    self._vectors.pop(op.target, None)
                    done["deleted"].append(op.target)
                continue
            try:
                text = validate_text(op.content)
            except ExperienceError as exc:
                done["refused"].append({"text": op.content[:200], "reasons": [str(exc)]})
                stats["refused"]["invalid text"] = stats["refused"].get("invalid text", 0) + 1
                continue
            vector = self._embed([text])[0]
            others = [v for key, v in self._vectors.items() if key != op.target]
            check = check_lesson(text, batch_text, vector, np.stack(others) if others else None, prompt_examples=[LESSON_FORM],
                                 generic_vectors=self._generic)
            if not check.ok:
                done["refused"].append({"text": text, "reasons": list(check.reasons)})
                for reason in check.reasons:
                    key = reason.split(":")[0].split(" (")[0]
                    stats["refused"][key] = stats["refused"].get(key, 0) + 1
                continue
            if op.kind == "UPDATE" and op.target in lessons:
                entry = lessons[op.target]
                lessons[op.target] = {"text": text, "confidence": max(entry["confidence"], op.confidence)}
                self._vectors[op.target] = vector
                done["updated"].append(op.target)
            else:
                key = f"L{self.state['next_id']}"
                self.state["next_id"] += 1
                lessons[key] = {"text": text, "confidence": op.confidence}
                self._vectors[key] = vector
                done["added"].append(key)
        return done

    def _call(self, messages: list[dict[str, str]], max_tokens: int, temperature: float, seed: int | None, stage: str,
              task: Task | None) -> Completion:
        reply = self.model.complete(messages, max_tokens=max_tokens, temperature=temperature, seed=seed)
        stats = self.state["stats"]
        stats["prompt_tokens"] += reply.prompt_tokens
        stats["completion_tokens"] += reply.completion_tokens
        stats["llm_seconds"] += reply.seconds
        if self.progress is not None:
            done = self.state["next_batch"] * self.settings.batch_size + len(self.state["pending"])  # tasks rolled out so far
            self.progress(LearnProgress(stage, min(done, len(self.tasks)), len(self.tasks), len(self.state["lessons"]),
                                        stats["completion_tokens"], stats["llm_seconds"]))
        return reply

    # ------------------------------------------------------------------ results

    def lessons(self) -> list[tuple[str, str, float]]:
        """The pool: (id, text, confidence), in the order the lessons were first added."""
        return [(key, entry["text"], round(float(entry["confidence"]), 6)) for key, entry in self.state["lessons"].items()]

    def _write_output(self) -> None:
        """The pool as `dso submit` input (atomically: a reader never sees half a file)."""
        lines = [json.dumps({"text": text, "domain": self.settings.domain, "confidence": validate_confidence(confidence),
                             "metadata": {"source": "dso learn", "model": self.model.name, "lesson": key}}, ensure_ascii=False)
                 for key, text, confidence in self.lessons()]
        atomic_write_text(self.output, "".join(line + "\n" for line in lines))

    def store_in(self, library: Library) -> int:
        """Add the pool to `library` as local entries; returns how many were new (not near-duplicates)."""
        outcomes = add_lessons(library, library.embedder, [(text, self.settings.domain, confidence) for _, text, confidence in self.lessons()])
        return sum(outcome.stored for outcome in outcomes)

    def report(self, stored: int = 0) -> LearnReport:
        """The run's figures so far."""
        stats = self.state["stats"]
        done = min(self.state["next_batch"] * self.settings.batch_size, len(self.tasks))
        return LearnReport(done, stats["groups_used"], stats["groups_skipped"], stats["rollouts"],
                           stats["reward_sum"] / stats["rollouts"] if stats["rollouts"] else 0.0, tuple(self.lessons()),
                           dict(stats["refused"]), stats["unreadable"], stats["prompt_tokens"], stats["completion_tokens"],
                           stats["llm_seconds"], self.output, stored, tuple(self.state["log"]),
                           tuple(self.state.get("published", {}).get("events", ())))


def lesson_publisher(node: Any, load_embedder: Callable[[], Embedder], outbox: Any, services: Callable[[], tuple[Any, Any]]) -> Publisher:
    """A `Publisher` that sends lessons through the one publish path (`workflows.publish.publish`)
    from the node wallet `node`: validated, embedded, batched, queued in `outbox`, pinned and
    committed. Its account names the committed batch roots; batches the chain refused or that wait
    in the outbox are said as such (they are durable there: `dso outbox` shows them)."""
    def send(lessons: Sequence[tuple[str, str, float]]) -> str:
        insights = [Insight(text, domain, confidence, {"source": "dso learn"}) for text, domain, confidence in lessons]
        result = publish(insights, node, load_embedder, outbox, services)
        parts = [f"committed {c.root[:16]} ({c.count})" for c in result.committed]
        parts += [f"{p.state} in the outbox {p.root[:16]}: {p.last_error or ''}".strip() for p in result.pending]
        return "; ".join(parts) or "nothing to commit"

    return send
