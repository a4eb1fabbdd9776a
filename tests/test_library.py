"""The local agent memory on real data: real model, real codec, SQLite on disk."""

from __future__ import annotations

import sqlite3

import pytest

from dso.codec import baseline_id, get_codec, load_baseline
from dso.datasets import gsm8k_insights, sts_pairs
from dso.embed import load_embedder
from dso.experience import Experience
from dso.library import Library, LibraryError, Source, export_json

NODE = bytes.fromhex("976ea74026e726554db657fa54763abd0c3a0aa9")
MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def embedder():
    return load_embedder("minilm")


@pytest.fixture(scope="module")
def baseline() -> bytes:
    return bytes.fromhex(baseline_id(load_baseline()))


def to_experiences(embedder, items: list[tuple[str, str, float]], node: bytes = NODE) -> list[Experience]:
    codec = get_codec("bitdelta-1", embedder.dim)
    codes = codec.encode(embedder.embed([text for text, _, _ in items]))
    return [
        Experience.create(text, domain, confidence, MODEL, "bitdelta-1", bytes(code), node, 1_763_000_000 + i)
        for i, ((text, domain, confidence), code) in enumerate(zip(items, codes))
    ]


@pytest.fixture(scope="module")
def gsm8k_items() -> list[tuple[str, str, float]]:
    return [(i.text, i.domain, i.confidence) for i in gsm8k_insights(300)]


@pytest.fixture
def library(tmp_path, embedder):
    with Library(tmp_path / "library.sqlite", embedder) as lib:
        yield lib


def test_paraphrase_queries_find_their_sentence_in_the_top_5(library, embedder, baseline):
    """STS-B pairs scored 5.0: the library holds the first sentences (plus distractors); each
    second sentence, used as a query, retrieves its partner among the top 5."""
    pairs = [p for p in sts_pairs("dev") if p.score >= 4.8 and p.first != p.second][:40]
    distractors = [p.first for p in sts_pairs("train")[:300]]
    texts = list(dict.fromkeys([p.first for p in pairs] + distractors))
    library.add_many(to_experiences(embedder, [(t, "general", 0.8) for t in texts]), baseline)
    found = sum(any(h.experience.text == p.first for h in library.search(p.second, k=5)) for p in pairs)
    assert found >= 0.9 * len(pairs), f"{found}/{len(pairs)}"


def test_filters_domain_prefix_and_min_confidence(library, embedder, baseline, gsm8k_items):
    library.add_many(to_experiences(embedder, gsm8k_items[:120]), baseline)
    hits = library.search("how much money does she earn per hour", k=10, domain="math.money", min_confidence=0.9)
    assert hits and all(h.experience.domain.startswith("math.money") and h.experience.confidence >= 0.9 for h in hits)
    assert library.search("anything", domain="physics") == []
    with pytest.raises(Exception, match="dotted lowercase"):
        library.search("x", domain="Not A Domain")


def test_exact_and_near_duplicates_are_stored_once_and_counted_as_support(library, embedder, baseline):
    [original] = to_experiences(embedder, [("When a price rises by 10% twice, apply the increases one after the other.", "math.percent", 0.9)])
    [near] = to_experiences(embedder, [("When a price rises by 10% two times, apply the increases one after the other.", "math.percent", 0.8)], node=b"\x02" * 20)
    [other] = to_experiences(embedder, [("When a train leaves at noon, convert all times to minutes first.", "math.time", 0.9)])
    first = library.add(original, baseline, Source(b"\x01" * 32, node_id=1))
    again = library.add(original, baseline, Source(b"\x03" * 32, node_id=1))
    twin = library.add(near, baseline, Source(b"\x02" * 32, node_id=2))
    distinct = library.add(other, baseline, Source(b"\x02" * 32, node_id=2))
    assert first.stored and not again.stored and again.existing == first.experience_id
    assert not twin.stored and twin.existing == first.experience_id and twin.similarity >= 0.9
    assert distinct.stored
    assert len(library) == 2
    assert library.support(first.experience_id) == 2  # node 1 (twice) and node 2: two distinct nodes


def test_revoked_batch_drops_only_experiences_without_other_sources(library, embedder, baseline, gsm8k_items):
    a, b, c = to_experiences(embedder, gsm8k_items[:3])
    bad, good = b"\xbb" * 32, b"\x99" * 32
    library.add_many([a, b], baseline, Source(bad, 1))
    library.add_many([b], baseline, Source(good, 2))
    library.add(c, baseline)  # added locally, no source: never dropped by a revocation
    assert library.remove_batch(bad) == 1
    assert library.get(a.experience_id) is None
    assert library.get(b.experience_id) == b and library.get(c.experience_id) == c
    assert [h.experience for h in library.search(a.text, k=3)] != [] and all(h.experience != a for h in library.search(a.text, k=3))


def test_library_persists_across_reopen_and_context_block_is_prompt_ready(tmp_path, embedder, baseline, gsm8k_items):
    path = tmp_path / "lib.sqlite"
    with Library(path, embedder) as lib:
        lib.add_many(to_experiences(embedder, gsm8k_items[:50]), baseline)
    with Library(path, embedder) as lib:
        assert len(lib) == 50
        block = lib.context_for(gsm8k_items[7][0], k=3)
        hits_json = export_json(lib.search(gsm8k_items[7][0], k=3))
    lines = block.splitlines()
    assert lines[0].startswith("Relevant experiences") and len(lines) == 4
    assert gsm8k_items[7][0] in lines[1]  # an experience's own text retrieves it first
    assert '"score"' in hits_json and '"support"' in hits_json


def test_failed_batch_add_leaves_the_library_unchanged(library, embedder, baseline, gsm8k_items, monkeypatch):
    good = to_experiences(embedder, gsm8k_items[:5])
    library.add_many(good[:2], baseline)
    original = library._add_one

    def fail_on_fourth(experience, *args):
        if experience == good[3]:
            raise OSError("disk full")
        return original(experience, *args)

    monkeypatch.setattr(library, "_add_one", fail_on_fourth)
    with pytest.raises(OSError):
        library.add_many(good[2:], baseline)
    monkeypatch.undo()
    assert len(library) == 2
    assert library.get(good[2].experience_id) is None
    assert [o.stored for o in library.add_many(good[2:], baseline)] == [True, True, True]


def test_corrupt_file_is_a_clear_error(tmp_path, embedder):
    path = tmp_path / "bad.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LibraryError, match="not a usable dso library"):
        Library(path, embedder)


def test_newer_schema_is_refused(tmp_path, embedder):
    path = tmp_path / "future.sqlite"
    Library(path, embedder).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema'")
    with pytest.raises(LibraryError, match="schema 99"):
        Library(path, embedder)


def test_k_must_be_positive(library):
    with pytest.raises(LibraryError):
        library.search("x", k=0)
