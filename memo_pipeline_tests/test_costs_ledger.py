"""The cost ledger on the real embedded PostgreSQL: every recorded outcome priced from its
reported usage at the rates of the path it took (a provider job: batch; no job: sync), the sync
counterfactual beside it, reused answers at zero, exact sums per day, org, collection, provider,
model and path, outcomes of unpriced models kept without a cost, and where the prices override
file is found. Over the real SDKs and the emulator, each provider's own usage fields (Anthropic
cache writes by lifetime, OpenAI cached tokens inside prompt tokens, Bedrock's Claude body) end
up priced the same way.

Leaves out: the price arithmetic itself (test_costs) and the spend guard (test_spend_guard).
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from memo_pipeline.config import Settings
from memo_pipeline.costs import request_cost, sync_counterfactual
from memo_pipeline.pipeline.collect import collect_partition, partition_complete, poll_open_jobs
from memo_pipeline.pipeline.costs_ledger import cost_totals, unpriced_requests
from memo_pipeline.pipeline.outcomes import record_outcome
from memo_pipeline.pipeline.plan import plan_partition
from memo_pipeline.pipeline.raw import land, load_partition
from memo_pipeline.pipeline.registry import ProviderRegistry
from memo_pipeline.pipeline.store import store_partition
from memo_pipeline.pipeline.submit import submit_partition
from memo_pipeline.providers.base import Outcome, RequestOutcome, Usage
from memo_pipeline.records import ContentRecord
from memo_pipeline_tests.emulator_fixtures import BUCKET, ROLE_ARN

pytest_plugins = ["memo_pipeline_tests.conftest_emulator"]

DAY = "2026-11-30"
NEXT_DAY = "2026-12-01"
COMPANIES = ["Northwind", "Globex", "Initech", "Bluefin"]


def records(count: int, day: str = DAY, start: int = 0, source: str = "cost"):
    out = []
    for i in range(start, start + count):
        company = COMPANIES[i % len(COMPANIES)]
        email = f"person{i}@{company.lower()}.example"
        out.append(
            ContentRecord(
                source_id=f"{source}-{i:04d}",
                identifier=email,
                kind="email",
                source_ts=datetime.fromisoformat(f"{day}T09:00:{i % 60:02d}+00:00"),
                content=f"From: Person {i} <{email}>\n\nI lead procurement at {company} Ltd and "
                f"we will renew the analytics contract in March. Ticket {i}.",
            )
        )
    return out


def run_day(runtime, settings, items, day: str = DAY) -> ProviderRegistry:
    registry = ProviderRegistry(settings)
    with runtime.connection() as conn:
        land(settings, conn, iter(items), f"generated-{day}-{len(items)}")
        load_partition(settings, conn, settings.orgs, day)
        plan_partition(conn, registry, settings.orgs, day)
        submit_partition(conn, registry, settings.orgs, day)
        for _ in range(8):
            poll_open_jobs(conn, registry, limit=100, day=day)
            collect_partition(conn, registry, settings.orgs, day)
            if partition_complete(conn, day):
                break
        assert partition_complete(conn, day)
    return registry


def priced_rows(runtime):
    with runtime.connection() as conn:
        return conn.execute(
            "select r.*, q.provider, q.model, q.path as planned_path from request_results r "
            "join extraction_requests q using (request_id) order by r.request_id"
        ).fetchall()


def usage_of(row) -> Usage:
    return Usage(
        input_tokens=row["input_tokens"],
        cache_write_5m_tokens=row["cache_write_5m_tokens"],
        cache_write_1h_tokens=row["cache_write_1h_tokens"],
        cache_read_tokens=row["cache_read_tokens"],
        output_tokens=row["output_tokens"],
    )


def assert_priced_by_path(rows, prices) -> None:
    for row in rows:
        price = prices.rate(row["provider"], row["model"])
        path = "batch" if row["job_key"] else "sync"
        usage = usage_of(row)
        assert row["realised_usd"] == request_cost(usage, price, path), row["request_id"]
        assert row["counterfactual_usd"] == sync_counterfactual(usage, price), row["request_id"]


def test_batch_and_sync_outcomes_are_priced_at_the_path_they_took(runtime):
    # Six requests in a job; then a local provider whose batch minimum is above one day's work,
    # so the next day goes through the sync path as a below-minimum remainder.
    run_day(runtime, runtime.settings, records(6))
    settings = dataclasses.replace(
        runtime.settings, provider_overrides={"local": {"min_requests_per_batch": 50}}
    )
    run_day(runtime, settings, records(3, NEXT_DAY, start=100), NEXT_DAY)

    rows = priced_rows(runtime)
    assert len(rows) == 9
    assert_priced_by_path(rows, runtime.settings.prices)
    batch = [r for r in rows if r["job_key"]]
    sync = [r for r in rows if not r["job_key"]]
    assert len(batch) == 6 and len(sync) == 3
    assert all(r["realised_usd"] < r["counterfactual_usd"] for r in batch)
    # Sync calls pay list price. The first writes the prefix to the cache, a little dearer than
    # its counterfactual; the two after it read the prefix and cost less than theirs.
    writers = [r for r in sync if r["cache_write_1h_tokens"] > 0]
    readers = [r for r in sync if r["cache_read_tokens"] > 0]
    assert len(writers) == 1 and len(readers) == 2 and not writers[0]["cache_read_tokens"]
    assert writers[0]["realised_usd"] > writers[0]["counterfactual_usd"]
    assert all(r["realised_usd"] < r["counterfactual_usd"] for r in readers)

    with runtime.connection() as conn:
        routed = conn.execute(
            "select status, path, reason from extraction_requests where request_id = any(%s)",
            ([r["request_id"] for r in sync],),
        ).fetchall()
        by_path = {g.key: g for g in cost_totals(conn, by=("path",)).groups}
        by_day = cost_totals(conn, DAY, by=("day", "provider", "model"))
    assert set(by_path) == {("batch",), ("sync",)}
    assert by_path[("batch",)].realised_usd == sum(r["realised_usd"] for r in batch)
    assert by_path[("sync",)].ratio > by_path[("batch",)].ratio
    assert [g.key for g in by_day.groups] == [(DAY, "local", "offline-heuristic-1")]
    assert by_day.total.requests == 6
    # Five of the six read the prefix written by the first one in the job.
    assert by_day.total.requests_with_cache_read == 5
    # Why they took the sync path survives their answer.
    assert [(r["status"], r["path"]) for r in routed] == [("succeeded", "sync")] * 3
    assert all("below the 50-request batch minimum" in r["reason"] for r in routed)


def test_a_record_edited_at_its_source_is_extracted_again_not_given_its_old_answer(runtime):
    (first,) = records(1)
    run_day(runtime, runtime.settings, [first])
    # The same source id again, with new content a day later: an edit, not identical content.
    edited = first.model_copy(
        update={
            "content": "From: Person 0 <person0@acme.example>\n\nUma Vale of Yankee Ltd "
            "cancelled the trial.",
            "source_ts": datetime.fromisoformat(f"{NEXT_DAY}T09:00:00+00:00"),
        }
    )
    run_day(runtime, runtime.settings, [edited], NEXT_DAY)

    rows = priced_rows(runtime)
    assert [r["service_tier"] == "reused" for r in rows] == [False, False]
    with runtime.connection() as conn:
        for day in (DAY, NEXT_DAY):
            store_partition(conn, runtime.settings.orgs, runtime.vectors, runtime.embedder, day)
        conn.commit()
        current = conn.execute(
            "select text from memories where superseded_by is null and %s = any(source_record_ids)",
            (first.record_id,),
        ).fetchall()
    # What the edit states; nothing of the old content (procurement, the March renewal) is left.
    texts = [m["text"] for m in current]
    assert any("Uma Vale" in t for t in texts), texts
    assert not any("renew" in t or "procurement" in t for t in texts), texts


def test_reused_answers_cost_nothing_and_totals_group_every_way(runtime):
    run_day(runtime, runtime.settings, records(4))
    # The same content again under new source ids on the next day: answered from the ledger.
    run_day(runtime, runtime.settings, records(4, NEXT_DAY, source="again"), NEXT_DAY)

    with runtime.connection() as conn:
        by_path = {g.key: g for g in cost_totals(conn, by=("day", "path")).groups}
        everything = cost_totals(conn, by=("day", "org", "collection", "provider", "model", "path"))
        both_days = cost_totals(conn, [DAY, NEXT_DAY], by=("org",))
        with pytest.raises(ValueError, match="cannot total costs by"):
            cost_totals(conn, by=("weekday",))
    reused = by_path[(NEXT_DAY, "reused")]
    assert reused.requests == 4
    assert reused.realised_usd == 0 and reused.counterfactual_usd == 0
    assert (DAY, "batch") in by_path
    assert sum(g.realised_usd for g in everything.groups) == everything.total.realised_usd
    assert everything.total.realised_usd == by_path[(DAY, "batch")].realised_usd
    assert both_days.total == everything.total
    assert everything.total.counterfactual_usd > 2 * everything.total.realised_usd


def test_an_unpriced_model_is_recorded_without_a_cost(runtime, caplog):
    run_day(runtime, runtime.settings, records(1))
    with runtime.connection() as conn:
        request = conn.execute("select * from extraction_requests").fetchone()
        conn.execute("delete from request_results")
        request = {**request, "model": "no-such-model"}
        with caplog.at_level(logging.WARNING, "memo_pipeline.pipeline.costs_ledger"):
            record_outcome(
                conn,
                RequestOutcome(
                    request["request_id"], Outcome.RETRYABLE, usage=Usage(10, 0, 0, 0, 5)
                ),
                request,
                runtime.orgs,
                job_key=None,
                prices=runtime.settings.prices,
            )
        row = conn.execute(
            "select realised_usd, counterfactual_usd from request_results"
        ).fetchone()
        assert row == {"realised_usd": None, "counterfactual_usd": None}
        assert unpriced_requests(conn, DAY) == 1
    assert "no price for provider 'local' model 'no-such-model'" in caplog.text


def test_prices_file_comes_from_the_environment_then_memo_home(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MEMO_PRICES_FILE", raising=False)
    settings = Settings.from_env(memo_home=tmp_path)
    assert settings.prices_file is None
    assert settings.prices.rate("local", "offline-heuristic-1").input == Decimal("0.10")

    (tmp_path / "prices.yaml").write_text(
        "providers: {local: {offline-heuristic-1: {input: 0.2, as_of: 2026-12-04}}}\n"
    )
    settings = Settings.from_env(memo_home=tmp_path)
    assert settings.prices_file == tmp_path / "prices.yaml"
    assert settings.prices.rate("local", "offline-heuristic-1").input == Decimal("0.2")

    named = tmp_path / "elsewhere.yaml"
    named.write_text("providers: {local: {offline-heuristic-1: {output: 9}}}\n")
    monkeypatch.setenv("MEMO_PRICES_FILE", str(named))
    settings = Settings.from_env(memo_home=tmp_path)
    assert settings.prices_file == named
    assert settings.prices.rate("local", "offline-heuristic-1").output == Decimal(9)
    assert settings.prices.rate("local", "offline-heuristic-1").input == Decimal("0.10")


def emulator_settings(runtime, emulator, provider: str):
    overrides = {
        "anthropic": {"base_url": emulator.anthropic_base_url, "max_retries": 0},
        "openai": {"base_url": emulator.openai_base_url, "max_retries": 0},
        "bedrock": {
            "endpoint_url": emulator.bedrock_endpoint_url,
            "runtime_endpoint_url": emulator.bedrock_endpoint_url,
            "s3_endpoint_url": emulator.s3_url,
            "bucket": BUCKET,
            "role_arn": ROLE_ARN,
            "region": "us-east-1",
            "min_requests_per_batch": 1,
            "prime_cache": True,
            "max_retries": 0,
        },
    }
    return dataclasses.replace(
        runtime.settings, provider_overrides=overrides, provider_override=provider
    )


@pytest.mark.parametrize("provider", ["anthropic", "openai", "bedrock"])
def test_provider_reported_usage_is_priced_over_the_real_sdks(runtime, emulator, emu, provider):
    emu.config(bedrock_min_records=1)
    settings = emulator_settings(runtime, emulator, provider)
    run_day(runtime, settings, records(12))

    rows = priced_rows(runtime)
    assert len(rows) == 12 and all(r["job_key"] for r in rows)
    assert_priced_by_path(rows, runtime.settings.prices)
    writes = [r for r in rows if r["cache_write_5m_tokens"] or r["cache_write_1h_tokens"]]
    reads = [r for r in rows if r["cache_read_tokens"]]
    # One request writes the prefix (the priming job, or OpenAI's first line); the rest read.
    assert (len(writes), len(reads)) == (1, 11)
    with runtime.connection() as conn:
        total = cost_totals(conn, DAY).total
    assert total.realised_usd == sum(r["realised_usd"] for r in rows)
    assert total.ratio is not None and total.ratio < 0.5


def test_a_job_is_collected_in_chunks_and_a_failed_write_leaves_it_uncollected(
    runtime, monkeypatch
):
    # Chunks of two: the seven results are written in four chunks, each while the next is
    # validated. The third write fails: the job's whole transaction is rolled back, nothing of it
    # is stored, and the next collection stores every result once.
    import memo_pipeline.pipeline.collect as collect

    monkeypatch.setattr(collect, "RESULT_CHUNK", 2)
    settings = runtime.settings
    registry = ProviderRegistry(settings)
    writes = []
    real_write = collect.write_outcomes

    def failing_third(conn, judged):
        writes.append(len(judged.rows))
        if len(writes) == 3:
            raise RuntimeError("the database went away")
        return real_write(conn, judged)

    with runtime.connection() as conn:
        land(settings, conn, iter(records(7)), "chunked")
        load_partition(settings, conn, settings.orgs, DAY)
        plan_partition(conn, registry, settings.orgs, DAY)
        submit_partition(conn, registry, settings.orgs, DAY)
        poll_open_jobs(conn, registry, limit=100, day=DAY)
        monkeypatch.setattr(collect, "write_outcomes", failing_third)
        with pytest.raises(RuntimeError, match="went away"):
            collect_partition(conn, registry, settings.orgs, DAY)
        conn.rollback()
        assert writes == [2, 2, 2]
        assert conn.execute("select count(*) as n from request_results").fetchone()["n"] == 0
        job = conn.execute("select status, collected_at from provider_jobs").fetchone()
        assert job["status"] == "ended" and job["collected_at"] is None

        monkeypatch.setattr(collect, "write_outcomes", real_write)
        summary = collect_partition(conn, registry, settings.orgs, DAY)
        assert summary.outcomes.succeeded == 7 and summary.duplicates == 0
        assert conn.execute("select count(*) as n from request_results").fetchone()["n"] == 7
        assert partition_complete(conn, DAY)


def test_planning_a_large_day_refreshes_statistics_and_leaves_no_transaction_open(
    runtime, monkeypatch
):
    import psycopg

    import memo_pipeline.pipeline.plan as plan

    monkeypatch.setattr(plan, "ANALYZE_AFTER", 3)
    settings = runtime.settings
    registry = ProviderRegistry(settings)
    with runtime.connection() as conn:
        land(settings, conn, iter(records(4)), "analyzed")
        load_partition(settings, conn, settings.orgs, DAY)
        conn.commit()
        summary = plan_partition(conn, registry, settings.orgs, DAY)
        assert summary.planned == 4
        # The analyze ran inside planning's own transaction, which has committed: nothing holds
        # the ledger's lock while the caller goes on.
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
