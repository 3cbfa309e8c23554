"""The provider emulator itself: how it starts, its admin endpoints, its caching model, and the
request rules it enforces for each provider when called without an adapter.

Covers: the CLI (one JSON line of URLs on stdout, serves until terminated), fault and config
validation, ``/_emulator/state`` counters, the caching model (per-model minimum, lifetimes on
the controllable clock, reads refreshing an entry), deterministic shuffling, the split-CRLF
stream layout, authentication, the documented create-time rules of each provider, and the
adapters built the way the provider registry builds them (``from_config``).

Leaves out: adapter behaviour (test_providers_anthropic/openai/bedrock.py).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import anthropic
import boto3
import httpx
import openai
import orjson
import pytest
from botocore.exceptions import ClientError

from memo_pipeline.providers.anthropic import AnthropicProvider
from memo_pipeline.providers.base import Outcome
from memo_pipeline.providers.bedrock import BedrockProvider
from memo_pipeline.providers.classify import packaged_provider_settings
from memo_pipeline.providers.openai import OpenAIProvider
from memo_pipeline_emulator.anthropic_api import crlf_split_chunks
from memo_pipeline_emulator.caching import Breakpoint, Clock, PromptCache, min_cacheable_tokens
from memo_pipeline_emulator.common import result_order
from memo_pipeline_emulator.faults import hash_fraction
from memo_pipeline_tests.emulator_fixtures import (
    BUCKET,
    ROLE_ARN,
    anthropic_provider,
    limits_for,
    make_requests,
)

pytest_plugins = ["memo_pipeline_tests.conftest_emulator"]

REPO = Path(__file__).resolve().parents[1]


def test_cli_prints_its_urls_and_serves_until_terminated():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "memo_pipeline_emulator", "--port", "0", "--moto-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        urls = json.loads(process.stdout.readline())
        state = httpx.get(f"{urls['url']}/_emulator/state", timeout=10)
        s3_reply = httpx.get(urls["s3_url"], timeout=10)
    finally:
        process.terminate()
        code = process.wait(timeout=20)

    assert urls["url"].startswith("http://127.0.0.1:")
    assert urls["openai_base_url"] == urls["url"] + "/v1"
    assert state.status_code == 200 and state.json()["batches_created"]["anthropic"] == 0
    assert s3_reply.status_code == 200
    assert code == 0


@pytest.mark.parametrize(
    ("model", "minimum"),
    [
        ("claude-haiku-4-5", 4096),
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", 4096),
        ("claude-opus-5", 512),
        ("claude-opus-5-5", 1024),  # not the claude-opus-5 entry
        ("gpt-6-luna", 1024),
    ],
)
def test_minimum_cacheable_length_is_looked_up_per_model(model, minimum):
    table = {"default": 1024, "claude-haiku-4-5": 4096, "claude-opus-5": 512}
    assert min_cacheable_tokens(table, model) == minimum


def test_cache_entries_live_for_their_ttl_and_reads_refresh_them():
    clock = Clock()
    cache = PromptCache(clock)
    point = Breakpoint("p" * 8000, "5m", "salt")

    first = cache.use("ns", point, 2100, 1024)
    clock.advance(200)
    second = cache.use("ns", point, 2100, 1024)  # refreshes the 5-minute lifetime
    clock.advance(200)
    third = cache.use("ns", point, 2100, 1024)
    clock.advance(301)
    fourth = cache.use("ns", point, 2100, 1024)
    other_namespace = cache.use("other", point, 2100, 1024)

    assert first.write_tokens == 2000 and first.uncached_tokens == 100
    assert second.read_tokens == 2000 and third.read_tokens == 2000
    assert fourth.write_tokens == 2000
    assert other_namespace.write_tokens == 2000


def test_planned_batch_requests_do_not_see_each_others_writes():
    cache = PromptCache(Clock())
    point = Breakpoint("p" * 8000, "1h")

    plans = [cache.plan("batch", point, 2100, 1024) for _ in range(3)]
    cache.commit(plans)

    assert all(p.write_tokens == 2000 for p in plans)
    assert cache.plan("batch", point, 2100, 1024).read_tokens == 2000


def test_shuffled_order_is_deterministic_and_never_the_input_order():
    for ids in (["a", "b"], ["b", "a"], [f"r{i}" for i in range(50)]):
        order = result_order(ids, "job")
        assert order == result_order(ids, "job")
        assert order != list(range(len(ids))) and sorted(order) == list(range(len(ids)))
    assert 0 <= hash_fraction("x") < 1 and hash_fraction("x") == hash_fraction("x")


def test_crlf_stream_puts_every_carriage_return_at_a_chunk_boundary():
    lines = [orjson.dumps({"custom_id": f"id{i}", "pad": "x" * (i * 7)}) for i in range(6)]
    chunks = list(crlf_split_chunks(lines, 64))
    data = b"".join(chunks)

    assert all(chunk.endswith(b"\r") for chunk in chunks[:-1])
    assert all(chunk.startswith(b"\n") for chunk in chunks[1:])
    assert all(
        data[i - 1 : i + 1] == b"\r\n" for i in range(64, len(data), 64) if data[i - 1] == 13
    )
    assert [json.loads(x) for x in data.split(b"\r\n") if x.strip()][2]["custom_id"] == "id2"


def test_admin_endpoints_validate_their_input(emulator, emu):
    http = httpx.Client(base_url=emulator.url)

    bad_kind = http.post("/_emulator/faults", json={"kind": "meteor"})
    bad_setting = http.post("/_emulator/config", json={"warp_speed": 9})
    added = emu.faults({"kind": "error", "status": 500, "fraction": 0.5})

    assert bad_kind.status_code == 400 and "unknown fault kind" in bad_kind.json()["error"]
    assert bad_setting.status_code == 400
    assert added[0]["error_type"] == "api_error"
    assert emu.state()["faults"][0]["fraction"] == 0.5
    emu.reset()
    assert emu.state()["faults"] == []


def test_requests_without_credentials_are_refused(emulator, emu):
    anthropic_reply = httpx.post(f"{emulator.url}/v1/messages", json={})
    openai_reply = httpx.get(f"{emulator.url}/v1/batches")

    assert anthropic_reply.status_code == 401
    assert anthropic_reply.json()["error"]["type"] == "authentication_error"
    assert openai_reply.status_code == 401


def test_adapters_refuse_to_start_without_credentials(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    with pytest.raises(ValueError, match="ANTHROPIC_API_KEY"):
        AnthropicProvider(limits=limits_for("anthropic"), model="claude-haiku-5-5")
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAIProvider(limits=limits_for("openai"), model="gpt-6-luna")


def test_anthropic_batch_create_limits_and_async_param_validation(emulator, emu):
    emu.config(anthropic_max_requests=2, anthropic_max_bytes=200_000)
    provider = anthropic_provider(emulator)
    requests = make_requests(3)
    params = [provider.params(r, ttl="1h") for r in requests]
    client = anthropic.Anthropic(base_url=emulator.url, max_retries=0)

    with pytest.raises(anthropic.BadRequestError, match="at most 2 items"):
        client.messages.batches.create(
            requests=[{"custom_id": f"c{i}", "params": p} for i, p in enumerate(params)]
        )
    with pytest.raises(anthropic.BadRequestError, match="not unique"):
        client.messages.batches.create(
            requests=[{"custom_id": "same", "params": p} for p in params[:2]]
        )
    with pytest.raises(anthropic.APIStatusError) as too_big:
        huge = params[0] | {"messages": [{"role": "user", "content": "x" * 300_000}]}
        client.messages.batches.create(requests=[{"custom_id": "big", "params": huge}])
    batch = client.messages.batches.create(
        requests=[
            {"custom_id": "zero", "params": params[0] | {"max_tokens": 0}},
            {"custom_id": "stream", "params": params[1] | {"stream": True}},
        ]
    )
    lines = {line.custom_id: line.result for line in client.messages.batches.results(batch.id)}

    assert too_big.value.status_code == 413
    assert lines["zero"].type == "errored" and "max_tokens" in lines["zero"].error.error.message
    assert lines["stream"].type == "errored"
    assert emu.state()["batches_created"]["anthropic"] == 1


def test_openai_batch_create_rules(emulator, emu):
    client = openai.OpenAI(base_url=f"{emulator.url}/v1", max_retries=0)
    uploaded = client.files.create(file=("in.jsonl", io.BytesIO(b"")), purpose="batch")

    with pytest.raises(openai.BadRequestError, match="completion_window"):
        client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="48h"
        )
    with pytest.raises(openai.NotFoundError):
        client.batches.create(
            input_file_id="file-missing", endpoint="/v1/chat/completions", completion_window="24h"
        )
    empty = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )

    failed = client.batches.retrieve(empty.id)
    assert failed.status == "failed" and failed.errors.data[0].code == "empty_file"


def test_bedrock_create_rules(emulator, emu):
    bedrock = boto3.client("bedrock", endpoint_url=emulator.url)
    base = {
        "roleArn": ROLE_ARN,
        "modelId": "us.anthropic.claude-haiku-5-5-v1:0",
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": f"s3://{BUCKET}/nowhere/"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": f"s3://{BUCKET}/out/"}},
    }

    with pytest.raises(ClientError, match="ValidationException"):
        bedrock.create_model_invocation_job(jobName="-bad-name", **base)
    # botocore checks the range client-side too; a raw call meets the service's own check.
    short = httpx.post(
        f"{emulator.url}/model-invocation-job",
        json={"jobName": "short", "timeoutDurationInHours": 12, **base},
    )
    first = bedrock.create_model_invocation_job(jobName="named", clientRequestToken="t1", **base)
    again = bedrock.create_model_invocation_job(jobName="named", clientRequestToken="t1", **base)
    with pytest.raises(ClientError, match="ConflictException"):
        bedrock.create_model_invocation_job(jobName="named", clientRequestToken="t2", **base)
    job = bedrock.get_model_invocation_job(jobIdentifier=first["jobArn"])

    assert short.status_code == 400 and short.headers["x-amzn-ErrorType"] == "ValidationException"
    assert "timeoutDurationInHours" in short.json()["message"]
    assert again["jobArn"] == first["jobArn"]
    assert job["status"] == "Failed" and "input data" in job["message"]
    assert emu.state()["batches_created"]["bedrock"] == 1


def test_adapters_build_from_packaged_provider_config(emulator, emu):
    """The provider registry calls ``from_config`` with the providers.yaml section."""
    configs = {
        name: {**packaged_provider_settings(name), "max_retries": 0}
        for name in ("anthropic", "openai", "bedrock")
    }
    configs["anthropic"]["base_url"] = emulator.url
    configs["openai"]["base_url"] = f"{emulator.url}/v1"
    configs["bedrock"].update(
        bucket=BUCKET,
        role_arn=ROLE_ARN,
        region="us-east-1",
        endpoint_url=emulator.url,
        s3_endpoint_url=emulator.s3_url,
    )
    adapters = [
        cls.from_config(
            limits=limits_for(name), model=configs[name]["default_model"], config=configs[name]
        )
        for name, cls in (
            ("anthropic", AnthropicProvider),
            ("openai", OpenAIProvider),
            ("bedrock", BedrockProvider),
        )
    ]

    (request,) = make_requests(1)
    outcomes = [adapter.call_sync(request) for adapter in adapters]

    assert [o.outcome for o in outcomes] == [Outcome.SUCCEEDED] * 3
    assert adapters[0].cache_ttl == "1h" and adapters[1].cache_ttl == "30m"
    assert adapters[2].model == "us.anthropic.claude-haiku-5-5-v1:0"
