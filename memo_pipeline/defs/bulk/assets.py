"""The bulk path as partitioned assets; each asset is a thin call into ``memo_pipeline.pipeline``.

Every asset handles all keys of its run (``context.partition_keys``), so one run can carry one
day or a whole backfill, and every asset is safe to re-run: the ledger makes a second
materialization of the same day submit nothing and store nothing twice.
"""

import time

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from memo_pipeline.defs.partitions import ingest_days
from memo_pipeline.defs.resources import MemoResource
from memo_pipeline.pipeline.collect import collect_partition
from memo_pipeline.pipeline.plan import plan_partition
from memo_pipeline.pipeline.raw import load_partition
from memo_pipeline.pipeline.store import store_counts, store_partition
from memo_pipeline.pipeline.submit import submit_partition

GROUP = "bulk_extraction"
COMMON = {
    "partitions_def": ingest_days,
    "group_name": GROUP,
    "backfill_policy": BackfillPolicy.single_run(),
}


def _md_table(rows: list[dict], columns: list[str]) -> MetadataValue:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return MetadataValue.md("\n".join(lines))


@asset(**COMMON, kinds={"postgres"})
def raw_content(context: AssetExecutionContext, memo: MemoResource) -> MaterializeResult:
    """Input records of a day: landing-zone lines upserted into ``content_records`` (one row per
    record, keyed by org and source id); bad lines go to ``dead_letters`` with file, line and
    reason."""
    rt = memo.runtime
    started = time.monotonic()
    rows = []
    with rt.connection() as conn:
        for day in context.partition_keys:
            s = load_partition(rt.settings, conn, rt.orgs, day)
            rows.append(vars(s))
            context.log.info(
                "%s: %d lines from %d files, %d stored, %d dead-lettered",
                day,
                s.lines,
                s.files,
                s.stored,
                s.dead_letters,
            )
    return MaterializeResult(
        metadata={
            "records": sum(r["stored"] for r in rows),
            "dead_letters": sum(r["dead_letters"] for r in rows),
            "files": sum(r["files"] for r in rows),
            "seconds": round(time.monotonic() - started, 3),
            "by_day": _md_table(rows, ["day", "files", "lines", "stored", "dead_letters"]),
        }
    )


@asset(**COMMON, deps=[raw_content], kinds={"postgres"})
def extraction_requests(context: AssetExecutionContext, memo: MemoResource) -> MaterializeResult:
    """The request ledger: one row per record, schema version and model, rendered with the
    collection's cached static prefix. Content already extracted is skipped."""
    rt = memo.runtime
    started = time.monotonic()
    rows = []
    with rt.connection() as conn:
        for day in context.partition_keys:
            s = plan_partition(conn, rt.registry, rt.orgs, day)
            rows.append(
                {
                    "day": day,
                    "records": s.records,
                    "planned": s.planned,
                    "already_planned": s.already_planned,
                    "reused": s.reused,
                }
            )
            context.log.info(
                "%s: %d records, %d new requests, %d already planned, %d reused",
                day,
                s.records,
                s.planned,
                s.already_planned,
                s.reused,
            )
    return MaterializeResult(
        metadata={
            "planned": sum(r["planned"] for r in rows),
            "already_planned": sum(r["already_planned"] for r in rows),
            "reused_answers": sum(r["reused"] for r in rows),
            "seconds": round(time.monotonic() - started, 3),
            "by_day": _md_table(rows, ["day", "records", "planned", "already_planned", "reused"]),
        }
    )


@asset(**COMMON, deps=[extraction_requests], kinds={"anthropic", "openai", "bedrock"})
def provider_batches(context: AssetExecutionContext, memo: MemoResource) -> MaterializeResult:
    """Provider jobs: pending requests packed within each provider's limits and submitted once
    each (intent row committed before the provider call). Waiting happens in
    ``batch_completion_sensor``, never here."""
    rt = memo.runtime
    started = time.monotonic()
    jobs, held, sync = [], 0, 0
    with rt.connection() as conn:
        for day in context.partition_keys:
            s = submit_partition(conn, rt.registry, rt.orgs, day)
            jobs += s.jobs
            held += s.held_for_priming
            sync += s.sync_requests
            context.log.info(
                "%s: %d jobs, %d requests submitted, %d held for cache priming",
                day,
                len(s.jobs),
                s.submitted_requests,
                s.held_for_priming,
            )
    return MaterializeResult(
        metadata={
            "jobs_submitted": len(jobs),
            "requests_submitted": sum(j["requests"] for j in jobs),
            "held_for_priming": held,
            "sync_requests": sync,
            "job_ids": MetadataValue.json([j["job_id"] for j in jobs][:100]),
            "jobs": _md_table(
                jobs[:50],
                [
                    "provider",
                    "job_id",
                    "model",
                    "requests",
                    "bytes",
                    "submitted_at",
                    "priming",
                    "console_url",
                ],
            ),
            "seconds": round(time.monotonic() - started, 3),
        }
    )


@asset(
    **COMMON,
    deps=[provider_batches],
    kinds={"postgres"},
    check_specs=[
        AssetCheckSpec(
            "every_request_accounted_for",
            asset="extraction_results",
            blocking=True,
            description="Every request of a collected job has a result or a recorded failure.",
        )
    ],
)
def extraction_results(context: AssetExecutionContext, memo: MemoResource) -> MaterializeResult:
    """Per-request outcomes of the day's ended jobs, joined on request id: succeeded, retryable
    (resubmitted as a new job for the same day) or permanent (dead-lettered), with usage."""
    rt = memo.runtime
    started = time.monotonic()
    rows = []
    with rt.connection() as conn:
        for day in context.partition_keys:
            s = collect_partition(conn, rt.registry, rt.orgs, day)
            resub = s.resubmitted
            rows.append(
                {
                    "day": day,
                    "jobs": s.jobs,
                    **vars(s.outcomes),
                    "missing": s.missing,
                    "resubmitted_jobs": len(resub.jobs) if resub else 0,
                }
            )
            context.log.info("%s: collected %d jobs: %s", day, s.jobs, vars(s.outcomes))
        unaccounted = conn.execute(
            "select count(*) as n from extraction_requests q join provider_jobs j using (job_key) "
            "where j.status = 'collected' and q.partition_day = any(%s::date[]) "
            "and not exists (select 1 from request_results r where r.request_id = q.request_id)",
            (list(context.partition_keys),),
        ).fetchone()["n"]
    return MaterializeResult(
        metadata={
            "jobs_collected": sum(r["jobs"] for r in rows),
            "succeeded": sum(r["succeeded"] for r in rows),
            "retried": sum(r["retried"] for r in rows),
            "dead_lettered": sum(r["dead"] for r in rows),
            "seconds": round(time.monotonic() - started, 3),
            "by_day": _md_table(
                rows,
                [
                    "day",
                    "jobs",
                    "succeeded",
                    "invalid",
                    "retryable",
                    "permanent",
                    "retried",
                    "dead",
                    "missing",
                    "resubmitted_jobs",
                ],
            ),
        },
        check_results=[
            AssetCheckResult(
                check_name="every_request_accounted_for",
                passed=unaccounted == 0,
                severity=AssetCheckSeverity.ERROR,
                metadata={"unaccounted_requests": unaccounted},
            )
        ],
    )


@asset(
    **COMMON,
    deps=[extraction_results],
    kinds={"postgres", "lancedb"},
    check_specs=[
        AssetCheckSpec(
            "stores_agree",
            asset="memories",
            blocking=True,
            description="PostgreSQL and LanceDB hold the same number of memories for the day.",
        )
    ],
)
def memories(context: AssetExecutionContext, memo: MemoResource) -> MaterializeResult:
    """Stage 2: validated answers become entities, property values with history, de-duplicated
    memories and edges in PostgreSQL, and memory vectors in LanceDB (upserts on deterministic
    ids; memories merge across days, so rows are never deleted and re-inserted wholesale)."""
    rt = memo.runtime
    started = time.monotonic()
    rows, mismatches = [], []
    with rt.connection() as conn:
        for day in context.partition_keys:
            s = store_partition(conn, rt.orgs, rt.vectors, rt.embedder, day)
            pg, lance = store_counts(conn, rt.vectors, day)
            rows.append(
                {
                    "day": day,
                    "answers": s.answers,
                    "new": s.stage2.memories_new,
                    "merged": s.stage2.memories_merged,
                    "dropped": s.stage2.memories_dropped,
                    "vectors_written": s.vectors_written,
                    "postgres": pg,
                    "lancedb": lance,
                }
            )
            if pg != lance:
                mismatches.append(day)
            context.log.info(
                "%s: %d answers applied, %d new memories, %d merged; pg=%d lance=%d",
                day,
                s.answers,
                s.stage2.memories_new,
                s.stage2.memories_merged,
                pg,
                lance,
            )
    return MaterializeResult(
        metadata={
            "answers_applied": sum(r["answers"] for r in rows),
            "memories_new": sum(r["new"] for r in rows),
            "memories_merged": sum(r["merged"] for r in rows),
            "memories_total": sum(r["postgres"] for r in rows),
            "seconds": round(time.monotonic() - started, 3),
            "by_day": _md_table(
                rows,
                [
                    "day",
                    "answers",
                    "new",
                    "merged",
                    "dropped",
                    "vectors_written",
                    "postgres",
                    "lancedb",
                ],
            ),
        },
        check_results=[
            AssetCheckResult(
                check_name="stores_agree",
                passed=not mismatches,
                severity=AssetCheckSeverity.ERROR,
                metadata={"days_disagreeing": MetadataValue.json(mismatches)},
            )
        ],
    )
