"""`dso dao`: governance proposals (members, nodes, revocations) and their votes."""

from __future__ import annotations

import click
from rich.table import Table

from dso.edges.chain import ProposalResult, Registry, Status
from dso.edges.config import load_config
from dso.errors import DsoError
from dso.interfaces.cli.options import (
    console,
    echo_json,
    format_option,
    open_registry,
    open_store,
    plain_text,
    resolve_root,
    unlock_wallet,
    wallet_options,
)


@click.group()
def dao() -> None:
    """DAO governance: members, nodes and revocations, decided by vote."""


def print_created(result: ProposalResult, what: str) -> None:
    console.print(f"proposal {result.proposal_id} created ({what}); vote with `dso dao vote {result.proposal_id} --approve`")


@dao.command("propose-member")
@click.argument("target")
@wallet_options
def dao_propose_member(target: str, wallet_name: str, password_env: str | None) -> None:
    """Propose admitting TARGET (an address) as a DAO member."""
    registry = open_registry()
    print_created(registry.propose_add_member(unlock_wallet(wallet_name, password_env), target), f"add-member {target}")


@dao.command("propose-remove-member")
@click.argument("target")
@wallet_options
def dao_propose_remove_member(target: str, wallet_name: str, password_env: str | None) -> None:
    """Propose removing member TARGET (an address)."""
    registry = open_registry()
    print_created(registry.propose_remove_member(unlock_wallet(wallet_name, password_env), target), f"remove-member {target}")


@dao.command("propose-node")
@click.argument("target")
@wallet_options
def dao_propose_node(target: str, wallet_name: str, password_env: str | None) -> None:
    """Propose admitting TARGET (an address) as a node."""
    registry = open_registry()
    print_created(registry.propose_admit_node(unlock_wallet(wallet_name, password_env), target), f"admit-node {target}")


@dao.command("propose-remove-node")
@click.argument("target")
@wallet_options
def dao_propose_remove_node(target: str, wallet_name: str, password_env: str | None) -> None:
    """Propose removing node TARGET (an address)."""
    registry = open_registry()
    print_created(registry.propose_remove_node(unlock_wallet(wallet_name, password_env), target), f"remove-node {target}")


@dao.command("revoke")
@click.argument("target")
@wallet_options
def dao_revoke(target: str, wallet_name: str, password_env: str | None) -> None:
    """Propose revoking accepted batch TARGET (root or prefix)."""
    registry = open_registry()
    proposer = unlock_wallet(wallet_name, password_env)
    print_created(registry.propose_revoke_batch(proposer, resolve_root(registry, target)), f"revoke {target}")


@dao.command("propose-voting-parameters")
@click.option("--voting-period", required=True, type=click.IntRange(min=1), help="Seconds each later batch or proposal stays open (60 s to 30 days).")
@click.option("--quorum-bps", required=True, type=click.IntRange(min=1), help="Quorum in basis points of the snapshot electorate (1 to 10,000).")
@wallet_options
def dao_propose_voting_parameters(voting_period: int, quorum_bps: int, wallet_name: str, password_env: str | None) -> None:
    """Propose a new voting period and quorum. Once accepted they apply to batches and proposals
    created afterwards; open ones keep their deadline and quorum."""
    registry = open_registry()
    result = registry.propose_voting_parameters(unlock_wallet(wallet_name, password_env), voting_period, quorum_bps)
    print_created(result, f"voting period {voting_period} s, quorum {quorum_bps / 100:g}%")


@dao.command("revoke-experience")
@click.argument("batch")
@click.argument("index", type=int)
@wallet_options
def dao_revoke_experience(batch: str, index: int, wallet_name: str, password_env: str | None) -> None:
    """Propose revoking experience INDEX (0-based, as `dso show` numbers them) of accepted batch
    BATCH (root or prefix): the batch document is fetched and verified, the experience shown, and
    its Merkle inclusion proof checked by the contract."""
    from dso.core.merkle import prove_inclusion
    from dso.workflows.verify import fetch_and_verify, find_commitment

    registry = open_registry()
    root = resolve_root(registry, batch)
    document = fetch_and_verify(open_store(), root.hex(), *find_commitment(registry, root, load_config().deploy_block))
    count = len(document.experiences)
    if not 0 <= index < count:
        raise DsoError(f"batch {root.hex()[:16]} holds experiences 0..{count - 1}; there is no experience {index}")
    experience, leaf = document.experiences[index], document.leaves[index]
    console.print(f"experience {index} of batch {root.hex()[:16]} ({experience.domain}, confidence {experience.confidence:.2f}):")
    console.print(f"  {plain_text(experience.text)}", highlight=False)
    proof = prove_inclusion(document.leaves, index)
    result = registry.propose_revoke_experience(unlock_wallet(wallet_name, password_env), root, index, leaf, proof.path)
    console.print(
        f"proposal {result.proposal_id} created (revoke-experience {root.hex()[:16]} #{index}, {len(proof.path)}-hash proof, "
        f"gas {result.tx.gas_used:,}); vote with `dso dao vote {result.proposal_id} --approve`"
    )


@dao.command("vote")
@click.argument("proposal_id", type=int)
@click.option("--approve/--reject", required=True)
@wallet_options
def dao_vote(proposal_id: int, approve: bool, wallet_name: str, password_env: str | None) -> None:
    """Vote on proposal PROPOSAL_ID."""
    registry = open_registry()
    registry.vote_on_proposal(unlock_wallet(wallet_name, password_env), proposal_id, approve)
    tally = registry.proposal(proposal_id).tally
    console.print(f"voted {'yes' if approve else 'no'} on proposal {proposal_id}; now {tally.yes} yes / {tally.no} no of {tally.electorate}")


@dao.command("finalize")
@click.argument("proposal_id", type=int)
@wallet_options
def dao_finalize(proposal_id: int, wallet_name: str, password_env: str | None) -> None:
    """Decide proposal PROPOSAL_ID; an accepted proposal's action runs at once."""
    result = open_registry().finalize_proposal(unlock_wallet(wallet_name, password_env), proposal_id)
    console.print(f"proposal {proposal_id} {result.status.name.lower()}" + (f", applied: {result.applied}" if result.status == Status.ACCEPTED else ""))


@dao.command("proposals")
@format_option
def dao_proposals(fmt: str) -> None:
    """List governance proposals, pending first, with their tallies, quorum and deadlines."""
    from dso.workflows.review import list_proposals, proposal_json

    registry: Registry = open_registry()
    listing = list_proposals(registry)
    if fmt == "json":
        echo_json({"chain_time": listing.now, "proposals": [proposal_json(p, listing.now) for p in listing.proposals]})
        return
    table = Table(title="proposals")
    for column in ("id", "kind", "target", "status", "yes", "no", "electorate"):
        table.add_column(column)
    for p in listing.proposals:
        target = {p.kind.REVOKE_BATCH: p.batch.hex()[:16], p.kind.REVOKE_EXPERIENCE: f"{p.batch.hex()[:16]} #{p.leaf_index}",
                  p.kind.SET_VOTING_PARAMETERS: f"period {p.voting_period} s, quorum {p.quorum_bps / 100:g}%"}.get(p.kind, p.account)
        table.add_row(str(p.proposal_id), p.kind.name.lower(), target, p.tally.status.name.lower(), str(p.tally.yes), str(p.tally.no),
                      str(p.tally.electorate))
    console.print(table)
