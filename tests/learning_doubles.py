"""A verifier for learning-loop tests (the pluggable `dso.core.verifiers.Verifier` interface)."""

from __future__ import annotations

from dso.core.verifiers import Verdict


class Alternating:
    """Reward 1, 0, 1, 0, ... in call order, whatever the reply says: every group of rollouts has
    reward variance, so the loop's learning steps run whatever the model answered."""

    name = "alternating"

    def __init__(self) -> None:
        self.calls = 0

    def verify(self, reply: str, reference: str) -> Verdict:
        self.calls += 1
        return Verdict(float(self.calls % 2), reply[-10:], reference)
