"""Reputation: each admitted node's weight in the aggregation, from what the chain records about it.

Pure: a compact record of chain events in, one weight per node out, in exact rational arithmetic
(`fractions.Fraction`, no floating-point pow or log), so every client that has read the same events
computes bit-identical weights, whatever the order it read them in.

What the chain records about a node, and so what its weight is made of (`NodeRecord`):

- **tenure**: e whole epochs (`EPOCH_BLOCKS` blocks) since its `NodeAdmitted` event, as of the block
  the client has synced to, accrued as t = e^2 / (e^2 + H^2) with H = TENURE_HALF_LIFE_EPOCHS (a
  Hill curve): 0 on admission, slow at first (1/50 after two epochs, 1/5 after a week), 1/2 after H,
  0.8 after 2H, approaching 1. Time is the one thing a node cannot manufacture: neither many batches
  nor many colluders make it pass faster, and the slow start means a coalition admitted together
  counts for little in its first weeks.
- **standing**: (A + 1) / (A + 1 + B), where A is the number of distinct epochs in which the DAO
  accepted one of its batches (capped at GOOD_EPOCHS_CAP) and B = REJECTED x rejected batches +
  REVOKED_BATCH x batches revoked after acceptance + REVOKED_LEAF x experiences revoked by leaf
  challenge. The Beta-reputation mean (Josang and Ismail 2002) with a one-sided prior: a node with no
  bad record has standing 1. Good evidence counts per epoch, not per batch, so many tiny batches in
  one epoch count once (reputation farming buys nothing); and it is capped, so a long clean record
  cannot absorb an attack: ten revoked leaves take a node with the capped ten good epochs to 11/31.

    weight = NEW_NODE_WEIGHT + (1 - NEW_NODE_WEIGHT) x tenure x standing,

rounded down to a multiple of WEIGHT_QUANTUM (so weights change rarely, and a cluster needs
recomputing only when one of its voices' weight crossed a step). Bounds: NEW_NODE_WEIGHT (1/16) for
a node admitted this epoch or with a bad record, and below 1 for everyone: no node ever outweighs a
mature node with a clean record, so a node that behaves for years and then attacks (a slow burn) is
never stronger than an honest node, and loses weight as soon as the DAO rejects or revokes its
work. New nodes start low but not at zero: a network of new nodes still aggregates (equal weights
give the unweighted result), and an honest newcomer is heard, faintly.

Anchors, and where this departs from them:

- EigenTrust (Kamvar, Schlosser, Garcia-Molina, WWW 2003) anchors trust in pre-trusted peers, so a
  colluding group cannot bootstrap trust by vouching for each other. Here the anchor is the DAO
  itself: weight comes only from its decisions (accepted, rejected, revoked) and from chain time,
  never from one node rating another, so there is no transitive trust for colluders to farm.
- Bittensor's Yuma consensus clips each weight at the stake-weighted median and lets bonds accrue
  as an exponential moving average. Here every weight is clipped at one absolute cap (a mature,
  clean node), not at a median of the nodes' own weights: a median moves with whoever holds the
  majority of nodes, and a coalition admitted together could drag it. Tenure accrues like a bond
  (saturating in time), in a rational form so that every client rounds identically; the acceptance
  policy then counts a node as a whole voice from half the cap (`AcceptancePolicy.full_voice_weight`).

Breakdown point. Weighted statistics break at half of the *weight*. With weights in
[NEW_NODE_WEIGHT, 1), a coalition of c of n nodes holds half the weight somewhere between
c/n = w0/(1 + w0) (mature attackers, all honest nodes new) and c/n = 1/(1 + w0) (new attackers,
mature honest nodes), with w0 = NEW_NODE_WEIGHT: 5.9% and 94.1%. With equal records it is
exactly half the nodes, as without reputation.

CAUTION: reputation helps only against attackers whose chain record is shorter or worse than the
honest nodes'. Against a coalition that was admitted early and behaved (a slow burn), it changes
nothing until the DAO rejects or revokes its work; and in a network whose honest nodes mostly
joined after such a coalition, it makes the coalition relatively stronger. What bounds both is the
DAO's admission vote.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from dso.errors import AggregationError

# One epoch: about a day of 12-second blocks. Tenure and good evidence are counted in whole epochs.
EPOCH_BLOCKS = 7_200
# Tenure reaches 1/2 after two weeks of epochs, 0.8 after four weeks, 0.95 after nine.
TENURE_HALF_LIFE_EPOCHS = 14
# A node's weight on admission, and the floor for any admitted node.
NEW_NODE_WEIGHT = Fraction(1, 16)
# Weights are rounded down to multiples of this.
WEIGHT_QUANTUM = Fraction(1, 64)
# At most this many epochs of accepted work count as good evidence.
GOOD_EPOCHS_CAP = 10
# Bad evidence per event: a rejected batch (the DAO may reject honest work too), a batch revoked
# after acceptance, and one experience revoked by leaf challenge (proven bad content).
REJECTED = 1
REVOKED_BATCH = 4
REVOKED_LEAF = 2


@dataclass(frozen=True)
class NodeRecord:
    """What the chain records about one admitted node: the block of its `NodeAdmitted` event, the
    number of distinct epochs in which the DAO accepted one of its batches (batches revoked later
    excluded), and its rejected batches, revoked batches and revoked experiences."""

    admitted_block: int
    accepted_epochs: int = 0
    rejected_batches: int = 0
    revoked_batches: int = 0
    revoked_leaves: int = 0

    def __post_init__(self) -> None:
        for name in ("admitted_block", "accepted_epochs", "rejected_batches", "revoked_batches", "revoked_leaves"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise AggregationError(f"a node record's {name} must be an integer >= 0; got {value!r}")


@dataclass(frozen=True)
class BatchOutcome:
    """One decided batch: its submitting node, the DAO's verdict (``accepted``, ``rejected``, or
    ``revoked`` after acceptance) and the block in which it was decided."""

    node_id: int
    status: str
    decided_block: int


def epoch_of(block: int) -> int:
    """The epoch a block falls in."""
    return block // EPOCH_BLOCKS


def node_records(
    admitted_blocks: Mapping[int, int],
    batches: Iterable[BatchOutcome],
    revoked_leaves: Mapping[int, int] | None = None,
) -> dict[int, NodeRecord]:
    """Fold the chain's record into one `NodeRecord` per node in `admitted_blocks` (node id -> block
    of its admission). `batches` are the decided batches (pending ones are left out by the caller);
    `revoked_leaves` counts experiences revoked by leaf challenge per node. Batches and revocations
    of nodes not in `admitted_blocks` are ignored. Order-independent: sets and counts only."""
    good: dict[int, set[int]] = {node: set() for node in admitted_blocks}
    rejected = dict.fromkeys(admitted_blocks, 0)
    revoked = dict.fromkeys(admitted_blocks, 0)
    for batch in batches:
        if batch.node_id not in good:
            continue
        if batch.status == "accepted":
            good[batch.node_id].add(epoch_of(batch.decided_block))
        elif batch.status == "rejected":
            rejected[batch.node_id] += 1
        elif batch.status == "revoked":
            revoked[batch.node_id] += 1
        else:
            raise AggregationError(f"a decided batch is accepted, rejected or revoked; got {batch.status!r}")
    leaves = revoked_leaves or {}
    return {
        node: NodeRecord(block, len(good[node]), rejected[node], revoked[node], int(leaves.get(node, 0)))
        for node, block in admitted_blocks.items()
    }


def tenure(record: NodeRecord, as_of_block: int) -> Fraction:
    """e^2 / (e^2 + TENURE_HALF_LIFE_EPOCHS^2), e = whole epochs from admission to `as_of_block`."""
    epochs = max(0, epoch_of(as_of_block) - epoch_of(record.admitted_block))
    return Fraction(epochs**2, epochs**2 + TENURE_HALF_LIFE_EPOCHS**2)


def standing(record: NodeRecord) -> Fraction:
    """(A + 1) / (A + 1 + B): capped good epochs A against weighted bad evidence B."""
    good = min(record.accepted_epochs, GOOD_EPOCHS_CAP) + 1
    bad = REJECTED * record.rejected_batches + REVOKED_BATCH * record.revoked_batches + REVOKED_LEAF * record.revoked_leaves
    return Fraction(good, good + bad)


def node_weight(record: NodeRecord, as_of_block: int) -> float:
    """One node's weight as of `as_of_block`, in [NEW_NODE_WEIGHT, 1) (see the module docstring)."""
    if isinstance(as_of_block, bool) or not isinstance(as_of_block, int) or as_of_block < 0:
        raise AggregationError(f"as_of_block must be a block number >= 0; got {as_of_block!r}")
    raw = NEW_NODE_WEIGHT + (1 - NEW_NODE_WEIGHT) * tenure(record, as_of_block) * standing(record)
    steps = raw // WEIGHT_QUANTUM
    return float(max(NEW_NODE_WEIGHT, steps * WEIGHT_QUANTUM))


def reputation_weights(records: Mapping[int, NodeRecord], as_of_block: int) -> dict[int, float]:
    """node id -> weight for every node in `records`, as of `as_of_block` (the block the client has
    synced to: every client at the same block, or in the same epoch, gets the same weights)."""
    return {node: node_weight(record, as_of_block) for node, record in sorted(records.items())}
