"""``batch_completion_sensor``: watches open provider jobs and starts collection runs.

Per tick it polls at most ``POLL_LIMIT`` open jobs (least recently polled first, so every job is
reached in turn) and requests one ``bulk_collect_job`` run per day whose jobs have all ended. The
ledger in PostgreSQL is the source of truth; the cursor only keeps what the last tick saw (counts), for the tick log.
Run keys name the day and the exact set of ended jobs, so a day is collected once per set of
jobs, and a day whose retries end later gets a new run.
"""

import hashlib
import json

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from memo_pipeline.defs.bulk.jobs import bulk_collect_job, bulk_submit_job
from memo_pipeline.defs.resources import MemoResource
from memo_pipeline.pipeline.collect import apply_job_events, poll_open_jobs, ready_partitions
from memo_pipeline.pipeline.submit import released_days
from memo_pipeline.providers.bedrock_events import JobEvent, JobEventQueue

POLL_LIMIT = 25


def _pushed_events(context: SensorEvaluationContext, rt) -> list[JobEvent]:
    """Bedrock job events from the configured queue; a queue problem only costs latency."""
    queue = JobEventQueue.from_config(rt.registry.config("bedrock"))
    if queue is None:
        return []
    try:
        return queue.drain(max_messages=POLL_LIMIT)
    except Exception as exc:  # noqa: BLE001 - polling remains the safety net
        context.log.warning("could not read Bedrock job events: %s", exc.__class__.__name__)
        return []


def collection_run_key(day: str, job_keys: list[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(job_keys)).encode()).hexdigest()[:16]
    return f"collect:{day}:{digest}"


@sensor(
    jobs=[bulk_collect_job, bulk_submit_job],
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Polls open provider jobs; collects a day once all its jobs ended.",
)
def batch_completion_sensor(
    context: SensorEvaluationContext, memo: MemoResource
) -> SensorResult | SkipReason:
    rt = memo.runtime
    with rt.connection() as conn:
        pushed = _pushed_events(context, rt)
        if pushed:
            apply_job_events(conn, pushed)
        polled = poll_open_jobs(conn, rt.registry, limit=POLL_LIMIT)
        ready = ready_partitions(conn)
        released = released_days(conn)
    cursor = json.dumps(
        {"polled": polled.polled, "ended": len(polled.ended), "ready": len(ready)}, sort_keys=True
    )
    for error in polled.errors:
        context.log.warning("poll failed: %s", error)
    if not ready and not released:
        context.update_cursor(cursor)
        return SkipReason(
            f"polled {polled.polled} open jobs ({len(polled.ended)} ended, "
            f"{len(polled.failed)} failed); no day has all its jobs ended"
        )
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=collection_run_key(r["day"], r["job_keys"]),
                partition_key=r["day"],
                job_name=bulk_collect_job.name,
                tags={"memo/ended_jobs": str(len(r["job_keys"]))},
            )
            for r in ready
        ]
        + [
            # Requests held back while a cache-priming batch ran can go now.
            RunRequest(
                run_key=f"release:{r['day']}:{r['prime_key']}",
                partition_key=r["day"],
                job_name=bulk_submit_job.name,
            )
            for r in released
        ],
        cursor=cursor,
    )
