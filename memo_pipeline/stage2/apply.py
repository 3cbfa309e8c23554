"""Stage 2: turn one validated answer into governed memory, whatever path produced it.

For one record: resolve its entities (merging two that the answer shows to be one), write
property values with their history, redact and de-duplicate memories (exact, then near), connect
edges, and retract what an earlier extraction of the same record stated but this one no longer
does, all inside the caller's transaction and keyed by content, so that applying the same answer
twice changes nothing. LanceDB is written after the PostgreSQL commit (``pipeline.store``); every
memory change that LanceDB has to follow sets ``vector_dirty``.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from memo_pipeline.schema.collections import CollectionSpec
from memo_pipeline.stage2.dedup import (
    Candidates,
    NearDuplicates,
    memory_id,
    norm_hash,
    normalize_memory_text,
)
from memo_pipeline.stage2.history import (
    is_single_valued,
    rebuild_chain,
    single_valued_properties,
)
from memo_pipeline.stage2.identity import Resolver
from memo_pipeline.stage2.masking import masked_memories
from memo_pipeline.stage2.validate import ValidatedAnswer

__all__ = [
    "ApplySummary",
    "Provenance",
    "apply_answer",
    "memory_id",
    "normalize_memory_text",
]


@dataclass(frozen=True)
class Provenance:
    """Where an answer came from: the record and the request that produced it."""

    org: str
    record_id: str
    collection: str
    partition_day: str
    source_ts: datetime
    schema_version: str
    request_id: str
    identifier: str | None = None


@dataclass
class ApplySummary:
    entities: int = 0
    entities_merged: int = 0
    memories_new: int = 0
    memories_merged: int = 0
    memories_near_duplicate: int = 0
    memories_dropped: int = 0
    memories_retracted: int = 0
    properties: int = 0
    properties_retracted: int = 0
    edges: int = 0
    edges_retracted: int = 0
    answers_stale: int = 0
    # Memories stored (or stored again) by this answer: their vectors are due in LanceDB.
    touched_memory_ids: list[str] = field(default_factory=list)

    def add(self, other: ApplySummary) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:31]


def _write_property(
    conn: psycopg.Connection, prov: Provenance, entity_id: str, name: str, value: Any, single: bool
) -> str:
    """Store one value stated by the record; returns its id."""
    row = conn.execute(
        "select value_id, retracted_by from property_values where org_id = %s and entity_id = %s "
        "and property = %s and value = %s and source_record_id = %s",
        (prov.org, entity_id, name, Jsonb(value), prov.record_id),
    ).fetchone()
    if row is not None:
        if row["retracted_by"] is not None:
            conn.execute(
                "update property_values set retracted_by = null, superseded_by = null "
                "where value_id = %s",
                (row["value_id"],),
            )
            if single:
                rebuild_chain(conn, entity_id, name)
        return row["value_id"]
    value_id = "v" + _hash(prov.org, entity_id, name, orjson.dumps(value).decode(), prov.record_id)
    inserted = conn.execute(
        "insert into property_values (value_id, org_id, entity_id, property, value, valid_from, "
        "source_record_id, schema_version) values (%s, %s, %s, %s, %s, %s, %s, %s) "
        "on conflict (value_id) do nothing",
        (
            value_id,
            prov.org,
            entity_id,
            name,
            Jsonb(value),
            prov.source_ts,
            prov.record_id,
            prov.schema_version,
        ),
    ).rowcount
    if inserted and single:
        # Rebuilt from the whole set in source-time order: a late, older value slots into
        # history instead of replacing a newer one.
        rebuild_chain(conn, entity_id, name)
    return value_id


def _add_source(conn: psycopg.Connection, memory_id: str, prov: Provenance) -> None:
    """The record becomes a source of an existing memory (once)."""
    conn.execute(
        "update memories set source_record_ids = (select array_agg(distinct x order by x) "
        "from unnest(source_record_ids || %s::text[]) as x), "
        "source_ts = least(source_ts, %s), updated_at = clock_timestamp() "
        "where memory_id = %s and not (source_record_ids @> %s::text[])",
        ([prov.record_id], prov.source_ts, memory_id, [prov.record_id]),
    )


@dataclass
class _NewMemories:
    """Memories this answer creates, inserted together when its memories are all decided.

    Later memories of the same answer are checked against them as against stored ones: exactly
    by normalised text, and (through the caller's current rows and ``NearDuplicates``) by vector.
    """

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_norm: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, mid: str, entity_id: str, text: str, digest: str) -> None:
        self.rows[mid] = {"entity_id": entity_id, "text": text, "digest": digest, "aliases": []}
        self.by_norm[(entity_id, digest)] = mid

    def insert(self, conn: psycopg.Connection, prov: Provenance) -> None:
        if not self.rows:
            return
        mids = list(self.rows)
        rows = [self.rows[m] for m in mids]
        # On conflict the row is one a re-extraction or a merge had superseded: the fact is back.
        conn.execute(
            "insert into memories (memory_id, org_id, entity_id, text, norm_hash, alias_hashes, "
            "partition_day, source_ts, source_record_ids, schema_version, created_at, updated_at) "
            "select u.m, %s, u.e, u.t, u.h, array(select jsonb_array_elements_text(u.a::jsonb)), "
            "%s, %s, %s, %s, clock_timestamp(), clock_timestamp() "
            "from unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) "
            "with ordinality as u(m, e, t, h, a, n) order by u.n "
            "on conflict (memory_id) do update set superseded_by = null, "
            "entity_id = excluded.entity_id, source_record_ids = (select array_agg(distinct x "
            "order by x) from unnest(memories.source_record_ids || excluded.source_record_ids) "
            "as x), source_ts = least(memories.source_ts, excluded.source_ts), "
            "alias_hashes = coalesce((select array_agg(distinct x order by x) from "
            "unnest(memories.alias_hashes || excluded.alias_hashes) as x), '{}'), "
            "vector_dirty = true, updated_at = clock_timestamp()",
            (
                prov.org,
                prov.partition_day,
                prov.source_ts,
                [prov.record_id],
                prov.schema_version,
                mids,
                [r["entity_id"] for r in rows],
                [r["text"] for r in rows],
                [r["digest"] for r in rows],
                [orjson.dumps(r["aliases"]).decode() for r in rows],
            ),
        )


@dataclass
class _EntityMemories:
    """What the memory checks need to know of one entity's current memories, for one answer:
    every id (the near-duplicate candidates) and, for the hashes of this answer's texts only,
    which memory holds each as its text or as an alias."""

    ids: list[str] = field(default_factory=list)
    by_text: dict[str, str] = field(default_factory=dict)
    by_alias: dict[str, str] = field(default_factory=dict)
    # The near-duplicate candidates' vectors, from the answer's first check on.
    candidates: Candidates | None = None

    def exact(self, digest: str) -> str | None:
        return self.by_text.get(digest) or self.by_alias.get(digest)


def _current_memories(
    conn: psycopg.Connection, org: str, entity_ids: set[str], digests: set[str]
) -> dict[str, _EntityMemories]:
    """The current memories of the answer's entities, in two reads for the whole answer."""
    current = {e: _EntityMemories() for e in sorted(entity_ids)}
    if not current:
        return current
    for row in conn.execute(
        "select entity_id, array_agg(memory_id order by memory_id) as ids from memories "
        "where org_id = %s and entity_id = any(%s) and superseded_by is null group by entity_id",
        (org, list(current)),
    ):
        current[row["entity_id"]].ids = row["ids"]
    for row in conn.execute(
        "select entity_id, memory_id, norm_hash, alias_hashes from memories "
        "where org_id = %s and entity_id = any(%s) and superseded_by is null "
        "and (norm_hash = any(%s) or alias_hashes && %s::text[]) order by memory_id",
        (org, list(current), sorted(digests), sorted(digests)),
    ):
        known = current[row["entity_id"]]
        known.by_text.setdefault(row["norm_hash"], row["memory_id"])
        for alias in row["alias_hashes"]:
            known.by_alias.setdefault(alias, row["memory_id"])
    return current


def _write_memory(
    conn: psycopg.Connection,
    prov: Provenance,
    entity_id: str,
    text: str,
    near: NearDuplicates | None,
    current: _EntityMemories | None,
    new: _NewMemories,
) -> tuple[str, str]:
    """Decide one memory text; returns (memory id, "new" | "exact" | "near").

    ``current`` is the entity's current memories as this answer has left them (read once per
    answer, kept up to date here); it is given exactly when ``near`` is. New memories are queued
    in ``new`` and inserted together.
    """
    digest = norm_hash(text)
    if (pending := new.by_norm.get((entity_id, digest))) is not None:
        return pending, "exact"  # stated twice in this answer: its source is this record already
    if near is None or current is None:  # no near-duplicate check: the exact one reads by hash
        row = conn.execute(
            "select memory_id from memories where org_id = %s and entity_id = %s "
            "and (norm_hash = %s or alias_hashes @> %s::text[]) and superseded_by is null "
            "order by norm_hash = %s desc limit 1",
            (prov.org, entity_id, digest, [digest], digest),
        ).fetchone()
        existing = row["memory_id"] if row else None
    else:
        existing = current.exact(digest)
    if existing is not None:
        if existing not in new.rows:
            _add_source(conn, existing, prov)
        return existing, "exact"
    if near is not None and current is not None:
        if current.candidates is None:
            current.candidates = near.candidates(conn, current.ids, (prov.org, entity_id))
        hit = near.closest(current.candidates, text)
        if hit is not None:
            # The same wording met again finds this memory without a vector search.
            if hit[0] in new.rows:
                new.rows[hit[0]]["aliases"].append(digest)
            else:
                _add_source(conn, hit[0], prov)
                conn.execute(
                    "update memories set alias_hashes = array_append(alias_hashes, %s) "
                    "where memory_id = %s and not (alias_hashes @> %s::text[])",
                    (digest, hit[0], [digest]),
                )
            current.by_alias.setdefault(digest, hit[0])
            return hit[0], "near"

    mid = memory_id(prov.org, entity_id, text)
    new.add(mid, entity_id, text, digest)
    if near is not None and current is not None:
        near.remember(mid, text)
        if mid not in current.ids:
            bisect.insort(current.ids, mid)
            if current.candidates is not None:
                current.candidates.add(mid, near.vector(text))
        current.by_text.setdefault(digest, mid)
    return mid, "new"


def _write_edges(
    conn: psycopg.Connection, prov: Provenance, triples: list[tuple[str, str, str]]
) -> set[str]:
    """Store the answer's edges (subject, predicate, object) in a few statements; returns their
    ids. A current edge with the same ends and predicate gains this record as a source; the
    others are inserted under their deterministic id (or come back, if a re-extraction or a
    merge had superseded them)."""
    wanted = list(dict.fromkeys(triples))
    if not wanted:
        return set()
    subjects, predicates, objects = (list(c) for c in zip(*wanted, strict=True))
    existing = {
        (r["subject_id"], r["predicate"], r["object_id"]): r["edge_id"]
        for r in conn.execute(
            "select e.edge_id, e.subject_id, e.predicate, e.object_id from edges e "
            "join unnest(%s::text[], %s::text[], %s::text[]) as u(s, p, o) "
            "on e.subject_id = u.s and e.predicate = u.p and e.object_id = u.o "
            "where e.org_id = %s and e.superseded_by is null",
            (subjects, predicates, objects, prov.org),
        )
    }
    if existing:
        conn.execute(
            "update edges set source_record_ids = (select array_agg(distinct x order by x) "
            "from unnest(source_record_ids || %s::text[]) as x), "
            "first_seen = least(first_seen, %s) "
            "where edge_id = any(%s) and not (source_record_ids @> %s::text[])",
            ([prov.record_id], prov.source_ts, sorted(set(existing.values())), [prov.record_id]),
        )
    fresh = [t for t in wanted if t not in existing]
    ids = {"g" + _hash(prov.org, *t): t for t in fresh}
    if ids:
        conn.execute(
            "insert into edges (edge_id, org_id, subject_id, predicate, object_id, "
            "source_record_ids, first_seen) select u.g, %s, u.s, u.p, u.o, %s, %s "
            "from unnest(%s::text[], %s::text[], %s::text[], %s::text[]) "
            "with ordinality as u(g, s, p, o, n) order by u.n "
            "on conflict (edge_id) do update set superseded_by = null, "
            "subject_id = excluded.subject_id, object_id = excluded.object_id, "
            "source_record_ids = (select array_agg(distinct x order by x) from "
            "unnest(edges.source_record_ids || excluded.source_record_ids) as x), "
            "first_seen = least(edges.first_seen, excluded.first_seen)",
            (
                prov.org,
                [prov.record_id],
                prov.source_ts,
                list(ids),
                [t[0] for t in ids.values()],
                [t[1] for t in ids.values()],
                [t[2] for t in ids.values()],
            ),
        )
    return set(existing.values()) | set(ids)


def _retract(
    conn: psycopg.Connection,
    prov: Provenance,
    collection: CollectionSpec,
    memories: set[str],
    edges: set[str],
    values: set[str],
    summary: ApplySummary,
) -> None:
    """Withdraw this record's support from what its earlier extractions stated and this one
    does not: the record leaves the provenance; a memory or edge left without sources is
    superseded by this request, a property value is retracted and leaves the history."""
    for table, key, produced in (("memories", "memory_id", memories), ("edges", "edge_id", edges)):
        rows = conn.execute(
            f"select {key} as id, source_record_ids from {table} where org_id = %s "
            f"and source_record_ids @> %s::text[] and superseded_by is null "
            f"and not ({key} = any(%s))",
            (prov.org, [prov.record_id], sorted(produced)),
        ).fetchall()
        for row in rows:
            rest = [s for s in row["source_record_ids"] if s != prov.record_id]
            dirty = ", vector_dirty = true, updated_at = clock_timestamp()"
            conn.execute(
                f"update {table} set source_record_ids = %s, superseded_by = %s"
                f"{dirty if table == 'memories' and not rest else ''} where {key} = %s",
                (rest, None if rest else prov.request_id, row["id"]),
            )
            if not rest:
                if table == "memories":
                    summary.memories_retracted += 1
                else:
                    summary.edges_retracted += 1

    rows = conn.execute(
        "update property_values v set retracted_by = %s, superseded_by = %s from entities e "
        "where e.entity_id = v.entity_id and v.org_id = %s and v.source_record_id = %s "
        "and v.retracted_by is null and not (v.value_id = any(%s)) "
        "returning v.entity_id, v.property, e.type",
        (prov.request_id, prov.request_id, prov.org, prov.record_id, sorted(values)),
    ).fetchall()
    summary.properties_retracted += len(rows)
    for entity_id, name, entity_type in sorted({tuple(r.values()) for r in rows}):
        if is_single_valued(collection, entity_type, name):
            rebuild_chain(conn, entity_id, name)


def apply_answer(
    conn: psycopg.Connection,
    answer: ValidatedAnswer,
    prov: Provenance,
    collection: CollectionSpec,
    redaction_tier: str,
    near: NearDuplicates | None = None,
) -> ApplySummary:
    """Apply one answer inside the caller's transaction.

    The answer replaces whatever earlier extractions of the same record stated: apply a
    record's answers oldest extraction first. Without ``near`` only exact duplicates are caught.
    """
    summary = ApplySummary()
    output = answer.output
    resolver = Resolver(
        conn,
        prov.org,
        single_valued_properties(collection),
        {
            "record_id": prov.record_id,
            "request_id": prov.request_id,
            "source_ts": prov.source_ts.isoformat(),
        },
    )
    refs = resolver.resolve_answer(output)
    types = {e.ref: e.type for e in output.entities}
    summary.entities = len(set(refs.values()))
    summary.entities_merged = len(resolver.merges)

    values: set[str] = set()
    for index, prop in enumerate(output.properties):
        single = is_single_valued(collection, types[prop.entity], prop.name)
        values.add(
            _write_property(conn, prov, refs[prop.entity], prop.name, answer.values[index], single)
        )
        summary.properties += 1

    memories: set[str] = set()
    new_memories = _NewMemories()
    texts = masked_memories(output, redaction_tier, prov.identifier)
    # Without near-duplicate detection the exact check reads by hash instead (_write_memory).
    current = (
        _current_memories(
            conn,
            prov.org,
            {refs[m.entity] for m in output.memories},
            {norm_hash(t.text.strip()) for t in texts if t.text},
        )
        if near is not None
        else {}
    )
    if near is not None:
        near.preload(conn, [mid for known in current.values() for mid in known.ids])
    for memory, masked in zip(output.memories, texts, strict=True):
        if not masked.text:
            summary.memories_dropped += 1
            continue
        entity_id = refs[memory.entity]
        mid, how = _write_memory(
            conn, prov, entity_id, masked.text.strip(), near, current.get(entity_id), new_memories
        )
        memories.add(mid)
        if how == "new":
            summary.memories_new += 1
            summary.touched_memory_ids.append(mid)
        elif how == "exact":
            summary.memories_merged += 1
        else:
            summary.memories_near_duplicate += 1
    new_memories.insert(conn, prov)

    triples = [
        (refs[e.subject], e.predicate, refs[e.object])
        for e in output.edges
        if refs[e.subject] != refs[e.object]
    ]
    edges = _write_edges(conn, prov, triples)
    summary.edges += len(triples)

    _retract(conn, prov, collection, memories, edges, values, summary)
    return summary
