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
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)

from memo_pipeline.costs import cost_markdown, format_usd
from memo_pipeline.defs.partitions import ingest_days
from memo_pipeline.defs.resources import MemoResource
from memo_pipeline.pipeline.collect import collect_partition
from memo_pipeline.pipeline.costs_ledger import (
    cost_report,
    forecast_items,
    forecast_markdown,
    planned_items,
)
from memo_pipeline.pipeline.plan import plan_partition
from memo_pipeline.pipeline.raw import load_partition
from memo_pipeline.pipeline.store import store_counts, store_differences, store_partition
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
    rows, forecasts = [], []
    with rt.connection() as conn:
        for day in context.partition_keys:
            s = plan_partition(conn, rt.registry, rt.orgs, day)
            day_forecasts = forecast_items(
                planned_items(conn, day), rt.registry, rt.settings.prices
            )
            forecasts += day_forecasts
            for f in day_forecasts:
                for warning in f.forecast.warnings if f.forecast else [f.error]:
                    context.log.warning("%s %s: %s", day, f.org, warning)
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
    priced = [f.forecast for f in forecasts if f.forecast is not None]
    return MaterializeResult(
        metadata={
            "planned": sum(r["planned"] for r in rows),
            "already_planned": sum(r["already_planned"] for r in rows),
            "reused_answers": sum(r["reused"] for r in rows),
            "seconds": round(time.monotonic() - started, 3),
            "by_day": _md_table(rows, ["day", "records", "planned", "already_planned", "reused"]),
            "forecast_sync_usd": float(sum(f.cost("sync") for f in priced)),
            "forecast_bulk_cached_usd": float(sum(f.cost("bulk_cached") for f in priced)),
            # Estimated before anything is submitted, from the offline token estimate.
            "forecast": MetadataValue.md(forecast_markdown(forecasts)),
            "forecast_json": MetadataValue.json([f.row() for f in forecasts][:200]),
        }
    )


@asset(**COMMON, deps=[extraction_requests], kinds={"anthropic", "openai", "bedrock"})
def provider_batches(context: AssetExecutionContext, memo: MemoResource) -> MaterializeResult:
    """Provider jobs: pending requests packed within each provider's limits and submitted once
    each (intent row committed before the provider call). Waiting happens in
    ``batch_completion_sensor``, never here."""
    rt = memo.runtime
    started = time.monotonic()
    jobs, held, sync, over_budget, budget_messages = [], 0, 0, 0, []
    with rt.connection() as conn:
        for day in context.partition_keys:
            s = submit_partition(conn, rt.registry, rt.orgs, day)
            jobs += s.jobs
            held += s.held_for_priming
            sync += s.sync_requests
            over_budget += s.held_for_budget
            budget_messages += s.budget_messages
            context.log.info(
                "%s: %d jobs, %d requests submitted, %d held for cache priming, "
                "%d held by the daily budget",
                day,
                len(s.jobs),
                s.submitted_requests,
                s.held_for_priming,
                s.held_for_budget,
            )
            for message in s.budget_messages:
                context.log.warning("%s: %s", day, message)
    return MaterializeResult(
        metadata={
            "jobs_submitted": len(jobs),
            "requests_submitted": sum(j["requests"] for j in jobs),
            "held_for_priming": held,
            "held_for_budget": over_budget,
            "budget": MetadataValue.md(
                "\n".join(f"- {m}" for m in budget_messages) or "no request held by a budget"
            ),
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
            description=(
                "PostgreSQL and LanceDB hold the same memories for the day: the same ids, "
                "each under the same entity."
            ),
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
            differences = store_differences(conn, rt.vectors, day)
            if pg != lance or any(differences.values()):
                mismatches.append(
                    {"day": day, "postgres": pg, "lancedb": lance}
                    | {k: {"count": len(v), "first": v[:5]} for k, v in differences.items()}
                )
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


class CostReportConfig(Config):
    """Settings of ``extraction_costs``."""

    # Below this share of provider-answered requests reading their prefix from the cache, the
    # cache_hit_rate check warns: with priming, only the first request of a prefix should miss.
    min_cache_hit_rate: float = 0.5


@asset(
    **COMMON,
    deps=[memories],
    kinds={"postgres"},
    check_specs=[
        AssetCheckSpec(
            "cache_hit_rate",
            asset="extraction_costs",
            blocking=False,
            description="Enough provider-answered requests read their static prefix from the "
            "prompt cache (threshold: min_cache_hit_rate in the run config).",
        )
    ],
)
def extraction_costs(
    context: AssetExecutionContext, memo: MemoResource, config: CostReportConfig
) -> MaterializeResult:
    """What the day's extraction cost: realised USD from provider-reported usage at the rates of
    the path taken, beside the same tokens on the sync API with no cache, per provider, model and
    path, with the cache hit rate and the day's forecast. Read from the cost ledger; re-runs
    change nothing."""
    rt = memo.runtime
    days = list(context.partition_keys)
    with rt.connection() as conn:
        report = cost_report(
            conn, rt.registry, rt.settings.prices, days, rt.settings.memo_home / "reports"
        )
    total = report.summary.total
    rate = report.cache_hit_rate
    day_rows = [
        {
            "day": g.key[0],
            "requests": g.requests,
            "realised": format_usd(g.realised_usd),
            "sync counterfactual": format_usd(g.counterfactual_usd),
            "ratio": "–" if g.ratio is None else f"{g.ratio:.3f}",
            "forecast (bulk + cache)": format_usd(report.forecast_bulk_cached.get(g.key[0], 0)),
        }
        for g in report.by_day.groups
    ]
    context.log.info(
        "%s: realised %s vs sync counterfactual %s (ratio %s), cache hit rate %s",
        ", ".join(days) if len(days) < 5 else f"{len(days)} days",
        format_usd(total.realised_usd),
        format_usd(total.counterfactual_usd),
        "–" if total.ratio is None else f"{total.ratio:.3f}",
        "–" if rate is None else f"{rate:.1%}",
    )
    if report.unpriced:
        context.log.warning(
            "%d outcomes have no price; add their models to prices.yaml", report.unpriced
        )
    return MaterializeResult(
        metadata={
            "realised_usd": float(total.realised_usd),
            "counterfactual_usd": float(total.counterfactual_usd),
            "saving_usd": float(total.saving_usd),
            "ratio": total.ratio,
            "cache_hit_rate": rate,
            "requests": total.requests,
            "unpriced_requests": report.unpriced,
            "by_provider_model_path": MetadataValue.md(cost_markdown(report.summary)),
            "by_day": _md_table(day_rows, list(day_rows[0]) if day_rows else ["day"]),
            "chart": MetadataValue.md(report.chart_markdown()),
            "chart_file": MetadataValue.path(str(report.chart)),
        },
        check_results=[
            AssetCheckResult(
                check_name="cache_hit_rate",
                passed=rate is None or rate >= config.min_cache_hit_rate,
                severity=AssetCheckSeverity.WARN,
                metadata={
                    "cache_hit_rate": rate,
                    "min_cache_hit_rate": config.min_cache_hit_rate,
                    "requests_answered": total.requests,
                },
            )
        ],
    )
