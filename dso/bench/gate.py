"""Calibration of the agent's relevance gate: how similar is a question the library covers, and one it does not?

`dso ask` injects a library entry only when its similarity to the question reaches
`dso.workflows.agent.DEFAULT_MIN_SIMILARITY`. This benchmark picks that number on questions that
are never used to evaluate the agent: GSM8K *train* questions (on topic for a library of math
lessons; evaluation uses GSM8K test) and hand-written off-topic questions (`OFF_TOPIC`). A real
`Library` on a temporary directory holds the lessons as local entries and `Library.search` scores
each question with the minilm-int8 query embedder `dso ask` uses, so the figures are the ones the
gate sees. The questions are split in two halves: the threshold is chosen on the first (the one
that maximises balanced accuracy: mean of the on-topic pass rate and the off-topic refusal rate)
and both rates are reported on the second.

`python scripts/bench.py gate` writes bench/results/gate.json; `python -m dso.bench.gate --lessons
FILE.jsonl` recalibrates for a learned library (lines with a "text" field).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dso.edges.datasets import gsm8k_questions
from dso.edges.embed import load_embedder
from dso.workflows.agent import add_lessons
from dso.workflows.library import Library

ON_TOPIC_QUESTIONS = 200
SWEEP = (0.20, 0.25, 0.30, 0.35, 0.40)
# Method lessons in the style Training-Free GRPO writes (no numbers or names from any task): the
# library a GSM8K-trained agent would hold. Written for this calibration, not taken from any test question.
CALIBRATION_LESSONS = (
    "When a problem gives a price per item and a number of items, multiply them before adding other costs.",
    "When a quantity is described as a fraction of another, compute the base quantity first and then take the fraction.",
    "When a percentage discount is applied, subtract the discount from the original price rather than adding it.",
    "When a problem asks how many are left, subtract everything that was used, given away or sold from the starting amount.",
    "When rates are given per hour, multiply the rate by the time worked to get the total earned.",
    "When a total is shared equally among people, divide the total by the number of people.",
    "When a problem describes several steps over time, track the running amount after each step.",
    "When one person has some times as many as another, find the smaller amount first, then multiply.",
    "When converting units such as minutes to hours or cents to dollars, convert before combining quantities.",
    "When computing profit, subtract the total cost from the total revenue.",
    "When an average is asked for, add all the values and divide by how many there are.",
    "When a problem says more than or fewer than, add or subtract that difference from the reference amount.",
    "When a problem involves weekly or monthly amounts over a longer period, multiply by the number of periods.",
    "When the answer must be a whole number of items, check that the division comes out even before rounding.",
    "When speed and time are given, distance equals speed multiplied by time.",
    "Before giving the final answer, reread the question to make sure the quantity computed is the one asked for.",
)
OFF_TOPIC = (
    "What is the capital city of Australia?",
    "How do I reset a forgotten password on my email account?",
    "Who wrote the novel Pride and Prejudice?",
    "What are the symptoms of the common cold?",
    "How do I bake sourdough bread at home?",
    "Which planets in the solar system have rings?",
    "What is the difference between a virus and a bacterium?",
    "How do I change a flat tire on a bicycle?",
    "What language is spoken in Brazil?",
    "Why is the sky blue during the day?",
    "How do I write a for loop in Python?",
    "What caused the fall of the Roman Empire?",
    "Which vaccines are recommended for travel to tropical countries?",
    "How does photosynthesis work in plants?",
    "What is the best way to learn to play the guitar?",
    "How do I configure a firewall on a Linux server?",
    "Who painted the Mona Lisa?",
    "What should I pack for a hiking trip in the mountains?",
    "How do noise-cancelling headphones work?",
    "What is the plot of the opera Carmen?",
    "How can I improve my sleep quality?",
    "What is a black hole?",
    "How do I remove a red wine stain from a carpet?",
    "Which animals hibernate during the winter?",
    "What are the rules of chess castling?",
    "How do I politely decline a job offer by email?",
    "What is the function of the human liver?",
    "How is cheese made from milk?",
    "What does a blockchain consensus algorithm do?",
    "Why do cats purr?",
    "How do I repot a houseplant without damaging its roots?",
    "What is the tallest mountain in Africa?",
    "How does a refrigerator keep food cold?",
    "Who was the first person to walk on the Moon?",
    "How can I tell if an egg is still fresh?",
    "What is the meaning of the word ubiquitous?",
    "How do bees make honey?",
    "What is the difference between weather and climate?",
    "How do I set up a new printer on my laptop?",
    "What genre of music is Miles Davis known for?",
    "How do I apologise to a friend after an argument?",
    "What is the main ingredient in guacamole?",
    "How do tides happen in the ocean?",
    "What should I do if my dog eats chocolate?",
    "How does a bill become a law in a parliament?",
    "What is the origin of the Olympic Games?",
    "How do I clean a cast iron pan?",
    "Why do leaves change colour in autumn?",
    "What is an API key and why should it be kept secret?",
    "Which countries border Switzerland?",
    "How do I tie a bowline knot?",
    "What is the role of the mitochondria in a cell?",
    "How do I make my resume stand out to recruiters?",
    "What is the difference between a crocodile and an alligator?",
    "How do solar panels generate electricity?",
    "What is the best time of year to visit Japan?",
    "How do I unclog a kitchen sink drain?",
    "Who composed the Four Seasons?",
    "What are the main causes of inflation in an economy?",
    "How do I stop my glasses from fogging up with a mask?",
)


def best_similarities(library: Library, questions: Sequence[str]) -> np.ndarray:
    """Each question's best similarity to any library entry, as `Library.search` scores it."""
    return np.array([max((hit.score for hit in library.search(q, k=1)), default=-1.0) for q in questions])


def choose_threshold(on_topic: np.ndarray, off_topic: np.ndarray) -> float:
    """The threshold (rounded to 0.01) that maximises balanced accuracy; the higher one on ties,
    since injecting a wrong lesson costs more than missing a right one."""
    best, best_score = 1.0, -1.0
    for threshold in np.round(np.arange(0.0, 1.0, 0.01), 2):
        score = (np.mean(on_topic >= threshold) + np.mean(off_topic < threshold)) / 2
        if score >= best_score:
            best, best_score = float(threshold), float(score)
    return best


def run(lessons: Sequence[str] = CALIBRATION_LESSONS, on_topic_count: int = ON_TOPIC_QUESTIONS) -> dict[str, Any]:
    """Score both question sets, choose the threshold on the first half, report both halves."""
    from dso.workflows.agent import DEFAULT_MIN_SIMILARITY

    embedder = load_embedder("minilm-int8")
    on_topic_questions = gsm8k_questions(on_topic_count)
    with tempfile.TemporaryDirectory() as tmp, Library(Path(tmp) / "library.sqlite", embedder) as library:
        add_lessons(library, embedder, [(text, "math", 0.8) for text in lessons], created_at=1_763_000_000)
        on_topic = best_similarities(library, on_topic_questions)
        off_topic = best_similarities(library, OFF_TOPIC)
    on_half, off_half = len(on_topic) // 2, len(off_topic) // 2
    chosen = choose_threshold(on_topic[:on_half], off_topic[:off_half])

    def rates(on: np.ndarray, off: np.ndarray, threshold: float) -> dict[str, float]:
        return {"on_topic_pass": round(float(np.mean(on >= threshold)), 3), "off_topic_pass": round(float(np.mean(off >= threshold)), 3)}

    def quantiles(values: np.ndarray) -> dict[str, float]:
        return {name: round(float(np.quantile(values, q)), 3) for name, q in (("p10", 0.1), ("median", 0.5), ("p90", 0.9))} | {
            "max": round(float(values.max()), 3)}

    return {
        "embedder": embedder.model_id,
        "lessons": len(lessons),
        "on_topic": {"source": f"GSM8K train, first {on_topic_count}", "count": len(on_topic)},
        "off_topic": {"source": "dso.bench.gate.OFF_TOPIC (hand-written)", "count": len(off_topic)},
        "calibration_half": {"on_topic": quantiles(on_topic[:on_half]), "off_topic": quantiles(off_topic[:off_half])},
        "balanced_accuracy_threshold": chosen,
        "default_threshold": DEFAULT_MIN_SIMILARITY,
        "held_out_half_at_balanced": rates(on_topic[on_half:], off_topic[off_half:], chosen),
        "held_out_half_at_default": rates(on_topic[on_half:], off_topic[off_half:], DEFAULT_MIN_SIMILARITY),
        "held_out_half_sweep": {f"{t:.2f}": rates(on_topic[on_half:], off_topic[off_half:], t) for t in SWEEP},
    }


def markdown_table(results: dict[str, Any]) -> str:
    """The README table: pass rates of on- and off-topic questions at both thresholds (held-out half)."""
    rows = ["| threshold | on-topic questions passing | off-topic questions passing |", "|---|---|---|"]
    for label, key, value in (("balanced accuracy", "held_out_half_at_balanced", results["balanced_accuracy_threshold"]),
                              ("default (`dso ask`)", "held_out_half_at_default", results["default_threshold"])):
        cell = results[key]
        rows.append(f"| {label}: {value:.2f} | {cell['on_topic_pass']:.0%} | {cell['off_topic_pass']:.0%} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """`python -m dso.bench.gate [--lessons FILE.jsonl]`: print the calibration as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lessons", type=Path, default=None, help="JSONL with a 'text' field per line (e.g. a `dso learn` output)")
    args = parser.parse_args(argv)
    lessons = CALIBRATION_LESSONS
    if args.lessons:
        lessons = tuple(json.loads(line)["text"] for line in args.lessons.read_text().splitlines() if line.strip())
    print(json.dumps(run(lessons), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
