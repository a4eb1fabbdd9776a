"""`dso ui` in a real headless browser: Debian's chromium driven by Playwright. Batches are
submitted on the devnet; a member reviews one (fetched and verified, hostile text shown as text),
two members vote (one with a keystore and a reason, one with an injected EIP-1193 wallet), the
batch is finalized and the chain says accepted; two more batches get one vote each from the list.
The batch page is screenshot on every run (to a temporary file, so a test run leaves the checkout
as it was); with DSO_REFRESH_SCREENSHOT=1 it replaces docs/ui-batch.png, shown in the README."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from interface_home import accept, lessons, make_home, submit

from dso.core.aggregate import AcceptancePolicy
from dso.core.experience import Insight
from dso.edges.chain import Status
from dso.edges.embed import load_embedder
from dso.edges.ipfs import KuboClient
from dso.edges.services import free_port
from dso.edges.wallet import import_wallet
from dso.workflows.library import Library
from dso.workflows.review import batch_votes
from dso.workflows.sync import sync

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
HOSTILE = "<img src=x onerror=alert(1)> Never trust a lesson that renders as markup."
PASSWORD = "violet-otter-93-correct-staple"  # unique, so the test can look for it in logs and files
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "ui-batch.png"


def chromium_or_fail() -> None:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: install it with `apt-get install -y chromium` (scripts/setup.sh does as root)")


@pytest.fixture
def review_home(tmp_path, monkeypatch, w3, accounts, anvil_url, ipfs_api):
    """Nodes 1 and 2 published the same lessons (accepted, synced with a 2-node bar); node 3's batch
    repeats two of them beside a hostile text and waits for votes; two small batches wait too."""
    home = tmp_path / "home"
    dao = make_home(home, monkeypatch, w3, accounts, anvil_url, ipfs_api)
    import_wallet("alice", dao.members[0].key.hex(), PASSWORD, kdf_iterations=2**10)
    embedder = load_embedder("minilm")
    known = lessons(3, offset=120)
    for n in (0, 1):
        accept(dao.registry, dao, submit(dao, ipfs_api, embedder, n, known, now=1_763_100_000 + n))
    with Library(home / "library.sqlite", embedder) as library:
        sync(dao.registry, KuboClient(ipfs_api), library, state_path=home / "sync.json", policy=AcceptancePolicy(min_nodes=2))
    review = submit(dao, ipfs_api, embedder, 2, [*known[:2], Insight(HOSTILE, "security.web", 0.7)], now=1_763_100_010)
    others = [submit(dao, ipfs_api, embedder, n, lessons(1, offset=200 + n), now=1_763_100_020 + n) for n in (0, 1)]
    return home, dao, review, others


@pytest.fixture
def ui_server(review_home):
    home, dao, review, others = review_home
    port = free_port()
    log = home / "ui.log"
    env = {**os.environ, "DSO_HOME": str(home)}
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "dso", "ui", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/static/style.css", timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"dso ui did not start: {log.read_text()}")
                time.sleep(0.3)
        yield url, home, dao, review, others, log
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_review_vote_finalize_in_headless_chromium(ui_server, w3, tmp_path):
    chromium_or_fail()
    from playwright.sync_api import expect, sync_playwright

    url, home, dao, review, others, log = ui_server
    dialogs: list[str] = []

    def injected_send(method: str, params: list) -> object:
        """The fake EIP-1193 wallet's back end: member 2 (an unlocked Anvil dev account) sends."""
        if method == "eth_requestAccounts":
            return [dao.members[1].address]
        if method == "eth_sendTransaction":
            tx = params[0]
            assert tx["from"] == dao.members[1].address and tx["to"] == dao.registry.address
            tx_hash = w3.eth.send_transaction({"from": tx["from"], "to": tx["to"], "data": tx["data"]})
            w3.eth.wait_for_transaction_receipt(tx_hash)
            return tx_hash.to_0x_hex()
        raise ValueError(f"unsupported {method}")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)  # Playwright gives it a fresh profile
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

            page.goto(url + "/")
            rows = page.locator("#batches tbody tr")
            assert rows.count() == 5
            first = rows.nth(0).inner_text()  # pending first
            assert "pending" in first and "0 of 2 needed" in first and "min from now" in first
            assert "accepted" in rows.nth(4).inner_text()

            page.click(f"a[href='/batch/0x{review.hex()}']")
            page.wait_for_selector("#badge")
            assert page.inner_text("#badge") == "verified"
            texts = page.locator("#experiences td.text").all_inner_texts()
            assert HOSTILE in texts  # shown as text ...
            assert page.locator("#experiences img").count() == 0  # ... never as markup
            relations = page.locator("#experiences td.relation").all_inner_texts()
            assert sum(r.startswith("would support") for r in relations) == 2 and sum(r == "new" for r in relations) == 1
            facts = page.inner_text("dl.facts")
            assert f"0x{review.hex()}" in facts and "= header node" in facts and "bitdelta-1" in facts

            page.select_option("#signer-kind", "keystore:alice")
            page.fill("#password", PASSWORD)
            page.fill("#reason", "Checked all three: the two lessons are general; the markup one is harmless text.")
            page.click("#vote-yes")
            page.wait_for_selector("#result.ok")
            page.wait_for_load_state("load")
            expect(page.locator("#tally")).to_contain_text("1 yes", timeout=60_000)

            page.add_init_script("""
              window.ethereum = { request: ({ method, params }) => window.dsoTestWallet(method, params || []) };
            """)
            page.expose_function("dsoTestWallet", injected_send)
            page.reload()
            page.wait_for_selector("#badge")
            assert page.input_value("#signer-kind") == "browser"
            page.click("#vote-yes")
            page.wait_for_selector("#result.ok")
            expect(page.locator("#tally")).to_contain_text("2 yes", timeout=60_000)
            page.wait_for_selector("#finalize")
            assert "Checked all three" in page.inner_text("#votes")
            SCREENSHOT.parent.mkdir(exist_ok=True)
            shot = SCREENSHOT if os.environ.get("DSO_REFRESH_SCREENSHOT") == "1" else tmp_path / "ui-batch.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000

            page.select_option("#signer-kind", "keystore:member3")
            page.fill("#password", "dev")
            page.click("#finalize")
            page.wait_for_selector("#result.ok")
            expect(page.locator("#status")).to_have_text(re.compile(r"^accepted"), timeout=60_000)

            page.goto(url + "/")
            for root in others:
                page.check(f"input.pick[value='0x{root.hex()}']")
            page.select_option("#signer-kind", "keystore:member3")
            page.fill("#password", "dev")
            page.fill("#bulk-reason", "Too specific to one problem.")
            page.click("#bulk-no")
            page.wait_for_selector("#result.ok")
            assert re.search(r"voted no on 2 batches", page.inner_text("#result"))
        finally:
            browser.close()

    assert dialogs == []  # no script ran from any text
    assert dao.registry.batch(review).tally.status == Status.ACCEPTED
    votes = batch_votes(dao.registry, review)
    assert [(v.voter, v.support) for v in votes] == [(dao.members[0].address, True), (dao.members[1].address, True)]
    assert votes[0].reason.startswith("Checked all three") and votes[1].reason is None
    for root in others:
        assert (dao.registry.batch(root).tally.no, batch_votes(dao.registry, root)[0].reason) == (1, "Too specific to one problem.")
    leaked = [str(p) for p in home.rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]
    assert leaked == [] and PASSWORD not in log.read_text()  # never stored or logged


def test_state_changes_need_the_csrf_token_and_a_loopback_host(ui_server):
    url, home, dao, review, others, log = ui_server
    page = httpx.get(url + "/")
    assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
    body = {"votes": [{"root": "0x" + review.hex(), "support": True}], "wallet": "member1", "password": "dev"}
    assert httpx.post(url + "/api/vote", json=body).status_code == 403  # no token
    assert httpx.post(url + "/api/vote", json=body, headers={"X-CSRF-Token": "guess"}).status_code == 403
    forged = httpx.post(url + "/api/vote", json=body, headers={"X-CSRF-Token": token, "Origin": "http://evil.example"})
    assert forged.status_code == 403 and "cross-origin" in forged.json()["error"]
    form = httpx.post(url + "/api/vote", data={"wallet": "member1"}, headers={"X-CSRF-Token": token})
    assert form.status_code == 415
    rebound = httpx.get(url + "/", headers={"Host": "evil.example:80"})
    assert rebound.status_code == 400 and "refused Host" in rebound.text
    wrong = httpx.post(url + "/api/vote", json={**body, "password": "nope"}, headers={"X-CSRF-Token": token})
    assert wrong.status_code == 400 and "wrong password for wallet 'member1'" in wrong.json()["error"]
    assert "nope" not in wrong.text
    assert dao.registry.batch(review).tally.yes == 0
