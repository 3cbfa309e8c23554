"""The cost ledger in PostgreSQL: per-request costs, totals, committed spend and forecasts.

One ``request_results`` row is one request's outcome with the usage its provider reported;
``realised_usd`` is that usage priced at the rates of the path the request actually took (batch
when the answer came out of a provider job, sync otherwise) and ``counterfactual_usd`` the same
tokens on the sync API with no cache. Both are filled by ``outcomes.record_outcome`` when the
outcome is recorded, exact (PostgreSQL ``numeric``); answers reused from identical content cost 0
on both sides. ``cost_totals`` sums them per day, org, collection, provider, model or path.

Before anything is paid, ``forecast_items`` estimates a set of planned requests under each
execution mode from the offline token estimate, and ``spent_on`` gives what an org has spent or
committed on one UTC day, for the spend guard in ``submit``.
"""

from __future__ import annotations

import base64
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

import psycopg

from memo_pipeline.config import Settings
from memo_pipeline.costs import (
    BillingPath,
    CostSummary,
    CostTotals,
    Forecast,
    PlannedRequest,
    PriceNotFound,
    PriceTable,
    cache_write_usage,
    forecast,
    format_usd,
    render_cost_chart,
    request_cost,
    sync_counterfactual,
)
from memo_pipeline.pipeline.registry import (
    ProviderRegistry,
    cache_ttl_of,
    limits_from_config,
    remainders_wait,
)
from memo_pipeline.providers.base import Usage
from memo_pipeline.tokens import expected_output_tokens

log = logging.getLogger(__name__)

# SQL for each grouping ``cost_totals`` accepts, over request_results r join extraction_requests q.
DIMENSIONS = {
    "day": "q.partition_day::text",
    "org": "q.org_id",
    "collection": "q.collection",
    "provider": "q.provider",
    "model": "q.model",
    "path": "case when r.job_key is not null then 'batch' "
    "when q.path = 'reused' then 'reused' else 'sync' end",
}

_warned: set[str] = set()


@lru_cache(maxsize=1)
def process_prices() -> PriceTable:
    """The price table of this process (``MEMO_PRICES_FILE`` or ``$MEMO_HOME/prices.yaml`` over
    the packaged one), loaded on first use; callers holding a ``Settings`` pass its ``prices``."""
    return Settings.from_env().prices


def price_usage(
    prices: PriceTable, provider: str, model: str, usage: Usage, path: BillingPath
) -> tuple[Decimal | None, Decimal | None]:
    """(realised, sync counterfactual) USD of one request's usage; (None, None) when the price
    table has no rate for it, which is logged once per process and provider/model."""
    try:
        price = prices.rate(provider, model)
        return request_cost(usage, price, path), sync_counterfactual(usage, price)
    except PriceNotFound as exc:
        if str(exc) not in _warned:
            _warned.add(str(exc))
            log.warning("cost not recorded: %s", exc)
        return None, None


def cost_totals(
    conn: psycopg.Connection,
    day: str | Sequence[str] | None = None,
    by: Sequence[str] = ("provider", "model"),
) -> CostSummary:
    """Realised and counterfactual USD, tokens and cache reads summed per group.

    Every recorded outcome counts, failures included (a truncated answer was paid for); reused
    answers count as requests that cost nothing.

    Args:
        day: one partition day (``YYYY-MM-DD``), a list of days, or None for the whole ledger.
        by: any of ``day``, ``org``, ``collection``, ``provider``, ``model``, ``path`` (batch,
            sync or reused), in the order the groups are keyed.

    Raises:
        ValueError: ``by`` names something else.
    """
    unknown = [name for name in by if name not in DIMENSIONS]
    if unknown:
        raise ValueError(f"cannot total costs by {unknown}; choose from {sorted(DIMENSIONS)}")
    keys = [f"{DIMENSIONS[name]} as k{i}" for i, name in enumerate(by)]
    group = f"group by {', '.join(str(i + 1) for i in range(len(by)))} order by 1" if by else ""
    rows = conn.execute(
        f"select {''.join(k + ', ' for k in keys)}count(*) as requests, "
        "count(*) filter (where r.cache_read_tokens > 0) as reading, "
        "coalesce(sum(r.realised_usd), 0) as realised, "
        "coalesce(sum(r.counterfactual_usd), 0) as counterfactual, "
        "coalesce(sum(r.input_tokens + r.cache_write_5m_tokens + r.cache_write_1h_tokens "
        "+ r.cache_read_tokens), 0) as prompt, "
        "coalesce(sum(r.cache_read_tokens), 0) as read, "
        "coalesce(sum(r.cache_write_5m_tokens + r.cache_write_1h_tokens), 0) as written, "
        "coalesce(sum(r.output_tokens), 0) as output "
        "from request_results r join extraction_requests q using (request_id) "
        f"where (%s::date[] is null or q.partition_day = any(%s::date[])) {group}",
        (_days(day), _days(day)),
    ).fetchall()
    groups = tuple(
        CostTotals(
            key=tuple(str(row[f"k{i}"]) for i in range(len(by))) if by else ("total",),
            requests=row["requests"],
            requests_with_cache_read=row["reading"],
            realised_usd=Decimal(row["realised"]),
            counterfactual_usd=Decimal(row["counterfactual"]),
            prompt_tokens=int(row["prompt"]),
            cache_read_tokens=int(row["read"]),
            cache_write_tokens=int(row["written"]),
            output_tokens=int(row["output"]),
        )
        for row in rows
    )
    total = CostTotals(key=("total",))
    for totals in groups:
        total = CostTotals(
            key=("total",),
            requests=total.requests + totals.requests,
            requests_with_cache_read=total.requests_with_cache_read
            + totals.requests_with_cache_read,
            realised_usd=total.realised_usd + totals.realised_usd,
            counterfactual_usd=total.counterfactual_usd + totals.counterfactual_usd,
            prompt_tokens=total.prompt_tokens + totals.prompt_tokens,
            cache_read_tokens=total.cache_read_tokens + totals.cache_read_tokens,
            cache_write_tokens=total.cache_write_tokens + totals.cache_write_tokens,
            output_tokens=total.output_tokens + totals.output_tokens,
        )
    return CostSummary(by=tuple(by), groups=groups if by else (), total=total)


def _days(day: str | Sequence[str] | None) -> list[str] | None:
    return [day] if isinstance(day, str) else None if day is None else list(day)


def unpriced_requests(conn: psycopg.Connection, day: str | Sequence[str] | None = None) -> int:
    """Outcomes without a cost: their provider/model is missing from the price table."""
    return conn.execute(
        "select count(*) as n from request_results r join extraction_requests q "
        "using (request_id) where r.realised_usd is null "
        "and (%s::date[] is null or q.partition_day = any(%s::date[]))",
        (_days(day), _days(day)),
    ).fetchone()["n"]


def spent_on(conn: psycopg.Connection, org: str, on: date) -> Decimal:
    """What ``org`` has spent or committed on the UTC day ``on``.

    A request in a provider job counts on the day its job was claimed: its realised cost once
    its result is in, its ``forecast_usd`` until then. A request answered without a job (sync)
    counts its realised cost on the day the answer arrived. Reused answers cost nothing.
    """
    start = datetime.combine(on, time(0), tzinfo=UTC)
    end = start + timedelta(days=1)
    row = conn.execute(
        "select (select coalesce(sum(coalesce(r.realised_usd, q.forecast_usd, 0)), 0) "
        "from provider_jobs j join extraction_requests q on q.job_key = j.job_key "
        "left join request_results r on r.request_id = q.request_id "
        "where j.created_at >= %(start)s and j.created_at < %(end)s and q.org_id = %(org)s) "
        "+ (select coalesce(sum(r.realised_usd), 0) from request_results r "
        "join extraction_requests q using (request_id) where r.job_key is null "
        "and r.received_at >= %(start)s and r.received_at < %(end)s and q.org_id = %(org)s) "
        "as spent",
        {"start": start, "end": end, "org": org},
    ).fetchone()
    return Decimal(row["spent"])


@dataclass(frozen=True)
class PlannedItem:
    """One request as the forecast sees it: where it goes and its estimated prompt tokens."""

    day: str
    org: str
    collection: str
    provider: str
    model: str
    prefix_key: str
    prefix_tokens: int
    record_tokens: int


@dataclass(frozen=True)
class GroupForecast:
    """The forecast of one day's requests for one org, provider and model."""

    day: str
    org: str
    provider: str
    model: str
    cache_ttl: str
    min_cacheable_tokens: int
    forecast: Forecast | None
    error: str | None = None

    def row(self) -> dict[str, object]:
        """A flat row for tables and JSON (USD as strings, exact)."""
        out: dict[str, object] = {
            "day": self.day,
            "org": self.org,
            "provider": self.provider,
            "model": self.model,
        }
        if self.forecast is None:
            return {**out, "error": self.error}
        f = self.forecast
        bulk_cached = f.modes["bulk_cached"]
        return {
            **out,
            "requests": f.requests,
            "prompt_tokens": f.prompt_tokens,
            "output_tokens": f.output_tokens,
            "cacheable_share": round(f.cacheable_share, 4),
            **{f"{mode}_usd": str(m.cost_usd) for mode, m in f.modes.items()},
            "bulk_cached_ratio": None
            if bulk_cached.ratio_to_sync is None
            else round(bulk_cached.ratio_to_sync, 4),
            "windows": {mode: m.window for mode, m in f.modes.items()},
            "warnings": list(f.warnings),
        }


FORECAST_COLUMNS = ["day", "org", "provider/model", "requests", "prompt tokens", "cacheable"]
FORECAST_COLUMNS += ["sync", "async", "bulk", "bulk + cache", "bulk + cache / sync", "bulk window"]


def forecast_markdown(forecasts: Sequence[GroupForecast]) -> str:
    """A markdown table, one row per forecast, then its warnings and errors as a list, each
    once with the days it applies to."""
    lines = ["| " + " | ".join(FORECAST_COLUMNS) + " |", "|" + "---|" * len(FORECAST_COLUMNS)]
    notes: dict[str, list[str]] = defaultdict(list)
    for g in forecasts:
        head = [g.day, g.org, f"{g.provider}/{g.model}"]
        if g.forecast is None:
            lines.append("| " + " | ".join(head + ["–"] * (len(FORECAST_COLUMNS) - 3)) + " |")
            notes[f"{g.org}: {g.error}"].append(g.day)
            continue
        f = g.forecast
        ratio = f.modes["bulk_cached"].ratio_to_sync
        cells = head + [
            str(f.requests),
            f"{f.prompt_tokens:,}",
            f"{f.cacheable_share:.0%}",
            *(format_usd(f.cost(mode)) for mode in ("sync", "async", "bulk", "bulk_cached")),
            "–" if ratio is None else f"{ratio:.3f}",
            f.modes["bulk_cached"].window,
        ]
        lines.append("| " + " | ".join(cells) + " |")
        for warning in f.warnings:
            notes[f"{g.org}: {warning}"].append(g.day)
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\n" + "\n".join(
            f"- warning: {_days_label(days)} {note}" for note, days in notes.items()
        )
        text += "\n"
    return text


def _days_label(days: Sequence[str]) -> str:
    """``2026-11-23``; ``2026-11-24, 2026-11-26``; ``52 days from 2024-01-02 to 2024-03-01``."""
    if len(days) <= 3:
        return ", ".join(sorted(days))
    return f"{len(days)} days from {min(days)} to {max(days)}"


def planned_request(item: PlannedItem) -> PlannedRequest:
    return (
        item.prefix_key,
        item.prefix_tokens,
        item.record_tokens,
        expected_output_tokens(item.record_tokens),
    )


def forecast_items(
    items: Iterable[PlannedItem], registry: ProviderRegistry, prices: PriceTable
) -> list[GroupForecast]:
    """Forecasts per (day, org, provider, model), each under sync, async, bulk and bulk with a
    perfectly warm cache (the first request of each prefix writes, every later one reads).

    The cache lifetime and minimum cacheable prefix come from the provider's configuration; a
    provider/model without a price gives a forecast carrying the error instead.
    """
    groups: dict[tuple[str, str, str, str], list[PlannedRequest]] = defaultdict(list)
    for item in items:
        groups[(item.day, item.org, item.provider, item.model)].append(planned_request(item))
    out = []
    for (day, org, provider, model), requests in sorted(groups.items()):
        config = registry.config(provider)
        ttl = cache_ttl_of(config)
        limits = limits_from_config(config, model)
        minimum = limits.min_cacheable_tokens
        # As the claim step routes them: a prefix's requests below the job minimum go sync,
        # unless the provider is set to let them wait for more.
        sync_below = 0 if remainders_wait(config) else limits.min_requests_per_batch
        try:
            price = prices.rate(provider, model)
            result = forecast(requests, provider, model, price, minimum, ttl, sync_below=sync_below)
            error = None
        except PriceNotFound as exc:
            result, error = None, str(exc)
        out.append(GroupForecast(day, org, provider, model, ttl, minimum, result, error))
    return out


def planned_items(conn: psycopg.Connection, day: str) -> list[PlannedItem]:
    """The day's first attempts that need a provider (reused answers excluded), from the ledger's
    token estimates: the work of the day as planned, however much of it has run since."""
    rows = conn.execute(
        "select partition_day::text as day, org_id, collection, provider, model, prefix_key, "
        "est_prefix_tokens, est_record_tokens from extraction_requests "
        "where partition_day = %s and attempt = 1 and path <> 'reused'",
        (day,),
    ).fetchall()
    return [
        PlannedItem(
            r["day"],
            r["org_id"],
            r["collection"],
            r["provider"],
            r["model"],
            r["prefix_key"],
            r["est_prefix_tokens"],
            r["est_record_tokens"],
        )
        for r in rows
    ]


def request_forecast_usd(
    prices: PriceTable,
    provider: str,
    model: str,
    prompt_tokens: int,
    record_tokens: int,
    path: BillingPath,
    cache_ttl: str | None = None,
) -> Decimal:
    """What one request may cost on ``path``: the spend guard's figure, meant as a ceiling.

    Without a cache the whole prompt bills as input. A provider that caches with lifetime
    ``cache_ttl`` may instead have the request write its static prefix (every request of a job
    does when no earlier request warmed the cache), which most models bill above plain input:
    the dearer of the two is taken. Cache reads only lower the cost, and the realised cost
    replaces the forecast once the answer is in.

    Raises:
        PriceNotFound: no price for the provider/model.
    """
    rate = prices.rate(provider, model)
    output = expected_output_tokens(record_tokens)
    plain = request_cost(Usage(input_tokens=prompt_tokens, output_tokens=output), rate, path)
    prefix = prompt_tokens - record_tokens
    if cache_ttl is None or prefix <= 0 or cache_ttl not in rate.cache_write:
        return plain
    written = cache_write_usage(cache_ttl, prefix, record_tokens, output)
    return max(plain, request_cost(written, rate, path))


@dataclass(frozen=True)
class CostReport:
    """Costs of a set of partition days, as the ``extraction_costs`` asset shows them.

    ``cache_hit_rate`` is the share of the requests that could read their prefix from the cache
    that did (``cache_reads``); None when there were none.
    """

    days: tuple[str, ...]
    summary: CostSummary
    by_day: CostSummary
    forecast_bulk_cached: dict[str, Decimal]
    cache_hit_rate: float | None
    unpriced: int
    chart: Path

    def chart_markdown(self) -> str:
        """The chart as a markdown image with a data URI (renders in the Dagster UI)."""
        encoded = base64.b64encode(self.chart.read_bytes()).decode()
        return f"![realised vs sync counterfactual](data:image/png;base64,{encoded})"


def cache_reads(
    conn: psycopg.Connection, registry: ProviderRegistry, days: Sequence[str]
) -> tuple[int, int]:
    """(requests that read their prefix from the cache, requests that could have) of ``days``.

    Could have: answered by a provider (not a reused answer), not in a cache-priming job (whose
    request is there to write the prefix), and with a prefix estimate at or above the model's
    cacheable minimum (a shorter prefix is never cached).
    """
    rows = conn.execute(
        "select q.provider, q.model, q.est_prefix_tokens as prefix, count(*) as requests, "
        "count(*) filter (where r.cache_read_tokens > 0) as reading "
        "from request_results r join extraction_requests q using (request_id) "
        "left join provider_jobs j on j.job_key = r.job_key "
        "where q.partition_day = any(%s::date[]) and q.path <> 'reused' "
        "and not coalesce(j.is_priming, false) group by 1, 2, 3",
        (list(days),),
    ).fetchall()
    reading = requests = 0
    for row in rows:
        limits = limits_from_config(registry.config(row["provider"]), row["model"])
        if row["reading"] or row["prefix"] >= limits.min_cacheable_tokens:
            reading += row["reading"]
            requests += row["requests"]
    return reading, requests


def cost_report(
    conn: psycopg.Connection,
    registry: ProviderRegistry,
    prices: PriceTable,
    days: Sequence[str],
    reports_dir: Path,
) -> CostReport:
    """Totals per provider, model and path and per day, the day's forecast beside its realised
    cost, and a PNG chart written to ``reports_dir`` (named after the days)."""
    summary = cost_totals(conn, days, by=("provider", "model", "path"))
    reading, requests = cache_reads(conn, registry, days)
    forecasts: dict[str, Decimal] = {}
    for day in days:
        groups = forecast_items(planned_items(conn, day), registry, prices)
        forecasts[day] = sum(
            (g.forecast.cost("bulk_cached") for g in groups if g.forecast is not None),
            Decimal(0),
        )
    name = days[0] if len(days) == 1 else f"{min(days)}_{max(days)}_{len(days)}days"
    chart = render_cost_chart(summary, reports_dir / f"extraction_costs_{name}.png")
    return CostReport(
        days=tuple(days),
        summary=summary,
        by_day=cost_totals(conn, days, by=("day",)),
        forecast_bulk_cached=forecasts,
        cache_hit_rate=reading / requests if requests else None,
        unpriced=unpriced_requests(conn, days),
        chart=chart,
    )
