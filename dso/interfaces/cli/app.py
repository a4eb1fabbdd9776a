"""The `dso` command line: argument handling and output only; the work happens in the modules."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from dso import __version__
from dso.edges.chain import Registry, Status, connect
from dso.edges.config import NetworkConfig, atomic_write_text, dso_home, load_config, save_config
from dso.edges.services import DEFAULT_ANVIL_PORT, DEFAULT_IPFS_PORT, ManagedProcess, dev_accounts, start_anvil, start_ipfs
from dso.errors import DsoError
from dso.interfaces.cli.wallet import wallet
from dso.edges.wallet import DEV_PASSWORD_ENV, create_dev_wallets, dev_password, load_keystore, password_from_env_or_prompt

console = Console()

DEVNET_ROLES = {"deployer": range(0, 1), "members": range(1, 6), "nodes": range(6, 10)}


def devnet_dir() -> Path:
    return dso_home() / "devnet"


@click.group()
@click.version_option(__version__, prog_name="dso")
def cli() -> None:
    """dso: a blockchain-backed, decentralized registry of AI-agent experiences."""


@cli.group()
def devnet() -> None:
    """A local devnet: Anvil and an IPFS node on 127.0.0.1, with a freshly deployed registry."""


DEVNET_SERVICES = ("anvil", "ipfs")


@devnet.command("up")
@click.option("--port", default=DEFAULT_ANVIL_PORT, show_default=True, help="Anvil RPC port.")
@click.option("--ipfs-port", default=DEFAULT_IPFS_PORT, show_default=True, help="IPFS RPC API port.")
@click.option("--voting-period", default=3_600, show_default=True, help="Seconds each batch stays open for votes.")
@click.option("--quorum-bps", default=5_000, show_default=True, help="Quorum, basis points of the electorate.")
def devnet_up(port: int, ipfs_port: int, voting_period: int, quorum_bps: int) -> None:
    """Start Anvil and the IPFS node, deploy the registry with dev members and nodes, write the
    network config."""
    process, url = start_anvil(devnet_dir(), port=port)
    try:
        ipfs_process, ipfs_api = start_ipfs(devnet_dir(), port=ipfs_port)
    except BaseException:
        process.stop()
        raise
    try:
        accounts = dev_accounts(10)
        roles = {role: [accounts[i] for i in indexes] for role, indexes in DEVNET_ROLES.items()}
        w3 = connect(url)
        registry, deploy = Registry.deploy(
            w3,
            roles["deployer"][0],
            [a.address for a in roles["members"]],
            [a.address for a in roles["nodes"]],
            voting_period=voting_period,
            quorum_bps=quorum_bps,
        )
    except BaseException:
        process.stop()
        ipfs_process.stop()
        raise
    config = NetworkConfig(url, w3.eth.chain_id, registry.address, deploy.block_number, name="devnet", ipfs_api=ipfs_api)
    path = save_config(config)
    accounts_doc = {
        "mnemonic": "Anvil's public dev mnemonic (see dso.edges.services.DEV_MNEMONIC): never use on a real network",
        "roles": {role: [{"index": i, "address": accounts[i].address} for i in indexes] for role, indexes in DEVNET_ROLES.items()},
    }
    atomic_write_text(devnet_dir() / "accounts.json", json.dumps(accounts_doc, indent=2) + "\n")
    dev_names = {"deployer": accounts[0], **{f"member{i}": accounts[i] for i in range(1, 6)}, **{f"node{i - 5}": accounts[i] for i in range(6, 10)}}
    create_dev_wallets(dev_names)
    table = Table(title="dso devnet", show_header=False)
    table.add_row("RPC", url)
    table.add_row("chain id", str(config.chain_id))
    table.add_row("registry", registry.address)
    table.add_row("deploy gas", f"{deploy.gas_used:,}")
    table.add_row("members", "\n".join(a.address for a in roles["members"]))
    table.add_row("nodes", "\n".join(a.address for a in roles["nodes"]))
    table.add_row("IPFS API", ipfs_api)
    table.add_row("pids", f"anvil {process.pid()}, ipfs {ipfs_process.pid()}")
    table.add_row("wallets", f"{', '.join(dev_names)} (password {dev_password()!r}, or ${DEV_PASSWORD_ENV})")
    table.add_row("config", str(path))
    console.print(table)


@devnet.command("down")
def devnet_down() -> None:
    """Stop the devnet's Anvil and IPFS node (by PID). The chain is in memory: its state is gone;
    the IPFS repo stays under $DSO_HOME/devnet."""
    for name in DEVNET_SERVICES:
        stopped = ManagedProcess(name, devnet_dir()).stop()
        console.print(f"{name} stopped" if stopped else f"{name} was not running")


@devnet.command("status")
def devnet_status() -> None:
    """Show whether the devnet's Anvil and IPFS node are running."""
    for name in DEVNET_SERVICES:
        pid = ManagedProcess(name, devnet_dir()).pid()
        console.print(f"{name} running (pid {pid})" if pid else f"{name} not running")


@cli.command()
@click.option("--rpc-url", required=True, help="JSON-RPC endpoint of the target EVM network.")
@click.option("--keystore", "keystore", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Deployer's keystore (V3 JSON).")
@click.option("--password-env", default=None, help="Read the keystore password from this environment variable instead of a prompt.")
@click.option("--member", "members", multiple=True, required=True, help="Seed DAO member address (repeat).")
@click.option("--node", "nodes", multiple=True, help="Seed node address (repeat).")
@click.option("--voting-period", default=3 * 24 * 3_600, show_default=True, help="Seconds each batch stays open.")
@click.option("--quorum-bps", default=5_000, show_default=True, help="Quorum, basis points of the electorate.")
@click.option("--name", default="custom", show_default=True, help="Name recorded in the network config.")
def deploy(rpc_url: str, keystore: Path, password_env: str | None, members: tuple[str, ...], nodes: tuple[str, ...], voting_period: int, quorum_bps: int, name: str) -> None:
    """Deploy the registry to any EVM network and make it the active network config."""
    deployer = load_keystore(keystore, password_from_env_or_prompt(password_env))
    w3 = connect(rpc_url)
    registry, tx = Registry.deploy(w3, deployer, list(members), list(nodes), voting_period=voting_period, quorum_bps=quorum_bps)
    path = save_config(NetworkConfig(rpc_url, w3.eth.chain_id, registry.address, tx.block_number, name=name))
    console.print(f"registry deployed at {registry.address} (block {tx.block_number}, gas {tx.gas_used:,}); config {path}")


@cli.command()
def status() -> None:
    """Show the active network, its DAO and its batches."""
    config = load_config()
    registry = Registry.at(config.rpc_url, config.registry)
    params = registry.parameters()
    table = Table(title=f"{config.name}: {config.registry}", show_header=False)
    table.add_row("RPC / chain id", f"{config.rpc_url} / {config.chain_id}")
    table.add_row("IPFS API", config.ipfs_api or f"embedded local store ({dso_home() / 'blocks'})")
    table.add_row("voting period", f"{params['voting_period']} s")
    table.add_row("quorum", f"{params['quorum_bps'] / 100:g}% of the electorate")
    table.add_row("members", str(params["member_count"]))
    table.add_row("nodes", str(sum(active for _, _, active in registry.nodes())))
    counts: dict[str, int] = {}
    for info in registry.all_batches():
        counts[info.tally.status.name.lower()] = counts.get(info.tally.status.name.lower(), 0) + 1
    table.add_row("batches", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none")
    console.print(table)


def library_path() -> Path:
    return dso_home() / "library.sqlite"


def open_registry() -> Registry:
    config = load_config()
    return Registry.at(config.rpc_url, config.registry)


def open_store():
    """The configured content store: the Kubo RPC API if one is set, else the embedded store."""
    from dso.edges.ipfs import KuboClient, LocalStore

    config = load_config()
    return KuboClient(config.ipfs_api) if config.ipfs_api else LocalStore(dso_home() / "blocks")


def resolve_root(registry: Registry, text: str) -> bytes:
    """A batch root from its full hex or a unique prefix of it (as `dso batches` prints)."""
    wanted = text.lower().removeprefix("0x")
    if len(wanted) == 64:
        try:
            return bytes.fromhex(wanted)
        except ValueError as exc:
            raise DsoError(f"{text!r} is not a hex batch root") from exc
    matches = [b.root for b in registry.all_batches() if b.root.hex().startswith(wanted)] if wanted else []
    if len(matches) != 1:
        raise DsoError(f"{text!r} matches {len(matches)} batches; give more hex digits of the root")
    return matches[0]


def wallet_options(fn):
    """--wallet NAME and --password-env VAR, shared by every command that signs."""
    fn = click.option("--password-env", default=None, help="Read the wallet password from this environment variable.")(fn)
    return click.option("--wallet", "wallet_name", required=True, help="Wallet name (see `dso wallet list`).")(fn)


def unlock_wallet(name: str, password_env: str | None):
    from dso.edges.wallet import unlock

    return unlock(name, password_env)


def print_outbox_result(committed, pending) -> None:
    for c in committed:
        gas = f"gas {c.gas_used:,}" if c.gas_used is not None else "already on-chain"
        console.print(f"[green]committed[/green] batch {c.root} ({c.count} experiences, {c.bytes:,} bytes, {gas}) cid {c.cid}")
    for p in pending:
        console.print(f"[yellow]kept in the outbox[/yellow] batch {p.root} ({p.state}): {p.last_error}")
    if pending:
        raise DsoError(f"{len(pending)} batch(es) wait in the outbox; fix the cause and run `dso outbox flush`")


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@wallet_options
def submit(file: Path, wallet_name: str, password_env: str | None) -> None:
    """Validate, embed, batch, pin and commit the experiences in FILE (JSONL: text, domain,
    confidence, optional metadata) from a node wallet. Nothing is lost if a service is down."""
    from dso.edges.embed import load_embedder
    from dso.workflows.publish import Outbox, prepare_batch, read_insights

    insights = read_insights(file)  # a malformed file fails at once, before the model loads
    node = unlock_wallet(wallet_name, password_env)
    outbox = Outbox()
    entry = outbox.add(prepare_batch(insights, node.address, load_embedder("minilm")))
    try:
        registry = open_registry()
    except DsoError as exc:  # queued first, so an unreachable RPC loses nothing
        raise DsoError(f"batch {entry.root[:16]} is safe in the outbox, but {exc}; run `dso outbox flush` later") from exc
    committed, pending = outbox.flush(open_store(), registry, node)
    print_outbox_result(committed, pending)


@cli.group()
def outbox() -> None:
    """Batches that are prepared but not yet committed on-chain."""


@outbox.command("list")
def outbox_list() -> None:
    """Show the batches waiting in the outbox."""
    from dso.workflows.publish import Outbox

    entries = Outbox().entries()
    if not entries:
        console.print("the outbox is empty")
    for e in entries:
        console.print(f"{e.root} {e.count} experiences, {e.bytes:,} bytes, {e.state}: {e.last_error or ''}")


@outbox.command("flush")
@wallet_options
def outbox_flush(wallet_name: str, password_env: str | None) -> None:
    """Pin and commit every batch in the outbox (each exactly once)."""
    from dso.workflows.publish import Outbox

    node = unlock_wallet(wallet_name, password_env)
    print_outbox_result(*Outbox().flush(open_store(), open_registry(), node))


@cli.command()
@click.option("--status", "status_filter", type=click.Choice([s.name.lower() for s in Status if s != Status.NONE]), default=None)
def batches(status_filter: str | None) -> None:
    """List batches with their status and tallies."""
    registry = open_registry()
    table = Table(title="batches")
    for column in ("root", "node", "experiences", "status", "yes", "no", "electorate", "voting closes"):
        table.add_column(column)
    for info in registry.all_batches():
        status_name = info.tally.status.name.lower()
        if status_filter and status_name != status_filter:
            continue
        closes = time.strftime("%Y-%m-%d %H:%M", time.gmtime(info.tally.deadline))
        table.add_row(info.root.hex()[:16], str(info.node_id), str(info.count), status_name, str(info.tally.yes), str(info.tally.no), str(info.tally.electorate), closes)
    console.print(table)


@cli.command()
@click.argument("batch")
def show(batch: str) -> None:
    """Fetch batch BATCH (root or prefix), verify it against the chain, and print its experiences."""
    from dso.core.batch import summarize
    from dso.workflows.sync import BatchRecord, apply_events, SyncState, fetch_and_verify

    registry = open_registry()
    root = resolve_root(registry, batch)
    state = SyncState(registry.address, 0)
    apply_events(state, [e for e in registry.events(load_config().deploy_block).events if e.name == "BatchSubmitted" and e.args["root"] == root])
    record: BatchRecord | None = state.batches.get(root.hex())
    if record is None:
        raise DsoError(f"no BatchSubmitted event for {root.hex()}")
    document = fetch_and_verify(open_store(), root.hex(), record)
    info = registry.batch(root)
    console.print(f"batch {root.hex()}: {info.tally.status.name.lower()}, {info.tally.yes} yes / {info.tally.no} no; verified CID {record.cid}")
    console.print(summarize(document))
    table = Table()
    for column in ("#", "domain", "confidence", "experience"):
        table.add_column(column)
    for n, e in enumerate(document.experiences):
        table.add_row(str(n), e.domain, f"{e.confidence:.2f}", e.text)
    console.print(table)


@cli.command()
@click.argument("batch")
@click.option("--approve/--reject", required=True, help="Your vote.")
@wallet_options
def vote(batch: str, approve: bool, wallet_name: str, password_env: str | None) -> None:
    """Vote on batch BATCH as a DAO member."""
    registry = open_registry()
    root = resolve_root(registry, batch)
    tx = registry.vote_on_batch(unlock_wallet(wallet_name, password_env), root, approve)
    tally = registry.batch(root).tally
    console.print(f"voted {'yes' if approve else 'no'} on {root.hex()[:16]} (gas {tx.gas_used:,}); now {tally.yes} yes / {tally.no} no of {tally.electorate}")


@cli.command()
@click.argument("batch")
@wallet_options
def finalize(batch: str, wallet_name: str, password_env: str | None) -> None:
    """Decide batch BATCH once its vote is over or its outcome is certain (anyone may send)."""
    registry = open_registry()
    root = resolve_root(registry, batch)
    result = registry.finalize_batch(unlock_wallet(wallet_name, password_env), root)
    console.print(f"batch {root.hex()[:16]} {result.status.name.lower()} (gas {result.tx.gas_used:,})")


@cli.command("sync")
@click.option("--confirmations", default=0, show_default=True, help="Ignore the newest N blocks (reorg safety on real networks).")
@click.option("--min-nodes", default=3, show_default=True, help="Distinct admitted nodes an experience needs (at least 2).")
@click.option("--support-fraction", default=0.05, show_default=True, help="...or this share of the nodes that reported anything, if more.")
@click.option("--min-confidence", default=0.5, show_default=True, help="Median confidence over the node voices an experience needs.")
def sync_command(confirmations: int, min_nodes: int, support_fraction: float, min_confidence: float) -> None:
    """Load every accepted, verified batch, drop revoked ones, and aggregate the reports of
    admitted nodes into the local library (robust statistics, one voice per node)."""
    from rich.progress import Progress

    from dso.core.aggregate import AcceptancePolicy
    from dso.edges.embed import load_embedder
    from dso.workflows.library import Library
    from dso.workflows.sync import sync

    config = load_config()
    registry = open_registry()
    policy = AcceptancePolicy(min_nodes, support_fraction, min_confidence)
    with Library(library_path(), load_embedder("minilm")) as library, Progress(console=console, transient=True) as bar:
        task = bar.add_task("fetching and verifying batches", total=None)
        report = sync(registry, open_store(), library, deploy_block=config.deploy_block, confirmations=confirmations,
                      progress=lambda root, done, total: bar.update(task, completed=done, total=total), policy=policy)
    a = report.aggregation
    console.print(
        f"blocks {report.from_block}-{report.to_block}: loaded {len(report.loaded)} batch(es) "
        f"(+{report.reports_added} reports), dropped {len(report.revoked)} revoked batch(es) and "
        f"{report.revoked_experiences} revoked experience(s), {len(report.invalid)} refused, "
        f"{len(report.unavailable)} not yet available ({report.seconds} s)"
    )
    console.print(
        f"library: {a.accepted} experiences accepted, {a.pending} awaiting support "
        f"(>= {a.required_support} of {a.active_nodes} active nodes and median confidence >= {policy.min_confidence}); "
        f"{a.reports} reports, {a.dropped_reports} from nodes not admitted"
        + (f", {a.capped_reports} over the per-node cap" if a.capped_reports else "")
        + (f", {a.invalid_codes} malformed codes left out of the vote" if a.invalid_codes else "")
    )
    for root, reason in report.invalid.items():
        console.print(f"[red]refused[/red] {root[:16]}: {reason}")


@cli.group()
def dao() -> None:
    """DAO governance: members, nodes and revocations, decided by vote."""


def _propose(kind: str, target: str, wallet_name: str, password_env: str | None) -> None:
    registry = open_registry()
    proposer = unlock_wallet(wallet_name, password_env)
    make = {
        "add-member": registry.propose_add_member,
        "remove-member": registry.propose_remove_member,
        "admit-node": registry.propose_admit_node,
        "remove-node": registry.propose_remove_node,
        "revoke": lambda who, value: registry.propose_revoke_batch(who, resolve_root(registry, value)),
    }[kind]
    result = make(proposer, target)
    console.print(f"proposal {result.proposal_id} created ({kind} {target}); vote with `dso dao vote {result.proposal_id} --approve`")


for _name, _kind, _help in (
    ("propose-member", "add-member", "Propose admitting TARGET (an address) as a DAO member."),
    ("propose-remove-member", "remove-member", "Propose removing member TARGET (an address)."),
    ("propose-node", "admit-node", "Propose admitting TARGET (an address) as a node."),
    ("propose-remove-node", "remove-node", "Propose removing node TARGET (an address)."),
    ("revoke", "revoke", "Propose revoking accepted batch TARGET (root or prefix)."),
):
    def _command(target: str, wallet_name: str, password_env: str | None, _kind: str = _kind) -> None:
        _propose(_kind, target, wallet_name, password_env)

    _command.__doc__ = _help
    dao.command(_name)(wallet_options(click.argument("target")(_command)))


def fetch_verified_document(registry: Registry, root: bytes):
    """The batch document of `root`, fetched by the CID its BatchSubmitted event committed and
    checked against the chain's root, count and schema."""
    from dso.core.batch import verify_document
    from dso.edges.ipfs import cid_from_bytes

    submitted = [e for e in registry.events(load_config().deploy_block).events if e.name == "BatchSubmitted" and e.args["root"] == root]
    if not submitted:
        raise DsoError(f"no BatchSubmitted event for {root.hex()}")
    args = submitted[0].args
    return verify_document(open_store().get(cid_from_bytes(args["cid"])), root, args["count"], args["schema"])


@dao.command("revoke-experience")
@click.argument("batch")
@click.argument("index", type=int)
@wallet_options
def dao_revoke_experience(batch: str, index: int, wallet_name: str, password_env: str | None) -> None:
    """Propose revoking experience INDEX (0-based, as `dso show` numbers them) of accepted batch
    BATCH (root or prefix): the batch document is fetched and verified, the experience shown, and
    its Merkle inclusion proof checked by the contract."""
    from dso.core.merkle import prove_inclusion

    registry = open_registry()
    root = resolve_root(registry, batch)
    document = fetch_verified_document(registry, root)
    count = len(document.experiences)
    if not 0 <= index < count:
        raise DsoError(f"batch {root.hex()[:16]} holds experiences 0..{count - 1}; there is no experience {index}")
    experience, leaf = document.experiences[index], document.leaves[index]
    console.print(f"experience {index} of batch {root.hex()[:16]} ({experience.domain}, confidence {experience.confidence:.2f}):")
    console.print(f"  {experience.text}", highlight=False)
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
def dao_proposals() -> None:
    """List governance proposals with their tallies."""
    registry = open_registry()
    table = Table(title="proposals")
    for column in ("id", "kind", "target", "status", "yes", "no", "electorate"):
        table.add_column(column)
    for offset in range(0, registry.proposal_count(), 200):
        for p in registry.proposals(offset, 200):
            target = {p.kind.REVOKE_BATCH: p.batch.hex()[:16], p.kind.REVOKE_EXPERIENCE: f"{p.batch.hex()[:16]} #{p.leaf_index}"}.get(p.kind, p.account)
            table.add_row(str(p.proposal_id), p.kind.name.lower(), target, p.tally.status.name.lower(), str(p.tally.yes), str(p.tally.no), str(p.tally.electorate))
    console.print(table)


QUERY_MODELS = ["e5-small", "mpnet"]  # dso.edges.embed.QUERY_MODEL_LOADERS


@cli.command()
@click.argument("text")
@click.option("-k", "k", default=5, show_default=True, help="How many experiences to return.")
@click.option("--domain", default=None, help="Only this domain and below it (e.g. math).")
@click.option("--min-confidence", default=0.0, show_default=True, help="Only experiences at least this confident.")
@click.option("--format", "fmt", type=click.Choice(["table", "prompt", "json"]), default="table", show_default=True)
@click.option("--embedder", "embedder_name", type=click.Choice(["minilm", "minilm-int8"]), default="minilm", show_default=True)
@click.option("--query-model", type=click.Choice(QUERY_MODELS), default=None, help="Embed TEXT with this model instead (needs --alignment).")
@click.option("--alignment", "alignment_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Map --query-model's vector into the library's space with this file (`dso align fit`).")
def query(text: str, k: int, domain: str | None, min_confidence: float, fmt: str, embedder_name: str, query_model: str | None, alignment_file: Path | None) -> None:
    """Retrieve the experiences most relevant to TEXT from the local library."""
    from dso.core.align import AlignedQueryEmbedder, Alignment
    from dso.edges.embed import load_embedder, load_query_model
    from dso.workflows.library import Library, export_json

    if query_model and not alignment_file:
        raise DsoError(
            f"--query-model {query_model} needs --alignment FILE (the library's vectors are MiniLM's): fit one with "
            f"`dso align fit {query_model} -o {query_model}.align`. The other way, re-embedding the library's texts with your "
            "model, has no command (Python: dso.edges.embed); the README recommends it only if you trust your model's similarity over the library's"
        )
    if alignment_file and not query_model:
        raise DsoError("--alignment needs --query-model MODEL: the model the alignment was fitted for (`dso align show FILE` prints its dimensions)")
    alignment = Alignment.from_bytes(alignment_file.read_bytes()) if alignment_file else None
    path = library_path()
    if not path.exists():
        raise DsoError(f"no library at {path}: sync one first (`dso sync`)")
    with Library(path, load_embedder(embedder_name)) as library:
        vector = None
        if query_model and alignment:
            vector = AlignedQueryEmbedder(load_query_model(query_model), alignment, target_dim=library.embedder.dim).embed([text])[0]
        if fmt == "prompt":
            click.echo(library.context_for(text, k=k, domain=domain, min_confidence=min_confidence, query_vector=vector))
            return
        hits = library.search(text, k=k, domain=domain, min_confidence=min_confidence, query_vector=vector)
    if fmt == "json":
        click.echo(export_json(hits))
        return
    via = f" ({query_model}, alignment {alignment.alignment_id[:12]})" if query_model and alignment else ""
    table = Table(title=f"top {k} for: {text}{via}")
    for column in ("score", "domain", "confidence", "nodes", "experience"):
        table.add_column(column)
    for hit in hits:
        nodes = str(hit.support) if hit.origin == "network" else "local"
        table.add_row(f"{hit.score:.3f}", hit.domain, f"{hit.confidence:.2f}", nodes, hit.experience.text)
    console.print(table)


@cli.group()
def align() -> None:
    """Alignments: let an agent on another embedding model query the MiniLM library (README,
    "An agent on another embedding model")."""


@align.command("fit")
@click.argument("model", type=click.Choice(QUERY_MODELS))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Where to write the alignment.")
@click.option("--anchors", default=1_000, show_default=True, type=click.IntRange(2, 1_000),
              help="Anchor sentences to fit on (the cross-model benchmark's set, a prefix of it).")
@click.option("--embedder", "embedder_name", type=click.Choice(["minilm", "minilm-int8"]), default="minilm", show_default=True,
              help="The library's model, the alignment's target.")
def align_fit(model: str, output: Path, anchors: int, embedder_name: str) -> None:
    """Fit the map from MODEL's query vectors into the library's space and write it to OUTPUT."""
    from dso.core.align import anchor_sentences, fit_query_model
    from dso.edges.config import atomic_write_bytes
    from dso.edges.embed import load_embedder, load_query_model

    fitted = fit_query_model(load_query_model(model), load_embedder(embedder_name), anchor_sentences(anchors))
    data = fitted.alignment.to_bytes()
    atomic_write_bytes(output, data)
    a = fitted.alignment
    if fitted.anchors <= max(a.source_dim, a.target_dim):
        console.print(f"[yellow]warning:[/yellow] {fitted.anchors} anchors for {max(a.source_dim, a.target_dim)} dimensions leave the map "
                      "undetermined outside the anchors' span; use more (the benchmark's 1,000)")
    click.echo(f"alignment {a.alignment_id}")
    click.echo(f"{model} ({a.source_dim}-d) -> {embedder_name} ({a.target_dim}-d) on {fitted.anchors:,} anchors: "
               f"embedding {fitted.embed_seconds} s, fit {fitted.fit_seconds} s; wrote {output} ({len(data):,} bytes)")
    click.echo(f"use it: dso query TEXT --query-model {model} --alignment {output}")


@align.command("show")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def align_show(file: Path) -> None:
    """Print an alignment file's dimensions, scale and id."""
    from dso.core.align import Alignment

    data = file.read_bytes()
    a = Alignment.from_bytes(data)
    click.echo(f"alignment {a.alignment_id}")
    click.echo(f"source dim {a.source_dim} -> target dim {a.target_dim}, scale {a.scale:.6g}, {len(data):,} bytes")


@cli.command()
def demo() -> None:
    """The four jobs on a private devnet: nodes submit, the DAO votes, an agent syncs and asks."""
    from dso.interfaces.demo import run_demo

    summary = run_demo(console)
    if summary["statuses"] != {1: "accepted", 2: "accepted", 3: "accepted", 4: "accepted", 5: "rejected"}:
        raise DsoError(f"demo ended in an unexpected state: {summary}")


cli.add_command(wallet)


def main() -> None:
    """Entry point: user errors print one clear line, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except DsoError as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(1)


__all__ = ["cli", "main", "Status"]
