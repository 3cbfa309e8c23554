"""Bedrock batch job state changes pushed through EventBridge to an SQS queue.

Bedrock publishes a "Batch Inference Job State Change" event (source ``aws.bedrock``) when a
model invocation job changes state. Delivery is best effort, so these events only let the
sensor notice an ended job sooner; polling stays the safety net.

The rule and queue this expects (see README "Bedrock completion events"):

* EventBridge rule pattern::

    {"source": ["aws.bedrock"],
     "detail-type": ["Batch Inference Job State Change"],
     "detail": {"status": ["Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"]}}

* target: an SQS queue whose access policy lets ``events.amazonaws.com`` call
  ``sqs:SendMessage`` with the condition ``aws:SourceArn`` equal to the rule's ARN.

Configure ``events_queue_url`` (and, for tests or a local endpoint, ``events_endpoint_url``)
under ``providers.bedrock``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import boto3
import orjson
from botocore.config import Config

from memo_pipeline.providers.base import JobState

log = logging.getLogger(__name__)

DETAIL_TYPE = "Batch Inference Job State Change"
ENDED_STATUSES = {"Completed", "PartiallyCompleted", "Stopped", "Expired"}
FAILED_STATUSES = {"Failed"}


@dataclass(frozen=True)
class JobEvent:
    job_arn: str
    status: str
    message: str | None

    @property
    def state(self) -> JobState:
        if self.status in ENDED_STATUSES:
            return JobState.ENDED
        if self.status in FAILED_STATUSES:
            return JobState.FAILED
        return JobState.IN_PROGRESS


def parse_event(body: str | bytes) -> JobEvent | None:
    """The job event in an SQS message body (the EventBridge envelope), or None if it is not one."""
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(envelope, dict) or envelope.get("detail-type") != DETAIL_TYPE:
        return None
    detail = envelope.get("detail") or {}
    arn, status = detail.get("batchJobArn"), detail.get("status")
    if not arn or not status:
        return None
    return JobEvent(job_arn=arn, status=status, message=detail.get("failureMessage") or None)


class JobEventQueue:
    """Reads and deletes job events from the queue, a bounded number per call."""

    def __init__(
        self, queue_url: str, endpoint_url: str | None = None, region: str | None = None
    ) -> None:
        self.queue_url = queue_url
        self._sqs = boto3.client(
            "sqs",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=10
            ),
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> JobEventQueue | None:
        url = config.get("events_queue_url")
        if not url:
            return None
        return cls(url, config.get("events_endpoint_url") or None, config.get("region") or None)

    def drain(self, max_messages: int = 50) -> list[JobEvent]:
        """Up to ``max_messages`` events; every message read is deleted, events or not."""
        events: list[JobEvent] = []
        while len(events) < max_messages:
            batch = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, max_messages - len(events)),
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not batch:
                break
            for message in batch:
                event = parse_event(message.get("Body", ""))
                if event is None:
                    log.warning("dropped a queue message that is not a Bedrock job event")
                else:
                    events.append(event)
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
                ],
            )
        return events
