"""The sync path: one provider sync call per record, then Stage 2, shared by three callers.

``sync`` writes run it inline in the HTTP request, ``async`` writes in a Dagster run launched by
the intake sensor, and bulk writes escalated for a deadline in that same run. Per record: take
the latest attempt of its request under a row lock (so two workers never pay for the same
attempt), pull it into the sync path if it was batch work, call the provider's sync API, and
record the outcome with the same ``record_outcome`` the batch collector uses. Transient failures
(429, 5xx, connection) are retried with backoff that honours a Retry-After the adapter reports;
invalid or failed answers get new attempts (repairs) like the batch path's, up to its limit.
Before each call the org's daily budget is checked as the bulk path checks it
(``pipeline.submit.check_budget``): a call it would exceed is not made, the event's history says
why, and the event stays open until the sensor takes it up again (``stale_after_seconds``) after
the budget is raised or the UTC day has turned. Then Stage 2 stores the partition days touched
(``pipeline.store.store_partition``), and the events are finalized.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from memo_pipeline.intake.config import IntakeConfig
from memo_pipeline.intake.documents import store_documents
from memo_pipeline.intake.events import FINISHED, add_history, finalize
from memo_pipeline.intake.ledger import latest_attempt, next_sync_attempt, plan_sync, pull_into_sync
from memo_pipeline.intake.runtime import Runtime
from memo_pipeline.pipeline.outcomes import MAX_ATTEMPTS, record_outcome
from memo_pipeline.pipeline.plan import record_from_row
from memo_pipeline.pipeline.store import store_partition
from memo_pipeline.pipeline.submit import Budget, build_requests, check_budget
from memo_pipeline.providers.base import Outcome, Provider, ProviderRequest, RequestOutcome

log = logging.getLogger(__name__)

TRANSIENT = re.compile(r"^(HTTP (408|409|425|429|5\d\d)\b|connection failed)")
RETRY_AFTER = re.compile(r"retry[- ]after[^0-9]*([0-9]+(?:\.[0-9]+)?)", re.I)
STORE_LOCK = threading.Lock()
STORE_LOCK_KEY = 7_310_101


class TransientCallError(Exception):
    """A sync call that may succeed when repeated (rate limit, overload, network)."""

    def __init__(self, outcome: RequestOutcome) -> None:
        super().__init__(outcome.error)
        self.outcome = outcome
        found = RETRY_AFTER.search(outcome.error or "")
        self.retry_after = float(found.group(1)) if found else None


def _is_transient(outcome: RequestOutcome) -> bool:
    return (
        outcome.outcome is Outcome.RETRYABLE
        and outcome.usage.output_tokens == 0
        and bool(TRANSIENT.match(outcome.error or ""))
    )


class _WaitRetryAfter:
    """Wait what the provider asked for (Retry-After) when it said, else back off exponentially."""

    def __init__(self, ceiling: float) -> None:
        self.ceiling = ceiling
        self.fallback = wait_exponential_jitter(multiplier=1, max=ceiling)

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientCallError) and exc.retry_after is not None:
            return min(exc.retry_after, self.ceiling)
        return self.fallback(state)


def call_with_backoff(
    provider: Provider, request: ProviderRequest, config: IntakeConfig
) -> RequestOutcome:
    """``provider.call_sync`` repeated on transient failures; the last outcome otherwise."""
    retrying = Retrying(
        retry=retry_if_exception_type(TransientCallError),
        wait=_WaitRetryAfter(config.call_backoff_max_seconds),
        stop=stop_after_attempt(max(1, config.call_attempts)),
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                outcome = provider.call_sync(request)
                if _is_transient(outcome):
                    log.info(
                        "request %s: transient failure (%s); attempt %d",
                        request.request_id,
                        outcome.error,
                        attempt.retry_state.attempt_number,
                    )
                    raise TransientCallError(outcome)
                return outcome
    except TransientCallError as exc:
        return exc.outcome
    raise AssertionError("unreachable")


@dataclass
class RecordResult:
    event_id: str
    record_id: str
    day: str
    status: str  # succeeded | dead | held (by the daily budget) | error
    error: str | None = None
    calls: int = 0
    ledger_note: str | None = None


def extract_record(
    runtime: Runtime,
    config: IntakeConfig,
    event: dict[str, Any],
    record: dict[str, Any],
) -> RecordResult:
    """Bring one record to a final outcome through the sync API (see the module docstring)."""
    org = runtime.orgs[event["org_id"]]
    result = RecordResult(event["event_id"], record["record_id"], record["day"], "succeeded")
    reason = event["escalation_reason"] or f"execution_mode {event['execution_mode']}"
    with runtime.connection() as conn:
        for _ in range(MAX_ATTEMPTS + 2):
            with conn.transaction():
                row = latest_attempt(conn, record["request_key"], lock=True)
                if row is None:
                    content = conn.execute(
                        "select * from content_records where record_id = %s",
                        (record["record_id"],),
                    ).fetchone()
                    row = plan_sync(
                        conn,
                        runtime.registry,
                        org,
                        record_from_row(content),
                        record["day"],
                        reason,
                    )
                if row["status"] == "succeeded":
                    return result
                if row["status"] == "dead":
                    result.status, result.error = "dead", row["reason"]
                    return result
                if row["status"] in ("retryable", "invalid", "permanent"):
                    error = conn.execute(
                        "select error from request_results where request_id = %s",
                        (row["request_id"],),
                    ).fetchone()
                    row = next_sync_attempt(conn, row, error["error"] if error else None)
                    if row is None:
                        result.status = "dead"
                        result.error = error["error"] if error else "failed"
                        return result
                note = pull_into_sync(conn, row, reason)
                result.ledger_note = note or result.ledger_note
                held = _budget_hold(conn, runtime, event, row)
                if held is not None:
                    result.status, result.error = "held", held
                    return result
                request = build_requests(conn, runtime.orgs, [row])[0]
                provider = runtime.registry.get(row["provider"], row["model"])
                outcome = call_with_backoff(provider, request, config)
                result.calls += 1
                record_outcome(conn, outcome, row, runtime.orgs, job_key=None)
                # record_outcome puts the answer's error in ``reason``; with no error, keep why
                # the request took the sync path there.
                conn.execute(
                    "update extraction_requests set reason = %s where request_id = %s "
                    "and reason is null",
                    (row["reason"], row["request_id"]),
                )
    result.status, result.error = "dead", "no final outcome after the attempt limit"
    return result


def _budget_hold(
    conn: psycopg.Connection, runtime: Runtime, event: dict[str, Any], row: dict[str, Any]
) -> str | None:
    """The spend guard's message when the org's daily budget holds this request's sync call
    (written to the event's history), else None and its forecast stamped on the request."""
    budget = Budget.of(runtime.registry, runtime.orgs, datetime.now(UTC).date())
    # No budget lock: this transaction goes on to call the provider, and a lock held across
    # the call would queue every sync call of the org behind it.
    costs, message = check_budget(conn, budget, [row], "sync", lock=False)
    if message is None:
        # A request still in a job (escalated after submission) keeps the batch's forecast,
        # which is what its job committed.
        conn.execute(
            "update extraction_requests set forecast_usd = %s where request_id = %s "
            "and job_key is null",
            (costs[0], row["request_id"]),
        )
        return None
    message = f"record {row['record_id']} not sent to {row['provider']}: {message}"
    log.warning("event %s: %s", event["event_id"], message)
    add_history(conn, event["event_id"], "held", message)
    return message


def store_days(runtime: Runtime, days: set[str]) -> None:
    """Stage 2 for the given partition days, one writer at a time per day across processes."""
    with STORE_LOCK, runtime.connection() as conn:
        for day in sorted(days):
            # A session lock, not a transaction lock: Stage 2 commits as it goes.
            conn.execute("select pg_advisory_lock(%s, hashtext(%s))", (STORE_LOCK_KEY, day))
            conn.commit()
            try:
                store_partition(conn, runtime.orgs, runtime.vectors, runtime.embedder, day)
                conn.commit()
            finally:
                conn.rollback()
                conn.execute("select pg_advisory_unlock(%s, hashtext(%s))", (STORE_LOCK_KEY, day))
                conn.commit()


@dataclass
class ProcessSummary:
    events: int = 0
    records: int = 0
    calls: int = 0
    stored: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    documents: int = 0
    skipped: int = 0
    # The spend guard's message for each record whose call the daily budget held.
    held: list[str] = field(default_factory=list)


def process_events(
    runtime: Runtime,
    config: IntakeConfig,
    event_ids: list[str],
    concurrency: int | None = None,
) -> ProcessSummary:
    """Run the sync path for these events (extraction or document chunking), then finalize."""
    summary = ProcessSummary()
    with runtime.connection() as conn:
        events = conn.execute(
            "select * from intake_events where event_id = any(%s) and status <> all(%s) "
            "order by created_at, event_id",
            (event_ids, list(FINISHED)),
        ).fetchall()
        records = {
            e["event_id"]: conn.execute(
                "select record_id, request_key, partition_day::text as day "
                "from intake_event_records where event_id = %s order by position",
                (e["event_id"],),
            ).fetchall()
            for e in events
        }
        for event in events:
            if event["ai_extraction"]:
                add_history(conn, event["event_id"], "submitted", "sent to the provider's sync API")
        conn.commit()
    summary.events = len(events)
    summary.skipped = len(event_ids) - len(events)

    chunk_events = [e for e in events if not e["ai_extraction"]]
    ai_work = [(e, r) for e in events if e["ai_extraction"] for r in records[e["event_id"]]]
    summary.records = len(ai_work)
    results: list[RecordResult] = []
    workers = max(1, min(concurrency or config.async_concurrency, len(ai_work) or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="memo-sync") as pool:
        futures = [pool.submit(extract_record, runtime, config, e, r) for e, r in ai_work]
        for future, (event, record) in zip(futures, ai_work, strict=True):
            try:
                results.append(future.result())
            except Exception as exc:  # noqa: BLE001 - one record's crash must not stop the rest
                log.exception("event %s record %s failed", event["event_id"], record["record_id"])
                results.append(
                    RecordResult(
                        event["event_id"],
                        record["record_id"],
                        record["day"],
                        "error",
                        f"{exc.__class__.__name__}: {exc}",
                    )
                )
    summary.calls = sum(r.calls for r in results)
    summary.held = [r.error for r in results if r.status == "held" and r.error]

    by_event: dict[str, list[RecordResult]] = defaultdict(list)
    for r in results:
        by_event[r.event_id].append(r)
    with runtime.connection() as conn:
        for event_id, items in by_event.items():
            answered = sum(1 for r in items if r.status == "succeeded")
            notes = sorted({r.ledger_note for r in items if r.ledger_note})
            detail = f"{answered} of {len(items)} record(s) answered"
            if notes:
                detail += "; " + "; ".join(notes)
            if answered == len(items):
                add_history(conn, event_id, "extracted", detail)
        conn.commit()

    days = {r.day for r in results if r.status == "succeeded"}
    if days:
        store_days(runtime, days)
    documents_stored = store_documents(runtime, config, chunk_events) if chunk_events else []
    done = finalize(runtime, [e["event_id"] for e in events if e["ai_extraction"]])
    summary.stored = done.stored + documents_stored
    summary.failed = done.failed
    summary.documents = len(documents_stored)
    return summary
