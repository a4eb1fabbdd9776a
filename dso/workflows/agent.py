"""The local agent: answer a question with the library's experiences injected, only those that bear on it.

`Library.context_for` injects the top-k whatever their similarity, so a question the library does
not cover still got k unrelated lessons, and instance-specific lessons measurably distracted the
1.5B model (issue 10: 26 of 40 correct alone, 19 with such context). Injection therefore goes
through a `RelevanceGate`: an entry is used only if its similarity to the question, its domain,
its consensus confidence and (for a network entry) its support all pass; with none passing, the
prompt carries no experience block at all and the agent answers alone. `Answer` records which
entries were used and why the others were not, so `dso ask` can show it.

The default similarity threshold, DEFAULT_MIN_SIMILARITY = 0.30, was calibrated by
`python scripts/bench.py gate` (`dso.bench.gate`, bench/results/gate.json), never on evaluation
questions: a library of the 16 method lessons in `dso.bench.gate.CALIBRATION_LESSONS`, queried
with the first 200 GSM8K *train* questions (on topic) and 60 hand-written off-topic questions,
scored by `Library.search` with the minilm-int8 query embedder `dso ask` uses. Best similarity per
question on the calibration half (100 + 30): on topic p10 0.307, median 0.387, max 0.612; off topic
median 0.097, p90 0.140, max 0.232. Balanced accuracy peaks at 0.24, right at the off-topic
maximum; 0.30 keeps a 0.07 margin above it, since a wrong injection costs more than a missed one.
On the held-out half (100 + 30): 83% of on-topic questions pass at 0.30 and 1 of 30 off-topic
ones (3%); at 0.24, 93% and 3%; at 0.35, 63% and 0%.
A threshold is tied to a lesson style and an embedder: rerun the script on a learned library
(`--lessons FILE.jsonl`) before trusting it elsewhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

from dso.core.codec import DEFAULT_CODEC, baseline_id, get_codec, load_baseline
from dso.core.experience import Experience, validate_confidence, validate_domain, validate_text
from dso.core.models import MODEL_NAME
from dso.edges.embed import Embedder
from dso.edges.llm import ChatModel, Completion
from dso.errors import ExperienceError, LibraryError
from dso.workflows.library import LOCAL_NODE, AddOutcome, Hit, Library

DEFAULT_MIN_SIMILARITY = 0.30
DEFAULT_MIN_CONFIDENCE = 0.5
DEFAULT_MIN_SUPPORT = 1
DEFAULT_K = 3
CANDIDATES = 20  # searched before the gate: enough that k survivors are found when some fail it

SYSTEM_PROMPT = (
    "You are a careful problem solver. Reason step by step, briefly. "
    "End your reply with a last line of the form 'Answer: <final answer>'."
)
EXPERIENCE_HEADER = "Lessons from earlier problems (apply one only if it fits this problem):"


@dataclass(frozen=True)
class RelevanceGate:
    """Which retrieved entries may enter a prompt. `min_support` counts distinct admitted nodes
    behind a network entry; the agent's own local entries (support 0) are exempt from it."""

    min_similarity: float = DEFAULT_MIN_SIMILARITY
    domain: str | None = None
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    min_support: int = DEFAULT_MIN_SUPPORT
    k: int = DEFAULT_K

    def __post_init__(self) -> None:
        for name in ("min_similarity", "min_confidence"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1.0 <= value <= 1.0:
                raise LibraryError(f"{name} must be a number in [-1, 1]; got {value!r}")
        for name, least in (("min_support", 0), ("k", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise LibraryError(f"{name} must be a whole number of at least {least}; got {value!r}")
        if self.domain is not None:
            try:
                validate_domain(self.domain)
            except ExperienceError as exc:
                raise LibraryError(f"gate domain: {exc}") from exc

    def refusal(self, hit: Hit) -> str | None:
        """Why `hit` may not be used (None: it may)."""
        if hit.score < self.min_similarity:
            return f"similarity {hit.score:.3f} < {self.min_similarity:.2f}"
        if hit.confidence < self.min_confidence:
            return f"confidence {hit.confidence:.2f} < {self.min_confidence:.2f}"
        if hit.origin == "network" and hit.support < self.min_support:
            return f"support {hit.support} < {self.min_support}"
        return None


@dataclass(frozen=True)
class Selection:
    """What the gate let through (`used`, best first, at most k) and what it refused, with why."""

    used: tuple[Hit, ...]
    refused: tuple[tuple[Hit, str], ...]


@dataclass(frozen=True)
class Answer:
    """The agent's reply, the experiences in its prompt, those refused, and the exact messages sent."""

    question: str
    text: str
    selection: Selection
    completion: Completion
    messages: tuple[dict[str, str], ...] = field(repr=False)


def select_experiences(library: Library | None, question: str, gate: RelevanceGate) -> Selection:
    """Search the library for `question` (domain filter in the search itself), then apply the gate.
    No library, or an empty one, selects nothing."""
    if library is None or not len(library):
        return Selection((), ())
    used: list[Hit] = []
    refused: list[tuple[Hit, str]] = []
    for hit in library.search(question, k=max(CANDIDATES, gate.k), domain=gate.domain):
        reason = gate.refusal(hit)
        if reason is None and len(used) >= gate.k:
            reason = f"beyond the top {gate.k}"
        if reason is None:
            used.append(hit)
        else:
            refused.append((hit, reason))
    return Selection(tuple(used), tuple(refused))


def experience_block(texts: Sequence[str]) -> str:
    """The lessons as the prompt shows them ("" for none: the prompt then has no block at all)."""
    if not texts:
        return ""
    return "\n".join([EXPERIENCE_HEADER, *(f"- {text}" for text in texts)])


def build_messages(question: str, lessons: Sequence[str], system: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """System prompt, then the lessons (if any) and the question in one user message."""
    block = experience_block(lessons)
    user = f"{block}\n\nProblem: {question}" if block else f"Problem: {question}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def ask(question: str, model: ChatModel, library: Library | None = None, gate: RelevanceGate | None = None,
        max_tokens: int = 512, temperature: float = 0.0, seed: int | None = None) -> Answer:
    """Answer `question` with `model`, injecting the library entries that pass `gate`."""
    question = validate_question(question)
    selection = select_experiences(library, question, gate or RelevanceGate())
    messages = build_messages(question, [hit.experience.text for hit in selection.used])
    completion = model.complete(messages, max_tokens=max_tokens, temperature=temperature, seed=seed)
    return Answer(question, completion.text, selection, completion, tuple(messages))


def validate_question(question: object) -> str:
    """The question, stripped; LibraryError if it is not a non-empty string of at most 4,000 characters."""
    if not isinstance(question, str) or not question.strip():
        raise LibraryError("the question must be a non-empty string")
    if len(question) > 4_000:
        raise LibraryError(f"the question is {len(question)} characters; at most 4000 fit the prompt")
    return question.strip()


def add_lessons(library: Library, embedder: Embedder, lessons: Sequence[tuple[str, str, float]], node: bytes = LOCAL_NODE,
                created_at: int | None = None) -> list[AddOutcome]:
    """Store (text, domain, confidence) lessons as the agent's own local entries, in one
    transaction; near-duplicates of a visible entry are not stored twice (`Library.add_many`)."""
    if not lessons:
        return []
    baseline = load_baseline()
    checked = [(validate_text(t), validate_domain(d), validate_confidence(c)) for t, d, c in lessons]
    codes = get_codec(DEFAULT_CODEC, embedder.dim, baseline).encode(embedder.embed([t for t, _, _ in checked]))
    now = int(time.time()) if created_at is None else created_at
    experiences = [Experience.create(t, d, c, MODEL_NAME, DEFAULT_CODEC, bytes(code), node, now) for (t, d, c), code in zip(checked, codes)]
    return library.add_many(experiences, bytes.fromhex(baseline_id(baseline)))
