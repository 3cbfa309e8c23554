"""Recording per-request outcomes in the ledger, and what happens next to each request.

Shared by the batch collector and the sync path, so that a request's fate does not depend on the
path that answered it: succeeded answers are validated against the collection; invalid answers
and retryable failures get a new attempt (a repair request carrying the validation errors for
invalid answers) up to ``MAX_ATTEMPTS``; permanent failures and exhausted retries are
dead-lettered with the provider's reason. Every outcome is priced as it is recorded: the
realised cost from the provider's usage at the rates of the path the request took, and the sync
counterfactual beside it (see ``costs_ledger``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from memo_pipeline.costs import PriceTable
from memo_pipeline.pipeline.costs_ledger import price_usage, process_prices
from memo_pipeline.pipeline.ids import request_id
from memo_pipeline.pipeline.raw import dead_letter
from memo_pipeline.providers.base import Outcome, RequestOutcome
from memo_pipeline.schema.collections import OrgSpec
from memo_pipeline.stage2.validate import AnswerInvalid, validate_answer

MAX_ATTEMPTS = 3


@dataclass
class OutcomeCounts:
    succeeded: int = 0
    invalid: int = 0
    retryable: int = 0
    permanent: int = 0
    retried: int = 0
    dead: int = 0

    def add(self, other: OutcomeCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def record_outcome(
    conn: psycopg.Connection,
    outcome: RequestOutcome,
    request: dict,
    orgs: dict[str, OrgSpec],
    job_key: str | None,
    prices: PriceTable | None = None,
) -> str:
    """Store one outcome with its cost; returns the status given to the request.

    See ``record_outcomes``, which does the same for many outcomes in a few round trips.
    """
    return record_outcomes(conn, [(outcome, request)], orgs, job_key, prices)[0]


def record_outcomes(
    conn: psycopg.Connection,
    items: Sequence[tuple[RequestOutcome, dict[str, Any]]],
    orgs: dict[str, OrgSpec],
    job_key: str | None,
    prices: PriceTable | None = None,
) -> list[str]:
    """Store outcomes with their costs; returns the status given to each request, in order.

    An outcome that came out of a provider job (``job_key`` set) billed at batch rates, one
    without a job was a sync call (the sync and async modes, a below-minimum remainder, a request
    pulled out of the batch path): that is the path actually taken, whatever
    ``extraction_requests.path`` said when the request was planned. Failed requests are priced
    too: a truncated or invalid answer was paid for. A second answer for a request that already
    has one (a re-collected job, or the batch answering a request that was escalated) is not
    stored: the first one stands, and its status is ``duplicate``.

    Args:
        items: (outcome, the request's ledger row) pairs.
        prices: the price table; None loads the process's table once (``process_prices``).
    """
    return write_outcomes(conn, judge_outcomes(items, orgs, job_key, prices))


@dataclass(frozen=True)
class JudgedOutcomes:
    """Outcomes validated and priced, ready to be written (``write_outcomes``)."""

    job_key: str | None
    rows: list[tuple[Any, ...]]


def judge_outcomes(
    items: Sequence[tuple[RequestOutcome, dict[str, Any]]],
    orgs: dict[str, OrgSpec],
    job_key: str | None,
    prices: PriceTable | None = None,
) -> JudgedOutcomes:
    """The part of ``record_outcomes`` that needs no database: validation and pricing."""
    if not items:
        return JudgedOutcomes(job_key, [])
    table = prices or process_prices()
    path = "batch" if job_key is not None else "sync"
    rows = []
    for outcome, request in items:
        status, error, answer = _judge(outcome, request, orgs)
        usage = outcome.usage
        realised, counterfactual = price_usage(
            table, request["provider"], request["model"], usage, path
        )
        rows.append(
            (
                outcome.request_id,
                job_key,
                status,
                error,
                answer,
                outcome.stop_reason,
                usage.input_tokens,
                usage.cache_write_5m_tokens,
                usage.cache_write_1h_tokens,
                usage.cache_read_tokens,
                usage.output_tokens,
                usage.service_tier,
                realised,
                counterfactual,
            )
        )
    return JudgedOutcomes(job_key, rows)


def write_outcomes(conn: psycopg.Connection, judged: JudgedOutcomes) -> list[str]:
    """Store judged outcomes and give their requests their status; returns each status."""
    job_key, rows = judged.job_key, judged.rows
    if not rows:
        return []
    columns = list(zip(*rows, strict=True))
    # Statements joining a table to arrays of thousands of ids are never prepared: a prepared
    # statement soon gets a generic plan, which cannot see the arrays' length, and one such
    # plan (scanning the table once per array element) took seconds per thousand rows.
    inserted = {
        r["request_id"]
        for r in conn.execute(
            "insert into request_results (request_id, job_key, outcome, error, answer, "
            "stop_reason, input_tokens, cache_write_5m_tokens, cache_write_1h_tokens, "
            "cache_read_tokens, output_tokens, service_tier, realised_usd, counterfactual_usd) "
            "select r, %s, o, e, a::json, s, i, w5, w1, cr, ot, t, ru, cu from unnest("
            "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::int[], %b::int[], "
            "%b::int[], %b::int[], %b::int[], %b::text[], %b::numeric[], %b::numeric[]) "
            "with ordinality as u(r, o, e, a, s, i, w5, w1, cr, ot, t, ru, cu, n) order by n "
            "on conflict (request_id) do nothing returning request_id",
            (job_key, *(list(c) for i, c in enumerate(columns) if i != 1)),
            prepare=False,
        )
    }
    statuses, stored = [], set()
    for row in rows:
        # The same id twice in one call: the first stands, as for an earlier answer.
        first = row[0] in inserted and row[0] not in stored
        stored.add(row[0])
        statuses.append(row[2] if first else "duplicate")
    updates = [
        (row[2], row[3], row[0]) for row, s in zip(rows, statuses, strict=True) if s != "duplicate"
    ]
    if updates:
        status, reason, ids = (list(c) for c in zip(*updates, strict=True))
        conn.execute(
            # An outcome without an error keeps the reason the request was given when it was
            # routed (a remainder below a job minimum, a deadline escalation).
            "update extraction_requests q set status = u.status, "
            "reason = coalesce(u.reason, q.reason), "
            "updated_at = now() from unnest(%s::text[], %s::text[], %s::text[]) "
            "as u(status, reason, id) where q.request_id = u.id",
            (status, reason, ids),
            prepare=False,
        )
    return statuses


def _judge(
    outcome: RequestOutcome, request: dict[str, Any], orgs: dict[str, OrgSpec]
) -> tuple[str, str | None, str | None]:
    """(status, error, answer JSON text) of an outcome; succeeded answers are validated."""
    if outcome.outcome is not Outcome.SUCCEEDED:
        return outcome.outcome.value, outcome.error, None
    collection = orgs[request["org_id"]].collections[request["collection"]]
    try:
        validate_answer(outcome.answer_text, collection)
    except AnswerInvalid as exc:
        return "invalid", "; ".join(exc.errors[:20]), None
    return "succeeded", outcome.error, outcome.answer_text or "null"


def schedule_retries(conn: psycopg.Connection, day: str) -> OutcomeCounts:
    """Give failed requests of a day their next attempt, or dead-letter them."""
    counts = OutcomeCounts()
    rows = conn.execute(
        "select q.*, r.error as result_error from extraction_requests q "
        "left join request_results r using (request_id) "
        "where q.partition_day = %s and q.status in ('retryable', 'invalid', 'permanent') "
        "and not exists (select 1 from extraction_requests n where n.request_key = q.request_key "
        "and n.attempt > q.attempt)",
        (day,),
    ).fetchall()
    for row in rows:
        reason = row["result_error"] or row["reason"] or row["status"]
        if row["status"] == "permanent" or row["attempt"] >= MAX_ATTEMPTS:
            dead_letter(
                conn,
                stage="extract",
                org=row["org_id"],
                day=day,
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
            counts.dead += 1
            continue
        invalid = row["status"] == "invalid"
        conn.execute(
            "insert into extraction_requests (request_id, request_key, attempt, org_id, record_id, "
            "partition_day, collection, schema_version, provider, model, kind, path, prefix_key, "
            "est_prefix_tokens, est_record_tokens, repair_errors, redacted, content_hash) "
            "select %s, request_key, attempt + 1, org_id, record_id, partition_day, collection, "
            "schema_version, provider, model, %s, 'batch', prefix_key, est_prefix_tokens, "
            "est_record_tokens, %s, redacted, content_hash from extraction_requests "
            "where request_id = %s "
            "on conflict do nothing",
            (
                request_id(row["request_key"], row["attempt"] + 1),
                "repair" if invalid else "extract",
                Jsonb(reason.split("; ")) if invalid else None,
                row["request_id"],
            ),
        )
        counts.retried += 1
    return counts
