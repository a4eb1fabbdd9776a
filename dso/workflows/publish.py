"""Node workflows: turn a file of insights into a committed batch, through a durable outbox.

Submitting touches two services that can fail independently (IPFS, the RPC). So a batch is first
written to the outbox on disk (`$DSO_HOME/outbox/<root>.cbor` plus a small JSON state file, both
written atomically), and only then pinned and committed. `flush_outbox` retries every entry:
pinning is idempotent (content addressing) and committing checks the chain first, so a batch that
was committed before a crash is recognised, never sent twice (the contract would also refuse a
duplicate root). An entry leaves the outbox only once the chain holds its root.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Iterator, NamedTuple, Sequence

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from dso.core.batch import MAX_LEAVES, BatchDocument, build_batch, parse_document
from dso.core.codec import DEFAULT_CODEC, baseline_id, get_codec, load_baseline
from dso.core.experience import Experience, ExperienceError, Insight, validate_confidence, validate_domain, validate_metadata, validate_text
from dso.core.models import MODEL_NAME
from dso.edges.chain import Registry, Status
from dso.edges.config import dso_home
from dso.edges.embed import Embedder
from dso.edges.files import atomic_write_bytes, atomic_write_text
from dso.edges.ipfs import ContentStore, cid_to_bytes
from dso.errors import BatchError, BatchRefused, ContractRevert, DsoError, InputError, QueuedInOutbox


def read_insights(path: Path) -> list[Insight]:
    """Parse a JSONL file of {"text", "domain", "confidence", "metadata"?}; every line is validated
    before anything is embedded, and the first bad line is reported by number."""
    insights = []
    try:
        # utf-8-sig: a leading byte order mark (Windows editors) is not part of the first line.
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise InputError(f"{path} not found") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise InputError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    # Lines end at "\n" only (JSONL; a "\r" before it is JSON whitespace): str.splitlines would also
    # split inside a JSON string holding U+2028, U+0085 or a form feed.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        except (ValueError, RecursionError) as exc:  # a duplicate key, a 5,000-digit number, [[[[...
            raise InputError(f"{path}:{number}: not usable JSON ({exc})") from exc
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}: each line must be a JSON object")
        unknown = set(record) - {"text", "domain", "confidence", "metadata"}
        if unknown:
            raise InputError(f"{path}:{number}: unknown fields {sorted(unknown)}")
        missing = {"text", "domain", "confidence"} - set(record)
        if missing:
            raise InputError(f"{path}:{number}: missing fields {sorted(missing)}")
        try:
            insights.append(
                Insight(
                    validate_text(record.get("text")),
                    validate_domain(record.get("domain")),
                    validate_confidence(record.get("confidence")),
                    validate_metadata(record.get("metadata")),
                )
            )
        except ExperienceError as exc:
            raise InputError(f"{path}:{number}: {exc}") from exc
    if not insights:
        raise InputError(f"{path} holds no experiences")
    return insights


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused if a key repeats (json.loads would silently keep the last one)."""
    record = dict(pairs)
    if len(record) != len(pairs):
        repeated = sorted({key for key, _ in pairs if sum(k == key for k, _ in pairs) > 1})
        raise ValueError(f"field {', '.join(map(repr, repeated))} given more than once")
    return record


# A batch is planned to at most this much canonical CBOR before anything is embedded. Compressed
# (real lessons: 2.5x smaller, bench/results/size.json) it fits one IPFS block with room to spare;
# a batch whose compressed document still does not fit is split in two after coding.
PLANNED_BATCH_CBOR_BYTES = 2 << 20
EMBED_CHUNK = 512  # texts embedded per call: progress is reported between chunks

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def unique_insights(insights: Sequence[Insight]) -> list[Insight]:
    """Insights with repeated texts merged (the first kept): a batch must not repeat an experience."""
    return list({i.text: i for i in insights}.values())


def plan_batches(insights: Sequence[Insight], node: str, code_bytes: int, max_cbor: int | None = None,
                 max_leaves: int = MAX_LEAVES) -> list[list[Insight]]:
    """Split insights into batches whose canonical leaves add up to at most `max_cbor` bytes
    (default PLANNED_BATCH_CBOR_BYTES) and `max_leaves` leaves, in input order. Leaf sizes are exact
    before any embedding: a placeholder code of the codec's length encodes to as many bytes as the
    real one will."""
    max_cbor = PLANNED_BATCH_CBOR_BYTES if max_cbor is None else max_cbor
    placeholder = bytes(code_bytes)
    plans: list[list[Insight]] = [[]]
    size = 0
    for insight in insights:
        leaf = len(Experience.create(insight.text, insight.domain, insight.confidence, MODEL_NAME, DEFAULT_CODEC, placeholder,
                                     node, 0, insight.metadata).canonical_bytes()) + 5  # + CBOR byte-string header
        if plans[-1] and (size + leaf > max_cbor or len(plans[-1]) >= max_leaves):
            plans.append([])
            size = 0
        plans[-1].append(insight)
        size += leaf
    return [plan for plan in plans if plan]


def _coded_experiences(insights: Sequence[Insight], node: str, embedder: Embedder, codec_id: str, created: int,
                       progress: Progress | None = None, done: int = 0, total: int = 0) -> list[Experience]:
    """Embed (in chunks, reporting progress) and code insights into experiences of `node`."""
    codec = get_codec(codec_id, embedder.dim, load_baseline())
    experiences: list[Experience] = []
    for start in range(0, len(insights), EMBED_CHUNK):
        chunk = insights[start : start + EMBED_CHUNK]
        codes = codec.encode(embedder.embed([i.text for i in chunk]))
        experiences += [Experience.create(i.text, i.domain, i.confidence, MODEL_NAME, codec_id, bytes(code), node, created, i.metadata)
                        for i, code in zip(chunk, codes)]
        if progress:
            progress("embedding", done + len(experiences), total)
    return experiences


def _fitted_documents(experiences: Sequence[Experience], dim: int, baseline: bytes, created: int) -> list[BatchDocument]:
    """One batch document, or as many halves as it takes for each to fit one IPFS block."""
    document = build_batch(experiences, dim=dim, baseline=baseline, created_at=created)
    try:
        document.to_bytes()
    except BatchError:
        if len(experiences) < 2:
            raise
        half = len(experiences) // 2
        return _fitted_documents(experiences[:half], dim, baseline, created) + _fitted_documents(experiences[half:], dim, baseline, created)
    return [document]


def prepare_batches(insights: Sequence[Insight], node: str, embedder: Embedder, codec_id: str = DEFAULT_CODEC,
                    now: int | None = None, progress: Progress | None = None,
                    skip: Collection[int] = ()) -> Iterator[tuple[int, list[BatchDocument]]]:
    """Embed, code and bundle any number of insights into batch documents of `node` (an address),
    each within one IPFS block; repeated texts are merged. Yields (planned batch number, its
    documents): a planned batch is one document unless it had to be split to fit. Sizes are
    planned before the model runs, so a large file costs no wasted embedding; planned batches in
    `skip` are not embedded at all (an interrupted submit resuming)."""
    created = int(time.time()) if now is None else now
    unique = unique_insights(insights)
    codec = get_codec(codec_id, embedder.dim, load_baseline())
    baseline = bytes.fromhex(codec.baseline_id)
    done = 0
    for number, plan in enumerate(plan_batches(unique, node, codec.code_bytes)):
        if number not in skip:
            experiences = _coded_experiences(plan, node, embedder, codec_id, created, progress, done, len(unique))
            yield number, _fitted_documents(experiences, embedder.dim, baseline, created)
        done += len(plan)


def prepare_batch(insights: Sequence[Insight], node: str, embedder: Embedder, codec_id: str = DEFAULT_CODEC, now: int | None = None) -> BatchDocument:
    """Embed, compress and bundle insights into one batch document for `node` (an address); repeated
    texts are merged. BatchError if they do not fit one batch (`prepare_batches` splits them)."""
    created = int(time.time()) if now is None else now
    unique = unique_insights(insights)
    experiences = _coded_experiences(unique, node, embedder, codec_id, created)
    return build_batch(experiences, dim=embedder.dim, baseline=bytes.fromhex(baseline_id(load_baseline())), created_at=created)


@dataclass
class OutboxEntry:
    """A batch on its way, prepared by wallet `node` (0x address): only that wallet commits it.

    `state` is "queued", then "pinned" (cid known); it leaves the outbox once the chain holds it
    from `node`. "refused" means the chain turned it down for good (`last_error` says why: the
    wallet is not an admitted node, or another node already committed this root): flushes skip it
    until `Outbox.retry` re-queues it. `last_error` says why the last attempt stopped.
    """

    root: str
    count: int
    bytes: int
    state: str = "queued"
    cid: str | None = None
    last_error: str | None = None
    node: str | None = None  # None only in entries written before the outbox named their wallet


@dataclass
class Submission:
    """One submit of a file: its batches' creation time and, by planned batch, the roots queued."""

    path: Path
    created_at: int
    queued: dict[int, list[str]]

    def record(self, plan: int, roots: list[str]) -> None:
        """Note that planned batch `plan` is queued as `roots` (written atomically)."""
        self.queued[plan] = roots
        atomic_write_text(self.path, json.dumps({"created_at": self.created_at, "queued": self.queued}, indent=1) + "\n")

    def close(self) -> None:
        """Forget the record once everything it queued is committed."""
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Committed:
    """A batch the chain now holds."""

    root: str
    cid: str
    count: int
    bytes: int
    gas_used: int | None  # None when an earlier, interrupted attempt had already committed it
    tx_hash: str | None


class FlushResult(NamedTuple):
    """What a flush did for one wallet: batches committed; this wallet's batches still in the
    outbox (a transient failure, or `state == "refused"`); and entries of other wallets, untouched."""

    committed: list[Committed]
    pending: list[OutboxEntry]
    others: list[OutboxEntry]

    @property
    def refused(self) -> list[OutboxEntry]:
        """This wallet's batches the chain refused for good."""
        return [e for e in self.pending if e.state == REFUSED]


REFUSED = "refused"
# Reverts that retrying cannot cure: the sender is not an admitted node, or the batch is malformed.
PERMANENT_REVERTS = frozenset({"CallerIsNotAnAdmittedNode", "EmptyMerkleRoot", "EmptyCid", "EmptyBatch"})


class Outbox:
    """Batches not yet committed, kept on disk (`$DSO_HOME/outbox` by default), each bound to the
    wallet that prepared it (its address is the batch header's node and every leaf's)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or dso_home() / "outbox"

    def add(self, document: BatchDocument) -> OutboxEntry:
        """Persist a batch (document first, then its state file) and return its entry; a batch
        already queued keeps its entry (and its state: pinned, refused) as it is."""
        root = document.header.root.hex()
        existing = self.path / f"{root}.json"
        if existing.exists() and (self.path / f"{root}.cbor").exists():
            return next(e for e in self.entries() if e.root == root)
        data = document.to_bytes()
        atomic_write_bytes(self.path / f"{root}.cbor", data)
        entry = OutboxEntry(root, document.header.count, len(data), node=_address(document.header.node))
        self._save(entry)
        return entry

    def entries(self) -> list[OutboxEntry]:
        """Every entry, oldest first."""
        found = []
        for state_file in sorted(self.path.glob("*.json"), key=lambda p: p.stat().st_mtime) if self.path.is_dir() else []:
            try:
                entry = OutboxEntry(**json.loads(state_file.read_text()))
            except (json.JSONDecodeError, TypeError) as exc:
                raise DsoError(f"outbox entry {state_file} is corrupt ({exc}); its batch is in {state_file.with_suffix('.cbor')}") from exc
            if entry.node is None:  # written before entries named their wallet: the header says whose it is
                entry.node = _address(parse_document(self.document(entry)).header.node)
            found.append(entry)
        return found

    def document(self, entry: OutboxEntry) -> bytes:
        return (self.path / f"{entry.root}.cbor").read_bytes()

    def find(self, root_prefix: str) -> OutboxEntry:
        """The one entry whose root starts with `root_prefix` (hex); DsoError otherwise."""
        wanted = root_prefix.lower().removeprefix("0x")
        matches = [e for e in self.entries() if wanted and e.root.startswith(wanted)]
        if len(matches) != 1:
            raise DsoError(f"{'no' if not matches else len(matches)} outbox batch{'es' if len(matches) != 1 else ''} "
                           f"match {root_prefix!r}; `dso outbox list` shows their roots")
        return matches[0]

    def retry(self, entry: OutboxEntry) -> OutboxEntry:
        """Put a refused entry back in line (after its cause was fixed, e.g. the node was admitted)."""
        entry.state, entry.last_error = ("pinned" if entry.cid else "queued"), None
        self._save(entry)
        return entry

    def drop(self, entry: OutboxEntry) -> None:
        """Delete an entry and its document for good."""
        self._remove(entry)

    def _save(self, entry: OutboxEntry) -> None:
        atomic_write_text(self.path / f"{entry.root}.json", json.dumps(asdict(entry), indent=2) + "\n")

    def _remove(self, entry: OutboxEntry) -> None:
        (self.path / f"{entry.root}.json").unlink(missing_ok=True)
        (self.path / f"{entry.root}.cbor").unlink(missing_ok=True)

    def submission(self, node: str, insights: Sequence[Insight]) -> "Submission":
        """The record of submitting these insights from `node`: its creation time and the batches
        already queued. A submit interrupted and run again on the same file reuses both, so it
        builds byte-identical batches (their roots are on-chain or queued already) and skips the
        embedding of the batches it had finished."""
        digest = hashlib.sha256(json.dumps([node.lower(), [[i.text, i.domain, i.confidence, dict(i.metadata)] for i in insights]],
                                           sort_keys=True).encode()).hexdigest()
        path = self.path / "submissions" / f"{digest}.json"
        if path.exists():
            try:
                data = json.loads(path.read_text())
                return Submission(path, int(data["created_at"]), {int(k): list(v) for k, v in data["queued"].items()})
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise DsoError(f"submission record {path} is corrupt ({exc}); delete it to submit afresh") from exc
        return Submission(path, int(time.time()), {})

    def flush(self, store: ContentStore, registry: Registry, node: LocalAccount, progress: Progress | None = None) -> FlushResult:
        """Pin and commit every entry `node` prepared; others' entries are left alone (a batch is
        committed only by the wallet whose address it carries). One failing service stops that
        entry only; its error is recorded and the entry stays for the next flush. A permanent
        refusal marks the entry "refused" instead, and later flushes skip it."""
        committed, pending, others = [], [], []
        entries = self.entries()
        mine = sum(1 for e in entries if (e.node or "").lower() == node.address.lower())
        for entry in entries:
            if entry.node is None or entry.node.lower() != node.address.lower():
                others.append(entry)
                continue
            if progress:
                progress("committing", len(committed) + len(pending), mine)
            if entry.state == REFUSED:
                pending.append(entry)
                continue
            try:
                committed.append(self._flush_one(entry, store, registry, node))
                self._remove(entry)
            except BatchRefused as exc:
                entry.state, entry.last_error = REFUSED, str(exc)
                self._save(entry)
                pending.append(entry)
            except DsoError as exc:
                entry.last_error = f"{type(exc).__name__}: {exc}"
                self._save(entry)
                pending.append(entry)
        return FlushResult(committed, pending, others)

    def _flush_one(self, entry: OutboxEntry, store: ContentStore, registry: Registry, node: LocalAccount) -> Committed:
        data = self.document(entry)
        document = parse_document(data)  # a corrupted outbox file must not be committed
        if document.header.node != bytes.fromhex(node.address[2:]):
            raise BatchRefused(f"the batch names node {_address(document.header.node)}, not {node.address}")
        cid = store.put(data)
        if entry.state != "pinned" or entry.cid != cid:
            entry.state, entry.cid, entry.last_error = "pinned", cid, None
            self._save(entry)
        if registry.batch(document.header.root).tally.status != Status.NONE:
            return self._already_on_chain(entry, cid, registry, node)
        try:
            result = registry.submit_batch(node, document.header.root, cid_to_bytes(cid), document.header.count, document.header.schema_id)
        except ContractRevert as exc:
            if exc.name in PERMANENT_REVERTS:
                raise BatchRefused(f"the chain refuses it: {exc}") from exc
            # An earlier attempt's transaction was still pending when we checked, and got mined
            # first (a node killed right after sending, on a chain without instant mining).
            if exc.name != "BatchAlreadySubmitted":
                raise
            return self._already_on_chain(entry, cid, registry, node)
        return Committed(entry.root, cid, entry.count, entry.bytes, result.tx.gas_used, result.tx.tx_hash)

    def _already_on_chain(self, entry: OutboxEntry, cid: str, registry: Registry, node: LocalAccount) -> Committed:
        """The root is on-chain: ours if an earlier attempt committed it from this node; if another
        node committed it (someone copied the pinned document), this batch can never be committed."""
        on_chain = registry.batch(bytes.fromhex(entry.root)).node_id
        own_id = registry.node(node.address)[0]
        if on_chain != own_id:
            raise BatchRefused(f"node {on_chain} already committed this root; readers refuse it under that node's name, "
                               "and this wallet cannot commit it again")
        return Committed(entry.root, cid, entry.count, entry.bytes, None, None)


def _address(raw: bytes) -> str:
    """A 20-byte node address as the checksummed 0x form wallets print."""
    return to_checksum_address(raw)


def publish(
    insights: Sequence[Insight],
    node: LocalAccount,
    load_embedder: Callable[[], Embedder],
    outbox: Outbox,
    services: Callable[[], tuple[ContentStore, Registry]],
    progress: Progress | None = None,
) -> FlushResult:
    """The one publish path (`dso submit`, the demo, the fault suite): embed and batch validated
    insights (as many batches as they need, each within one IPFS block), queue them in the outbox,
    then pin and commit them, one transaction each, with everything else this wallet has waiting.
    `progress(stage, done, total)` hears "embedding" and "committing".

    `load_embedder` is called only now that the input is known to be valid (a model load takes
    seconds; a malformed file should fail before it); `services` opens the content store and the registry only after the batch is safe on disk, so an
    unreachable RPC loses nothing (DsoError says the batch waits in the outbox).
    """
    unique = unique_insights(insights)
    submission = outbox.submission(node.address, unique)
    batches = prepare_batches(unique, node.address, load_embedder(), now=submission.created_at, progress=progress, skip=set(submission.queued))
    for number, documents in batches:
        submission.record(number, [outbox.add(d).root for d in documents])
    roots = [root for number in sorted(submission.queued) for root in submission.queued[number]]
    try:
        store, registry = services()
    except DsoError as exc:
        raise QueuedInOutbox(f"{len(roots)} batch(es) ({roots[0][:16]}...) are safe in the outbox, but {exc}; run `dso outbox flush` later") from exc
    result = outbox.flush(store, registry, node, progress)
    if not {p.root for p in result.pending} & set(roots):
        submission.close()
    return result


def insights_to_jsonl(insights: Iterable[Any]) -> str:
    """JSONL lines for records with text/domain/confidence (e.g. dso.edges.datasets.gsm8k_insights)."""
    return "".join(json.dumps({"text": i.text, "domain": i.domain, "confidence": i.confidence}) + "\n" for i in insights)
