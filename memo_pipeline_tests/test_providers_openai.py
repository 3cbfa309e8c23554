"""The OpenAI adapter against the emulator, through the real ``openai`` SDK over HTTP.

Covers: a batch round trip (JSONL upload, batch create with the job key in metadata, poll,
results joined on custom_id from both files, usage with ``prompt_tokens`` including cached
tokens), the sync call, prompt-caching figures (``prompt_cache_key``, minimum length), finding a
batch by its job key, limits refused before any call, batch validation failures mapped to
per-request outcomes, every injected failure classified with a reason, and one regression test
per OpenAI gotcha (G7-G10 of shared/reference/providers.md §7) plus the documented upload rules
(``.jsonl`` only, lines missing ``method``).

Leaves out: the Responses endpoint (the adapter uses Chat Completions), webhooks, and anything a
real API key would be needed for.
"""

from __future__ import annotations

import io

import openai
import orjson
import pytest

from memo_pipeline.intake.extract import TransientCallError
from memo_pipeline.providers.base import JobState, Outcome
from memo_pipeline.providers.classify import ProviderCallError
from memo_pipeline.providers.extractor import answer_for_prompt
from memo_pipeline_tests.emulator_fixtures import (
    OPENAI_MODEL,
    by_id,
    limits_for,
    make_requests,
    openai_provider,
    outcome_counts,
)

pytest_plugins = ["memo_pipeline_tests.conftest_emulator"]


def run_batch(provider, requests, job_key="job-o"):
    handle = provider.submit_batch(job_key, requests)
    status = provider.poll(handle.job_id)
    assert status.state is JobState.ENDED, status
    return handle, list(provider.results(handle.job_id))


def raw_client(emulator):
    return openai.OpenAI(base_url=emulator.openai_base_url, max_retries=0)


def upload_lines(client, lines):
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    uploaded = client.files.create(file=("batch.jsonl", io.BytesIO(data)), purpose="batch")
    return client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )


def line_for(provider, request, **changes):
    line = {
        "custom_id": request.request_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": provider.body(request),
    }
    line.update(changes)
    return line


def test_batch_round_trip(emulator, emu):
    provider = openai_provider(emulator)
    requests = make_requests(5)
    handle, outcomes = run_batch(provider, requests)

    assert handle.provider == "openai" and handle.model == OPENAI_MODEL
    assert handle.request_count == 5 and handle.bytes > 0
    assert handle.console_url == f"https://platform.openai.com/batches/{handle.job_id}"
    results = by_id(outcomes)
    assert set(results) == {r.request_id for r in requests}
    for request in requests:
        outcome = results[request.request_id]
        assert outcome.outcome is Outcome.SUCCEEDED, outcome
        assert outcome.answer_text == answer_for_prompt(request.prompt.text)
        assert outcome.usage.service_tier == "batch"
        assert outcome.usage.output_tokens > 0
    batch = raw_client(emulator).batches.retrieve(handle.job_id)
    assert batch.metadata == {"memo_job_key": "job-o"}
    assert batch.request_counts.completed == 5 and batch.error_file_id is None


def test_usage_splits_prompt_tokens_into_uncached_written_and_cached(emulator, emu):
    provider = openai_provider(emulator)
    requests = make_requests(4)
    _, outcomes = run_batch(provider, requests)
    client = raw_client(emulator)
    batch = client.batches.retrieve(client.batches.list().data[0].id)
    lines = [orjson.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]

    reported = {line["custom_id"]: line["response"]["body"]["usage"] for line in lines}
    results = by_id(outcomes)
    for request_id, usage in reported.items():
        normalised = results[request_id].usage
        # prompt_tokens includes cached (and written) tokens; Usage keeps them apart.
        assert normalised.prompt_tokens == usage["prompt_tokens"]
        assert normalised.cache_read_tokens == usage["prompt_tokens_details"]["cached_tokens"]
        assert normalised.input_tokens < usage["prompt_tokens"]
    reads = [o.usage.cache_read_tokens for o in outcomes if o.usage.cache_read_tokens]
    writes = [o.usage.cache_write_5m_tokens for o in outcomes if o.usage.cache_write_tokens]
    assert len(writes) == 1 and len(reads) == 3
    assert all(tokens % 128 == 0 and tokens >= 1024 for tokens in reads)


def test_sync_call_reads_the_prefix_written_by_a_previous_call(emulator, emu):
    provider = openai_provider(emulator)
    first, second = make_requests(2)

    cold = provider.call_sync(first)
    warm = provider.call_sync(second)

    assert cold.outcome is Outcome.SUCCEEDED and warm.outcome is Outcome.SUCCEEDED
    assert cold.usage.service_tier == "standard"
    assert cold.usage.cache_write_5m_tokens > 0 and cold.usage.cache_read_tokens == 0
    assert warm.usage.cache_read_tokens == cold.usage.cache_write_5m_tokens
    assert emu.state()["sync_calls"]["openai"] == 2


def test_prompt_cache_key_separates_cache_entries(emulator, emu):
    provider = openai_provider(emulator)
    (request,) = make_requests(1)
    other_key = openai_provider(emulator)
    body = other_key.body(request) | {"prompt_cache_key": "another-collection"}
    client = openai.OpenAI(base_url=emulator.openai_base_url)

    provider.call_sync(request)
    other = client.chat.completions.create(**body)

    assert other.usage.prompt_tokens_details.cached_tokens == 0
    assert other.usage.prompt_tokens_details.cache_write_tokens > 0


def test_prefix_below_the_minimum_is_not_cached(emulator, emu):
    provider = openai_provider(emulator)
    requests = make_requests(3, prefix="Extract people and companies as JSON.\n")

    _, outcomes = run_batch(provider, requests)

    assert all(o.usage.cache_read_tokens == 0 for o in outcomes)
    assert all(o.usage.cache_write_tokens == 0 for o in outcomes)


def test_find_job_uses_the_job_key_in_metadata(emulator, emu):
    provider = openai_provider(emulator)
    requests = make_requests(3)
    handle = provider.submit_batch("job-crash", requests)
    provider.submit_batch("job-other", make_requests(3, start=10))

    found = provider.find_job("job-crash", requests)

    assert found is not None and found.job_id == handle.job_id
    assert found.bytes == handle.bytes
    assert provider.find_job("job-never", requests) is None
    assert emu.state()["batches_created"]["openai"] == 2


def test_long_job_keys_are_stored_as_a_digest(emulator, emu):
    provider = openai_provider(emulator)
    requests = make_requests(1)
    key = "k" * 600
    handle = provider.submit_batch(key, requests)

    batch = raw_client(emulator).batches.retrieve(handle.job_id)

    assert batch.metadata["memo_job_key"].startswith("sha256:")
    assert provider.find_job(key, requests).job_id == handle.job_id


def test_submit_refuses_batches_over_the_limits_or_with_two_models(emulator, emu):
    small = openai_provider(emulator, limits=limits_for("openai", max_requests_per_batch=2))
    provider = openai_provider(emulator)
    mixed = make_requests(1) + make_requests(1, start=1, model="gpt-6.2-sol")

    with pytest.raises(ValueError, match="exceed the limit of 2"):
        small.submit_batch("too-many", make_requests(3))
    with pytest.raises(ValueError, match="one model"):
        provider.submit_batch("mixed", mixed)
    assert emu.state()["batches_created"]["openai"] == 0


BATCH_FAULTS = [
    ({"kind": "error", "status": 500}, Outcome.RETRYABLE, "HTTP 500"),
    ({"kind": "error", "error_type": "overloaded_error"}, Outcome.RETRYABLE, "HTTP 503"),
    ({"kind": "error", "status": 429}, Outcome.RETRYABLE, "HTTP 429"),
    ({"kind": "error", "error_type": "invalid_request_error"}, Outcome.PERMANENT, "HTTP 400"),
    ({"kind": "max_tokens"}, Outcome.RETRYABLE, "truncated (stop reason length)"),
    ({"kind": "invalid_json"}, Outcome.RETRYABLE, "not valid JSON"),
    ({"kind": "refusal"}, Outcome.PERMANENT, "refused"),
    ({"kind": "expired"}, Outcome.RETRYABLE, "batch_expired"),
    ({"kind": "output_4xx"}, Outcome.PERMANENT, "HTTP 400"),
]


def test_every_injected_batch_failure_is_classified_with_a_reason(emulator, emu):
    provider = openai_provider(emulator)
    requests = make_requests(len(BATCH_FAULTS) + 2)
    for (rule, _, _), request in zip(BATCH_FAULTS, requests, strict=False):
        emu.faults({**rule, "provider": "openai", "match": f"^{request.request_id}$"})

    handle = provider.submit_batch("faults", requests)
    results = by_id(list(provider.results(handle.job_id)))

    for (rule, expected, reason), request in zip(BATCH_FAULTS, requests, strict=False):
        outcome = results[request.request_id]
        assert outcome.outcome is expected, (rule, outcome)
        assert reason in (outcome.error or ""), (rule, outcome)
    for request in requests[len(BATCH_FAULTS) :]:
        assert results[request.request_id].outcome is Outcome.SUCCEEDED


@pytest.mark.parametrize(
    ("rule", "expected", "reason"),
    [
        ({"status": 429, "retry_after": 0.01}, Outcome.RETRYABLE, "HTTP 429 rate_limit_exceeded"),
        ({"status": 500}, Outcome.RETRYABLE, "HTTP 500"),
        ({"error_type": "overloaded_error"}, Outcome.RETRYABLE, "HTTP 503"),
        ({"error_type": "invalid_request_error"}, Outcome.PERMANENT, "HTTP 400"),
    ],
)
def test_sync_http_failures_come_back_as_outcomes(emulator, emu, rule, expected, reason):
    emu.faults({"kind": "error", "provider": "openai", "scope": "sync", **rule})
    provider = openai_provider(emulator, max_retries=0)

    outcome = provider.call_sync(make_requests(1)[0])

    assert outcome.outcome is expected
    assert reason in (outcome.error or "")


def test_sync_429_is_retried_by_the_sdk_then_succeeds(emulator, emu):
    emu.faults(
        {"kind": "error", "provider": "openai", "status": 429, "retry_after": 0.01, "count": 1}
    )
    provider = openai_provider(emulator, max_retries=2)

    outcome = provider.call_sync(make_requests(1)[0])

    assert outcome.outcome is Outcome.SUCCEEDED
    assert emu.state()["sync_calls"]["openai"] == 2


@pytest.mark.parametrize(
    ("rule", "expected", "reason"),
    [
        ({"kind": "max_tokens"}, Outcome.RETRYABLE, "truncated"),
        ({"kind": "invalid_json"}, Outcome.RETRYABLE, "not valid JSON"),
        ({"kind": "refusal"}, Outcome.PERMANENT, "refused"),
    ],
)
def test_sync_answer_faults_are_classified(emulator, emu, rule, expected, reason):
    emu.faults({**rule, "provider": "openai", "scope": "sync"})
    provider = openai_provider(emulator)

    outcome = provider.call_sync(make_requests(1)[0])

    assert outcome.outcome is expected and reason in (outcome.error or "")


def test_create_429_raises_retryable(emulator, emu):
    emu.faults({"kind": "error", "provider": "openai", "scope": "create", "status": 429})
    provider = openai_provider(emulator, max_retries=0)

    with pytest.raises(ProviderCallError) as caught:
        provider.submit_batch("throttled", make_requests(2))

    assert caught.value.retryable and caught.value.status == 429
    assert "test-openai-key" not in str(caught.value)
    assert emu.state()["batches_created"]["openai"] == 0


def test_stuck_batch_stays_in_progress_until_the_clock_passes(emulator, emu):
    emu.faults({"kind": "stuck", "provider": "openai", "seconds": 3600})
    provider = openai_provider(emulator)
    handle = provider.submit_batch("stuck", make_requests(2))

    running = provider.poll(handle.job_id)
    with pytest.raises(ProviderCallError):
        list(provider.results(handle.job_id))
    emu.advance(3700)

    assert running.state is JobState.IN_PROGRESS and running.provider_status == "in_progress"
    assert provider.poll(handle.job_id).provider_status == "completed"


def test_cancelled_batch_keeps_finished_answers_and_cancels_the_rest(emulator, emu):
    emu.config(batch_delay_seconds=1000)
    provider = openai_provider(emulator)
    handle = provider.submit_batch("cancel", make_requests(20))

    emu.advance(500)
    provider.cancel(handle.job_id)
    status = provider.poll(handle.job_id)
    outcomes = list(provider.results(handle.job_id))

    assert status.state is JobState.ENDED and status.provider_status == "cancelled"
    counts = outcome_counts(outcomes)
    assert counts[Outcome.SUCCEEDED] > 0 and counts[Outcome.RETRYABLE] > 0
    assert sum(counts.values()) == 20
    cancelled = [o for o in outcomes if o.outcome is Outcome.RETRYABLE]
    assert all("batch_cancelled" in o.error for o in cancelled)


def test_g7_duplicate_custom_id_fails_the_batch(emulator, emu):
    provider = openai_provider(emulator)
    requests = make_requests(2)
    with pytest.raises(ValueError, match="appears twice"):
        provider.submit_batch("dupes", [requests[0], requests[1], requests[0]])
    assert emu.state()["batches_created"]["openai"] == 0

    client = raw_client(emulator)
    batch = upload_lines(client, [line_for(provider, r) for r in [*requests, requests[0]]])
    status = provider.poll(batch.id)
    outcomes = by_id(list(provider.results(batch.id)))

    assert status.state is JobState.FAILED
    assert "duplicate_custom_id (line 3)" in status.message
    error = client.batches.retrieve(batch.id).errors.data[0]
    assert (error.code, error.line) == ("duplicate_custom_id", 3)
    # Each request is fine on its own: sent once, it can succeed.
    assert {o.outcome for o in outcomes.values()} == {Outcome.RETRYABLE}
    assert set(outcomes) == {r.request_id for r in requests}


def test_g8_completed_with_no_output_file(emulator, emu):
    emu.faults({"kind": "error", "provider": "openai", "error_type": "invalid_request_error"})
    provider = openai_provider(emulator)
    handle = provider.submit_batch("all-fail", make_requests(4))

    batch = raw_client(emulator).batches.retrieve(handle.job_id)
    status = provider.poll(handle.job_id)
    outcomes = list(provider.results(handle.job_id))

    assert batch.status == "completed" and batch.output_file_id is None
    assert batch.error_file_id is not None and batch.request_counts.failed == 4
    assert status.state is JobState.ENDED and "no request succeeded" in status.message
    assert outcome_counts(outcomes)[Outcome.PERMANENT] == 4
    assert all("HTTP 400" in o.error for o in outcomes)


def test_g9_expired_batch_keeps_its_finished_answers(emulator, emu):
    emu.faults({"kind": "expired", "provider": "openai", "fraction": 0.5})
    provider = openai_provider(emulator)
    requests = make_requests(12)
    handle = provider.submit_batch("expiring", requests)

    batch = raw_client(emulator).batches.retrieve(handle.job_id)
    status = provider.poll(handle.job_id)
    results = by_id(list(provider.results(handle.job_id)))

    assert batch.status == "expired" and batch.output_file_id and batch.error_file_id
    assert status.state is JobState.ENDED
    assert set(results) == {r.request_id for r in requests}
    succeeded = [o for o in results.values() if o.outcome is Outcome.SUCCEEDED]
    expired = [o for o in results.values() if o.outcome is not Outcome.SUCCEEDED]
    assert succeeded and expired
    assert all(o.outcome is Outcome.RETRYABLE and "batch_expired" in o.error for o in expired)


def test_g9_window_closing_mid_run_expires_the_rest(emulator, emu):
    emu.faults({"kind": "stuck", "provider": "openai", "seconds": 30 * 3600})
    provider = openai_provider(emulator)
    handle = provider.submit_batch("late", make_requests(3))

    emu.advance(25 * 3600)
    outcomes = list(provider.results(handle.job_id))

    assert provider.poll(handle.job_id).provider_status == "expired"
    assert all("batch_expired" in o.error for o in outcomes) and len(outcomes) == 3


def test_g10_4xx_line_in_the_output_file_is_not_a_success(emulator, emu):
    emu.faults({"kind": "output_4xx", "provider": "openai", "match": "-00001$"})
    provider = openai_provider(emulator)
    handle = provider.submit_batch("g10", make_requests(3))
    client = raw_client(emulator)
    batch = client.batches.retrieve(handle.job_id)

    lines = [orjson.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    results = by_id(list(provider.results(handle.job_id)))

    bad = next(line for line in lines if line["custom_id"] == "req-00001")
    assert bad["error"] is None and bad["response"]["status_code"] == 400
    assert results["req-00001"].outcome is Outcome.PERMANENT
    assert "HTTP 400" in results["req-00001"].error
    assert results["req-00000"].outcome is Outcome.SUCCEEDED


def test_upload_must_be_jsonl(emulator, emu):
    client = raw_client(emulator)

    with pytest.raises(openai.BadRequestError, match=r"Must be \.jsonl"):
        client.files.create(file=("batch.txt", io.BytesIO(b"{}\n")), purpose="batch")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"method": None}, "missing_required_parameter"),
        ({"url": "/v1/responses"}, "url_mismatch"),
        ({"model": "gpt-6.2-sol"}, "model_mismatch"),
    ],
)
def test_malformed_lines_fail_validation_and_only_they_are_permanent(emulator, emu, change, code):
    provider = openai_provider(emulator)
    requests = make_requests(3)
    lines = [line_for(provider, r) for r in requests]
    if change.get("method", "") is None:
        del lines[1]["method"]
    elif "url" in change:
        lines[1]["url"] = change["url"]
    else:
        lines[1]["body"] = lines[1]["body"] | {"model": change["model"]}

    batch = upload_lines(raw_client(emulator), lines)
    status = provider.poll(batch.id)
    results = by_id(list(provider.results(batch.id)))

    assert status.state is JobState.FAILED and f"{code} (line 2)" in status.message
    assert results["req-00001"].outcome is Outcome.PERMANENT and code in results["req-00001"].error
    assert results["req-00000"].outcome is Outcome.RETRYABLE
    assert results["req-00002"].outcome is Outcome.RETRYABLE


def test_sync_429_passes_the_providers_retry_after_up(emulator, emu):
    emu.faults(
        {"kind": "error", "provider": "openai", "scope": "sync", "status": 429, "retry_after": 7}
    )
    provider = openai_provider(emulator, max_retries=0)

    outcome = provider.call_sync(make_requests(1)[0])

    assert outcome.outcome is Outcome.RETRYABLE
    assert "retry-after 7s" in (outcome.error or "")
    # The intake's sync path waits what the provider asked for, not its own backoff.
    assert TransientCallError(outcome).retry_after == 7.0
