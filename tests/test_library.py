"""The local agent memory on real data: real model, real codec, SQLite on disk."""

from __future__ import annotations

import sqlite3

import pytest

from dso.core.codec import baseline_id, get_codec, load_baseline
from dso.core.experience import Experience
from dso.edges.datasets import gsm8k_insights, sts_pairs
from dso.edges.embed import load_embedder
from dso.workflows.library import Library, LibraryError, Source, export_json

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


def test_local_exact_and_near_duplicates_are_stored_once(library, embedder, baseline):
    [original] = to_experiences(embedder, [("When a price rises by 10% twice, apply the increases one after the other.", "math.percent", 0.9)])
    [near] = to_experiences(embedder, [("When a price rises by 10% two times, apply the increases one after the other.", "math.percent", 0.8)], node=b"\x02" * 20)
    [other] = to_experiences(embedder, [("When a train leaves at noon, convert all times to minutes first.", "math.time", 0.9)])
    first = library.add(original, baseline)
    again = library.add(original, baseline)
    twin = library.add(near, baseline)
    distinct = library.add(other, baseline)
    assert first.stored and not again.stored and again.existing == first.experience_id
    assert not twin.stored and twin.existing == first.experience_id and twin.similarity >= 0.9
    assert distinct.stored
    assert len(library) == 2
    assert library.support(first.experience_id) == 0  # the agent's own: no network support
    assert [h.origin for h in library.search(original.text, k=2)] == ["local", "local"]


def lesson_reports(embedder, lesson: int, nodes: list[int], confidences: list[float] | None = None) -> dict[int, Experience]:
    """Shared GSM8K lesson `lesson` as node n words it (style (n - 1) % 4), one experience per node."""
    out = {}
    for k, n in enumerate(nodes):
        insight = gsm8k_insights(1, offset=lesson, style=(n - 1) % 4)[0]
        confidence = confidences[k] if confidences else insight.confidence
        [out[n]] = to_experiences(embedder, [(insight.text, insight.domain, confidence)], node=bytes([n]) * 20)
    return out


def root(n: int) -> bytes:
    return bytes([n]) * 32


def test_reports_enter_only_by_aggregation_with_one_voice_per_admitted_node(library, embedder, baseline):
    reports = lesson_reports(embedder, 3, [1, 2, 3, 9], confidences=[0.9, 0.7, 0.6, 1.0])
    for n, experience in reports.items():
        library.add_reports([experience], baseline, Source(root(n), n))
    library.add_reports([reports[1]], baseline, Source(root(11), 1))  # node 1 again, in another batch
    assert library.add_reports([reports[1]], baseline, Source(root(11), 1)) == 0  # the same leaf twice: nothing new
    assert len(library) == 0 and library.report_count() == 5  # not visible before aggregation

    summary = library.aggregate(admitted_node_ids={1, 2, 3})
    assert (summary.accepted, summary.pending, summary.dropped_reports, summary.active_nodes) == (1, 0, 1, 3)
    [hit] = library.search(reports[2].text, k=1)
    assert hit.support == 3 and hit.origin == "network"  # node 1 counted once, node 9 not admitted
    assert hit.confidence == 0.7  # the median of the voices 0.9 / 0.7 / 0.6, not node 9's 1.0
    assert hit.experience in [reports[1], reports[2], reports[3]]

    assert library.aggregate(admitted_node_ids={1, 2, 3}).unchanged  # nothing changed: skipped
    removed = library.aggregate(admitted_node_ids={1, 2})  # the DAO removed node 3
    assert (removed.accepted, removed.pending) == (0, 1) and len(library) == 0
    [pending] = library.pending()
    assert pending.support == 2 and "support 2 < 3" in pending.reason


def test_aggregation_does_not_depend_on_arrival_order(tmp_path, embedder, baseline):
    lessons = [lesson_reports(embedder, j, [1, 2, 3, 4]) for j in range(6)]
    batches = [(n, [lessons[j][n] for j in range(6) if j % 4 != n - 1]) for n in (1, 2, 3, 4)]
    views = []
    for name, order in (("forward", batches), ("backward", batches[::-1])):
        with Library(tmp_path / f"{name}.sqlite", embedder) as lib:
            for n, experiences in order:
                lib.add_reports(experiences, baseline, Source(root(n), n))
            assert lib.aggregate({1, 2, 3, 4}).accepted == 6
            views.append(sorted((h.experience.experience_id, h.confidence, h.support) for h in lib.search("money", k=10)))
    assert views[0] == views[1]


def test_revoked_batch_and_revoked_leaf_remove_only_their_reports(library, embedder, baseline, gsm8k_items):
    shared = lesson_reports(embedder, 5, [1, 2, 3])
    [local] = to_experiences(embedder, gsm8k_items[200:201])
    library.add(local, baseline)  # the agent's own: never dropped by a revocation
    for n, experience in shared.items():
        library.add_reports([experience], baseline, Source(root(n), n))
    assert library.aggregate({1, 2, 3}).accepted == 1 and len(library) == 2
    assert library.remove_batch(root(3)) == 1
    assert library.aggregate({1, 2, 3}).accepted == 0 and len(library) == 1
    library.add_reports([shared[3]], baseline, Source(root(3), 3))
    assert library.aggregate({1, 2, 3}).accepted == 1
    assert library.remove_report(root(2), 0) == 1 and library.remove_report(root(2), 0) == 0
    assert library.aggregate({1, 2, 3}).accepted == 0
    assert [h.experience for h in library.search(local.text, k=3)] == [local]


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
    assert '"score"' in hits_json and '"support"' in hits_json and '"origin": "local"' in hits_json


def test_failed_writes_leave_the_library_unchanged(library, embedder, baseline, gsm8k_items, monkeypatch):
    good = to_experiences(embedder, gsm8k_items[:5])
    library.add_many(good[:2], baseline)
    original = library._store_vectors

    def fail_inside_the_transaction(vectors):
        original(vectors)
        raise OSError("disk full")

    monkeypatch.setattr(library, "_store_vectors", fail_inside_the_transaction)
    with pytest.raises(OSError):
        library.add_many(good[2:], baseline)
    monkeypatch.undo()
    assert len(library) == 2
    assert library.get(good[2].experience_id) is None
    assert [o.stored for o in library.add_many(good[2:], baseline)] == [True, True, True]

    monkeypatch.setattr(library, "_bump", lambda key: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        library.add_reports(good, baseline, Source(root(1), 1))
    monkeypatch.undo()
    assert library.report_count() == 0
    assert library.add_reports(good, baseline, Source(root(1), 1)) == 5


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


def test_lessons_published_with_another_model_are_searchable_once_accepted(library, embedder, baseline):
    """Codes of a model and baseline this client cannot decode take no part in the vote; once the
    indexer has embedded the medoid text, the entry is coded from it, so search works across models."""
    text = "When a recipe is scaled up, multiply every ingredient by the same factor."
    foreign_baseline = bytes([7]) * 32
    for n in (1, 2, 3):
        experience = Experience.create(text, "cooking", 0.9, "text-embedding-3-small", "bitdelta-1", bytes([n]) * 194, bytes([n]) * 20, 1)
        library.add_reports([experience], foreign_baseline, Source(root(n), n))
    assert library.aggregate({1, 2, 3}).accepted == 1
    assert library.search("How do I double a recipe?", k=1) == []  # no code in this space yet: sync embeds nothing
    assert library.index_texts().embedded == 1  # the indexer embeds the text and codes it in the library's space
    [hit] = library.search("How do I double a recipe?", k=1)
    assert hit.experience.text == text and hit.support == 3 and hit.experience.model == "text-embedding-3-small"
