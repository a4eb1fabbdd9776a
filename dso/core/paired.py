"""Paired comparison of two conditions answered on the same questions: accuracy difference, its
bootstrap interval, and McNemar's exact test.

Why paired: every condition of the agent benchmark answers the same held-out questions, and most
of the variance in accuracy is between questions (some are easy for every condition). Comparing
per question removes it: the difference of two accuracies over n shared questions is resampled by
question (`paired_bootstrap_interval`, Efron's percentile bootstrap over question indices), and
only the questions the two conditions disagree on carry evidence about which is better
(`mcnemar_exact_p`: McNemar 1947, exact form: under "no difference" each discordant question is
a fair coin, so the two-sided p is the binomial tail of the smaller count, doubled).

With 40 questions of which a third are discordant (issue 10's 1.5B measurement: 13 of 40), a 95%
interval of a difference is about ±0.18 wide: only large effects are resolved. The figures must be
reported with that interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from typing import Sequence

import numpy as np

from dso.errors import InputError

BOOTSTRAP_RESAMPLES = 10_000


@dataclass(frozen=True)
class PairedComparison:
    """`treatment` vs `baseline` on `n` shared questions: accuracy difference (treatment minus
    baseline), its 95% bootstrap interval, the discordant counts (`gained`: right only with the
    treatment; `lost`: right only without it) and McNemar's exact two-sided p."""

    n: int
    baseline_accuracy: float
    treatment_accuracy: float
    difference: float
    interval: tuple[float, float]
    gained: int
    lost: int
    p_value: float


def mcnemar_exact_p(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p for `gained` and `lost` discordant pairs: 2 * P(X <= min) for
    X ~ Binomial(gained + lost, 1/2), capped at 1. 1.0 when there is no discordant pair.
    Example: 10 vs 3 gives 2 * 378 / 8192 = 0.0923."""
    for name, value in (("gained", gained), ("lost", lost)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise InputError(f"{name} must be a whole number >= 0; got {value!r}")
    n = int(gained) + int(lost)
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(gained, lost) + 1))
    return min(1.0, 2.0 * tail / 2**n)


def paired_bootstrap_interval(baseline: Sequence[bool], treatment: Sequence[bool], resamples: int = BOOTSTRAP_RESAMPLES,
                              seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(treatment) - mean(baseline), resampling questions
    (pairs) with replacement; seeded, so the same outcomes give the same interval."""
    base, treat = _outcomes(baseline, treatment)
    if not 0.0 < level < 1.0 or isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 100:
        raise InputError(f"level must be in (0, 1) and resamples a whole number >= 100; got {level!r}, {resamples!r}")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(base), size=(resamples, len(base)))
    differences = (treat[picks] - base[picks]).mean(axis=1)
    alpha = (1.0 - level) / 2
    low, high = np.quantile(differences, [alpha, 1.0 - alpha])
    return float(low), float(high)


def compare_paired(baseline: Sequence[bool], treatment: Sequence[bool], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> PairedComparison:
    """Everything the benchmark reports for one condition against the baseline, question by question."""
    base, treat = _outcomes(baseline, treatment)
    gained = int(np.sum((treat == 1) & (base == 0)))
    lost = int(np.sum((treat == 0) & (base == 1)))
    return PairedComparison(len(base), float(base.mean()), float(treat.mean()), float(treat.mean() - base.mean()),
                            paired_bootstrap_interval(baseline, treatment, resamples, seed), gained, lost, mcnemar_exact_p(gained, lost))


def _outcomes(baseline: Sequence[bool], treatment: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    base, treat = (np.asarray([_as_bit(v) for v in values], dtype=np.float64) for values in (baseline, treatment))
    if len(base) != len(treat) or not len(base):
        raise InputError(f"paired outcomes need the same, non-zero number of questions; got {len(base)} and {len(treat)}")
    return base, treat


def _as_bit(value: object) -> int:
    if isinstance(value, (bool, np.bool_)) or value in (0, 1):
        return int(bool(value))
    raise InputError(f"an outcome is right (True/1) or wrong (False/0); got {value!r}")
