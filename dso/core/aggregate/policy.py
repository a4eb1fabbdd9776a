"""When a cluster of reports enters the global library: the acceptance policy."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from dso.errors import AggregationError

# Slack for "voices >= min_nodes": voices are sums of ratios, so three whole voices may add to
# 2.9999999999999996 (weights differ by at most a few ulps in that case).
_VOICE_RTOL = 1e-12


def ceil_fraction(fraction: float, count: int) -> int:
    """ceil(fraction * count), computed on the decimal the float was written as (0.05 * 100 is 5, not
    5.000000000000001 rounded up to 6)."""
    return math.ceil(Fraction(str(fraction)) * count)


# How a cluster's confidence counts: "endorsed" (the default) counts as support only the voices that
# rate the experience >= min_confidence; "median" is the earlier rule, every voice counts and the
# weighted median confidence of all of them must reach min_confidence.
CONFIDENCE_RULES = ("endorsed", "median")


@dataclass(frozen=True)
class AcceptancePolicy:
    """Accept a cluster iff its *endorsing* voices (one per admitted node, however many copies or
    near-duplicates it sent; with the default ``confidence_rule="endorsed"``, those rating the
    experience >= min_confidence)

        count at least min_nodes whole voices, and
        weigh at least support_fraction x the active weight,

    where the active weight is the total weight of the admitted nodes with any report in the
    aggregation window, and a node of weight w counts as min(1, w / full) of a voice, with
    full = min(full_voice_weight, the active nodes' weighted median weight). With one weight per node
    (no reputation), every node is a whole voice and that is today's rule: support >=
    max(min_nodes, ceil(support_fraction x active reporters)). With reputation weights
    (`dso.core.reputation`, where 1/2 is two weeks of clean tenure), a node with no record yet
    counts as a fraction of a voice (a node admitted this epoch, 1/16 / 1/2 = 1/8), so a coalition
    admitted together cannot reach the bar on its own until it has a record, while honest nodes past
    their first weeks count fully even when lighter than most. The weighted median keeps a young
    network alive (when most of the weight is new, the typical weight is new and every node a whole
    voice), and nodes holding less than half of the active weight cannot lower it.

    Confidence. Under "endorsed", a voice below min_confidence is an abstention, not a vote against:
    the cluster's confidence is the weighted median over the endorsing voices. So attackers who
    report honest experiences at confidence 0 cannot push them out, however many of a niche
    cluster's voices they are (the bench lost 4 / 14 / 24 honest experiences at 20 / 33 / 45% to that
    under "median"). The price: a lesson most of its reporters doubt is accepted if enough others
    vouch for it. That costs no safety: the nodes that could get it accepted this way could get the
    same text accepted as a separate cluster anyway, since the support bar is the only bar.

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
    - ``min_confidence = 0.5``: a node endorses an experience it rates at even odds or better.
      Confidence is self-reported, so this is a weak gate on its own; under "median" it is the bar
      for the median of all voices, which a minority of the cluster's voices cannot push outside
      the honest range (but attackers can be the majority of a niche cluster's voices).
    - ``full_voice_weight = 0.5``: with `dso.core.reputation` weights, about two weeks of clean
      tenure. On the Byzantine bench, honest nodes with a record count fully (no liveness lost)
      while coalitions admitted two or three epochs ago count 0.16 and 0.19 of a voice per node
      and got nothing accepted up to 45% of the nodes.

    CAUTION: no threshold both admits niche knowledge and stops a large coalition. c colluding
    admitted nodes of typical weight get an experience of their own accepted iff they reach the bar;
    what bounds c is on-chain admission (and, for new nodes, reputation), not this rule. An
    experience that c colluders report is indistinguishable from niche knowledge that c honest
    nodes share: on the Byzantine bench, a bar that stops every coalition under a third of the
    weight (7 of 20 nodes) accepts 22 of the 37 honest experiences today's bar (3) accepts
    (README "Byzantine robustness"). With c below the bar, every accepted cluster holds honest
    endorsements: colluders can only ride on something honest nodes reported, and the robust
    statistics and the core-words text rule bound what they can change there while they are a minority of
    its weight. Raising support_fraction to 1/3 buys the seeds' guarantee against coalitions of
    under a third of the active weight, and their liveness problem with it.
    """

    min_nodes: int = 3
    support_fraction: float = 0.05
    min_confidence: float = 0.5
    confidence_rule: str = "endorsed"
    full_voice_weight: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.min_nodes, bool) or not isinstance(self.min_nodes, int) or self.min_nodes < 2:
            raise AggregationError(
                f"min_nodes must be an integer >= 2 (one node alone must never suffice); got {self.min_nodes!r}"
            )
        for name in ("support_fraction", "min_confidence"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise AggregationError(f"{name} must be a number in [0, 1]; got {value!r}")
        if self.confidence_rule not in CONFIDENCE_RULES:
            raise AggregationError(f"confidence_rule must be one of {list(CONFIDENCE_RULES)}; got {self.confidence_rule!r}")
        full = self.full_voice_weight
        if isinstance(full, bool) or not isinstance(full, (int, float)) or not math.isfinite(full) or full <= 0:
            raise AggregationError(f"full_voice_weight must be a finite number > 0; got {full!r}")

    def required_support(self, active_reporters: int) -> int:
        """Distinct nodes a cluster needs when `active_reporters` nodes of equal weight reported."""
        if isinstance(active_reporters, bool) or not isinstance(active_reporters, int) or active_reporters < 0:
            raise AggregationError(f"active_reporters must be an integer >= 0; got {active_reporters!r}")
        return max(self.min_nodes, ceil_fraction(self.support_fraction, active_reporters))

    def required_weight(self, active_weight: float) -> Fraction:
        """The endorsing weight a cluster needs: support_fraction x active_weight, exact (a
        Fraction: 0.05 x 100 is 5, as in `ceil_fraction`)."""
        if isinstance(active_weight, bool) or not isinstance(active_weight, (int, float)) or not math.isfinite(active_weight) or active_weight < 0:
            raise AggregationError(f"active_weight must be a finite number >= 0; got {active_weight!r}")
        return Fraction(str(self.support_fraction)) * Fraction(active_weight)

    def voice_weight(self, typical_weight: float) -> float:
        """The weight at which a node counts as a whole voice: min(full_voice_weight, typical_weight)."""
        if isinstance(typical_weight, bool) or not isinstance(typical_weight, (int, float)) or not math.isfinite(typical_weight) or typical_weight <= 0:
            raise AggregationError(f"typical_weight must be a finite number > 0; got {typical_weight!r}")
        return min(float(self.full_voice_weight), float(typical_weight))

    def endorses(self, confidence: float) -> bool:
        """Whether a voice at this confidence counts towards support (always, under "median")."""
        return self.confidence_rule == "median" or confidence >= self.min_confidence

    def rejection(
        self,
        support: int,
        confidence: float,
        active_reporters: int,
        *,
        voices: float | None = None,
        support_weight: float | None = None,
        active_weight: float | None = None,
    ) -> str | None:
        """Why a cluster is rejected, or None to accept it. `support` counts its endorsing nodes and
        `confidence` is their weighted median confidence. With node weights, `voices` is what those
        nodes count as (each min(1, w / `voice_weight`)), `support_weight` their weight and
        `active_weight` the window's; without (all None), every node is one voice of weight 1."""
        reasons = []
        if voices is None and support_weight is None and active_weight is None:
            if support < self.required_support(active_reporters):
                reasons.append(
                    f"support {support} < {self.required_support(active_reporters)} distinct nodes required "
                    f"(max(min_nodes={self.min_nodes}, ceil({self.support_fraction} x {active_reporters} active reporters)))"
                )
        elif voices is None or support_weight is None or active_weight is None:
            raise AggregationError("pass voices, support_weight and active_weight together, or none of them")
        elif voices < self.min_nodes * (1 - _VOICE_RTOL):
            reasons.append(
                f"support {support} node(s) counting {voices:.3g} voices < {self.min_nodes} required (min_nodes; a node "
                "lighter than a whole voice counts in proportion to its weight)"
            )
        elif Fraction(support_weight) < self.required_weight(active_weight):
            reasons.append(
                f"endorsing weight {support_weight:.4g} < {float(self.required_weight(active_weight)):.4g} required "
                f"({self.support_fraction} x active weight {active_weight:.4g})"
            )
        if support == 0 or confidence < self.min_confidence:
            reasons.append(f"median confidence {confidence:.6g} < {self.min_confidence}")
        return "; ".join(reasons) or None
