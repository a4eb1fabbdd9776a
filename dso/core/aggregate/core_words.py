"""Core words: the text with the fewest words outside the cluster's core vocabulary. Picks a
cluster's text.

Papers: J. G. Fiscus, "A post-processing system to yield reduced word error rates: Recognizer Output
Voting Error Reduction (ROVER)", IEEE ASRU 1997 (a weighted vote per word across hypotheses; here
without ROVER's alignment: a set of words, not a sequence); L. Kaufman, P. J. Rousseeuw, "Clustering
by means of medoids", 1987 (the embedding medoid that breaks ties).

Each text becomes its set of words (``\\w+`` runs, case-folded). The cluster's *core* is the set of
words that voices holding more than half of the weight use: the per-word weighted majority. Each
text's *extras* are its words outside the core, its *missing* words the core words it lacks. The
chosen text has the fewest extras; among those, the fewest missing words; then the most central
embedding (`medoid_costs`); then the lowest index.

Why: the embedding medoid bounds *where* the chosen text lies, not *whose* it is, and an embedding
barely registers a payload appended to an honest wording (" Never double-check the result.":
cosine 0.99 to the wording it extends). Words register it. Guarantee, while the voices that add a
payload hold less than half of the cluster's weight: none of the payload's words that the others
do not use can enter the core, so a text made of an honest voice's text plus inserted words
(appended, prepended or anywhere) has more extras than that honest text and is never chosen over
it; and attackers can win a cluster only with a text that has fewer extras than every honest text,
which an inserted payload makes harder, not easier. Breakdown point 1/2 of the cluster's weight in
that sense.

Why extras first and not the symmetric difference with the core (a word medoid): words the attackers
share push their own base wording's words into the core, so with a weighted medoid the honest texts
start "missing" them and the attackers' base becomes the most central text. On the Byzantine bench
the word medoid let a minority of a cluster's voices take 1-2 clusters at 10-20%; extras first, none
(README "Byzantine robustness", riding attacks).

WARNING: a bag of words. Reordering words the cluster agrees on, or a payload made of such words, is
invisible to it. Extras first also means a text that drops a wording's own extra words *and* a core
word (a "not") beats an honest text that keeps its extras; the missing count only breaks ties. The
leaf challenge is the defence against both. Word boundaries follow Python's Unicode tables; clients
on Python versions with different tables may split rare scripts differently.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from dso.core.aggregate._checks import check_weights
from dso.core.aggregate.medoid import medoid_costs
from dso.errors import AggregationError

_WORD = re.compile(r"\w+")


@lru_cache(maxsize=1 << 16)
def words(text: str) -> frozenset[str]:
    """The set of case-folded ``\\w+`` runs in `text` (cached: a library aggregates the same texts
    at every sync)."""
    return frozenset(_WORD.findall(text.casefold()))


def core_words(texts: Sequence[str], weights: np.ndarray | None = None) -> frozenset[str]:
    """The words that voices holding more than half of the weight use (one text per voice)."""
    w = check_weights(weights, len(texts))
    if len(w) and (w == w[0]).all():
        # Equal weights: count voices, per distinct text (exact, and the same core for any common
        # weight, where summing float weights could round an exact half either way).
        count_of: dict[str, int] = {}
        for text, count in Counter(texts).items():
            for word in words(text):
                count_of[word] = count_of.get(word, 0) + count
        return frozenset(word for word, count in count_of.items() if 2 * count > len(texts))
    weight_of: dict[str, float] = {}
    for text, weight in zip(texts, w.tolist()):
        for word in words(text):
            weight_of[word] = weight_of.get(word, 0.0) + weight
    total = float(w.sum())
    return frozenset(word for word, weight in weight_of.items() if 2 * weight > total)


def core_words_index(texts: Sequence[str], vectors: np.ndarray, weights: np.ndarray | None = None) -> int:
    """Index of the text with the fewest extras, then the fewest missing core words, then the least
    embedding medoid cost of its (n, d) `vectors`, then the lowest index (see the module docstring)."""
    if not texts or any(not isinstance(t, str) for t in texts):
        raise AggregationError("texts must be a non-empty sequence of strings")
    if len(vectors) != len(texts):
        raise AggregationError(f"one vector per text: {len(texts)} texts, {len(vectors)} vectors")
    core = core_words(texts, weights)
    key_of = {text: (len(words(text) - core), len(core - words(text))) for text in set(texts)}
    keys = [key_of[text] for text in texts]
    best = [i for i, key in enumerate(keys) if key == min(keys)]
    if len(best) == 1:
        return best[0]
    central = medoid_costs(vectors, weights)
    return best[int(np.argmin(central[best]))]
