"""Documents saved without extraction: chunked and embedded, no model call.

Each document becomes an entity of type ``document`` (identifier ``doc:<id>``), and each chunk
of its text a memory of that entity, through the same storage rules as extracted memories: the
org's redaction tier, deterministic memory ids, PostgreSQL first, then LanceDB through
``sync_vectors``. Saving a document again under the same id replaces its chunks: chunks that are
no longer in the text are marked superseded and their vectors removed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import psycopg

from memo_pipeline.intake.config import IntakeConfig
from memo_pipeline.intake.events import mark_finished, stored_summary
from memo_pipeline.intake.runtime import Runtime
from memo_pipeline.pipeline.store import StoreSummary, sync_vectors
from memo_pipeline.stage2.apply import memory_id, normalize_memory_text
from memo_pipeline.stage2.redaction import redact

CHUNK_SCHEMA = "chunks-v1"
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def document_entity_id(org: str, source_id: str) -> str:
    return "e" + hashlib.sha256(f"{org}\x1fdocument\x1f{source_id}".encode()).hexdigest()[:31]


def _norm_hash(text: str) -> str:
    return hashlib.sha256(normalize_memory_text(text).encode()).hexdigest()[:31]


def chunk_text(text: str, max_chars: int) -> list[str]:
    """Paragraphs packed into chunks of at most ``max_chars``; long paragraphs split by sentence,
    and a sentence longer than a chunk is cut."""
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        flat = " ".join(paragraph.split())
        if not flat:
            continue
        if len(flat) <= max_chars:
            pieces.append(flat)
            continue
        for sentence in SENTENCE_END.split(flat):
            while len(sentence) > max_chars:
                pieces.append(sentence[:max_chars])
                sentence = sentence[max_chars:]
            if sentence:
                pieces.append(sentence)
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + 2 + len(piece) <= max_chars:
            chunks[-1] = f"{chunks[-1]}\n\n{piece}"
        else:
            chunks.append(piece)
    return chunks


def _store_document(
    conn: psycopg.Connection, doc: dict[str, Any], tier: str, max_chars: int
) -> list[str]:
    """Write one document's entity and chunk memories; returns the superseded memory ids."""
    org = doc["org_id"]
    name = doc["title"] or doc["source_id"].removeprefix("doc:")
    entity_id = document_entity_id(org, doc["source_id"])
    conn.execute(
        "insert into entities (entity_id, org_id, type, name, norm_name, names) "
        "values (%s, %s, 'document', %s, %s, %s) on conflict (entity_id) do update "
        "set name = excluded.name",
        (entity_id, org, name, name.lower(), [name]),
    )
    conn.execute(
        "insert into entity_identifiers (org_id, identifier, entity_id) values (%s, %s, %s) "
        "on conflict (org_id, identifier) do nothing",
        (org, doc["source_id"], entity_id),
    )
    kept: list[str] = []
    for chunk in chunk_text(doc["content"], max_chars):
        text = redact(chunk, tier).text
        if not text or not text.strip():
            continue
        mid = memory_id(org, entity_id, text)
        kept.append(mid)
        conn.execute(
            "insert into memories (memory_id, org_id, entity_id, text, norm_hash, partition_day, "
            "source_ts, source_record_ids, schema_version) "
            "values (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "on conflict (memory_id) do update set superseded_by = null, "
            "source_record_ids = (select array_agg(distinct x order by x) from "
            "unnest(memories.source_record_ids || excluded.source_record_ids) as x), "
            "updated_at = now()",
            (
                mid,
                org,
                entity_id,
                text.strip(),
                _norm_hash(text),
                doc["partition_day"],
                doc["source_ts"],
                [doc["record_id"]],
                CHUNK_SCHEMA,
            ),
        )
    superseded = conn.execute(
        "update memories set superseded_by = %s, updated_at = now() where entity_id = %s "
        "and schema_version = %s and superseded_by is null and memory_id <> all(%s) "
        "returning memory_id",
        (f"{doc['record_id']}:{doc['content_hash'][:12]}", entity_id, CHUNK_SCHEMA, kept),
    ).fetchall()
    conn.execute(
        "update intake_documents set entity_id = %s, chunks = %s, updated_at = now() "
        "where record_id = %s",
        (entity_id, len(kept), doc["record_id"]),
    )
    return [r["memory_id"] for r in superseded]


def store_documents(
    runtime: Runtime, config: IntakeConfig, events: Sequence[dict[str, Any]]
) -> list[str]:
    """Chunk, store and embed the documents of these events, then end them; returns those ended."""
    ended: list[str] = []
    with runtime.connection() as conn:
        for event in events:
            docs = conn.execute(
                "select d.* from intake_event_records r join intake_documents d using (record_id) "
                "where r.event_id = %s order by r.position",
                (event["event_id"],),
            ).fetchall()
            tier = runtime.orgs[event["org_id"]].redaction
            with conn.transaction():
                superseded = [
                    mid
                    for doc in docs
                    for mid in _store_document(conn, doc, tier, config.chunk_chars)
                ]
            if superseded:
                quoted = ", ".join(f"'{m}'" for m in superseded)
                runtime.vectors.delete(f"memory_id in ({quoted})")
            # A chunk saved again may live on an earlier day's row: sync every day involved.
            days = {
                str(r["day"])
                for r in conn.execute(
                    "select distinct m.partition_day as day from intake_event_records r "
                    "join memories m on r.record_id = any(m.source_record_ids) "
                    "where r.event_id = %s and m.org_id = %s",
                    (event["event_id"], event["org_id"]),
                )
            }
            summary = StoreSummary(day="")
            for day in sorted(days | {str(d["partition_day"]) for d in docs}):
                sync_vectors(conn, runtime.vectors, runtime.embedder, day, summary)
            conn.commit()
            result = stored_summary(conn, event["org_id"], [d["record_id"] for d in docs])
            if mark_finished(conn, event, "stored", None, result):
                ended.append(event["event_id"])
    return ended
