"""`--format json` on every command that lists or shows something: one JSON document with the
documented keys (README, "JSON output"), nothing else on stdout."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from interface_home import lessons, make_home

from dso.interfaces.cli import cli
from dso.workflows.publish import insights_to_jsonl

SIGNER = ["--password-env", "DSO_DEV_PASSWORD"]
TALLY = {"status", "yes", "no", "votes", "electorate", "quorum", "quorum_bps", "snapshot", "deadline", "deadline_utc", "seconds_left",
         "outcome_now", "finalizable"}
BATCH = {"root", "node_id", "node", "count", "submitted_at", "submitted_utc", "tally"}


@pytest.fixture
def home(tmp_path, monkeypatch, w3, accounts, anvil_url, ipfs_api):
    dao = make_home(tmp_path / "home", monkeypatch, w3, accounts, anvil_url, ipfs_api)
    return tmp_path / "home", dao


def run_json(*args: str, code: int = 0) -> dict:
    result = CliRunner(mix_stderr=False).invoke(cli, [*args, "--format", "json"], catch_exceptions=False)
    assert result.exit_code == code, result.output
    document = json.loads(result.stdout)
    assert document["version"] == 1
    return document


def test_every_listing_command_speaks_json(home, accounts):
    path, dao = home
    jsonl = path / "mine.jsonl"
    jsonl.write_text(insights_to_jsonl(lessons(3)))
    roots = []
    for node in ("node1", "node2", "node3"):
        out = CliRunner().invoke(cli, ["submit", str(jsonl), "--wallet", node, *SIGNER], catch_exceptions=False).output
        roots.append(out.split("committed batch ")[1].split()[0])
    for member in ("member1", "member2"):
        CliRunner().invoke(cli, ["vote", roots[0][:12], "--approve", "--wallet", member, *SIGNER], catch_exceptions=False)
    CliRunner().invoke(cli, ["dao", "propose-member", accounts[15].address, "--wallet", "member1", *SIGNER], catch_exceptions=False)

    listed = run_json("batches")
    assert set(listed) == {"version", "chain_time", "batches"} and len(listed["batches"]) == 3
    first = listed["batches"][0]
    assert set(first) == BATCH and set(first["tally"]) == TALLY
    by_root = {b["root"][2:]: b for b in listed["batches"]}
    decided = by_root[roots[0]]["tally"]
    assert (decided["yes"], decided["quorum"], decided["electorate"], decided["outcome_now"], decided["finalizable"]) == (2, 2, 3, "accepted", True)
    assert by_root[roots[1]]["tally"]["outcome_now"] == "pending" and by_root[roots[1]]["node"] == dao.nodes[1].address
    assert 0 < by_root[roots[1]]["tally"]["seconds_left"] <= 3600
    assert by_root[roots[1]]["tally"]["deadline"] - by_root[roots[1]]["submitted_at"] == 3600
    assert run_json("batches", "--status", "accepted")["batches"] == []

    shown = run_json("show", roots[0][:12])
    assert set(shown) == {"version", "batch", "verification", "problem", "cid", "committed", "header", "experiences", "votes"}
    assert shown["verification"] == "verified" and shown["problem"] is None and len(shown["experiences"]) == 3
    assert {e["text"] for e in shown["experiences"]} == {i.text for i in lessons(3)}
    assert [v["voter"] for v in shown["votes"]] == [dao.members[0].address, dao.members[1].address]

    status = run_json("status")
    assert set(status) == {"version", "network", "voting_period", "quorum_bps", "membership_clock", "members", "nodes", "batches",
                           "proposals", "chain_time", "library"}
    assert status["batches"] == {"pending": 3} and status["proposals"] == 1 and len(status["members"]) == 3
    assert status["nodes"][0] == {"id": 1, "address": dao.nodes[0].address, "active": True}

    proposals = run_json("dao", "proposals")["proposals"]
    assert [(p["id"], p["kind"], p["account"], p["batch"]) for p in proposals] == [(0, "add_member", accounts[15].address, None)]
    assert set(proposals[0]["tally"]) == TALLY

    assert run_json("outbox", "list") == {"version": 1, "entries": []}
    wallets = run_json("wallet", "list")["wallets"]
    assert {w["name"] for w in wallets} >= {"member1", "node1", "deployer"} and set(wallets[0]) == {"name", "address", "path", "problem"}

    CliRunner().invoke(cli, ["finalize", roots[0][:12], "--wallet", "deployer", *SIGNER], catch_exceptions=False)
    synced = run_json("sync", "--min-nodes", "2")
    assert synced["loaded"] == ["0x" + roots[0]] and synced["exit_status"] == 0 and synced["refused"] == {}
    assert synced["library"]["pending"] == 3 and synced["policy"]["min_nodes"] == 2  # one node's reports wait for a second
    weights = synced["weights"]  # the one admitted node that reported, by its id, with its reputation weight
    assert len(weights) >= 1 and all(key.isdigit() and 0 < value <= 1 for key, value in weights.items())
