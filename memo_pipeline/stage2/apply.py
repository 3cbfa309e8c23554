"""Stage 2: turn one validated answer into governed memory, whatever path produced it.

For one record: resolve its entities, write property values with their history, redact and
de-duplicate memories, connect edges, all inside the caller's transaction, on deterministic ids
so that applying the same answer twice changes nothing. LanceDB is written after the PostgreSQL
commit by ``sync_vectors``, which also repairs a crash between the two writes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from memo_pipeline.schema.collections import CollectionSpec
from memo_pipeline.stage2.identity import Resolver
from memo_pipeline.stage2.redaction import redact
from memo_pipeline.stage2.validate import ValidatedAnswer


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
    memories_new: int = 0
    memories_merged: int = 0
    memories_dropped: int = 0
    properties: int = 0
    edges: int = 0
    touched_memory_ids: list[str] = field(default_factory=list)

    def add(self, other: ApplySummary) -> None:
        self.entities += other.entities
        self.memories_new += other.memories_new
        self.memories_merged += other.memories_merged
        self.memories_dropped += other.memories_dropped
        self.properties += other.properties
        self.edges += other.edges
        self.touched_memory_ids += other.touched_memory_ids


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:31]


def normalize_memory_text(text: str) -> str:
    return re.sub(r"[\s.;:!]+$", "", " ".join(text.lower().split()))


def memory_id(org: str, entity_id: str, text: str) -> str:
    return "m" + _hash(org, entity_id, normalize_memory_text(text))


def _write_property(
    conn: psycopg.Connection, prov: Provenance, entity_id: str, name: str, value: Any, multi: bool
) -> None:
    value_json = orjson.dumps(value).decode()
    value_id = "v" + _hash(prov.org, entity_id, name, value_json, prov.record_id)
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
    if not inserted or multi:
        return
    # Single-valued: rebuild the chain in source-time order, so that a late, older value slots
    # into history instead of replacing a newer one.
    rows = conn.execute(
        "select value_id from property_values where entity_id = %s and property = %s "
        "order by valid_from, created_at, value_id",
        (entity_id, name),
    ).fetchall()
    ids = [r["value_id"] for r in rows]
    for current, following in zip(ids, [*ids[1:], None], strict=True):
        conn.execute(
            "update property_values set superseded_by = %s where value_id = %s "
            "and superseded_by is distinct from %s",
            (following, current, following),
        )


def apply_answer(
    conn: psycopg.Connection,
    answer: ValidatedAnswer,
    prov: Provenance,
    collection: CollectionSpec,
    redaction_tier: str,
) -> ApplySummary:
    """Apply one answer inside the caller's transaction."""
    summary = ApplySummary()
    resolver = Resolver(conn, prov.org)
    refs: dict[str, str] = {}
    types: dict[str, str] = {}
    for entity in answer.output.entities:
        refs[entity.ref] = resolver.resolve(entity)
        types[entity.ref] = entity.type
    summary.entities = len(set(refs.values()))

    for index, prop in enumerate(answer.output.properties):
        spec = collection.entity_types[types[prop.entity]].properties[prop.name]
        _write_property(conn, prov, refs[prop.entity], prop.name, answer.values[index], spec.multi)
        summary.properties += 1

    for memory in answer.output.memories:
        redacted = redact(memory.text, redaction_tier)
        if redacted.text is None:
            summary.memories_dropped += 1
            continue
        entity_id = refs[memory.entity]
        mid = memory_id(prov.org, entity_id, redacted.text)
        row = conn.execute(
            "insert into memories (memory_id, org_id, entity_id, text, norm_hash, partition_day, "
            "source_ts, source_record_ids, schema_version) "
            "values (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "on conflict (memory_id) do update set "
            "source_record_ids = (select array_agg(distinct x order by x) from "
            "unnest(memories.source_record_ids || excluded.source_record_ids) as x), "
            "updated_at = now() "
            "returning (xmax = 0) as inserted",
            (
                mid,
                prov.org,
                entity_id,
                redacted.text.strip(),
                _hash(normalize_memory_text(redacted.text)),
                prov.partition_day,
                prov.source_ts,
                [prov.record_id],
                prov.schema_version,
            ),
        ).fetchone()
        if row["inserted"]:
            summary.memories_new += 1
            summary.touched_memory_ids.append(mid)
        else:
            summary.memories_merged += 1

    for edge in answer.output.edges:
        subject, obj = refs[edge.subject], refs[edge.object]
        if subject == obj:
            continue
        conn.execute(
            "insert into edges (edge_id, org_id, subject_id, predicate, object_id, "
            "source_record_ids, first_seen) values (%s, %s, %s, %s, %s, %s, %s) "
            "on conflict (edge_id) do update set source_record_ids = "
            "(select array_agg(distinct x order by x) from "
            "unnest(edges.source_record_ids || excluded.source_record_ids) as x), "
            "first_seen = least(edges.first_seen, excluded.first_seen)",
            (
                "g" + _hash(prov.org, subject, edge.predicate, obj),
                prov.org,
                subject,
                edge.predicate,
                obj,
                [prov.record_id],
                prov.source_ts,
            ),
        )
        summary.edges += 1
    return summary
