"""Incremental aggregation of a library's reports into network entries.

The library is a pure function of (verified reports, admitted nodes, policy, node weights); this
module computes it without redoing what did not change.

1. Counted reports (admitted nodes, within the per-node cap) are grouped by text. A group's code is
   the per-bit majority of its reports' codes in the library's code space, one vote per node; a
   group with none has no code.
2. Two groups are neighbours iff the cosine of their decoded codes is at least
   CODE_NEAR_DUPLICATE_COSINE (`dso.core.aggregate.code_neighbours`: an exact Hamming range search,
   then the exact cosine). No text is embedded: sync never waits for the model. Pairs are stored.
3. The connected components of that relation are independent: leader clustering
   (`dso.core.aggregate.cluster.leader_clusters`) gives the same clusters on one component alone as
   on the whole graph. Each group stores its component.
4. Each cluster's statistics and verdict come from `dso.core.aggregate.aggregate` (one voice per
   admitted node, robust statistics, the acceptance policy) and become one entry.

When reports arrive or leave, their groups are "dirty": the codes and neighbour pairs of those
groups are recomputed (k new groups against n known ones, not n^2), the components they belonged
to or now join are recomputed, and only those components' entries are rebuilt. A change of the
admitted set, the cap or the neighbour threshold rebuilds everything (`structure_key`); a change of
the policy, the node weights or the active reporters (the policy's bar depends on them) keeps the
groups, pairs and clusters and recomputes every cluster's statistics (`statistics_key`).

Entries keep the consensus code, not a consensus vector, so the vector statistic is skipped
(`aggregate(..., vector_aggregator=None)`); the reports of one text share its decoded code's
frozen vector, and the medoid and code checks work on distinct vectors and codes.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from dso.core.aggregate import AcceptancePolicy, Report, aggregate
from dso.core.aggregate.cluster import leader_clusters
from dso.core.aggregate.code_neighbours import CODE_NEAR_DUPLICATE_COSINE, code_terms, neighbour_pairs, pairs_within
from dso.core.aggregate.majority import bitdelta_consensus
from dso.core.aggregate.records import frozen_vector
from dso.core.experience import Experience, text_hash
from dso.workflows.codespace import CodeSpace

# Reports one node may contribute: its first ones in chain order (batch submission, then leaf)
# count. Clustering is no longer quadratic, but a node could still flood millions of
# near-duplicates into every client; nothing is left out silently (`capped_reports`).
MAX_REPORTS_PER_NODE = 100_000
SQL_CHUNK = 500  # values per IN (...) list


@dataclass(frozen=True)
class AggregationSummary:
    """What one aggregation produced. `unchanged`: nothing it depends on changed since the last
    run, so the entries were left as they were (the other figures are then those of the last
    run). `recomputed_components` and `full` say how much work the run did."""

    accepted: int
    pending: int
    reports: int
    active_nodes: int
    required_support: int
    dropped_reports: int  # from nodes that are not admitted
    capped_reports: int  # beyond MAX_REPORTS_PER_NODE for their node
    invalid_codes: int  # codes the statistics left out of the vote in this run
    forged_reports: int = 0  # left out: their code is not their text's (found by the indexer)
    unchanged: bool = False
    recomputed_components: int = 0
    full: bool = False

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if k not in ("unchanged", "recomputed_components", "full")}


@dataclass(frozen=True)
class Change:
    """What one run changed for the search index: rows of removed entries, ids of added ones."""

    removed_rows: list[int]
    added: list[str]


def structure_key(admitted: Sequence[int]) -> str:
    """What the groups, pairs and components depend on besides the reports: a change rebuilds them."""
    return json.dumps({"admitted": list(admitted), "cap": MAX_REPORTS_PER_NODE, "threshold": CODE_NEAR_DUPLICATE_COSINE})


def statistics_key(policy: AcceptancePolicy, weights: Mapping[int, float] | None, active: Sequence[int]) -> str:
    """What every cluster's statistics and verdict depend on besides its reports: a change
    recomputes every entry (the clusters stay)."""
    return json.dumps({"policy": policy_key(policy), "weights": sorted((int(k), float(v)) for k, v in (weights or {}).items()),
                       "active": list(active)})


def policy_key(policy: AcceptancePolicy) -> list[Any]:
    """Every field of the policy, in order (AcceptancePolicy(*policy_key(p)) == p)."""
    return [getattr(policy, f.name) for f in fields(policy)]


class Aggregator:
    """One aggregation run inside a library transaction, on its SQLite connection."""

    def __init__(self, db: sqlite3.Connection, space: CodeSpace, dim: int, admitted: Sequence[int]) -> None:
        self.db = db
        self.space = space
        self.dim = dim
        self.admitted = sorted(set(admitted))
        self.admitted_set = set(self.admitted)
        self._placeholder = frozen_vector(np.eye(1, dim, 0)[0], "placeholder")

    def run(self, policy: AcceptancePolicy, weights: Mapping[int, float] | None, last: dict | None, now: int) -> tuple[AggregationSummary, Change]:
        """Bring the network entries up to date (see the module docstring). Also returns, in the
        summary's `keys`, what the next run compares against (`last`)."""
        full = last is None or last.get("structure") != structure_key(self.admitted)
        retired: list[int] = []
        if full:  # every entry, group and pair is recomputed
            retired = [r[0] for r in self.db.execute("SELECT index_row FROM experiences WHERE origin = 'network' AND index_row IS NOT NULL")]
            self.db.execute("DELETE FROM experiences WHERE origin = 'network'")
            self.db.execute("DELETE FROM entry_reports")
            self.db.execute("DELETE FROM edges")
            self.db.execute("DELETE FROM groups")
            self.db.execute("INSERT OR IGNORE INTO dirty SELECT DISTINCT text_hash FROM reports")
        excluded = self._excluded_reports()
        dirty = [bytes(r[0]) for r in self.db.execute("SELECT text_hash FROM dirty")]
        stale = self._update_groups(dirty, excluded, everything=full)
        components = self._regroup(stale, dirty)
        active = sorted({row[0] for row in self.db.execute("SELECT DISTINCT node_id FROM reports")} & self.admitted_set)
        self.keys = {"structure": structure_key(self.admitted), "statistics": statistics_key(policy, weights, active)}
        if not full and last.get("statistics") != self.keys["statistics"]:
            # the policy, the weights or the active nodes changed: every cluster is decided again
            stale |= {r[0] for r in self.db.execute("SELECT DISTINCT component FROM experiences WHERE origin = 'network'")}
            fresh = {c for c, _ in components}
            by_component: dict[int, list[bytes]] = defaultdict(list)
            for text_hash_, component in self.db.execute("SELECT text_hash, component FROM groups ORDER BY text_hash"):
                if component not in fresh:
                    by_component[component].append(bytes(text_hash_))
            components = components + sorted(by_component.items())
        change, invalid = self._rebuild_entries(stale, components, policy, weights, active, excluded, now)
        change.removed_rows[:0] = retired
        self.db.execute("DELETE FROM dirty")
        accepted, total = self.db.execute("SELECT COALESCE(SUM(accepted), 0), COUNT(*) FROM experiences WHERE origin = 'network'").fetchone()
        reports = self.db.execute("SELECT COUNT(*) FROM reports").fetchone()[0]
        marks = ",".join("?" * len(self.admitted))
        dropped = self.db.execute(f"SELECT COUNT(*) FROM reports WHERE node_id NOT IN ({marks})", self.admitted).fetchone()[0] if self.admitted else reports
        forged = self.db.execute("SELECT COUNT(*) FROM reports WHERE forged = 1").fetchone()[0]
        summary = AggregationSummary(accepted, total - accepted, reports, len(active), policy.required_support(len(active)), dropped, len(excluded),
                                     invalid, forged, recomputed_components=len(components), full=full)
        return summary, change

    # ------------------------------------------------------------------ which reports count

    def _excluded_reports(self) -> set[int]:
        """Ids of admitted nodes' reports beyond their node's cap (first in chain order count)."""
        excluded: set[int] = set()
        for (node,) in self.db.execute("SELECT node_id FROM reports GROUP BY node_id HAVING COUNT(*) > ?", (MAX_REPORTS_PER_NODE,)).fetchall():
            if node in self.admitted_set:
                excluded |= {row[0] for row in self.db.execute(
                    "SELECT id FROM reports WHERE node_id = ? ORDER BY batch_position, leaf_index LIMIT -1 OFFSET ?", (node, MAX_REPORTS_PER_NODE))}
        return excluded

    def _counted(self, hashes: Sequence[bytes] | None, excluded: set[int], votes_only: bool = False) -> dict[bytes, list[tuple]]:
        """The counted reports of these groups (None: of every group, in one scan of the table), by
        text hash, in chain order; each row is (id, node, code, experience id, text, domain,
        confidence, batch root, position, leaf), or only (id, node, code, position, leaf) with
        `votes_only` (what a group's code needs: no text is read)."""
        columns = "text_hash, id, node_id, code" + ("" if votes_only else ", experience_id, text, domain, confidence, batch_root") + ", batch_position, leaf_index"
        out: dict[bytes, list[tuple]] = defaultdict(list)
        queries = ([(f"SELECT {columns} FROM reports WHERE forged = 0", ())] if hashes is None else
                   [(f"SELECT {columns} FROM reports WHERE forged = 0 AND text_hash IN ({','.join('?' * len(chunk))})", chunk) for chunk in _chunks(hashes)])
        admitted = self.admitted_set
        for query, parameters in queries:  # the hot loop of a full aggregation: one pass per report
            for row in self.db.execute(query, parameters):
                if row[2] in admitted and (not excluded or row[1] not in excluded):
                    out[row[0]].append(row[1:])
        for rows in out.values():
            rows.sort(key=_chain_order)
        return out

    # ------------------------------------------------------------------ groups and neighbours

    def _update_groups(self, dirty: list[bytes], excluded: set[int], everything: bool = False) -> set[int]:
        """Recompute the codes and neighbour pairs of dirty groups (`everything`: they are all the
        groups); return the components they belonged to, whose entries are now stale."""
        stale: set[int] = set()
        for chunk in _chunks(dirty):
            stale |= {r[0] for r in self.db.execute(f"SELECT component FROM groups WHERE text_hash IN ({','.join('?' * len(chunk))})", chunk)}
        counted = self._counted(None if everything else dirty, excluded, votes_only=True)
        self.db.executemany("DELETE FROM groups WHERE text_hash = ?", [(h,) for h in dirty if h not in counted])
        self.db.executemany("DELETE FROM edges WHERE a = ?", [(h,) for h in dirty])
        self.db.executemany("DELETE FROM edges WHERE b = ?", [(h,) for h in dirty])
        changed = [(h, _group_code(rows)) for h, rows in sorted(counted.items())]
        self.db.executemany("INSERT OR REPLACE INTO groups (text_hash, code, component) VALUES (?, ?, 0)", changed)
        coded = [(h, c) for h, c in changed if c is not None]
        if coded and self.space.codec is not None:
            self._insert_edges(coded)
        return stale

    def _insert_edges(self, coded: list[tuple[bytes, bytes]]) -> None:
        """Neighbour pairs between the changed groups and every group with a code: changed x
        unchanged, then the changed among themselves (each pair scanned once)."""
        changed = {h for h, _ in coded}
        others = [(bytes(h), bytes(c)) for h, c in self.db.execute("SELECT text_hash, code FROM groups WHERE code IS NOT NULL")
                  if bytes(h) not in changed]
        queries = code_terms(self.space.codec, np.frombuffer(b"".join(c for _, c in coded), dtype=np.uint8))
        pairs: set[tuple[bytes, bytes]] = set()
        if others:
            base = code_terms(self.space.codec, np.frombuffer(b"".join(c for _, c in others), dtype=np.uint8))
            qi, bj = neighbour_pairs(queries, base)
            pairs |= {tuple(sorted((coded[i][0], others[j][0]))) for i, j in zip(qi.tolist(), bj.tolist())}
        ai, bi = pairs_within(queries)
        pairs |= {tuple(sorted((coded[i][0], coded[j][0]))) for i, j in zip(ai.tolist(), bi.tolist())}
        self.db.executemany("INSERT OR IGNORE INTO edges VALUES (?, ?)", sorted(pairs))

    # ------------------------------------------------------------------ components

    def _regroup(self, stale: set[int], dirty: list[bytes]) -> list[tuple[int, list[bytes]]]:
        """Recompute the connected components reachable from the stale components' groups and the
        dirty groups; return them as (new component id, groups in text-hash order). Adds to
        `stale` every old component those groups belonged to."""
        seeds: set[bytes] = set()
        for component in stale:
            seeds |= {bytes(r[0]) for r in self.db.execute("SELECT text_hash FROM groups WHERE component = ?", (component,))}
        for chunk in _chunks(dirty):
            seeds |= {bytes(r[0]) for r in self.db.execute(f"SELECT text_hash FROM groups WHERE text_hash IN ({','.join('?' * len(chunk))})", chunk)}
        found: list[list[bytes]] = []
        seen: set[bytes] = set()
        for seed in sorted(seeds):
            if seed in seen:
                continue
            members, frontier = {seed}, [seed]
            while frontier:
                current = frontier.pop()
                for (other,) in self.db.execute("SELECT b FROM edges WHERE a = ? UNION ALL SELECT a FROM edges WHERE b = ?", (current, current)):
                    if bytes(other) not in members:
                        members.add(bytes(other))
                        frontier.append(bytes(other))
            seen |= members
            found.append(sorted(members))
        for members in found:  # a new pair can join a component no dirty group was in: its entries are stale too
            for chunk in _chunks(members):
                stale |= {r[0] for r in self.db.execute(f"SELECT component FROM groups WHERE text_hash IN ({','.join('?' * len(chunk))})", chunk)}
        first = int(self.db.execute("SELECT COALESCE(MAX(component), 0) FROM groups").fetchone()[0]) + 1
        components = [(first + n, members) for n, members in enumerate(found)]
        self.db.executemany("UPDATE groups SET component = ? WHERE text_hash = ?", [(c, h) for c, members in components for h in members])
        return components

    # ------------------------------------------------------------------ entries

    def _rebuild_entries(self, stale: set[int], components: list[tuple[int, list[bytes]]], policy: AcceptancePolicy,
                         weights: Mapping[int, float] | None, active: list[int], excluded: set[int], now: int) -> tuple[Change, int]:
        """Replace the entries of the stale components by those of the recomputed ones."""
        removed: list[int] = []
        for component in sorted(stale):
            removed += [r[0] for r in self.db.execute(
                "SELECT index_row FROM experiences WHERE origin = 'network' AND component = ? AND index_row IS NOT NULL", (component,))]
            self.db.execute("DELETE FROM entry_reports WHERE entry_id IN (SELECT id FROM experiences WHERE origin = 'network' AND component = ?)", (component,))
            self.db.execute("DELETE FROM experiences WHERE origin = 'network' AND component = ?", (component,))
        added: list[str] = []
        invalid = 0
        for batch in _component_batches(components):
            members = [h for _, group_hashes in batch for h in group_hashes]
            counted = self._counted(members, excluded)
            codes = self._group_codes(members)
            vectors = self._decoded({r[2] for rows in counted.values() for r in rows} | set(codes.values()))
            clusters = [(component, cluster) for component, group_hashes in batch
                        for cluster in self._clusters(group_hashes, counted, codes, vectors)]
            if clusters:
                ids, bad = self._write(clusters, policy, weights, active, now)
                added, invalid = added + ids, invalid + bad
        return Change(removed, added), invalid

    def _group_codes(self, hashes: Sequence[bytes]) -> dict[bytes, bytes | None]:
        codes: dict[bytes, bytes | None] = {}
        for chunk in _chunks(hashes):
            codes.update((bytes(h), None if c is None else bytes(c)) for h, c in self.db.execute(
                f"SELECT text_hash, code FROM groups WHERE text_hash IN ({','.join('?' * len(chunk))})", chunk))
        return codes

    def _decoded(self, codes: set[bytes | None]) -> dict[bytes, np.ndarray]:
        """Decoded vectors of codes, in one vectorised call."""
        known = sorted(bytes(c) for c in codes if c is not None)
        if not known or self.space.codec is None:
            return {}
        decoded = self.space.codec.decode(np.frombuffer(b"".join(known), dtype=np.uint8).reshape(len(known), -1))
        # frozen once: every report of a text shares its code's vector instead of copying it
        return {code: frozen_vector(vector, code.hex()[:16]) for code, vector in zip(known, decoded)}

    def _clusters(self, members: list[bytes], counted: dict[bytes, list[tuple]], codes: dict[bytes, bytes | None],
                  vectors: dict[bytes, np.ndarray]) -> list[tuple[Report, ...]]:
        """Leader clustering of one component; each cluster as Report records."""
        position = {h: n for n, h in enumerate(members)}
        neighbours: list[list[int]] = [[] for _ in members]
        if len(members) > 1:
            for chunk in _chunks(members):
                for a, b in self.db.execute(f"SELECT a, b FROM edges WHERE a IN ({','.join('?' * len(chunk))})", chunk):
                    i, j = position[bytes(a)], position[bytes(b)]
                    neighbours[i].append(j)
                    neighbours[j].append(i)
        nodes = [frozenset(row[1] for row in counted.get(h, ())) for h in members]
        clusters = []
        for numbers in leader_clusters(nodes, [sorted(n) for n in neighbours]):
            reports = tuple(self._report(row, codes.get(members[g]), vectors) for g in numbers for row in counted.get(members[g], ()))
            if reports:
                clusters.append(reports)
        return clusters

    def _report(self, row: tuple, group_code: bytes | None, vectors: dict[bytes, np.ndarray]) -> Report:
        """A counted report as the statistics take it: its vector is its decoded code (its own if
        it votes, else its group's), so nothing needs the embedding model."""
        _, node_id, code, experience_id, text, domain, confidence, batch_root, _, _ = row
        readable = code if code is not None else group_code
        # No code this client can read in the whole group: a singleton of identical texts, whose
        # vector only orders those identical texts.
        vector = vectors[bytes(readable)] if readable is not None and bytes(readable) in vectors else self._placeholder
        return Report(experience_id, node_id, text, domain, confidence, vector, bytes(batch_root), None if code is None else bytes(code))

    def _write(self, clusters: list[tuple[int, tuple[Report, ...]]], policy: AcceptancePolicy, weights: Mapping[int, float] | None,
               active: list[int], now: int) -> tuple[list[str], int]:
        """Statistics and verdicts of clusters, written as entries."""
        reports = [r for _, cluster in clusters for r in cluster]
        component_of = {r.experience_id: component for component, cluster in clusters for r in cluster}
        node_weights = None if weights is None else {n: float(weights[n]) for n in active}
        # vector_aggregator=None: an entry keeps the consensus code, not a consensus vector
        result = aggregate(reports, self.admitted, policy, None, clusters=[c for _, c in clusters], active_reporters=active,
                           node_weights=node_weights)
        rows = []
        for cluster in result.clusters:
            experience, published_baseline = self._published(cluster.experience_id)
            codec, code, baseline = self.space.entry_code(cluster.code, experience, published_baseline)
            rows.append((cluster.experience_id, int(cluster.accepted), experience.canonical_bytes(), cluster.text, cluster.domain, cluster.confidence,
                         codec, baseline, code, text_hash(cluster.text), cluster.support, json.dumps(list(cluster.node_ids)), cluster.reason, now,
                         component_of[cluster.experience_id]))
        # OR IGNORE: an agent's own entry with the same id stays (local entries are never aggregated)
        self.db.executemany("INSERT OR IGNORE INTO experiences (id, origin, accepted, canonical, text, domain, confidence, codec, baseline, code, "
                            "text_hash, support, node_ids, reason, added_at, component) "
                            "VALUES (?, 'network', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        # which reports back each entry: Library.provenance (the MCP server shows batch, leaf and node)
        self.db.executemany("INSERT OR IGNORE INTO entry_reports VALUES (?, ?)",
                            [(c.experience_id, eid) for c in result.clusters for eid in c.experience_ids])
        return [r[0] for r in rows], result.invalid_codes

    def _published(self, experience_id: str) -> tuple[Experience, bytes]:
        canonical, baseline = self.db.execute("SELECT canonical, baseline FROM reports WHERE experience_id = ? LIMIT 1", (experience_id,)).fetchone()
        return Experience.from_bytes(bytes(canonical)), bytes(baseline)

def _chain_order(row: tuple) -> tuple[int, int]:
    """A counted row's place in chain order: (batch position, leaf index), its last two fields."""
    return row[-2], row[-1]


def _group_code(rows: list[tuple]) -> bytes | None:
    """Per-bit majority of a group's voting codes, one vote per node (its first in chain order)."""
    by_node: dict[int, bytes] = {}
    for row in rows:
        if row[2] is not None:
            by_node.setdefault(row[1], bytes(row[2]))
    distinct = set(by_node.values())
    if len(distinct) <= 1:
        return next(iter(distinct), None)
    return bitdelta_consensus(np.stack([np.frombuffer(by_node[n], dtype=np.uint8) for n in sorted(by_node)]))


def _component_batches(components: list[tuple[int, list[bytes]]], groups: int = 20_000) -> list[list[tuple[int, list[bytes]]]]:
    """Components in batches of about `groups` groups: one SQL pass and one decode per batch."""
    batches: list[list[tuple[int, list[bytes]]]] = [[]]
    size = 0
    for component in components:
        if batches[-1] and size + len(component[1]) > groups:
            batches.append([])
            size = 0
        batches[-1].append(component)
        size += len(component[1])
    return [b for b in batches if b]


def _chunks(values: Sequence[bytes]) -> list[Sequence[bytes]]:
    return [values[i : i + SQL_CHUNK] for i in range(0, len(values), SQL_CHUNK)]
