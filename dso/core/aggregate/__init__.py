"""Byzantine-robust, Sybil-weighted aggregation of experience reports (pure: no I/O, no chain).

Reports of the same experience from many nodes are clustered (`cluster`), each admitted node gets
one voice per cluster however many copies it sends, robust statistics are taken over the voices,
and an `AcceptancePolicy` decides what enters the global library (`consensus.aggregate`).

One aggregator per module, each citing its paper and stating its breakdown point:

- `median`: coordinate-wise weighted median (Yin et al. 2018), 1/2 per coordinate; the default.
- `trimmed_mean`: coordinate-wise trimmed mean (Yin et al. 2018), f/n.
- `geometric_median`: smoothed Weiszfeld (Pillutla et al. 2019; Weiszfeld 1937), 1/2.
- `krum`: Krum and Multi-Krum (Blanchard et al. 2017), needs n > 2f + 2.
- `centered_clipping`: centered clipping (Karimireddy, He, Jaggi 2021), bounded influence per voice.
- `medoid`: the most central input (Kaufman and Rousseeuw 1987), bounded at 1/2.
- `core_words`: the text with the fewest words outside the cluster's per-word weighted majority
  (ROVER-style vote per word), 1/2 against inserted payloads; picks the text.
- `majority`: per-bit majority vote (Bernstein et al. 2019), 1/2 per bit; for BitDelta codes.
- `clipped_code`: BitDelta consensus by centered clipping around a geometric-median start on
  scale-capped codes, majority kept where 2/3 agree; the code rule.

Node weights come from the chain's record (`dso.core.reputation`).
"""

from dso.core.aggregate.centered_clipping import centered_clipping
from dso.core.aggregate.clipped_code import clipped_bitdelta_consensus
from dso.core.aggregate.cluster import NEAR_DUPLICATE_COSINE, cluster_reports
from dso.core.aggregate.consensus import (
    CODE_RULES,
    DEFAULT_BYZANTINE_FRACTION,
    TEXT_RULES,
    VECTOR_AGGREGATORS,
    Aggregation,
    ClusterResult,
    VectorAggregator,
    aggregate,
)
from dso.core.aggregate.core_words import core_words, core_words_index
from dso.core.aggregate.geometric_median import geometric_median, weiszfeld_steps
from dso.core.aggregate.krum import krum, krum_scores, multi_krum
from dso.core.aggregate.majority import bitdelta_consensus, majority_bits
from dso.core.aggregate.median import coordinate_median, weighted_median
from dso.core.aggregate.medoid import medoid_costs, medoid_index
from dso.core.aggregate.policy import AcceptancePolicy
from dso.core.aggregate.records import Report
from dso.core.aggregate.trimmed_mean import trimmed_mean

__all__ = [
    "CODE_RULES",
    "DEFAULT_BYZANTINE_FRACTION",
    "NEAR_DUPLICATE_COSINE",
    "TEXT_RULES",
    "VECTOR_AGGREGATORS",
    "AcceptancePolicy",
    "Aggregation",
    "ClusterResult",
    "Report",
    "VectorAggregator",
    "aggregate",
    "bitdelta_consensus",
    "centered_clipping",
    "clipped_bitdelta_consensus",
    "cluster_reports",
    "core_words",
    "core_words_index",
    "coordinate_median",
    "geometric_median",
    "krum",
    "krum_scores",
    "majority_bits",
    "medoid_costs",
    "medoid_index",
    "multi_krum",
    "trimmed_mean",
    "weighted_median",
    "weiszfeld_steps",
]
