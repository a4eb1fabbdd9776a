"""Fixtures for the ape test suite (run with `bash scripts/ape-test.sh`, i.e. `ape test tests/ape`).

Only ape's pytest plugin provides `accounts`, `project` and `chain`. The main suite (plain pytest
from the repo root) skips this folder via collect_ignore in tests/conftest.py, and tests/ape/pytest.ini
keeps that conftest and pyproject.toml's `-p no:ape_test` out of ape's run.
"""

import hashlib

import pytest

VOTING_PERIOD = 3600  # seconds
QUORUM_BPS = 5000  # 50% of the snapshot electorate: 2 of 3 members

SCHEMA = hashlib.sha256(b"dso/batch-v1").digest()
# A CIDv1 (dag-pb, sha2-256) in binary form: the registry only requires it to be nonempty.
CID = bytes.fromhex("01701220") + hashlib.sha256(b"batch document").digest()


def make_root(label: str) -> bytes:
    """A deterministic, nonzero 32-byte Merkle root for test batches."""
    return hashlib.sha256(label.encode()).digest()


@pytest.fixture(scope="session")
def deployer(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def members(accounts):
    return [accounts[1], accounts[2], accounts[3]]


@pytest.fixture(scope="session")
def nodes(accounts):
    return [accounts[4], accounts[5]]


@pytest.fixture(scope="session")
def outsider(accounts):
    """Neither a member nor a node."""
    return accounts[6]


@pytest.fixture(scope="module")
def registry(project, deployer, members, nodes):
    # Deployed once per module; ape's isolation reverts every test's transactions afterwards.
    return deployer.deploy(
        project.ExperienceRegistry,
        VOTING_PERIOD,
        QUORUM_BPS,
        [m.address for m in members],
        [n.address for n in nodes],
    )


# Plain data fixtures are function-scoped on purpose: a session fixture first requested after the
# module-scoped `registry` makes ape "rebase" its chain snapshots (InvalidIsolationWarning).
@pytest.fixture
def cid():
    return CID


@pytest.fixture
def schema():
    return SCHEMA


@pytest.fixture
def root():
    return make_root("batch-1")


@pytest.fixture
def submitted(registry, nodes, root):
    """A pending batch submitted by the first node; returns (root, receipt)."""
    receipt = registry.submitBatch(root, CID, 3, SCHEMA, sender=nodes[0])
    return root, receipt
