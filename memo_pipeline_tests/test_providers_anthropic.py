"""The Anthropic adapter against the emulator, through the real ``anthropic`` SDK over HTTP.

Covers: a batch round trip (submit, poll, results joined on custom_id, usage in Anthropic's
shape), the sync call, prompt-caching figures (priming batch, TTL expiry, the batch cache being
separate from the sync cache), recovering a submitted batch with ``find_job``, limits refused
before any call, every injected failure classified with a reason, and one regression test per
Anthropic gotcha (G1-G6 of shared/reference/providers.md §7).

Leaves out: the emulator's own rules tested without an adapter (test_providers_emulator.py),
the pipeline's ledger and priming decisions, and anything a real API key would be needed for.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import anthropic
import orjson
import pytest

from memo_pipeline.intake.extract import TransientCallError
from memo_pipeline.providers.base import JobState, Outcome, ProviderRequest
from memo_pipeline.providers.classify import ProviderCallError, split_lines
from memo_pipeline.providers.extractor import answer_for_prompt
from memo_pipeline_tests.emulator_fixtures import (
    anthropic_provider,
    by_id,
    limits_for,
    make_requests,
    outcome_counts,
)

pytest_plugins = ["memo_pipeline_tests.conftest_emulator"]


def run_batch(provider, requests, job_key="job-a"):
    handle = provider.submit_batch(job_key, requests)
    status = provider.poll(handle.job_id)
    assert status.state is JobState.ENDED, status
    return handle, list(provider.results(handle.job_id))


def test_batch_round_trip(emulator, emu):
    provider = anthropic_provider(emulator)
    requests = make_requests(5)
    handle, outcomes = run_batch(provider, requests)

    assert handle.provider == "anthropic"
    assert handle.request_count == 5 and handle.bytes > 0
    assert handle.model == "claude-haiku-5-5"
    assert handle.submitted_at.tzinfo is not None
    assert handle.console_url and handle.job_id in handle.console_url
    results = by_id(outcomes)
    assert set(results) == {r.request_id for r in requests}
    prefix_tokens = len(requests[0].prompt.static_prefix) // 4
    for request in requests:
        outcome = results[request.request_id]
        assert outcome.outcome is Outcome.SUCCEEDED, outcome
        assert outcome.answer_text == answer_for_prompt(request.prompt.text)
        assert outcome.stop_reason == "end_turn"
        assert outcome.usage.service_tier == "batch"
        assert outcome.usage.cache_write_1h_tokens == prefix_tokens
        assert outcome.usage.cache_write_5m_tokens == 0
        assert outcome.usage.input_tokens > 0 and outcome.usage.output_tokens > 0
    assert emu.state()["batches_created"]["anthropic"] == 1


def test_sync_call_writes_then_reads_the_5m_cache(emulator, emu):
    provider = anthropic_provider(emulator)
    first, second = make_requests(2)

    cold = provider.call_sync(first)
    warm = provider.call_sync(second)

    assert cold.outcome is Outcome.SUCCEEDED and warm.outcome is Outcome.SUCCEEDED
    assert cold.answer_text == answer_for_prompt(first.prompt.text)
    assert cold.usage.service_tier == "standard"
    assert cold.usage.cache_write_5m_tokens > 0 and cold.usage.cache_read_tokens == 0
    assert warm.usage.cache_read_tokens == cold.usage.cache_write_5m_tokens
    assert warm.usage.cache_write_tokens == 0
    assert emu.state()["sync_calls"]["anthropic"] == 2


def test_repair_request_resends_answer_and_errors_after_the_record(emulator, emu):
    provider = anthropic_provider(emulator)
    (base,) = make_requests(1)
    repair = ProviderRequest(
        request_id=base.request_id,
        prompt=base.prompt,
        model=base.model,
        previous_answer='{"entities": []}',
        repair_errors=("properties: Field required",),
    )

    params = provider.params(repair, ttl="1h")
    outcome = provider.call_sync(repair)

    assert [m["role"] for m in params["messages"]] == ["user", "assistant", "user"]
    assert "properties: Field required" in params["messages"][2]["content"][0]["text"]
    assert params["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert params["output_config"]["format"]["type"] == "json_schema"
    assert outcome.outcome is Outcome.SUCCEEDED
    assert outcome.answer_text == answer_for_prompt(base.prompt.text)


def test_priming_batch_makes_95_percent_of_the_next_batch_read_the_cache(emulator, emu):
    provider = anthropic_provider(emulator)
    primer = make_requests(1, id_prefix="prime")
    requests = make_requests(100)

    _, primed = run_batch(provider, primer, "prime")
    _, outcomes = run_batch(provider, requests, "bulk")

    assert primed[0].usage.cache_write_1h_tokens > 0
    reads = [o for o in outcomes if o.usage.cache_read_tokens > 0]
    assert len(reads) >= 95
    assert all(o.usage.cache_write_tokens == 0 for o in reads)


def test_cold_batch_writes_for_every_request(emulator, emu):
    provider = anthropic_provider(emulator)

    _, outcomes = run_batch(provider, make_requests(10))

    assert all(o.usage.cache_write_1h_tokens > 0 for o in outcomes)
    assert all(o.usage.cache_read_tokens == 0 for o in outcomes)


def test_batch_cache_entry_expires_after_its_ttl(emulator, emu):
    provider = anthropic_provider(emulator)
    run_batch(provider, make_requests(1, id_prefix="prime"), "prime")

    emu.advance(3700)  # past the 1-hour lifetime
    _, outcomes = run_batch(provider, make_requests(3))

    assert all(o.usage.cache_read_tokens == 0 for o in outcomes)
    assert all(o.usage.cache_write_1h_tokens > 0 for o in outcomes)


def test_find_job_recovers_a_submitted_batch_without_resubmitting(emulator, emu):
    provider = anthropic_provider(emulator)
    requests = make_requests(4)
    handle = provider.submit_batch("job-crash", requests)

    found = provider.find_job("job-crash", requests)
    other = provider.find_job("job-other", make_requests(4, start=50))
    later = provider.find_job(
        "job-crash", requests, submitted_after=datetime.now(UTC) + timedelta(minutes=1)
    )

    assert found is not None and found.job_id == handle.job_id
    assert found.request_count == 4 and found.bytes == handle.bytes
    assert other is None
    assert later is None
    assert emu.state()["batches_created"]["anthropic"] == 1


def test_find_job_adopts_an_in_progress_orphan_only_when_the_ledger_vouches(emulator, emu):
    emu.config(batch_delay_seconds=600)
    provider = anthropic_provider(emulator)
    recorded = provider.submit_batch("job-recorded", make_requests(3, start=20))
    requests = make_requests(3)
    orphan = provider.submit_batch("job-orphan", requests)

    assert provider.poll(orphan.job_id).state is JobState.IN_PROGRESS
    unvouched = provider.find_job("job-orphan", requests)
    vouched = provider.find_job("job-orphan", requests, exclude_job_ids=[recorded.job_id])
    ambiguous = provider.find_job("job-orphan", requests, exclude_job_ids=[])

    assert unvouched is None
    assert vouched is not None and vouched.job_id == orphan.job_id
    assert ambiguous is None


def test_find_job_ignores_an_all_failed_batch_of_the_same_requests(emulator, emu):
    emu.faults({"kind": "error", "error_type": "overloaded_error", "count": 3})
    provider = anthropic_provider(emulator)
    requests = make_requests(3)
    _, failed = run_batch(provider, requests, "first-try")

    found = provider.find_job("second-try", requests)

    assert {o.outcome for o in failed} == {Outcome.RETRYABLE}
    assert found is None


def test_submit_refuses_batches_over_the_limits(emulator, emu):
    small = anthropic_provider(emulator, limits=limits_for("anthropic", max_requests_per_batch=3))
    tiny = anthropic_provider(emulator, limits=limits_for("anthropic", max_bytes_per_batch=1000))
    provider = anthropic_provider(emulator)
    duplicate = make_requests(2) + make_requests(1)

    with pytest.raises(ValueError, match="exceed the limit of 3"):
        small.submit_batch("too-many", make_requests(4))
    with pytest.raises(ValueError, match="over the limit of 1000"):
        tiny.submit_batch("too-big", make_requests(1))
    with pytest.raises(ValueError, match="appears twice"):
        provider.submit_batch("dupes", duplicate)
    assert emu.state()["batches_created"]["anthropic"] == 0


def test_results_of_an_unfinished_batch_raise_retryable(emulator, emu):
    emu.config(batch_delay_seconds=600)
    provider = anthropic_provider(emulator)
    handle = provider.submit_batch("slow", make_requests(2))

    with pytest.raises(ProviderCallError) as caught:
        list(provider.results(handle.job_id))

    assert caught.value.retryable


BATCH_FAULTS = [
    ({"kind": "error", "error_type": "overloaded_error"}, Outcome.RETRYABLE, "overloaded_error"),
    ({"kind": "error", "error_type": "api_error"}, Outcome.RETRYABLE, "api_error"),
    (
        {"kind": "error", "error_type": "invalid_request_error"},
        Outcome.PERMANENT,
        "invalid_request_error",
    ),
    ({"kind": "max_tokens"}, Outcome.RETRYABLE, "truncated"),
    ({"kind": "invalid_json"}, Outcome.RETRYABLE, "not valid JSON"),
    ({"kind": "refusal"}, Outcome.PERMANENT, "refused"),
    ({"kind": "expired"}, Outcome.RETRYABLE, "expired"),
]


def test_every_injected_batch_failure_is_classified_with_a_reason(emulator, emu):
    provider = anthropic_provider(emulator)
    requests = make_requests(len(BATCH_FAULTS) + 2)
    for (rule, _, _), request in zip(BATCH_FAULTS, requests, strict=False):
        emu.faults({**rule, "provider": "anthropic", "match": f"^{request.request_id}$"})

    _, outcomes = run_batch(provider, requests)

    results = by_id(outcomes)
    for (rule, expected, reason), request in zip(BATCH_FAULTS, requests, strict=False):
        outcome = results[request.request_id]
        assert outcome.outcome is expected, (rule, outcome)
        assert reason in (outcome.error or ""), (rule, outcome)
    for request in requests[len(BATCH_FAULTS) :]:
        assert results[request.request_id].outcome is Outcome.SUCCEEDED


def test_truncated_answer_keeps_its_text_and_stop_reason(emulator, emu):
    emu.faults({"kind": "max_tokens", "provider": "anthropic"})
    provider = anthropic_provider(emulator)

    outcome = provider.call_sync(make_requests(1)[0])

    assert outcome.outcome is Outcome.RETRYABLE
    assert outcome.stop_reason == "max_tokens"
    assert outcome.answer_text and not outcome.answer_text.endswith("}")


def test_fraction_faults_hit_a_stable_share_of_ids(emulator, emu):
    emu.faults({"kind": "error", "error_type": "overloaded_error", "fraction": 0.3})
    provider = anthropic_provider(emulator)
    requests = make_requests(40)

    _, first = run_batch(provider, requests, "first")
    _, second = run_batch(provider, requests, "second")

    failed_first = {o.request_id for o in first if o.outcome is Outcome.RETRYABLE}
    failed_second = {o.request_id for o in second if o.outcome is Outcome.RETRYABLE}
    assert 4 <= len(failed_first) <= 20
    assert failed_first == failed_second


def test_sync_429_is_retried_by_the_sdk_then_succeeds(emulator, emu):
    emu.faults(
        {"kind": "error", "provider": "anthropic", "status": 429, "retry_after": 0.01, "count": 1}
    )
    provider = anthropic_provider(emulator, max_retries=2)

    outcome = provider.call_sync(make_requests(1)[0])

    assert outcome.outcome is Outcome.SUCCEEDED
    assert emu.state()["sync_calls"]["anthropic"] == 2


@pytest.mark.parametrize(
    ("rule", "expected", "reason"),
    [
        ({"status": 429, "retry_after": 0.01}, Outcome.RETRYABLE, "429 rate_limit_error"),
        ({"error_type": "overloaded_error"}, Outcome.RETRYABLE, "529 overloaded_error"),
        ({"status": 500}, Outcome.RETRYABLE, "500 api_error"),
        ({"error_type": "invalid_request_error"}, Outcome.PERMANENT, "400 invalid_request_error"),
    ],
)
def test_sync_http_failures_come_back_as_outcomes(emulator, emu, rule, expected, reason):
    emu.faults({"kind": "error", "provider": "anthropic", "scope": "sync", **rule})
    provider = anthropic_provider(emulator, max_retries=0)

    outcome = provider.call_sync(make_requests(1)[0])

    assert outcome.outcome is expected
    assert reason in (outcome.error or "")


def test_create_429_raises_retryable_and_submits_nothing(emulator, emu):
    emu.faults({"kind": "error", "provider": "anthropic", "scope": "create", "status": 429})
    provider = anthropic_provider(emulator, max_retries=0)

    with pytest.raises(ProviderCallError) as caught:
        provider.submit_batch("throttled", make_requests(2))

    assert caught.value.retryable and caught.value.status == 429
    assert "test-anthropic-key" not in str(caught.value)
    assert emu.state()["batches_created"]["anthropic"] == 0


def test_create_429_once_is_absorbed_by_sdk_retries(emulator, emu):
    emu.faults(
        {
            "kind": "error",
            "provider": "anthropic",
            "scope": "create",
            "status": 429,
            "retry_after": 0.01,
            "count": 1,
        }
    )
    provider = anthropic_provider(emulator, max_retries=2)

    handle = provider.submit_batch("retried", make_requests(2))

    assert provider.poll(handle.job_id).state is JobState.ENDED
    assert emu.state()["batches_created"]["anthropic"] == 1


def test_stuck_batch_stays_in_progress_until_the_clock_passes(emulator, emu):
    emu.faults({"kind": "stuck", "provider": "anthropic", "seconds": 7200})
    provider = anthropic_provider(emulator)
    handle = provider.submit_batch("stuck", make_requests(3))

    running = provider.poll(handle.job_id)
    emu.advance(7300)
    ended = provider.poll(handle.job_id)

    assert running.state is JobState.IN_PROGRESS and running.counts["processing"] == 3
    assert ended.state is JobState.ENDED and ended.counts["succeeded"] == 3


def test_batch_past_its_24h_window_expires_every_request(emulator, emu):
    emu.faults({"kind": "stuck", "provider": "anthropic", "seconds": 30 * 3600})
    provider = anthropic_provider(emulator)
    handle = provider.submit_batch("late", make_requests(3))

    emu.advance(25 * 3600)
    outcomes = list(provider.results(handle.job_id))

    assert outcome_counts(outcomes)[Outcome.RETRYABLE] == 3
    assert all("expired" in (o.error or "") for o in outcomes)


def test_cancel_mid_run_leaves_finished_requests_and_cancels_the_rest(emulator, emu):
    emu.config(batch_delay_seconds=1000)
    provider = anthropic_provider(emulator)
    requests = make_requests(20)
    handle = provider.submit_batch("cancel-me", requests)

    emu.advance(500)
    provider.cancel(handle.job_id)
    outcomes = list(provider.results(handle.job_id))

    counts = outcome_counts(outcomes)
    assert counts[Outcome.SUCCEEDED] > 0 and counts[Outcome.RETRYABLE] > 0
    assert counts[Outcome.SUCCEEDED] + counts[Outcome.RETRYABLE] == 20
    canceled = [o for o in outcomes if o.outcome is Outcome.RETRYABLE]
    assert all("canceled" in (o.error or "") for o in canceled)


def test_g1_results_arrive_out_of_input_order(emulator, emu):
    provider = anthropic_provider(emulator)
    requests = make_requests(8)

    _, outcomes = run_batch(provider, requests)

    assert [o.request_id for o in outcomes] != [r.request_id for r in requests]
    results = by_id(outcomes)
    for request in requests:
        assert results[request.request_id].answer_text == answer_for_prompt(request.prompt.text)


def test_g2_custom_id_over_64_characters_rejects_the_whole_batch(emulator, emu):
    (request,) = make_requests(1)
    with pytest.raises(ValueError, match="does not match"):
        ProviderRequest(request_id="a" * 65, prompt=request.prompt, model="")

    provider = anthropic_provider(emulator)
    params = provider.params(request, ttl="1h")
    client = anthropic.Anthropic(base_url=emulator.anthropic_base_url, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.batches.create(
            requests=[
                {"custom_id": "ok-1", "params": params},
                {"custom_id": "a" * 65, "params": params},
            ]
        )

    assert "requests.1.custom_id: String should have at most 64 characters" in str(caught.value)
    assert emu.state()["batches_created"]["anthropic"] == 0


def test_g3_crlf_split_results_stream(emulator, emu):
    emu.faults({"kind": "crlf_split", "provider": "anthropic"})
    provider = anthropic_provider(emulator)
    requests = make_requests(6)
    handle = provider.submit_batch("crlf", requests)

    client = anthropic.Anthropic(base_url=emulator.anthropic_base_url, max_retries=0)
    with pytest.raises(json.JSONDecodeError):
        list(client.messages.batches.results(handle.job_id))
    outcomes = list(provider.results(handle.job_id))

    results = by_id(outcomes)
    assert set(results) == {r.request_id for r in requests}
    assert all(o.outcome is Outcome.SUCCEEDED for o in outcomes)


def test_g4_results_without_a_message_are_classified_not_dereferenced(emulator, emu):
    emu.faults(
        {"kind": "error", "error_type": "invalid_request_error", "match": "^req-00000$"},
        {"kind": "expired", "match": "^req-00001$"},
        {"kind": "stuck", "provider": "anthropic", "seconds": 100, "match": "^cx-"},
    )
    provider = anthropic_provider(emulator)
    _, mixed = run_batch(provider, make_requests(4))
    canceled = provider.submit_batch("cancel", make_requests(3, id_prefix="cx"))
    provider.cancel(canceled.job_id)

    results = by_id(mixed + list(provider.results(canceled.job_id)))

    assert results["req-00000"].outcome is Outcome.PERMANENT
    assert results["req-00000"].error.startswith("errored: invalid_request_error")
    assert results["req-00001"].outcome is Outcome.RETRYABLE
    assert results["req-00001"].error.startswith("expired")
    assert results["req-00002"].outcome is Outcome.SUCCEEDED
    for request_id in ("cx-00000", "cx-00001", "cx-00002"):
        assert results[request_id].outcome is Outcome.RETRYABLE
        assert results[request_id].error.startswith("canceled")
        assert results[request_id].answer_text is None


def test_g5_sync_cache_entry_is_not_read_by_a_batch(emulator, emu):
    provider = anthropic_provider(emulator, sync_cache_ttl="1h")
    requests = make_requests(4)

    sync = provider.call_sync(requests[0])
    _, outcomes = run_batch(provider, requests[1:])

    assert sync.usage.cache_write_1h_tokens > 0
    assert all(o.usage.cache_read_tokens == 0 for o in outcomes)
    assert all(o.usage.cache_write_1h_tokens == sync.usage.cache_write_1h_tokens for o in outcomes)


def test_g6_prefix_below_the_model_minimum_is_silently_not_cached(emulator, emu, caplog):
    short = make_requests(3, prefix="Extract people and companies as JSON.\n")
    haiku_45 = anthropic_provider(emulator, model="claude-haiku-4-5")
    long_prefix = make_requests(2, start=10, model="claude-haiku-4-5")

    provider = anthropic_provider(emulator)
    with caplog.at_level(logging.WARNING, logger="memo_pipeline.providers.classify"):
        _, short_batch = run_batch(provider, short, "short")
    short_sync = [provider.call_sync(r) for r in short]
    # A ~1,400-token prefix clears the 1,024 default but not claude-haiku-4-5's 4,096.
    haiku_sync = [haiku_45.call_sync(r) for r in long_prefix]

    for outcome in short_batch + short_sync + haiku_sync:
        assert outcome.outcome is Outcome.SUCCEEDED
        assert outcome.usage.cache_write_tokens == 0 and outcome.usage.cache_read_tokens == 0
    assert "below the 1024-token minimum" in caplog.text


def test_list_pages_newest_first_through_the_sdk(emulator, emu):
    provider = anthropic_provider(emulator)
    ids = [provider.submit_batch(f"k{i}", make_requests(1, start=i)).job_id for i in range(3)]
    client = anthropic.Anthropic(base_url=emulator.anthropic_base_url)

    listed = [b.id for b in client.messages.batches.list(limit=1)]
    page = client.messages.batches.list(limit=2)

    assert listed == list(reversed(ids))
    assert page.has_more and page.last_id == ids[1]
    assert [b.id for b in client.messages.batches.list(before_id=ids[0], limit=5).data] == [
        ids[2],
        ids[1],
    ]


def test_results_stream_lines_parse_as_the_sdk_types(emulator, emu):
    provider = anthropic_provider(emulator)
    handle = provider.submit_batch("shape", make_requests(2))
    client = anthropic.Anthropic(base_url=emulator.anthropic_base_url)

    lines = list(client.messages.batches.results(handle.job_id))
    batch = client.messages.batches.retrieve(handle.job_id)

    assert batch.request_counts.succeeded == 2 and batch.ended_at is not None
    message = lines[0].result.message
    assert message.usage.cache_creation.ephemeral_1h_input_tokens > 0
    assert message.usage.service_tier == "batch"
    assert orjson.loads(message.content[0].text)["entities"]


def test_fallback_line_splitter_ends_lines_only_on_newline():
    chunks = [b'{"a":1}\r', b'\n{"b":2}\r\n{"c"', b":3}"]

    lines = [orjson.loads(raw) for raw in split_lines(chunks)]

    assert lines == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_sync_429_passes_the_providers_retry_after_up(emulator, emu):
    emu.faults(
        {"kind": "error", "provider": "anthropic", "scope": "sync", "status": 429, "retry_after": 7}
    )
    provider = anthropic_provider(emulator, max_retries=0)

    outcome = provider.call_sync(make_requests(1)[0])

    assert outcome.outcome is Outcome.RETRYABLE
    assert "retry-after 7s" in (outcome.error or "")
    # The intake's sync path waits what the provider asked for, not its own backoff.
    assert TransientCallError(outcome).retry_after == 7.0
