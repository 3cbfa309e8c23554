"""Bedrock job completion events through SQS (moto's server): an event ends a job in the ledger
without a poll, an event for an unknown job is dropped, other messages are dropped, and every
message read is deleted. Polling as the safety net is covered in test_exactly_once."""

from __future__ import annotations

import boto3
import orjson

from memo_pipeline.pipeline.collect import apply_job_events, ready_partitions
from memo_pipeline.providers.bedrock_events import DETAIL_TYPE, JobEventQueue, parse_event

pytest_plugins = ["memo_pipeline_tests.conftest_emulator"]

ARN = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abc123def456"


def envelope(arn: str, status: str) -> str:
    return orjson.dumps(
        {
            "version": "0",
            "id": "e1",
            "detail-type": DETAIL_TYPE,
            "source": "aws.bedrock",
            "account": "123456789012",
            "region": "us-east-1",
            "detail": {
                "batchJobName": "memo-j1",
                "batchJobArn": arn,
                "status": status,
                "batchModelId": "us.anthropic.claude-haiku-5-5-v1:0",
            },
        }
    ).decode()


def test_parse_event_reads_the_envelope_and_ignores_other_messages():
    event = parse_event(envelope(ARN, "Completed"))
    assert event is not None and event.job_arn == ARN and event.status == "Completed"
    assert parse_event("not json") is None
    assert parse_event('{"detail-type": "Something Else"}') is None


def test_events_from_sqs_end_jobs_and_unknown_ones_are_dropped(runtime, emulator):
    sqs = boto3.client("sqs", endpoint_url=emulator.s3_url, region_name="us-east-1")
    url = sqs.create_queue(QueueName="memo-bedrock-events")["QueueUrl"]
    with runtime.connection() as conn:
        conn.execute(
            "insert into provider_jobs (job_key, provider, model, partition_day, job_id, status, "
            "request_count, bytes) values ('jk1', 'bedrock', 'm', '2026-11-30', %s, 'submitted', "
            "1, 1)",
            (ARN,),
        )
        conn.commit()
    sqs.send_message(QueueUrl=url, MessageBody=envelope(ARN, "Completed"))
    sqs.send_message(QueueUrl=url, MessageBody=envelope(ARN.replace("abc", "zzz"), "Completed"))
    sqs.send_message(QueueUrl=url, MessageBody="hello")

    queue = JobEventQueue.from_config(
        {"events_queue_url": url, "events_endpoint_url": emulator.s3_url, "region": "us-east-1"}
    )
    events = queue.drain()
    assert [e.status for e in events] == ["Completed", "Completed"]
    with runtime.connection() as conn:
        assert apply_job_events(conn, events) == ["jk1"]
        job = conn.execute("select status from provider_jobs where job_key = 'jk1'").fetchone()
        ready = ready_partitions(conn)
    assert job["status"] == "ended"
    assert ready == [{"day": "2026-11-30", "job_keys": ["jk1"]}]
    assert queue.drain() == []  # every message was deleted
