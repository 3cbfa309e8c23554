"""The intake's side of the request ledger: one record's request, planned or taken over.

The bulk path plans a whole day at once (``pipeline.plan``); the sync path (``sync`` and
``async`` writes, and bulk writes escalated for a deadline) works one record at a time, with the
same work identity: ``request_key`` over org, record, content, schema version and model, so a
record extracted by one path is never paid for again by another. Sync requests carry
``path = 'sync'`` and a ``reason``; ``claim_pending`` only takes ``path = 'batch'``, so a request
pulled into the sync path can no longer join a batch.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from memo_pipeline.pipeline.ids import request_id, request_key
from memo_pipeline.pipeline.outcomes import MAX_ATTEMPTS
from memo_pipeline.pipeline.plan import _reuse_identical, prompt_content
from memo_pipeline.pipeline.raw import dead_letter
from memo_pipeline.pipeline.registry import ProviderRegistry
from memo_pipeline.prompts.render import RenderedPrompt, render
from memo_pipeline.records import ContentRecord
from memo_pipeline.schema.collections import OrgSpec
from memo_pipeline.tokens import estimate_tokens


def provider_and_model(
    registry: ProviderRegistry, org: OrgSpec, collection: str
) -> tuple[str, str]:
    """The provider and model the bulk plan would choose for this org and collection."""
    choice = org.provider_for(collection)
    return choice.provider, choice.model or registry.default_model(choice.provider)


def work_key(
    registry: ProviderRegistry, org: OrgSpec, record: ContentRecord
) -> tuple[str, RenderedPrompt, bool]:
    """(request_key, prompt, redacted) of a record, exactly as the bulk plan computes them."""
    _, model = provider_and_model(registry, org, record.collection)
    content, redacted = prompt_content(org, record)
    prompt = render(org, record, content)
    key = request_key(org.org, record.record_id, record.content_hash, prompt.schema_version, model)
    return key, prompt, redacted


def latest_attempt(
    conn: psycopg.Connection, key: str, *, lock: bool = False
) -> dict[str, Any] | None:
    sql = "select * from extraction_requests where request_key = %s order by attempt desc limit 1"
    return conn.execute(sql + (" for update" if lock else ""), (key,)).fetchone()


def plan_sync(
    conn: psycopg.Connection,
    registry: ProviderRegistry,
    org: OrgSpec,
    record: ContentRecord,
    partition_day: str,
    reason: str,
) -> dict[str, Any]:
    """The record's request on the sync path: its latest attempt, or a new first attempt.

    Identical content already answered in the org reuses that answer, as in the bulk plan.
    """
    key, prompt, redacted = work_key(registry, org, record)
    existing = latest_attempt(conn, key, lock=True)
    if existing is not None:
        return existing
    provider, model = provider_and_model(registry, org, record.collection)
    rid = request_id(key, 1)
    conn.execute(
        "insert into extraction_requests (request_id, request_key, attempt, org_id, record_id, "
        "partition_day, collection, schema_version, provider, model, path, prefix_key, "
        "est_prefix_tokens, est_record_tokens, redacted, reason, content_hash) "
        "values (%s, %s, 1, %s, %s, %s, %s, %s, %s, %s, 'sync', %s, %s, %s, %s, %s, %s) "
        "on conflict do nothing",
        (
            rid,
            key,
            org.org,
            record.record_id,
            partition_day,
            record.collection,
            prompt.schema_version,
            provider,
            model,
            prompt.prefix_key,
            estimate_tokens(prompt.static_prefix),
            estimate_tokens(prompt.record_part),
            redacted,
            reason,
            record.content_hash,
        ),
    )
    _reuse_identical(
        conn, rid, org.org, record.collection, record.content_hash, prompt.schema_version, model
    )
    return latest_attempt(conn, key, lock=True)


def pull_into_sync(conn: psycopg.Connection, row: dict[str, Any], reason: str) -> str | None:
    """Take a batch-path request into the sync path; returns why, as recorded in the ledger.

    A request not yet claimed into a job is simply pulled. One already claimed or submitted
    stays in its job: the sync call is then a deliberate second payment, and whichever answer
    is recorded first is the one stored (``record_outcome`` keeps the first).
    """
    if row["path"] == "sync":
        return None
    if row["job_key"] is None and row["status"] == "pending":
        text = f"{reason}; pulled from the pending batch work"
    else:
        job = conn.execute(
            "select provider, job_id, status from provider_jobs where job_key = %s",
            (row["job_key"],),
        ).fetchone()
        where = f"{job['provider']} job {job['job_id'] or row['job_key']} ({job['status']})"
        text = (
            f"{reason}; second payment: already in {where}, whose later answer will not be "
            "stored twice"
        )
    conn.execute(
        "update extraction_requests set path = 'sync', reason = %s, updated_at = now() "
        "where request_id = %s",
        (text, row["request_id"]),
    )
    row["path"], row["reason"] = "sync", text
    return text


def next_sync_attempt(
    conn: psycopg.Connection, row: dict[str, Any], error: str | None
) -> dict[str, Any] | None:
    """The next attempt of a failed request on the sync path, or None once it is dead-lettered.

    The same rules as the batch path's retries: permanent failures and a third failure are
    dead-lettered; an invalid answer is retried as a repair carrying the validation errors.
    """
    reason = error or row["reason"] or row["status"]
    if row["status"] == "permanent" or row["attempt"] >= MAX_ATTEMPTS:
        dead_letter(
            conn,
            stage="extract",
            org=row["org_id"],
            day=str(row["partition_day"]),
            record_id=row["record_id"],
            request_id=row["request_id"],
            reason=f"request {row['request_id']} (record {row['record_id']}): {row['status']} "
            f"after {row['attempt']} attempt(s): {reason}",
        )
        conn.execute(
            "update extraction_requests set status = 'dead', updated_at = now() "
            "where request_id = %s",
            (row["request_id"],),
        )
        return None
    invalid = row["status"] == "invalid"
    conn.execute(
        "insert into extraction_requests (request_id, request_key, attempt, org_id, record_id, "
        "partition_day, collection, schema_version, provider, model, kind, path, prefix_key, "
        "est_prefix_tokens, est_record_tokens, repair_errors, redacted, reason, content_hash) "
        "select %s, request_key, attempt + 1, org_id, record_id, partition_day, collection, "
        "schema_version, provider, model, %s, 'sync', prefix_key, est_prefix_tokens, "
        "est_record_tokens, %s, redacted, %s, content_hash from extraction_requests "
        "where request_id = %s "
        "on conflict do nothing",
        (
            request_id(row["request_key"], row["attempt"] + 1),
            "repair" if invalid else "extract",
            Jsonb(reason.split("; ")) if invalid else None,
            f"retry on the sync path after: {reason}"[:1000],
            row["request_id"],
        ),
    )
    return latest_attempt(conn, row["request_key"], lock=True)
