"""``memo-pipeline run``: load input and drive every day through the bulk path in one process.

This is what ``make run`` calls. It lands the input, adds one partition per day, then runs the
same Dagster jobs the UI runs, in-process and recorded in the instance under ``$MEMO_HOME``:
``bulk_submit_job`` for each day, then the sensor's own logic (poll the open jobs, find days whose
jobs have all ended) and ``bulk_collect_job`` for each ready day, until every day is complete or
the timeout passes. Nothing here waits inside an asset: the loop is the sensor's, run eagerly.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from dagster import DagsterInstance

from memo_pipeline.config import Settings
from memo_pipeline.defs.instance import prepare_instance
from memo_pipeline.defs.partitions import ingest_days
from memo_pipeline.defs.resources import MemoResource, MemoRuntime
from memo_pipeline.ingest.loaders import LoadOptions, load
from memo_pipeline.pipeline.collect import partition_complete, poll_open_jobs, ready_partitions
from memo_pipeline.pipeline.raw import land

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    days: list[str] = field(default_factory=list)
    landed_records: int = 0
    load_errors: int = 0
    failed_runs: list[str] = field(default_factory=list)
    incomplete_days: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed_runs and not self.incomplete_days


def _execute(job_name: str, day: str, memo: MemoResource, instance: DagsterInstance) -> bool:
    from memo_pipeline.definitions import defs

    job = defs.resolve_job_def(job_name)
    result = job.execute_in_process(
        partition_key=day,
        instance=instance,
        resources={"memo": memo},
        raise_on_error=False,
        tags={"memo/launched_by": "memo-pipeline run"},
    )
    if not result.success:
        log.error("%s for %s failed (run %s)", job_name, day, result.run_id)
    return result.success


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
    instance.add_dynamic_partitions(ingest_days.name, report.days)
    for day in report.days:
        if not _execute("bulk_submit_job", day, memo, instance):
            report.failed_runs.append(f"bulk_submit_job {day}")

    pending = set(report.days)
    deadline = time.monotonic() + timeout_seconds
    while pending and time.monotonic() < deadline:
        with runtime.connection() as conn:
            poll_open_jobs(conn, runtime.registry, limit=500)
            ready = [r["day"] for r in ready_partitions(conn)]
            for day in list(pending):
                if day not in ready and partition_complete(conn, day):
                    pending.discard(day)
        for day in ready:
            if not _execute("bulk_collect_job", day, memo, instance):
                report.failed_runs.append(f"bulk_collect_job {day}")
                pending.discard(day)
        if not ready and pending:
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
    for day in unapplied:
        if not _execute("bulk_collect_job", day, memo, instance):
            report.failed_runs.append(f"bulk_collect_job {day}")
    report.incomplete_days = sorted(pending)
    report.seconds = time.monotonic() - started
    return report
