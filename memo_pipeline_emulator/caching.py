"""A model of provider prompt caching, used by the emulator to report cache usage.

This is a model of the documented behaviour (see ``shared/reference/providers.md`` §2.7, §3.6,
§4.8), not a measurement of any real service. What it models:

* token counts are a deterministic estimate, ``len(text) // 4``; real tokenizers differ;
* a cache entry is keyed by a hash of the cumulative prompt up to the breakpoint, plus whatever
  else the provider folds into the key (model, output format, tools, ``prompt_cache_key``);
* an entry is written only when that prefix reaches the model's minimum cacheable length, and
  silently not at all below it (gotcha G6);
* entries live for their TTL (5m / 1h; OpenAI 30m) on a clock that tests can move, and every read
  refreshes the lifetime;
* caches are separate per namespace: the Anthropic batch cache does not see entries written by
  synchronous calls (gotcha G5), and within one batch every request of a cold prefix writes
  (the batch computes against the cache as it was when the batch started), so a one-request
  priming batch is what lets a later batch read;
* OpenAI's automatic caching is keyed by the leading system messages, the model, the response
  format and ``prompt_cache_key``, and reports hits in 128-token steps past the minimum.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass

TTL_SECONDS = {"5m": 300.0, "30m": 1800.0, "1h": 3600.0, "12h": 43200.0}

DEFAULT_MIN_CACHEABLE_TOKENS = {
    "default": 1024,
    "claude-haiku-4-5": 4096,
    "claude-opus-4-5": 4096,
    "claude-opus-4-6": 4096,
    "claude-opus-4-7": 2048,
    "claude-opus-5": 512,
}


def estimate_tokens(text: str) -> int:
    """A deterministic token estimate: about four characters per token."""
    return len(text) // 4


def normalise_model(model: str) -> str:
    """The bare model name of a provider model id, for per-model lookups.

    ``us.anthropic.claude-haiku-4-5-20251001-v1:0`` and ``claude-haiku-4-5`` both give
    ``claude-haiku-4-5``; the lookup is exact so that ``claude-opus-5-5`` never picks up the
    ``claude-opus-5`` entry.
    """
    name = model.rsplit("/", 1)[-1]
    if "anthropic." in name:
        name = name.split("anthropic.", 1)[1]
    name = re.sub(r"-v\d+(:\d+)?$", "", name)
    name = re.sub(r"-\d{8}$", "", name)
    return name


def min_cacheable_tokens(table: dict[str, int], model: str) -> int:
    """The minimum cacheable prefix length for ``model`` from a per-model table."""
    if model in table:
        return table[model]
    return table.get(normalise_model(model), table.get("default", 1024))


class Clock:
    """Wall-clock time plus an offset that tests move forward instead of sleeping."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._offset += seconds
            return self._offset

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0

    @property
    def offset(self) -> float:
        with self._lock:
            return self._offset


@dataclass(frozen=True)
class Breakpoint:
    """The cacheable part of one request: the prompt text up to the breakpoint.

    ``salt`` carries the other parts of the provider's cache key (model, output format, tools,
    ``prompt_cache_key``); ``ttl`` is the lifetime label ("5m", "1h", "30m").
    """

    prefix_text: str
    ttl: str
    salt: str = ""


@dataclass(frozen=True)
class CacheUse:
    """How one request met the cache: tokens read, tokens written (with lifetime), uncached."""

    read_tokens: int = 0
    write_tokens: int = 0
    write_ttl: str | None = None
    uncached_tokens: int = 0
    key: str | None = None
    ttl: str | None = None


class PromptCache:
    """Cache entries per namespace, each with an expiry time on the emulator clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._entries: dict[str, float] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        now = self._clock.now()
        with self._lock:
            return sum(1 for expiry in self._entries.values() if expiry > now)

    def plan(
        self,
        namespace: str,
        breakpoint_: Breakpoint | None,
        total_tokens: int,
        min_tokens: int,
        *,
        round_to: int = 1,
    ) -> CacheUse:
        """Decide read, write or nothing for one request, without changing the cache.

        ``round_to`` models OpenAI's cache granularity (hits in 128-token steps past the floor).
        """
        if breakpoint_ is None:
            return CacheUse(uncached_tokens=total_tokens)
        prefix_tokens = estimate_tokens(breakpoint_.prefix_text)
        if prefix_tokens < min_tokens:
            return CacheUse(uncached_tokens=total_tokens)
        if round_to > 1:
            prefix_tokens = min_tokens + (prefix_tokens - min_tokens) // round_to * round_to
        prefix_tokens = min(prefix_tokens, total_tokens)
        digest = hashlib.sha256(
            f"{namespace}\x1f{breakpoint_.salt}\x1f{breakpoint_.prefix_text}".encode()
        ).hexdigest()
        now = self._clock.now()
        with self._lock:
            warm = self._entries.get(digest, 0.0) > now
        rest = total_tokens - prefix_tokens
        if warm:
            return CacheUse(
                read_tokens=prefix_tokens, uncached_tokens=rest, key=digest, ttl=breakpoint_.ttl
            )
        return CacheUse(
            write_tokens=prefix_tokens,
            write_ttl=breakpoint_.ttl,
            uncached_tokens=rest,
            key=digest,
            ttl=breakpoint_.ttl,
        )

    def commit(self, uses: list[CacheUse]) -> None:
        """Apply the writes and lifetime refreshes of requests already planned."""
        now = self._clock.now()
        with self._lock:
            for use in uses:
                if use.key is None or use.ttl is None:
                    continue
                expiry = now + TTL_SECONDS.get(use.ttl, 300.0)
                self._entries[use.key] = max(self._entries.get(use.key, 0.0), expiry)

    def use(
        self,
        namespace: str,
        breakpoint_: Breakpoint | None,
        total_tokens: int,
        min_tokens: int,
        *,
        round_to: int = 1,
    ) -> CacheUse:
        """Plan and commit at once: a synchronous call (or a sequentially warming batch item)."""
        decision = self.plan(namespace, breakpoint_, total_tokens, min_tokens, round_to=round_to)
        self.commit([decision])
        return decision
