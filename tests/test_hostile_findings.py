"""Issue 11, replayed: a careful attacker's findings on a private devnet, each as it was reported.

Every test here failed before the fix it names: data accepted under the wrong name or lost
(provenance of committed batches, negative confirmations, one bad IPFS answer), and the rough
edges around them (a dead IPFS node, bidi spoofing, non-http RPC URLs, NaN filters, sync's exit
status, duplicate leaf challenges, messages, codes, alignments, voting parameters, test daemons).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import deploy_dao

from dso.core.align import fit_procrustes
from dso.core.batch import build_batch, parse_document
from dso.core.codec import baseline_id, get_codec, load_baseline
from dso.core.experience import BIDI_CONTROLS, Experience, validate_text
from dso.core.models import MODEL_ID
from dso.edges.config import NetworkConfig, save_config
from dso.edges.datasets import gsm8k_insights
from dso.edges.embed import load_embedder
from dso.edges.files import atomic_write_bytes
from dso.edges.ipfs import KuboClient, MirroredStore, cid_to_bytes
from dso.edges.services import free_port, process_alive
from dso.edges.wallet import create_dev_wallets
from dso.errors import BatchError, ChainError, DsoError, ExperienceError, LibraryError
from dso.interfaces.cli import main
from dso.workflows.library import Library, Source
from dso.workflows.publish import Outbox, insights_to_jsonl, prepare_batch
from dso.workflows.sync import SyncState, sync

SIGNER = ["--password-env", "DSO_DEV_PASSWORD"]


@pytest.fixture
def home(tmp_path, monkeypatch, w3, accounts, anvil_url, ipfs_api):
    """A DSO_HOME on a fresh registry (3 members, 3 nodes) on the session devnet, dev wallets."""
    monkeypatch.setenv("DSO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DSO_DEV_PASSWORD", "dev")
    dao = deploy_dao(w3, accounts, n_members=3, n_nodes=3)
    save_config(NetworkConfig(anvil_url, w3.eth.chain_id, dao.registry.address, 0, "test", ipfs_api))
    create_dev_wallets({"deployer": dao.deployer, **{f"member{i + 1}": m for i, m in enumerate(dao.members)},
                        **{f"node{i + 1}": n for i, n in enumerate(dao.nodes)}})
    return tmp_path / "home", dao


def dso(monkeypatch, capsys, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the `dso` entry point in-process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["dso", *args])
    with monkeypatch.context() as scoped:
        for key, value in (env or {}).items():
            scoped.setenv(key, value)
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, " ".join(out.split()), err  # console lines wrap at 80 columns: compare words


def one_line_error(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], err


def lessons_file(path: Path, offset: int, count: int = 4) -> Path:
    path.write_text(insights_to_jsonl(gsm8k_insights(count, offset=offset)))
    return path


def accept(dao, root: bytes) -> None:
    for member in dao.members:
        dao.registry.vote_on_batch(member, root, True)
    dao.registry.finalize_batch(dao.deployer, root)


# ------------------------------------------------------------------------------ 1. provenance


def test_a_rogue_wallets_refused_batch_is_not_committed_by_the_next_wallet_that_flushes(home, monkeypatch, capsys):
    """dso wallet new rogue; dso submit rogue.jsonl --wallet rogue -> reverted
    CallerIsNotAnAdmittedNode, kept in the outbox; dso outbox flush --wallet node2 -> used to
    commit the rogue's batch as node 2's."""
    path, dao = home
    code, _, _ = dso(monkeypatch, capsys, "wallet", "new", "rogue", *SIGNER)
    assert code == 0
    code, out, err = dso(monkeypatch, capsys, "submit", str(lessons_file(path.parent / "rogue.jsonl", 3_100)), "--wallet", "rogue", *SIGNER)
    assert code == 1 and "refused" in out and "CallerIsNotAnAdmittedNode" in out and "refused by the chain" in err
    (entry,) = Outbox().entries()
    assert entry.state == "refused" and "CallerIsNotAnAdmittedNode" in entry.last_error

    code, out, err = dso(monkeypatch, capsys, "outbox", "flush", "--wallet", "node2", *SIGNER)
    assert code == 0 and "belong to other wallets (rogue)" in out
    assert dao.registry.batch_count() == 0
    # the rogue's own flushes do not retry a permanent refusal as if it were transient
    code, out, _ = dso(monkeypatch, capsys, "outbox", "flush", "--wallet", "rogue", *SIGNER)
    assert code == 1 and "refused" in out and dao.registry.batch_count() == 0
    code, out, _ = dso(monkeypatch, capsys, "outbox", "list")
    assert "wallet rogue, refused" in out
    code, out, _ = dso(monkeypatch, capsys, "outbox", "retry", entry.root[:12])
    assert code == 0 and Outbox().entries()[0].state == "pinned"


def test_a_batch_queued_while_the_rpc_was_down_is_committed_only_by_its_own_node(home, monkeypatch, capsys):
    """DSO_RPC_URL=http://127.0.0.1:1 dso submit ... --wallet node3; dso outbox flush --wallet
    node1 used to commit it as node 1's."""
    path, dao = home
    jsonl = lessons_file(path.parent / "node3.jsonl", 3_200)
    code, _, err = dso(monkeypatch, capsys, "submit", str(jsonl), "--wallet", "node3", *SIGNER, env={"DSO_RPC_URL": "http://127.0.0.1:1"})
    assert code == 1 and "safe in the outbox" in err
    code, out, _ = dso(monkeypatch, capsys, "outbox", "flush", "--wallet", "node1", *SIGNER)
    assert code == 0 and "belong to other wallets (node3)" in out and dao.registry.batch_count() == 0
    code, out, _ = dso(monkeypatch, capsys, "outbox", "flush", "--wallet", "node3", *SIGNER)
    assert code == 0 and "committed batch" in out
    (info,) = dao.registry.batches()
    assert info.node_id == dao.registry.node(dao.nodes[2].address)[0]


def test_readers_refuse_a_batch_whose_header_node_is_not_the_on_chain_submitter(home, monkeypatch, capsys, embedder, ipfs_api, accounts):
    """What the bug let through: node 2 commits a document the rogue prepared; members accept it.
    `dso show` and `dso sync` refuse it in one line; the library never stores it."""
    path, dao = home
    rogue = accounts[15].address
    document = prepare_batch(gsm8k_insights(4, offset=3_300), rogue, embedder, now=1_763_000_000)
    with KuboClient(ipfs_api) as store:
        cid = store.put(document.to_bytes())
    root = document.header.root
    dao.registry.submit_batch(dao.nodes[1], root, cid_to_bytes(cid), document.header.count, document.header.schema_id)
    accept(dao, root)

    code, _, err = dso(monkeypatch, capsys, "show", root.hex()[:12])
    one_line_error(code, err, f"names node 0x{bytes.fromhex(rogue[2:]).hex()}", "committed it on-chain")
    code, out, _ = dso(monkeypatch, capsys, "sync")
    assert code == 3 and "refused" in out and "committed it on-chain" in out and "1 batch(es) refused: exit status 3" in out
    with Library(path / "library.sqlite", embedder) as library:
        assert library.report_count() == 0
        with pytest.raises(LibraryError, match="refused, nothing stored"):
            library.add_reports(list(document.experiences), document.header.baseline, Source(root, 2, bytes.fromhex(dao.nodes[1].address[2:])))
        assert library.report_count() == 0


def test_a_root_another_node_committed_first_is_refused_not_taken_as_ours(home, monkeypatch, capsys, embedder, ipfs_api):
    """Someone copies a pinned document and commits its root first: the preparing node's flush
    marks the batch refused instead of reporting it committed."""
    path, dao = home
    outbox = Outbox()
    entry = outbox.add(prepare_batch(gsm8k_insights(3, offset=3_400), dao.nodes[0].address, embedder, now=1_763_000_000))
    document = parse_document(outbox.document(entry))
    with KuboClient(ipfs_api) as store:
        cid = store.put(outbox.document(entry))
        dao.registry.submit_batch(dao.nodes[1], document.header.root, cid_to_bytes(cid), document.header.count, document.header.schema_id)
        result = outbox.flush(store, dao.registry, dao.nodes[0])
    assert result.committed == [] and [e.state for e in result.pending] == ["refused"]
    assert "already committed this root" in result.pending[0].last_error


# ------------------------------------------------------------------------------ 2. confirmations


def test_negative_confirmations_are_refused_and_the_checkpoint_never_passes_the_head(home, monkeypatch, capsys, embedder, ipfs_api, w3):
    """dso sync --confirmations -1 used to move the checkpoint past the head, skipping the block of
    a finalized batch for good (and storing last_block_hash null); -10 ended in a traceback."""
    path, dao = home
    code, out, _ = dso(monkeypatch, capsys, "submit", str(lessons_file(path.parent / "n1.jsonl", 3_500)), "--wallet", "node1", *SIGNER)
    assert code == 0
    accept(dao, dao.registry.batches()[0].root)
    for bad in ("-1", "-10"):
        code, _, err = dso(monkeypatch, capsys, "sync", "--confirmations", bad)
        assert code == 2 and "-1" in err or "-10" in err
    assert not (path / "sync.json").exists()
    with Library(path / "lib.sqlite", embedder) as library, KuboClient(ipfs_api) as store:
        with pytest.raises(DsoError, match="confirmations must be"):
            sync(dao.registry, store, library, path / "api-sync.json", confirmations=-1)
        with pytest.raises(ChainError, match="confirmations must be"):
            dao.registry.events(0, confirmations=-10)
        report = sync(dao.registry, store, library, path / "api-sync.json")
    state = json.loads((path / "api-sync.json").read_text())
    assert len(report.loaded) == 1 and state["next_block"] == w3.eth.block_number + 1 and state["last_block_hash"]


# ------------------------------------------------------------------------------ 3. one bad IPFS answer


class LyingTransport(httpx.HTTPTransport):
    """The real IPFS node, except that `block/get` of the CIDs in `lies` answers other bytes."""

    def __init__(self, lies: dict[str, bytes]) -> None:
        super().__init__()
        self.lies = lies

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        lie = self.lies.get(request.url.params.get("arg", "")) if request.url.path.endswith("/block/get") else None
        if lie is None:
            return super().handle_request(request)
        return httpx.Response(200, content=lie, headers={"content-type": "application/octet-stream"})


def test_bytes_that_miss_their_cid_are_retried_later_and_from_a_mirror_not_refused_for_good(home, embedder, ipfs_api):
    """A block edited on the node ("divide" -> "double") was refused correctly, but the batch
    stayed invalid after the original bytes were restored: censorship by one bad answer."""
    path, dao = home
    document = prepare_batch(gsm8k_insights(4, offset=3_600), dao.nodes[0].address, embedder, now=1_763_000_000)
    data = document.to_bytes()
    with KuboClient(ipfs_api) as store:
        cid = store.put(data)
    dao.registry.submit_batch(dao.nodes[0], document.header.root, cid_to_bytes(cid), document.header.count, document.header.schema_id)
    accept(dao, document.header.root)
    edited = data.replace(b"e", b"o", 1)
    lying = KuboClient(ipfs_api, transport=LyingTransport({cid: edited}))
    with Library(path / "lib.sqlite", embedder) as library:
        first = sync(dao.registry, lying, library, path / "sync.json")
        root = document.header.root.hex()
        assert first.loaded == [] and first.invalid == {} and "CidMismatch" in first.unavailable[root]
        assert json.loads((path / "sync.json").read_text())["batches"][root]["invalid"] is None
        with KuboClient(ipfs_api) as honest:  # the node serves the original bytes again
            second = sync(dao.registry, honest, library, path / "sync.json")
        assert second.loaded == [root] and library.report_count() == 4
    with Library(path / "mirrored.sqlite", embedder) as library, KuboClient(ipfs_api) as honest:
        mirrored = sync(dao.registry, MirroredStore([lying, honest]), library, path / "mirrored.json")
        assert mirrored.loaded == [root] and mirrored.unavailable == {}
    lying.close()


def test_a_batch_an_older_dso_refused_for_a_cid_mismatch_is_fetched_again(home, embedder, ipfs_api):
    """Checkpoints written before the fix hold such batches as invalid: they are retried."""
    path, dao = home
    document = prepare_batch(gsm8k_insights(3, offset=3_700), dao.nodes[0].address, embedder, now=1_763_000_000)
    with KuboClient(ipfs_api) as store:
        cid = store.put(document.to_bytes())
        dao.registry.submit_batch(dao.nodes[0], document.header.root, cid_to_bytes(cid), 3, document.header.schema_id)
        accept(dao, document.header.root)
        with Library(path / "lib.sqlite", embedder) as library:
            sync(dao.registry, store, library, path / "sync.json")
            state = json.loads((path / "sync.json").read_text())
            state["version"] = 2
            del state["node_addresses"]
            record = state["batches"][document.header.root.hex()]
            record.update(loaded=False, invalid="CidMismatch: bytes returned for bafk... hash to bafk...")
            (path / "sync.json").write_text(json.dumps(state))
            library.remove_batch(document.header.root)
            again = sync(dao.registry, store, library, path / "sync.json")
            assert again.loaded == [document.header.root.hex()] and library.report_count() == 3
            assert SyncState.load(path / "sync.json", dao.registry.address, 0).node_addresses


# ------------------------------------------------------------------------------ 4. a dead IPFS node


def test_devnet_up_restarts_a_killed_ipfs_node_and_keeps_the_chain(tmp_path):
    """After the IPFS node died, `dso devnet up` refused (Anvil still ran) and `devnet down` would
    have wiped the in-memory chain."""
    env = {**os.environ, "DSO_HOME": str(tmp_path), "COLUMNS": "200"}
    run = lambda *args: subprocess.run([sys.executable, "-m", "dso", *args], capture_output=True, text=True, timeout=120, env=env)  # noqa: E731
    port, ipfs_port = free_port(), free_port()
    up = run("devnet", "up", "--port", str(port), "--ipfs-port", str(ipfs_port))
    try:
        assert up.returncode == 0, up.stderr
        config = json.loads((tmp_path / "config.json").read_text())
        anvil_pid, ipfs_pid = (int((tmp_path / "devnet" / f"{n}.pid").read_text()) for n in ("anvil", "ipfs"))
        os.kill(ipfs_pid, signal.SIGKILL)
        for _ in range(100):
            if not process_alive(ipfs_pid):
                break
            time.sleep(0.05)
        again = run("devnet", "up", "--port", str(port), "--ipfs-port", str(ipfs_port))
        assert again.returncode == 0 and "started the IPFS node" in again.stdout, again.stderr
        assert int((tmp_path / "devnet" / "anvil.pid").read_text()) == anvil_pid
        assert json.loads((tmp_path / "config.json").read_text())["registry"] == config["registry"]
        assert httpx.post(f"{config['ipfs_api']}/api/v0/id", timeout=5).status_code == 200
        status = run("status")
        assert status.returncode == 0 and config["registry"] in status.stdout
    finally:
        run("devnet", "down")


# ------------------------------------------------------------------------------ 5. display spoofing


@pytest.mark.parametrize("char", sorted(BIDI_CONTROLS), ids=lambda c: f"U+{ord(c):04X}")
def test_bidi_controls_are_refused_in_experience_text(char):
    with pytest.raises(ExperienceError, match="bidirectional control"):
        validate_text(f"Always check the units{char} before dividing")


def test_submit_with_a_right_to_left_override_is_one_clear_line(home, monkeypatch, capsys):
    path, _ = home
    bad = path.parent / "rlo.jsonl"
    bad.write_text(json.dumps({"text": "Always \u202eenilno ti kcehc\u202c verify", "domain": "math", "confidence": 0.9}) + "\n")
    code, _, err = dso(monkeypatch, capsys, "submit", str(bad), "--wallet", "node1", *SIGNER)
    one_line_error(code, err, "rlo.jsonl:1", "U+202E right-to-left override")


def test_show_escapes_control_and_format_characters_and_markup(home, monkeypatch, capsys):
    """Members read `dso show` before voting: what they see must be what is signed."""
    path, _ = home
    text = "Check [red]units[/red]\u200b twice\nthen divide"
    jsonl = path.parent / "odd.jsonl"
    jsonl.write_text(json.dumps({"text": text, "domain": "math", "confidence": 0.9}) + "\n")
    code, out, _ = dso(monkeypatch, capsys, "submit", str(jsonl), "--wallet", "node1", *SIGNER)
    root = out.split("committed batch ")[1].split()[0]
    code, out, _ = dso(monkeypatch, capsys, "show", root[:12])
    assert code == 0 and "[red]units[/red]\\u200b" in out and "\\u000athen" in out and "\u200b" not in out


# ------------------------------------------------------------------------------ 6-8. URLs, filters, exit status


def test_a_non_http_rpc_url_is_one_clear_line(home, monkeypatch, capsys):
    """DSO_RPC_URL=file:///etc/passwd dso batches ended in a requests.InvalidSchema traceback."""
    code, _, err = dso(monkeypatch, capsys, "batches", env={"DSO_RPC_URL": "file:///etc/passwd"})
    one_line_error(code, err, "file:///etc/passwd", "http:// or https://")


@pytest.mark.parametrize("value", ["nan", "5", "-0.1", "inf"])
def test_query_refuses_a_min_confidence_outside_zero_to_one(home, monkeypatch, capsys, embedder, value):
    """dso query ... --min-confidence nan (or 5) returned [] silently."""
    path, _ = home
    with Library(path / "library.sqlite", embedder) as library:
        insight = gsm8k_insights(1, offset=3_800)[0]
        code = get_codec("bitdelta-1", 384).encode(embedder.embed([insight.text]))[0]
        library.add(Experience.create(insight.text, insight.domain, 0.9, "all-MiniLM-L6-v2", "bitdelta-1", bytes(code), bytes(20), 1),
                    bytes.fromhex(baseline_id(load_baseline())))
    code, _, err = dso(monkeypatch, capsys, "query", "split a bill", "--min-confidence", value)
    one_line_error(code, err, "min_confidence must be a number in [0, 1]")


def test_sync_help_documents_its_exit_statuses(monkeypatch, capsys):
    code, out, _ = dso(monkeypatch, capsys, "sync", "--help")
    assert code == 0 and "Exit status" in out and "3 when batches" in out and "4 when none was refused" in out


# ------------------------------------------------------------------------------ 9. duplicate challenges


def test_a_second_challenge_of_a_pending_leaf_is_one_clear_line(home, monkeypatch, capsys):
    """A second revoke-experience for the same leaf was accepted and ended 'applied: False'."""
    path, dao = home
    code, out, _ = dso(monkeypatch, capsys, "submit", str(lessons_file(path.parent / "c.jsonl", 3_900)), "--wallet", "node1", *SIGNER)
    root = out.split("committed batch ")[1].split()[0]
    accept(dao, bytes.fromhex(root))
    code, out, _ = dso(monkeypatch, capsys, "dao", "revoke-experience", root[:12], "1", "--wallet", "member1", *SIGNER)
    assert code == 0 and "proposal 0 created" in out
    code, _, err = dso(monkeypatch, capsys, "dao", "revoke-experience", root[:12], "1", "--wallet", "member2", *SIGNER)
    one_line_error(code, err, "LeafChallengePending")


# ------------------------------------------------------------------------------ 10. messages


def test_messages_say_what_they_mean(home, monkeypatch, capsys):
    path, dao = home
    code, out, _ = dso(monkeypatch, capsys, "submit", str(lessons_file(path.parent / "m.jsonl", 4_000)), "--wallet", "node1", *SIGNER)
    root = out.split("committed batch ")[1].split()[0]
    code, _, err = dso(monkeypatch, capsys, "finalize", root[:12], "--wallet", "member1", *SIGNER)
    one_line_error(code, err, "VotingStillOpen(deadline 20", " UTC, ", " min from now)")  # was VotingStillOpen(1796191089)
    code, _, err = dso(monkeypatch, capsys, "show", "deadbeef")
    one_line_error(code, err, "no batch root starts with deadbeef")  # was "matches 0 batches; give more hex digits"
    accept(dao, bytes.fromhex(root))
    code, out, _ = dso(monkeypatch, capsys, "sync")
    assert code == 0 and "no experience can be accepted yet" in out and "only 1 admitted node(s) reported" in out  # was "(>= 3 of 1 active nodes"
    code, out, _ = dso(monkeypatch, capsys, "sync")
    assert code == 0 and "no new blocks since the last sync" in out  # was "blocks 20-19"


# ------------------------------------------------------------------------------ 11. codes at verification


def test_a_batch_with_an_undecodable_code_is_refused_at_verification_naming_the_leaf(embedder):
    insights = gsm8k_insights(3, offset=4_100)
    codes = get_codec("bitdelta-1", 384).encode(embedder.embed([i.text for i in insights]))
    node = bytes(range(20))
    bad_codes = [bytes(codes[0]), bytes(codes[1])[:-3], bytes(codes[2])]  # leaf 1 is 47 bytes, not 50
    nan_scale = [bytes(codes[0]), bytes(codes[1]), bytes(codes[2])[:-2] + b"\x00\x7e"]  # float16 NaN
    for codes_here, needle in ((bad_codes, "leaf 1: its code is 47 bytes"), (nan_scale, "leaf 2: its code cannot be decoded")):
        experiences = [Experience.create(i.text, i.domain, 0.8, "all-MiniLM-L6-v2", "bitdelta-1", c, node, 1) for i, c in zip(insights, codes_here)]
        document = build_batch(experiences, dim=384, baseline=bytes.fromhex(baseline_id(load_baseline())), created_at=1)
        with pytest.raises(BatchError, match=needle):
            parse_document(document.to_bytes())


# ------------------------------------------------------------------------------ 12. alignment models


def test_an_alignment_fitted_for_another_model_is_refused_in_one_line(home, monkeypatch, capsys, embedder):
    path, _ = home
    with Library(path / "library.sqlite", embedder):
        pass
    rng = np.random.default_rng(0)
    other = fit_procrustes(rng.standard_normal((40, 384)), rng.standard_normal((40, 384)))
    from dataclasses import replace

    named = replace(other, source_model="intfloat/some-other-384d-model", target_model=MODEL_ID)
    assert type(other).from_bytes(named.to_bytes()).source_model == "intfloat/some-other-384d-model"
    for name, alignment, needle in (("other.align", named, "fitted for query model intfloat/some-other-384d-model"),
                                    ("unnamed.align", other, "records no query model")):
        atomic_write_bytes(path.parent / name, alignment.to_bytes())
        code, _, err = dso(monkeypatch, capsys, "query", "split a bill", "--query-model", "e5-small", "--alignment", str(path.parent / name))
        one_line_error(code, err, needle, "dso align fit")


# ------------------------------------------------------------------------------ 13. voting parameters


def test_the_dao_changes_the_voting_period_and_quorum_for_later_batches_only(home, monkeypatch, capsys, w3):
    path, dao = home
    code, out, _ = dso(monkeypatch, capsys, "submit", str(lessons_file(path.parent / "v1.jsonl", 4_200)), "--wallet", "node1", *SIGNER)
    before = bytes.fromhex(out.split("committed batch ")[1].split()[0])
    code, out, _ = dso(monkeypatch, capsys, "dao", "propose-voting-parameters", "--voting-period", "7200", "--quorum-bps", "10000", "--wallet", "member1", *SIGNER)
    assert code == 0, out
    proposal = out.split("proposal ")[1].split()[0]
    for member in ("member1", "member2", "member3"):
        dso(monkeypatch, capsys, "dao", "vote", proposal, "--approve", "--wallet", member, *SIGNER)
    code, out, _ = dso(monkeypatch, capsys, "dao", "finalize", proposal, "--wallet", "deployer", *SIGNER)
    assert code == 0 and "accepted, applied: True" in out
    code, out, _ = dso(monkeypatch, capsys, "dao", "proposals")
    assert "period 7200" in out and "quorum 100%" in out
    code, out, _ = dso(monkeypatch, capsys, "status")
    assert "7200 s" in out and "100% of the electorate" in out
    code, out, _ = dso(monkeypatch, capsys, "submit", str(lessons_file(path.parent / "v2.jsonl", 4_300)), "--wallet", "node2", *SIGNER)
    after = bytes.fromhex(out.split("committed batch ")[1].split()[0])
    old, new = dao.registry.batch(before).tally, dao.registry.batch(after).tally
    assert (old.quorum_bps, new.quorum_bps) == (5_000, 10_000)
    assert new.deadline - old.deadline >= 7_200 - 3_600


# ------------------------------------------------------------------------------ 14. no daemons left behind


def test_services_a_killed_test_process_started_die_with_it(tmp_path):
    """A killed test run used to leave Anvil and the IPFS node running (each in its own session)."""
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from dso.edges.services import free_port, start_anvil, start_ipfs
        anvil, _ = start_anvil(Path({str(tmp_path / 'a')!r}), port=free_port(), die_with_parent=True)
        ipfs, _ = start_ipfs(Path({str(tmp_path / 'i')!r}), port=free_port(), die_with_parent=True)
        print(anvil.pid(), ipfs.pid(), flush=True)
        time.sleep(600)
    """)
    victim = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in victim.stdout.readline().split()]
        assert len(pids) == 2 and all(process_alive(p) for p in pids)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(process_alive(p) for p in pids):
            time.sleep(0.1)
        assert not any(process_alive(p) for p in pids)
    finally:
        victim.kill()
        for p in pids if "pids" in locals() else []:
            if process_alive(p):
                os.kill(p, signal.SIGKILL)


@pytest.fixture(scope="module")
def embedder():
    return load_embedder("minilm")
