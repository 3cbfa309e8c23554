"""``provider_batches``: pack a day's pending requests into provider jobs and submit each once.

Exactly once: requests are claimed into a job by writing its intent row (a deterministic job key
over the exact request set) and committing, before the provider is called. The call happens while
holding a row lock on the intent; a second submitter blocks on the lock and then sees the job id.
An intent left without a job id by a crash is reconciled first: the provider is asked whether a
job for that key exists (``Provider.find_job``) and only if not is the batch submitted. A
prefix's requests below the provider's job minimum are routed to the sync API in the claim and
called after it commits, each under a lock of its own (``run_sync_remainders``).

Spend guard: before requests are claimed (into a job or onto the sync path), their cost is
forecast and added to what their org has spent or committed today (``costs_ledger.spent_on``);
if that would exceed the org's ``daily_budget_usd`` the requests are held: they stay pending,
with the guard's message as their reason, and the next submission for the day (after the budget
is raised, or on the next UTC day) claims them.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from memo_pipeline.costs import BillingPath, PriceNotFound, PriceTable, SpendGuard
from memo_pipeline.pipeline.costs_ledger import request_forecast_usd, spent_on
from memo_pipeline.pipeline.ids import job_key as make_job_key
from memo_pipeline.pipeline.outcomes import record_outcome
from memo_pipeline.pipeline.plan import prompt_content, record_from_row
from memo_pipeline.pipeline.registry import ProviderRegistry, cache_ttl_of, remainders_wait
from memo_pipeline.prompts.render import render
from memo_pipeline.providers.base import Provider, ProviderLimits, ProviderRequest
from memo_pipeline.schema.collections import OrgSpec

log = logging.getLogger(__name__)

# Rough wire overhead per request beyond the prompt text: the answer schema, roles, ids.
REQUEST_OVERHEAD_BYTES = 4096
PRIME_TTL = timedelta(minutes=55)
CRASH_HOOK = "MEMO_TEST_CRASH"
# Why a pending request is not claimed yet, as the claim step writes it; cleared when a later
# claim takes the request. The spend guard's reason ("6 openai requests of 2026-11-30 held:
# forecast ...") and a remainder's that waits for more work, as SQL LIKE patterns.
WAITING_FOR_MORE = "waiting for more (remainder_policy: wait)"
WAITING_LIKE = ["% held: %", f"%{WAITING_FOR_MORE}"]


@dataclass
class SubmitSummary:
    day: str
    jobs: list[dict[str, Any]] = field(default_factory=list)
    submitted_requests: int = 0
    held_for_priming: int = 0
    sync_requests: int = 0
    recovered_jobs: int = 0
    waiting_below_minimum: int = 0
    held_for_budget: int = 0
    budget_messages: list[str] = field(default_factory=list)


def build_requests(
    conn: psycopg.Connection, orgs: dict[str, OrgSpec], request_rows: Sequence[dict[str, Any]]
) -> list[ProviderRequest]:
    """Re-render the prompts of ledger rows (rendering is deterministic, so nothing is stored)."""
    ids = [r["record_id"] for r in request_rows]
    records = {
        r["record_id"]: r
        for r in conn.execute("select * from content_records where record_id = any(%s)", (ids,))
    }
    out = []
    for row in request_rows:
        org = orgs[row["org_id"]]
        record = record_from_row(records[row["record_id"]])
        content, _ = prompt_content(org, record)
        out.append(
            ProviderRequest(
                request_id=row["request_id"],
                prompt=render(org, record, content),
                model=row["model"],
                repair_errors=tuple(row["repair_errors"] or ()),
            )
        )
    return out


def pack(sizes: Sequence[int], limits: ProviderLimits) -> list[range]:
    """Split items (already grouped by prefix) into batches within count and byte limits.

    ``sizes`` are the items' wire sizes in bytes; returns the index range of each batch.
    """
    batches: list[range] = []
    start, size = 0, 0
    for index, item_bytes in enumerate(sizes):
        if item_bytes > limits.max_bytes_per_batch:
            raise ValueError(f"item {index} alone exceeds the batch byte limit")
        if index > start and (
            index - start >= limits.max_requests_per_batch
            or size + item_bytes > limits.max_bytes_per_batch
        ):
            batches.append(range(start, index))
            start, size = index, 0
        size += item_bytes
    if start < len(sizes):
        batches.append(range(start, len(sizes)))
    return batches


def _prime_state(conn: psycopg.Connection, provider: str, model: str, prefix_key: str) -> str:
    """'warm', 'priming' (a priming job is still open) or 'cold'."""
    row = conn.execute(
        "select j.status, j.ended_at from cache_primes p join provider_jobs j using (job_key) "
        "where p.provider = %s and p.model = %s and p.prefix_key = %s "
        "order by p.created_at desc limit 1",
        (provider, model, prefix_key),
    ).fetchone()
    if row is None:
        return "cold"
    if row["status"] in ("intent", "submitted"):
        return "priming"
    if row["ended_at"] and datetime.now(UTC) - row["ended_at"] < PRIME_TTL:
        return "warm"
    return "cold"


def _claim(
    conn: psycopg.Connection,
    provider: Provider,
    model: str,
    day: str,
    request_ids: Sequence[str],
    forecasts: Sequence[Decimal | None],
    size: int,
    priming: bool,
    prefix_key: str,
) -> str:
    """Record the job's intent and give it its requests, each with its forecast cost."""
    key = make_job_key(provider.name, model, request_ids)
    conn.execute(
        "insert into provider_jobs (job_key, provider, model, partition_day, status, is_priming, "
        "request_count, bytes) values (%s, %s, %s, %s, 'intent', %s, %s, %s) "
        "on conflict (job_key) do nothing",
        (key, provider.name, model, day, priming, len(request_ids), size),
    )
    conn.execute(
        # Why it waited (a budget hold since lifted, too few requests) is no longer its reason.
        "update extraction_requests q set job_key = %s, forecast_usd = v.usd, updated_at = now(), "
        "reason = case when q.reason like any(%s) then null else q.reason end "
        "from unnest(%b::text[], %b::numeric[]) as v(id, usd) "
        "where q.request_id = v.id and q.status = 'pending'",
        (key, WAITING_LIKE, list(request_ids), list(forecasts)),
        prepare=False,  # see outcomes.write_outcomes
    )
    if priming:
        conn.execute(
            "insert into cache_primes (provider, model, prefix_key, job_key) values (%s, %s, %s, %s) "
            "on conflict do nothing",
            (provider.name, model, prefix_key, key),
        )
    return key


def _stamp_forecasts(
    conn: psycopg.Connection, rows: Sequence[dict[str, Any]], costs: Sequence[Decimal | None]
) -> None:
    conn.execute(
        "update extraction_requests q set forecast_usd = v.usd "
        "from unnest(%s::text[], %s::numeric[]) as v(id, usd) where q.request_id = v.id",
        ([r["request_id"] for r in rows], list(costs)),
        prepare=False,
    )


# The reason the claim step gives a remainder it routes to the sync path, as SQL LIKE: the sync
# calls find their requests by it, in the same submission or, after a crash, in the next one.
REMAINDER_LIKE = "% below the %-request batch minimum"


def _route_to_sync(conn: psycopg.Connection, group: Sequence[dict[str, Any]], minimum: int) -> None:
    reason = (
        f"{len(group)} request{' is' if len(group) == 1 else 's are'} below "
        f"the {minimum}-request batch minimum"
    )
    conn.execute(
        "update extraction_requests set path = 'sync', reason = %s, updated_at = now() "
        "where request_id = any(%s)",
        (reason, [r["request_id"] for r in group]),
    )


def run_sync_remainders(
    conn: psycopg.Connection,
    registry: ProviderRegistry,
    orgs: dict[str, OrgSpec],
    day: str,
    summary: SubmitSummary,
) -> None:
    """Call the sync API for the day's requests the claim step routed there, one transaction
    per request.

    The routing is committed before any call, and each call happens under a lock on its
    request, which is skipped unless still pending: a concurrent submission skips what another
    is calling, and an answered request is never called again. A crash between a call and its
    commit loses that one answer, which the next submission pays for again (a sync API takes no
    idempotency key).
    """
    with conn.transaction():
        ids = [
            r["request_id"]
            for r in conn.execute(
                "select request_id from extraction_requests where partition_day = %s "
                "and status = 'pending' and path = 'sync' and job_key is null "
                "and reason like %s order by request_id",
                (day, REMAINDER_LIKE),
            )
        ]
    for rid in ids:
        with conn.transaction():
            row = conn.execute(
                "select * from extraction_requests where request_id = %s and status = 'pending' "
                "for update skip locked",
                (rid,),
            ).fetchone()
            if row is None:
                continue
            provider = registry.get(row["provider"], row["model"])
            outcome = provider.call_sync(build_requests(conn, orgs, [row])[0])
            record_outcome(conn, outcome, row, orgs, job_key=None, prices=registry.settings.prices)
        summary.sync_requests += 1


@dataclass(frozen=True)
class Budget:
    """What the spend guard needs: the orgs' budgets, the prices, each provider's cache
    lifetime (a cache write is priced in when it is dearer, see ``request_forecast_usd``), and
    the UTC day whose spend counts."""

    orgs: dict[str, OrgSpec]
    prices: PriceTable
    today: date
    cache_ttls: dict[str, str | None]

    @classmethod
    def of(cls, registry: ProviderRegistry, orgs: dict[str, OrgSpec], today: date) -> Budget:
        ttls = {
            name: cache_ttl_of(conf) for name, conf in registry.settings.providers_config.items()
        }
        return cls(orgs, registry.settings.prices, today, ttls)


def check_budget(
    conn: psycopg.Connection,
    budget: Budget,
    rows: Sequence[dict[str, Any]],
    path: BillingPath,
    *,
    lock: bool = True,
) -> tuple[list[Decimal | None], None] | tuple[None, str]:
    """The spend guard on ledger rows of one org about to be sent on ``path``.

    Returns their forecast costs (to stamp on them) and None when the org's daily budget allows
    them, else None and the guard's message. Without a price the forecast is None, and the rows
    are held only if the org has a budget (it cannot be checked).

    With ``lock`` (and a budget) the org's budget lock is taken for the rest of the caller's
    transaction, so that two claims of one org (two days submitted at once) decide one after
    the other, each seeing what the other committed. The caller must commit soon after: a
    transaction that goes on to call a provider passes ``lock=False``.
    """
    org = budget.orgs[rows[0]["org_id"]]
    try:
        costs = [
            request_forecast_usd(
                budget.prices,
                r["provider"],
                r["model"],
                r["est_prefix_tokens"] + r["est_record_tokens"],
                r["est_record_tokens"],
                path,
                budget.cache_ttls.get(r["provider"]),
            )
            for r in rows
        ]
    except PriceNotFound as exc:
        if org.daily_budget_usd is None:
            return [None] * len(rows), None
        return None, f"held: cannot check org {org.org}'s daily budget: {exc}"
    if org.daily_budget_usd is None:
        return costs, None
    if lock:
        conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"memo budget {org.org}",))
    decision = SpendGuard.check(
        org.org,
        budget.today,
        sum(costs, Decimal(0)),
        spent_on(conn, org.org, budget.today),
        org.daily_budget_usd,
    )
    return (costs, None) if decision.allowed else (None, decision.message)


def _within_budget(
    conn: psycopg.Connection,
    budget: Budget,
    rows: Sequence[dict[str, Any]],
    path: BillingPath,
    summary: SubmitSummary,
    held: Sequence[dict[str, Any]] | None = None,
) -> list[Decimal | None] | None:
    """``check_budget`` on ``rows``: their forecast costs if allowed, else None. Held rows
    (``held``, by default ``rows``) stay pending with the guard's message as their reason.
    """
    costs, message = check_budget(conn, budget, rows, path)
    if message is None:
        return costs
    what = f"{rows[0]['provider']} requests of {rows[0]['partition_day']}"
    if held is None or len(held) == len(rows):
        held, what = rows, f"{len(rows)} {what}"
    else:
        what = (
            f"{len(held)} {what} (a {len(rows)}-request cache-priming job and "
            f"{len(held) - len(rows)} waiting for it)"
        )
    message = f"{what} {message}"
    log.warning("%s", message)
    summary.held_for_budget += len(held)
    summary.budget_messages.append(message)
    conn.execute(
        "update extraction_requests set reason = %s, updated_at = now() where request_id = any(%s)",
        (message, [r["request_id"] for r in held]),
    )
    return None


def claim_pending(
    conn: psycopg.Connection,
    registry: ProviderRegistry,
    orgs: dict[str, OrgSpec],
    day: str,
    summary: SubmitSummary,
    today: date | None = None,
) -> None:
    """Turn a day's unclaimed pending requests into job intents (one transaction).

    ``today`` is the UTC day whose budget the spend counts against (the current one unless
    given).
    """
    budget = Budget.of(registry, orgs, today or datetime.now(UTC).date())
    with conn.transaction():
        rows = conn.execute(
            f"select q.*, {RECORD_PART_BYTES} as record_bytes from extraction_requests q "
            "join content_records c using (record_id) where q.partition_day = %s "
            "and q.status = 'pending' and q.job_key is null and q.path = 'batch' "
            "order by q.org_id, q.provider, q.model, q.prefix_key, q.request_id "
            "for update of q skip locked",
            (day,),
        ).fetchall()
        groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            groups[(row["org_id"], row["provider"], row["model"], row["prefix_key"])].append(row)
        for (_, provider_name, model, prefix_key), group in groups.items():
            provider = registry.get(provider_name, model)
            config = registry.config(provider_name)
            minimum = provider.limits.min_requests_per_batch
            if config.get("prime_cache"):
                state = _prime_state(conn, provider_name, model, prefix_key)
                if state == "priming":
                    summary.held_for_priming += len(group)
                    continue
                # A priming job must itself meet the provider's minimum job size.
                primer = max(1, minimum)
                if state == "cold" and len(group) > primer:
                    # The rest of the group waits for the primer: when the budget holds the
                    # primer, it holds them all.
                    costs = _within_budget(
                        conn, budget, group[:primer], "batch", summary, held=group
                    )
                    if costs is not None:
                        sizes = _wire_sizes(conn, orgs, group[:primer])
                        ids = [r["request_id"] for r in group[:primer]]
                        _claim(conn, provider, model, day, ids, costs, sum(sizes), True, prefix_key)
                        summary.held_for_priming += len(group) - primer
                    continue
            if len(group) < minimum:
                if remainders_wait(config):
                    summary.waiting_below_minimum += len(group)
                    conn.execute(
                        "update extraction_requests set reason = %s, updated_at = now() "
                        "where request_id = any(%s)",
                        (
                            f"{len(group)} requests are below the {minimum}-request batch "
                            f"minimum of {provider_name}: {WAITING_FOR_MORE}",
                            [r["request_id"] for r in group],
                        ),
                    )
                    continue
                costs = _within_budget(conn, budget, group, "sync", summary)
                if costs is None:
                    continue
                # Called once this claim has committed (``run_sync_remainders``).
                _stamp_forecasts(conn, group, costs)
                _route_to_sync(conn, group, minimum)
                continue
            costs = _within_budget(conn, budget, group, "batch", summary)
            if costs is None:
                continue
            sizes = _wire_sizes(conn, orgs, group)
            for batch in pack(sizes, provider.limits):
                ids = [group[i]["request_id"] for i in batch]
                size = sum(sizes[i] for i in batch)
                forecasts = [costs[i] for i in batch]
                _claim(conn, provider, model, day, ids, forecasts, size, False, prefix_key)


# An upper bound of the UTF-8 size of a record's prompt part (``render_record_part``): its
# content, header values and fixed labels. Redaction before sending can lengthen a short match
# by a few bytes, which the per-request overhead covers.
RECORD_PART_BYTES = (
    "(octet_length(c.content) + octet_length(coalesce(c.identifier, '')) "
    "+ octet_length(coalesce(c.title, '')) + octet_length(c.kind) + 128)"
)


def _wire_sizes(
    conn: psycopg.Connection, orgs: dict[str, OrgSpec], group: Sequence[dict[str, Any]]
) -> list[int]:
    """Each request's size on the wire, for packing, without rendering every request: the
    group's shared prefix (rendered once), the record part's bound, and the overhead."""
    prefix = build_requests(conn, orgs, group[:1])[0].prompt.static_prefix
    prefix_bytes = len(prefix.encode()) + REQUEST_OVERHEAD_BYTES
    return [prefix_bytes + r["record_bytes"] for r in group]


def submit_intents(
    conn: psycopg.Connection,
    registry: ProviderRegistry,
    orgs: dict[str, OrgSpec],
    day: str,
    summary: SubmitSummary,
) -> None:
    """Submit every intent of the day that has no job id yet, at most once each."""
    with conn.transaction():  # leaves none open: each job below is a transaction of its own
        keys = [
            r["job_key"]
            for r in conn.execute(
                "select job_key from provider_jobs where partition_day = %s "
                "and status = 'intent' order by created_at, job_key",
                (day,),
            )
        ]
    for key in keys:
        with conn.transaction():
            job = conn.execute(
                "select * from provider_jobs where job_key = %s for update", (key,)
            ).fetchone()
            if job["status"] != "intent":
                continue
            rows = conn.execute(
                "select * from extraction_requests where job_key = %s order by request_id", (key,)
            ).fetchall()
            provider = registry.get(job["provider"], job["model"])
            requests = build_requests(conn, orgs, rows)
            known = {
                r["job_id"]
                for r in conn.execute(
                    "select job_id from provider_jobs where provider = %s and job_id is not null",
                    (job["provider"],),
                )
            }
            handle = provider.find_job(key, requests, exclude_job_ids=known)
            if handle is not None:
                summary.recovered_jobs += 1
                log.warning("job %s was already submitted as %s; recorded it", key, handle.job_id)
            else:
                handle = provider.submit_batch(key, requests)
                if os.environ.get(CRASH_HOOK) == "after-provider-call":
                    # Test hook: die between the provider accepting the job and the ledger
                    # recording it, the window the intent row exists for.
                    os._exit(86)
            conn.execute(
                "update provider_jobs set job_id = %s, status = 'submitted', submitted_at = %s, "
                "console_url = %s, bytes = %s where job_key = %s",
                (handle.job_id, handle.submitted_at, handle.console_url, handle.bytes, key),
            )
            conn.execute(
                "update extraction_requests set status = 'submitted', updated_at = now() "
                "where job_key = %s and status = 'pending'",
                (key,),
            )
            summary.submitted_requests += len(requests)
            summary.jobs.append(
                {
                    "provider": handle.provider,
                    "job_id": handle.job_id,
                    "job_key": key,
                    "requests": handle.request_count,
                    "bytes": handle.bytes,
                    "model": handle.model,
                    "submitted_at": handle.submitted_at.isoformat(),
                    "console_url": handle.console_url,
                    "priming": job["is_priming"],
                }
            )


def submit_partition(
    conn: psycopg.Connection,
    registry: ProviderRegistry,
    orgs: dict[str, OrgSpec],
    day: str,
    today: date | None = None,
) -> SubmitSummary:
    require_no_transaction(conn, "submit_partition")
    summary = SubmitSummary(day=day)
    claim_pending(conn, registry, orgs, day, summary, today)
    run_sync_remainders(conn, registry, orgs, day, summary)
    submit_intents(conn, registry, orgs, day, summary)
    return summary


def require_no_transaction(conn: psycopg.Connection, caller: str) -> None:
    """Refuse a connection inside a transaction: each claim and each submitted job must commit
    on its own before the provider is called (inside an open transaction they would be mere
    savepoints, and a later failure would roll back the record of a job the provider took).

    Raises:
        RuntimeError: a transaction is open on ``conn``.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError(
            f"{caller} needs a connection with no transaction open (commit or roll back first): "
            "its claims must commit before the provider is called"
        )


def released_days(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Days holding requests back for a cache-priming job that has since ended.

    Returns each day with the key of the newest ended priming job, so that a run that submits
    the held requests can be keyed on it.
    """
    return conn.execute(
        "select q.partition_day::text as day, max(p.job_key) as prime_key "
        "from extraction_requests q join cache_primes p on p.provider = q.provider "
        "and p.model = q.model and p.prefix_key = q.prefix_key "
        "join provider_jobs j on j.job_key = p.job_key "
        "where q.status = 'pending' and q.job_key is null and q.path = 'batch' "
        "and j.status in ('ended', 'failed', 'collected') "
        "and not exists (select 1 from cache_primes p2 join provider_jobs j2 using (job_key) "
        "where p2.provider = q.provider and p2.model = q.model and p2.prefix_key = q.prefix_key "
        "and j2.status in ('intent', 'submitted')) "
        "group by 1 order by 1"
    ).fetchall()
