// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title ExperienceRegistry
/// @notice On-chain half of dso: admitted nodes commit batches of AI-agent experiences (a Merkle
/// root over the batch's canonical experience encodings plus the IPFS CID of the batch document),
/// and DAO members vote each batch in or out. Membership, node admission and the revocation of an
/// accepted batch are DAO proposals decided by the same rule. No key can bypass a vote: the deployer
/// only seeds the first members and nodes.
///
/// A single experience of an accepted batch can be challenged on its own: a member proves with an
/// RFC 9162 inclusion proof (sha256, 0x00 leaf and 0x01 node prefixes, checked here with the sha256
/// precompile) that the experience is leaf `i` of the batch, and the DAO votes on revoking just that
/// leaf. The proof is checked against the batch's on-chain leaf count, never a caller-supplied size.
/// A leaf has at most one pending challenge; once it is finalized, a rejected challenge can be
/// raised again.
///
/// Decision rule (one rule for batches and proposals):
///   accepted  <=>  yes + no >= quorum  AND  3 * yes >= 2 * (yes + no)
/// where quorum = ceil(electorate * quorumBps / 10_000), at least 1, and the electorate and
/// quorumBps are those of the snapshot taken when the batch or proposal was created.
///
/// Snapshot rule: membership changes and voting-parameter changes advance a clock. A batch or
/// proposal records the clock value at creation; a member may vote on it iff they joined at or
/// before that value and had not left by then. A member admitted later cannot vote on it; a member
/// removed later still can (their seat counted in the electorate). The voting period and quorum are
/// DAO parameters too: a change applies to batches and proposals created after it, never to open
/// ones (their deadline is fixed at creation, their quorum read from their snapshot).
///
/// WARNING: the CID is committed in the `BatchSubmitted` event, not in storage (storing a string
/// costs ~4x the whole submission). Clients must read the CID from that log, whose integrity is the
/// chain's receipts root; `batch()` returns the root-keyed voting state only.
contract ExperienceRegistry {
    // ------------------------------------------------------------------ types

    /// @notice Lifecycle of a batch or proposal.
    /// Pending: open for votes. Accepted/Rejected: decided by `finalize`. Revoked: a batch that was
    /// accepted and later revoked by a DAO proposal (clients drop its experiences).
    enum Status {
        None,
        Pending,
        Accepted,
        Rejected,
        Revoked
    }

    /// @notice What a governance proposal does when accepted.
    enum ProposalKind {
        None,
        AddMember,
        RemoveMember,
        AdmitNode,
        RemoveNode,
        RevokeBatch,
        RevokeExperience,
        SetVotingParameters
    }

    /// @dev Voting state of a batch or proposal, packed into one slot so that a vote reads and
    /// writes a single word. `inlineVoters` records the votes of seats 0..63 in the same word
    /// (a DAO of up to 64 seats never pays for a fresh has-voted slot); larger seats use
    /// `_batchOverflowVoters` / `_proposalOverflowVoters`. `nodeId`/`count` are used by batches only.
    struct Tally {
        uint40 deadline;
        uint32 snapshot;
        uint24 yes;
        uint24 no;
        Status status;
        uint32 nodeId;
        uint32 count;
        uint64 inlineVoters;
    }

    /// @dev A member's seat and membership interval on the membership clock (leftAt 0 = still in).
    struct Member {
        uint32 seat;
        uint32 joinedAt;
        uint32 leftAt;
    }

    /// @dev An admitted node: `id` is its stable identity (1-based, never reused); `active` flips
    /// off when the DAO removes it. Aggregators count distinct node ids, not addresses.
    struct Node {
        uint32 id;
        bool active;
    }

    /// @dev One experience (leaf) of a batch: `challenge` is 1 + the id of its latest
    /// RevokeExperience proposal (0 = never challenged), `revoked` whether a challenge was accepted.
    /// Both share one slot, so the write that opens a challenge pays for the later revocation's
    /// slot too: the pending-challenge guard costs a challenge ~20k gas and its acceptance ~17k less.
    /// Other proposal kinds keep allowing duplicates, which apply as no-ops (`applied` false): the
    /// same guard over any action, keyed by its hash, measured 22.7k more gas on every proposal.
    struct Leaf {
        uint64 challenge;
        bool revoked;
    }

    /// @dev What a governance proposal acts on: an account (members, nodes), a batch root, a
    /// batch root and one of its leaves, or new voting parameters. `leafIndex`, `votingPeriod` and
    /// `quorumBps` share the first slot with `kind` and `account`, so other proposals pay nothing
    /// for them.
    struct Action {
        ProposalKind kind;
        address account;
        uint32 leafIndex;
        uint32 votingPeriod;
        uint16 quorumBps;
        bytes32 batch;
    }

    /// @dev The electorate and quorum in force from one membership-clock value on: what a tally
    /// with that snapshot is decided by. One slot, read once by `finalize*`.
    struct Electorate {
        uint32 members;
        uint16 quorumBps;
    }

    /// @notice Voting state of a batch or proposal, as returned by the views. `electorate` and
    /// `quorumBps` are those of its snapshot: the ones its decision uses.
    struct TallyView {
        Status status;
        uint24 yes;
        uint24 no;
        uint32 snapshot;
        uint32 electorate;
        uint40 deadline;
        uint16 quorumBps;
    }

    /// @notice A batch as returned by `batch` and `batchesPage`.
    struct BatchView {
        bytes32 root;
        uint32 nodeId;
        uint32 count;
        TallyView tally;
    }

    /// @notice A governance proposal as returned by `proposal` and `proposalsPage`.
    /// `leafIndex` and `leafHash` are set for RevokeExperience proposals only, `votingPeriod` and
    /// `quorumBps` (the proposed values) for SetVotingParameters proposals only (zero otherwise).
    struct ProposalView {
        uint64 id;
        ProposalKind kind;
        address account;
        bytes32 batch;
        uint32 leafIndex;
        bytes32 leafHash;
        uint32 votingPeriod;
        uint16 quorumBps;
        TallyView tally;
    }

    // ------------------------------------------------------------------ constants and parameters

    /// @notice EIP-712 type of a batch submission signed by a node for a relayer to send.
    bytes32 public constant SUBMIT_TYPEHASH = keccak256(
        "SubmitBatch(bytes32 root,bytes cid,uint32 count,bytes32 schema,uint256 nonce,uint256 deadline)"
    );

    bytes32 private constant _DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant _NAME_HASH = keccak256("ExperienceRegistry");
    bytes32 private constant _VERSION_HASH = keccak256("1");

    /// @dev secp256k1n / 2: signatures with a larger s are malleable twins and are refused.
    uint256 private constant _HALF_CURVE_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// @dev Longest audit path of a tree with at most 2^32 - 1 leaves (batch counts are uint32).
    uint256 private constant _MAX_PROOF_LENGTH = 32;

    uint256 private constant _INLINE_SEATS = 64;
    uint256 private constant _MAX_PAGE = 200;
    /// @dev Longest vote reason in bytes (UTF-8): a paragraph. Reasons live only in event logs;
    /// each byte costs ~24 gas (16 calldata + 8 log data), so 1,000 bytes add ~25k to a vote.
    uint256 private constant _MAX_REASON_BYTES = 1_000;
    /// @dev Most votes in one `castBatchVotes` call (a page of `batchesPage`).
    uint256 private constant _MAX_VOTES_PER_CALL = 200;
    uint256 private constant _MAX_SEATS = type(uint24).max;

    /// @dev Shortest voting period (1 minute). A shorter one leaves no time to sign, send and mine a
    /// vote (Ethereum blocks are 12 s apart): every batch would expire unvoted, i.e. rejected, and a
    /// proposal to lengthen the period again could never pass, so governance would be locked for
    /// good. A floor, not a recommendation: deployments use days (`dso deploy` defaults to 3 days).
    /// The bounds are private: a public getter sorting before a hot selector would cost every
    /// submit and vote 22 gas; `InvalidVotingPeriod` carries them.
    uint256 private constant _MIN_VOTING_PERIOD = 1 minutes;
    /// @dev Longest voting period (30 days). A batch nobody decides early stays pending, and out of
    /// every library, until its deadline; past a month the registry no longer decides in time to
    /// matter, and one accepted proposal could stall every later decision that long.
    uint256 private constant _MAX_VOTING_PERIOD = 30 days;
    /// @dev Quorum bounds in basis points: 0 is no quorum, and above 10_000 no tally could ever
    /// reach quorum, including a proposal to lower it again.
    uint256 private constant _MIN_QUORUM_BPS = 1;
    uint256 private constant _MAX_QUORUM_BPS = 10_000;

    uint256 private immutable _cachedChainId;
    bytes32 private immutable _cachedDomainSeparator;

    // ------------------------------------------------------------------ state

    /// @notice Membership clock: advanced by every membership change and every voting-parameter
    /// change, recorded as snapshots.
    uint32 public membershipClock;
    /// @notice Current number of members.
    uint32 public memberCount;
    /// @notice Number of seats ever assigned (members past and present).
    uint32 public seatCount;
    /// @notice Number of node ids ever assigned.
    uint32 public nodeCount;
    /// @notice Number of active nodes.
    uint32 public activeNodeCount;
    /// @notice Number of batches ever submitted.
    uint64 public batchCount;
    /// @notice Seconds a batch or proposal created now stays open for votes (open ones keep the
    /// deadline they were created with).
    /// @dev Fills storage slot 0 with the clock and `batchCount`, which `submitBatch` reads and
    /// writes anyway: reading the period there costs it nothing more than the immutable did.
    uint32 public votingPeriod;
    /// @notice Number of governance proposals ever created (proposal ids are 0..proposalCount-1).
    uint64 public proposalCount;

    mapping(address => Member) private _members;
    mapping(uint256 => address) private _seatHolder;
    /// @dev Electorate and quorum in force from each clock value on; `[membershipClock]` is current.
    mapping(uint32 => Electorate) private _electorateAt;
    mapping(address => Node) private _nodes;
    mapping(uint256 => address) private _nodeAddress;

    mapping(bytes32 => Tally) private _batches;
    mapping(bytes32 => mapping(uint256 => uint256)) private _batchOverflowVoters;
    mapping(uint256 => bytes32) private _batchAt;
    mapping(uint256 => Tally) private _proposals;
    mapping(uint256 => mapping(uint256 => uint256)) private _proposalOverflowVoters;
    mapping(uint256 => Action) private _actions;
    /// @dev Leaf hash of each RevokeExperience proposal (other proposals never write here).
    mapping(uint256 => bytes32) private _challengedLeafHash;
    /// @dev Challenged and revoked experiences: batch root => leaf index => its latest challenge.
    mapping(bytes32 => mapping(uint256 => Leaf)) private _leaves;

    /// @notice Next EIP-712 nonce of each node address.
    mapping(address => uint256) public nonces;

    // ------------------------------------------------------------------ events

    /// @notice A node committed a batch. Everything a client needs to fetch and verify it.
    /// @param root Merkle root (RFC 9162, sha256) over the batch's canonical experience encodings.
    /// @param nodeId Stable id of the submitting node.
    /// @param schema Identifier of the document format, embedding model and codec (client-defined).
    /// @param cid Binary CID of the batch document on IPFS.
    /// @param count Number of experiences (Merkle leaves).
    /// @dev The node's address is `nodeAddress(nodeId)` (also in `NodeAdmitted`); the snapshot and
    /// deadline are in `batch(root)`; the position for `batchesPage` is the order of these events.
    /// Leaving them out of the log keeps submission under 80k gas.
    event BatchSubmitted(bytes32 indexed root, uint32 indexed nodeId, bytes32 indexed schema, bytes cid, uint32 count);

    /// @notice A governance proposal was created.
    event ProposalCreated(
        uint64 indexed proposalId,
        ProposalKind indexed kind,
        address indexed proposer,
        address account,
        bytes32 batch,
        uint32 snapshot,
        uint40 deadline
    );

    /// @notice A member voted on a batch; `yes`/`no` are the tallies after the vote.
    event BatchVoteCast(bytes32 indexed root, address indexed voter, bool support, uint24 yes, uint24 no);

    /// @notice Member `voter` gave `reason` (UTF-8, at most 1,000 bytes) for their vote on batch
    /// `root`, cast in the same call (its `BatchVoteCast` precedes this event).
    /// @dev Reasons are kept in logs only: the contract never reads them, clients show them.
    event BatchVoteReason(bytes32 indexed root, address indexed voter, string reason);

    /// @notice A member voted on a proposal; `yes`/`no` are the tallies after the vote.
    event ProposalVoteCast(uint64 indexed proposalId, address indexed voter, bool support, uint24 yes, uint24 no);

    /// @notice A batch was decided (Accepted or Rejected).
    event BatchFinalized(bytes32 indexed root, Status status, uint24 yes, uint24 no, uint32 electorate);

    /// @notice A proposal was decided; if Accepted, `applied` tells whether its action changed state
    /// (false if the target had already changed, e.g. the account became a member meanwhile).
    event ProposalFinalized(
        uint64 indexed proposalId, Status status, uint24 yes, uint24 no, uint32 electorate, bool applied
    );

    /// @notice An accepted batch was revoked by proposal `proposalId`; clients drop its experiences.
    event BatchRevoked(bytes32 indexed root, uint64 indexed proposalId);

    /// @notice Proposal `proposalId` (also announced by `ProposalCreated`, kind RevokeExperience,
    /// `batch` = `root`) challenges leaf `leafIndex` of batch `root`, whose proven leaf hash is
    /// `leafHash` = sha256(0x00 || leaf). Voters find the experience at that index of the batch
    /// document and check its hash.
    event ExperienceRevocationProposed(uint64 indexed proposalId, bytes32 indexed root, uint32 leafIndex, bytes32 leafHash);

    /// @notice Leaf `leafIndex` of batch `root` (leaf hash `leafHash` = sha256(0x00 || leaf)) was
    /// revoked by proposal `proposalId`; clients drop that experience, and keep the batch's others.
    event ExperienceRevoked(bytes32 indexed root, uint32 leafIndex, bytes32 leafHash, uint64 indexed proposalId);

    /// @notice Proposal `proposalId` (also announced by `ProposalCreated`, kind SetVotingParameters)
    /// would set the voting period to `votingPeriod` seconds and the quorum to `quorumBps`.
    event VotingParametersProposed(uint64 indexed proposalId, uint32 votingPeriod, uint16 quorumBps);

    /// @notice Batches and proposals created from clock value `clock` on are open for `votingPeriod`
    /// seconds and need `quorumBps` of their electorate; open ones keep their own. Emitted at
    /// deployment (clock 0) and by each accepted SetVotingParameters proposal.
    event VotingParametersChanged(uint32 votingPeriod, uint16 quorumBps, uint32 clock);

    /// @notice Membership changed; `clock` is the new membership clock value.
    event MemberAdded(address indexed member, uint32 seat, uint32 clock);
    /// @notice Membership changed; `clock` is the new membership clock value.
    event MemberRemoved(address indexed member, uint32 seat, uint32 clock);
    /// @notice A node was admitted and may submit batches.
    event NodeAdmitted(address indexed node, uint32 indexed nodeId);
    /// @notice A node was removed and may no longer submit batches.
    event NodeRemoved(address indexed node, uint32 indexed nodeId);
    /// @notice A node burned its current nonce, invalidating a signature it handed out.
    event NonceUsed(address indexed node, uint256 nonce);

    // ------------------------------------------------------------------ errors

    /// @dev Fires when a deployment or a SetVotingParameters proposal names a voting period outside
    /// [minimum, maximum] seconds.
    error InvalidVotingPeriod(uint256 votingPeriod, uint256 minimum, uint256 maximum);
    /// @dev Fires when a deployment or a SetVotingParameters proposal names a quorum outside
    /// [minimum, maximum] basis points.
    error InvalidQuorumBps(uint256 quorumBps, uint256 minimum, uint256 maximum);
    error NoInitialMembers();
    error CallerIsNotAMember(address caller);
    error CallerIsNotAnAdmittedNode(address caller);
    error ZeroAddress();
    error EmptyMerkleRoot();
    error EmptyCid();
    error EmptyBatch();
    error BatchAlreadySubmitted(bytes32 root);
    error SignatureExpired(uint256 deadline);
    error InvalidSignature();
    error SignerIsNotAnAdmittedNode(address signer);
    error UnknownBatch(bytes32 root);
    error UnknownProposal(uint64 proposalId);
    error VotingClosed(uint256 deadline);
    error VotingStillOpen(uint256 deadline);
    error NotPending(Status status);
    error NotInSnapshotElectorate(address voter, uint32 snapshot);
    error AlreadyVoted(address voter);
    error AlreadyAMember(address account);
    error NotAMember(address account);
    error AlreadyAnAdmittedNode(address account);
    error NotAnAdmittedNode(address account);
    error BatchIsNotAccepted(bytes32 root, Status status);
    error PageTooLarge(uint256 limit, uint256 maxLimit);
    error TooManySeats();
    error LeafIndexOutOfRange(uint32 leafIndex, uint32 count);
    error InvalidInclusionProof();
    error ExperienceAlreadyRevoked(bytes32 root, uint32 leafIndex);
    /// @dev Fires when `proposeRevokeLeaf` names a leaf whose challenge `proposalId` is still
    /// pending (even past its deadline: finalize it first, then a rejected challenge can be re-raised).
    error LeafChallengePending(bytes32 root, uint32 leafIndex, uint64 proposalId);
    /// @dev Fires when a SetVotingParameters proposal names the voting period and quorum already in force.
    error VotingParametersUnchanged(uint32 votingPeriod, uint16 quorumBps);
    /// @dev Fires when `castBatchVotes` gets lists of different lengths.
    error VoteListsDiffer(uint256 roots, uint256 votes, uint256 reasons);
    /// @dev Fires when `castBatchVotes` gets no vote or more than `maxCount`.
    error VoteCountOutOfRange(uint256 count, uint256 maxCount);
    /// @dev Fires when the reason at position `index` of a `castBatchVotes` call exceeds `maxLength` bytes.
    error ReasonTooLong(uint256 index, uint256 length, uint256 maxLength);

    // ------------------------------------------------------------------ construction

    /// @notice Deploys the registry with its voting parameters and the seed electorate and nodes.
    /// @param votingPeriod_ Seconds each batch or proposal stays open (1 minute..30 days); the DAO
    /// can change it later.
    /// @param quorumBps_ Quorum as basis points of the snapshot electorate (1..10_000); the DAO can
    /// change it later.
    /// @param initialMembers First DAO members (at least one, no duplicates).
    /// @param initialNodes First admitted nodes (no duplicates).
    /// @dev The seeding loops are bounded by the deployer's own calldata and run once.
    constructor(
        uint32 votingPeriod_,
        uint16 quorumBps_,
        address[] memory initialMembers,
        address[] memory initialNodes
    ) {
        _checkVotingParameters(votingPeriod_, quorumBps_);
        if (initialMembers.length == 0) revert NoInitialMembers();
        votingPeriod = votingPeriod_;
        // Clock 0 holds the quorum that each membership change copies forward.
        _electorateAt[0].quorumBps = quorumBps_;
        emit VotingParametersChanged(votingPeriod_, quorumBps_, 0);
        _cachedChainId = block.chainid;
        _cachedDomainSeparator = _buildDomainSeparator();
        for (uint256 i = 0; i < initialMembers.length; ++i) {
            if (!_addMember(initialMembers[i])) revert AlreadyAMember(initialMembers[i]);
        }
        for (uint256 i = 0; i < initialNodes.length; ++i) {
            if (!_admitNode(initialNodes[i])) revert AlreadyAnAdmittedNode(initialNodes[i]);
        }
    }

    // ------------------------------------------------------------------ batches

    /// @notice Commits a batch from the calling admitted node and opens it for votes.
    /// @param root Merkle root of the batch (nonzero, never submitted before); also the batch id.
    /// @param cid Binary CID of the batch document (nonempty).
    /// @param count Number of experiences (leaves) in the batch (> 0).
    /// @param schema Identifier of format, model and codec, indexed for client-side filtering.
    /// @return nodeId The submitting node's id.
    function submitBatch(bytes32 root, bytes calldata cid, uint32 count, bytes32 schema)
        external
        returns (uint32 nodeId)
    {
        nodeId = _activeNodeId(msg.sender);
        if (nodeId == 0) revert CallerIsNotAnAdmittedNode(msg.sender);
        _recordBatch(root, cid, count, schema, nodeId);
    }

    /// @notice Commits a batch signed by an admitted node (EIP-712), sent by anyone (a relayer pays).
    /// @dev Replay protection: the signature covers the node's current nonce, the deadline, the
    /// chain id and this contract's address (domain separator); each root is accepted once.
    /// @param node The signing node's address.
    /// @param deadline Last timestamp at which the signature is valid.
    /// @param signature 65-byte (r, s, v) signature with low s.
    /// @return nodeId The signing node's id.
    function submitBatchWithSig(
        bytes32 root,
        bytes calldata cid,
        uint32 count,
        bytes32 schema,
        address node,
        uint256 deadline,
        bytes calldata signature
    ) external returns (uint32 nodeId) {
        if (block.timestamp > deadline) revert SignatureExpired(deadline);
        uint256 nonce = nonces[node];
        bytes32 structHash =
            keccak256(abi.encode(SUBMIT_TYPEHASH, root, keccak256(cid), count, schema, nonce, deadline));
        if (_recover(_hashTypedData(structHash), signature) != node) revert InvalidSignature();
        nodeId = _activeNodeId(node);
        if (nodeId == 0) revert SignerIsNotAnAdmittedNode(node);
        unchecked {
            nonces[node] = nonce + 1;
        }
        _recordBatch(root, cid, count, schema, nodeId);
    }

    /// @notice Burns the caller's current nonce so that a signature handed to a relayer can no
    /// longer be used.
    function useNonce() external {
        uint256 nonce = nonces[msg.sender]++;
        emit NonceUsed(msg.sender, nonce);
    }

    /// @notice Casts the caller's vote on batch `root`.
    /// @dev One vote per member, while pending and before the deadline, and only by members of the
    /// batch's snapshot electorate.
    /// @param support True to accept the batch, false to reject it.
    function voteOnBatch(bytes32 root, bool support) external {
        Tally memory tally = _batches[root];
        if (tally.status == Status.None) revert UnknownBatch(root);
        (uint24 yes, uint24 no) = _castVote(_batches[root], tally, _batchOverflowVoters[root], support);
        emit BatchVoteCast(root, msg.sender, support, yes, no);
    }

    /// @notice Casts the caller's votes on several batches in one transaction, each with an optional
    /// reason: `votes[i]` on `roots[i]`, and unless `reasons[i]` is empty a `BatchVoteReason`
    /// event after its `BatchVoteCast`. All or nothing: any vote `voteOnBatch` would refuse reverts
    /// the whole call with that vote's error.
    /// @dev Same rules and storage writes per vote as `voteOnBatch`, without a transaction's 21k base
    /// for each further vote. The name is chosen for its selector (0xdda486c9), which sorts after
    /// every vote, submit and finalize selector (see `proposeRevokeLeaf`).
    /// @param roots The batches, at most 200 (a repeated root reverts with `AlreadyVoted`).
    /// @param votes One vote per batch: true to accept, false to reject.
    /// @param reasons One reason per batch, UTF-8, at most 1,000 bytes; empty for none.
    function castBatchVotes(bytes32[] calldata roots, bool[] calldata votes, string[] calldata reasons) external {
        uint256 count = roots.length;
        if (votes.length != count || reasons.length != count) {
            revert VoteListsDiffer(count, votes.length, reasons.length);
        }
        if (count == 0 || count > _MAX_VOTES_PER_CALL) revert VoteCountOutOfRange(count, _MAX_VOTES_PER_CALL);
        for (uint256 i = 0; i < count; ++i) {
            bytes32 root = roots[i];
            bool support = votes[i];
            Tally memory tally = _batches[root];
            if (tally.status == Status.None) revert UnknownBatch(root);
            (uint24 yes, uint24 no) = _castVote(_batches[root], tally, _batchOverflowVoters[root], support);
            emit BatchVoteCast(root, msg.sender, support, yes, no);
            uint256 length = bytes(reasons[i]).length;
            if (length != 0) {
                if (length > _MAX_REASON_BYTES) revert ReasonTooLong(i, length, _MAX_REASON_BYTES);
                emit BatchVoteReason(root, msg.sender, reasons[i]);
            }
        }
    }

    /// @notice Decides batch `root`: after its deadline, or earlier once the remaining votes of the
    /// snapshot electorate cannot change the outcome. Anyone may call.
    /// @return status Accepted iff yes + no >= quorum and 3 * yes >= 2 * (yes + no), else Rejected.
    function finalizeBatch(bytes32 root) external returns (Status status) {
        Tally storage tally = _batches[root];
        if (tally.status == Status.None) revert UnknownBatch(root);
        // Read before `_finalize` writes the slot: no load is reused across that store (100 gas).
        (uint24 yes, uint24 no) = (tally.yes, tally.no);
        uint32 electorate;
        (status, electorate) = _finalize(tally);
        emit BatchFinalized(root, status, yes, no, electorate);
    }

    // ------------------------------------------------------------------ governance proposals

    /// @notice Proposes admitting `account` as a DAO member. Caller must be a member.
    /// @return proposalId Id to vote and finalize on.
    function proposeAddMember(address account) external returns (uint64 proposalId) {
        if (account == address(0)) revert ZeroAddress();
        if (_isMember(account)) revert AlreadyAMember(account);
        return _propose(ProposalKind.AddMember, account, bytes32(0));
    }

    /// @notice Proposes removing member `account`. Caller must be a member.
    /// @return proposalId Id to vote and finalize on.
    function proposeRemoveMember(address account) external returns (uint64 proposalId) {
        if (!_isMember(account)) revert NotAMember(account);
        return _propose(ProposalKind.RemoveMember, account, bytes32(0));
    }

    /// @notice Proposes admitting `account` as a node that may submit batches. Caller must be a member.
    /// @dev A removed node keeps its id and is not re-admitted: a new identity needs a new address.
    /// @return proposalId Id to vote and finalize on.
    function proposeAdmitNode(address account) external returns (uint64 proposalId) {
        if (account == address(0)) revert ZeroAddress();
        if (_nodes[account].id != 0) revert AlreadyAnAdmittedNode(account);
        return _propose(ProposalKind.AdmitNode, account, bytes32(0));
    }

    /// @notice Proposes removing admitted node `account`. Caller must be a member.
    /// @return proposalId Id to vote and finalize on.
    function proposeRemoveNode(address account) external returns (uint64 proposalId) {
        if (!_nodes[account].active) revert NotAnAdmittedNode(account);
        return _propose(ProposalKind.RemoveNode, account, bytes32(0));
    }

    /// @notice Proposes revoking accepted batch `root` (clients drop its experiences on sync).
    /// Caller must be a member.
    /// @return proposalId Id to vote and finalize on.
    function proposeRevokeBatch(bytes32 root) external returns (uint64 proposalId) {
        Status status = _batches[root].status;
        if (status != Status.Accepted) revert BatchIsNotAccepted(root, status);
        return _propose(ProposalKind.RevokeBatch, address(0), root);
    }

    /// @notice Proposes revoking one experience of accepted batch `root`: the leaf at `leafIndex`,
    /// proven by an RFC 9162 inclusion proof (clients drop that experience on sync and keep the
    /// rest of the batch). Caller must be a member.
    /// @dev The proof is verified against the batch's on-chain count as the tree size: an audit
    /// path can fit more than one tree size (leaf 2 of a 3-leaf tree proves as leaf 1 of a 2-leaf
    /// tree), so a caller-chosen size would let a proof name the wrong index. The loop is bounded:
    /// a path longer than 32 levels cannot fit a uint32 count and is refused.
    /// One challenge per leaf at a time: a second one while the first is pending reverts with
    /// `LeafChallengePending` naming it; after a rejection the leaf can be challenged again.
    /// The name is chosen for its selector (0xf93eb816), which sorts after every vote, submit and
    /// finalize selector: the dispatcher compares selectors in ascending order, and each function
    /// placed before a hot one would add 22 gas to every call of it.
    /// @param root The batch's Merkle root.
    /// @param leafIndex 0-based position of the experience in the batch (< the batch's count).
    /// @param leaf The experience's canonical bytes (the Merkle leaf's data).
    /// @param proof Audit path of sibling hashes, bottom-up, exactly as long as (leafIndex, count)
    /// requires (dso.core.merkle.prove_inclusion's `path`).
    /// @return proposalId Id to vote and finalize on.
    function proposeRevokeLeaf(bytes32 root, uint32 leafIndex, bytes calldata leaf, bytes32[] calldata proof)
        external
        returns (uint64 proposalId)
    {
        Tally storage tally = _batches[root];
        Status status = tally.status;
        if (status != Status.Accepted) revert BatchIsNotAccepted(root, status);
        uint32 count = tally.count;
        if (leafIndex >= count) revert LeafIndexOutOfRange(leafIndex, count);
        Leaf memory state = _leaves[root][leafIndex];
        if (state.revoked) revert ExperienceAlreadyRevoked(root, leafIndex);
        if (state.challenge != 0 && _proposals[state.challenge - 1].status == Status.Pending) {
            revert LeafChallengePending(root, leafIndex, state.challenge - 1);
        }
        bytes32 leafHash = sha256(abi.encodePacked(bytes1(0x00), leaf));
        if (_inclusionRoot(leafHash, leafIndex, count, proof) != root) revert InvalidInclusionProof();
        proposalId = _propose(ProposalKind.RevokeExperience, address(0), root);
        _actions[proposalId].leafIndex = leafIndex;
        _leaves[root][leafIndex].challenge = proposalId + 1;
        _challengedLeafHash[proposalId] = leafHash;
        emit ExperienceRevocationProposed(proposalId, root, leafIndex, leafHash);
    }

    /// @notice Proposes new voting parameters: batches and proposals created after this proposal is
    /// accepted stay open `votingPeriod_` seconds and need `quorumBps_` of their electorate; those
    /// already open keep their deadline and quorum. Caller must be a member.
    /// @dev Bounds: 1 minute..30 days and 1..10_000 bps, the constructor's (see the constants).
    /// CAUTION: the bounds keep governance usable, not prudent: a low quorum lets a few voters
    /// decide every later batch and proposal, including the next parameter change.
    /// The name is chosen for its selector (0xdfc72ca2), which sorts after every vote, submit and
    /// finalize selector (see `proposeRevokeLeaf`).
    /// @param votingPeriod_ The new voting period in seconds.
    /// @param quorumBps_ The new quorum in basis points of the snapshot electorate.
    /// @return proposalId Id to vote and finalize on.
    function proposeVotingParameterChange(uint32 votingPeriod_, uint16 quorumBps_)
        external
        returns (uint64 proposalId)
    {
        _checkVotingParameters(votingPeriod_, quorumBps_);
        if (votingPeriod_ == votingPeriod && quorumBps_ == _currentQuorumBps()) {
            revert VotingParametersUnchanged(votingPeriod_, quorumBps_);
        }
        proposalId = _propose(ProposalKind.SetVotingParameters, address(0), bytes32(0));
        Action storage action = _actions[proposalId];
        action.votingPeriod = votingPeriod_;
        action.quorumBps = quorumBps_;
        emit VotingParametersProposed(proposalId, votingPeriod_, quorumBps_);
    }

    /// @notice Casts the caller's vote on proposal `proposalId`; same rules as `voteOnBatch`.
    function voteOnProposal(uint64 proposalId, bool support) external {
        Tally memory tally = _proposals[proposalId];
        if (tally.status == Status.None) revert UnknownProposal(proposalId);
        (uint24 yes, uint24 no) =
            _castVote(_proposals[proposalId], tally, _proposalOverflowVoters[proposalId], support);
        emit ProposalVoteCast(proposalId, msg.sender, support, yes, no);
    }

    /// @notice Decides proposal `proposalId` under the same rule as `finalizeBatch`; an accepted
    /// proposal's action runs in the same transaction. Anyone may call.
    /// @return status The decided status.
    function finalizeProposal(uint64 proposalId) external returns (Status status) {
        Tally storage tally = _proposals[proposalId];
        if (tally.status == Status.None) revert UnknownProposal(proposalId);
        (uint24 yes, uint24 no) = (tally.yes, tally.no); // as in `finalizeBatch`
        uint32 electorate;
        (status, electorate) = _finalize(tally);
        bool applied = status == Status.Accepted && _execute(proposalId);
        emit ProposalFinalized(proposalId, status, yes, no, electorate, applied);
    }

    // ------------------------------------------------------------------ views

    /// @notice Whether `account` is currently a DAO member.
    function isMember(address account) external view returns (bool) {
        return _isMember(account);
    }

    /// @notice A member's seat and membership interval on the membership clock (zeros if never a member).
    function member(address account) external view returns (uint32 seat, uint32 joinedAt, uint32 leftAt) {
        Member memory m = _members[account];
        return (m.seat, m.joinedAt, m.leftAt);
    }

    /// @notice A node's id (0 if never admitted) and whether it is currently admitted.
    function node(address account) external view returns (uint32 id, bool active) {
        Node memory n = _nodes[account];
        return (n.id, n.active);
    }

    /// @notice The address of node id `nodeId` (zero address if unassigned).
    function nodeAddress(uint32 nodeId) external view returns (address) {
        return _nodeAddress[nodeId];
    }

    /// @notice Number of members at membership clock value `clock` (the electorate of a snapshot).
    function memberCountAt(uint32 clock) external view returns (uint32) {
        return _electorateAt[clock].members;
    }

    /// @notice Quorum, in basis points of the snapshot electorate, that batches and proposals
    /// created now need (1..10_000); each open one keeps its own (`TallyView.quorumBps`).
    function quorumBps() external view returns (uint16) {
        return _currentQuorumBps();
    }

    /// @notice Number of votes needed for quorum given an electorate size (at least 1), under the
    /// current quorum (`quorumBps`).
    function quorumFor(uint256 electorate) external view returns (uint256) {
        return _quorum(electorate, _currentQuorumBps());
    }

    /// @notice Batch `root` (tally status None if unknown).
    function batch(bytes32 root) external view returns (BatchView memory) {
        return _batchView(root);
    }

    /// @notice Proposal `proposalId` (tally status None if unknown).
    function proposal(uint64 proposalId) external view returns (ProposalView memory) {
        return _proposalView(proposalId);
    }

    /// @notice Whether leaf `leafIndex` of batch `root` was revoked by a RevokeExperience proposal.
    /// @dev Clients drop a revoked experience; a revoked batch (`batch(root)` status Revoked) drops
    /// all of its experiences whatever this returns. Named, like `proposeRevokeLeaf`, for a selector
    /// (0xff446b89) that sorts after the hot functions'.
    function isRevokedLeaf(bytes32 root, uint32 leafIndex) external view returns (bool) {
        return _leaves[root][leafIndex].revoked;
    }

    /// @notice Whether `voter` has voted on batch `root`.
    function hasVotedOnBatch(bytes32 root, address voter) external view returns (bool) {
        return _hasVoted(_batches[root], _batchOverflowVoters[root], voter);
    }

    /// @notice Whether `voter` has voted on proposal `proposalId`.
    function hasVotedOnProposal(uint64 proposalId, address voter) external view returns (bool) {
        return _hasVoted(_proposals[proposalId], _proposalOverflowVoters[proposalId], voter);
    }

    /// @notice Batches in submission order, `limit` (<= 200) from `offset`.
    function batchesPage(uint256 offset, uint256 limit) external view returns (BatchView[] memory page) {
        uint256 n = _pageLength(batchCount, offset, limit);
        page = new BatchView[](n);
        for (uint256 i = 0; i < n; ++i) {
            page[i] = _batchView(_batchAt[offset + i]);
        }
    }

    /// @notice Proposals in creation order (ids offset..), `limit` (<= 200) from `offset`.
    function proposalsPage(uint256 offset, uint256 limit) external view returns (ProposalView[] memory page) {
        uint256 n = _pageLength(proposalCount, offset, limit);
        page = new ProposalView[](n);
        for (uint256 i = 0; i < n; ++i) {
            page[i] = _proposalView(uint64(offset + i));
        }
    }

    /// @notice Seat holders (past and present members) in seat order, `limit` (<= 200) from
    /// `offset`; check `isMember` for current membership.
    function seatsPage(uint256 offset, uint256 limit) external view returns (address[] memory holders) {
        uint256 n = _pageLength(seatCount, offset, limit);
        holders = new address[](n);
        for (uint256 i = 0; i < n; ++i) {
            holders[i] = _seatHolder[offset + i];
        }
    }

    /// @notice Node addresses in id order (offset 0 = node id 1), `limit` (<= 200) from `offset`;
    /// check `node` for current admission.
    function nodesPage(uint256 offset, uint256 limit) external view returns (address[] memory nodes) {
        uint256 n = _pageLength(nodeCount, offset, limit);
        nodes = new address[](n);
        for (uint256 i = 0; i < n; ++i) {
            nodes[i] = _nodeAddress[offset + i + 1];
        }
    }

    /// @notice The EIP-712 domain separator for this chain and contract.
    function domainSeparator() public view returns (bytes32) {
        return block.chainid == _cachedChainId ? _cachedDomainSeparator : _buildDomainSeparator();
    }

    // ------------------------------------------------------------------ internals: voting

    function _recordBatch(bytes32 root, bytes calldata cid, uint32 count, bytes32 schema, uint32 nodeId) private {
        if (root == bytes32(0)) revert EmptyMerkleRoot();
        if (cid.length == 0) revert EmptyCid();
        if (count == 0) revert EmptyBatch();
        Tally storage tally = _batches[root];
        if (tally.status != Status.None) revert BatchAlreadySubmitted(root);
        _open(tally);
        tally.nodeId = nodeId;
        tally.count = count;
        _batchAt[batchCount++] = root;
        emit BatchSubmitted(root, nodeId, schema, cid, count);
    }

    function _propose(ProposalKind kind, address account, bytes32 target) private returns (uint64 proposalId) {
        if (!_isMember(msg.sender)) revert CallerIsNotAMember(msg.sender);
        proposalId = proposalCount++;
        (uint32 snapshot, uint40 deadline) = _open(_proposals[proposalId]);
        Action storage action = _actions[proposalId];
        action.kind = kind;
        action.account = account;
        // Member and node proposals have no target: skipping the zero write saves a cold SSTORE.
        if (target != bytes32(0)) action.batch = target;
        emit ProposalCreated(proposalId, kind, msg.sender, account, target, snapshot, deadline);
    }

    /// @dev Opens `tally` for votes: snapshot of the electorate now, deadline one voting period away.
    function _open(Tally storage tally) private returns (uint32 snapshot, uint40 deadline) {
        snapshot = membershipClock;
        deadline = uint40(block.timestamp) + votingPeriod;
        tally.deadline = deadline;
        tally.snapshot = snapshot;
        tally.status = Status.Pending;
    }

    /// @dev Checks the caller may vote, records the vote, writes the tally's slot once.
    /// `tally` is the caller's memory copy of `slot` (read once for the existence check).
    function _castVote(
        Tally storage slot,
        Tally memory tally,
        mapping(uint256 => uint256) storage overflowVoters,
        bool support
    ) private returns (uint24, uint24) {
        if (tally.status != Status.Pending) revert NotPending(tally.status);
        if (block.timestamp >= tally.deadline) revert VotingClosed(tally.deadline);
        Member memory voter = _members[msg.sender];
        if (voter.joinedAt == 0) revert CallerIsNotAMember(msg.sender);
        if (voter.joinedAt > tally.snapshot || (voter.leftAt != 0 && voter.leftAt <= tally.snapshot)) {
            revert NotInSnapshotElectorate(msg.sender, tally.snapshot);
        }
        if (voter.seat < _INLINE_SEATS) {
            uint64 bit = uint64(1) << voter.seat;
            if (tally.inlineVoters & bit != 0) revert AlreadyVoted(msg.sender);
            tally.inlineVoters |= bit;
        } else {
            uint256 offset = voter.seat - _INLINE_SEATS;
            uint256 bit = 1 << (offset & 0xff);
            uint256 word = overflowVoters[offset >> 8];
            if (word & bit != 0) revert AlreadyVoted(msg.sender);
            overflowVoters[offset >> 8] = word | bit;
        }
        if (support) ++tally.yes;
        else ++tally.no;
        slot.yes = tally.yes;
        slot.no = tally.no;
        slot.inlineVoters = tally.inlineVoters;
        return (tally.yes, tally.no);
    }

    /// @dev Decides a pending tally or reverts with VotingStillOpen / NotPending.
    function _finalize(Tally storage tally) private returns (Status status, uint32 electorate) {
        if (tally.status != Status.Pending) revert NotPending(tally.status);
        Electorate storage snapshot = _electorateAt[tally.snapshot];
        electorate = snapshot.members;
        uint256 quorum = _quorum(electorate, snapshot.quorumBps);
        status = _decide(tally.yes, tally.no, electorate, quorum, block.timestamp >= tally.deadline);
        if (status == Status.Pending) revert VotingStillOpen(tally.deadline);
        tally.status = status;
    }

    /// @dev Outcome given the tally; Pending while the remaining electorate could still change it.
    function _decide(uint256 yes, uint256 no, uint256 electorate, uint256 quorum, bool deadlinePassed)
        private
        pure
        returns (Status)
    {
        uint256 cast = yes + no;
        if (deadlinePassed) {
            return (cast >= quorum && yes * 3 >= cast * 2) ? Status.Accepted : Status.Rejected;
        }
        uint256 remaining = electorate > cast ? electorate - cast : 0;
        // Accepted even if every remaining member votes no.
        if (cast >= quorum && yes * 3 >= (cast + remaining) * 2) return Status.Accepted;
        // Rejected even if every remaining member votes yes.
        if (cast + remaining < quorum || (yes + remaining) * 3 < (cast + remaining) * 2) return Status.Rejected;
        return Status.Pending;
    }

    /// @dev Votes needed for quorum: ceil(electorate * bps / 10_000), at least 1.
    function _quorum(uint256 electorate, uint256 bps) private pure returns (uint256) {
        uint256 needed = (electorate * bps + 9_999) / 10_000;
        return needed == 0 ? 1 : needed;
    }

    function _hasVoted(Tally storage tally, mapping(uint256 => uint256) storage overflowVoters, address voter)
        private
        view
        returns (bool)
    {
        Member memory m = _members[voter];
        if (m.joinedAt == 0) return false;
        if (m.seat < _INLINE_SEATS) return tally.inlineVoters & (uint64(1) << m.seat) != 0;
        uint256 offset = m.seat - _INLINE_SEATS;
        return overflowVoters[offset >> 8] & (1 << (offset & 0xff)) != 0;
    }

    // ------------------------------------------------------------------ internals: state changes

    /// @dev Runs an accepted proposal's action; false if its target had already changed.
    /// Reads the action's fields from storage one by one: member and node proposals never load the
    /// `batch` slot.
    function _execute(uint64 proposalId) private returns (bool) {
        Action storage action = _actions[proposalId];
        ProposalKind kind = action.kind;
        if (kind == ProposalKind.AddMember) return _addMember(action.account);
        if (kind == ProposalKind.RemoveMember) return _removeMember(action.account);
        if (kind == ProposalKind.AdmitNode) return _admitNode(action.account);
        if (kind == ProposalKind.RemoveNode) return _removeNode(action.account);
        if (kind == ProposalKind.RevokeBatch) return _revokeBatch(action.batch, proposalId);
        if (kind == ProposalKind.SetVotingParameters) return _setVotingParameters(action.votingPeriod, action.quorumBps);
        return _revokeLeaf(action.batch, action.leafIndex, proposalId);
    }

    function _addMember(address account) private returns (bool) {
        if (account == address(0)) revert ZeroAddress();
        if (_isMember(account)) return false;
        uint32 seat = seatCount;
        if (seat >= _MAX_SEATS) revert TooManySeats();
        seatCount = seat + 1;
        uint32 clock = _advanceClock(++memberCount, _currentQuorumBps());
        _members[account] = Member(seat, clock, 0);
        _seatHolder[seat] = account;
        emit MemberAdded(account, seat, clock);
        return true;
    }

    function _removeMember(address account) private returns (bool) {
        if (!_isMember(account)) return false;
        uint32 clock = _advanceClock(--memberCount, _currentQuorumBps());
        _members[account].leftAt = clock;
        emit MemberRemoved(account, _members[account].seat, clock);
        return true;
    }

    /// @dev False if both values are already in force (e.g. an identical proposal was accepted first).
    function _setVotingParameters(uint32 period, uint16 bps) private returns (bool) {
        if (period == votingPeriod && bps == _currentQuorumBps()) return false;
        uint32 clock = _advanceClock(memberCount, bps);
        votingPeriod = period;
        emit VotingParametersChanged(period, bps, clock);
        return true;
    }

    /// @dev Moves the clock one step and records the electorate and quorum in force from it on.
    function _advanceClock(uint32 members, uint16 bps) private returns (uint32 clock) {
        clock = ++membershipClock;
        Electorate storage record = _electorateAt[clock];
        record.members = members;
        record.quorumBps = bps;
    }

    function _admitNode(address account) private returns (bool) {
        if (account == address(0)) revert ZeroAddress();
        if (_nodes[account].id != 0) return false;
        uint32 nodeId = ++nodeCount;
        ++activeNodeCount;
        _nodes[account] = Node(nodeId, true);
        _nodeAddress[nodeId] = account;
        emit NodeAdmitted(account, nodeId);
        return true;
    }

    function _removeNode(address account) private returns (bool) {
        Node storage n = _nodes[account];
        if (!n.active) return false;
        n.active = false;
        --activeNodeCount;
        emit NodeRemoved(account, n.id);
        return true;
    }

    function _revokeBatch(bytes32 root, uint64 proposalId) private returns (bool) {
        Tally storage tally = _batches[root];
        if (tally.status != Status.Accepted) return false;
        tally.status = Status.Revoked;
        emit BatchRevoked(root, proposalId);
        return true;
    }

    /// @dev Always applies: a leaf has one pending challenge at most, and none is opened once it is
    /// revoked, so no other challenge can have revoked it meanwhile. Applies even if the whole batch
    /// was revoked meanwhile: the record stays true.
    function _revokeLeaf(bytes32 root, uint32 leafIndex, uint64 proposalId) private returns (bool) {
        _leaves[root][leafIndex].revoked = true;
        emit ExperienceRevoked(root, leafIndex, _challengedLeafHash[proposalId], proposalId);
        return true;
    }

    // ------------------------------------------------------------------ internals: reads

    function _isMember(address account) private view returns (bool) {
        Member memory m = _members[account];
        return m.joinedAt != 0 && m.leftAt == 0;
    }

    /// @dev Quorum (bps) that batches and proposals created now get.
    function _currentQuorumBps() private view returns (uint16) {
        return _electorateAt[membershipClock].quorumBps;
    }

    /// @dev Reverts unless `period` and `bps` are within the bounds (the constants above).
    function _checkVotingParameters(uint256 period, uint256 bps) private pure {
        if (period < _MIN_VOTING_PERIOD || period > _MAX_VOTING_PERIOD) {
            revert InvalidVotingPeriod(period, _MIN_VOTING_PERIOD, _MAX_VOTING_PERIOD);
        }
        if (bps < _MIN_QUORUM_BPS || bps > _MAX_QUORUM_BPS) revert InvalidQuorumBps(bps, _MIN_QUORUM_BPS, _MAX_QUORUM_BPS);
    }

    function _activeNodeId(address account) private view returns (uint32) {
        Node memory n = _nodes[account];
        return n.active ? n.id : 0;
    }

    function _tallyView(Tally memory t) private view returns (TallyView memory) {
        Electorate memory snapshot = t.status == Status.None ? Electorate(0, 0) : _electorateAt[t.snapshot];
        return TallyView({
            status: t.status,
            yes: t.yes,
            no: t.no,
            snapshot: t.snapshot,
            electorate: snapshot.members,
            deadline: t.deadline,
            quorumBps: snapshot.quorumBps
        });
    }

    function _batchView(bytes32 root) private view returns (BatchView memory) {
        Tally memory t = _batches[root];
        return BatchView({root: root, nodeId: t.nodeId, count: t.count, tally: _tallyView(t)});
    }

    function _proposalView(uint64 proposalId) private view returns (ProposalView memory) {
        Action memory action = _actions[proposalId];
        return ProposalView({
            id: proposalId,
            kind: action.kind,
            account: action.account,
            batch: action.batch,
            leafIndex: action.leafIndex,
            leafHash: _challengedLeafHash[proposalId],
            votingPeriod: action.votingPeriod,
            quorumBps: action.quorumBps,
            tally: _tallyView(_proposals[proposalId])
        });
    }

    function _pageLength(uint256 total, uint256 offset, uint256 limit) private pure returns (uint256) {
        if (limit > _MAX_PAGE) revert PageTooLarge(limit, _MAX_PAGE);
        if (offset >= total) return 0;
        uint256 available = total - offset;
        return available < limit ? available : limit;
    }

    // ------------------------------------------------------------------ internals: inclusion proofs

    /// @dev The root implied by an RFC 9162 inclusion proof (section 2.1.3.2) of the leaf with
    /// hash `leafHash` at `index` in a tree of `size` leaves, or zero if the proof's length does
    /// not fit (index, size); same algorithm as dso.core.merkle.compute_root. Nodes are
    /// sha256(0x01 || left || right). Requires index < size.
    function _inclusionRoot(bytes32 leafHash, uint256 index, uint256 size, bytes32[] calldata proof)
        private
        view
        returns (bytes32 r)
    {
        if (proof.length > _MAX_PROOF_LENGTH) return bytes32(0);
        uint256 fn = index;
        uint256 sn = size - 1;
        r = leafHash;
        for (uint256 i = 0; i < proof.length; ++i) {
            if (sn == 0) return bytes32(0); // path longer than the tree allows
            if (fn & 1 == 1 || fn == sn) {
                r = _nodeHash(proof[i], r);
                while (fn & 1 == 0 && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
            } else {
                r = _nodeHash(r, proof[i]);
            }
            fn >>= 1;
            sn >>= 1;
        }
        if (sn != 0) return bytes32(0); // path shorter than the tree requires
    }

    /// @dev sha256(0x01 || left || right) through the sha256 precompile (address 2), hashed from
    /// unallocated memory; `sha256(abi.encodePacked(...))` allocates per level and cost ~450 gas more.
    function _nodeHash(bytes32 left, bytes32 right) private view returns (bytes32 h) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore8(ptr, 0x01)
            mstore(add(ptr, 1), left)
            mstore(add(ptr, 33), right)
            if iszero(staticcall(gas(), 0x02, ptr, 65, 0x00, 0x20)) { revert(0, 0) }
            h := mload(0x00)
        }
    }

    // ------------------------------------------------------------------ internals: signatures

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(_DOMAIN_TYPEHASH, _NAME_HASH, _VERSION_HASH, block.chainid, address(this)));
    }

    function _hashTypedData(bytes32 structHash) private view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
    }

    /// @dev ecrecover with the checks it lacks: 65-byte length, low s, v in {27, 28}, nonzero signer.
    function _recover(bytes32 digest, bytes calldata signature) private pure returns (address signer) {
        if (signature.length != 65) revert InvalidSignature();
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > _HALF_CURVE_ORDER || (v != 27 && v != 28)) revert InvalidSignature();
        signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) revert InvalidSignature();
    }
}
