"""Jobs over the bulk assets: submission (up to the provider call) and collection (after it)."""

from dagster import AssetSelection, define_asset_job

from memo_pipeline.defs.bulk.assets import (
    extraction_costs,
    extraction_requests,
    extraction_results,
    memories,
    provider_batches,
    raw_content,
)
from memo_pipeline.defs.partitions import ingest_days

bulk_submit_job = define_asset_job(
    "bulk_submit_job",
    selection=AssetSelection.assets(raw_content, extraction_requests, provider_batches),
    partitions_def=ingest_days,
    description="Load a day's records, plan their requests and submit provider batches.",
)

bulk_collect_job = define_asset_job(
    "bulk_collect_job",
    selection=AssetSelection.assets(extraction_results, memories, extraction_costs),
    partitions_def=ingest_days,
    description="Collect a day's ended provider jobs, store their answers through Stage 2 and "
    "report what they cost.",
)
