"""Sync: build the local library from what the chain accepted, verifying everything fetched.

The chain is the only authority. From the registry's events (from a stored checkpoint onwards) a
client learns each batch's root, CID, count, schema and submitting node (`BatchSubmitted`), the
DAO's decision (`BatchFinalized`) and later revocations (`BatchRevoked`). For every accepted batch
it fetches the document by CID (the store recomputes the CID from the bytes), recomputes the Merkle
root and checks it, the count and the schema against the chain, and only then stores the
experiences as reports, each tagged with its batch, leaf index and node. Single experiences the DAO
revoked by leaf challenge (`ExperienceRevoked`) are never stored, or removed if they were.

The admitted node set is folded from `NodeAdmitted`/`NodeRemoved` (the constructor emits the
initial ones), so a node the DAO removes loses its voice in every cluster at the next sync.
Finally `Library.aggregate` turns the reports of admitted nodes into the global library with the
acceptance policy (dso.core.aggregate): one voice per node, robust statistics, support by distinct
nodes, each node weighted by its reputation (`node_weights`: dso.core.reputation over the blocks
of its admission and of the DAO's decisions on its batches, and its revoked experiences, as of the
last block read, so every client at the same checkpoint weighs every node the same).

Crash safety: the checkpoint (`$DSO_HOME/sync.json`, written atomically) advances only after the
library has committed everything up to it, and storing a batch twice changes nothing (reports are
keyed by batch root and leaf index). The aggregation is a pure function of the stored reports, the
admitted set and the policy. Killing a sync at any point and running it again gives the same
library.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from dso.core.aggregate import AcceptancePolicy
from dso.core.batch import BatchError
from dso.core.reputation import BatchOutcome, NodeRecord, node_records, reputation_weights
from dso.edges.chain import Registry, Status
from dso.edges.config import dso_home
from dso.edges.files import atomic_write_text
from dso.edges.ipfs import ContentStore
from dso.errors import CidMismatch, ContentNotFound, DsoError, InvalidCid, ObjectTooLarge
from dso.workflows.library import AggregationSummary, Library, Source
from dso.workflows.verify import Commitment, fetch_and_verify

STATE_VERSION = 4
# What a content store's answer can fail with through no fault of the batch: the bytes it served do
# not hash to the committed CID, or it announced more bytes than a batch may hold. Retried on the
# next sync (from the next configured IPFS node first); only bytes that match the CID and still
# fail verification refuse a batch for good.
TRANSIENT_REFUSALS = ("CidMismatch", "ObjectTooLarge")
FETCH_WORKERS = 4


@dataclass
class BatchRecord(Commitment):
    """What the chain said about one batch: its commitment, then its fate."""

    status: str = "pending"  # pending | accepted | rejected | revoked
    loaded: bool = False
    invalid: str | None = None  # why the fetched document was refused, if it was
    decided_block: int | None = None  # block of its BatchFinalized event (reputation counts epochs of accepted work)


@dataclass
class SyncState:
    """The sync checkpoint: the next block to read and every batch seen so far."""

    registry: str
    next_block: int
    batches: dict[str, BatchRecord] = field(default_factory=dict)
    admitted: dict[str, str] = field(default_factory=dict)  # node id (decimal) -> address, admitted now
    # Every node id ever admitted -> its address (ids are never reused): whose name a batch may carry.
    node_addresses: dict[str, str] = field(default_factory=dict)
    revoked_leaves: dict[str, list[int]] = field(default_factory=dict)  # batch root -> leaf indices
    admitted_blocks: dict[str, int] = field(default_factory=dict)  # node id (decimal) -> block of its NodeAdmitted event
    # Hash of block next_block - 1 when the checkpoint was written: if the chain no longer has that
    # block (a restarted devnet, a reorg deeper than the confirmations), the checkpoint is void.
    last_block_hash: str | None = None
    # Read from a version-2 checkpoint, which kept no node addresses and loaded batches without the
    # provenance check: sync fills the addresses from the chain and verifies those batches again.
    migrated: bool = field(default=False, compare=False)
    # Read from a checkpoint before version 4, which kept no admission or decision blocks: sync reads
    # them again from the deploy block (reputation needs them).
    lacks_blocks: bool = field(default=False, compare=False)

    def to_json(self) -> str:
        return json.dumps({"version": STATE_VERSION, "registry": self.registry, "next_block": self.next_block,
                           "batches": {root: asdict(b) for root, b in self.batches.items()},
                           "admitted": self.admitted, "node_addresses": self.node_addresses, "revoked_leaves": self.revoked_leaves,
                           "admitted_blocks": self.admitted_blocks, "last_block_hash": self.last_block_hash}, indent=1, sort_keys=True) + "\n"

    def admitted_node_ids(self) -> set[int]:
        return {int(n) for n in self.admitted}

    def submitter(self, node_id: int) -> bytes | None:
        """The address (20 bytes) of node `node_id`, if the events read so far admitted it."""
        address = self.node_addresses.get(str(node_id))
        return bytes.fromhex(address[2:]) if address else None

    @classmethod
    def load(cls, path: Path, registry: str, deploy_block: int) -> "SyncState":
        """The stored checkpoint for `registry`, or a fresh one starting at its deploy block."""
        if not path.exists():
            return cls(registry, deploy_block)
        try:
            data = json.loads(path.read_text())
            if data["version"] not in (2, 3, STATE_VERSION):
                raise DsoError(
                    f"sync checkpoint {path} has version {data['version']}; this dso writes {STATE_VERSION}. "
                    "Delete it and the library to resync from the deploy block"
                )
            state = cls(data["registry"], int(data["next_block"]), {r: BatchRecord(**b) for r, b in data["batches"].items()},
                        {str(k): str(v) for k, v in data["admitted"].items()},
                        {str(k): str(v) for k, v in data.get("node_addresses", {}).items()},
                        {str(k): [int(i) for i in v] for k, v in data["revoked_leaves"].items()},
                        {str(k): int(v) for k, v in data.get("admitted_blocks", {}).items()}, data["last_block_hash"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DsoError(f"sync checkpoint {path} is corrupt ({exc}); delete it to resync from the deploy block") from exc
        state.migrated = data["version"] == 2
        state.lacks_blocks = data["version"] < 4
        for record in state.batches.values():
            if record.invalid and record.invalid.startswith(TRANSIENT_REFUSALS):
                record.invalid = None  # refused by an older dso for the server's fault: fetch it again
        if state.registry.lower() != registry.lower():
            raise DsoError(f"sync checkpoint {path} belongs to registry {state.registry}, not {registry}; use another DSO_HOME")
        return state


@dataclass(frozen=True)
class SyncReport:
    """What one sync did."""

    from_block: int
    to_block: int
    loaded: list[str]
    revoked: list[str]
    invalid: dict[str, str]  # refused for good: root -> reason
    unavailable: dict[str, str]  # retried next sync: root -> why not now
    reports_added: int
    revoked_experiences: int
    aggregation: AggregationSummary
    seconds: float
    weights: dict[int, float] = field(default_factory=dict)  # admitted node id -> reputation weight used


def apply_events(state: SyncState, events: list) -> None:
    """Fold registry events into the state (pure: no I/O)."""
    for event in events:
        args = event.args
        if event.name == "BatchSubmitted":
            root = args["root"].hex()
            state.batches.setdefault(root, BatchRecord(**asdict(Commitment.from_event(event))))
        elif event.name == "BatchFinalized" and args["root"].hex() in state.batches:
            state.batches[args["root"].hex()].status = "accepted" if Status(args["status"]) == Status.ACCEPTED else "rejected"
            state.batches[args["root"].hex()].decided_block = event.block_number
        elif event.name == "BatchRevoked" and args["root"].hex() in state.batches:
            state.batches[args["root"].hex()].status = "revoked"
        elif event.name == "ExperienceRevoked":
            leaves = state.revoked_leaves.setdefault(args["root"].hex(), [])
            if int(args["leafIndex"]) not in leaves:
                leaves.append(int(args["leafIndex"]))
        elif event.name == "NodeAdmitted":
            state.admitted[str(int(args["nodeId"]))] = args["node"]
            state.node_addresses[str(int(args["nodeId"]))] = args["node"]
            state.admitted_blocks.setdefault(str(int(args["nodeId"])), event.block_number)
        elif event.name == "NodeRemoved":
            state.admitted.pop(str(int(args["nodeId"])), None)


def chain_records(state: SyncState, as_of_block: int) -> dict[int, NodeRecord]:
    """Each admitted node's chain record (dso.core.reputation.NodeRecord) from what the state holds:
    admission blocks, decided batches and revoked leaves. A node whose admission block the state
    lacks counts as admitted at `as_of_block` (so it gets the lowest weight)."""
    admitted = {int(node): state.admitted_blocks.get(node, as_of_block) for node in state.admitted}
    decided = [BatchOutcome(record.node_id, record.status, record.decided_block) for record in state.batches.values()
               if record.status != "pending" and record.decided_block is not None]
    revoked: dict[int, int] = {}
    for root, leaves in state.revoked_leaves.items():
        if root in state.batches:
            node = state.batches[root].node_id
            revoked[node] = revoked.get(node, 0) + len(leaves)
    return node_records(admitted, decided, revoked)


def node_weights(state: SyncState, as_of_block: int) -> dict[int, float]:
    """Each admitted node's reputation weight as of `as_of_block` (pure: the same state and block
    give the same weights on every client)."""
    return reputation_weights(chain_records(state, as_of_block), as_of_block)


def _read_record_blocks(state: SyncState, registry: Registry, deploy_block: int) -> None:
    """Fill the admission and decision blocks a checkpoint before version 4 did not keep, from the
    events up to its checkpoint (read once)."""
    if state.next_block > deploy_block:
        for event in registry.events(deploy_block, to_block=state.next_block - 1).events:
            if event.name == "NodeAdmitted":
                state.admitted_blocks.setdefault(str(int(event.args["nodeId"])), event.block_number)
            elif event.name == "BatchFinalized" and event.args["root"].hex() in state.batches:
                state.batches[event.args["root"].hex()].decided_block = event.block_number
    state.lacks_blocks = False


def _fetch(store: ContentStore, root: str, record: BatchRecord, submitter: bytes | None):
    """fetch_and_verify, refusing a batch whose node id no NodeAdmitted event named (the contract
    only accepts batches from admitted nodes, so this means the events read are incomplete)."""
    if submitter is None:
        raise BatchError(f"node {record.node_id} committed it, but no NodeAdmitted event names that node")
    return fetch_and_verify(store, root, record, submitter)


def sync(
    registry: Registry,
    store: ContentStore,
    library: Library,
    state_path: Path | None = None,
    deploy_block: int = 0,
    confirmations: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    policy: AcceptancePolicy | None = None,
) -> SyncReport:
    """Bring the library up to date with the chain; see the module docstring for the guarantees.

    Unreachable services (RPC, IPFS) raise and leave the checkpoint where it was. A document the
    store cannot find now, or whose bytes do not match the committed CID (the store's fault, not
    the batch's), is retried on the next sync (`unavailable`). A document that matches its CID but
    fails verification (root, count, schema, or a header/leaf node other than the on-chain
    submitter) is refused for good (`invalid`, with the reason), never loaded, and its reports
    leave the library if an earlier dso had loaded them. `policy` is the acceptance policy for the
    aggregation (default `AcceptancePolicy()`). `confirmations` must be >= 0: the checkpoint never
    passes the chain's head.
    """
    if isinstance(confirmations, bool) or not isinstance(confirmations, int) or confirmations < 0:
        raise DsoError(f"confirmations must be a whole number of blocks >= 0; got {confirmations!r}")
    started = time.monotonic()
    path = state_path or dso_home() / "sync.json"
    state = SyncState.load(path, registry.address, deploy_block)
    if state.migrated:
        state.node_addresses = {str(node_id): address for node_id, address, _ in registry.nodes()}
        for record in state.batches.values():
            record.loaded = False  # verified again, provenance included; storing a report twice changes nothing
    from_block = state.next_block
    if state.last_block_hash is not None and registry.block_hash(from_block - 1) != state.last_block_hash:
        raise DsoError(
            f"the chain no longer has block {from_block - 1} as the sync checkpoint {path} saw it "
            "(a restarted devnet, or a reorg deeper than --confirmations): the library may hold batches the chain "
            "does not; delete the checkpoint and the library and sync again"
        )
    if state.lacks_blocks:
        _read_record_blocks(state, registry, deploy_block)
    page = registry.events(from_block, confirmations=confirmations)
    apply_events(state, page.events)

    to_load = [r for r, b in state.batches.items() if b.status == "accepted" and not b.loaded and b.invalid is None]
    to_drop = [r for r, b in state.batches.items() if b.status == "revoked" and b.loaded]
    invalid: dict[str, str] = {}
    unavailable: dict[str, str] = {}
    loaded: list[str] = []
    added = 0
    with ThreadPoolExecutor(max_workers=FETCH_WORKERS) as pool:
        futures = {root: pool.submit(_fetch, store, root, state.batches[root], state.submitter(state.batches[root].node_id)) for root in to_load}
        for done, (root, future) in enumerate(futures.items(), 1):
            record = state.batches[root]
            try:
                document = future.result()
            except ContentNotFound as exc:
                unavailable[root] = f"ContentNotFound: {exc}"
                continue
            except (CidMismatch, ObjectTooLarge) as exc:
                unavailable[root] = f"{type(exc).__name__}: {exc}"
                continue
            except (BatchError, InvalidCid) as exc:
                record.invalid = f"{type(exc).__name__}: {exc}"
                invalid[root] = record.invalid
                library.remove_batch(bytes.fromhex(root))
                continue
            revoked_here = set(state.revoked_leaves.get(root, ()))
            kept = [(i, e) for i, e in enumerate(document.experiences) if i not in revoked_here]
            source = Source(bytes.fromhex(root), record.node_id, document.header.node, record.position)
            added += library.add_reports([e for _, e in kept], document.header.baseline, source, [i for i, _ in kept])
            record.loaded = True
            loaded.append(root)
            if progress:
                progress(root, done, len(to_load))
    for root in to_drop:
        library.remove_batch(bytes.fromhex(root))
        state.batches[root].loaded = False
    # Leaves revoked in this page whose batch was loaded earlier (a batch loaded now skipped them).
    # Earlier pages' revocations were removed when they arrived: removal happens before the
    # checkpoint moves past their events, and a rerun repeats it harmlessly.
    revoked_experiences = sum(library.remove_report(e.args["root"], int(e.args["leafIndex"]))
                              for e in page.events if e.name == "ExperienceRevoked")
    weights = node_weights(state, max(page.to_block, from_block - 1, 0))
    summary = library.aggregate(state.admitted_node_ids(), policy, node_weights=weights)
    state.next_block = page.next_block
    if page.to_block >= 0:
        state.last_block_hash = registry.block_hash(page.to_block)
    atomic_write_text(path, state.to_json())
    return SyncReport(from_block, page.to_block, loaded, to_drop, invalid, unavailable, added, revoked_experiences, summary,
                      round(time.monotonic() - started, 3), weights)
