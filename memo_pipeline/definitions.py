"""The code location: every asset, check, job, sensor and schedule of memo_pipeline."""

from dagster import Definitions

from memo_pipeline.defs.bulk.assets import (
    extraction_costs,
    extraction_requests,
    extraction_results,
    memories,
    provider_batches,
    raw_content,
)
from memo_pipeline.defs.bulk.jobs import bulk_collect_job, bulk_submit_job
from memo_pipeline.defs.bulk.schedules import daily_ingest, monthly_reprocessing
from memo_pipeline.defs.bulk.sensors import batch_completion_sensor
from memo_pipeline.defs.intake.jobs import intake_process_job
from memo_pipeline.defs.intake.sensors import bulk_dispatch_sensor, intake_async_sensor
from memo_pipeline.defs.resources import MemoResource

defs = Definitions(
    assets=[
        raw_content,
        extraction_requests,
        provider_batches,
        extraction_results,
        memories,
        extraction_costs,
    ],
    jobs=[bulk_submit_job, bulk_collect_job, intake_process_job],
    sensors=[batch_completion_sensor, intake_async_sensor, bulk_dispatch_sensor],
    schedules=[daily_ingest, monthly_reprocessing],
    resources={"memo": MemoResource()},
)
