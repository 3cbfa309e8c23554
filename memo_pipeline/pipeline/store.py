"""``memories``: apply a day's succeeded answers through Stage 2, then mirror them into LanceDB.

Answers are applied in source-timestamp order (a record's extractions oldest first), each in its
own transaction, and marked applied; applying is idempotent, so a crash mid-way only repeats
work. An answer from an older extraction of a record whose newer extraction is already applied is
marked applied without effect: it must not bring back what the newer one replaced.

The memory texts of the day are embedded once each, a group of answers at a time on a thread of
its own, ahead of the answers being applied (``_EmbedAhead``): the vectors serve the
near-duplicate check and are then written to LanceDB as they are. PostgreSQL
commits first; ``sync_vectors`` then writes LanceDB from the outbox (``memories.vector_dirty``:
new, superseded or moved memories of any day) and reconciles the day's rows, which also repairs a
crash between the two stores on the next run.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg

from memo_pipeline.schema.collections import OrgSpec
from memo_pipeline.stage2.apply import ApplySummary, Provenance, apply_answer
from memo_pipeline.stage2.dedup import NearDuplicates, norm_hash, threshold_for
from memo_pipeline.stage2.masking import masked_memories
from memo_pipeline.stage2.validate import AnswerInvalid, ValidatedAnswer, validate_answer
from memo_pipeline.stores.vectors import Embedder, VectorStore

log = logging.getLogger(__name__)
EMBED_CHUNK = 512
# Answers whose new memory texts are embedded together, ahead of applying them.
EMBED_AHEAD_ANSWERS = 32
LANCE_ID_CHUNK = 500
# Test hook: with MEMO_CRASH_AFTER_PG=1 the process exits (status 9) right after the PostgreSQL
# commit of a day and before its LanceDB write, the window sync_vectors has to repair.
CRASH_AFTER_PG = "MEMO_CRASH_AFTER_PG"


@dataclass
class StoreSummary:
    day: str
    answers: int = 0
    stage2: ApplySummary = field(default_factory=ApplySummary)
    texts_embedded: int = 0
    vectors_written: int = 0
    vectors_moved: int = 0
    vectors_removed: int = 0
    failed: int = 0


def _quoted(ids: Sequence[str]) -> str:
    # Ids are generated here ("m" + hex digest), never taken from input.
    return ", ".join(f"'{i}'" for i in ids)


def _lance_rows(vectors: VectorStore, where: str, columns: list[str]) -> list[dict[str, Any]]:
    query = vectors.table().search().where(where).select(columns).limit(None)
    return query.to_arrow().to_pylist()


def _lance_by_ids(
    vectors: VectorStore, ids: Sequence[str], columns: list[str]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for start in range(0, len(ids), LANCE_ID_CHUNK):
        chunk = ids[start : start + LANCE_ID_CHUNK]
        out += _lance_rows(vectors, f"memory_id in ({_quoted(chunk)})", columns)
    return out


def near_duplicates_for(
    vectors: VectorStore, embedder: Embedder, orgs: dict[str, OrgSpec]
) -> dict[str, NearDuplicates]:
    """One near-duplicate finder per org (thresholds are per org), over LanceDB's vectors."""

    def fetch(ids: Sequence[str]) -> dict[str, Any]:
        rows = _lance_by_ids(vectors, ids, ["memory_id", "vector"])
        return {r["memory_id"]: np.asarray(r["vector"], dtype=np.float32) for r in rows}

    return {
        name: NearDuplicates(embedder.encode, fetch, threshold_for(org))
        for name, org in orgs.items()
    }


def _pending_answers(conn: psycopg.Connection, day: str) -> list[dict[str, Any]]:
    return conn.execute(
        "select res.request_id, res.answer::text as answer, q.org_id, q.collection, q.record_id, "
        "q.schema_version, c.source_ts, c.identifier, k.key_created from request_results res "
        "join extraction_requests q using (request_id) join content_records c using (record_id) "
        "join lateral (select min(created_at) as key_created from extraction_requests k "
        "where k.request_key = q.request_key) k on true "
        "where q.partition_day = %s and res.outcome = 'succeeded' and res.applied_at is null "
        "order by c.source_ts, q.record_id, k.key_created, res.request_id",
        (day,),
    ).fetchall()


def _superseded_extraction(conn: psycopg.Connection, row: dict[str, Any]) -> bool:
    """A newer extraction of the same record (new schema version, model or content) is applied."""
    return (
        conn.execute(
            "select 1 from request_results res join extraction_requests q using (request_id) "
            "where q.record_id = %s and res.applied_at is not null and exists "
            "(select 1 from extraction_requests k where k.request_key = q.request_key "
            "and k.attempt = 1 and k.created_at > %s) limit 1",
            (row["record_id"], row["key_created"]),
        ).fetchone()
        is not None
    )


def _mark_applied(conn: psycopg.Connection, row: dict[str, Any]) -> None:
    conn.execute(
        "update request_results set applied_at = now() where request_id = %s",
        (row["request_id"],),
    )


def _skip_superseded(conn: psycopg.Connection, row: dict[str, Any], summary: StoreSummary) -> None:
    log.info(
        "request %s: record %s has a newer extraction applied; marked applied without effect",
        row["request_id"],
        row["record_id"],
    )
    _mark_applied(conn, row)
    summary.stage2.answers_stale += 1
    summary.answers += 1


class _EmbedAhead:
    """Embeds the day's possibly new memory texts on a thread of its own, a group of answers at
    a time, while the answers already embedded are applied: the model and the database work
    side by side instead of one after the other.

    Only the texts that may be new are embedded (the others are exact duplicates of stored
    memories, found by hash). ``ready(i)`` waits for the vectors of the group of answer ``i``
    and hands them to its org's near-duplicate finder; the finders are touched on the calling
    thread only.
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        orgs: dict[str, OrgSpec],
        items: list[tuple[dict[str, Any], ValidatedAnswer]],
        near: dict[str, NearDuplicates],
    ) -> None:
        self.near = near
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-ahead")
        self.groups: list[list[tuple[str, list[str], Future[Any]]]] = []
        self.done = 0
        try:
            self._queue(conn, orgs, items)
        except BaseException:
            self.close()
            raise

    def _queue(
        self,
        conn: psycopg.Connection,
        orgs: dict[str, OrgSpec],
        items: list[tuple[dict[str, Any], ValidatedAnswer]],
    ) -> None:
        near = self.near
        per_answer = [
            (
                row["org_id"],
                {
                    m.text.strip()
                    for m in masked_memories(
                        answer.output, orgs[row["org_id"]].redaction, row["identifier"]
                    )
                    if m.text
                },
            )
            for row, answer in items
        ]
        known = _known_hashes(conn, per_answer)
        queued: set[tuple[str, str]] = set()
        for start in range(0, len(per_answer), EMBED_AHEAD_ANSWERS):
            texts: dict[str, set[str]] = defaultdict(set)
            for org, answer_texts in per_answer[start : start + EMBED_AHEAD_ANSWERS]:
                for text in answer_texts:
                    if (org, text) not in queued and (org, norm_hash(text)) not in known:
                        queued.add((org, text))
                        texts[org].add(text)
            group = []
            for org, wanted in sorted(texts.items()):
                todo = near[org].unknown(wanted)
                if todo:
                    group.append((org, todo, self.pool.submit(near[org].embed, todo)))
            self.groups.append(group)

    def ready(self, index: int) -> None:
        while self.done <= index // EMBED_AHEAD_ANSWERS and self.done < len(self.groups):
            for org, texts, vectors in self.groups[self.done]:
                self.near[org].add(texts, vectors.result())
            self.groups[self.done] = []
            self.done += 1

    def close(self) -> None:
        for group in self.groups:
            for _, _, vectors in group:
                vectors.cancel()
        self.pool.shutdown(wait=True)


def _known_hashes(
    conn: psycopg.Connection, per_answer: list[tuple[str, set[str]]]
) -> set[tuple[str, str]]:
    """(org, hash) of the texts that a current memory already holds, as its text or an alias."""
    hashes: dict[str, set[str]] = defaultdict(set)
    for org, texts in per_answer:
        hashes[org].update(norm_hash(t) for t in texts)
    known: set[tuple[str, str]] = set()
    for org, digests in sorted(hashes.items()):
        for r in conn.execute(
            "select norm_hash, alias_hashes from memories where org_id = %s "
            "and (norm_hash = any(%s) or alias_hashes && %s::text[]) and superseded_by is null",
            (org, sorted(digests), sorted(digests)),
        ):
            known.update((org, h) for h in [r["norm_hash"], *r["alias_hashes"]])
    return known


def apply_partition(
    conn: psycopg.Connection,
    orgs: dict[str, OrgSpec],
    day: str,
    summary: StoreSummary,
    near: dict[str, NearDuplicates] | None = None,
) -> None:
    items: list[tuple[dict[str, Any], ValidatedAnswer]] = []
    for row in _pending_answers(conn, day):
        if _superseded_extraction(conn, row):
            _skip_superseded(conn, row, summary)
            continue
        collection = orgs[row["org_id"]].collections[row["collection"]]
        try:
            items.append((row, validate_answer(row["answer"], collection)))
        except AnswerInvalid as exc:
            # Answers were validated when collected; this only fires if the collection changed.
            log.error("request %s: stored answer no longer validates: %s", row["request_id"], exc)
            summary.failed += 1
    ahead = _EmbedAhead(conn, orgs, items, near) if near is not None else None
    # End the reading transaction, so that each answer below commits on its own.
    conn.commit()
    try:
        _apply_items(conn, orgs, day, summary, near, items, ahead)
    finally:
        if ahead is not None:
            ahead.close()


def _apply_items(
    conn: psycopg.Connection,
    orgs: dict[str, OrgSpec],
    day: str,
    summary: StoreSummary,
    near: dict[str, NearDuplicates] | None,
    items: list[tuple[dict[str, Any], ValidatedAnswer]],
    ahead: _EmbedAhead | None,
) -> None:
    for index, (row, answer) in enumerate(items):
        if ahead is not None:
            ahead.ready(index)
        org = orgs[row["org_id"]]
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
        with conn.transaction():
            if _superseded_extraction(conn, row):  # applied meanwhile by another process
                _skip_superseded(conn, row, summary)
                continue
            summary.stage2.add(
                apply_answer(
                    conn,
                    answer,
                    prov,
                    org.collections[row["collection"]],
                    org.redaction,
                    near[org.org] if near is not None else None,
                )
            )
            _mark_applied(conn, row)
        summary.answers += 1


def sync_vectors(
    conn: psycopg.Connection,
    vectors: VectorStore,
    embedder: Embedder,
    day: str,
    summary: StoreSummary,
    known: dict[str, Any] | None = None,
) -> None:
    """Bring LanceDB in line with PostgreSQL: the outbox of any day, and every row of ``day``.

    ``known`` holds vectors already computed for memory ids; anything else is embedded here.
    """
    known = known or {}
    columns = (
        "select memory_id, org_id, entity_id, text, partition_day::text as day, superseded_by, "
        "updated_at, vector_dirty from memories "
    )
    rows = {
        r["memory_id"]: r
        for r in [
            *conn.execute(columns + "where partition_day = %s and superseded_by is null", (day,)),
            *conn.execute(columns + "where vector_dirty"),
        ]
    }
    lance = {
        r["memory_id"]: r["entity_id"]
        for r in _lance_rows(vectors, f"partition_day = '{day}'", ["memory_id", "entity_id"])
    }
    elsewhere = sorted(m for m in rows if m not in lance)
    for r in _lance_by_ids(vectors, elsewhere, ["memory_id", "entity_id"]):
        lance[r["memory_id"]] = r["entity_id"]
    active = {m: r for m, r in rows.items() if r["superseded_by"] is None}

    missing = [r for m, r in sorted(active.items()) if m not in lance]
    unknown = [r for r in missing if r["memory_id"] not in known]
    for start in range(0, len(unknown), EMBED_CHUNK):
        chunk = unknown[start : start + EMBED_CHUNK]
        embedded = embedder.encode([r["text"] for r in chunk])
        known.update({r["memory_id"]: v for r, v in zip(chunk, embedded, strict=True)})
        summary.texts_embedded += len(chunk)
    for start in range(0, len(missing), EMBED_CHUNK):
        chunk = missing[start : start + EMBED_CHUNK]
        vectors.upsert(
            [
                {
                    "memory_id": r["memory_id"],
                    "org_id": r["org_id"],
                    "entity_id": r["entity_id"],
                    "partition_day": r["day"],
                    "text": r["text"],
                    "vector": np.asarray(known[r["memory_id"]], dtype=np.float32),
                }
                for r in chunk
            ]
        )
        summary.vectors_written += len(chunk)

    moved: dict[str, list[str]] = defaultdict(list)
    for m, r in active.items():
        if m in lance and lance[m] != r["entity_id"]:
            moved[r["entity_id"]].append(m)
    for entity_id, ids in sorted(moved.items()):
        for start in range(0, len(ids), LANCE_ID_CHUNK):
            chunk = ids[start : start + LANCE_ID_CHUNK]
            vectors.table().update(
                where=f"memory_id in ({_quoted(chunk)})", values={"entity_id": entity_id}
            )
        summary.vectors_moved += len(ids)

    stale = sorted(m for m in lance if m not in active)
    for start in range(0, len(stale), LANCE_ID_CHUNK):
        vectors.delete(f"memory_id in ({_quoted(stale[start : start + LANCE_ID_CHUNK])})")
    summary.vectors_removed += len(stale)

    done = [r for r in rows.values() if r["vector_dirty"]]
    if done:
        # Only rows unchanged since they were read: a concurrent change stays in the outbox.
        conn.execute(
            "update memories m set vector_dirty = false from unnest(%s::text[], "
            "%s::timestamptz[]) as u(id, ts) where m.memory_id = u.id and m.updated_at = u.ts",
            ([r["memory_id"] for r in done], [r["updated_at"] for r in done]),
            prepare=False,  # see outcomes.write_outcomes
        )
    conn.commit()


def store_partition(
    conn: psycopg.Connection,
    orgs: dict[str, OrgSpec],
    vectors: VectorStore,
    embedder: Embedder,
    day: str,
) -> StoreSummary:
    summary = StoreSummary(day=day)
    near = near_duplicates_for(vectors, embedder, orgs)
    apply_partition(conn, orgs, day, summary, near)
    if os.environ.get(CRASH_AFTER_PG) == "1":
        os._exit(9)
    known: dict[str, Any] = {}
    for finder in near.values():
        known.update(finder.by_memory)
        summary.texts_embedded += finder.embedded
    sync_vectors(conn, vectors, embedder, day, summary, known)
    embedder.release_freed_memory()
    return summary


def store_counts(conn: psycopg.Connection, vectors: VectorStore, day: str) -> tuple[int, int]:
    """(PostgreSQL memories, LanceDB vectors) for a day; the dual-write check compares them."""
    pg = conn.execute(
        "select count(*) as n from memories where partition_day = %s and superseded_by is null",
        (day,),
    ).fetchone()["n"]
    return pg, vectors.count(f"partition_day = '{day}'")


def store_differences(
    conn: psycopg.Connection, vectors: VectorStore, day: str
) -> dict[str, list[str]]:
    """Memory ids of ``day`` on which the two stores disagree (sorted; all empty when they agree).

    ``postgres_only``: current memories without a vector; ``lancedb_only``: vectors of no current
    memory of the day; ``entity_differs``: a vector filed under another entity than its memory.
    Equal counts can hide a swap of one row for another; the ids cannot.
    """
    pg = {
        r["memory_id"]: r["entity_id"]
        for r in conn.execute(
            "select memory_id, entity_id from memories where partition_day = %s "
            "and superseded_by is null",
            (day,),
        )
    }
    lance = {
        r["memory_id"]: r["entity_id"]
        for r in _lance_rows(vectors, f"partition_day = '{day}'", ["memory_id", "entity_id"])
    }
    return {
        "postgres_only": sorted(pg.keys() - lance.keys()),
        "lancedb_only": sorted(lance.keys() - pg.keys()),
        "entity_differs": sorted(m for m in pg.keys() & lance.keys() if pg[m] != lance[m]),
    }
