"""The bulk path end to end on real PostgreSQL and LanceDB with the ``local`` provider: Dagster
runs of real input from ../shared/data, idempotent re-runs, bad input, crash recovery of a
submission, and the stats command's JSON. Real provider SDKs are covered by the provider tests."""

from __future__ import annotations

import argparse
import json
from datetime import date

import pytest
from dagster import AssetKey, DagsterInstance

from memo_pipeline.definitions import defs
from memo_pipeline.defs.partitions import ingest_days
from memo_pipeline.ingest.loaders import LoadOptions, load
from memo_pipeline.pipeline.raw import land
from memo_pipeline.pipeline.stats import partition_stats
from memo_pipeline.pipeline.store import store_counts, store_differences
from memo_pipeline.pipeline.submit import (
    SubmitSummary,
    build_requests,
    claim_pending,
    submit_intents,
)
from memo_pipeline_tests.conftest import EXAMPLES, FIXTURES, shared_data


def _run(job: str, day: str, memo, instance) -> None:
    result = defs.resolve_job_def(job).execute_in_process(
        partition_key=day, instance=instance, resources={"memo": memo}
    )
    assert result.success


def _land(runtime, path, fmt, options: LoadOptions | None = None) -> list[str]:
    with runtime.connection() as conn:
        items = load(path, fmt, options or LoadOptions())
        summary = land(runtime.settings, conn, items, f"{fmt}:{path}")
    return sorted(summary.days)


def _counts(runtime) -> dict:
    with runtime.connection() as conn:
        return {
            table: conn.execute(f"select count(*) as n from {table}").fetchone()["n"]
            for table in ("provider_jobs", "extraction_requests", "memories", "entities", "edges")
        }


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst


def test_real_mail_day_flows_through_the_bulk_path_and_reruns_change_nothing(
    runtime, memo, instance
):
    days = _land(runtime, shared_data("spamassassin_ham", "emails"), "email")
    assert len(days) >= 28
    day = "2002-07-24"
    instance.add_dynamic_partitions(ingest_days.name, [day])

    _run("bulk_submit_job", day, memo, instance)
    with runtime.connection() as conn:
        jobs = conn.execute(
            "select * from provider_jobs where partition_day = %s", (day,)
        ).fetchall()
    assert jobs and all(j["status"] == "submitted" for j in jobs)

    _run("bulk_collect_job", day, memo, instance)
    first = _counts(runtime)
    with runtime.connection() as conn:
        stats = partition_stats(conn, runtime.vectors)[day]
    assert stats["memories"] > 0
    assert stats["memories"] == stats["vectors"]
    assert stats["records"] == stats["requests"]

    # A second materialization of the same day submits no batch and stores nothing twice.
    _run("bulk_submit_job", day, memo, instance)
    _run("bulk_collect_job", day, memo, instance)
    assert _counts(runtime) == first
    assert instance.get_latest_materialization_event(AssetKey("memories")) is not None


def test_one_person_is_one_entity_across_messages(runtime, memo, instance):
    days = _land(runtime, EXAMPLES, "jsonl")
    instance.add_dynamic_partitions(ingest_days.name, days)
    for day in days:
        _run("bulk_submit_job", day, memo, instance)
    for day in days:
        _run("bulk_collect_job", day, memo, instance)
    with runtime.connection() as conn:
        rows = conn.execute(
            "select e.entity_id, count(*) as n from entity_identifiers i join entities e "
            "using (entity_id) where i.identifier = 'dana.okafor@northwind.example' group by 1"
        ).fetchall()
        stats = partition_stats(conn, runtime.vectors)
    assert len(rows) == 1
    assert len(stats) >= 3
    assert all(s["memories"] > 0 and s["memories"] == s["vectors"] for s in stats.values())


def test_bad_lines_are_dead_lettered_with_file_line_and_reason(runtime, memo, instance):
    days = _land(runtime, FIXTURES / "bad_input.jsonl", "jsonl")
    instance.add_dynamic_partitions(ingest_days.name, days)
    for day in days:
        _run("bulk_submit_job", day, memo, instance)
    with runtime.connection() as conn:
        letters = conn.execute("select * from dead_letters order by source_line").fetchall()
        stored = conn.execute("select source_id from content_records").fetchall()
    reasons = [f"{dl['source_line']}: {dl['reason']}" for dl in letters]
    assert any("content" in r and "empty" in r for r in reasons), reasons
    assert any("JSON" in r or "json" in r for r in reasons), reasons
    assert any("collection" in r and "nope" in r for r in reasons), reasons
    assert any("source_ts" in r for r in reasons), reasons
    assert all(dl["source"] and dl["source_line"] for dl in letters)
    assert {r["source_id"] for r in stored} >= {"bad-fixture-1"}
    # Every input line is accounted for: stored or dead-lettered.
    lines = [ln for ln in (FIXTURES / "bad_input.jsonl").read_text().splitlines() if ln.strip()]
    assert len(stored) + len(letters) == len(lines)


def test_crash_between_provider_call_and_ledger_update_does_not_submit_twice(runtime):
    day = _land(runtime, EXAMPLES, "jsonl")[0]
    from memo_pipeline.pipeline.plan import plan_partition
    from memo_pipeline.pipeline.raw import load_partition

    with runtime.connection() as conn:
        load_partition(runtime.settings, conn, runtime.orgs, day)
        plan_partition(conn, runtime.registry, runtime.orgs, day)
        summary = SubmitSummary(day=day)
        claim_pending(conn, runtime.registry, runtime.orgs, day, summary)
        intents = conn.execute("select * from provider_jobs where status = 'intent'").fetchall()
        assert intents
        # The provider accepted the first batch, then the process died before recording it.
        job = intents[0]
        rows = conn.execute(
            "select * from extraction_requests where job_key = %s order by request_id",
            (job["job_key"],),
        ).fetchall()
        provider = runtime.registry.get(job["provider"], job["model"])
        handle = provider.submit_batch(job["job_key"], build_requests(conn, runtime.orgs, rows))
        conn.commit()

        submit_intents(conn, runtime.registry, runtime.orgs, day, summary)
        recorded = conn.execute(
            "select job_id from provider_jobs where job_key = %s", (job["job_key"],)
        ).fetchone()
    assert summary.recovered_jobs == 1
    assert recorded["job_id"] == handle.job_id
    local_jobs = list((runtime.settings.staging_dir / "local").iterdir())
    assert len(local_jobs) == len(intents)


def test_stats_json_is_stable(runtime, memo, instance, capsys):
    from memo_pipeline import cli

    days = _land(runtime, EXAMPLES, "jsonl")
    instance.add_dynamic_partitions(ingest_days.name, days[:1])
    _run("bulk_submit_job", days[0], memo, instance)
    _run("bulk_collect_job", days[0], memo, instance)
    import os

    os.environ["MEMO_HOME"] = str(runtime.settings.memo_home)
    try:
        cli.cmd_stats(argparse.Namespace())
        first = capsys.readouterr().out
        cli.cmd_stats(argparse.Namespace())
        second = capsys.readouterr().out
    finally:
        os.environ.pop("MEMO_HOME")
    assert first == second
    parsed = json.loads(first)
    assert set(parsed[days[0]]) == {
        "records",
        "requests",
        "waiting",
        "jobs",
        "memories",
        "vectors",
        "dead_letters",
    }
    assert parsed[days[0]]["waiting"] == 0  # every request of the collected day is answered
    assert date.fromisoformat(days[0])


def test_store_differences_see_a_swap_that_counts_miss_and_the_next_run_repairs_it(
    runtime, memo, instance
):
    days = _land(runtime, EXAMPLES, "jsonl")
    day = days[0]
    instance.add_dynamic_partitions(ingest_days.name, [day])
    _run("bulk_submit_job", day, memo, instance)
    _run("bulk_collect_job", day, memo, instance)

    with runtime.connection() as conn:
        assert store_differences(conn, runtime.vectors, day) == {
            "postgres_only": [],
            "lancedb_only": [],
            "entity_differs": [],
        }
        first, second = [
            r["memory_id"]
            for r in conn.execute(
                "select memory_id from memories where partition_day = %s "
                "and superseded_by is null order by memory_id limit 2",
                (day,),
            )
        ]
        table = runtime.vectors.table()
        table.update(where=f"memory_id = '{first}'", values={"memory_id": "m-not-a-memory"})
        table.update(where=f"memory_id = '{second}'", values={"entity_id": "e-somebody-else"})
        pg, lance = store_counts(conn, runtime.vectors, day)
        assert pg == lance  # the counts cannot tell
        assert store_differences(conn, runtime.vectors, day) == {
            "postgres_only": [first],
            "lancedb_only": ["m-not-a-memory"],
            "entity_differs": [second],
        }

    # Materializing the day again reconciles LanceDB with PostgreSQL, and the check passes.
    result = defs.resolve_job_def("bulk_collect_job").execute_in_process(
        partition_key=day, instance=instance, resources={"memo": memo}
    )
    checks = {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert checks["stores_agree"] is True
    with runtime.connection() as conn:
        assert not any(store_differences(conn, runtime.vectors, day).values())
