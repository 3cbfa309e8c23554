"""``extraction_requests``: render each record of a day into a request and record it in the ledger.

Work already done is skipped: a record whose content was extracted under the same schema version
and model (by any path, in any earlier run) gets no new request. Identical content in another
record of the same org and collection reuses the earlier answer instead of paying again.

The day is planned in a few set-based statements per chunk (one lookup of the keys already
planned, one batched insert, one lookup of reusable answers) rather than round trips per record.
Planning reads no record text: each record's token estimate was made once when it was stored
(``content_records.record_tokens``), and a static prefix's once per prefix. Only records stored
without one, or of an org that redacts before sending, are read and estimated here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg

from memo_pipeline.pipeline.ids import request_id, request_key
from memo_pipeline.pipeline.registry import ProviderRegistry
from memo_pipeline.prompts.render import PromptShape, prompt_shape, render_record_part
from memo_pipeline.records import ContentRecord, to_utc
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
    """One record's request as planned: where it goes, its prompt's shape, its token estimate."""

    provider: str
    model: str
    shape: PromptShape
    redacted: bool
    prefix_tokens: int
    record_tokens: int


def record_from_row(row: dict[str, Any]) -> ContentRecord:
    """A ``content_records`` row as a record. Rows were validated when they were stored, so
    they are not validated again (a day's requests are built from thousands of them); only the
    timestamp is put back in UTC, in which the connection's time zone need not be.
    """
    return ContentRecord.model_construct(
        source_id=row["source_id"],
        org=row["org_id"],
        collection=row["collection"],
        identifier=row["identifier"],
        content=row["content"],
        source_ts=to_utc(row["source_ts"]),
        kind=row["kind"],
        title=row["title"],
        source=row["source"],
        source_line=row["source_line"],
        metadata=row["metadata"] or {},
    )


def redacts_before_provider(org: OrgSpec) -> bool:
    return org.redact_before_provider and org.redaction != "off"


def prompt_content(org: OrgSpec, record: ContentRecord) -> tuple[str | None, bool]:
    """The content to send: redacted first when the org asks for it."""
    if redacts_before_provider(org):
        return redact(record.content, org.redaction).text or "", True
    return None, False


class Planner:
    """Plans records one at a time; remembers each static prefix's token estimate."""

    def __init__(self, registry: ProviderRegistry) -> None:
        self.registry = registry
        self._prefix_tokens: dict[str, int] = {}
        self._routes: dict[tuple[str, str], tuple[str, str]] = {}

    def plan(self, org: OrgSpec, record: ContentRecord) -> RecordPlan:
        content, redacted = prompt_content(org, record)
        return self._plan(
            org,
            record.collection,
            record.metadata,
            redacted,
            estimate_tokens(render_record_part(record, content)),
        )

    def plan_row(self, org: OrgSpec, row: dict[str, Any]) -> RecordPlan:
        """Plan a ``content_records`` row, reading the estimate stored with it where it can.

        The row's ``content`` is needed only when it has no ``record_tokens`` or the org redacts
        before sending (the estimate is then of the redacted text).
        """
        if row["record_tokens"] is None or redacts_before_provider(org):
            return self.plan(org, record_from_row(row))
        return self._plan(org, row["collection"], row["metadata"], False, row["record_tokens"])

    def _plan(
        self,
        org: OrgSpec,
        collection: str,
        metadata: dict[str, Any] | None,
        redacted: bool,
        record_tokens: int,
    ) -> RecordPlan:
        route = self._routes.get((org.org, collection))
        if route is None:
            choice = org.provider_for(collection)
            route = self._routes[(org.org, collection)] = (
                choice.provider,
                choice.model or self.registry.default_model(choice.provider),
            )
        provider, model = route
        shape = prompt_shape(org, collection, metadata)
        prefix_tokens = self._prefix_tokens.get(shape.prefix_key)
        if prefix_tokens is None:
            prefix_tokens = self._prefix_tokens[shape.prefix_key] = estimate_tokens(
                shape.static_prefix
            )
        return RecordPlan(provider, model, shape, redacted, prefix_tokens, record_tokens)


# A row's text is read only when its estimate has to be made here (see ``Planner.plan_row``).
PLAN_COLUMNS = (
    "record_id, org_id, source_id, collection, identifier, source_ts, kind, title, source, "
    "source_line, metadata, content_hash, record_tokens, "
    "case when record_tokens is null or org_id = any(%s) then content end as content"
)


def plan_partition(
    conn: psycopg.Connection, registry: ProviderRegistry, orgs: dict[str, OrgSpec], day: str
) -> PlanSummary:
    summary = PlanSummary(day=day)
    planner = Planner(registry)
    groups: dict[tuple[str, str, str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    redacting = [name for name, org in orgs.items() if redacts_before_provider(org)]
    with conn.transaction(), conn.cursor(name="plan_records") as records:
        records.execute(
            f"select {PLAN_COLUMNS} from content_records where partition_day = %s "
            "order by source_ts, record_id",
            (redacting, day),
        )
        while rows := records.fetchmany(CHUNK):
            summary.records += len(rows)
            planned = []
            for row in rows:
                org = orgs[row["org_id"]]
                plan = planner.plan_row(org, row)
                key = request_key(
                    org.org,
                    row["record_id"],
                    row["content_hash"],
                    plan.shape.schema_version,
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
                        plan.shape.prefix_key,
                    )
                ]
                group[0] = plan.prefix_tokens
                group[1] += plan.record_tokens
                group[2] += 1
        if summary.planned + summary.reused >= ANALYZE_AFTER:
            # The ledger just grew by a day of pending requests that the planner's statistics
            # have not seen: with them, claiming a job read as joining to one pending row, and
            # a plan built on that scanned the table once per request claimed. Inside the
            # planning transaction, so that no transaction is left open behind it.
            conn.execute("analyze extraction_requests")
    summary.groups = dict(groups)
    return summary


# Requests planned at once beyond which the ledger's statistics are refreshed.
ANALYZE_AFTER = 5000

REQUEST_COLUMNS = (
    "request_id, request_key, attempt, org_id, record_id, partition_day, collection, "
    "schema_version, provider, model, prefix_key, est_prefix_tokens, est_record_tokens, redacted, "
    "content_hash"
)


def _insert_requests(
    conn: psycopg.Connection, day: str, new: list[tuple[str, dict[str, Any], RecordPlan]]
) -> None:
    """Insert the chunk's new requests: COPY into a scratch table, then one insert that leaves
    alone any row a concurrent planner inserted meanwhile (``on conflict do nothing``)."""
    if not new:
        return
    conn.execute(
        "create temp table if not exists planned_requests "
        "(like extraction_requests including defaults) on commit drop"
    )
    with conn.cursor() as cur:
        with cur.copy(f"copy planned_requests ({REQUEST_COLUMNS}) from stdin") as copy:
            for key, row, plan in new:
                copy.write_row(
                    (
                        request_id(key, 1),
                        key,
                        1,
                        row["org_id"],
                        row["record_id"],
                        day,
                        row["collection"],
                        plan.shape.schema_version,
                        plan.provider,
                        plan.model,
                        plan.shape.prefix_key,
                        plan.prefix_tokens,
                        plan.record_tokens,
                        plan.redacted,
                        row["content_hash"],
                    )
                )
        cur.execute(
            f"insert into extraction_requests ({REQUEST_COLUMNS}) "
            f"select {REQUEST_COLUMNS} from planned_requests on conflict do nothing"
        )
        cur.execute("truncate planned_requests")


def _reuse_answers(
    conn: psycopg.Connection, new: list[tuple[str, dict[str, Any], RecordPlan]]
) -> set[str]:
    """Copy succeeded answers for identical content into new requests; returns their keys."""
    if not new:
        return set()
    sources = {
        (s["org_id"], s["collection"], s["content_hash"], s["schema_version"], s["model"]): s
        for s in conn.execute(
            "select distinct on (q.org_id, q.collection, q.content_hash, q.schema_version, "
            "q.model) q.org_id, q.collection, q.content_hash, q.schema_version, q.model, "
            "res.answer::text as answer, res.request_id from request_results res "
            "join extraction_requests q using (request_id) "
            "where res.outcome = 'succeeded' and q.content_hash = any(%s)",
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
                plan.shape.schema_version,
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
                (rid, source["answer"], f"reused answer of {source['request_id']}")
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
        "select res.answer::text as answer, res.request_id from request_results res "
        "join extraction_requests q using (request_id) "
        "where res.outcome = 'succeeded' and q.org_id = %s and q.collection = %s "
        "and q.content_hash = %s and q.schema_version = %s and q.model = %s limit 1",
        (org, collection, content_hash, schema_version, model),
    ).fetchone()
    if source is None:
        return False
    _copy_answers(conn, [(rid, source)])
    return True
