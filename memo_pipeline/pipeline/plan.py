"""``extraction_requests``: render each record of a day into a request and record it in the ledger.

Work already done is skipped: a record whose content was extracted under the same schema version
and model (by any path, in any earlier run) gets no new request. Identical content in another
record of the same org and collection reuses the earlier answer instead of paying again.

The day is planned in a few set-based statements (one lookup of the keys already planned, one
batched insert, one lookup of reusable answers) rather than round trips per record, and the
token estimate of a static prefix is computed once per prefix: planning runs at the speed of
rendering.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from memo_pipeline.pipeline.ids import request_id, request_key
from memo_pipeline.pipeline.registry import ProviderRegistry
from memo_pipeline.prompts.render import RenderedPrompt, render
from memo_pipeline.records import ContentRecord
from memo_pipeline.schema.collections import OrgSpec
from memo_pipeline.stage2.redaction import redact
from memo_pipeline.tokens import estimate_tokens

# Rows per round trip when reading the day and writing its requests.
CHUNK = 5000


@dataclass
class PlanSummary:
    day: str
    records: int = 0
    planned: int = 0
    already_planned: int = 0
    reused: int = 0
    # (org, collection, provider, model, prefix_key) -> [prefix tokens, record tokens, count]
    groups: dict[tuple[str, str, str, str, str], list[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordPlan:
    """One record's request as planned: where it goes, its prompt and its token estimate."""

    provider: str
    model: str
    prompt: RenderedPrompt
    redacted: bool
    prefix_tokens: int
    record_tokens: int


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


class Planner:
    """Plans records one at a time; remembers each static prefix's token estimate."""

    def __init__(self, registry: ProviderRegistry) -> None:
        self.registry = registry
        self._prefix_tokens: dict[str, int] = {}

    def plan(self, org: OrgSpec, record: ContentRecord) -> RecordPlan:
        choice = org.provider_for(record.collection)
        model = choice.model or self.registry.default_model(choice.provider)
        content, redacted = prompt_content(org, record)
        prompt = render(org, record, content)
        prefix_tokens = self._prefix_tokens.get(prompt.prefix_key)
        if prefix_tokens is None:
            prefix_tokens = self._prefix_tokens[prompt.prefix_key] = estimate_tokens(
                prompt.static_prefix
            )
        return RecordPlan(
            choice.provider,
            model,
            prompt,
            redacted,
            prefix_tokens,
            estimate_tokens(prompt.record_part),
        )


def plan_partition(
    conn: psycopg.Connection, registry: ProviderRegistry, orgs: dict[str, OrgSpec], day: str
) -> PlanSummary:
    summary = PlanSummary(day=day)
    planner = Planner(registry)
    groups: dict[tuple[str, str, str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    with conn.transaction(), conn.cursor(name="plan_records") as records:
        records.execute(
            "select * from content_records where partition_day = %s order by source_ts, record_id",
            (day,),
        )
        while rows := records.fetchmany(CHUNK):
            summary.records += len(rows)
            planned = []
            for row in rows:
                org = orgs[row["org_id"]]
                record = record_from_row(row)
                plan = planner.plan(org, record)
                key = request_key(
                    org.org,
                    record.record_id,
                    row["content_hash"],
                    plan.prompt.schema_version,
                    plan.model,
                )
                planned.append((key, row, plan))
            known = {
                r["request_key"]
                for r in conn.execute(
                    "select distinct request_key from extraction_requests "
                    "where request_key = any(%s)",
                    ([key for key, _, _ in planned],),
                )
            }
            new = [p for p in planned if p[0] not in known]
            summary.already_planned += len(planned) - len(new)
            _insert_requests(conn, day, new)
            reused = _reuse_answers(conn, new)
            summary.reused += len(reused)
            for key, row, plan in new:
                if key in reused:
                    continue
                summary.planned += 1
                group = groups[
                    (
                        row["org_id"],
                        row["collection"],
                        plan.provider,
                        plan.model,
                        plan.prompt.prefix_key,
                    )
                ]
                group[0] = plan.prefix_tokens
                group[1] += plan.record_tokens
                group[2] += 1
    summary.groups = dict(groups)
    return summary


def _insert_requests(
    conn: psycopg.Connection, day: str, new: list[tuple[str, dict[str, Any], RecordPlan]]
) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "insert into extraction_requests (request_id, request_key, attempt, org_id, "
            "record_id, partition_day, collection, schema_version, provider, model, "
            "prefix_key, est_prefix_tokens, est_record_tokens, redacted) "
            "values (%s, %s, 1, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "on conflict do nothing",
            [
                (
                    request_id(key, 1),
                    key,
                    row["org_id"],
                    row["record_id"],
                    day,
                    row["collection"],
                    plan.prompt.schema_version,
                    plan.provider,
                    plan.model,
                    plan.prompt.prefix_key,
                    plan.prefix_tokens,
                    plan.record_tokens,
                    plan.redacted,
                )
                for key, row, plan in new
            ],
        )


def _reuse_answers(
    conn: psycopg.Connection, new: list[tuple[str, dict[str, Any], RecordPlan]]
) -> set[str]:
    """Copy succeeded answers for identical content into new requests; returns their keys."""
    if not new:
        return set()
    sources = {
        (s["org_id"], s["collection"], s["content_hash"], s["schema_version"], s["model"]): s
        for s in conn.execute(
            "select distinct on (q.org_id, q.collection, c.content_hash, q.schema_version, "
            "q.model) q.org_id, q.collection, c.content_hash, q.schema_version, q.model, "
            "res.answer, res.request_id from request_results res "
            "join extraction_requests q using (request_id) join content_records c using (record_id) "
            "where res.outcome = 'succeeded' and c.content_hash = any(%s)",
            (list({row["content_hash"] for _, row, _ in new}),),
        )
    }
    reused = []
    for key, row, plan in new:
        source = sources.get(
            (
                row["org_id"],
                row["collection"],
                row["content_hash"],
                plan.prompt.schema_version,
                plan.model,
            )
        )
        if source is not None:
            reused.append((key, source))
    _copy_answers(conn, [(request_id(key, 1), source) for key, source in reused])
    return {key for key, _ in reused}


def _copy_answers(conn: psycopg.Connection, reused: list[tuple[str, dict[str, Any]]]) -> None:
    """Store each source's answer as the given request's result, at no cost."""
    if not reused:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "insert into request_results (request_id, outcome, answer, error, realised_usd, "
            "counterfactual_usd, service_tier) values (%s, 'succeeded', %s, %s, 0, 0, 'reused') "
            "on conflict do nothing",
            [
                (rid, Jsonb(source["answer"]), f"reused answer of {source['request_id']}")
                for rid, source in reused
            ],
        )
    conn.execute(
        "update extraction_requests set status = 'succeeded', path = 'reused' "
        "where request_id = any(%s)",
        ([rid for rid, _ in reused],),
    )


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
    _copy_answers(conn, [(rid, source)])
    return True
