"""The three execution modes end to end, on real PostgreSQL and LanceDB, with the real Dagster
sensors and jobs (in-process runs on an ephemeral instance) and the real Anthropic SDK against
the provider emulator where a provider's behaviour matters.

Covers: one write through sync (HTTP), async (``intake_async_sensor`` -> ``intake_process_job``)
and bulk (``bulk_dispatch_sensor`` -> ``bulk_submit_job`` -> ``batch_completion_sensor`` ->
``bulk_collect_job``) in three orgs, storing identical rows and sending verified webhooks; the
dispatch thresholds; deadline escalation of a bulk write, both pulled from pending batch work and
escalated at intake; escalation after submission to a batch that stays in progress (a deliberate
second payment, and the batch's later answer not stored twice); 429s retried with backoff; the
document prompt's two cache breakpoints on the Anthropic wire.

Leaves out: HTTP details (test_api.py), webhook delivery rules (test_webhooks.py).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context

from memo_pipeline.config import Settings
from memo_pipeline.definitions import defs
from memo_pipeline.defs.bulk.sensors import batch_completion_sensor
from memo_pipeline.defs.intake.sensors import bulk_dispatch_sensor, intake_async_sensor
from memo_pipeline.defs.partitions import ingest_days
from memo_pipeline.intake.dispatch import bulk_dispatch, claim_sync_work
from memo_pipeline.intake.events import DocumentIn, WriteIn, accept, event_view
from memo_pipeline.intake.extract import process_events
from memo_pipeline.intake.runtime import IntakeRuntime
from memo_pipeline.pipeline.collect import collect_partition, poll_open_jobs
from memo_pipeline.pipeline.plan import plan_partition
from memo_pipeline.pipeline.store import store_partition
from memo_pipeline.pipeline.submit import submit_partition
from memo_pipeline.prompts.render import render
from memo_pipeline.providers.base import ProviderRequest
from memo_pipeline.records import ContentRecord
from memo_pipeline_tests.test_intake_support import (
    SOURCE_TS,
    email,
    fast_config,
    http,
    new_key,
    wait_for,
)

pytest_plugins = [
    "memo_pipeline_tests.test_intake_support",
    "memo_pipeline_tests.conftest_emulator",
]

SECRET = "whsec_" + "c2VjcmV0LXNoYXJlZC1ieS10aGUtdGVzdC1vcmdz"


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def _run(job: str, instance, memo, **kwargs) -> None:
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, resources={"memo": memo}, **kwargs
    )
    assert result.success


def _stored_rows(conn, org: str) -> dict[str, set]:
    """What an org stored, with ids (which include the org) replaced by names."""
    names = {
        r["entity_id"]: (r["type"], r["name"])
        for r in conn.execute("select * from entities where org_id = %s", (org,))
    }
    return {
        "entities": set(names.values()),
        "memories": {
            (names[r["entity_id"]], r["text"], str(r["partition_day"]), r["source_ts"])
            for r in conn.execute(
                "select * from memories where org_id = %s and superseded_by is null", (org,)
            )
        },
        "properties": {
            (names[r["entity_id"]], r["property"], str(r["value"]), r["valid_from"])
            for r in conn.execute("select * from property_values where org_id = %s", (org,))
        },
        "edges": {
            (names[r["subject_id"]], r["predicate"], names[r["object_id"]])
            for r in conn.execute("select * from edges where org_id = %s", (org,))
        },
    }


def test_one_write_through_all_three_modes_stores_identical_rows(
    server, service, memo, instance, receiver, monkeypatch
):
    receiver.secret = SECRET
    content, address = email("Dana Okafor")
    write = {
        "content": content,
        "identifier": address,
        "source_ts": SOURCE_TS.isoformat(),
        "title": "renewal",
    }
    events = {}
    for org, mode in (("acme", "sync"), ("beta", "async"), ("gamma", "bulk")):
        with http(server, new_key(service, org)) as client:
            hook = client.put("/v1/webhook", json={"url": receiver.url, "secret": SECRET})
            assert hook.status_code == 200
            answer = client.post("/v1/memorize", json={**write, "execution_mode": mode})
            assert answer.status_code == (200 if mode == "sync" else 202), answer.text
            events[mode] = answer.json()["event_id"]

    # async: the intake sensor asks for one run holding exactly the async event.
    tick = intake_async_sensor(
        build_sensor_context(instance=instance, resources={"memo": memo}, definitions=defs)
    )
    assert isinstance(tick, SensorResult) and len(tick.run_requests) == 1
    request = tick.run_requests[0]
    assert request.run_config["ops"]["process_intake_events"]["config"]["event_ids"] == [
        events["async"]
    ]
    _run("intake_process_job", instance, memo, run_config=request.run_config)

    # bulk: below both thresholds the dispatch sensor waits; at the size threshold it submits.
    context = build_sensor_context(instance=instance, resources={"memo": memo}, definitions=defs)
    assert isinstance(bulk_dispatch_sensor(context), SkipReason)
    monkeypatch.setenv("MEMO_INTAKE_BULK_DISPATCH_MIN_RECORDS", "1")
    tick = bulk_dispatch_sensor(
        build_sensor_context(instance=instance, resources={"memo": memo}, definitions=defs)
    )
    assert isinstance(tick, SensorResult)
    assert [r.partition_key for r in tick.run_requests] == [_today()]
    assert tick.dynamic_partitions_requests[0].partition_keys == [_today()]
    instance.add_dynamic_partitions(ingest_days.name, [_today()])
    _run("bulk_submit_job", instance, memo, partition_key=_today())
    collect = batch_completion_sensor(
        build_sensor_context(instance=instance, resources={"memo": memo}, definitions=defs)
    )
    assert [r.partition_key for r in collect.run_requests] == [_today()]
    _run("bulk_collect_job", instance, memo, partition_key=_today())

    wait_for(lambda: set(receiver.events()) == set(events.values()), timeout=30)
    assert set(receiver.events().values()) == {"stored"}
    with service.runtime.connection() as conn:
        rows = {org: _stored_rows(conn, org) for org in ("acme", "beta", "gamma")}
        paths = {
            r["org_id"]: (r["path"], r["reason"], r["job_key"] is not None)
            for r in conn.execute("select org_id, path, reason, job_key from extraction_requests")
        }
        views = {mode: event_view(conn, org, events[mode]) for mode, org in
                 (("sync", "acme"), ("async", "beta"), ("bulk", "gamma"))}  # fmt: skip
    assert rows["acme"]["memories"] and rows["acme"]["properties"] and rows["acme"]["edges"]
    assert rows["acme"] == rows["beta"] == rows["gamma"]
    assert paths == {
        "acme": ("sync", "execution_mode sync", False),
        "beta": ("sync", "execution_mode async", False),
        "gamma": ("batch", None, True),
    }
    vectors = service.runtime.vectors
    counts = {org: vectors.count(f"org_id = '{org}'") for org in ("acme", "beta", "gamma")}
    assert len(set(counts.values())) == 1 and counts["acme"] == len(rows["acme"]["memories"])
    steps = [h["status"] for h in views["bulk"]["history"]]
    assert steps == ["accepted", "queued", "submitted", "extracted", "stored"]
    assert [h["status"] for h in views["async"]["history"]] == [
        "accepted",
        "queued",
        "submitted",
        "extracted",
        "stored",
    ]


def _bulk_write(org: str, name: str, deadline: datetime | None) -> WriteIn:
    content, address = email(name)
    return WriteIn(
        org=org,
        kind="memorize",
        execution_mode="bulk",
        collection="contacts",
        documents=[DocumentIn(content, source_ts=SOURCE_TS)],
        identifier=address,
        deadline=deadline,
    )


def test_deadlines_pull_bulk_work_into_the_sync_path(intake_runtime):
    rt = intake_runtime
    config = fast_config(expected_batch_latency_seconds=3600, escalation_margin_seconds=600)
    now = datetime.now(UTC)
    relaxed = accept(rt, config, _bulk_write("acme", "Ivan Berg", now + timedelta(hours=3)), now)
    urgent = accept(rt, config, _bulk_write("acme", "Jade Okafor", now + timedelta(minutes=30)))
    assert relaxed.escalation is None
    assert urgent.escalation and "expected batch latency 1h" in urgent.escalation

    with rt.connection() as conn:
        plan_partition(conn, rt.registry, rt.orgs, _today())
        due, pending = bulk_dispatch(conn, config, now)
        assert due == [] and pending[0]["records"] == 1
        due, _ = bulk_dispatch(conn, config, now + timedelta(minutes=16))
        assert due and due[0].why.startswith("oldest record waited")

        # Now the relaxed write's batch could not end in time either.
        later = now + timedelta(hours=2, minutes=30)
        batches = claim_sync_work(conn, config, later)
    assert sorted(sum(batches, [])) == sorted([relaxed.event_id, urgent.event_id])

    summary = process_events(rt, config, sum(batches, []))
    assert sorted(summary.stored) == sorted([relaxed.event_id, urgent.event_id])
    with rt.connection() as conn:
        rows = {
            r["record_id"]: r
            for r in conn.execute("select * from extraction_requests order by request_id")
        }
        conn.commit()
        submitted = submit_partition(conn, rt.registry, rt.orgs, _today())
        view = event_view(conn, "acme", relaxed.event_id)
    pulled = rows[relaxed.record_ids[0]]
    assert pulled["path"] == "sync" and "pulled from the pending batch work" in pulled["reason"]
    assert "deadline" in pulled["reason"] and pulled["job_key"] is None
    assert rows[urgent.record_ids[0]]["reason"] == urgent.escalation
    assert submitted.jobs == []
    assert view["escalation"]["reason"].startswith("deadline")
    assert view["status"] == "stored"


@pytest.fixture
def emulated(intake_runtime, emulator, emu):
    """A runtime whose org ``emu`` extracts with Anthropic, served by the emulator."""
    base = intake_runtime
    org = base.orgs["acme"].model_copy(
        update={
            "org": "emu",
            "provider": base.orgs["acme"].provider.model_copy(update={"provider": "anthropic"}),
        }  # fmt: skip
    )
    settings = Settings.from_env(
        memo_home=base.settings.memo_home,
        provider_overrides={
            "anthropic": {"base_url": emulator.url, "max_retries": 0, "timeout_seconds": 30}
        },
    )
    rt = IntakeRuntime(settings, orgs={**base.orgs, "emu": org}, urls=base.urls)
    rt.__dict__["vectors"] = base.vectors
    rt.__dict__["embedder"] = base.embedder
    return rt


def test_escalation_after_submission_pays_twice_and_stores_once(emulated, emu):
    rt = emulated
    config = fast_config(expected_batch_latency_seconds=3600, escalation_margin_seconds=600)
    emu.faults({"kind": "stuck", "provider": "anthropic", "scope": "batch", "seconds": 86_000})
    now = datetime.now(UTC)
    deadline = now + timedelta(hours=2)
    accepted = accept(rt, config, _bulk_write("emu", "Goran Silva", deadline), now)
    assert accepted.escalation is None

    with rt.connection() as conn:
        plan_partition(conn, rt.registry, rt.orgs, _today())
        submitted = submit_partition(conn, rt.registry, rt.orgs, _today())
        assert len(submitted.jobs) == 1
        assert poll_open_jobs(conn, rt.registry).ended == []
        # An hour later the batch is still in progress: no escalation yet (deadline in 1 h).
        assert claim_sync_work(conn, config, now + timedelta(hours=1)) == []
        batches = claim_sync_work(conn, config, now + timedelta(hours=1, minutes=55))
    assert batches == [[accepted.event_id]]

    summary = process_events(rt, config, batches[0])
    assert summary.stored == [accepted.event_id] and summary.calls == 1
    state = emu.state()
    assert state["sync_calls"]["anthropic"] == 1 and state["batches_created"]["anthropic"] == 1
    with rt.connection() as conn:
        request = conn.execute("select * from extraction_requests").fetchone()
        result = conn.execute("select * from request_results").fetchone()
        stored = _stored_rows(conn, "emu")
    assert request["path"] == "sync" and "second payment" in request["reason"]
    assert request["job_key"] is not None and result["job_key"] is None
    assert result["service_tier"] == "standard"

    # The batch answers a day later: recorded as a duplicate, nothing stored twice.
    emu.advance(86_400)
    with rt.connection() as conn:
        assert poll_open_jobs(conn, rt.registry).ended
        collected = collect_partition(conn, rt.registry, rt.orgs, _today(), resubmit=False)
        store_partition(conn, rt.orgs, rt.vectors, rt.embedder, _today())
        conn.commit()
        results = conn.execute("select request_id, job_key from request_results").fetchall()
        outbox = conn.execute("select message_id from intake_outbox").fetchall()
        after = _stored_rows(conn, "emu")
    assert collected.duplicates == 1 and collected.jobs == 1
    assert results == [{"request_id": request["request_id"], "job_key": None}]
    assert after == stored
    assert outbox == []  # no webhook endpoint was set for the org


def test_rate_limited_sync_calls_back_off_and_succeed(emulated, emu):
    rt = emulated
    emu.faults(
        {
            "kind": "error",
            "provider": "anthropic",
            "scope": "sync",
            "status": 429,
            "count": 2,
            "retry_after": 0.05,
        }
    )
    content, address = email("Hana Kowalski")
    write = WriteIn("emu", "memorize", "async", "contacts", [DocumentIn(content)], address)
    accepted = accept(rt, fast_config(), write)
    summary = process_events(rt, fast_config(), [accepted.event_id])
    assert summary.stored == [accepted.event_id] and summary.calls == 1
    assert emu.state()["sync_calls"]["anthropic"] == 3
    with rt.connection() as conn:
        results = conn.execute("select outcome from request_results").fetchall()
    assert results == [{"outcome": "succeeded"}]


def test_document_prompts_share_the_memorize_cache_breakpoint(emulated, emu):
    rt = emulated
    org = rt.orgs["emu"]
    base = {"source_id": "d1", "org": "emu", "content": "Farah Tanaka leads Umbrella Labs."}
    note = ContentRecord(**base, source_ts=SOURCE_TS)
    document = ContentRecord(**base, source_ts=SOURCE_TS, metadata={"prompt": "document"})
    provider = rt.registry.get("anthropic")
    params = {
        kind: provider.params(ProviderRequest(f"r-{kind}", render(org, record), ""), ttl="5m")
        for kind, record in (("note", note), ("document", document))
    }
    note_system, doc_system = params["note"]["system"], params["document"]["system"]
    assert len(note_system) == 1 and len(doc_system) == 2
    assert doc_system[0] == note_system[0]
    assert all(block["cache_control"]["type"] == "ephemeral" for block in doc_system)
    assert doc_system[1]["text"].startswith("Document instructions:")

    outcome = provider.call_sync(ProviderRequest("r-document", render(org, document), ""))
    assert outcome.outcome.value == "succeeded", outcome.error


def test_the_daily_budget_holds_sync_calls_until_it_is_raised(intake_runtime):
    rt = intake_runtime
    config = fast_config()
    acme = rt.orgs["acme"]
    content, address = email("Kim Novak")
    write = WriteIn(
        org="acme",
        kind="memorize",
        execution_mode="async",
        collection="contacts",
        documents=[DocumentIn(content, source_ts=SOURCE_TS)],
        identifier=address,
    )
    accepted = accept(rt, config, write)
    rt.orgs["acme"] = acme.model_copy(update={"daily_budget_usd": 0.0})
    held = process_events(rt, config, [accepted.event_id])
    assert held.calls == 0 and held.stored == [] and held.failed == []
    (message,) = held.held
    assert message.startswith(f"record {accepted.record_ids[0]} not sent to local: held:")
    assert "more than org acme's $0.00 daily budget" in message
    with rt.connection() as conn:
        view = event_view(conn, "acme", accepted.event_id)
        results = conn.execute("select count(*) as n from request_results").fetchone()["n"]
    assert results == 0
    assert view["status"] == "submitted"
    assert [h["detail"] for h in view["history"] if h["status"] == "held"] == [message]

    # When the sensor takes held work up again, new work still goes first.
    content, address = email("Lea Berg")
    fresh = accept(
        rt,
        config,
        dataclasses.replace(
            write,
            org="beta",
            identifier=address,
            documents=[DocumentIn(content, source_ts=SOURCE_TS)],
        ),
    )
    one_slot = fast_config(async_batch_size=1, async_max_runs_per_tick=1)
    with rt.connection() as conn:
        later = datetime.now(UTC) + timedelta(hours=1)
        assert claim_sync_work(conn, one_slot, later) == [[fresh.event_id]]
        assert claim_sync_work(conn, one_slot, later) == [[accepted.event_id]]

    rt.orgs["acme"] = acme  # no budget: the next run makes the call
    done = process_events(rt, config, [accepted.event_id])
    assert done.calls == 1 and done.held == [] and done.stored == [accepted.event_id]
    with rt.connection() as conn:
        request = conn.execute(
            "select status, forecast_usd from extraction_requests where record_id = %s",
            (accepted.record_ids[0],),
        ).fetchone()
        assert event_view(conn, "acme", accepted.event_id)["status"] == "stored"
    assert request["status"] == "succeeded" and request["forecast_usd"] > 0
