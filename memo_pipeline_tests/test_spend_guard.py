"""The spend guard in the claim step, on the real embedded PostgreSQL with the local provider:
work whose forecast would take an org past its ``daily_budget_usd`` is held (pending, with the
guard's message as its reason, in the summary and in the ``provider_batches`` run log and
metadata) until the budget is raised or the next UTC day; claimed work counts its forecast as
committed spend until its realised cost arrives; an org without a budget is never held. A
held priming request holds the requests waiting for it; a lifted hold leaves no reason behind;
the forecast prices a cache write where that is dearer than plain input; budgets in org files
are checked.

Leaves out: ``SpendGuard.check``'s arithmetic and wording (test_costs).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterInstance

from memo_pipeline.config import REPO_ROOT, ConfigError, Settings
from memo_pipeline.costs import cache_write_usage, request_cost
from memo_pipeline.definitions import defs
from memo_pipeline.defs.partitions import ingest_days
from memo_pipeline.defs.resources import _RUNTIMES, MemoResource, MemoRuntime
from memo_pipeline.defs.runner import run_bulk
from memo_pipeline.ingest.loaders import LoadOptions
from memo_pipeline.pipeline.collect import collect_partition
from memo_pipeline.pipeline.costs_ledger import request_forecast_usd, spent_on
from memo_pipeline.pipeline.plan import plan_partition
from memo_pipeline.pipeline.raw import land, load_partition
from memo_pipeline.pipeline.registry import ProviderRegistry
from memo_pipeline.pipeline.stats import partition_stats
from memo_pipeline.pipeline.submit import submit_partition
from memo_pipeline.records import ContentRecord
from memo_pipeline.schema.collections import load_org
from memo_pipeline.tokens import expected_output_tokens
from memo_pipeline_tests.conftest import EXAMPLES

DAY = "2026-11-30"
OTHER_DAY = "2026-11-29"


def records(day: str, count: int = 6) -> list[ContentRecord]:
    return [
        ContentRecord(
            source_id=f"budget-{day}-{i}",
            identifier=f"buyer{i}@globex.example",
            kind="email",
            source_ts=datetime.fromisoformat(f"{day}T10:00:{i:02d}+00:00"),
            content=f"From: Buyer {i} <buyer{i}@globex.example>\n\nI run purchasing at Globex "
            f"Corp and we sign the renewal next week. Order {day}-{i}.",
        )
        for i in range(count)
    ]


def plan_days(runtime, *days: str) -> None:
    with runtime.connection() as conn:
        for day in days:
            land(runtime.settings, conn, iter(records(day)), f"budget-{day}")
            load_partition(runtime.settings, conn, runtime.orgs, day)
            plan_partition(conn, runtime.registry, runtime.orgs, day)


def with_budget(orgs, usd: float | None):
    return {name: org.model_copy(update={"daily_budget_usd": usd}) for name, org in orgs.items()}


def request_rows(conn, day: str):
    rows = conn.execute(
        "select status, job_key, reason, forecast_usd from extraction_requests "
        "where partition_day = %s",
        (day,),
    ).fetchall()
    conn.commit()  # submit_partition refuses a connection with a transaction open
    return rows


def test_work_over_the_budget_is_held_until_the_budget_is_raised(runtime):
    plan_days(runtime, DAY)
    today = datetime.now(UTC).date()
    with runtime.connection() as conn:
        held = submit_partition(conn, runtime.registry, with_budget(runtime.orgs, 0.0005), DAY)
        rows = request_rows(conn, DAY)
        assert held.held_for_budget == 6 and not held.jobs
        assert all(r["status"] == "pending" and r["job_key"] is None for r in rows)
        assert all(r["forecast_usd"] is None for r in rows)
        (message,) = held.budget_messages
        assert message.startswith(f"6 local requests of {DAY} held: forecast $0.00")
        # The day's six cost more than a whole day's budget: waiting would not help.
        assert "more than org acme's $0.0005 daily budget" in message
        assert message.endswith("so no day can take it; raise daily_budget_usd")
        assert {r["reason"] for r in rows} == {message}
        assert conn.execute("select count(*) as n from provider_jobs").fetchone()["n"] == 0
        assert spent_on(conn, "acme", today) == 0
        conn.commit()

        submitted = submit_partition(conn, runtime.registry, with_budget(runtime.orgs, 1.0), DAY)
        rows = request_rows(conn, DAY)
        assert submitted.held_for_budget == 0 and submitted.submitted_requests == 6
        assert all(r["status"] == "submitted" for r in rows)
        assert all(r["reason"] is None for r in rows)  # the hold was lifted
        committed = sum(r["forecast_usd"] for r in rows)
        assert committed > Decimal("0.0005")
        # Until results arrive the forecast is what the org has committed today ...
        assert spent_on(conn, "acme", today) == committed

        collect_partition(conn, runtime.registry, runtime.orgs, DAY)
        realised = conn.execute("select sum(realised_usd) as usd from request_results").fetchone()
        # ... then the realised cost replaces it.
        assert spent_on(conn, "acme", today) == realised["usd"]
        assert spent_on(conn, "acme", today + timedelta(days=1)) == 0


def test_spend_counts_against_the_utc_day_and_the_next_day_frees_it(runtime):
    plan_days(runtime, DAY, OTHER_DAY)
    today = datetime.now(UTC).date()
    with runtime.connection() as conn:
        first = submit_partition(conn, runtime.registry, with_budget(runtime.orgs, None), DAY)
        assert first.submitted_requests == 6 and not first.budget_messages
        one_day = spent_on(conn, "acme", today)
        conn.commit()
        # Room for one more day's work, not two: the second day is held today...
        orgs = with_budget(runtime.orgs, float(one_day * Decimal("1.5")))
        second = submit_partition(conn, runtime.registry, orgs, OTHER_DAY, today=today)
        assert second.held_for_budget == 6
        assert f"for {today}" in second.budget_messages[0]
        # ...and goes tomorrow, when today's spend no longer counts.
        third = submit_partition(
            conn, runtime.registry, orgs, OTHER_DAY, today=today + timedelta(days=1)
        )
        assert third.held_for_budget == 0 and third.submitted_requests == 6


@pytest.fixture
def tight_budget_memo(runtime, tmp_path: Path) -> Iterator[MemoResource]:
    """The session's database with an acme whose daily budget is a hundredth of a cent.

    Dagster copies resources into a run, so the run finds this runtime through the per-process
    registry, under a home of its own (the database is the session's).
    """
    spec = yaml.safe_load((REPO_ROOT / "config" / "orgs" / "acme.yaml").read_text())
    spec["daily_budget_usd"] = 0.0001
    (tmp_path / "orgs").mkdir()
    (tmp_path / "orgs" / "acme.yaml").write_text(yaml.safe_dump(spec))
    settings = Settings.from_env(
        memo_home=tmp_path / "home", orgs_dir=tmp_path / "orgs", database_url=runtime.urls.app
    )
    key = (str(settings.memo_home), 0.0)
    _RUNTIMES[key] = MemoRuntime(settings)
    try:
        yield MemoResource(memo_home=str(settings.memo_home))
    finally:
        del _RUNTIMES[key]


def test_held_submission_is_reported_in_the_run_log_and_metadata(tight_budget_memo):
    rt = tight_budget_memo.runtime
    with rt.connection() as conn:
        land(rt.settings, conn, iter(records(DAY)), f"budget-{DAY}")
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(ingest_days.name, [DAY])
        result = defs.resolve_job_def("bulk_submit_job").execute_in_process(
            partition_key=DAY, instance=instance, resources={"memo": tight_budget_memo}
        )
        assert result.success
        event = instance.get_latest_materialization_event(AssetKey("provider_batches"))
        metadata = event.asset_materialization.metadata
        warnings = [
            e.user_message
            for e in instance.all_logs(result.run_id)
            if e.level >= logging.WARNING and e.dagster_event is None
        ]
    assert metadata["held_for_budget"].value == 6
    assert metadata["jobs_submitted"].value == 0
    budget_text = metadata["budget"].value
    assert "held: forecast" in budget_text and "$0.0001 daily budget" in budget_text
    assert any("held: forecast" in line for line in warnings), warnings


def test_a_held_primer_holds_the_requests_waiting_for_it(runtime):
    plan_days(runtime, DAY)
    settings = dataclasses.replace(
        runtime.settings, provider_overrides={"local": {"prime_cache": True}}
    )
    registry = ProviderRegistry(settings)
    with runtime.connection() as conn:
        held = submit_partition(conn, registry, with_budget(runtime.orgs, 0.0), DAY)
        rows = request_rows(conn, DAY)
        assert held.held_for_budget == 6 and held.held_for_priming == 0 and not held.jobs
        (message,) = held.budget_messages
        assert message.startswith(
            f"6 local requests of {DAY} (a 1-request cache-priming job and 5 waiting for it) "
            "held: forecast $0.00"
        )
        assert {r["reason"] for r in rows} == {message}

        primed = submit_partition(conn, registry, with_budget(runtime.orgs, 1.0), DAY)
        rows = request_rows(conn, DAY)
        assert primed.submitted_requests == 1 and primed.held_for_priming == 5
        (primer,) = [r for r in rows if r["job_key"]]
        assert primer["reason"] is None


def test_the_forecast_prices_a_cache_write_where_it_costs_more_than_input(runtime):
    prices, model = runtime.settings.prices, "us.anthropic.claude-haiku-5-5-v1:0"
    rate = prices.rate("bedrock", model)
    plain = request_forecast_usd(prices, "bedrock", model, 4000, 1000, "batch")
    ceiling = request_forecast_usd(prices, "bedrock", model, 4000, 1000, "batch", "1h")
    written = cache_write_usage("1h", 3000, 1000, expected_output_tokens(1000))
    assert ceiling == request_cost(written, rate, "batch") > plain
    # Nothing to cache, or no write price for the lifetime: the prompt bills as input.
    assert request_forecast_usd(prices, "bedrock", model, 1000, 1000, "batch", "1h") == (
        request_forecast_usd(prices, "bedrock", model, 1000, 1000, "batch")
    )
    assert request_forecast_usd(prices, "bedrock", model, 4000, 1000, "batch", "7d") == plain


@pytest.mark.parametrize(
    ("value", "problem"),
    [(-1, "greater than or equal to 0"), (float("nan"), "finite number"), ("lots", "valid number")],
)
def test_a_daily_budget_that_is_not_a_usd_amount_names_the_file_and_field(tmp_path, value, problem):
    org = yaml.safe_load((REPO_ROOT / "config/orgs/acme.yaml").read_text())
    path = tmp_path / "acme.yaml"
    path.write_text(yaml.safe_dump({**org, "daily_budget_usd": value}))
    with pytest.raises(ConfigError, match=problem) as raised:
        load_org(path)
    assert str(raised.value).startswith(f"{path}: daily_budget_usd: ")


def test_a_run_whose_work_is_held_stops_waiting_and_says_why(tight_budget_memo, monkeypatch):
    # ``run_bulk`` points DAGSTER_HOME and MEMO_HOME at its home; the monkeypatch puts them back.
    for name in ("DAGSTER_HOME", "MEMO_HOME", "MEMO_DAGSTER_PG_URL"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    rt = tight_budget_memo.runtime
    report = run_bulk(rt.settings, EXAMPLES, "jsonl", LoadOptions(), timeout_seconds=1800)
    assert not report.failed_runs and report.incomplete_days == report.days
    # Not the timeout: it saw that nothing in flight could complete a day, and said why.
    assert sorted(report.waiting) == report.days
    for day, reasons in report.waiting.items():
        assert reasons and all(" pending: " in r and "held: forecast" in r for r in reasons), day
    # ``memo-pipeline stats`` counts what waits.
    with rt.connection() as conn:
        stats = partition_stats(conn, rt.vectors)
    held = {day: sum(int(r.split()[0]) for r in reasons) for day, reasons in report.waiting.items()}
    assert {day: stats[day]["waiting"] for day in report.days} == held
    assert all(stats[day]["waiting"] > 0 for day in report.days)


def test_a_run_stops_when_the_budget_holds_what_a_priming_job_released(runtime, monkeypatch):
    # Priming on: each day's first request is claimed alone, then the budget (room for about
    # one day) holds the rest it released. Those days stay released, and submitting them again
    # changes nothing: the run must see that and stop, saying why.
    for name in ("DAGSTER_HOME", "MEMO_HOME", "MEMO_DAGSTER_PG_URL"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    settings = dataclasses.replace(
        runtime.settings, provider_overrides={"local": {"prime_cache": True}}
    )
    monkeypatch.setitem(settings.__dict__, "orgs", with_budget(runtime.orgs, 0.002))
    key = (str(settings.memo_home.resolve()), 0.0)
    monkeypatch.setitem(_RUNTIMES, key, MemoRuntime(settings))
    report = run_bulk(settings, EXAMPLES, "jsonl", LoadOptions(), timeout_seconds=1800)
    assert report.waiting, "the run waited for its timeout"
    held = [r for reasons in report.waiting.values() for r in reasons]
    assert held and all("held: forecast" in r for r in held)


def test_work_waiting_below_a_job_minimum_says_so_until_it_is_claimed(runtime):
    plan_days(runtime, DAY)
    waiting = ProviderRegistry(
        dataclasses.replace(
            runtime.settings,
            provider_overrides={
                "local": {"min_requests_per_batch": 100, "remainder_policy": "wait"}
            },
        )
    )
    with runtime.connection() as conn:
        first = submit_partition(conn, waiting, runtime.orgs, DAY)
        rows = request_rows(conn, DAY)
        assert first.waiting_below_minimum == 6 and not first.jobs
        assert {r["reason"] for r in rows} == {
            "6 requests are below the 100-request batch minimum of local: waiting for more "
            "(remainder_policy: wait)"
        }
        second = submit_partition(conn, runtime.registry, runtime.orgs, DAY)
        rows = request_rows(conn, DAY)
    assert second.submitted_requests == 6 and all(r["reason"] is None for r in rows)


def test_two_days_of_one_org_submitted_at_once_decide_one_after_the_other(runtime, monkeypatch):
    # Room for one day. Each submission reads what the org spent, then pauses: without the
    # org's budget lock both read nothing spent and both go; with it the second reads after
    # the first committed its claim, and is held.
    import memo_pipeline.pipeline.submit as submit

    plan_days(runtime, DAY, OTHER_DAY)
    with runtime.connection() as conn:
        rows = conn.execute("select * from extraction_requests where partition_day = %s", (DAY,))
        budget = submit.Budget.of(runtime.registry, runtime.orgs, datetime.now(UTC).date())
        costs, _ = submit.check_budget(conn, budget, rows.fetchall(), "batch", lock=False)
        conn.commit()
    orgs = with_budget(runtime.orgs, float(sum(costs) * Decimal("1.5")))
    real_spent_on = submit.spent_on

    def slow_spent_on(conn, org, on):
        spent = real_spent_on(conn, org, on)
        time.sleep(0.5)
        return spent

    monkeypatch.setattr(submit, "spent_on", slow_spent_on)
    out = {}

    def run(day: str) -> None:
        with runtime.connection() as conn:
            out[day] = submit_partition(conn, runtime.registry, orgs, day)

    threads = [threading.Thread(target=run, args=(day,)) for day in (DAY, OTHER_DAY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted((s.submitted_requests, s.held_for_budget) for s in out.values()) == [
        (0, 6),
        (6, 0),
    ]
