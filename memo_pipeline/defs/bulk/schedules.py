"""Schedules: the daily ingest of yesterday's landed data, and monthly reprocessing.

``daily_ingest`` runs early each morning (UTC) for yesterday's day, if anything landed for it.
``monthly_reprocessing`` runs on the first of the month and re-submits every day of the month
that just closed holding content whose stored schema version is no longer the current one:
planning skips work already done under the current version, so only the stale content is paid
for again.
"""

from datetime import timedelta

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from memo_pipeline.defs.bulk.jobs import bulk_submit_job
from memo_pipeline.defs.partitions import ingest_days
from memo_pipeline.defs.resources import MemoResource
from memo_pipeline.pipeline.reprocess import stale_days


@schedule(
    job=bulk_submit_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
def daily_ingest(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    day = (context.scheduled_execution_time - timedelta(days=1)).strftime("%Y-%m-%d")
    if not context.instance.has_dynamic_partition(ingest_days.name, day):
        return SkipReason(f"nothing landed for {day}")
    return RunRequest(run_key=f"daily:{day}", partition_key=day)


@schedule(
    job=bulk_submit_job,
    cron_schedule="0 4 1 * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
def monthly_reprocessing(context: ScheduleEvaluationContext, memo: MemoResource):
    end = context.scheduled_execution_time.date().replace(day=1)
    start = (end - timedelta(days=1)).replace(day=1)
    rt = memo.runtime
    with rt.connection() as conn:
        days = stale_days(conn, rt.orgs, rt.registry, start, end)
    if not days:
        return SkipReason(f"no content from {start} to {end} under an old schema version")
    stamp = context.scheduled_execution_time.strftime("%Y%m%d")
    return [RunRequest(run_key=f"reprocess:{stamp}:{day}", partition_key=day) for day in days]
