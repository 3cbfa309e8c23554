"""Watching provider jobs and collecting their results.

``poll_open_jobs`` is the sensor's work: it polls a bounded number of open jobs per call, least
recently polled first, and records their state in the ledger. ``ready_partitions`` names the days
whose jobs have all ended and wait to be collected. ``collect_partition`` (the
``extraction_results`` asset) streams each ended job's results, joins them to the ledger on the
request id (never on position), records every outcome, schedules retries, and submits the
retries (and any requests held back for cache priming) as new jobs for the same day.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from memo_pipeline.pipeline.outcomes import (
    JudgedOutcomes,
    OutcomeCounts,
    judge_outcomes,
    record_outcomes,
    schedule_retries,
    write_outcomes,
)
from memo_pipeline.pipeline.registry import ProviderRegistry
from memo_pipeline.pipeline.submit import SubmitSummary, submit_partition
from memo_pipeline.providers.base import JobState, Outcome, RequestOutcome
from memo_pipeline.providers.bedrock_events import JobEvent
from memo_pipeline.schema.collections import OrgSpec

log = logging.getLogger(__name__)
# Outcomes stored per round trip: a job's results stream in, never all in memory.
RESULT_CHUNK = 1000


@dataclass
class PollSummary:
    polled: int = 0
    ended: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class CollectSummary:
    day: str
    jobs: int = 0
    outcomes: OutcomeCounts = field(default_factory=OutcomeCounts)
    missing: int = 0
    duplicates: int = 0
    resubmitted: SubmitSummary | None = None


def poll_open_jobs(
    conn: psycopg.Connection, registry: ProviderRegistry, limit: int = 20, day: str | None = None
) -> PollSummary:
    summary = PollSummary()
    jobs = conn.execute(
        "select * from provider_jobs where status = 'submitted' "
        "and (%s::date is null or partition_day = %s::date) "
        "order by last_polled_at nulls first, job_key limit %s",
        (day, day, limit),
    ).fetchall()
    for job in jobs:
        try:
            status = registry.get(job["provider"], job["model"]).poll(job["job_id"])
        except Exception as exc:  # noqa: BLE001 - one unreachable provider must not stop the tick
            summary.errors.append(
                f"{job['provider']} job {job['job_id']}: {exc.__class__.__name__}"
            )
            conn.execute(
                "update provider_jobs set last_polled_at = now() where job_key = %s",
                (job["job_key"],),
            )
            continue
        summary.polled += 1
        mark_job_state(conn, job["job_key"], status.state, status.provider_status, status.message)
        if status.state is JobState.ENDED:
            summary.ended.append(job["job_key"])
        elif status.state is JobState.FAILED:
            summary.failed.append(job["job_key"])
    conn.commit()
    return summary


def mark_job_state(
    conn: psycopg.Connection,
    job_key: str,
    state: JobState,
    provider_status: str,
    message: str | None,
) -> None:
    new_status = {JobState.ENDED: "ended", JobState.FAILED: "failed"}.get(state, "submitted")
    conn.execute(
        "update provider_jobs set status = %s, provider_status = %s, message = %s, "
        "last_polled_at = now(), ended_at = case when %s <> 'submitted' then "
        "coalesce(ended_at, now()) end where job_key = %s and status = 'submitted'",
        (new_status, provider_status, message, new_status, job_key),
    )


def apply_job_events(conn: psycopg.Connection, events: Iterable[JobEvent]) -> list[str]:
    """Record pushed job state changes; returns the keys of jobs they ended. An event for a job
    the ledger does not know is logged and dropped."""
    ended: list[str] = []
    for event in events:
        row = conn.execute(
            "select job_key, status from provider_jobs where provider = 'bedrock' and job_id = %s",
            (event.job_arn,),
        ).fetchone()
        if row is None:
            log.warning(
                "job event for unknown Bedrock job %s (%s) dropped", event.job_arn, event.status
            )
            continue
        if event.state is JobState.IN_PROGRESS:
            continue
        mark_job_state(conn, row["job_key"], event.state, event.status, event.message)
        ended.append(row["job_key"])
    conn.commit()
    return ended


def ready_partitions(conn: psycopg.Connection) -> list[dict]:
    """Days with ended, uncollected jobs and no job still open, with the keys of those jobs."""
    return conn.execute(
        "select partition_day::text as day, array_agg(job_key order by job_key) as job_keys "
        "from provider_jobs j where status in ('ended', 'failed') and collected_at is null "
        "and not exists (select 1 from provider_jobs o where o.partition_day = j.partition_day "
        "and o.status in ('intent', 'submitted')) "
        "group by partition_day order by partition_day"
    ).fetchall()


def collect_partition(
    conn: psycopg.Connection,
    registry: ProviderRegistry,
    orgs: dict[str, OrgSpec],
    day: str,
    resubmit: bool = True,
) -> CollectSummary:
    summary = CollectSummary(day=day)
    # A run started by hand (not by the sensor) still sees jobs that ended since the last tick.
    poll_open_jobs(conn, registry, limit=1000, day=day)
    prices = registry.settings.prices
    with conn.transaction():  # leaves none open: each job below commits on its own
        jobs = conn.execute(
            "select * from provider_jobs where partition_day = %s "
            "and status in ('ended', 'failed') and collected_at is null order by job_key",
            (day,),
        ).fetchall()
    for job in jobs:
        with conn.transaction():
            if (
                conn.execute(
                    "select 1 from provider_jobs where job_key = %s and collected_at is null "
                    "for update skip locked",
                    (job["job_key"],),
                ).fetchone()
                is None
            ):
                continue
            rows = {
                r["request_id"]: r
                for r in conn.execute(
                    "select * from extraction_requests where job_key = %s", (job["job_key"],)
                )
            }
            if job["status"] == "failed":
                outcomes = (
                    RequestOutcome(
                        rid,
                        Outcome.RETRYABLE,
                        error=f"job failed: {job['message'] or job['provider_status']}",
                    )
                    for rid in rows
                )
            else:
                outcomes = registry.get(job["provider"], job["model"]).results(job["job_id"])
            seen: set[str] = set()
            chunk: list[tuple[RequestOutcome, dict]] = []
            with _OutcomeWriter(conn, summary) as writer:
                for outcome in outcomes:
                    request = rows.get(outcome.request_id)
                    if request is None:
                        log.warning(
                            "job %s returned unknown request id %s",
                            job["job_id"],
                            outcome.request_id,
                        )
                        continue
                    seen.add(outcome.request_id)
                    chunk.append((outcome, request))
                    if len(chunk) >= RESULT_CHUNK:
                        writer.write(judge_outcomes(chunk, orgs, job["job_key"], prices))
                        chunk = []
                writer.write(judge_outcomes(chunk, orgs, job["job_key"], prices))
            missing = [
                (
                    RequestOutcome(rid, Outcome.RETRYABLE, error="missing from job results"),
                    rows[rid],
                )
                for rid in sorted(rows.keys() - seen)
            ]
            record_outcomes(conn, missing, orgs, job["job_key"], prices)
            summary.missing += len(missing)
            conn.execute(
                "update provider_jobs set status = 'collected', collected_at = %s where job_key = %s",
                (datetime.now(UTC), job["job_key"]),
            )
            summary.jobs += 1
    with conn.transaction():
        summary.outcomes.add(schedule_retries(conn, day))
    if resubmit:
        summary.resubmitted = submit_partition(conn, registry, orgs, day)
    return summary


class _OutcomeWriter:
    """Writes judged chunks of outcomes on a thread of its own, one at a time and in order, so
    that the database stores one chunk while the next is read, validated and priced.

    It shares the collector's connection and transaction (psycopg serialises the connection's
    use); leaving the block waits for the last chunk and raises what its write raised.
    """

    def __init__(self, conn: psycopg.Connection, summary: CollectSummary) -> None:
        self.conn, self.summary = conn, summary
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outcome-writer")
        self.pending: Future[list[str]] | None = None

    def __enter__(self) -> _OutcomeWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            if exc_type is None:
                self._finish()
            elif self.pending is not None:
                wait([self.pending])  # the block's own error is the one to raise
        finally:
            self.pool.shutdown(wait=True)

    def write(self, judged: JudgedOutcomes) -> None:
        self._finish()
        self.pending = self.pool.submit(write_outcomes, self.conn, judged)

    def _finish(self) -> None:
        pending, self.pending = self.pending, None
        if pending is None:
            return
        for status in pending.result():
            if status == "duplicate":
                self.summary.duplicates += 1
            else:
                _count(self.summary.outcomes, status)


def _count(counts: OutcomeCounts, status: str) -> None:
    if hasattr(counts, status):
        setattr(counts, status, getattr(counts, status) + 1)


def partition_complete(conn: psycopg.Connection, day: str) -> bool:
    """Every request of the day has a final outcome (stored, reused or dead-lettered)."""
    row = conn.execute(
        "select count(*) as open from extraction_requests q where partition_day = %s and "
        "(status in ('pending', 'submitted') or (status in ('retryable', 'invalid') and not exists "
        "(select 1 from extraction_requests n where n.request_key = q.request_key "
        "and n.attempt > q.attempt)))",
        (day,),
    ).fetchone()
    return row["open"] == 0
