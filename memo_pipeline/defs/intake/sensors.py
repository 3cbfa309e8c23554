"""The intake sensors: async micro-batches, and bulk dispatch into today's partition.

``intake_async_sensor`` (every 15 s) marks the events the sync path must take next as queued
and requests one ``intake_process_job`` run per micro-batch, so an ``async`` write starts within
a minute. ``bulk_dispatch_sensor`` (every 30 s) adds the day of pending bulk writes as a
partition and requests ``bulk_submit_job`` for it once its pending work reaches the size or age
threshold; the submission only claims requests not yet in a job (``pipeline.submit``). Neither
sensor calls a provider. Cursors hold counts for the tick log; the ledger is the truth.
"""

import json
from datetime import UTC, datetime

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from memo_pipeline.defs.bulk.jobs import bulk_submit_job
from memo_pipeline.defs.intake.jobs import intake_process_job
from memo_pipeline.defs.partitions import ingest_days
from memo_pipeline.defs.resources import MemoResource
from memo_pipeline.intake.config import IntakeConfig
from memo_pipeline.intake.dispatch import bulk_dispatch, claim_sync_work, digest


@sensor(
    job=intake_process_job,
    minimum_interval_seconds=15,
    default_status=DefaultSensorStatus.RUNNING,
    description="Launches runs for new async writes, documents to chunk, escalated bulk writes.",
)
def intake_async_sensor(
    context: SensorEvaluationContext, memo: MemoResource
) -> SensorResult | SkipReason:
    config = IntakeConfig.from_env()
    now = datetime.now(UTC)
    with memo.runtime.connection() as conn:
        batches = claim_sync_work(conn, config, now)
    events = sum(len(b) for b in batches)
    cursor = json.dumps({"events": events, "runs": len(batches)}, sort_keys=True)
    if not batches:
        context.update_cursor(cursor)
        return SkipReason("no intake events waiting")
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=f"intake:{now.strftime('%Y%m%dT%H%M%S')}:{digest(batch)}",
                run_config={"ops": {"process_intake_events": {"config": {"event_ids": batch}}}},
                tags={"memo/intake_events": str(len(batch))},
            )
            for batch in batches
        ],
        cursor=cursor,
    )


@sensor(
    job=bulk_submit_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Submits pending bulk writes of a day once they reach a size or age threshold.",
)
def bulk_dispatch_sensor(
    context: SensorEvaluationContext, memo: MemoResource
) -> SensorResult | SkipReason:
    config = IntakeConfig.from_env()
    with memo.runtime.connection() as conn:
        due, pending = bulk_dispatch(conn, config, datetime.now(UTC))
    cursor = json.dumps(
        {"pending_days": len(pending), "pending_records": sum(p["records"] for p in pending)},
        sort_keys=True,
    )
    if not due:
        context.update_cursor(cursor)
        return SkipReason(
            f"{sum(p['records'] for p in pending)} bulk records pending over {len(pending)} "
            "day(s); none at the size or age threshold"
        )
    new_days = sorted(
        {d.day for d in due if not context.instance.has_dynamic_partition(ingest_days.name, d.day)}
    )
    for d in due:
        context.log.info("dispatching %s: %d records (%s)", d.day, d.records, d.why)
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=d.run_key,
                partition_key=d.day,
                tags={"memo/dispatch": d.why, "memo/bulk_records": str(d.records)},
            )
            for d in due
        ],
        dynamic_partitions_requests=[ingest_days.build_add_request(new_days)] if new_days else [],
        cursor=cursor,
    )
