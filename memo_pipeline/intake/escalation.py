"""Deadlines: when a bulk write must leave the batch path for the sync path.

A bulk write may carry a deadline. Before its record is in a submitted job, its batch is
expected to end ``expected_batch_latency_seconds`` from now; once submitted, that long after the
job's submission, or now if the job is already older than that (an overdue job may end at any
moment, or not before the deadline). When the expected end falls later than the deadline minus
``escalation_margin_seconds`` (the time kept for the sync call and Stage 2), the write is
escalated: its request is pulled from the pending batch work, or, if already submitted, answered
through the sync API as a deliberate second payment (see ``ledger.pull_into_sync``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from memo_pipeline.intake.config import IntakeConfig


def escalation_reason(
    deadline: datetime, now: datetime, submitted_at: datetime | None, config: IntakeConfig
) -> str | None:
    """Why the write must be escalated, or None while its batch can still make the deadline."""
    latency = timedelta(seconds=config.expected_batch_latency_seconds)
    margin = timedelta(seconds=config.escalation_margin_seconds)
    if submitted_at is None:
        expected_end = now + latency
        basis = f"expected batch latency {_span(latency)}"
    else:
        expected_end = max(submitted_at + latency, now)
        age = now - submitted_at
        basis = f"job submitted {_span(age)} ago, expected batch latency {_span(latency)}"
    if expected_end <= deadline - margin:
        return None
    return (
        f"deadline {deadline.isoformat()} is before the expected batch end "
        f"{expected_end.isoformat()} plus a {_span(margin)} margin ({basis})"
    )


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0 and seconds:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0 and seconds:
        return f"{seconds // 60}m"
    return f"{seconds}s"
