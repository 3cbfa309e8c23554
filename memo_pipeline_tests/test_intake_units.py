"""Pure functions of the intake, as tables: when a bulk write escalates, how documents are
chunked, the token bucket, API key parsing, settings from the environment, the document prompt.

Leaves out everything with a store, a provider or HTTP (test_api, test_webhooks,
test_intake_paths).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from memo_pipeline.config import REPO_ROOT
from memo_pipeline.intake.config import IntakeConfig
from memo_pipeline.intake.documents import chunk_text
from memo_pipeline.intake.escalation import escalation_reason
from memo_pipeline.intake.keys import parse_key
from memo_pipeline.intake.ratelimit import TokenBucket
from memo_pipeline.prompts.render import DOCUMENT_INSTRUCTIONS, render, static_prefix
from memo_pipeline.records import ContentRecord
from memo_pipeline.schema.collections import load_orgs

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
CONFIG = IntakeConfig(expected_batch_latency_seconds=24 * 3600, escalation_margin_seconds=600)


@pytest.mark.parametrize(
    ("deadline", "submitted_at", "escalates"),
    [
        (NOW + 30 * H, None, False),  # a day's batch plus margin fits
        (NOW + 24 * H, None, True),  # the margin does not
        (NOW + 2 * H, None, True),
        (NOW + 30 * H, NOW - 2 * H, False),  # submitted: expected 22 h from now
        (NOW + 20 * H, NOW - 2 * H, True),
        (NOW + 2 * H, NOW - 30 * H, False),  # overdue job: wait until the margin
        (NOW + 5 * timedelta(minutes=1), NOW - 30 * H, True),
    ],
)
def test_escalation_reason(deadline, submitted_at, escalates):
    reason = escalation_reason(deadline, NOW, submitted_at, CONFIG)
    assert (reason is not None) is escalates
    if reason:
        assert reason.startswith(f"deadline {deadline.isoformat()}") and "24h" in reason


@pytest.mark.parametrize(
    ("text", "limit", "chunks"),
    [
        ("One.\n\nTwo.", 100, ["One.\n\nTwo."]),
        ("One.\n\nTwo.", 5, ["One.", "Two."]),
        ("A b c. D e f. G h i.", 8, ["A b c.", "D e f.", "G h i."]),
        ("abcdefghij", 4, ["abcd", "efgh", "ij"]),
        ("  \n\n  ", 10, []),
    ],
)
def test_chunk_text(text, limit, chunks):
    assert chunk_text(text, limit) == chunks
    assert all(len(c) <= limit for c in chunk_text(text, limit))


def test_token_bucket_admits_a_burst_then_the_rate():
    bucket = TokenBucket(rate=2.0, burst=3, tokens=3.0, updated=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0.0
    assert TokenBucket(rate=0.0, burst=0, tokens=0.0, updated=0.0).take(1.0) == float("inf")


@pytest.mark.parametrize(
    ("key", "parsed"),
    [
        ("mk_0123abcd_s3cr-et_x", ("0123abcd", "s3cr-et_x")),
        ("mk_0123abcd_", None),
        ("xx_0123abcd_secret", None),
        ("mk0123", None),
        ("", None),
    ],
)
def test_parse_key(key, parsed):
    assert parse_key(key) == parsed


def test_config_from_environment(monkeypatch):
    monkeypatch.setenv("MEMO_INTAKE_BULK_DISPATCH_MIN_RECORDS", "7")
    monkeypatch.setenv("MEMO_INTAKE_SYNC_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("MEMO_WEBHOOK_ALLOW_NETWORKS", "loopback, private")
    config = IntakeConfig.from_env()
    assert config.bulk_dispatch_min_records == 7 and config.sync_timeout_seconds == 2.5
    assert config.webhook_allowed_networks == {"loopback", "private"}
    monkeypatch.setenv("MEMO_INTAKE_ASYNC_BATCH_SIZE", "many")
    with pytest.raises(ValueError, match="MEMO_INTAKE_ASYNC_BATCH_SIZE"):
        IntakeConfig.from_env()
    monkeypatch.delenv("MEMO_INTAKE_ASYNC_BATCH_SIZE")
    monkeypatch.setenv("MEMO_WEBHOOK_ALLOW_NETWORKS", "everything")
    with pytest.raises(ValueError, match="everything"):
        IntakeConfig.from_env()


def test_document_prompt_extends_the_shared_prefix():
    org = load_orgs(REPO_ROOT / "config" / "orgs")["acme"]
    base = {"source_id": "s", "content": "Dana runs procurement.", "source_ts": NOW}
    note = render(org, ContentRecord(**base))
    document = render(org, ContentRecord(**base, metadata={"prompt": "document"}))
    assert note.document_suffix == "" and note.shared_prefix == note.static_prefix
    assert document.shared_prefix == static_prefix(org, "contacts") == note.static_prefix
    assert document.static_prefix == note.static_prefix + DOCUMENT_INSTRUCTIONS
    assert document.record_part == note.record_part
    assert document.schema_version == note.schema_version
    assert document.prefix_key != note.prefix_key
