"""The Dagster layer: definitions load without touching the network or the environment, the
batch completion sensor's tick (exact RunRequest and cursor) on a real ledger, and the schedules'
ticks at fixed times. Asset materializations are covered in test_pipeline."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from dagster import (
    RunRequest,
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
    instance_for_test,
)

from memo_pipeline.definitions import defs
from memo_pipeline.defs.bulk.schedules import daily_ingest, monthly_reprocessing
from memo_pipeline.defs.bulk.sensors import batch_completion_sensor, collection_run_key
from memo_pipeline.defs.partitions import ingest_days
from memo_pipeline.ingest.loaders import load
from memo_pipeline.pipeline.raw import land
from memo_pipeline_tests.conftest import EXAMPLES


@pytest.fixture
def instance():
    with instance_for_test() as inst:
        yield inst


def test_definitions_load_and_name_everything():
    repo = defs.get_repository_def()
    assert {j.name for j in repo.get_all_jobs()} >= {"bulk_submit_job", "bulk_collect_job"}
    assert {s.name for s in repo.sensor_defs} >= {"batch_completion_sensor"}
    assert {s.name for s in repo.schedule_defs} >= {"daily_ingest", "monthly_reprocessing"}
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys >= {
        "raw_content",
        "extraction_requests",
        "provider_batches",
        "extraction_results",
        "memories",
    }


def test_sensor_requests_collection_once_all_jobs_of_a_day_ended(runtime, memo, instance):
    with runtime.connection() as conn:
        days = sorted(land(runtime.settings, conn, load(EXAMPLES, "jsonl"), "examples").days)
    day = days[0]
    instance.add_dynamic_partitions(ingest_days.name, [day])

    context = build_sensor_context(instance=instance, resources={"memo": memo}, definitions=defs)
    assert isinstance(batch_completion_sensor(context), SkipReason)

    result = defs.resolve_job_def("bulk_submit_job").execute_in_process(
        partition_key=day, instance=instance, resources={"memo": memo}
    )
    assert result.success
    with runtime.connection() as conn:
        job_keys = [
            r["job_key"]
            for r in conn.execute(
                "select job_key from provider_jobs where partition_day = %s order by job_key",
                (day,),
            )
        ]
    assert job_keys

    context = build_sensor_context(
        instance=instance, resources={"memo": memo}, definitions=defs, cursor=None
    )
    tick = batch_completion_sensor(context)
    assert isinstance(tick, SensorResult)
    assert tick.run_requests == [
        RunRequest(
            run_key=collection_run_key(day, job_keys),
            partition_key=day,
            tags={"memo/ended_jobs": str(len(job_keys))},
            # The sensor targets two jobs; the daemon rejects a request that names neither.
            job_name="bulk_collect_job",
        )
    ]
    assert json.loads(tick.cursor) == {"ended": len(job_keys), "polled": len(job_keys), "ready": 1}

    # Once collected, the next tick has nothing to do.
    defs.resolve_job_def("bulk_collect_job").execute_in_process(
        partition_key=day, instance=instance, resources={"memo": memo}
    )
    later = batch_completion_sensor(
        build_sensor_context(
            instance=instance, resources={"memo": memo}, definitions=defs, cursor=tick.cursor
        )
    )
    assert isinstance(later, SkipReason)


def test_daily_ingest_asks_for_yesterday_only_when_it_has_data(instance):
    instance.add_dynamic_partitions(ingest_days.name, ["2026-11-23"])
    tick = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    context = build_schedule_context(instance=instance, scheduled_execution_time=tick)
    assert daily_ingest(context) == RunRequest(
        run_key="daily:2026-11-23", partition_key="2026-11-23"
    )
    quiet = build_schedule_context(
        instance=instance, scheduled_execution_time=datetime(2026, 11, 30, 3, tzinfo=UTC)
    )
    assert isinstance(daily_ingest(quiet), SkipReason)


def test_monthly_reprocessing_requests_days_under_an_old_schema_version(runtime, memo, instance):
    with runtime.connection() as conn:
        days = sorted(land(runtime.settings, conn, load(EXAMPLES, "jsonl"), "examples").days)
    instance.add_dynamic_partitions(ingest_days.name, days)
    for day in days:
        defs.resolve_job_def("bulk_submit_job").execute_in_process(
            partition_key=day, instance=instance, resources={"memo": memo}
        )
    tick = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)
    context = build_schedule_context(
        instance=instance, scheduled_execution_time=tick, resources={"memo": memo}
    )
    assert isinstance(monthly_reprocessing(context), SkipReason)

    # A new instruction changes the schema version of 'contacts': its November days are stale.
    orgs = runtime.orgs
    changed = orgs["acme"].model_copy(deep=True)
    changed.collections["contacts"].instructions += " Record hobbies too."
    runtime.__dict__["orgs"] = {**orgs, "acme": changed}
    try:
        context = build_schedule_context(
            instance=instance, scheduled_execution_time=tick, resources={"memo": memo}
        )
        requests = monthly_reprocessing(context)
    finally:
        runtime.__dict__["orgs"] = orgs
    assert [r.partition_key for r in requests] == days
    assert all(r.run_key.startswith("reprocess:20261201:") for r in requests)
