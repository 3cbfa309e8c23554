"""The Bedrock adapter against the emulator and moto's S3, through real boto3 clients over HTTP.

Covers: a batch inference round trip (input JSONL written to S3, job created idempotently from
the job key, polled, every ``*.jsonl.out`` read and joined on recordId, usage in the Claude
InvokeModel shape), the Converse sync call with a ``cachePoint`` (usage with ``inputTokens``
excluding cache), batch caching, stopping a job, partial completion, every injected failure
classified with a reason, and the Bedrock gotchas (G11, G12 including URL-encoded job ARNs, and
output order not guaranteed).

Leaves out: Converse-type batch jobs (the adapter writes InvokeModel bodies), EventBridge
completion events, IAM and KMS behaviour, and anything real AWS credentials would be needed for.
"""

from __future__ import annotations

from urllib.parse import quote

import boto3
import httpx
import orjson
import pytest

from memo_pipeline.providers.base import JobState, Outcome
from memo_pipeline.providers.bedrock import BedrockProvider, job_name
from memo_pipeline.providers.classify import ProviderCallError
from memo_pipeline.providers.extractor import answer_for_prompt
from memo_pipeline_tests.emulator_fixtures import (
    BEDROCK_MODEL,
    BUCKET,
    ROLE_ARN,
    bedrock_provider,
    by_id,
    limits_for,
    make_requests,
    outcome_counts,
)

pytest_plugins = ["memo_pipeline_tests.conftest_emulator"]

MIN_RECORDS = 100


def run_job(provider, requests, job_key="job-b"):
    handle = provider.submit_batch(job_key, requests)
    status = provider.poll(handle.job_id)
    assert status.state is JobState.ENDED, status
    return handle, list(provider.results(handle.job_id))


def s3(emulator):
    return boto3.client("s3", endpoint_url=emulator.s3_url, region_name="us-east-1")


def control(emulator):
    return boto3.client("bedrock", endpoint_url=emulator.bedrock_endpoint_url)


def output_lines(emulator, job_arn):
    job = control(emulator).get_model_invocation_job(jobIdentifier=job_arn)
    uri = job["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
    prefix = uri.removeprefix(f"s3://{BUCKET}/") + job_arn.rsplit("/", 1)[-1] + "/"
    client = s3(emulator)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    body = client.get_object(Bucket=BUCKET, Key=next(k for k in keys if k.endswith(".jsonl.out")))
    return keys, [orjson.loads(x) for x in body["Body"].read().splitlines()]


def test_batch_round_trip(emulator, emu):
    provider = bedrock_provider(emulator)
    requests = make_requests(MIN_RECORDS)
    handle, outcomes = run_job(provider, requests)

    assert handle.provider == "bedrock" and handle.model == BEDROCK_MODEL
    assert handle.job_id.startswith("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/")
    assert handle.console_url.endswith(quote(handle.job_id, safe=""))
    assert handle.request_count == MIN_RECORDS and handle.bytes > 0
    status = provider.poll(handle.job_id)
    assert status.provider_status == "Completed" and status.counts["succeeded"] == MIN_RECORDS
    results = by_id(outcomes)
    assert set(results) == {r.request_id for r in requests}
    for request in requests[:10]:
        outcome = results[request.request_id]
        assert outcome.outcome is Outcome.SUCCEEDED, outcome
        assert outcome.answer_text == answer_for_prompt(request.prompt.text)
        assert outcome.usage.service_tier == "batch" and outcome.usage.output_tokens > 0
    keys, _ = output_lines(emulator, handle.job_id)
    assert sorted(k.rsplit("/", 1)[-1] for k in keys) == ["manifest.json.out", "records.jsonl.out"]


def test_output_order_is_not_input_order(emulator, emu):
    provider = bedrock_provider(emulator)
    requests = make_requests(MIN_RECORDS)
    handle = provider.submit_batch("order", requests)

    _, lines = output_lines(emulator, handle.job_id)

    assert [line["recordId"] for line in lines] != [r.request_id for r in requests]
    assert {line["recordId"] for line in lines} == {r.request_id for r in requests}


def test_second_job_reads_the_prefix_cached_by_the_first(emulator, emu):
    provider = bedrock_provider(emulator)

    _, first = run_job(provider, make_requests(MIN_RECORDS), "first")
    _, second = run_job(provider, make_requests(MIN_RECORDS, start=200), "second")

    assert all(o.usage.cache_write_1h_tokens > 0 for o in first)
    assert all(o.usage.cache_read_tokens > 0 for o in second)


def test_batch_caching_can_be_modelled_as_not_honoured(emulator, emu):
    emu.config(bedrock_batch_caching=False)
    provider = bedrock_provider(emulator)

    _, outcomes = run_job(provider, make_requests(MIN_RECORDS))

    assert all(o.usage.cache_write_tokens == 0 for o in outcomes)
    assert all(o.usage.cache_read_tokens == 0 for o in outcomes)


def test_sync_converse_with_a_cache_point(emulator, emu):
    provider = bedrock_provider(emulator)
    first, second = make_requests(2)

    cold = provider.call_sync(first)
    warm = provider.call_sync(second)

    assert cold.outcome is Outcome.SUCCEEDED and warm.outcome is Outcome.SUCCEEDED
    assert cold.answer_text == answer_for_prompt(first.prompt.text)
    assert cold.usage.service_tier == "standard"
    assert cold.usage.cache_write_1h_tokens > 0 and cold.usage.cache_read_tokens == 0
    assert warm.usage.cache_read_tokens == cold.usage.cache_write_1h_tokens
    # Converse's inputTokens already excludes cached tokens: only the record part is left.
    assert warm.usage.input_tokens == len(second.prompt.record_part) // 4
    assert emu.state()["sync_calls"]["bedrock"] == 2


def test_submit_is_idempotent_on_the_job_key(emulator, emu):
    provider = bedrock_provider(emulator)
    requests = make_requests(MIN_RECORDS)

    first = provider.submit_batch("job-twice", requests)
    again = provider.submit_batch("job-twice", requests)
    found = provider.find_job("job-twice", requests)

    assert again.job_id == first.job_id and found.job_id == first.job_id
    assert provider.find_job("job-never", requests) is None
    assert emu.state()["batches_created"]["bedrock"] == 1
    summary = control(emulator).get_model_invocation_job(jobIdentifier=first.job_id)
    assert summary["jobName"] == job_name("job-twice") and summary["timeoutDurationInHours"] == 24


def test_job_names_fit_the_api_pattern():
    for key in ("2026-11-30/acme/contacts/0001", "x" * 200, "ünïcode key", "--"):
        name = job_name(key)
        assert 1 <= len(name) <= 63 and name[0].isalnum()
        assert all(c.isalnum() or c in "-+." for c in name)
    assert job_name("a/b") != job_name("a-b")


BATCH_FAULTS = [
    ({"kind": "error", "status": 500}, Outcome.RETRYABLE, "record error 500"),
    ({"kind": "error", "error_type": "overloaded_error"}, Outcome.RETRYABLE, "record error 503"),
    ({"kind": "error", "status": 429}, Outcome.RETRYABLE, "record error 429"),
    ({"kind": "error", "status": 400}, Outcome.PERMANENT, "record error 400"),
    ({"kind": "max_tokens"}, Outcome.RETRYABLE, "truncated"),
    ({"kind": "invalid_json"}, Outcome.RETRYABLE, "not valid JSON"),
    ({"kind": "refusal"}, Outcome.PERMANENT, "refused"),
    ({"kind": "expired"}, Outcome.RETRYABLE, "no output for this record (job PartiallyCompleted)"),
]


def test_every_injected_batch_failure_is_classified_with_a_reason(emulator, emu):
    provider = bedrock_provider(emulator)
    requests = make_requests(MIN_RECORDS)
    for (rule, _, _), request in zip(BATCH_FAULTS, requests, strict=False):
        emu.faults({**rule, "provider": "bedrock", "match": f"^{request.request_id}$"})

    handle, outcomes = run_job(provider, requests)
    results = by_id(outcomes)

    assert provider.poll(handle.job_id).provider_status == "PartiallyCompleted"
    for (rule, expected, reason), request in zip(BATCH_FAULTS, requests, strict=False):
        outcome = results[request.request_id]
        assert outcome.outcome is expected, (rule, outcome)
        assert reason in (outcome.error or ""), (rule, outcome)
    counts = outcome_counts(outcomes)
    assert counts[Outcome.SUCCEEDED] == MIN_RECORDS - len(BATCH_FAULTS)


@pytest.mark.parametrize(
    ("rule", "expected", "reason"),
    [
        ({"status": 429}, Outcome.RETRYABLE, "ThrottlingException"),
        ({"error_type": "overloaded_error"}, Outcome.RETRYABLE, "ServiceUnavailableException"),
        ({"status": 500}, Outcome.RETRYABLE, "InternalServerException"),
        ({"error_type": "invalid_request_error"}, Outcome.PERMANENT, "ValidationException"),
        ({"status": 403}, Outcome.PERMANENT, "AccessDeniedException"),
    ],
)
def test_sync_errors_come_back_as_outcomes(emulator, emu, rule, expected, reason):
    emu.faults({"kind": "error", "provider": "bedrock", "scope": "sync", **rule})
    provider = bedrock_provider(emulator, max_retries=0)

    outcome = provider.call_sync(make_requests(1)[0])

    assert outcome.outcome is expected
    assert reason in (outcome.error or "")


@pytest.mark.parametrize(
    ("kind", "expected", "reason"),
    [
        ("max_tokens", Outcome.RETRYABLE, "truncated"),
        ("invalid_json", Outcome.RETRYABLE, "not valid JSON"),
        ("refusal", Outcome.PERMANENT, "content_filtered"),
    ],
)
def test_sync_answer_faults_are_classified(emulator, emu, kind, expected, reason):
    emu.faults({"kind": kind, "provider": "bedrock", "scope": "sync"})
    provider = bedrock_provider(emulator)

    outcome = provider.call_sync(make_requests(1)[0])

    assert outcome.outcome is expected and reason in (outcome.error or "")


def test_stop_mid_run_returns_what_finished(emulator, emu):
    emu.config(batch_delay_seconds=1000)
    provider = bedrock_provider(emulator)
    handle = provider.submit_batch("stop-me", make_requests(MIN_RECORDS))

    assert provider.poll(handle.job_id).state is JobState.IN_PROGRESS
    with pytest.raises(ProviderCallError):
        list(provider.results(handle.job_id))
    emu.advance(500)
    provider.cancel(handle.job_id)
    status = provider.poll(handle.job_id)
    outcomes = list(provider.results(handle.job_id))
    provider.cancel(handle.job_id)  # stopping an ended job is not an error

    assert status.provider_status == "Stopped" and status.state is JobState.ENDED
    counts = outcome_counts(outcomes)
    assert counts[Outcome.SUCCEEDED] > 0 and counts[Outcome.RETRYABLE] > 0
    assert sum(counts.values()) == MIN_RECORDS


def test_job_past_its_timeout_completes_partially(emulator, emu):
    emu.faults({"kind": "stuck", "provider": "bedrock", "seconds": 30 * 3600})
    provider = bedrock_provider(emulator)
    handle = provider.submit_batch("slow", make_requests(MIN_RECORDS))

    emu.advance(25 * 3600)
    status = provider.poll(handle.job_id)
    outcomes = list(provider.results(handle.job_id))

    assert status.provider_status == "PartiallyCompleted"
    missing = [o for o in outcomes if o.outcome is Outcome.RETRYABLE]
    assert missing and all("no output" in o.error for o in missing)
    assert len(outcomes) == MIN_RECORDS


def test_create_throttled_raises_retryable(emulator, emu):
    emu.faults({"kind": "error", "provider": "bedrock", "scope": "create", "status": 429})
    provider = bedrock_provider(emulator, max_retries=0)

    with pytest.raises(ProviderCallError) as caught:
        provider.submit_batch("throttled", make_requests(MIN_RECORDS))

    assert caught.value.retryable
    assert emu.state()["batches_created"]["bedrock"] == 0


def test_from_config_requires_bucket_and_role(emulator):
    config = {"endpoint_url": emulator.url, "s3_endpoint_url": emulator.s3_url}
    with pytest.raises(ValueError, match="bucket.*role_arn"):
        BedrockProvider.from_config(
            limits=limits_for("bedrock"), model=BEDROCK_MODEL, config=config
        )

    built = BedrockProvider.from_config(
        limits=limits_for("bedrock"),
        model=BEDROCK_MODEL,
        config={**config, "bucket": BUCKET, "role_arn": ROLE_ARN, "region": "us-east-1"},
    )
    assert built.bucket == BUCKET and built.cache_ttl == "1h"


def test_g11_job_below_the_minimum_record_count(emulator, emu):
    provider = bedrock_provider(emulator)
    with pytest.raises(ValueError, match="below the minimum of 100"):
        provider.submit_batch("small", make_requests(MIN_RECORDS - 1))
    assert emu.state()["batches_created"]["bedrock"] == 0

    # An adapter configured with a lower minimum than the model's quota meets the service's check.
    lax = bedrock_provider(emulator, limits=limits_for("bedrock", min_requests_per_batch=1))
    handle = lax.submit_batch("small", make_requests(5))
    status = lax.poll(handle.job_id)
    outcomes = list(lax.results(handle.job_id))

    assert status.state is JobState.FAILED and "minimum of 100 records" in status.message
    assert len(outcomes) == 5
    assert all(o.outcome is Outcome.RETRYABLE and "job failed" in o.error for o in outcomes)


def test_g12_model_id_inside_model_input_and_encoded_job_arns(emulator, emu):
    provider = bedrock_provider(emulator)
    requests = make_requests(MIN_RECORDS)
    assert all("modelId" not in provider.model_input(r) for r in requests)
    records = [{"recordId": r.request_id, "modelInput": provider.model_input(r)} for r in requests]
    records[0]["modelInput"]["modelId"] = BEDROCK_MODEL
    s3(emulator).put_object(
        Bucket=BUCKET,
        Key="raw/g12/input/records.jsonl",
        Body=b"\n".join(orjson.dumps(x) for x in records),
    )
    created = control(emulator).create_model_invocation_job(
        jobName="raw-g12",
        roleArn=ROLE_ARN,
        modelId=BEDROCK_MODEL,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{BUCKET}/raw/g12/input/"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{BUCKET}/raw/g12/output/"}},
    )
    arn = created["jobArn"]

    results = by_id(list(provider.results(arn)))
    encoded = httpx.get(f"{emulator.url}/model-invocation-job/{quote(arn, safe='')}")

    bad = results[requests[0].request_id]
    assert bad.outcome is Outcome.PERMANENT and "Extra inputs are not permitted" in bad.error
    assert results[requests[1].request_id].outcome is Outcome.SUCCEEDED
    assert "/" in arn and encoded.status_code == 200 and encoded.json()["jobArn"] == arn
