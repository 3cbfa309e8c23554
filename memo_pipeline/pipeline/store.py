"""``memories``: apply a day's succeeded answers through Stage 2, then mirror them into LanceDB.

Answers are applied in source-timestamp order, each in its own transaction, and marked applied;
applying is idempotent, so a crash mid-way only repeats work. ``sync_vectors`` then embeds every
PostgreSQL memory of the day that LanceDB lacks (and removes vectors PostgreSQL no longer has),
which also repairs a crash between the two stores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import orjson
import psycopg

from memo_pipeline.schema.collections import OrgSpec
from memo_pipeline.stage2.apply import ApplySummary, Provenance, apply_answer
from memo_pipeline.stage2.validate import AnswerInvalid, validate_answer
from memo_pipeline.stores.vectors import Embedder, VectorStore

log = logging.getLogger(__name__)
EMBED_CHUNK = 512


@dataclass
class StoreSummary:
    day: str
    answers: int = 0
    stage2: ApplySummary = field(default_factory=ApplySummary)
    vectors_written: int = 0
    vectors_removed: int = 0
    failed: int = 0


def apply_partition(
    conn: psycopg.Connection, orgs: dict[str, OrgSpec], day: str, summary: StoreSummary
) -> None:
    rows = conn.execute(
        "select res.request_id, res.answer, q.org_id, q.collection, q.record_id, q.schema_version, "
        "c.source_ts, c.identifier from request_results res "
        "join extraction_requests q using (request_id) join content_records c using (record_id) "
        "where q.partition_day = %s and res.outcome = 'succeeded' and res.applied_at is null "
        "order by c.source_ts, res.request_id",
        (day,),
    ).fetchall()
    for row in rows:
        org = orgs[row["org_id"]]
        collection = org.collections[row["collection"]]
        prov = Provenance(
            org=org.org,
            record_id=row["record_id"],
            collection=row["collection"],
            partition_day=day,
            source_ts=row["source_ts"],
            schema_version=row["schema_version"],
            request_id=row["request_id"],
            identifier=row["identifier"],
        )
        try:
            answer = validate_answer(orjson.dumps(row["answer"]).decode(), collection)
        except AnswerInvalid as exc:
            # Answers were validated when collected; this only fires if the collection changed.
            log.error("request %s: stored answer no longer validates: %s", row["request_id"], exc)
            summary.failed += 1
            continue
        with conn.transaction():
            summary.stage2.add(apply_answer(conn, answer, prov, collection, org.redaction))
            conn.execute(
                "update request_results set applied_at = now() where request_id = %s",
                (row["request_id"],),
            )
        summary.answers += 1


def sync_vectors(
    conn: psycopg.Connection,
    vectors: VectorStore,
    embedder: Embedder,
    day: str,
    summary: StoreSummary,
) -> None:
    rows = conn.execute(
        "select memory_id, org_id, entity_id, text from memories where partition_day = %s "
        "and superseded_by is null",
        (day,),
    ).fetchall()
    have = vectors.ids(f"partition_day = '{day}'")
    wanted = {r["memory_id"] for r in rows}
    missing = [r for r in rows if r["memory_id"] not in have]
    for start in range(0, len(missing), EMBED_CHUNK):
        chunk = missing[start : start + EMBED_CHUNK]
        embedded = embedder.encode([r["text"] for r in chunk])
        vectors.upsert(
            [
                {
                    "memory_id": r["memory_id"],
                    "org_id": r["org_id"],
                    "entity_id": r["entity_id"],
                    "partition_day": day,
                    "text": r["text"],
                    "vector": v,
                }
                for r, v in zip(chunk, embedded, strict=True)
            ]
        )
        summary.vectors_written += len(chunk)
    stale = sorted(have - wanted)
    if stale:
        quoted = ", ".join(f"'{m}'" for m in stale)
        vectors.delete(f"memory_id in ({quoted})")
        summary.vectors_removed = len(stale)


def store_partition(
    conn: psycopg.Connection,
    orgs: dict[str, OrgSpec],
    vectors: VectorStore,
    embedder: Embedder,
    day: str,
) -> StoreSummary:
    summary = StoreSummary(day=day)
    apply_partition(conn, orgs, day, summary)
    sync_vectors(conn, vectors, embedder, day, summary)
    return summary


def store_counts(conn: psycopg.Connection, vectors: VectorStore, day: str) -> tuple[int, int]:
    """(PostgreSQL memories, LanceDB vectors) for a day; the dual-write check compares them."""
    pg = conn.execute(
        "select count(*) as n from memories where partition_day = %s and superseded_by is null",
        (day,),
    ).fetchone()["n"]
    return pg, vectors.count(f"partition_day = '{day}'")
