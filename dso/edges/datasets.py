"""Real data for tests, examples and benchmarks: GSM8K and STS-B from ../shared/data.

`gsm8k_insights` turns GSM8K worked solutions into "When ..., ..." experiences with fixed,
documented templates (no LLM involved, so the output is deterministic and anyone can rebuild it):
the problem's first sentence gives the situation, the solution's first step gives the advice, a
keyword rule gives the domain, and the confidence falls with the number of solution steps (long
solutions are less likely to generalize). They are realistic in length and vocabulary, which is
what the size and retrieval figures need; they are not curated insights.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from dso.core.align import MAX_ANCHORS, MIN_ANCHORS
from dso.core.experience import Insight
from dso.edges.compile import PROJECT_ROOT
from dso.errors import AlignmentError, DatasetError

# GSM8K questions 0..5,499 are where the benchmarks, tests and the demo draw libraries and queries
# from; the codec baseline and the alignment anchors use only the questions after them.
BENCHMARK_GSM8K_QUESTIONS = 5_500
ANCHORS_PER_SOURCE = MAX_ANCHORS // 2

_CALCULATOR = re.compile(r"<<[^>]*>>")
_SENTENCE_END = re.compile(r"(?<=[.?!])\s")
_DOMAIN_RULES = (
    ("math.percent", ("percent", "%")),
    ("math.money", ("$", "dollar", "cents", "price", "cost", "pay", "earn", "sell")),
    ("math.time", ("hour", "minute", "day", "week", "month", "year")),
    ("math.fractions", ("half", "third", "quarter", "fraction", "/")),
    ("math.geometry", ("area", "perimeter", "square feet", "length", "width")),
)


_COMMON_OPENINGS = {
    "A", "An", "The", "On", "In", "At", "Each", "Every", "If", "It", "It's", "There", "This", "These",
    "For", "During", "After", "Before", "Some", "One", "Two", "Three", "Four", "Five", "Last", "Today",
}


def data_dir() -> Path:
    """../shared/data next to the repository, or $DSO_SHARED_DATA."""
    path = Path(os.environ.get("DSO_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        raise DatasetError(f"shared data not found at {path}; set DSO_SHARED_DATA to the folder holding gsm8k/ and stsbenchmark/")
    return path


def gsm8k_records(limit: int | None = None) -> list[dict[str, str]]:
    """GSM8K training problems as {"question", "answer"} dicts, in file order."""
    path = data_dir() / "gsm8k" / "train.jsonl"
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if limit is not None and len(records) >= limit:
                break
            try:
                record = json.loads(line)
                records.append({"question": str(record["question"]), "answer": str(record["answer"])})
            except (json.JSONDecodeError, KeyError) as exc:
                raise DatasetError(f"{path}:{number}: not a GSM8K record ({exc})") from exc
    return records


NETWORK_NODES = 4
LEARNED_DIR = PROJECT_ROOT / "dso" / "data" / "learned"  # the network run's lessons per node, published by `dso demo`
SHARD_START = 1_000  # GSM8K train line of node 1's first problem (lines 0-39 are the templated insights')
SHARD_SIZE = 40


def gsm8k_shard_lines(node: int, size: int = SHARD_SIZE, nodes: int = NETWORK_NODES) -> list[str]:
    """Node `node`'s own GSM8K train problems in the network run and the demo: lines
    SHARD_START + nodes * i + (node - 1), i < size, as raw JSON text (a tasks file written from
    them is byte-stable, so a learning run's state recognises it). Shards never overlap."""
    if not 1 <= node <= nodes:
        raise DatasetError(f"node must be 1-{nodes}; got {node}")
    path = data_dir() / "gsm8k" / "train.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    wanted = [SHARD_START + nodes * i + (node - 1) for i in range(size)]
    if wanted[-1] >= len(lines):
        raise DatasetError(f"{path} has {len(lines)} lines; node {node}'s shard of {size} needs line {wanted[-1] + 1}")
    return [lines[i] for i in wanted]


def gsm8k_questions(limit: int | None = None) -> list[str]:
    """GSM8K questions, in file order."""
    return [r["question"] for r in gsm8k_records(limit)]


# Wordings of the same lesson, as different agents would phrase it (`style`). Measured with
# all-MiniLM-L6-v2 on 60 problems: the four wordings of one lesson have cosine >= 0.92 to each other
# (median 0.97), different lessons <= 0.61, so the network's near-duplicate clustering (0.9) puts
# exactly the wordings of one lesson together.
STYLES = (
    "When {situation}, start with this step: {step}.",
    "When {situation}, the first step is: {step}.",
    "If {situation}, begin by working out this: {step}.",
    "For problems where {situation}, first do this: {step}.",
)


def distill(question: str, answer: str, style: int = 0) -> Insight:
    """One GSM8K problem -> one "When ..., ..." insight (see module docstring for the rule),
    worded with template `STYLES[style]`."""
    situation = _SENTENCE_END.split(question.strip(), maxsplit=1)[0].rstrip(".?! ")
    steps = [_CALCULATOR.sub("", line).strip() for line in answer.split("\n") if line.strip() and not line.startswith("####")]
    first = steps[0].rstrip(".") if steps else "work step by step"
    opening, _, rest = situation.partition(" ")
    if opening in _COMMON_OPENINGS:  # "When the bakery...", but "When Natalia..."
        situation = f"{opening.lower()} {rest}"
    text = STYLES[style].format(situation=situation[:160], step=first[:200])
    lowered = question.lower()
    domain = next((d for d, words in _DOMAIN_RULES if any(w in lowered for w in words)), "math.arithmetic")
    confidence = max(0.5, min(0.95, 0.95 - 0.05 * max(len(steps) - 2, 0)))
    return Insight(text, domain, round(confidence, 2))


def gsm8k_insights(limit: int | None = None, offset: int = 0, style: int = 0) -> list[Insight]:
    """Distilled insights from GSM8K problems offset..offset+limit, worded in `style`."""
    records = gsm8k_records(None if limit is None else offset + limit)[offset:]
    return [distill(r["question"], r["answer"], style) for r in records]


@dataclass(frozen=True)
class StsPair:
    """Two sentences and their human similarity score (0-5)."""

    first: str
    second: str
    score: float


def sts_pairs(split: str = "train") -> list[StsPair]:
    """STS-B pairs of `split` ("train" or "dev"); rows with extra columns keep their last three."""
    path = data_dir() / "stsbenchmark" / f"sts-{split}.csv"
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) < 7:
                continue
            try:
                pairs.append(StsPair(row[5], row[6], float(row[4])))
            except ValueError:
                continue
    if not pairs:
        raise DatasetError(f"{path} holds no STS-B rows")
    return pairs


def unique(texts: list[str]) -> list[str]:
    """Drop repeated texts, keeping first occurrences in order (duplicates make top-10 ties)."""
    return list(dict.fromkeys(texts))


def baseline_corpus_parts() -> dict[str, list[str]]:
    """The corpus the published mean vector is fitted on, by source, disjoint from every benchmark
    text: GSM8K questions 5,500-7,472 and the distinct STS-B dev sentences that do not also occur in
    STS-B train. Math word problems and short general sentences, so the baseline is tuned to neither
    benchmark domain alone."""
    questions = gsm8k_questions()
    benchmark = set(questions[:BENCHMARK_GSM8K_QUESTIONS])
    benchmark |= {s for p in sts_pairs("train") for s in (p.first, p.second)}
    dev = unique([s for p in sts_pairs("dev") for s in (p.first, p.second)])
    return {
        "gsm8k": [t for t in questions[BENCHMARK_GSM8K_QUESTIONS:] if t not in benchmark],
        "sts-b": [t for t in dev if t not in benchmark],
    }


def baseline_corpus() -> list[str]:
    """All texts of baseline_corpus_parts(), GSM8K part first."""
    parts = baseline_corpus_parts()
    return parts["gsm8k"] + parts["sts-b"]


def anchor_sentences(count: int = MAX_ANCHORS) -> list[str]:
    """The first `count` of the 1,000 anchor sentences peers fit cross-model alignments on
    (`dso align fit`, `dso.core.align.fit_query_model`): GSM8K questions and STS-B dev sentences,
    alternating (any prefix mixes both), spread evenly over `baseline_corpus_parts`, which excludes
    every text the benchmarks, tests and demo draw libraries and queries from. The same sentences
    for every peer."""
    if not MIN_ANCHORS <= count <= MAX_ANCHORS:
        raise AlignmentError(f"anchors must be between {MIN_ANCHORS} and {MAX_ANCHORS} (the benchmark's set); got {count}")
    picks = [texts[:: len(texts) // ANCHORS_PER_SOURCE][:ANCHORS_PER_SOURCE] for texts in baseline_corpus_parts().values()]
    return [t for pair in zip(*picks) for t in pair][:count]
