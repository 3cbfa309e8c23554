"""Events: accepted writes, their records, their status history and what they stored.

``accept`` writes the event, its records and (for sync-path writes) their ledger requests in one
transaction, committed before the API answers: nothing accepted is lost. An event moves
accepted -> queued -> submitted -> extracted -> stored, or ends failed with a reason. The intake
writes the steps it performs itself; for the batch path, submitted and extracted are read from
the ledger (the job's submit time, the result's arrival). ``finalize`` marks an event stored once
Stage 2 has committed every record's answer and LanceDB holds the vectors, and in that same
transaction writes the webhook outbox row.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from memo_pipeline.intake.config import IntakeConfig
from memo_pipeline.intake.escalation import escalation_reason
from memo_pipeline.intake.ledger import plan_sync, work_key
from memo_pipeline.intake.runtime import Runtime
from memo_pipeline.prompts.render import DOCUMENT_PROMPT, record_part_tokens
from memo_pipeline.records import ContentRecord

MODES = ("sync", "async", "bulk")
STATUS_ORDER = ("accepted", "queued", "submitted", "extracted", "stored")
FINISHED = ("stored", "failed")
# History entries that explain a wait rather than record a step.
HISTORY_NOTES = ("held",)
SUMMARY_LIMIT = 200


@dataclass(frozen=True)
class DocumentIn:
    content: str
    id: str | None = None
    title: str | None = None
    source_ts: datetime | None = None


@dataclass(frozen=True)
class WriteIn:
    """One call of the API: a memorize (one document) or a saveBatch (several)."""

    org: str
    kind: str  # memorize | save_batch
    execution_mode: str
    collection: str
    documents: Sequence[DocumentIn]
    identifier: str | None = None
    ai_extraction: bool = True
    deadline: datetime | None = None
    idempotency_key: str | None = None


@dataclass
class Accepted:
    event_id: str
    created: bool
    status: str
    escalation: str | None = None
    record_ids: list[str] = field(default_factory=list)


def new_event_id(org: str, idempotency_key: str | None) -> str:
    if idempotency_key:
        digest = hashlib.sha256(f"{org}\x1f{idempotency_key}".encode()).hexdigest()
        return f"evt_{digest[:26]}"
    return f"evt_{secrets.token_hex(13)}"


def add_history(
    conn: psycopg.Connection, event_id: str, status: str, detail: str | None = None
) -> None:
    """Record a step and move the event's status forward (never backward, never off an end)."""
    conn.execute(
        "insert into intake_event_history (event_id, status, detail) values (%s, %s, %s)",
        (event_id, status, detail),
    )
    if status in STATUS_ORDER:
        rank = STATUS_ORDER.index(status)
        conn.execute(
            "update intake_events set status = %s, updated_at = now() where event_id = %s "
            "and status <> all(%s) and array_position(%s, status) < %s",
            (status, event_id, list(FINISHED), list(STATUS_ORDER), rank + 1),
        )


def _records(write: WriteIn, event_id: str, now: datetime) -> list[ContentRecord]:
    records = []
    for position, doc in enumerate(write.documents):
        if write.kind == "memorize":
            source_id = f"evt:{event_id}"
        elif doc.id:
            source_id = f"doc:{doc.id}"
        else:
            source_id = f"evt:{event_id}:{position}"
        metadata: dict[str, Any] = {"event_id": event_id}
        if write.kind == "save_batch":
            metadata["prompt"] = DOCUMENT_PROMPT
        records.append(
            ContentRecord(
                source_id=source_id,
                org=write.org,
                collection=write.collection,
                identifier=write.identifier,
                content=doc.content,
                source_ts=doc.source_ts or now,
                kind="document" if write.kind == "save_batch" else "note",
                title=doc.title,
                source="api",
                metadata=metadata,
            )
        )
    return records


def _upsert_content(conn: psycopg.Connection, record: ContentRecord, day: str) -> None:
    conn.execute(
        "insert into content_records (record_id, org_id, source_id, collection, partition_day, "
        "kind, identifier, title, content, content_hash, source_ts, source, metadata, "
        "record_tokens) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "on conflict (record_id) do update set content = excluded.content, "
        "content_hash = excluded.content_hash, collection = excluded.collection, "
        "identifier = excluded.identifier, title = excluded.title, "
        "source_ts = excluded.source_ts, partition_day = excluded.partition_day, "
        "metadata = excluded.metadata, record_tokens = excluded.record_tokens "
        "where content_records.content_hash <> excluded.content_hash",
        (
            record.record_id,
            record.org,
            record.source_id,
            record.collection,
            day,
            record.kind,
            record.identifier,
            record.title,
            record.content,
            record.content_hash,
            record.source_ts,
            record.source,
            Jsonb(record.metadata),
            record_part_tokens(record),
        ),
    )


def _upsert_document(
    conn: psycopg.Connection, record: ContentRecord, event_id: str, day: str
) -> None:
    conn.execute(
        "insert into intake_documents (record_id, org_id, event_id, source_id, title, content, "
        "content_hash, source_ts, partition_day) values (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "on conflict (record_id) do update set event_id = excluded.event_id, "
        "title = excluded.title, content = excluded.content, "
        "content_hash = excluded.content_hash, source_ts = excluded.source_ts, "
        "partition_day = excluded.partition_day, updated_at = now()",
        (
            record.record_id,
            record.org,
            event_id,
            record.source_id,
            record.title,
            record.content,
            record.content_hash,
            record.source_ts,
            day,
        ),
    )


def accept(
    runtime: Runtime, config: IntakeConfig, write: WriteIn, now: datetime | None = None
) -> Accepted:
    """Store a write durably and route its records; returns once the transaction committed."""
    now = now or datetime.now(UTC)
    day = now.strftime("%Y-%m-%d")
    org = runtime.orgs[write.org]
    event_id = new_event_id(write.org, write.idempotency_key)
    escalation = None
    if write.execution_mode == "bulk" and write.ai_extraction and write.deadline is not None:
        escalation = escalation_reason(write.deadline, now, None, config)
    with runtime.connection() as conn, conn.transaction():
        inserted = conn.execute(
            "insert into intake_events (event_id, org_id, kind, execution_mode, ai_extraction, "
            "collection, deadline, idempotency_key, record_count, escalated_at, "
            "escalation_reason, created_at, updated_at) "
            "values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "on conflict do nothing",
            (
                event_id,
                write.org,
                write.kind,
                write.execution_mode,
                write.ai_extraction,
                write.collection,
                write.deadline,
                write.idempotency_key,
                len(write.documents),
                now if escalation else None,
                escalation,
                now,
                now,
            ),
        ).rowcount
        if not inserted:
            existing = conn.execute(
                "select status, escalation_reason from intake_events where event_id = %s",
                (event_id,),
            ).fetchone()
            return Accepted(event_id, False, existing["status"], existing["escalation_reason"])
        records = _records(write, event_id, now)
        for position, record in enumerate(records):
            key = None
            if write.ai_extraction:
                _upsert_content(conn, record, day)
                if write.execution_mode != "bulk" or escalation:
                    reason = escalation or f"execution_mode {write.execution_mode}"
                    key = plan_sync(conn, runtime.registry, org, record, day, reason)["request_key"]
                else:
                    key = work_key(runtime.registry, org, record)[0]
            else:
                _upsert_document(conn, record, event_id, day)
            conn.execute(
                "insert into intake_event_records (event_id, position, record_id, request_key, "
                "partition_day) values (%s, %s, %s, %s, %s)",
                (event_id, position, record.record_id, key, day),
            )
        detail = f"{len(records)} record(s), execution_mode {write.execution_mode}"
        if escalation:
            detail += f"; escalated to the sync path: {escalation}"
        add_history(conn, event_id, "accepted", detail)
    return Accepted(
        event_id, True, "accepted", escalation, record_ids=[r.record_id for r in records]
    )


def stored_summary(
    conn: psycopg.Connection, org: str, record_ids: Sequence[str], limit: int = SUMMARY_LIMIT
) -> dict[str, Any]:
    """What the records stored: memories, the entities involved, property values, edges."""
    ids = list(record_ids)
    memories = conn.execute(
        "select memory_id, entity_id, text from memories where org_id = %s "
        "and source_record_ids && %s::text[] and superseded_by is null order by memory_id",
        (org, ids),
    ).fetchall()
    properties = conn.execute(
        "select entity_id, property, value, valid_from, superseded_by is null as current "
        "from property_values where org_id = %s and source_record_id = any(%s) "
        "order by entity_id, property, value_id",
        (org, ids),
    ).fetchall()
    edges = conn.execute(
        "select edge_id, subject_id, predicate, object_id from edges where org_id = %s "
        "and source_record_ids && %s::text[] order by edge_id",
        (org, ids),
    ).fetchall()
    entity_ids = sorted(
        {m["entity_id"] for m in memories}
        | {p["entity_id"] for p in properties}
        | {e["subject_id"] for e in edges}
        | {e["object_id"] for e in edges}
    )
    entities = conn.execute(
        "select entity_id, type, name from entities where org_id = %s and entity_id = any(%s) "
        "order by entity_id",
        (org, entity_ids),
    ).fetchall()
    for prop in properties:
        prop["valid_from"] = prop["valid_from"].isoformat()
    return {
        "counts": {
            "memories": len(memories),
            "entities": len(entities),
            "properties": len(properties),
            "edges": len(edges),
        },
        "memories": memories[:limit],
        "entities": entities[:limit],
        "properties": properties[:limit],
        "edges": edges[:limit],
    }


def event_records(conn: psycopg.Connection, event_id: str) -> list[dict[str, Any]]:
    return conn.execute(
        "select record_id, request_key, partition_day::text as day from intake_event_records "
        "where event_id = %s order by position",
        (event_id,),
    ).fetchall()


def _record_states(conn: psycopg.Connection, event_id: str) -> list[dict[str, Any]]:
    """Per record: whether an answer is applied, and its latest attempt's status and error."""
    return conn.execute(
        "select r.record_id, r.request_key, r.partition_day::text as day, "
        "exists (select 1 from extraction_requests q join request_results res using (request_id) "
        "  where q.request_key = r.request_key and res.outcome = 'succeeded' "
        "  and res.applied_at is not null) as applied, "
        "last.status, coalesce(last_res.error, last.reason) as error "
        "from intake_event_records r "
        "left join lateral (select * from extraction_requests q "
        "  where q.request_key = r.request_key order by attempt desc limit 1) last on true "
        "left join request_results last_res on last_res.request_id = last.request_id "
        "where r.event_id = %s order by r.position",
        (event_id,),
    ).fetchall()


def mark_finished(
    conn: psycopg.Connection,
    event: dict[str, Any],
    status: str,
    reason: str | None,
    summary: dict[str, Any],
) -> bool:
    """End an event and, in the same transaction, queue its webhook; False if already ended."""
    with conn.transaction():
        ended = conn.execute(
            "update intake_events set status = %s, reason = %s, result = %s, finished_at = now(), "
            "updated_at = now() where event_id = %s and status <> all(%s) returning *",
            (status, reason, Jsonb(summary), event["event_id"], list(FINISHED)),
        ).fetchone()
        if ended is None:
            return False
        conn.execute(
            "insert into intake_event_history (event_id, status, detail) values (%s, %s, %s)",
            (event["event_id"], status, reason),
        )
        hook = conn.execute(
            "select webhook_url from intake_orgs where org_id = %s", (event["org_id"],)
        ).fetchone()
        if hook and hook["webhook_url"]:
            payload = {
                "type": f"event.{status}",
                "timestamp": datetime.now(UTC).isoformat(),
                "data": {
                    "event_id": event["event_id"],
                    "org": event["org_id"],
                    "execution_mode": event["execution_mode"],
                    "status": status,
                    "reason": reason,
                    "counts": summary.get("counts", {}),
                    "memory_ids": [m["memory_id"] for m in summary.get("memories", [])],
                },
            }
            conn.execute(
                "insert into intake_outbox (message_id, org_id, event_id, event_type, payload) "
                "values (%s, %s, %s, %s, %s) on conflict do nothing",
                (
                    f"msg_{event['event_id']}_{status}",
                    event["org_id"],
                    event["event_id"],
                    f"event.{status}",
                    Jsonb(payload),
                ),
            )
    return True


def _vectors_present(runtime: Runtime, memory_ids: Iterable[str]) -> bool:
    wanted = sorted(set(memory_ids))
    if not wanted:
        return True
    quoted = ", ".join(f"'{m}'" for m in wanted)
    return runtime.vectors.ids(f"memory_id in ({quoted})") >= set(wanted)


@dataclass
class FinalizeSummary:
    stored: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    waiting: int = 0


def finalize(
    runtime: Runtime, event_ids: Sequence[str] | None = None, limit: int = 500
) -> FinalizeSummary:
    """End every extraction event whose records all reached a final state in the ledger."""
    summary = FinalizeSummary()
    with runtime.connection() as conn:
        # Only events whose every record is applied or dead: one query however many wait.
        events = conn.execute(
            "select e.* from intake_events e where e.status <> all(%s) and e.ai_extraction "
            "and (%s::text[] is null or e.event_id = any(%s::text[])) "
            "and not exists (select 1 from intake_event_records r where r.event_id = e.event_id "
            "  and not exists (select 1 from extraction_requests q join request_results res "
            "    using (request_id) where q.request_key = r.request_key "
            "    and res.outcome = 'succeeded' and res.applied_at is not null) "
            "  and not exists (select 1 from extraction_requests q where q.request_key = "
            "    r.request_key and q.status = 'dead' and not exists (select 1 from "
            "    extraction_requests n where n.request_key = q.request_key "
            "    and n.attempt > q.attempt))) "
            "order by e.created_at, e.event_id limit %s",
            (list(FINISHED), event_ids, event_ids, limit),
        ).fetchall()
        conn.commit()
        for event in events:
            states = _record_states(conn, event["event_id"])
            dead = [s for s in states if not s["applied"] and s["status"] == "dead"]
            if not states or not all(s["applied"] or s in dead for s in states):
                summary.waiting += 1
                continue
            record_ids = [s["record_id"] for s in states]
            result = stored_summary(conn, event["org_id"], record_ids, limit=10_000)
            if not dead and not _vectors_present(
                runtime, (m["memory_id"] for m in result["memories"])
            ):
                summary.waiting += 1
                continue
            result = _trim(result)
            if dead:
                reason = (
                    f"{len(dead)} of {len(states)} record(s) could not be extracted: "
                    + "; ".join(f"record {s['record_id']}: {s['error']}" for s in dead[:5])
                )[:2000]
                if mark_finished(conn, event, "failed", reason, result):
                    summary.failed.append(event["event_id"])
            elif mark_finished(conn, event, "stored", None, result):
                summary.stored.append(event["event_id"])
    return summary


def _trim(result: dict[str, Any]) -> dict[str, Any]:
    return {k: (v[:SUMMARY_LIMIT] if isinstance(v, list) else v) for k, v in result.items()}


def _ledger_steps(conn: psycopg.Connection, event_id: str) -> list[dict[str, Any]]:
    """Steps of the batch path, read from the ledger: planned, submitted in a job, answered."""
    row = conn.execute(
        "select min(q.created_at) filter (where q.path = 'batch') as planned, "
        "min(j.submitted_at) as submitted, "
        "max(res.received_at) filter (where res.outcome = 'succeeded') as extracted, "
        "count(distinct r.record_id) as records, "
        "count(distinct r.record_id) filter (where res.outcome = 'succeeded') as answered, "
        "min(j.job_id) as job_id, min(j.provider) as provider "
        "from intake_event_records r "
        "join extraction_requests q on q.request_key = r.request_key "
        "left join provider_jobs j on j.job_key = q.job_key "
        "left join request_results res on res.request_id = q.request_id "
        "where r.event_id = %s",
        (event_id,),
    ).fetchone()
    steps = []
    if row is None:
        return steps
    if row["planned"]:
        steps.append(
            {"status": "queued", "at": row["planned"], "detail": "planned in the batch ledger"}
        )
    if row["submitted"]:
        steps.append(
            {
                "status": "submitted",
                "at": row["submitted"],
                "detail": f"in {row['provider']} batch job {row['job_id']}",
            }
        )
    if row["extracted"] and row["answered"] == row["records"]:
        steps.append({"status": "extracted", "at": row["extracted"], "detail": "answer received"})
    return steps


def event_view(conn: psycopg.Connection, org: str, event_id: str) -> dict[str, Any] | None:
    """The event as the API shows it; None when it does not exist in this org."""
    event = conn.execute(
        "select * from intake_events where event_id = %s and org_id = %s", (event_id, org)
    ).fetchone()
    if event is None:
        return None
    history = [
        {"status": h["status"], "at": h["at"], "detail": h["detail"]}
        for h in conn.execute(
            "select status, at, detail from intake_event_history where event_id = %s order by id",
            (event_id,),
        )
    ]
    seen = {h["status"] for h in history}
    history += [s for s in _ledger_steps(conn, event_id) if s["status"] not in seen]
    history.sort(key=lambda h: (h["at"], _rank(h["status"])))
    status = event["status"]
    if status not in FINISHED:
        # A note in the history (the spend guard's "held") says why the event waits; it is
        # not a step the event has reached.
        steps = [h["status"] for h in history if h["status"] not in HISTORY_NOTES]
        status = max(steps, key=_rank, default=status)
    records = []
    errors = []
    for state in _record_states(conn, event_id) if event["ai_extraction"] else []:
        records.append(
            {
                "record_id": state["record_id"],
                "status": "stored" if state["applied"] else (state["status"] or "accepted"),
            }
        )
        if not state["applied"] and state["status"] in ("dead", "retryable", "invalid"):
            errors.append({"record_id": state["record_id"], "error": state["error"]})
    if not event["ai_extraction"]:
        records = [
            {"record_id": r["record_id"], "status": status} for r in event_records(conn, event_id)
        ]
    requests = conn.execute(
        "select q.request_id, q.record_id, q.attempt, q.path, q.status, q.reason, q.provider, "
        "q.model, j.job_id from intake_event_records r "
        "join extraction_requests q on q.request_key = r.request_key "
        "left join provider_jobs j on j.job_key = q.job_key "
        "where r.event_id = %s order by r.position, q.attempt",
        (event_id,),
    ).fetchall()
    return {
        "event_id": event_id,
        "org": org,
        "kind": event["kind"],
        "execution_mode": event["execution_mode"],
        "ai_extraction": event["ai_extraction"],
        "collection": event["collection"],
        "status": status,
        "reason": event["reason"],
        "deadline": event["deadline"],
        "escalation": (
            {"at": event["escalated_at"], "reason": event["escalation_reason"]}
            if event["escalated_at"]
            else None
        ),
        "created_at": event["created_at"],
        "finished_at": event["finished_at"],
        "history": history,
        "records": records,
        "requests": requests,
        "errors": errors,
        "result": event["result"],
    }


def _rank(status: str) -> int:
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)
