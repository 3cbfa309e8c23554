"""``intake_process_job``: one micro-batch of intake events through the sync path.

The intake sensor launches it with the event ids in its config: ``async`` writes, documents to
chunk, bulk writes escalated for a deadline, and events that stalled. The work itself is
``memo_pipeline.intake.extract.process_events``, the same code a ``sync`` write runs inline.
"""

from dagster import Config, MetadataValue, OpExecutionContext, Output, in_process_executor, job, op

from memo_pipeline.defs.resources import MemoResource
from memo_pipeline.intake.config import IntakeConfig
from memo_pipeline.intake.extract import process_events


class IntakeBatchConfig(Config):
    event_ids: list[str]


@op(description="Extract (or chunk) a micro-batch of intake events and store them.")
def process_intake_events(
    context: OpExecutionContext, config: IntakeBatchConfig, memo: MemoResource
) -> Output:
    settings = IntakeConfig.from_env()
    summary = process_events(memo.runtime, settings, config.event_ids)
    context.log.info(
        "%d events (%d records, %d provider calls): %d stored, %d failed, %d already finished",
        summary.events,
        summary.records,
        summary.calls,
        len(summary.stored),
        len(summary.failed),
        summary.skipped,
    )
    for message in summary.held[:20]:
        context.log.warning(message)
    return Output(
        None,
        metadata={
            "events": summary.events,
            "records": summary.records,
            "provider_calls": summary.calls,
            "stored": len(summary.stored),
            "failed": len(summary.failed),
            "held_by_budget": len(summary.held),
            "documents": summary.documents,
            "failed_events": MetadataValue.json(summary.failed[:100]),
        },
    )


# One op: a step subprocess would only add a second interpreter start to the run's latency.
@job(
    description="Process intake events through the provider's sync API and Stage 2.",
    tags={"memo/path": "sync"},
    executor_def=in_process_executor,
)
def intake_process_job() -> None:
    process_intake_events()
