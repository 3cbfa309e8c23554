"""Intake settings: request limits, path thresholds, retry and webhook policy, in one place.

Every field has a typed default here and can be overridden from the environment as
``MEMO_INTAKE_<FIELD>`` (upper case), e.g. ``MEMO_INTAKE_BULK_DISPATCH_MIN_RECORDS=500``. The
webhook network allowance is ``MEMO_WEBHOOK_ALLOW_NETWORKS`` (comma list of ``loopback``,
``private``, ``link-local``). Read when a command, sensor or run starts, never at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any

from memo_pipeline.records import MAX_CONTENT_BYTES

NETWORK_CLASSES = ("loopback", "private", "link-local")


@dataclass(frozen=True)
class IntakeConfig:
    # Requests
    max_body_bytes: int = 8_000_000
    # A record holds at most records.MAX_CONTENT_BYTES; a larger value here is capped at it.
    max_content_bytes: int = MAX_CONTENT_BYTES
    max_batch_documents: int = 100
    rate_per_second: float = 20.0
    rate_burst: int = 100
    # sync: the HTTP call waits this long for extraction and Stage 2, then answers 202.
    sync_timeout_seconds: float = 60.0
    # async: events per run, runs per sensor tick, provider calls in flight per run.
    async_batch_size: int = 25
    async_max_runs_per_tick: int = 4
    async_concurrency: int = 4
    # A queued event that made no progress for this long is requested again.
    stale_after_seconds: float = 600.0
    # Provider sync calls: attempts on 429 / 5xx / connection errors, and the backoff ceiling.
    call_attempts: int = 5
    call_backoff_max_seconds: float = 60.0
    # bulk: the dispatch sensor submits today's pending work at this size or this age.
    bulk_dispatch_min_records: int = 100
    bulk_dispatch_max_age_seconds: float = 900.0
    # Deadlines: how long a batch is expected to take, and the slack kept for the sync call.
    expected_batch_latency_seconds: float = 86_400.0
    escalation_margin_seconds: float = 600.0
    # Webhooks
    webhook_timeout_seconds: float = 10.0
    webhook_max_attempts: int = 12
    webhook_backoff_base_seconds: float = 2.0
    webhook_backoff_max_seconds: float = 3_600.0
    webhook_allowed_networks: frozenset[str] = frozenset()
    # Documents stored without extraction are cut into chunks of at most this many characters.
    chunk_chars: int = 1_000
    # The service's background worker (finalize events, deliver webhooks) wakes this often.
    worker_interval_seconds: float = 1.0

    @classmethod
    def from_env(cls, **overrides: Any) -> IntakeConfig:
        values: dict[str, Any] = {}
        for item in fields(cls):
            if item.name == "webhook_allowed_networks":
                continue
            name = f"MEMO_INTAKE_{item.name.upper()}"
            raw = os.environ.get(name)
            if raw is None or raw == "":
                continue
            kind = type(getattr(cls, item.name))
            try:
                values[item.name] = kind(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
        networks = os.environ.get("MEMO_WEBHOOK_ALLOW_NETWORKS", "")
        values["webhook_allowed_networks"] = parse_networks(networks, "MEMO_WEBHOOK_ALLOW_NETWORKS")
        values.update(overrides)
        return cls(**values)

    def with_changes(self, **changes: Any) -> IntakeConfig:
        return replace(self, **changes)


def parse_networks(text: str, where: str) -> frozenset[str]:
    names = {n.strip() for n in text.split(",") if n.strip()}
    unknown = names - set(NETWORK_CLASSES)
    if unknown:
        raise ValueError(
            f"{where}: unknown network class(es) {sorted(unknown)}; "
            f"use {', '.join(NETWORK_CLASSES)}"
        )
    return frozenset(names)
