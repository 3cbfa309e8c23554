"""What the intake sensors decide, as plain functions over the ledger.

``claim_sync_work`` picks the events the sync path must process next: new ``async`` writes,
documents to chunk, bulk writes whose deadline can no longer wait for their batch (it records the
escalation on the event), and events that made no progress for ``stale_after_seconds`` (a run
that never started, a crashed process, a sync call whose caller went away). It marks them
queued and returns them in micro-batches. ``bulk_dispatch`` names the days whose pending bulk
work has reached the size or age threshold; a day before today is always due.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from memo_pipeline.intake.config import IntakeConfig
from memo_pipeline.intake.escalation import escalation_reason
from memo_pipeline.intake.events import FINISHED, add_history


def digest(items: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(items)).encode()).hexdigest()[:16]


def escalate_due(conn: psycopg.Connection, config: IntakeConfig, now: datetime) -> list[str]:
    """Mark bulk writes whose deadline their batch cannot meet; returns their event ids."""
    rows = conn.execute(
        "select e.event_id, e.deadline, min(j.submitted_at) as submitted_at "
        "from intake_events e join intake_event_records r using (event_id) "
        "left join extraction_requests q on q.request_key = r.request_key "
        "left join provider_jobs j on j.job_key = q.job_key and j.submitted_at is not null "
        "where e.execution_mode = 'bulk' and e.ai_extraction and e.deadline is not null "
        "and e.escalated_at is null and e.status <> all(%s) "
        "group by e.event_id, e.deadline",
        (list(FINISHED),),
    ).fetchall()
    escalated = []
    for row in rows:
        reason = escalation_reason(row["deadline"], now, row["submitted_at"], config)
        if reason is None:
            continue
        conn.execute(
            "update intake_events set escalated_at = %s, escalation_reason = %s, "
            "updated_at = %s where event_id = %s and escalated_at is null",
            (now, reason, now, row["event_id"]),
        )
        escalated.append(row["event_id"])
    return escalated


def claim_sync_work(
    conn: psycopg.Connection, config: IntakeConfig, now: datetime
) -> list[list[str]]:
    """Events for the sync path, marked queued, in batches of ``async_batch_size``."""
    limit = config.async_batch_size * config.async_max_runs_per_tick
    stale = now - timedelta(seconds=config.stale_after_seconds)
    with conn.transaction():
        escalate_due(conn, config, now)
        rows = conn.execute(
            "select event_id, status, escalation_reason from intake_events "
            "where status <> all(%s) "
            "and (execution_mode in ('sync', 'async') or not ai_extraction "
            "     or escalated_at is not null) "
            "and ((status = 'accepted' and (execution_mode <> 'sync' or created_at < %s)) "
            "     or (status <> 'accepted' and updated_at < %s)) "
            # New work first: events taken up again (a budget hold, a stalled run) must not
            # crowd it out of a tick's slots.
            "order by status <> 'accepted', created_at, event_id limit %s for update skip locked",
            (list(FINISHED), stale, stale, limit),
        ).fetchall()
        for row in rows:
            if row["status"] != "accepted":
                detail = f"requested again: no progress since {stale.isoformat()}"
            elif row["escalation_reason"]:
                detail = f"escalated to the sync path: {row['escalation_reason']}"
            else:
                detail = "waiting for an intake run"
            add_history(conn, row["event_id"], "queued", detail)
            conn.execute(
                "update intake_events set queued_at = %s, updated_at = %s where event_id = %s",
                (now, now, row["event_id"]),
            )
    ids = [r["event_id"] for r in rows]
    size = max(1, config.async_batch_size)
    return [ids[i : i + size] for i in range(0, len(ids), size)]


@dataclass(frozen=True)
class DispatchDue:
    day: str
    records: int
    oldest: datetime
    why: str
    run_key: str


def pending_bulk(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Per day: bulk records accepted but not yet in a provider job (nor taken by the sync path)."""
    return conn.execute(
        "select r.partition_day::text as day, count(*) as records, min(e.created_at) as oldest, "
        "array_agg(r.record_id order by r.record_id) as record_ids "
        "from intake_events e join intake_event_records r using (event_id) "
        "where e.execution_mode = 'bulk' and e.ai_extraction and e.escalated_at is null "
        "and e.status <> all(%s) and not exists (select 1 from extraction_requests q "
        "  where q.request_key = r.request_key "
        "  and (q.job_key is not null or q.path <> 'batch' or q.status <> 'pending')) "
        "group by 1 order by 1",
        (list(FINISHED),),
    ).fetchall()


def bulk_dispatch(
    conn: psycopg.Connection, config: IntakeConfig, now: datetime
) -> tuple[list[DispatchDue], list[dict[str, Any]]]:
    """(days due for submission, all days with pending bulk work)."""
    today = now.strftime("%Y-%m-%d")
    pending = pending_bulk(conn)
    due = []
    for row in pending:
        age = (now - row["oldest"]).total_seconds()
        if row["day"] < today:
            why = "the day has closed"
        elif row["records"] >= config.bulk_dispatch_min_records:
            why = f"{row['records']} records >= {config.bulk_dispatch_min_records}"
        elif age >= config.bulk_dispatch_max_age_seconds:
            why = (
                f"oldest record waited {int(age)}s >= {int(config.bulk_dispatch_max_age_seconds)}s"
            )
        else:
            continue
        due.append(
            DispatchDue(
                day=row["day"],
                records=row["records"],
                oldest=row["oldest"],
                why=why,
                # A new key once the same work has waited another stale_after_seconds, so a
                # submission run that failed or never started is requested again.
                run_key=f"bulk-dispatch:{row['day']}:{digest(row['record_ids'])}:"
                f"{int(age // max(1.0, config.stale_after_seconds))}",
            )
        )
    return due, pending
