"""``memo-pipeline run``: load input and drive every day through the bulk path in one process.

This is what ``make run`` calls. It lands the input, adds one partition per day, then runs the
same Dagster jobs the UI runs, in-process and recorded in the instance under ``$MEMO_HOME``:
``bulk_submit_job`` for each day, then the sensor's own logic (poll the open jobs, find days whose
jobs have all ended) and ``bulk_collect_job`` for each ready day, until every day is complete,
nothing is left in flight that could complete one (no provider job open or uncollected: the rest
is held by the daily budget or waits below a job minimum), or the timeout passes. Nothing here
waits inside an asset: the loop is the sensor's, run eagerly.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from dagster import DagsterInstance

from memo_pipeline.config import Settings
from memo_pipeline.defs.instance import prepare_instance
from memo_pipeline.defs.partitions import ingest_days
from memo_pipeline.defs.resources import MemoResource, MemoRuntime
from memo_pipeline.ingest.loaders import LoadOptions, load
from memo_pipeline.pipeline.collect import partition_complete, poll_open_jobs, ready_partitions
from memo_pipeline.pipeline.raw import land
from memo_pipeline.pipeline.submit import released_days

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    days: list[str] = field(default_factory=list)
    landed_records: int = 0
    load_errors: int = 0
    failed_runs: list[str] = field(default_factory=list)
    incomplete_days: list[str] = field(default_factory=list)
    # Why the incomplete days' remaining requests wait: day -> "<count> <reason>" lines.
    waiting: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed_runs and not self.incomplete_days


MAX_DAYS_PER_RUN = 31


def _segments(days: list[str], instance: DagsterInstance) -> list[list[str]]:
    """Split days into runs of neighbouring keys (in the partition set's order), so that one
    range run covers exactly the days asked for and nothing else."""
    order = {key: i for i, key in enumerate(instance.get_dynamic_partitions(ingest_days.name))}
    wanted = sorted(set(days), key=lambda d: order[d])
    segments: list[list[str]] = []
    for day in wanted:
        if (
            segments
            and order[day] == order[segments[-1][-1]] + 1
            and len(segments[-1]) < MAX_DAYS_PER_RUN
        ):
            segments[-1].append(day)
        else:
            segments.append([day])
    return segments


def _execute(
    job_name: str, days: list[str], memo: MemoResource, instance: DagsterInstance
) -> list[str]:
    """Run a job over the given days (range runs of neighbouring days); returns failed days."""
    from memo_pipeline.definitions import defs

    job = defs.resolve_job_def(job_name)
    failed: list[str] = []
    for segment in _segments(days, instance):
        tags = {"memo/launched_by": "memo-pipeline run"}
        kwargs = {}
        if len(segment) == 1:
            kwargs["partition_key"] = segment[0]
        else:
            tags["dagster/asset_partition_range_start"] = segment[0]
            tags["dagster/asset_partition_range_end"] = segment[-1]
        result = job.execute_in_process(
            instance=instance, resources={"memo": memo}, raise_on_error=False, tags=tags, **kwargs
        )
        if not result.success:
            log.error(
                "%s for %s..%s failed (run %s)", job_name, segment[0], segment[-1], result.run_id
            )
            failed += segment
    return failed


def _in_flight(conn: psycopg.Connection) -> bool:
    """Whether any provider job is still open or ended and uncollected (in any day: a priming
    job of one day can hold back requests of another)."""
    return conn.execute(
        "select exists (select 1 from provider_jobs where status in ('intent', 'submitted') "
        "or (status in ('ended', 'failed') and collected_at is null)) as busy"
    ).fetchone()["busy"]


def _waiting(conn: psycopg.Connection, days: list[str]) -> dict[str, list[str]]:
    """Per day, how many requests are still pending and why (the spend guard's message, a job
    minimum)."""
    waiting: dict[str, list[str]] = {}
    for row in conn.execute(
        "select partition_day::text as day, coalesce(reason, 'no reason recorded') as reason, "
        "count(*) as n from extraction_requests where partition_day = any(%s::date[]) "
        "and status = 'pending' group by 1, 2 order by 1, 3 desc",
        (days,),
    ):
        waiting.setdefault(row["day"], []).append(f"{row['n']} pending: {row['reason']}")
    return waiting


def run_bulk(
    settings: Settings,
    data: Path,
    fmt: str,
    options: LoadOptions,
    timeout_seconds: float = 3600,
    poll_interval: float = 2.0,
) -> RunReport:
    started = time.monotonic()
    report = RunReport()
    runtime = MemoRuntime(settings)
    prepare_instance(settings, runtime.urls)
    memo = MemoResource(memo_home=str(settings.memo_home))
    memo._runtime = runtime  # noqa: SLF001 - share the already-started runtime in this process

    with runtime.connection() as conn:
        landing = land(settings, conn, load(data, fmt, options), f"{fmt}:{data.resolve()}")
    report.days = sorted(landing.days)
    report.landed_records = landing.records
    report.load_errors = landing.errors
    log.info(
        "landed %d records over %d days (%d could not be loaded)",
        landing.records,
        len(report.days),
        landing.errors,
    )

    instance = DagsterInstance.get()
    known = set(instance.get_dynamic_partitions(ingest_days.name))
    instance.add_dynamic_partitions(ingest_days.name, [d for d in report.days if d not in known])
    unsubmitted = _execute("bulk_submit_job", report.days, memo, instance)
    report.failed_runs += [f"bulk_submit_job {d}" for d in unsubmitted]

    pending = set(report.days) - set(unsubmitted)
    submitted: set[tuple[str, str]] = set()  # (day, priming job key) releases submitted
    deadline = time.monotonic() + timeout_seconds
    while pending and time.monotonic() < deadline:
        with runtime.connection() as conn:
            poll_open_jobs(conn, runtime.registry, limit=500)
            ready = [r["day"] for r in ready_partitions(conn)]
            for day in list(pending):
                if day not in ready and partition_complete(conn, day):
                    pending.discard(day)
        for day in _execute("bulk_collect_job", ready, memo, instance):
            report.failed_runs.append(f"bulk_collect_job {day}")
            pending.discard(day)
        # Each release once, as the sensor keys its runs on the priming job: the budget may
        # hold what a priming job released, and the day then stays released.
        with runtime.connection() as conn:
            releases = {(r["day"], r["prime_key"]) for r in released_days(conn)} - submitted
        submitted |= releases
        released = sorted({day for day, _ in releases})
        for day in _execute("bulk_submit_job", released, memo, instance):
            report.failed_runs.append(f"bulk_submit_job {day}")
            pending.discard(day)
        if not ready and pending:
            with runtime.connection() as conn:
                if not _in_flight(conn):
                    report.waiting = _waiting(conn, sorted(pending))
                    break
            if not released:
                time.sleep(poll_interval)
    # Days whose answers arrived without a job (sync remainders) still need Stage 2.
    with runtime.connection() as conn:
        unapplied = [
            r["day"]
            for r in conn.execute(
                "select distinct q.partition_day::text as day from request_results r "
                "join extraction_requests q using (request_id) "
                "where r.outcome = 'succeeded' and r.applied_at is null"
            )
        ]
    report.failed_runs += [
        f"bulk_collect_job {d}" for d in _execute("bulk_collect_job", unapplied, memo, instance)
    ]
    report.incomplete_days = sorted(pending)
    report.seconds = time.monotonic() - started
    return report
