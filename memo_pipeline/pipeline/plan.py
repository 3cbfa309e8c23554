"""``extraction_requests``: render each record of a day into a request and record it in the ledger.

Work already done is skipped: a record whose content was extracted under the same schema version
and model (by any path, in any earlier run) gets no new request. Identical content in another
record of the same org and collection reuses the earlier answer instead of paying again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg

from memo_pipeline.pipeline.ids import request_id, request_key
from memo_pipeline.pipeline.registry import ProviderRegistry
from memo_pipeline.prompts.render import render
from memo_pipeline.records import ContentRecord
from memo_pipeline.schema.collections import OrgSpec
from memo_pipeline.stage2.redaction import redact
from memo_pipeline.tokens import estimate_tokens


@dataclass
class PlanSummary:
    day: str
    records: int = 0
    planned: int = 0
    already_planned: int = 0
    reused: int = 0
    # (org, collection, provider, model, prefix_key) -> [prefix tokens, record tokens, count]
    groups: dict[tuple[str, str, str, str, str], list[int]] = field(default_factory=dict)


def record_from_row(row: dict[str, Any]) -> ContentRecord:
    return ContentRecord(
        source_id=row["source_id"],
        org=row["org_id"],
        collection=row["collection"],
        identifier=row["identifier"],
        content=row["content"],
        source_ts=row["source_ts"],
        kind=row["kind"],
        title=row["title"],
        source=row["source"],
        source_line=row["source_line"],
        metadata=row["metadata"] or {},
    )


def prompt_content(org: OrgSpec, record: ContentRecord) -> tuple[str | None, bool]:
    """The content to send: redacted first when the org asks for it."""
    if org.redact_before_provider and org.redaction != "off":
        return redact(record.content, org.redaction).text or "", True
    return None, False


def plan_partition(
    conn: psycopg.Connection, registry: ProviderRegistry, orgs: dict[str, OrgSpec], day: str
) -> PlanSummary:
    summary = PlanSummary(day=day)
    rows = conn.execute(
        "select * from content_records where partition_day = %s order by source_ts, record_id",
        (day,),
    ).fetchall()
    summary.records = len(rows)
    groups: dict[tuple[str, str, str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    with conn.transaction():
        for row in rows:
            org = orgs[row["org_id"]]
            choice = org.provider_for(row["collection"])
            model = choice.model or registry.default_model(choice.provider)
            record = record_from_row(row)
            content, redacted = prompt_content(org, record)
            prompt = render(org, record, content)
            key = request_key(
                org.org, record.record_id, row["content_hash"], prompt.schema_version, model
            )
            if conn.execute(
                "select 1 from extraction_requests where request_key = %s limit 1", (key,)
            ).fetchone():
                summary.already_planned += 1
                continue
            prefix_tokens = estimate_tokens(prompt.static_prefix)
            record_tokens = estimate_tokens(prompt.record_part)
            rid = request_id(key, 1)
            conn.execute(
                "insert into extraction_requests (request_id, request_key, attempt, org_id, "
                "record_id, partition_day, collection, schema_version, provider, model, "
                "prefix_key, est_prefix_tokens, est_record_tokens, redacted) "
                "values (%s, %s, 1, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "on conflict do nothing",
                (
                    rid,
                    key,
                    org.org,
                    record.record_id,
                    day,
                    record.collection,
                    prompt.schema_version,
                    choice.provider,
                    model,
                    prompt.prefix_key,
                    prefix_tokens,
                    record_tokens,
                    redacted,
                ),
            )
            if _reuse_identical(
                conn,
                rid,
                org.org,
                record.collection,
                row["content_hash"],
                prompt.schema_version,
                model,
            ):
                summary.reused += 1
                continue
            summary.planned += 1
            group = groups[(org.org, record.collection, choice.provider, model, prompt.prefix_key)]
            group[0] = prefix_tokens
            group[1] += record_tokens
            group[2] += 1
    summary.groups = dict(groups)
    return summary


def _reuse_identical(
    conn: psycopg.Connection,
    rid: str,
    org: str,
    collection: str,
    content_hash: str,
    schema_version: str,
    model: str,
) -> bool:
    """Copy a succeeded answer for identical content into this request; no provider call."""
    source = conn.execute(
        "select res.answer, res.request_id from request_results res "
        "join extraction_requests q using (request_id) join content_records c using (record_id) "
        "where res.outcome = 'succeeded' and q.org_id = %s and q.collection = %s "
        "and c.content_hash = %s and q.schema_version = %s and q.model = %s limit 1",
        (org, collection, content_hash, schema_version, model),
    ).fetchone()
    if source is None:
        return False
    conn.execute(
        "insert into request_results (request_id, outcome, answer, error, realised_usd, "
        "counterfactual_usd, service_tier) values (%s, 'succeeded', %s, %s, 0, 0, 'reused') "
        "on conflict do nothing",
        (
            rid,
            psycopg.types.json.Jsonb(source["answer"]),
            f"reused answer of {source['request_id']}",
        ),
    )
    conn.execute(
        "update extraction_requests set status = 'succeeded', path = 'reused' where request_id = %s",
        (rid,),
    )
    return True
