"""The prompts and text rules of Training-Free GRPO: what the learning LLM is asked, and how its replies are read.

Training-Free GRPO (Cai et al., arXiv 2510.08191; youtu-agent `utu/practice`) keeps the model frozen
and optimises a pool of natural-language experiences instead of weights. Per task, G rollouts with
the pool injected are rewarded; for a group with both successes and failures the LLM

1. summarises each rollout (`summary_messages`),
2. extracts the group's *semantic advantage*, the lessons that separate good rollouts from bad
   ones (`advantage_messages`, read by `parse_lessons`),
3. turns them into operations on the pool: ADD, UPDATE an existing lesson, DELETE one, or NONE
   (`operation_messages`, read by `parse_operations`),

and 4. the operations of all groups in a batch are reconciled into one consistent set
(`reconcile_messages`) before `apply_operations` changes the pool.

The prompts are ours, much shorter than youtu-agent's: they are written for a 1.5B model with a
4k context. They show no example lesson, only the form "When <kind of situation>, <what to do>."
(`LESSON_FORM`): the 1.5B model copied example lessons from its prompt 4 times in 5 (issue 10),
and the guard rails refuse a copy of the form itself. The advantage prompt asks for a situation
that is a kind of problem, not an outcome: with the form alone, the 1.5B model's first two lessons
were "When a problem is solved correctly/incorrectly, ..." (two GSM8K train tasks). Small models answer JSON unreliably, so every
parser here is lenient and returns what it could read; the caller counts what it could not.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

LESSON_FORM = "When <kind of situation>, <what to do>."
OPERATIONS = ("ADD", "UPDATE", "DELETE", "NONE")
MAX_REPLY_CHARS = 3_000  # of a rollout, shown to the summariser (a rambling 135M reply is cut)

_SYSTEM_REVIEW = "You review attempts at math word problems to learn lessons that help on other problems."


@dataclass(frozen=True)
class Operation:
    """One change to the lesson pool: ADD `content`, UPDATE lesson `target` to `content`, DELETE
    lesson `target`, or NONE. `confidence` is that of the group the operation came from."""

    kind: str
    content: str
    target: str | None = None
    confidence: float = 0.0


def summary_messages(question: str, expected: str, reply: str, correct: bool) -> list[dict[str, str]]:
    """Step 1: one rollout -> a short account of its method and where it went right or wrong."""
    verdict = "correct" if correct else "incorrect"
    return [{"role": "system", "content": _SYSTEM_REVIEW},
            {"role": "user", "content": f"Problem: {question}\nCorrect final answer: {expected}\n\nAttempt (its final answer is {verdict}):\n"
                                        f"{reply[:MAX_REPLY_CHARS]}\n\nIn at most three sentences, describe the method this attempt used and the step "
                                        "where it went right or wrong. Do not solve the problem again."}]


def advantage_messages(question: str, summaries: Sequence[tuple[str, bool]], max_lessons: int) -> list[dict[str, str]]:
    """Step 2: the group's summaries, labelled correct/incorrect -> at most `max_lessons` lessons."""
    attempts = "\n".join(f"Attempt {n} ({'correct' if ok else 'incorrect'}): {text.strip()}" for n, (text, ok) in enumerate(summaries, 1))
    return [{"role": "system", "content": _SYSTEM_REVIEW},
            {"role": "user", "content": f"Problem: {question}\n\nSummaries of attempts:\n{attempts}\n\nCompare the correct and the incorrect "
                                        f"attempts. Write at most {max_lessons} lessons that explain what made the difference and would help on "
                                        f"OTHER problems. Each lesson is one sentence of the form '{LESSON_FORM}': the situation is a kind "
                                        "of problem or quantity (never whether an attempt was right or wrong) and what to do is a concrete "
                                        "calculation step. It mentions no number, person or object from this problem. Output only the "
                                        "lessons, one per line, each starting with '- '."}]


def operation_messages(existing: Mapping[str, str], new: Sequence[str]) -> list[dict[str, str]]:
    """Step 3: the pool (id -> text) and a group's new lessons -> one operation per new lesson."""
    pool = "\n".join(f"[{key}] {text}" for key, text in existing.items()) or "(none yet)"
    proposed = "\n".join(f"[N{n}] {text}" for n, text in enumerate(new, 1))
    return [{"role": "system", "content": "You maintain a short list of general lessons for solving math word problems."},
            {"role": "user", "content": f"Existing lessons:\n{pool}\n\nNew lessons:\n{proposed}\n\nFor each new lesson choose one operation: "
                                        "ADD if it is new; UPDATE with the id of the existing lesson it improves, giving the improved lesson; "
                                        "DELETE with the id of an existing lesson the new one shows to be wrong; NONE if it is already covered. "
                                        'Answer with only a JSON array, one object per new lesson: {"operation": "ADD", "id": null, '
                                        '"content": "the lesson"}.'}]


def reconcile_messages(existing: Mapping[str, str], operations: Sequence[Operation]) -> list[dict[str, str]]:
    """Step 4: every group's operations in a batch -> one consistent set (duplicates merged, contradictions dropped)."""
    pool = "\n".join(f"[{key}] {text}" for key, text in existing.items()) or "(none yet)"
    proposed = "\n".join(f"{n}. {op.kind}{' ' + op.target if op.target else ''}: {op.content}" for n, op in enumerate(operations, 1))
    return [{"role": "system", "content": "You maintain a short list of general lessons for solving math word problems."},
            {"role": "user", "content": f"Existing lessons:\n{pool}\n\nChanges proposed from several problems:\n{proposed}\n\nMerge proposals "
                                        "that say the same thing into one, and drop proposals that contradict each other. Answer with only a "
                                        'JSON array of the final changes: {"operation": "ADD|UPDATE|DELETE", "id": "existing id or null", '
                                        '"content": "the lesson"}.'}]


def parse_lessons(reply: str, max_lessons: int) -> list[str]:
    """The lessons of a step-2 reply: its "- " / "1." / "*" lines (or, with none, its non-empty
    lines), markup stripped, at most `max_lessons`."""
    lines = [line.strip() for line in reply.splitlines() if line.strip()]
    marked = [re.sub(r"^(?:[-*\u2022]|\d+[.)])\s*", "", line) for line in lines if re.match(r"^(?:[-*\u2022]|\d+[.)])\s*\S", line)]
    chosen = marked or lines
    cleaned = [re.sub(r"\*\*|__|`", "", text).strip().strip('"').strip() for text in chosen]
    return [text for text in cleaned if text][:max_lessons]


def parse_operations(reply: str, known_ids: Sequence[str], confidence: float = 0.0) -> list[Operation] | None:
    """The operations of a step-3/4 reply: the first JSON array in it (a ```json fence allowed).
    Entries with an unknown operation, or an UPDATE/DELETE without a known id, are dropped;
    None when no JSON array can be read at all."""
    candidates = re.findall(r"\[.*\]", reply, re.S)
    for text in candidates:
        try:
            items = json.loads(text)
        except ValueError:
            continue
        if isinstance(items, list):
            return [op for op in (_operation(item, set(known_ids), confidence) for item in items) if op is not None]
    return None


def _operation(item: object, known: set[str], confidence: float) -> Operation | None:
    if not isinstance(item, dict):
        return None
    kind = str(item.get("operation", "")).strip().upper()
    target = item.get("id")
    target = str(target).strip().strip("[]") if target not in (None, "", "null") else None
    # The 1.5B model echoes the prompt's labels into the content ("N1: When ..."): a label is not the lesson.
    content = re.sub(r"^\[?(?:N|L)\d+\]?\s*[:.-]?\s*", "", str(item.get("content") or "").strip())
    if kind not in OPERATIONS or kind == "NONE":
        return None
    if kind in ("UPDATE", "DELETE") and target not in known:
        return None
    if kind in ("ADD", "UPDATE") and not content:
        return None
    return Operation(kind, content, target if kind != "ADD" else None, confidence)


def merge_operations(operations: Sequence[Operation]) -> list[Operation]:
    """The mechanical reconciliation (used when a batch has one group, or the LLM's reconcile reply
    cannot be read): identical contents merged (highest confidence kept), a DELETE of a lesson
    overrides an UPDATE of it, and of several UPDATEs of one lesson the most confident wins."""
    deleted = {op.target for op in operations if op.kind == "DELETE"}
    best_update: dict[str, Operation] = {}
    adds: dict[str, Operation] = {}
    for op in operations:
        if op.kind == "UPDATE" and op.target not in deleted:
            if op.target not in best_update or op.confidence > best_update[op.target].confidence:
                best_update[op.target] = op
        elif op.kind == "ADD":
            key = op.content.casefold()
            if key not in adds or op.confidence > adds[key].confidence:
                adds[key] = op
    deletes = [Operation("DELETE", "", target, 0.0) for target in sorted(t for t in deleted if t)]
    return [*deletes, *best_update.values(), *adds.values()]
