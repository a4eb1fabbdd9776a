"""When a cluster of reports enters the global library: the acceptance policy."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from dso.errors import AggregationError


def ceil_fraction(fraction: float, count: int) -> int:
    """ceil(fraction * count), computed on the decimal the float was written as (0.05 * 100 is 5, not
    5.000000000000001 rounded up to 6)."""
    return math.ceil(Fraction(str(fraction)) * count)


@dataclass(frozen=True)
class AcceptancePolicy:
    """Accept a cluster iff

        support >= required = max(min_nodes, ceil(support_fraction * active_reporters))
        and median confidence >= min_confidence

    where `support` counts distinct admitted nodes in the cluster (one voice per node, however many
    copies or near-duplicates it sent), the median runs over those voices, and `active_reporters` is
    the number of distinct admitted nodes with any report in the aggregation window.

    Why not the seeds' rule, ``median_conf * min(unique_nodes / N, 1) >= 0.66``:

    - It needs unique_nodes >= 0.66 N even at confidence 1: two thirds of *all* nodes must report the
      same insight. With N = 100, ten honest nodes at confidence 0.9 score 0.9 * 10/100 = 0.09; 73
      nodes at 0.9 still fail (0.657), it takes 74 (or 66 at confidence 1.0). Nodes specialise by
      domain, so as N grows almost nothing is ever accepted: liveness falls like 1/N.
    - It trades confidence against support: 100 % of nodes at 0.66 pass, and so do 67 % at 0.99.
    - In small networks it is not safe either: N = 3, two colluding nodes at 1.0 score 0.667 and pass.
    - The seed code takes the median over copies, not nodes (one node sending 50 copies at 1.0 sets
      it), and clusters by Python's per-process salted ``hash(text)``, so two clients disagree.

    The defaults, and why:

    - ``min_nodes = 3``: the fewest voices at which one liar cannot steer the statistics. With two,
      the median is the mean of both, so either node alone sets the confidence anywhere in [0, 1];
      with three, one liar cannot move the median confidence or a vector coordinate outside what
      the two honest voices span, nor win the medoid from farther away than they are apart. So one
      node (whatever it floods) and any two colluding nodes never get an experience accepted on
      their own. Values below 2 are refused: a single node must never suffice.
    - ``support_fraction = 0.05`` of active reporters: the bar rises with participation, not with the
      registry's size, and quiet nodes do not block acceptance. 100 active: max(3, ceil(5.0)) = 5, so
      the ten honest nodes above are accepted; 1,000 active: 50; up to 60 active, ceil(0.05 * 60) = 3
      and min_nodes governs. Reports from nodes outside the admitted set are dropped before counting,
      so they neither add support nor raise the bar.
    - ``min_confidence = 0.5``: at least half of the voting weight rates the experience at even odds
      or better (every voice above the median is at least the median). Confidence is self-reported,
      so this is a weak gate on its own; its median cannot be pushed outside the honest range by a
      minority of the cluster's voices.

    CAUTION: no threshold both admits niche knowledge and stops a large coalition. c colluding
    admitted nodes get an experience of their own accepted iff c >= required; what bounds c is
    on-chain admission, not this rule. With c < required, every accepted cluster holds at least
    required - c honest voices within cosine 0.9 of its leader: colluders can only ride on something
    honest nodes reported. They can still outnumber those honest voices inside the cluster, and then
    its text, confidence and vector are theirs (bounded to that neighbourhood). Raising
    support_fraction to 1/3 buys the seeds' guarantee against coalitions of under a third of active
    nodes, and their liveness problem with it.
    """

    min_nodes: int = 3
    support_fraction: float = 0.05
    min_confidence: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.min_nodes, bool) or not isinstance(self.min_nodes, int) or self.min_nodes < 2:
            raise AggregationError(
                f"min_nodes must be an integer >= 2 (one node alone must never suffice); got {self.min_nodes!r}"
            )
        for name in ("support_fraction", "min_confidence"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise AggregationError(f"{name} must be a number in [0, 1]; got {value!r}")

    def required_support(self, active_reporters: int) -> int:
        """Distinct nodes a cluster needs when `active_reporters` nodes reported in the window."""
        if isinstance(active_reporters, bool) or not isinstance(active_reporters, int) or active_reporters < 0:
            raise AggregationError(f"active_reporters must be an integer >= 0; got {active_reporters!r}")
        return max(self.min_nodes, ceil_fraction(self.support_fraction, active_reporters))

    def rejection(self, support: int, confidence: float, active_reporters: int) -> str | None:
        """Why a cluster with this support and median confidence is rejected, or None to accept it."""
        required = self.required_support(active_reporters)
        reasons = []
        if support < required:
            reasons.append(
                f"support {support} < {required} distinct nodes required "
                f"(max(min_nodes={self.min_nodes}, ceil({self.support_fraction} x {active_reporters} active reporters)))"
            )
        if confidence < self.min_confidence:
            reasons.append(f"median confidence {confidence:.6g} < {self.min_confidence}")
        return "; ".join(reasons) or None
