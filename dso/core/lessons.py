"""What makes a learned lesson worth keeping, and how much to trust it: pure rules of the learning loop.

Training-Free GRPO (arXiv 2510.08191; youtu-agent `utu/practice`) turns the contrast between a
group's good and bad rollouts into a natural-language lesson. Measured here (issue 10), small
models write lessons that hurt: instance-specific ones ("When Betty is saving money for a wallet
which costs $100...") distract the solver, and the 1.5B model copied the example lessons in its
prompt verbatim 4 times in 5. So an LLM-written lesson is kept only if it passes mechanical guard
rails (`check_lesson`):

- one sentence (the library's unit; several sentences are several lessons);
- no number and no proper name copied from the task it was learned on (then it is about that task);
- not a near-duplicate of a kept lesson (embedding cosine >= NEAR_DUPLICATE_COSINE, the cosine at
  which the network merges two reports into one entry anyway);
- not a copy of any example shown in the learning prompt (word-set Jaccard >= EXAMPLE_COPY_JACCARD);
- not generic advice: embedding cosine below GENERIC_COSINE to every phrase of `GENERIC_ADVICE`.
  The 1.5B model's first lessons (a 2-task run) were "When a problem is solved correctly, it follows
  a clear and logical sequence of steps." (cosine 0.698 to "Follow a clear and logical sequence of
  steps.", minilm-int8) and "When a problem is solved incorrectly, it often leads to a wrong answer
  due to a mistake in a specific step." (0.719); "When solving a problem, break it into smaller
  parts and solve each part carefully." scores 0.706. The 16 method lessons of
  `dso.bench.gate.CALIBRATION_LESSONS` score 0.248-0.483, except "Before giving the final answer,
  reread the question..." at 0.644: 0.65 separates the two groups.

`lesson_quality` reports on a whole lesson set (the agent benchmark prints it next to each
condition): the share of lessons that copy a number or a name from any task, the share that have a
near-duplicate in the set, the share that are generic advice at the stricter REPORT_GENERIC_COSINE
(0.8: close to a paraphrase of a `GENERIC_ADVICE` phrase, not merely in its style), and the mean
length in words.

A group of rollouts teaches something only when some succeeded and some failed: `group_enters`
(mean reward strictly between 0 and 1, and the rewards differ). `group_confidence` turns the
group's rewards into the lesson's confidence.

When a learning agent publishes is the seeds' semantic-event rule (SEP, section 3.2.2: transmit
when d(M_t, M_{t-1}) > theta, d a cosine distance): `semantic_drift` is the cosine distance
between the agent's lesson pool now and the pool it last published, each summarised by the mean of
its unit lesson vectors; `publication_due` publishes when that drift reaches a threshold, or when
a number of lessons are new or changed since the last publication, whichever comes first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from dso.core.aggregate import NEAR_DUPLICATE_COSINE
from dso.errors import InputError

EXAMPLE_COPY_JACCARD = 0.6
GENERIC_COSINE = 0.65
REPORT_GENERIC_COSINE = 0.8
GENERIC_ADVICE = (
    "Break the problem into smaller parts.",
    "Solve the problem step by step.",
    "Read the problem carefully before answering.",
    "Double-check your calculations.",
    "Always double-check each calculation.",
    "Follow a clear and logical sequence of steps.",
    "Understand what the question is asking.",
    "A mistake in one step leads to a wrong answer.",
    "Check the answer at the end.",
)
MIN_WORDS, MAX_WORDS = 5, 60
# Capitalised words that are not names: calendar words and titles anywhere, and the words a
# sentence of a word problem commonly starts with (any other sentence-initial capitalised word,
# "Natalia sold clips...", is taken for a name).
_NOT_NAMES = frozenset("""
I A An The Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July August
September October November December Mr Mrs Ms Dr US USD
""".split())
_OPENERS = frozenset("""
She He They It We You There This That These Those His Her Their Its Our My Your In On At For After Before During If When
How What Which Who Whom Whose Each Every Some One Two Three Four Five Six Seven Eight Nine Ten Last Today Yesterday Tomorrow
Then Also But And So Of To From With All Half Calculate Find Determine Suppose Assume Given Since Because While Over Both
Now Next First Second Third Finally Meanwhile However Together Out By As Between Among Once Twice Is Are Was Were Do Does
Did Can Could Will Would Should Let Every Any No Not Only Most Many Several Another Other Altogether Instead Later Earlier
Initially Currently Usually Normally Sometimes Unfortunately Luckily Yes Please Write Answer Solve Compute
""".split())
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SENTENCE_END = re.compile(r"[.!?](?:\s+|$)")


@dataclass(frozen=True)
class LessonQuality:
    """What a lesson set looks like: how many lessons, the shares (0-1) that copy a number or a
    name from a task, have a near-duplicate in the set, or are generic advice, and the mean length
    in words. The shares are None for an empty set."""

    lessons: int
    copies_task: float | None
    near_duplicate: float | None
    generic: float | None
    mean_words: float | None


@dataclass(frozen=True)
class LessonCheck:
    """Whether a lesson may be kept; `reasons` names every rule it breaks (empty when kept)."""

    reasons: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when no rule is broken."""
        return not self.reasons


def sentence_count(text: str) -> int:
    """Sentences in `text`: terminal punctuation followed by space or the end, ignoring decimals."""
    return max(1, len(_SENTENCE_END.findall(text.strip())))


def task_numbers(task: str) -> set[str]:
    """The numbers a task writes, normalised (thousands commas dropped): "1,200" -> "1200"."""
    return {n.replace(",", "") for n in _NUMBER.findall(task)}


def task_names(task: str) -> set[str]:
    """Proper names in a task: capitalised words that are not weekdays, months or titles, and, at
    the start of a sentence, not a common opening word either (word problems start sentences
    with their protagonist: "Natalia sold clips to 48 of her friends")."""
    names: set[str] = set()
    sentence_start = True
    for token in re.findall(r"[A-Za-z][A-Za-z'-]*|[.!?]", task):
        if token in ".!?":
            sentence_start = True
            continue
        word = token.split("'")[0]
        if word[0].isupper() and word not in _NOT_NAMES and not (sentence_start and word in _OPENERS):
            names.add(word)
        sentence_start = False
    return names


def words(text: str) -> set[str]:
    """Lower-cased words of a text, for the copy check."""
    return {w.lower() for w in _WORD.findall(text)}


def jaccard(a: set[str], b: set[str]) -> float:
    """|a & b| / |a | b| (0 for two empty sets)."""
    return len(a & b) / len(a | b) if a | b else 0.0


def check_lesson(text: str, task: str, vector: np.ndarray | None = None, kept_vectors: np.ndarray | None = None,
                 prompt_examples: Sequence[str] = (), near_duplicate: float = NEAR_DUPLICATE_COSINE,
                 generic_vectors: np.ndarray | None = None, generic: float = GENERIC_COSINE) -> LessonCheck:
    """Every guard rail `text` breaks, learned from `task`. `vector` is the lesson's unit-norm
    embedding, `kept_vectors` (n x d, unit rows) the kept lessons' and `generic_vectors` those of
    `GENERIC_ADVICE`; without them the near-duplicate and generic rules are not applied."""
    reasons: list[str] = []
    stripped = text.strip()
    count = len(_WORD.findall(stripped))
    if "\n" in stripped or sentence_count(stripped) != 1:
        reasons.append("not one sentence")
    if not MIN_WORDS <= count <= MAX_WORDS:
        reasons.append(f"length: {count} words (a lesson has {MIN_WORDS}-{MAX_WORDS})")
    copied_numbers = sorted(task_numbers(task) & task_numbers(stripped))
    if copied_numbers:
        reasons.append(f"copies numbers from the task: {', '.join(copied_numbers)}")
    lesson_words = set(_WORD.findall(stripped))
    copied_names = sorted(task_names(task) & {w.split("'")[0] for w in lesson_words})
    if copied_names:
        reasons.append(f"copies names from the task: {', '.join(copied_names)}")
    if vector is not None and kept_vectors is not None and len(kept_vectors):
        best = float(np.max(np.asarray(kept_vectors, dtype=np.float64) @ np.asarray(vector, dtype=np.float64)))
        if best >= near_duplicate:
            reasons.append(f"near-duplicate of a kept lesson (cosine {best:.3f} >= {near_duplicate})")
    if vector is not None and generic_vectors is not None and len(generic_vectors):
        closest = float(np.max(np.asarray(generic_vectors, dtype=np.float64) @ np.asarray(vector, dtype=np.float64)))
        if closest >= generic:
            reasons.append(f"generic advice (cosine {closest:.3f} >= {generic} to a phrase of GENERIC_ADVICE)")
    mine = words(stripped)
    for example in prompt_examples:
        overlap = jaccard(mine, words(example))
        if overlap >= EXAMPLE_COPY_JACCARD:
            reasons.append(f"copies an example shown in the prompt (word overlap {overlap:.2f})")
            break
    return LessonCheck(tuple(reasons))


def task_vocabulary(tasks: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    """The numbers and the proper names written in any of `tasks` (`task_numbers`, `task_names`)."""
    numbers: set[str] = set()
    names: set[str] = set()
    for task in tasks:
        numbers |= task_numbers(task)
        names |= task_names(task)
    return frozenset(numbers), frozenset(names)


def copies_task(text: str, vocabulary: tuple[frozenset[str], frozenset[str]]) -> bool:
    """Whether `text` writes a number, or a proper name, that a task of `vocabulary` (from
    `task_vocabulary`) writes. Names in the lesson are found by the same rule as in a task, so a
    lesson's opening "When" is not a name, and neither is a task's."""
    numbers, names = vocabulary
    return bool(task_numbers(text) & numbers) or bool(task_names(text) & names)


def lesson_quality(texts: Sequence[str], vectors: np.ndarray, generic_vectors: np.ndarray,
                   vocabulary: tuple[frozenset[str], frozenset[str]], near_duplicate: float = NEAR_DUPLICATE_COSINE,
                   generic: float = REPORT_GENERIC_COSINE) -> LessonQuality:
    """The quality report of a lesson set. `vectors` (n x d) are the lessons' unit-norm embeddings
    in the order of `texts`, `generic_vectors` (m x d) those of `GENERIC_ADVICE`; `vocabulary` is
    `task_vocabulary` of the tasks the lessons must not copy from. A lesson counts as a near-
    duplicate when another lesson of the set has cosine >= `near_duplicate` to it (both count)."""
    n = len(texts)
    vectors = np.asarray(vectors, dtype=np.float64).reshape(n, -1) if n else np.zeros((0, 0))
    generic_vectors = np.asarray(generic_vectors, dtype=np.float64)
    if n and (vectors.shape[1] != generic_vectors.shape[-1] or not np.all(np.isfinite(vectors))):
        raise InputError(f"lesson vectors must be finite, one row per lesson, of the generic phrases' dimension; got {vectors.shape}")
    if not n:
        return LessonQuality(0, None, None, None, None)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    duplicated = similarity.max(axis=1) >= near_duplicate if n > 1 else np.zeros(1, dtype=bool)
    is_generic = (vectors @ generic_vectors.T).max(axis=1) >= generic if len(generic_vectors) else np.zeros(n, dtype=bool)
    copied = [copies_task(text, vocabulary) for text in texts]
    return LessonQuality(n, sum(copied) / n, float(np.mean(duplicated)), float(np.mean(is_generic)),
                         float(np.mean([len(_WORD.findall(text)) for text in texts])))


def group_enters(rewards: Sequence[float]) -> bool:
    """Whether a group of rollouts can teach anything: its mean reward is strictly between 0 and 1
    and not every rollout got the same reward (all right or all wrong: no contrast to explain)."""
    values = _rewards(rewards)
    return len(values) >= 2 and 0.0 < float(values.mean()) < 1.0 and float(values.max()) > float(values.min())


def group_confidence(rewards: Sequence[float]) -> float:
    """The confidence of a lesson learned from this group: 4 * var(rewards) * G / (G + 2).

    Why: the lesson explains the contrast between the group's good and bad rollouts. With rewards in
    [0, 1] the population variance is at most 1/4, reached when half succeed; 4 * var is therefore
    1 for an even split and small for 1 success in many (a contrast that may be luck). G / (G + 2)
    shrinks small groups (G = 2 gives at most 0.5, G = 8 at most 0.8): two rollouts that differ are
    weak evidence. 0 for a group with no variance, which never enters."""
    values = _rewards(rewards)
    if len(values) < 2 or values.max() == values.min():  # var() of equal floats can be 1e-33, not 0
        return 0.0
    size = len(values)
    return float(min(1.0, 4.0 * values.var()) * size / (size + 2))


def _rewards(rewards: Sequence[float]) -> np.ndarray:
    values = np.asarray(list(rewards), dtype=np.float64)
    if values.ndim != 1 or not np.all(np.isfinite(values)) or np.any(values < 0) or np.any(values > 1):
        raise InputError(f"rewards must be finite numbers in [0, 1]; got {list(rewards)!r}")
    return values


def pool_state(vectors: np.ndarray) -> np.ndarray:
    """A lesson pool's semantic state M: the mean of its unit lesson vectors (rows), as float64."""
    array = np.asarray(vectors, dtype=np.float64)
    if array.ndim != 2 or not len(array) or not np.all(np.isfinite(array)):
        raise InputError("a pool state needs at least one finite lesson vector")
    return (array / np.linalg.norm(array, axis=1, keepdims=True)).mean(axis=0)


def semantic_drift(published: np.ndarray | None, current: np.ndarray) -> float:
    """Cosine distance in [0, 2] between the pool state last published and the current one.
    Nothing published yet is maximal drift (1.0: the first lessons are all news); a state of length
    zero (lessons that cancel out) is compared as orthogonal."""
    if published is None:
        return 1.0
    a, b = np.asarray(published, dtype=np.float64), np.asarray(current, dtype=np.float64)
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 1.0 if norms == 0.0 else float(1.0 - np.clip(a @ b / norms, -1.0, 1.0))


def publication_due(new_lessons: int, drift: float, every: int | None, threshold: float | None) -> str | None:
    """Why the agent should publish now, or None: `new_lessons` (new or changed since the last
    publication) reached `every`, or `drift` reached `threshold` with at least one new lesson (a
    pool that only lost lessons has nothing to publish). Either rule may be off (None)."""
    if new_lessons < 1:
        return None
    if every is not None and new_lessons >= every:
        return f"{new_lessons} new lesson(s) >= {every}"
    if threshold is not None and drift >= threshold:
        return f"drift {drift:.3f} >= {threshold}"
    return None


def endorsable(text: str, vector: np.ndarray, task_vectors: np.ndarray, tasks_text: str, min_similarity: float, min_tasks: int) -> bool:
    """Whether a node endorses another node's lesson (reports it again from its own wallet, so it can
    reach the network's distinct-node bar): the lesson applies to at least `min_tasks` of the node's
    own problems (cosine >= `min_similarity` of the unit `vector` to the unit rows of `task_vectors`,
    the agent's gate threshold) and passes the node's guard rails against them (`check_lesson`: one
    sentence, no number or name copied from its problems). Independent evidence of generality: a
    lesson that only fits its author's problems is not endorsed."""
    if isinstance(min_tasks, bool) or not isinstance(min_tasks, int) or min_tasks < 1:
        raise InputError(f"min_tasks must be a whole number of at least 1; got {min_tasks!r}")
    if not len(task_vectors):
        return False
    applies = int(np.count_nonzero(np.asarray(task_vectors) @ np.asarray(vector) >= min_similarity))
    return applies >= min_tasks and check_lesson(text, tasks_text).ok
