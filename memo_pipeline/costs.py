"""What extraction costs, what it would have cost on the sync path, and whether to spend it.

Prices are data (``config/prices.yaml``, overridable per install); this module turns a request's
normalised ``Usage`` into dollars at the rates of the path it actually took, and into the
*sync counterfactual*: the same tokens on the synchronous API with no prompt cache. The ratio of
the two, summed over many requests, is the saving the product has to prove.

Money is ``Decimal`` USD everywhere in this module, exact and unrounded: rates are per million
tokens, so one request costs a fraction of a cent, and float sums over a day of requests would
drift. Round only for display (``format_usd``). Ratios and shares are ``float``.

Plain Python: no Dagster, no database, no network, no environment reads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from memo_pipeline.config import deep_merge
from memo_pipeline.providers.base import Usage
from memo_pipeline.schema.collections import ConfigError

BillingPath = Literal["sync", "batch"]
"""The API a request went through: ``sync`` (also the async mode) or ``batch`` (bulk)."""

PACKAGED_PRICES = Path(__file__).resolve().parent / "config" / "prices.yaml"
MTOK = Decimal(1_000_000)

# Usage has two cache-write slots; each provider's lifetimes map onto them by length.
SHORT_LIFETIMES = ("5m", "30m")
LONG_LIFETIMES = ("1h", "12h")

COMPLETION_WINDOWS = {
    "sync": "seconds",
    "async": "minutes",
    "bulk": "1-24 h",
    "bulk_cached": "1-24 h",
}


class PriceNotFound(LookupError):
    """The price table has no rate for a provider/model (or for one token class of it)."""


class Rates(BaseModel):
    """One set of USD-per-MTok rates: the base rates of a model, or its long-context band."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cache_write: dict[str, Decimal] = Field(default_factory=dict)
    cache_read: Decimal | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _lifetimes_fit_usage_slots(self) -> Rates:
        short = [k for k in self.cache_write if k in SHORT_LIFETIMES]
        long = [k for k in self.cache_write if k in LONG_LIFETIMES]
        unknown = set(self.cache_write) - set(short) - set(long)
        if unknown:
            known = ", ".join(SHORT_LIFETIMES + LONG_LIFETIMES)
            raise ValueError(f"cache_write lifetime {sorted(unknown)} is not one of {known}")
        if len(short) > 1 or len(long) > 1:
            raise ValueError(
                f"cache_write lists {sorted(self.cache_write)}: at most one short (5m/30m) and "
                "one long (1h/12h) lifetime, because Usage reports writes in two slots"
            )
        if any(rate < 0 for rate in self.cache_write.values()):
            raise ValueError("cache_write rates must not be negative")
        return self

    def write_rate(self, slot: Literal["short", "long"]) -> tuple[str, Decimal] | None:
        """The (lifetime, rate) billed for one Usage write slot, or None if none is listed."""
        lifetimes = SHORT_LIFETIMES if slot == "short" else LONG_LIFETIMES
        for lifetime, rate in self.cache_write.items():
            if lifetime in lifetimes:
                return lifetime, rate
        return None


class LongContextBand(BaseModel):
    """Rates that replace the base rates for a whole request above a prompt size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    above_prompt_tokens: int = Field(gt=0)
    rates: Rates | None = None
    input_multiplier: Decimal | None = Field(default=None, gt=0)
    output_multiplier: Decimal | None = Field(default=None, gt=0)
    source: str = ""

    @model_validator(mode="after")
    def _one_way_to_price(self) -> LongContextBand:
        has_multiplier = self.input_multiplier is not None or self.output_multiplier is not None
        if (self.rates is None) == (not has_multiplier):
            raise ValueError("give either 'rates' or 'input_multiplier'/'output_multiplier'")
        return self

    def apply(self, base: Rates) -> Rates:
        """The band's rates; multipliers scale the base (input_multiplier also scales caching)."""
        if self.rates is not None:
            return self.rates
        in_x = self.input_multiplier or Decimal(1)
        out_x = self.output_multiplier or Decimal(1)
        return Rates(
            input=base.input * in_x,
            output=base.output * out_x,
            cache_write={k: v * in_x for k, v in base.cache_write.items()},
            cache_read=None if base.cache_read is None else base.cache_read * in_x,
        )


class ModelPrice(Rates):
    """The price entry of one provider/model, as in ``prices.yaml``."""

    provider: str
    model: str
    batch_discount: Decimal = Field(ge=0, le=1)
    batch_discount_applies_to_cache_read: bool
    batch_discount_applies_to_cache_write: bool
    long_context: LongContextBand | None = None
    as_of: date
    source: str = Field(min_length=1)
    notes: list[str] = Field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"

    def rates_for(self, prompt_tokens: int) -> Rates:
        """Rates that bill a request of ``prompt_tokens`` (input + cache writes + reads)."""
        band = self.long_context
        if band is not None and prompt_tokens > band.above_prompt_tokens:
            return band.apply(self)
        return self

    def require_lifetime(self, cache_ttl: str) -> None:
        """Fail unless this model lists a cache-write rate for ``cache_ttl``."""
        if cache_ttl not in self.cache_write:
            listed = ", ".join(self.cache_write) or "none"
            raise PriceNotFound(
                f"{self.label} has no cache write price for lifetime {cache_ttl!r} "
                f"(it lists: {listed}); use one of those or add it to prices.yaml"
            )


class PriceTable(BaseModel):
    """Every known price, keyed by provider then model."""

    model_config = ConfigDict(frozen=True)

    providers: dict[str, dict[str, ModelPrice]]

    def rate(self, provider: str, model: str) -> ModelPrice:
        """The price of ``provider``/``model``.

        Raises:
            PriceNotFound: naming the provider and model and where to add them.
        """
        models = self.providers.get(provider)
        if models is None:
            known = ", ".join(sorted(self.providers)) or "none"
            raise PriceNotFound(
                f"no prices for provider {provider!r} (model {model!r}); known providers: "
                f"{known}. Add it under 'providers:' in your prices override file"
            )
        if model not in models:
            known = ", ".join(sorted(models)) or "none"
            raise PriceNotFound(
                f"no price for provider {provider!r} model {model!r}; known {provider} models: "
                f"{known}. Add it under 'providers: {provider}:' in your prices override file"
            )
        return models[model]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], origin: str) -> PriceTable:
        """Validate a parsed price file; errors name ``origin``, the provider and the model."""
        if not isinstance(data, Mapping) or set(data) != {"providers"}:
            raise ConfigError(f"{origin}: a price file holds one top-level key, 'providers'")
        if not isinstance(data["providers"], Mapping):
            raise ConfigError(f"{origin}: 'providers' must map provider names to their models")
        table: dict[str, dict[str, ModelPrice]] = {}
        for provider, models in data["providers"].items():
            if not isinstance(models, Mapping):
                raise ConfigError(f"{origin}: providers.{provider} must map model names to prices")
            table[provider] = {}
            for model, entry in models.items():
                where = f"{origin}: providers.{provider}.{model}"
                if not isinstance(entry, Mapping):
                    raise ConfigError(f"{where}: expected a mapping of rates")
                try:
                    table[provider][model] = ModelPrice.model_validate(
                        {**entry, "provider": provider, "model": model}
                    )
                except ValidationError as exc:
                    problems = "; ".join(
                        f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}"
                        for err in exc.errors()
                    )
                    raise ConfigError(f"{where}: {problems}") from exc
        return cls(providers=table)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: prices file does not exist") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read prices: {exc}") from exc
    if data is None:
        return {"providers": {}}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'providers' key")
    return data


def load_prices(overrides: Path | None = None) -> PriceTable:
    """The packaged price table with a user file merged over it.

    The caller resolves the override path (``MEMO_PRICES_FILE``, else
    ``$MEMO_HOME/prices.yaml`` when it exists); this function reads no environment. The user
    file has the packaged shape and is merged key by key, so it names only what changes. A model
    copied by a YAML anchor in the packaged file (bedrock and local Haiku 5.5) is a copy: an
    override of ``anthropic/claude-haiku-5-5`` does not reach it.

    Args:
        overrides: a user prices file, or None for the packaged prices alone.

    Raises:
        ConfigError: the override file is missing or unreadable, or a merged entry is invalid
            (the message names the file, provider, model and field).
    """
    data = _read_yaml(PACKAGED_PRICES)
    origin = str(PACKAGED_PRICES)
    if overrides is not None:
        data = deep_merge(data, _read_yaml(overrides))
        origin = f"{PACKAGED_PRICES} + {overrides}"
    return PriceTable.from_mapping(data, origin)


def _rate_or_fail(rate: Decimal | None, price: ModelPrice, what: str) -> Decimal:
    if rate is None:
        raise PriceNotFound(f"{price.label} has no {what} price but the usage reports {what}")
    return rate


def _write_rate_or_fail(rates: Rates, slot: Literal["short", "long"], price: ModelPrice) -> Decimal:
    found = rates.write_rate(slot)
    if found is None:
        lifetimes = "/".join(SHORT_LIFETIMES if slot == "short" else LONG_LIFETIMES)
        raise PriceNotFound(
            f"{price.label} has no {lifetimes} cache write price but the usage reports such writes"
        )
    return found[1]


def request_cost(usage: Usage, price: ModelPrice, path: BillingPath) -> Decimal:
    """Realised USD of one request at the rates of the path it took.

    ``usage.input_tokens`` is uncached input only (see ``Usage``); cache writes bill at the rate
    of their lifetime slot and reads at the cache-read rate. When the request's prompt
    (input + writes + reads) is above the model's long-context threshold, every rate is the
    band's. On the batch path the batch discount takes a fraction off input and output, and off
    cache reads/writes where the price entry says it applies (Anthropic: yes, providers.md §2.7).

    Raises:
        ValueError: ``path`` is not ``sync`` or ``batch``.
        PriceNotFound: the usage has a token class the entry has no rate for.
    """
    if path not in ("sync", "batch"):
        raise ValueError(f"path must be 'sync' or 'batch', not {path!r}")
    rates = price.rates_for(usage.prompt_tokens)
    full = Decimal(1)
    discounted = full - price.batch_discount if path == "batch" else full
    read_factor = discounted if price.batch_discount_applies_to_cache_read else full
    write_factor = discounted if price.batch_discount_applies_to_cache_write else full

    total = (usage.input_tokens * rates.input + usage.output_tokens * rates.output) * discounted
    if usage.cache_write_5m_tokens:
        rate = _write_rate_or_fail(rates, "short", price)
        total += usage.cache_write_5m_tokens * rate * write_factor
    if usage.cache_write_1h_tokens:
        rate = _write_rate_or_fail(rates, "long", price)
        total += usage.cache_write_1h_tokens * rate * write_factor
    if usage.cache_read_tokens:
        rate = _rate_or_fail(rates.cache_read, price, "cache reads")
        total += usage.cache_read_tokens * rate * read_factor
    return total / MTOK


def sync_counterfactual(usage: Usage, price: ModelPrice) -> Decimal:
    """USD of the same tokens on the sync path with no cache.

    Every prompt token (input + cache writes + cache reads) at the base input rate and output
    at the output rate, in the long-context band if the prompt is above it (the same prompt
    sent synchronously would be too).
    """
    rates = price.rates_for(usage.prompt_tokens)
    return (usage.prompt_tokens * rates.input + usage.output_tokens * rates.output) / MTOK


@dataclass(frozen=True)
class CostLine:
    """The cost of one request: one row of the cost ledger."""

    request_id: str
    provider: str
    model: str
    path: BillingPath
    realised_usd: Decimal
    counterfactual_usd: Decimal
    prompt_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int = 0
    output_tokens: int = 0
    org: str = ""
    day: str = ""

    @classmethod
    def from_usage(
        cls,
        request_id: str,
        usage: Usage,
        price: ModelPrice,
        path: BillingPath,
        *,
        org: str = "",
        day: str = "",
    ) -> CostLine:
        """Price one request's usage; provider and model come from ``price``."""
        return cls(
            request_id=request_id,
            provider=price.provider,
            model=price.model,
            path=path,
            realised_usd=request_cost(usage, price, path),
            counterfactual_usd=sync_counterfactual(usage, price),
            prompt_tokens=usage.prompt_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            output_tokens=usage.output_tokens,
            org=org,
            day=day,
        )

    @property
    def saving_usd(self) -> Decimal:
        return self.counterfactual_usd - self.realised_usd


@dataclass(frozen=True)
class CostTotals:
    """Totals over a group of cost lines.

    Two cache hit rates, because they answer different questions:
    ``request_hit_rate`` is the share of requests that read anything from the cache
    (``cache_read_tokens > 0``): did the cache work for this request at all?
    ``token_hit_rate`` is the share of all prompt tokens that were served from the cache: how
    much of the input was billed at the read rate.
    """

    key: tuple[str, ...]
    requests: int = 0
    requests_with_cache_read: int = 0
    realised_usd: Decimal = Decimal(0)
    counterfactual_usd: Decimal = Decimal(0)
    prompt_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0

    @property
    def label(self) -> str:
        return "/".join(self.key)

    @property
    def saving_usd(self) -> Decimal:
        return self.counterfactual_usd - self.realised_usd

    @property
    def ratio(self) -> float | None:
        """Realised / counterfactual (0.33: a third of the sync price); None without one."""
        if not self.counterfactual_usd:
            return None
        return float(self.realised_usd / self.counterfactual_usd)

    @property
    def request_hit_rate(self) -> float | None:
        return self.requests_with_cache_read / self.requests if self.requests else None

    @property
    def token_hit_rate(self) -> float | None:
        return self.cache_read_tokens / self.prompt_tokens if self.prompt_tokens else None

    def add(self, line: CostLine) -> CostTotals:
        return CostTotals(
            key=self.key,
            requests=self.requests + 1,
            requests_with_cache_read=self.requests_with_cache_read + (line.cache_read_tokens > 0),
            realised_usd=self.realised_usd + line.realised_usd,
            counterfactual_usd=self.counterfactual_usd + line.counterfactual_usd,
            prompt_tokens=self.prompt_tokens + line.prompt_tokens,
            cache_read_tokens=self.cache_read_tokens + line.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + line.cache_write_tokens,
            output_tokens=self.output_tokens + line.output_tokens,
        )


@dataclass(frozen=True)
class CostSummary:
    """Totals per group (sorted by key) and over everything."""

    by: tuple[str, ...]
    groups: tuple[CostTotals, ...]
    total: CostTotals


_LINE_FIELDS = {f.name for f in fields(CostLine)}


def summarise(lines: Iterable[CostLine], by: Sequence[str] = ("provider", "model")) -> CostSummary:
    """Sum cost lines per group of the ``CostLine`` fields named in ``by``.

    Raises:
        ValueError: ``by`` names something that is not a ``CostLine`` field.
    """
    unknown = [name for name in by if name not in _LINE_FIELDS]
    if unknown:
        raise ValueError(f"cannot group cost lines by {unknown}; fields: {sorted(_LINE_FIELDS)}")
    groups: dict[tuple[str, ...], CostTotals] = {}
    total = CostTotals(key=("total",))
    for line in lines:
        key = tuple(str(getattr(line, name)) for name in by)
        groups[key] = groups.get(key, CostTotals(key=key)).add(line)
        total = total.add(line)
    return CostSummary(by=tuple(by), groups=tuple(groups[k] for k in sorted(groups)), total=total)


PlannedRequest = tuple[str, int, int, int]
"""One planned request: ``(prefix_key, prefix_tokens, record_tokens, output_tokens)``."""


def cache_write_usage(ttl: str, prefix: int, record: int, output: int) -> Usage:
    """A request that writes its ``prefix`` tokens to the cache with lifetime ``ttl``."""
    if ttl in SHORT_LIFETIMES:
        return Usage(input_tokens=record, cache_write_5m_tokens=prefix, output_tokens=output)
    return Usage(input_tokens=record, cache_write_1h_tokens=prefix, output_tokens=output)


def _cached_cost(
    requests: Iterable[PlannedRequest],
    price: ModelPrice,
    cache_ttl: str,
    min_cacheable_tokens: int,
    cache_hit_rate: float,
) -> Decimal:
    """Batch cost when the first request of each prefix writes it and later ones read it.

    A later request hits with probability ``cache_hit_rate``; a miss writes the prefix again
    (a request with a breakpoint writes when it misses). Prefixes shorter than
    ``min_cacheable_tokens`` are never cached: the provider silently bills them as input.
    """
    price.require_lifetime(cache_ttl)
    hit = Decimal(str(cache_hit_rate))
    written: set[str] = set()
    total = Decimal(0)
    for key, prefix, record, output in requests:
        if prefix < min_cacheable_tokens:
            plain = Usage(input_tokens=prefix + record, output_tokens=output)
            total += request_cost(plain, price, "batch")
            continue
        write = request_cost(cache_write_usage(cache_ttl, prefix, record, output), price, "batch")
        if key not in written:
            written.add(key)
            total += write
            continue
        read_usage = Usage(input_tokens=record, cache_read_tokens=prefix, output_tokens=output)
        total += hit * request_cost(read_usage, price, "batch") + (1 - hit) * write
    return total


def _uncached_cost(
    requests: Iterable[PlannedRequest], price: ModelPrice, path: BillingPath
) -> Decimal:
    return sum(
        (
            request_cost(Usage(input_tokens=prefix + record, output_tokens=output), price, path)
            for _, prefix, record, output in requests
        ),
        Decimal(0),
    )


def floor_ratio(
    workload: Sequence[PlannedRequest],
    price: ModelPrice,
    cache_ttl: str,
    min_cacheable_tokens: int = 0,
) -> float:
    """The best ratio a workload can reach: perfect caching at batch rates over sync, no cache.

    The first request of each prefix writes it to the cache with lifetime ``cache_ttl``; every
    other request reads the whole prefix. Compare a run's realised ratio with this floor to see
    what cache misses cost.

    Args:
        workload: ``(prefix_key, prefix_tokens, record_tokens, output_tokens)`` per request.
        price: the model's price entry.
        cache_ttl: the write lifetime used, one the entry lists (``1h``, ``30m``, ...).
        min_cacheable_tokens: prefixes below this are billed as plain input (0: all cached).

    Raises:
        ValueError: the workload is empty.
    """
    if not workload:
        raise ValueError("floor_ratio needs at least one request")
    floor = _cached_cost(workload, price, cache_ttl, min_cacheable_tokens, 1.0)
    counterfactual = _uncached_cost(workload, price, "sync")
    return float(floor / counterfactual)


@dataclass(frozen=True)
class ModeForecast:
    """Estimated cost and completion window of one execution mode."""

    mode: str
    cost_usd: Decimal
    window: str
    ratio_to_sync: float | None


@dataclass(frozen=True)
class Forecast:
    """Estimated cost of a set of planned requests under each execution mode.

    ``cacheable_share`` is the share of input (prompt) tokens that sit in prefixes long enough
    to be cached, counted over every request; the first request of each prefix still writes,
    so the share read from the cache is a little lower.
    """

    provider: str
    model: str
    requests: int
    prompt_tokens: int
    output_tokens: int
    cacheable_share: float
    modes: dict[str, ModeForecast]
    warnings: tuple[str, ...]

    def cost(self, mode: str) -> Decimal:
        return self.modes[mode].cost_usd


def forecast(
    requests: Sequence[PlannedRequest],
    provider: str,
    model: str,
    price: ModelPrice,
    min_cacheable_tokens: int,
    cache_ttl: str,
    cache_hit_rate: float = 1.0,
    sync_below: int = 0,
) -> Forecast:
    """Estimate what ``requests`` cost under sync, async, bulk and bulk with caching.

    ``sync`` and ``async`` both call the synchronous API with no cache (the counterfactual);
    ``bulk`` is batch rates with no cache; ``bulk_cached`` is batch rates with one cache write
    per prefix and reads after it, each read landing with probability ``cache_hit_rate``
    (1.0 is the floor; Anthropic quotes 30-98% in batches, providers.md §2.7). A prefix with
    fewer than ``sync_below`` requests is below the provider's job minimum and goes through the
    sync API (``remainder_policy: sync``): in both bulk modes it is priced at sync rates with no
    cache, and a warning says so.

    Args:
        requests: ``(prefix_key, prefix_tokens, record_tokens, est_output_tokens)`` each.
        provider: provider name, for messages.
        model: model name, for messages.
        price: the model's price entry.
        min_cacheable_tokens: the model's minimum cacheable prefix (providers.yaml).
        cache_ttl: the cache-write lifetime the provider is configured with.
        cache_hit_rate: expected share of later requests that read their prefix.

    Raises:
        ValueError: ``price`` is another model's, or ``cache_hit_rate`` is outside [0, 1].
        PriceNotFound: ``price`` has no write rate for ``cache_ttl``.
    """
    if (price.provider, price.model) != (provider, model):
        raise ValueError(f"forecast for {provider}/{model} was given the price of {price.label}")
    if not 0.0 <= cache_hit_rate <= 1.0:
        raise ValueError(f"cache_hit_rate must be within [0, 1], not {cache_hit_rate}")

    per_prefix = Counter(key for key, *_ in requests)
    small = {key for key, count in per_prefix.items() if count < sync_below}
    batched = [r for r in requests if r[0] not in small]
    remainder = _uncached_cost([r for r in requests if r[0] in small], price, "sync")
    sync = _uncached_cost(requests, price, "sync")
    costs = {
        "sync": sync,
        "async": sync,
        "bulk": _uncached_cost(batched, price, "batch") + remainder,
        "bulk_cached": _cached_cost(batched, price, cache_ttl, min_cacheable_tokens, cache_hit_rate)
        + remainder,
    }
    modes = {
        mode: ModeForecast(
            mode=mode,
            cost_usd=cost,
            window=COMPLETION_WINDOWS[mode if batched or mode in ("sync", "async") else "sync"],
            ratio_to_sync=float(cost / sync) if sync else None,
        )
        for mode, cost in costs.items()
    }

    prompt_tokens = sum(prefix + record for _, prefix, record, _ in requests)
    cacheable = sum(prefix for _, prefix, _, _ in requests if prefix >= min_cacheable_tokens)
    short_prefixes = {
        key: prefix for key, prefix, _, _ in requests if prefix < min_cacheable_tokens
    }
    warnings = tuple(
        f"prefix {key} is {tokens} tokens, below the {min_cacheable_tokens}-token minimum "
        f"for {model}: it will not be cached"
        for key, tokens in sorted(short_prefixes.items())
    ) + tuple(
        f"prefix {key} has {per_prefix[key]} request(s), below {provider}'s {sync_below}-request "
        "job minimum: they go through the sync API at sync rates, in both bulk modes too"
        for key in sorted(small)
    )
    return Forecast(
        provider=provider,
        model=model,
        requests=len(requests),
        prompt_tokens=prompt_tokens,
        output_tokens=sum(output for *_, output in requests),
        cacheable_share=cacheable / prompt_tokens if prompt_tokens else 0.0,
        modes=modes,
        warnings=warnings,
    )


def format_usd(amount: Decimal | float) -> str:
    """``$1,234.57`` from a dollar up; below it four significant digits (``$0.007285``)."""
    value = Decimal(str(amount))
    sign, value = ("-" if value < 0 else ""), abs(value)
    if not value or value >= 1:
        return f"{sign}${value:,.2f}"
    places = max(2, 3 - value.adjusted())
    digits = f"{value:.{places}f}".rstrip("0")
    if len(digits.partition(".")[2]) < 2:
        digits = f"{value:.2f}"
    return f"{sign}${digits}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    message: str


class SpendGuard:
    """Holds work that would take an org over its daily budget."""

    @staticmethod
    def check(
        org: str,
        day: date | str,
        forecast_usd: Decimal | float,
        spent_today_usd: Decimal | float,
        budget_usd: Decimal | float | None,
    ) -> Decision:
        """Allow the spend if today's spend plus the forecast stays within the budget.

        Args:
            org: org id, for the message.
            day: the budget day (the org's partition day).
            forecast_usd: forecast cost of the work about to be submitted.
            spent_today_usd: realised plus committed spend of the org for ``day``.
            budget_usd: the org's ``daily_budget_usd``; None means no budget.

        Raises:
            ValueError: an amount is negative.
        """
        forecast_d = Decimal(str(forecast_usd))
        spent = Decimal(str(spent_today_usd))
        if forecast_d < 0 or spent < 0:
            raise ValueError(f"amounts must not be negative: forecast {forecast_d}, spent {spent}")
        after = spent + forecast_d
        if budget_usd is None:
            return Decision(
                True,
                f"allowed: forecast {format_usd(forecast_d)} takes org {org} to "
                f"{format_usd(after)} for {day}; no daily budget is set",
            )
        budget = Decimal(str(budget_usd))
        if forecast_d > budget:
            # No day can fit it: waiting would hold it for ever.
            return Decision(
                False,
                f"held: forecast {format_usd(forecast_d)} alone is more than org {org}'s "
                f"{format_usd(budget)} daily budget for {day}, so no day can take it; raise "
                "daily_budget_usd",
            )
        if after > budget:
            return Decision(
                False,
                f"held: forecast {format_usd(forecast_d)} would take org {org} to "
                f"{format_usd(after)} of its {format_usd(budget)} daily budget for {day}; "
                "raise daily_budget_usd or wait for the next day",
            )
        return Decision(
            True,
            f"allowed: forecast {format_usd(forecast_d)} takes org {org} to "
            f"{format_usd(after)} of its {format_usd(budget)} daily budget for {day}",
        )


def _fmt_ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _fmt_share(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def cost_markdown(summary: CostSummary) -> str:
    """A markdown table: one row per group, then the total."""
    head = [*summary.by, "requests", "realised", "sync counterfactual", "ratio", "saving"]
    head += ["requests reading cache", "prompt tokens from cache"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    total_key = ["**total**"] + [""] * (len(summary.by) - 1)
    for totals, key in [*((g, list(g.key)) for g in summary.groups), (summary.total, total_key)]:
        cells = key + [
            str(totals.requests),
            format_usd(totals.realised_usd),
            format_usd(totals.counterfactual_usd),
            _fmt_ratio(totals.ratio),
            format_usd(totals.saving_usd),
            _fmt_share(totals.request_hit_rate),
            _fmt_share(totals.token_hit_rate),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def render_cost_chart(summary: CostSummary, path: Path) -> Path:
    """Write a PNG bar chart of realised vs sync-counterfactual USD per group; return its path.

    Uses the Agg canvas directly (no pyplot), so it changes no global matplotlib state and
    needs no display.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = summary.groups or (summary.total,)
    labels = [g.label for g in groups]
    realised = [float(g.realised_usd) for g in groups]
    counterfactual = [float(g.counterfactual_usd) for g in groups]
    positions = range(len(groups))
    width = 0.4

    figure = Figure(figsize=(max(6.0, 1.6 * len(groups) + 2), 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.bar([p - width / 2 for p in positions], counterfactual, width, label="sync, no cache")
    bars = axes.bar([p + width / 2 for p in positions], realised, width, label="realised")
    for bar, totals in zip(bars, groups, strict=True):
        if totals.ratio is not None:
            axes.annotate(
                f"{totals.ratio:.0%}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    axes.set_xticks(list(positions), labels, rotation=20, ha="right", fontsize=8)
    axes.set_ylabel("USD")
    axes.set_title("Extraction cost: realised vs sync counterfactual")
    axes.legend()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=100)
    return path
