"""Client of the ExperienceRegistry contract on any EVM network (web3.py 7 + eth-account).

Every write is simulated first (eth_estimateGas), so a revert surfaces before anything is signed,
as a `ContractRevert` carrying the contract's custom error by name and arguments. Every RPC call
has a timeout; an unreachable endpoint raises `RpcUnavailable`. Keys stay in the caller's
`LocalAccount`: the client signs locally and sends raw transactions, so it works against any node.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence, TypeVar

import requests
from eth_abi import decode as abi_decode
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import (
    BlockNotFound,
    ContractCustomError,
    ContractLogicError,
    ContractPanicError,
    TimeExhausted,
    Web3RPCError,
)

from dso.edges.compile import load_artifact
from dso.edges.config import check_rpc_url
from dso.errors import ChainError, ContractRevert, RpcUnavailable

DEFAULT_TIMEOUT = 10.0
RECEIPT_TIMEOUT = 120.0
MAX_PAGE = 200
T = TypeVar("T")


class Status(enum.IntEnum):
    """Lifecycle of a batch or proposal (mirrors the contract's enum)."""

    NONE = 0
    PENDING = 1
    ACCEPTED = 2
    REJECTED = 3
    REVOKED = 4


class ProposalKind(enum.IntEnum):
    """What a governance proposal does when accepted (mirrors the contract's enum)."""

    NONE = 0
    ADD_MEMBER = 1
    REMOVE_MEMBER = 2
    ADMIT_NODE = 3
    REMOVE_NODE = 4
    REVOKE_BATCH = 5
    REVOKE_EXPERIENCE = 6
    SET_VOTING_PARAMETERS = 7


@dataclass(frozen=True)
class Tally:
    """Voting state of a batch or proposal; `electorate` and `quorum_bps` are those of its snapshot
    (the ones its decision uses, whatever the DAO changed since)."""

    status: Status
    yes: int
    no: int
    snapshot: int
    electorate: int
    deadline: int
    quorum_bps: int

    @property
    def quorum(self) -> int:
        """Votes needed for quorum: ceil(electorate * quorum_bps / 10,000), at least 1 (the contract's rule)."""
        return max(1, -(-self.electorate * self.quorum_bps // 10_000))


@dataclass(frozen=True)
class BatchInfo:
    """A batch as stored on-chain (the CID lives in the BatchSubmitted event)."""

    root: bytes
    node_id: int
    count: int
    tally: Tally


@dataclass(frozen=True)
class ProposalInfo:
    """A governance proposal and its voting state; `leaf_index`/`leaf_hash` name the challenged
    experience of a REVOKE_EXPERIENCE proposal, `voting_period`/`quorum_bps` the proposed values of
    a SET_VOTING_PARAMETERS proposal (zero otherwise)."""

    proposal_id: int
    kind: ProposalKind
    account: str
    batch: bytes
    tally: Tally
    leaf_index: int = 0
    leaf_hash: bytes = bytes(32)
    voting_period: int = 0
    quorum_bps: int = 0


@dataclass(frozen=True)
class TxResult:
    """A mined transaction: hash, block and gas actually used."""

    tx_hash: str
    block_number: int
    gas_used: int


@dataclass(frozen=True)
class SubmitResult:
    """A committed batch: its id (the root), the node's id, and the transaction."""

    root: bytes
    node_id: int
    tx: TxResult


@dataclass(frozen=True)
class ProposalResult:
    """A created proposal: its id and the transaction."""

    proposal_id: int
    tx: TxResult


@dataclass(frozen=True)
class FinalizeResult:
    """A decided batch or proposal."""

    status: Status
    tx: TxResult
    applied: bool | None = None


@dataclass(frozen=True)
class RegistryEvent:
    """A decoded registry event with its position on the chain."""

    name: str
    args: dict[str, Any]
    block_number: int
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class EventPage:
    """Events of blocks [from_block, to_block]; resume from `next_block` (the checkpoint)."""

    events: list[RegistryEvent]
    from_block: int
    to_block: int

    @property
    def next_block(self) -> int:
        return self.to_block + 1


@dataclass(frozen=True)
class SignedSubmission:
    """A node's EIP-712 authorization for a relayer to submit one batch."""

    node: str
    root: bytes
    cid: bytes
    count: int
    schema: bytes
    nonce: int
    deadline: int
    signature: bytes = field(repr=False)


def connect(rpc_url: str, timeout: float = DEFAULT_TIMEOUT) -> Web3:
    """A Web3 connection with a request timeout; raise RpcUnavailable if the endpoint is down,
    ConfigError if `rpc_url` is not an http(s) URL."""
    check_rpc_url(rpc_url, "RPC endpoint")
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    _rpc(lambda: w3.eth.chain_id, rpc_url)
    return w3


def _rpc(call: Callable[[], T], where: str = "RPC endpoint") -> T:
    """Run one RPC call, turning transport failures into RpcUnavailable."""
    try:
        return call()
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise RpcUnavailable(f"{where} unreachable or timed out: {exc.__class__.__name__}") from exc


def _as_bytes32(value: bytes | str, what: str) -> bytes:
    raw = HexBytes(value)
    if len(raw) != 32:
        raise ValueError(f"{what} must be 32 bytes, got {len(raw)}")
    return bytes(raw)


class ErrorDecoder:
    """Maps revert data to the contract's custom errors by 4-byte selector. `clock` (the chain's
    current time, read only when needed) lets deadlines be shown as time left, not raw seconds."""

    def __init__(self, abi: Sequence[dict[str, Any]], clock: Callable[[], int] | None = None) -> None:
        self.clock = clock
        self._errors: dict[bytes, tuple[str, list[str]]] = {}
        for item in abi:
            if item.get("type") == "error":
                types = [_abi_type(inp) for inp in item["inputs"]]
                selector = function_signature_to_4byte_selector(f"{item['name']}({','.join(types)})")
                self._errors[selector] = (item["name"], types)

    def decode(self, data: bytes | str | None) -> ContractRevert:
        """Decode revert data into a ContractRevert (name 'Unknown' if the selector is not ours)."""
        raw = bytes(HexBytes(data or b""))
        known = self._errors.get(raw[:4])
        if known is None:
            return ContractRevert("Unknown", (raw.hex(),), f"contract reverted with unrecognized data 0x{raw.hex()}")
        name, types = known
        values = tuple(abi_decode(types, raw[4:])) if types else ()
        args = tuple(_error_arg_text(v) for v in values)
        if name in _STATUS_ERRORS:  # show the status by name: NotPending(accepted), not NotPending(2)
            rendered = ", ".join(Status(v).name.lower() if isinstance(v, int) and i == _STATUS_ERRORS[name] else str(v) for i, v in enumerate(args))
            return ContractRevert(name, args, f"contract reverted with {name}({rendered})")
        if name in _DEADLINE_ERRORS:  # VotingStillOpen(deadline 2026-12-02 08:00:00 UTC, 47 min from now)
            return ContractRevert(name, args, f"contract reverted with {name}({describe_deadline(int(args[0]), self._now())})")
        return ContractRevert(name, args)

    def _now(self) -> int | None:
        if self.clock is None:
            return None
        try:
            return int(self.clock())
        except ChainError:
            return None


# Custom errors whose argument at this position is a Status.
_STATUS_ERRORS = {"NotPending": 0, "BatchIsNotAccepted": 1}
# Custom errors whose only argument is a deadline (unix seconds).
_DEADLINE_ERRORS = frozenset({"VotingStillOpen", "VotingClosed", "SignatureExpired"})


def describe_deadline(deadline: int, now: int | None) -> str:
    """A deadline as people read it: "deadline 2026-12-02 08:00:00 UTC, 47 min from now" (or "...
    ago"); `now` is the chain's time (None: the time alone)."""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(deadline))
    if now is None:
        return f"deadline {when}"
    delta = deadline - now
    return f"deadline {when}, {_duration_text(abs(delta))} {'from now' if delta >= 0 else 'ago'}"


def _duration_text(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days {seconds % 86400 // 3600} h"


def _abi_type(inp: dict[str, Any]) -> str:
    if inp["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in inp["components"])
        return f"({inner}){inp['type'][5:]}"
    return inp["type"]


def _error_arg_text(value: Any) -> Any:
    """A decoded custom-error argument as users read it: bytes as 0x hex, the rest unchanged."""
    return "0x" + value.hex() if isinstance(value, bytes) else value


def _tally(raw: Sequence[Any]) -> Tally:
    status, yes, no, snapshot, electorate, deadline, quorum_bps = raw
    return Tally(Status(status), yes, no, snapshot, electorate, deadline, quorum_bps)


class Registry:
    """Typed client of one deployed ExperienceRegistry."""

    def __init__(self, w3: Web3, address: str, abi: Sequence[dict[str, Any]] | None = None) -> None:
        self.w3 = w3
        self.abi = list(abi or load_artifact()["abi"])
        self.address = to_checksum_address(address)
        self.contract = w3.eth.contract(address=self.address, abi=self.abi)
        self.errors = ErrorDecoder(self.abi, clock=self.chain_time)
        # topic0 -> event name; decoding goes through web3's public ContractEvent.process_log.
        self._topic_of = {item["name"]: Web3.keccak(text=_event_signature(item)).to_0x_hex() for item in self.abi if item["type"] == "event"}
        self._events = {HexBytes(topic): name for name, topic in self._topic_of.items()}

    # ------------------------------------------------------------------ construction

    @classmethod
    def at(cls, rpc_url: str, address: str, timeout: float = DEFAULT_TIMEOUT) -> "Registry":
        """Connect to `rpc_url` and bind the registry at `address` (checks that code exists there)."""
        w3 = connect(rpc_url, timeout)
        code = _rpc(lambda: w3.eth.get_code(to_checksum_address(address)), rpc_url)
        if len(code) == 0:
            raise ChainError(f"no contract at {address} on {rpc_url}: wrong network or registry address?")
        return cls(w3, address)

    @classmethod
    def deploy(
        cls,
        w3: Web3,
        deployer: LocalAccount,
        members: Sequence[str],
        nodes: Sequence[str] = (),
        voting_period: int = 3 * 24 * 3600,
        quorum_bps: int = 5_000,
    ) -> tuple["Registry", TxResult]:
        """Deploy a registry seeded with `members` and `nodes`; return the client and the deploy tx."""
        artifact = load_artifact()
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        decoder = ErrorDecoder(artifact["abi"])
        args = (voting_period, quorum_bps, [to_checksum_address(m) for m in members], [to_checksum_address(n) for n in nodes])
        receipt = _send(w3, deployer, {"data": factory.constructor(*args).data_in_transaction}, decoder)
        address = receipt["contractAddress"]
        return cls(w3, address, artifact["abi"]), _tx_result(receipt)

    # ------------------------------------------------------------------ batches

    def submit_batch(self, node: LocalAccount, root: bytes | str, cid: bytes, count: int, schema: bytes | str) -> SubmitResult:
        """Commit a batch from `node`'s own wallet."""
        call = self.contract.functions.submitBatch(_as_bytes32(root, "root"), bytes(cid), count, _as_bytes32(schema, "schema"))
        receipt = self._transact(node, call)
        return self._submit_result(receipt)

    def sign_submission(
        self,
        node: LocalAccount,
        root: bytes | str,
        cid: bytes,
        count: int,
        schema: bytes | str,
        deadline: int,
        nonce: int | None = None,
    ) -> SignedSubmission:
        """Sign an EIP-712 SubmitBatch authorization for a relayer (nonce read from chain if omitted)."""
        nonce = self.nonce(node.address) if nonce is None else nonce
        message = {
            "root": _as_bytes32(root, "root"),
            "cid": bytes(cid),
            "count": count,
            "schema": _as_bytes32(schema, "schema"),
            "nonce": nonce,
            "deadline": deadline,
        }
        typed = encode_typed_data(full_message=self.typed_data(message))
        signed = node.sign_message(typed)
        return SignedSubmission(
            node.address, message["root"], message["cid"], count, message["schema"], nonce, deadline, bytes(signed.signature)
        )

    def typed_data(self, message: dict[str, Any], chain_id: int | None = None, verifying_contract: str | None = None) -> dict[str, Any]:
        """The EIP-712 structure a node signs for `submitBatchWithSig`."""
        return {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "SubmitBatch": [
                    {"name": "root", "type": "bytes32"},
                    {"name": "cid", "type": "bytes"},
                    {"name": "count", "type": "uint32"},
                    {"name": "schema", "type": "bytes32"},
                    {"name": "nonce", "type": "uint256"},
                    {"name": "deadline", "type": "uint256"},
                ],
            },
            "primaryType": "SubmitBatch",
            "domain": {
                "name": "ExperienceRegistry",
                "version": "1",
                "chainId": chain_id if chain_id is not None else self.chain_id(),
                "verifyingContract": verifying_contract or self.address,
            },
            "message": message,
        }

    def submit_signed(self, relayer: LocalAccount, submission: SignedSubmission) -> SubmitResult:
        """Send a node's signed submission from `relayer`, who pays the gas."""
        call = self.contract.functions.submitBatchWithSig(
            submission.root,
            submission.cid,
            submission.count,
            submission.schema,
            to_checksum_address(submission.node),
            submission.deadline,
            submission.signature,
        )
        return self._submit_result(self._transact(relayer, call))

    def use_nonce(self, node: LocalAccount) -> TxResult:
        """Burn `node`'s current nonce, invalidating any signature handed out for it."""
        return _tx_result(self._transact(node, self.contract.functions.useNonce()))

    def vote_on_batch(self, member: LocalAccount, root: bytes | str, support: bool) -> TxResult:
        """Cast `member`'s vote on batch `root`."""
        return _tx_result(self._transact(member, self.contract.functions.voteOnBatch(_as_bytes32(root, "root"), support)))

    def cast_batch_votes(self, member: LocalAccount, votes: Sequence[tuple[bytes | str, bool, str]]) -> TxResult:
        """Cast `member`'s votes on several batches in one transaction (`castBatchVotes`), each a
        (root, support, reason) with reason "" for none; a reason is kept in a `BatchVoteReason`
        event. All or nothing: when the call would revert, each vote is simulated on its own and
        the ContractRevert names the first batch that refuses it."""
        call = self.contract.functions.castBatchVotes(*self._vote_lists(votes))
        try:
            return _tx_result(self._transact(member, call))
        except ContractRevert as exc:
            for root, support, _ in votes:
                try:
                    self._call_from(member.address, self.contract.functions.voteOnBatch(_as_bytes32(root, "root"), support))
                except ContractRevert as single:
                    raise ContractRevert(single.name, single.args_, f"vote on batch {_as_bytes32(root, 'root').hex()[:16]} refused: {single}") from exc
            raise

    def unsigned_transaction(self, function: str, *args: Any) -> dict[str, Any]:
        """`{"to", "data", "chainId"}` of a call to `function` (`castBatchVotes`, `finalizeBatch`,
        `voteOnProposal`, `finalizeProposal`) for a wallet outside dso to sign and send, such as
        a browser wallet (EIP-1193 `eth_sendTransaction`). Votes are given as for `cast_batch_votes`."""
        if function == "castBatchVotes":
            args = self._vote_lists(args[0])
        elif function == "finalizeBatch":
            args = (_as_bytes32(args[0], "root"),)
        elif function not in ("voteOnProposal", "finalizeProposal"):
            raise ChainError(f"no unsigned transaction for {function}")
        return {"to": self.address, "data": self.contract.encode_abi(function, args=list(args)), "chainId": self.chain_id()}

    @staticmethod
    def _vote_lists(votes: Sequence[tuple[bytes | str, bool, str]]) -> tuple[list[bytes], list[bool], list[str]]:
        return [_as_bytes32(r, "root") for r, _, _ in votes], [bool(s) for _, s, _ in votes], [str(reason) for _, _, reason in votes]

    def finalize_batch(self, sender: LocalAccount, root: bytes | str) -> FinalizeResult:
        """Decide batch `root` (anyone may send); return its new status."""
        receipt = self._transact(sender, self.contract.functions.finalizeBatch(_as_bytes32(root, "root")))
        event = self._single_event(receipt, "BatchFinalized")
        return FinalizeResult(Status(event["status"]), _tx_result(receipt))

    # ------------------------------------------------------------------ proposals

    def propose_add_member(self, proposer: LocalAccount, account: str) -> ProposalResult:
        """Propose admitting `account` as a DAO member."""
        return self._propose(proposer, self.contract.functions.proposeAddMember(to_checksum_address(account)))

    def propose_remove_member(self, proposer: LocalAccount, account: str) -> ProposalResult:
        """Propose removing member `account`."""
        return self._propose(proposer, self.contract.functions.proposeRemoveMember(to_checksum_address(account)))

    def propose_admit_node(self, proposer: LocalAccount, account: str) -> ProposalResult:
        """Propose admitting `account` as a node."""
        return self._propose(proposer, self.contract.functions.proposeAdmitNode(to_checksum_address(account)))

    def propose_remove_node(self, proposer: LocalAccount, account: str) -> ProposalResult:
        """Propose removing node `account`."""
        return self._propose(proposer, self.contract.functions.proposeRemoveNode(to_checksum_address(account)))

    def propose_revoke_batch(self, proposer: LocalAccount, root: bytes | str) -> ProposalResult:
        """Propose revoking accepted batch `root`."""
        return self._propose(proposer, self.contract.functions.proposeRevokeBatch(_as_bytes32(root, "root")))

    def propose_revoke_experience(
        self, proposer: LocalAccount, root: bytes | str, leaf_index: int, leaf: bytes, proof: Sequence[bytes]
    ) -> ProposalResult:
        """Propose revoking one experience of accepted batch `root`: the leaf `leaf` at `leaf_index`,
        proven by `proof` (the audit path of `dso.core.merkle.prove_inclusion(leaves, leaf_index).path`).
        The contract checks the proof against the batch's on-chain count."""
        path = [_as_bytes32(h, "proof entry") for h in proof]
        call = self.contract.functions.proposeRevokeLeaf(_as_bytes32(root, "root"), leaf_index, bytes(leaf), path)
        return self._propose(proposer, call)

    def propose_voting_parameters(self, proposer: LocalAccount, voting_period: int, quorum_bps: int) -> ProposalResult:
        """Propose a new voting period (seconds, 1 minute..30 days) and quorum (basis points,
        1..10,000). Once accepted they apply to batches and proposals created afterwards; open
        ones keep their deadline and quorum."""
        return self._propose(proposer, self.contract.functions.proposeVotingParameterChange(voting_period, quorum_bps))

    def vote_on_proposal(self, member: LocalAccount, proposal_id: int, support: bool) -> TxResult:
        """Cast `member`'s vote on proposal `proposal_id`."""
        return _tx_result(self._transact(member, self.contract.functions.voteOnProposal(proposal_id, support)))

    def finalize_proposal(self, sender: LocalAccount, proposal_id: int) -> FinalizeResult:
        """Decide proposal `proposal_id`; an accepted proposal's action runs in the same transaction."""
        receipt = self._transact(sender, self.contract.functions.finalizeProposal(proposal_id))
        event = self._single_event(receipt, "ProposalFinalized")
        return FinalizeResult(Status(event["status"]), _tx_result(receipt), bool(event["applied"]))

    # ------------------------------------------------------------------ reads

    def chain_id(self) -> int:
        """Chain id of the connected network."""
        return _rpc(lambda: self.w3.eth.chain_id)

    def chain_time(self) -> int:
        """Timestamp of the latest block: the clock deadlines are measured against."""
        return int(_rpc(lambda: self.w3.eth.get_block("latest"))["timestamp"])

    def block_hash(self, number: int) -> str | None:
        """Hash (0x hex) of block `number`, or None if the chain has no such block (yet)."""
        try:
            block = _rpc(lambda: self.w3.eth.get_block(number))
        except BlockNotFound:
            return None
        return HexBytes(block["hash"]).to_0x_hex()

    def batch(self, root: bytes | str) -> BatchInfo:
        """On-chain state of batch `root` (status NONE if unknown)."""
        raw = self._call(self.contract.functions.batch(_as_bytes32(root, "root")))
        return _batch_info(raw)

    def proposal(self, proposal_id: int) -> ProposalInfo:
        """On-chain state of proposal `proposal_id` (status NONE if unknown)."""
        return _proposal_info(self._call(self.contract.functions.proposal(proposal_id)))

    def batches(self, offset: int = 0, limit: int = MAX_PAGE) -> list[BatchInfo]:
        """One page of batches in submission order."""
        return [_batch_info(raw) for raw in self._call(self.contract.functions.batchesPage(offset, limit))]

    def proposals(self, offset: int = 0, limit: int = MAX_PAGE) -> list[ProposalInfo]:
        """One page of proposals in creation order."""
        return [_proposal_info(raw) for raw in self._call(self.contract.functions.proposalsPage(offset, limit))]

    def all_batches(self) -> Iterator[BatchInfo]:
        """Every batch, fetched page by page."""
        return self._paginate(self.batch_count(), self.batches)

    def seat_holders(self, offset: int = 0, limit: int = MAX_PAGE) -> list[str]:
        """One page of seat holders (past and present members) in seat order."""
        return list(self._call(self.contract.functions.seatsPage(offset, limit)))

    def members(self) -> list[str]:
        """Current members, in seat order."""
        seats = self._paginate(self._call(self.contract.functions.seatCount()), self.seat_holders)
        return [address for address in seats if self.is_member(address)]

    def node_addresses(self, offset: int = 0, limit: int = MAX_PAGE) -> list[str]:
        """One page of node addresses in id order (offset 0 = node id 1)."""
        return list(self._call(self.contract.functions.nodesPage(offset, limit)))

    def nodes(self) -> list[tuple[int, str, bool]]:
        """Every node ever admitted as (id, address, active)."""
        addresses = self._paginate(self._call(self.contract.functions.nodeCount()), self.node_addresses)
        return [(i + 1, address, self.node(address)[1]) for i, address in enumerate(addresses)]

    def is_member(self, account: str) -> bool:
        """Whether `account` is currently a member."""
        return bool(self._call(self.contract.functions.isMember(to_checksum_address(account))))

    def node(self, account: str) -> tuple[int, bool]:
        """(node id, active) of `account`; id 0 if never admitted."""
        node_id, active = self._call(self.contract.functions.node(to_checksum_address(account)))
        return int(node_id), bool(active)

    def is_experience_revoked(self, root: bytes | str, leaf_index: int) -> bool:
        """Whether leaf `leaf_index` of batch `root` was revoked on its own (a revoked batch drops
        all its experiences whatever this says)."""
        return bool(self._call(self.contract.functions.isRevokedLeaf(_as_bytes32(root, "root"), leaf_index)))

    def has_voted_on_batch(self, root: bytes | str, voter: str) -> bool:
        """Whether `voter` has voted on batch `root`."""
        return bool(self._call(self.contract.functions.hasVotedOnBatch(_as_bytes32(root, "root"), to_checksum_address(voter))))

    def has_voted_on_proposal(self, proposal_id: int, voter: str) -> bool:
        """Whether `voter` has voted on proposal `proposal_id`."""
        return bool(self._call(self.contract.functions.hasVotedOnProposal(proposal_id, to_checksum_address(voter))))

    def nonce(self, node: str) -> int:
        """Next EIP-712 nonce of `node`."""
        return int(self._call(self.contract.functions.nonces(to_checksum_address(node))))

    def batch_count(self) -> int:
        """Number of batches ever submitted."""
        return int(self._call(self.contract.functions.batchCount()))

    def proposal_count(self) -> int:
        """Number of proposals ever created."""
        return int(self._call(self.contract.functions.proposalCount()))

    def parameters(self) -> dict[str, int]:
        """Current voting period (s), quorum (bps), membership clock and member count: what a batch
        or proposal created now gets (each open one keeps its own deadline and `Tally.quorum_bps`)."""
        f = self.contract.functions
        return {
            "voting_period": int(self._call(f.votingPeriod())),
            "quorum_bps": int(self._call(f.quorumBps())),
            "membership_clock": int(self._call(f.membershipClock())),
            "member_count": int(self._call(f.memberCount())),
        }

    # ------------------------------------------------------------------ events

    def events(self, from_block: int, to_block: int | None = None, confirmations: int = 0, chunk: int = 5_000) -> EventPage:
        """Decoded registry events of blocks [from_block, to_block], oldest first.

        `to_block` defaults to the head minus `confirmations` (blocks a reorg could still undo).
        Logs are fetched `chunk` blocks at a time, so public RPCs' range limits are respected. Pass
        the returned page's `next_block` as the next call's `from_block` to resume: that value is
        the sync checkpoint.
        """
        if isinstance(confirmations, bool) or not isinstance(confirmations, int) or confirmations < 0:
            raise ChainError(f"confirmations must be a whole number of blocks >= 0; got {confirmations!r}")
        head = _rpc(lambda: self.w3.eth.block_number) - confirmations
        end = head if to_block is None else min(to_block, head)
        found: list[RegistryEvent] = []
        start = from_block
        while start <= end:
            stop = min(start + chunk - 1, end)
            logs = _rpc(lambda: self.w3.eth.get_logs({"address": self.address, "fromBlock": start, "toBlock": stop}))
            found.extend(self._decode_log(log) for log in logs)
            start = stop + 1
        return EventPage(found, from_block, max(end, from_block - 1))

    def batch_submission(self, root: bytes | str, from_block: int = 0, chunk: int = 5_000) -> RegistryEvent | None:
        """The `BatchSubmitted` event of batch `root` (its CID, count, schema and node), or None if
        the chain holds no such batch.

        The root is an indexed topic, so the node filters the logs and nothing of other batches is
        transferred; windows of `chunk` blocks are searched from the head backwards down to
        `from_block` (the deploy block), so a recent batch is found in one or two requests.
        """
        root32 = _as_bytes32(root, "root")
        if self.batch(root32).tally.status == Status.NONE:
            return None
        topics = [self._topic_of["BatchSubmitted"], HexBytes(root32).to_0x_hex()]
        stop = _rpc(lambda: self.w3.eth.block_number)
        while stop >= from_block:
            start = max(from_block, stop - chunk + 1)
            logs = _rpc(lambda: self.w3.eth.get_logs({"address": self.address, "fromBlock": start, "toBlock": stop, "topics": topics}))
            if logs:
                return self._decode_log(logs[0])
            stop = start - 1
        return None

    def voting_periods(self, from_block: int = 0) -> list[tuple[int, int]]:
        """(membership clock, voting period in seconds) from each `VotingParametersChanged` event
        (the constructor emits the first), oldest first: a batch or proposal whose snapshot is clock
        c was opened with the period of the last entry at or before c, so it was created at its
        deadline minus that period."""
        return [(int(e.args["clock"]), int(e.args["votingPeriod"])) for e in self.events_named("VotingParametersChanged", from_block)]

    def events_named(self, name: str, from_block: int = 0, *topics: bytes, chunk: int = 5_000) -> list[RegistryEvent]:
        """Decoded events called `name` (filtered by the node, with indexed `topics` after the
        first if given), oldest first, from `from_block` to the head."""
        if name not in self._topic_of:
            raise ChainError(f"the registry emits no event called {name}")
        filters = [self._topic_of[name], *(HexBytes(t.rjust(32, b"\0")).to_0x_hex() for t in topics)]
        head = _rpc(lambda: self.w3.eth.block_number)
        found: list[RegistryEvent] = []
        start = from_block
        while start <= head:
            stop = min(start + chunk - 1, head)
            logs = _rpc(lambda: self.w3.eth.get_logs({"address": self.address, "fromBlock": start, "toBlock": stop, "topics": filters}))
            found.extend(self._decode_log(log) for log in logs)
            start = stop + 1
        return found

    def _decode_log(self, log: Any) -> RegistryEvent:
        name = self._events.get(HexBytes(log["topics"][0]))
        if name is None:
            raise ChainError(f"unrecognized log topic {HexBytes(log['topics'][0]).hex()} from the registry")
        data = self.contract.events[name]().process_log(log)
        return RegistryEvent(
            name=data["event"],
            args={k: _event_arg_value(v) for k, v in data["args"].items()},
            block_number=data["blockNumber"],
            tx_hash=HexBytes(data["transactionHash"]).to_0x_hex(),
            log_index=data["logIndex"],
        )

    # ------------------------------------------------------------------ plumbing

    def _call(self, fn: Any) -> Any:
        try:
            return _rpc(fn.call)
        except (ContractCustomError, ContractLogicError) as exc:
            raise self.errors.decode(getattr(exc, "data", None)) from exc

    def _call_from(self, sender: str, fn: Any) -> Any:
        try:
            return _rpc(lambda: fn.call({"from": sender}))
        except (ContractCustomError, ContractLogicError) as exc:
            raise self.errors.decode(getattr(exc, "data", None)) from exc

    def _transact(self, sender: LocalAccount, fn: Any) -> Any:
        data = self.contract.encode_abi(fn.abi_element_identifier, args=fn.args, kwargs=fn.kwargs)
        tx = {"to": self.address, "data": data}
        return _send(self.w3, sender, tx, self.errors)

    def _propose(self, proposer: LocalAccount, fn: Any) -> ProposalResult:
        receipt = self._transact(proposer, fn)
        event = self._single_event(receipt, "ProposalCreated")
        return ProposalResult(int(event["proposalId"]), _tx_result(receipt))

    def _submit_result(self, receipt: Any) -> SubmitResult:
        event = self._single_event(receipt, "BatchSubmitted")
        return SubmitResult(bytes(HexBytes(event["root"])), int(event["nodeId"]), _tx_result(receipt))

    def _single_event(self, receipt: Any, name: str) -> dict[str, Any]:
        for log in receipt["logs"]:
            if HexBytes(log["address"]) == HexBytes(self.address) and log["topics"]:
                event = self._decode_log(log)
                if event.name == name:
                    return event.args
        raise ChainError(f"transaction {HexBytes(receipt['transactionHash']).to_0x_hex()} emitted no {name}")

    def _paginate(self, total: int, fetch: Callable[[int, int], list[T]]) -> Iterator[T]:
        for offset in range(0, total, MAX_PAGE):
            yield from fetch(offset, MAX_PAGE)


def _send(w3: Web3, sender: LocalAccount, tx: dict[str, Any], decoder: ErrorDecoder) -> Any:
    """Simulate, sign locally, send raw, wait for the receipt; decode reverts into ContractRevert."""
    tx = {**tx, "from": sender.address}
    try:
        gas = _rpc(lambda: w3.eth.estimate_gas(tx))
    except (ContractCustomError, ContractLogicError) as exc:
        raise decoder.decode(getattr(exc, "data", None)) from exc
    except ContractPanicError as exc:
        raise ContractRevert("Panic", (str(exc),)) from exc
    except Web3RPCError as exc:
        raise ChainError(f"node refused the transaction: {exc}") from exc
    tx.update(_fees(w3))
    tx["gas"] = gas + gas // 5  # estimates can fall short when state moves between simulate and mine
    tx["nonce"] = _rpc(lambda: w3.eth.get_transaction_count(sender.address, "pending"))
    tx["chainId"] = _rpc(lambda: w3.eth.chain_id)
    signed = sender.sign_transaction(tx)
    try:
        tx_hash = _rpc(lambda: w3.eth.send_raw_transaction(signed.raw_transaction))
        receipt = _rpc(lambda: w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT, poll_latency=0.05))
    except TimeExhausted as exc:
        raise ChainError(f"transaction {HexBytes(signed.hash).to_0x_hex()} not mined within {RECEIPT_TIMEOUT:.0f}s") from exc
    except Web3RPCError as exc:
        raise ChainError(f"node refused the transaction: {exc}") from exc
    if receipt["status"] != 1:
        raise _mined_revert(w3, tx, receipt, decoder)
    return receipt


def _mined_revert(w3: Web3, tx: dict[str, Any], receipt: Any, decoder: ErrorDecoder) -> ChainError:
    """Explain a transaction that passed simulation but reverted when mined (state or time moved
    in between, e.g. a vote mined after the deadline): replay it as a call in the block it was mined
    in and decode the contract's error."""
    tx_hash = HexBytes(receipt["transactionHash"]).to_0x_hex()
    call = {k: tx[k] for k in ("from", "to", "data") if k in tx}
    try:
        _rpc(lambda: w3.eth.call(call, block_identifier=receipt["blockNumber"]))
    except (ContractCustomError, ContractLogicError) as exc:
        revert = decoder.decode(getattr(exc, "data", None))
        return ContractRevert(revert.name, revert.args_, f"transaction {tx_hash} reverted when mined: {revert}")
    return ChainError(f"transaction {tx_hash} reverted when mined, after a successful simulation")


def _fees(w3: Web3) -> dict[str, int]:
    """EIP-1559 fees where the chain has a base fee, a legacy gas price elsewhere."""
    block = _rpc(lambda: w3.eth.get_block("latest"))
    base_fee = block.get("baseFeePerGas")
    if base_fee is None:
        return {"gasPrice": _rpc(lambda: w3.eth.gas_price)}
    tip = _rpc(lambda: w3.eth.max_priority_fee)
    return {"maxFeePerGas": 2 * base_fee + tip, "maxPriorityFeePerGas": tip}


def _tx_result(receipt: Any) -> TxResult:
    return TxResult(HexBytes(receipt["transactionHash"]).to_0x_hex(), int(receipt["blockNumber"]), int(receipt["gasUsed"]))


def _batch_info(raw: Sequence[Any]) -> BatchInfo:
    root, node_id, count, tally = raw
    return BatchInfo(bytes(root), int(node_id), int(count), _tally(tally))


def _proposal_info(raw: Sequence[Any]) -> ProposalInfo:
    proposal_id, kind, account, batch, leaf_index, leaf_hash, voting_period, quorum_bps, tally = raw
    return ProposalInfo(
        int(proposal_id), ProposalKind(kind), account, bytes(batch), _tally(tally), int(leaf_index), bytes(leaf_hash),
        int(voting_period), int(quorum_bps),
    )


def _event_arg_value(value: Any) -> Any:
    """A decoded event argument as dso stores it: byte strings as plain `bytes`, not HexBytes."""
    return bytes(value) if isinstance(value, (bytes, bytearray, HexBytes)) else value


def _event_signature(item: dict[str, Any]) -> str:
    return f"{item['name']}({','.join(_abi_type(inp) for inp in item['inputs'])})"
