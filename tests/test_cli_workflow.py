"""The node operator's, DAO member's and agent builder's jobs through the `dso` command line, on
the session's real Anvil and IPFS node."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import deploy_dao

from dso.edges.chain import Registry
from dso.edges.config import NetworkConfig, load_config, save_config
from dso.edges.datasets import gsm8k_insights
from dso.edges.wallet import create_dev_wallets
from dso.interfaces.cli import cli
from dso.workflows.publish import insights_to_jsonl


@pytest.fixture
def home(tmp_path, monkeypatch, w3, accounts, anvil_url, ipfs_api):
    """A DSO_HOME pointing at a fresh registry on the session devnet, with dev wallets."""
    monkeypatch.setenv("DSO_HOME", str(tmp_path))
    monkeypatch.setenv("DSO_DEV_PASSWORD", "dev")
    dao = deploy_dao(w3, accounts, n_members=3, n_nodes=3)
    save_config(NetworkConfig(anvil_url, w3.eth.chain_id, dao.registry.address, 0, "test", ipfs_api))
    create_dev_wallets({"deployer": dao.deployer, **{f"member{i + 1}": m for i, m in enumerate(dao.members)},
                       **{f"node{i + 1}": n for i, n in enumerate(dao.nodes)}})
    return tmp_path


def run(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def signer(name: str) -> list[str]:
    return ["--wallet", name, "--password-env", "DSO_DEV_PASSWORD"]


def test_submit_vote_finalize_sync_query_show(home):
    jsonl = home / "mine.jsonl"
    jsonl.write_text(insights_to_jsonl(gsm8k_insights(6, offset=50)))
    roots = []
    for node in ("node1", "node2", "node3"):  # three nodes learned the same lessons
        out = run("submit", str(jsonl), *signer(node))
        roots.append(out.split("committed batch ")[1].split()[0])
    assert "pending" in run("batches")
    for root in roots:
        for member in ("member1", "member2", "member3"):
            run("vote", root[:12], "--approve", *signer(member))
        assert "accepted" in run("finalize", root[:12], *signer("deployer"))
    synced = run("sync")
    assert "loaded 3 batch(es) (+18 reports)" in synced and "6 experiences accepted, 0 awaiting support" in synced
    # Nodes admitted minutes ago (this epoch) all weigh the floor: 1/16 each, so every node counts the same.
    assert "reputation: 3 admitted node(s) weigh 0.062 to 0.062" in synced
    status = run("status")
    assert "reputation as of block" in status and status.count("0.062") == 3
    hits = json.loads(run("query", gsm8k_insights(6, offset=50)[2].text, "-k", "1", "--format", "json"))
    assert hits[0]["text"] == gsm8k_insights(6, offset=50)[2].text and hits[0]["support"] == 3
    stricter = run("sync", "--min-nodes", "4")  # nothing new on chain, but the policy changed
    assert "loaded 0 batch(es)" in stricter and "0 experiences accepted, 6 awaiting support" in stricter
    root = roots[0]
    shown = run("show", root)
    assert "verified CID" in shown and "accepted" in shown
    assert "the outbox is empty" in run("outbox", "list")


def test_dao_proposal_through_the_cli(home, accounts):
    newcomer = accounts[15].address
    out = run("dao", "propose-member", newcomer, *signer("member1"))
    proposal = out.split("proposal ")[1].split()[0]
    for member in ("member1", "member2", "member3"):
        run("dao", "vote", proposal, "--approve", *signer(member))
    assert "applied: True" in run("dao", "finalize", proposal, *signer("deployer"))
    assert "add_member" in run("dao", "proposals")


def test_user_errors_are_one_line_without_traceback(home):
    runner = CliRunner()
    bad = home / "bad.jsonl"
    bad.write_text('{"text": "x", "domain": "math", "confidence": 2}\n')
    result = runner.invoke(cli, ["submit", str(bad), *signer("node1")])
    assert result.exit_code != 0 and "bad.jsonl:1: confidence must be in [0, 1]" in str(result.exception)
    wrong = runner.invoke(cli, ["vote", "ffff", "--approve", *signer("member1")])
    assert "no batch root starts with ffff" in str(wrong.exception)
    nobody = runner.invoke(cli, ["vote", "ffff", "--approve", "--wallet", "ghost", "--password-env", "DSO_DEV_PASSWORD"])
    assert nobody.exit_code != 0


def test_revoke_one_experience_through_the_cli(home):
    insights = gsm8k_insights(5, offset=80)
    jsonl = home / "batch.jsonl"
    jsonl.write_text(insights_to_jsonl(insights))
    root = run("submit", str(jsonl), *signer("node1")).split("committed batch ")[1].split()[0]
    for member in ("member1", "member2"):
        run("vote", root[:12], "--approve", *signer(member))
    run("finalize", root[:12], *signer("deployer"))
    out = run("dao", "revoke-experience", root[:12], "3", *signer("member1"))
    flat = " ".join(out.split())  # rich wraps long lines
    assert any(" ".join(i.text.split()) in flat for i in insights)  # the challenged experience is shown
    assert "3-hash proof" in flat  # leaf 3 of 5
    proposal = flat.split("proposal ")[1].split()[0]
    for member in ("member1", "member2"):
        run("dao", "vote", proposal, "--approve", *signer(member))
    assert "applied: True" in run("dao", "finalize", proposal, *signer("deployer"))
    listed = run("dao", "proposals")
    assert "#3" in listed and root[:16] in listed
    registry = Registry.at(load_config().rpc_url, load_config().registry)
    assert [registry.is_experience_revoked(root, i) for i in range(5)] == [False, False, False, True, False]
    wrong = CliRunner().invoke(cli, ["dao", "revoke-experience", root[:12], "5", *signer("member1")])
    assert "there is no experience 5" in str(wrong.exception)


def test_submit_with_the_rpc_down_queues_the_batch_and_flush_commits_it(home, w3, anvil_url, ipfs_api):
    from dso.edges.config import load_config
    from dso.edges.services import free_port

    config = load_config()
    jsonl = home / "mine.jsonl"
    jsonl.write_text(insights_to_jsonl(gsm8k_insights(4, offset=90)))
    save_config(NetworkConfig(f"http://127.0.0.1:{free_port()}", config.chain_id, config.registry, 0, "test", ipfs_api))
    result = CliRunner().invoke(cli, ["submit", str(jsonl), *signer("node1")])
    assert result.exit_code != 0 and "safe in the outbox" in str(result.exception)
    assert "4 experiences" in run("outbox", "list")
    save_config(config)
    assert "committed batch" in run("outbox", "flush", *signer("node1"))
    assert "the outbox is empty" in run("outbox", "list")
