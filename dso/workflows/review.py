"""What DAO members review before they vote: batches and proposals with their deadlines, tallies and
quorum progress; one batch fetched and verified, with what its experiences would add to a library;
the votes and reasons cast on a batch.

Every interface that shows these (`dso batches`/`show`/`dao proposals --format json`, `dso ui`)
builds them here, so their JSON shapes are defined once (README, "JSON output"). Each `*_json`
function returns plain JSON types; fields are only ever added, never renamed or removed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from dso.core.aggregate import NEAR_DUPLICATE_COSINE
from dso.core.batch import BatchDocument, summarize
from dso.edges.chain import BatchInfo, ProposalInfo, ProposalKind, Registry, Status, Tally
from dso.edges.ipfs import ContentStore
from dso.errors import BatchError, CidMismatch, ContentNotFound, DsoError, InvalidCid, ObjectTooLarge, StoreError
from dso.workflows.library import Library
from dso.workflows.verify import Commitment, fetch_and_verify, find_commitment


def utc_text(timestamp: int) -> str:
    """A unix time as ISO 8601 UTC ("2026-12-02T08:00:00Z")."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def outcome_now(tally: Tally, now: int) -> Status:
    """What `finalize` would decide at chain time `now`: ACCEPTED or REJECTED once decidable,
    PENDING while the remaining electorate could still change the outcome (the contract's
    `_decide`), or the tally's own status once it is decided."""
    if tally.status != Status.PENDING:
        return tally.status
    cast = tally.yes + tally.no
    quorum = tally.quorum
    if now >= tally.deadline:
        return Status.ACCEPTED if cast >= quorum and 3 * tally.yes >= 2 * cast else Status.REJECTED
    remaining = max(tally.electorate - cast, 0)
    if cast >= quorum and 3 * tally.yes >= 2 * (cast + remaining):
        return Status.ACCEPTED
    if cast + remaining < quorum or 3 * (tally.yes + remaining) < 2 * (cast + remaining):
        return Status.REJECTED
    return Status.PENDING


def tally_json(tally: Tally, now: int) -> dict[str, Any]:
    """A tally for programs: votes, quorum progress, deadline (unix seconds and UTC) and time left at
    chain time `now`, and what finalizing now would decide (`finalizable` when that is not pending)."""
    outcome = outcome_now(tally, now)
    return {
        "status": tally.status.name.lower(),
        "yes": tally.yes,
        "no": tally.no,
        "votes": tally.yes + tally.no,
        "electorate": tally.electorate,
        "quorum": tally.quorum,
        "quorum_bps": tally.quorum_bps,
        "snapshot": tally.snapshot,
        "deadline": tally.deadline,
        "deadline_utc": utc_text(tally.deadline),
        "seconds_left": max(tally.deadline - now, 0),
        "outcome_now": outcome.name.lower(),
        "finalizable": tally.status == Status.PENDING and outcome != Status.PENDING,
    }


@dataclass(frozen=True)
class BatchRow:
    """A batch as a listing shows it: its on-chain state, its node's address and when it was
    submitted (its deadline minus the voting period of its snapshot)."""

    info: BatchInfo
    node: str | None
    submitted_at: int


@dataclass(frozen=True)
class Listing:
    """Batches or proposals (pending first, soonest deadline first; then newest first) and the chain
    time their deadlines are measured against."""

    now: int
    batches: tuple[BatchRow, ...] = ()
    proposals: tuple[ProposalInfo, ...] = ()


def _period_at(periods: Sequence[tuple[int, int]], snapshot: int) -> int:
    period = periods[0][1] if periods else 0
    for clock, value in periods:
        if clock <= snapshot:
            period = value
    return period


def _pending_first(deadline_and_status: tuple[int, Status], position: int) -> tuple[int, int]:
    deadline, status = deadline_and_status
    return (0, deadline) if status == Status.PENDING else (1, -position)


def list_batches(registry: Registry, deploy_block: int = 0) -> Listing:
    """Every batch, pending first (soonest deadline first), then the decided ones newest first."""
    addresses = {node_id: address for node_id, address, _ in registry.nodes()}
    periods = registry.voting_periods(deploy_block)
    infos = list(registry.all_batches())
    rows = [BatchRow(i, addresses.get(i.node_id), i.tally.deadline - _period_at(periods, i.tally.snapshot)) for i in infos]
    order = sorted(range(len(rows)), key=lambda n: _pending_first((rows[n].info.tally.deadline, rows[n].info.tally.status), n))
    return Listing(registry.chain_time(), batches=tuple(rows[n] for n in order))


def list_proposals(registry: Registry) -> Listing:
    """Every governance proposal, pending first (soonest deadline first), then newest first."""
    found: list[ProposalInfo] = []
    for offset in range(0, registry.proposal_count(), 200):
        found.extend(registry.proposals(offset, 200))
    order = sorted(range(len(found)), key=lambda n: _pending_first((found[n].tally.deadline, found[n].tally.status), n))
    return Listing(registry.chain_time(), proposals=tuple(found[n] for n in order))


def batch_json(row: BatchRow, now: int) -> dict[str, Any]:
    """One batch for programs (`dso batches --format json`, `dso ui`)."""
    return {
        "root": "0x" + row.info.root.hex(),
        "node_id": row.info.node_id,
        "node": row.node,
        "count": row.info.count,
        "submitted_at": row.submitted_at,
        "submitted_utc": utc_text(row.submitted_at),
        "tally": tally_json(row.info.tally, now),
    }


def proposal_target(p: ProposalInfo) -> str:
    """What a proposal acts on, in one line: an account, a batch, a batch's leaf, or parameters."""
    if p.kind == ProposalKind.REVOKE_BATCH:
        return "0x" + p.batch.hex()
    if p.kind == ProposalKind.REVOKE_EXPERIENCE:
        return f"0x{p.batch.hex()} leaf {p.leaf_index}"
    if p.kind == ProposalKind.SET_VOTING_PARAMETERS:
        return f"voting period {p.voting_period} s, quorum {p.quorum_bps} bps"
    return p.account


def proposal_json(p: ProposalInfo, now: int) -> dict[str, Any]:
    """One proposal for programs (`dso dao proposals --format json`, `dso ui`). Fields that do not
    apply to its kind are null."""
    batch = p.kind in (ProposalKind.REVOKE_BATCH, ProposalKind.REVOKE_EXPERIENCE)
    account = p.kind in (ProposalKind.ADD_MEMBER, ProposalKind.REMOVE_MEMBER, ProposalKind.ADMIT_NODE, ProposalKind.REMOVE_NODE)
    return {
        "id": p.proposal_id,
        "kind": p.kind.name.lower(),
        "target": proposal_target(p),
        "account": p.account if account else None,
        "batch": "0x" + p.batch.hex() if batch else None,
        "leaf_index": p.leaf_index if p.kind == ProposalKind.REVOKE_EXPERIENCE else None,
        "leaf_hash": "0x" + p.leaf_hash.hex() if p.kind == ProposalKind.REVOKE_EXPERIENCE else None,
        "voting_period": p.voting_period if p.kind == ProposalKind.SET_VOTING_PARAMETERS else None,
        "quorum_bps": p.quorum_bps if p.kind == ProposalKind.SET_VOTING_PARAMETERS else None,
        "tally": tally_json(p.tally, now),
    }


# ---------------------------------------------------------------------- one batch


@dataclass(frozen=True)
class LibraryMatch:
    """The library entry nearest to one experience of a batch under review: `relation` is
    "already in the library" (same id), "would support" (a network entry at cosine >= the
    near-duplicate bar: accepting adds this node's voice), "duplicates a local entry", or "new"."""

    relation: str
    entry_id: str | None = None
    text: str | None = None
    similarity: float | None = None
    support: int = 0


@dataclass(frozen=True)
class Vote:
    """One member's vote on a batch, with the reason given in the same call, if any."""

    voter: str
    support: bool
    reason: str | None
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class BatchReview:
    """One batch as a member reviews it. `verification` is "verified" (CID, root, count, schema and
    header/leaf node = on-chain submitter all check), "refused" (it fails verification for good:
    `problem` says why) or "unavailable" (the content store could not serve matching bytes now).
    `matches[i]` compares experience i with the library (None without a library)."""

    row: BatchRow
    commitment: Commitment | None
    submitter: str | None
    verification: str
    problem: str | None
    document: BatchDocument | None
    matches: tuple[LibraryMatch | None, ...]
    votes: tuple[Vote, ...]


def review_batch(registry: Registry, store: ContentStore, root: bytes, deploy_block: int = 0, library: Library | None = None) -> BatchReview:
    """Fetch batch `root` by its committed CID and verify it (`verify.fetch_and_verify`, the one
    path every reader takes), compare its experiences with `library`, and collect its votes and
    reasons. A refusal is reported, never raised: members must see what they would vote on."""
    row = next((r for r in list_batches(registry, deploy_block).batches if r.info.root == root), None)
    if row is None:
        raise DsoError(f"no batch 0x{root.hex()} on registry {registry.address}")
    commitment: Commitment | None = None
    submitter: bytes | None = None
    document = None
    problem = None
    verification = "verified"
    try:
        commitment, submitter = find_commitment(registry, root, deploy_block)
        document = fetch_and_verify(store, root.hex(), commitment, submitter)
    except (BatchError, InvalidCid) as exc:
        verification, problem = "refused", f"{type(exc).__name__}: {exc}"
    except (ContentNotFound, CidMismatch, ObjectTooLarge, StoreError) as exc:
        verification, problem = "unavailable", f"{type(exc).__name__}: {exc}"
    matches: tuple[LibraryMatch | None, ...] = ()
    if document is not None:
        matches = tuple(library_matches(library, document)) if library is not None else (None,) * len(document.experiences)
    return BatchReview(row, commitment, "0x" + submitter.hex() if submitter else None, verification, problem, document, matches,
                       tuple(batch_votes(registry, root, deploy_block)))


def library_matches(library: Library, document: BatchDocument) -> list[LibraryMatch]:
    """For each experience of `document`, the nearest visible library entry and what accepting the
    batch would do to it (see `LibraryMatch`). The similarity is the float cosine of both texts'
    embeddings, computed here: the library may not have embedded its entries yet (sync does not
    wait for the model), and a code-only score runs below the float cosine the bar is set for."""
    texts = [e.text for e in document.experiences]
    if not texts or len(library) == 0:
        return [LibraryMatch("new") for _ in texts]
    vectors = np.asarray(library.embedder.embed(texts), dtype=np.float64)
    nearest = [next(iter(library.search(e.text, k=1, query_vector=v)), None) for e, v in zip(document.experiences, vectors)]
    found = [hit.experience.text for hit in nearest if hit is not None]
    theirs = iter(np.asarray(library.embedder.embed(found), dtype=np.float64) if found else [])
    out = []
    for experience, vector, hit in zip(document.experiences, vectors, nearest):
        if hit is None:
            out.append(LibraryMatch("new"))
            continue
        other = next(theirs)
        similarity = float(vector @ other / (np.linalg.norm(vector) * np.linalg.norm(other)))
        entry = hit.experience.experience_id
        if entry == experience.experience_id:
            relation = "already in the library"
        elif similarity >= NEAR_DUPLICATE_COSINE:
            relation = "would support" if hit.origin == "network" else "duplicates a local entry"
        else:
            relation = "new"
        out.append(LibraryMatch(relation, entry, hit.experience.text, round(similarity, 4), hit.support))
    return out


def batch_votes(registry: Registry, root: bytes, deploy_block: int = 0) -> list[Vote]:
    """Every vote cast on batch `root`, oldest first, with the reason given in the same call."""
    reasons = {(e.tx_hash, e.args["voter"]): e.args["reason"] for e in registry.events_named("BatchVoteReason", deploy_block, root)}
    return [Vote(e.args["voter"], bool(e.args["support"]), reasons.get((e.tx_hash, e.args["voter"])), e.block_number, e.tx_hash)
            for e in registry.events_named("BatchVoteCast", deploy_block, root)]


def review_json(review: BatchReview, now: int) -> dict[str, Any]:
    """A reviewed batch for programs (`dso show --format json`, `dso ui`'s batch page): the batch,
    the verification verdict, the document's header, its experiences (with their library match),
    and the votes."""
    experiences = []
    if review.document is not None:
        for index, (experience, match) in enumerate(zip(review.document.experiences, review.matches)):
            experiences.append({"index": index, **experience.to_json(),
                                "library": None if match is None else {"relation": match.relation, "entry_id": match.entry_id,
                                                                        "text": match.text, "similarity": match.similarity,
                                                                        "support": match.support}})
    c = review.commitment
    return {
        "batch": batch_json(review.row, now),
        "verification": review.verification,
        "problem": review.problem,
        "cid": c.cid if c else None,
        "committed": {"count": c.count, "schema": "0x" + c.schema, "node_id": c.node_id, "node": review.submitter} if c else None,
        "header": summarize(review.document) if review.document is not None else None,
        "experiences": experiences,
        "votes": [{"voter": v.voter, "support": v.support, "reason": v.reason, "block": v.block_number, "tx": v.tx_hash} for v in review.votes],
    }
