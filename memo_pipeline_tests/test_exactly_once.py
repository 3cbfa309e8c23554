"""Money paths through the real SDKs and the provider emulator: a process killed between the
provider call and the ledger update, two submitters racing, injected faults ending stored or
dead-lettered, cache reads after priming on a 500-record day, each day's submission committed on
its own, and sync remainders called only after their routing commits. The stores are the real
embedded PostgreSQL; Stage 2 writes are left to test_pipeline (here only the ledger matters)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime

import pytest

from memo_pipeline.pipeline.collect import collect_partition, partition_complete, poll_open_jobs
from memo_pipeline.pipeline.plan import plan_partition
from memo_pipeline.pipeline.raw import land, load_partition
from memo_pipeline.pipeline.registry import ProviderRegistry
from memo_pipeline.pipeline.submit import CRASH_HOOK, submit_partition
from memo_pipeline.providers.local import LocalProvider
from memo_pipeline.records import ContentRecord
from memo_pipeline_tests.emulator_fixtures import BUCKET, ROLE_ARN

pytest_plugins = ["memo_pipeline_tests.conftest_emulator"]

DAY = "2026-11-30"
FIRST = ["Ada", "Bela", "Chen", "Dara", "Emil", "Farah", "Goran", "Hana", "Ivo", "Jana"]
COMPANIES = ["Northwind", "Globex", "Initech", "Bluefin", "Quillmark"]


def records(count: int) -> list[ContentRecord]:
    out = []
    for i in range(count):
        name = f"{FIRST[i % len(FIRST)]} Test{i}"
        company = COMPANIES[i % len(COMPANIES)]
        email = f"{name.split()[0].lower()}.test{i}@{company.lower()}.example"
        out.append(
            ContentRecord(
                source_id=f"gen-{i:05d}",
                identifier=email,
                kind="email",
                source_ts=datetime(2026, 11, 30, 8, 0, i % 60, tzinfo=UTC),
                content=f"From: {name} <{email}>\n\nI'm the operations manager at {company} Ltd. "
                f"We plan to renew the analytics contract in March. Ticket {i}.",
            )
        )
    return out


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
            "max_retries": 0,
        },
    }
    return dataclasses.replace(
        runtime.settings, provider_overrides=overrides, provider_override=provider
    )


def prepare_day(runtime, settings, count: int) -> None:
    with runtime.connection() as conn:
        land(settings, conn, iter(records(count)), "generated")
        load_partition(settings, conn, settings.orgs, DAY)
        plan_partition(conn, ProviderRegistry(settings), settings.orgs, DAY)


def drive_to_completion(conn, registry, orgs, rounds: int = 12) -> None:
    for _ in range(rounds):
        poll_open_jobs(conn, registry, limit=100, day=DAY)
        collect_partition(conn, registry, orgs, DAY)
        if partition_complete(conn, DAY):
            return
    raise AssertionError("day did not complete")


@pytest.mark.parametrize("provider", ["anthropic", "openai", "bedrock"])
def test_killed_between_provider_call_and_ledger_update_submits_once(
    runtime, emulator, emu, provider
):
    emu.config(bedrock_min_records=1)
    settings = emulator_settings(runtime, emulator, provider)
    prepare_day(runtime, settings, 6)
    script = (
        "import dataclasses, json, sys\n"
        "from memo_pipeline.config import Settings\n"
        "from memo_pipeline.pipeline.registry import ProviderRegistry\n"
        "from memo_pipeline.pipeline.submit import submit_partition\n"
        "from memo_pipeline.stores.db import connect, ensure_databases\n"
        "s = Settings.from_env(provider_overrides=json.loads(sys.argv[1]), "
        "provider_override=sys.argv[2])\n"
        "with connect(ensure_databases(s).app) as conn:\n"
        f"    submit_partition(conn, ProviderRegistry(s), s.orgs, '{DAY}')\n"
    )
    env = {**os.environ, CRASH_HOOK: "after-provider-call", "MEMO_HOME": str(settings.memo_home)}
    import json

    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(settings.provider_overrides), provider],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 86, done.stderr[-2000:]
    created = emu.state()["batches_created"].get(provider, 0)
    assert created == 1

    with runtime.connection() as conn:
        registry = ProviderRegistry(settings)
        summary = submit_partition(conn, registry, settings.orgs, DAY)
        drive_to_completion(conn, registry, settings.orgs)
        jobs = conn.execute("select count(*) as n from provider_jobs").fetchone()["n"]
        succeeded = conn.execute(
            "select count(*) as n from request_results where outcome = 'succeeded'"
        ).fetchone()["n"]
    assert summary.recovered_jobs == 1
    assert emu.state()["batches_created"].get(provider, 0) == jobs
    assert succeeded == 6


def test_two_submitters_racing_submit_each_batch_once(runtime, emulator, emu):
    settings = emulator_settings(runtime, emulator, "openai")
    prepare_day(runtime, settings, 30)
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def submitter() -> None:
        try:
            with runtime.connection() as conn:
                barrier.wait()
                submit_partition(conn, ProviderRegistry(settings), settings.orgs, DAY)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submitter) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    with runtime.connection() as conn:
        jobs = conn.execute("select count(*) as n from provider_jobs").fetchone()["n"]
        claimed = conn.execute(
            "select count(distinct request_id) as n from extraction_requests "
            "where job_key is not null"
        ).fetchone()["n"]
    assert jobs >= 1
    assert emu.state()["batches_created"]["openai"] == jobs
    assert claimed == 30


def test_injected_faults_end_stored_or_dead_lettered_and_none_paid_twice(runtime, emulator, emu):
    settings = emulator_settings(runtime, emulator, "anthropic")
    prepare_day(runtime, settings, 40)
    with runtime.connection() as conn:
        doomed = conn.execute(
            "select request_id, record_id from extraction_requests order by request_id limit 1"
        ).fetchone()
    emu.faults(
        {
            "kind": "error",
            "scope": "batch",
            "error_type": "invalid_request_error",
            "match": f"^{doomed['request_id']}$",
        },
        {"kind": "expired", "scope": "batch", "fraction": 0.15, "count": 6},
        {
            "kind": "error",
            "scope": "batch",
            "error_type": "overloaded_error",
            "fraction": 0.1,
            "count": 4,
        },
        {"kind": "invalid_json", "scope": "batch", "fraction": 0.1, "count": 4},
        {"kind": "max_tokens", "scope": "batch", "fraction": 0.05, "count": 2},
    )
    with runtime.connection() as conn:
        registry = ProviderRegistry(settings)
        submit_partition(conn, registry, settings.orgs, DAY)
        drive_to_completion(conn, registry, settings.orgs)
        per_record = conn.execute(
            "select c.record_id, "
            "count(r.request_id) filter (where r.outcome = 'succeeded') as ok, "
            "(select count(*) from dead_letters d where d.record_id = c.record_id) as dead "
            "from content_records c left join extraction_requests q using (record_id) "
            "left join request_results r using (request_id) group by c.record_id"
        ).fetchall()
        retried = conn.execute(
            "select count(*) as n from extraction_requests where attempt > 1"
        ).fetchone()["n"]
        dead = conn.execute("select record_id, reason from dead_letters").fetchall()
    assert len(per_record) == 40
    assert all((r["ok"] == 1) != (r["dead"] >= 1) for r in per_record), per_record
    assert retried > 0
    assert [d["record_id"] for d in dead] == [doomed["record_id"]]
    assert "permanent" in dead[0]["reason"]


def test_cache_reads_on_a_500_record_day_after_priming(runtime, emulator, emu):
    settings = emulator_settings(runtime, emulator, "anthropic")
    prepare_day(runtime, settings, 500)
    with runtime.connection() as conn:
        registry = ProviderRegistry(settings)
        first = submit_partition(conn, registry, settings.orgs, DAY)
        assert first.held_for_priming == 499
        drive_to_completion(conn, registry, settings.orgs)
        rows = conn.execute(
            "select r.cache_read_tokens, j.is_priming from request_results r "
            "join provider_jobs j using (job_key) where r.outcome = 'succeeded'"
        ).fetchall()
    after_priming = [r for r in rows if not r["is_priming"]]
    assert len(after_priming) == 499
    share = sum(r["cache_read_tokens"] > 0 for r in after_priming) / len(after_priming)
    assert share >= 0.95, share


def test_each_days_submission_commits_before_the_next_day_is_claimed(runtime):
    # ``provider_batches`` submits a range of days on one connection. Each day's claims and
    # submitted jobs must be committed when its submission returns: inside one long transaction
    # they were savepoints, and a later day's failure rolled back the record of jobs the
    # provider had already taken (their requests were then claimed and paid for again).
    settings = runtime.settings
    registry = ProviderRegistry(settings)
    earlier = "2026-11-29"
    moved = [
        r.model_copy(
            update={"source_id": f"{r.source_id}-early", "source_ts": r.source_ts.replace(day=29)}
        )
        for r in records(4)
    ]
    with runtime.connection() as conn:
        land(settings, conn, iter(records(4) + moved), "generated")
        for day in (earlier, DAY):
            load_partition(settings, conn, settings.orgs, day)
            plan_partition(conn, registry, settings.orgs, day)
        for day in (earlier, DAY):
            assert submit_partition(conn, registry, settings.orgs, day).submitted_requests == 4
        with runtime.connection() as other:
            seen = other.execute(
                "select partition_day::text as day, status from provider_jobs order by 1"
            ).fetchall()
        assert [(r["day"], r["status"]) for r in seen] == [
            (earlier, "submitted"),
            (DAY, "submitted"),
        ]
        # A caller that left a transaction open is refused rather than made a savepoint of.
        conn.execute("select 1")
        with pytest.raises(RuntimeError, match="needs a connection with no transaction open"):
            submit_partition(conn, registry, settings.orgs, DAY)
        conn.rollback()


def test_sync_remainders_are_called_after_the_claim_commits_one_at_a_time(runtime, monkeypatch):
    # A day below the job minimum goes through the sync API. Its routing commits before the
    # first call and each answer commits on its own, so a failure part-way loses no answer the
    # provider gave: the next submission calls only what is still unanswered.
    settings = dataclasses.replace(
        runtime.settings, provider_overrides={"local": {"min_requests_per_batch": 50}}
    )
    registry = ProviderRegistry(settings)
    calls: list[str] = []
    real_call = LocalProvider.call_sync

    def second_call_fails(self, request):
        calls.append(request.request_id)
        if len(calls) == 2:
            raise RuntimeError("connection reset")
        return real_call(self, request)

    monkeypatch.setattr(LocalProvider, "call_sync", second_call_fails)
    prepare_day(runtime, settings, 3)
    with runtime.connection() as conn:
        with pytest.raises(RuntimeError, match="connection reset"):
            submit_partition(conn, registry, settings.orgs, DAY)
        conn.rollback()
        rows = conn.execute("select path, status from extraction_requests").fetchall()
        conn.commit()
        assert [r["path"] for r in rows] == ["sync"] * 3
        assert sorted(r["status"] for r in rows) == ["pending", "pending", "succeeded"]

        again = submit_partition(conn, registry, settings.orgs, DAY)
        results = conn.execute("select count(distinct request_id) as n from request_results")
        assert results.fetchone()["n"] == 3
    assert again.sync_requests == 2
    # The first request was called once; the failed one again, with the third.
    assert len(calls) == 4 and len(set(calls)) == 3 and calls[1] == calls[2]
