"""Fault injection rules for the emulator.

A rule names a kind of failure, the provider it applies to, where it applies (batch items, sync
calls, batch creation, result downloads) and which request ids it hits: ids matching a regular
expression, a deterministic fraction of ids chosen by hash, or both. ``count`` limits how many
times a rule fires (useful for "fail twice, then succeed" against SDK retries).

Kinds:

* ``expired``: the item is not processed before the window closes (Anthropic ``expired``;
  OpenAI batch ``expired`` with ``batch_expired`` lines in the error file; Bedrock
  ``PartiallyCompleted`` with the record missing from the output).
* ``error``: the item (or the sync call, or the create call with ``scope="create"``) fails with
  ``error_type`` (Anthropic-style name: ``overloaded_error``, ``api_error``, ``rate_limit_error``,
  ``invalid_request_error``, ...) or an explicit HTTP ``status``; 429s carry ``Retry-After``.
* ``max_tokens``: the answer is cut off mid-JSON with the provider's truncation stop reason.
* ``invalid_json``: the answer is not JSON.
* ``refusal``: the model refuses.
* ``output_4xx``: OpenAI only: a 4xx line written into the *output* file (gotcha G10).
* ``stuck``: a batch holding a matching id stays in progress for ``seconds`` longer.
* ``crlf_split``: Anthropic only: the results stream of a batch holding a matching id uses
  ``\\r\\n`` line ends placed so the SDK's 64-byte chunks split them (gotcha G3).

Item faults match request ids (``custom_id``, ``recordId``); sync calls match the id the
adapters send (``x-memo-request-id`` header, or ``requestMetadata.memo_request_id`` on Bedrock
Converse). Bedrock job-level faults (``scope="create"``, ``stuck``) match the job name, since the
records are only read from S3 after the create call.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = {
    "expired",
    "error",
    "max_tokens",
    "invalid_json",
    "refusal",
    "output_4xx",
    "stuck",
    "crlf_split",
}
SCOPES = {"any", "batch", "sync", "create", "results"}
PROVIDERS = {"*", "anthropic", "openai", "bedrock"}

# Anthropic error type -> HTTP status; the other providers map from the status.
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
STATUS_ERROR = {status: name for name, status in ERROR_STATUS.items()}


def hash_fraction(request_id: str) -> float:
    """A stable number in [0, 1) for an id, so fractions pick the same ids on every run."""
    digest = hashlib.sha256(request_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class FaultRule:
    """One injected failure; see the module docstring for the kinds."""

    kind: str
    provider: str = "*"
    scope: str = "any"
    match: str | None = None
    fraction: float | None = None
    count: int | None = None
    error_type: str | None = None
    status: int | None = None
    retry_after: float | None = None
    seconds: float | None = None
    message: str | None = None
    id: int = 0
    fired: int = field(default=0)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(KINDS)}")
        if self.scope not in SCOPES:
            raise ValueError(
                f"unknown fault scope {self.scope!r}; expected one of {sorted(SCOPES)}"
            )
        if self.provider not in PROVIDERS:
            raise ValueError(
                f"unknown provider {self.provider!r}; expected one of {sorted(PROVIDERS)}"
            )
        if self.match is not None:
            re.compile(self.match)
        if self.kind == "error" and self.error_type is None:
            self.error_type = STATUS_ERROR.get(self.status or 500, "api_error")
        if self.kind == "error" and self.status is None:
            self.status = ERROR_STATUS.get(self.error_type or "api_error", 500)

    def targets(self, request_id: str | None) -> bool:
        if request_id is None:
            return self.match is None and self.fraction is None
        if self.match is not None and not re.search(self.match, request_id):
            return False
        return self.fraction is None or hash_fraction(request_id) < self.fraction

    def in_scope(self, provider: str, scope: str) -> bool:
        if self.provider not in ("*", provider):
            return False
        if self.scope == "any":
            return scope in ("batch", "sync")
        return self.scope == scope

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultSet:
    """The active rules; thread-safe, first matching rule wins."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._next_id = 1
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            rule.id = self._next_id
            self._next_id += 1
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def find(
        self,
        provider: str,
        scope: str,
        request_id: str | None,
        kinds: Iterable[str] | None = None,
    ) -> FaultRule | None:
        """The first live rule hitting ``request_id``; counts it as fired."""
        wanted = set(kinds) if kinds is not None else None
        with self._lock:
            for rule in self._rules:
                if wanted is not None and rule.kind not in wanted:
                    continue
                if not rule.in_scope(provider, scope) or not rule.targets(request_id):
                    continue
                if rule.count is not None and rule.fired >= rule.count:
                    continue
                rule.fired += 1
                return rule
        return None

    def find_any(
        self, provider: str, scope: str, request_ids: Iterable[str], kinds: Iterable[str]
    ) -> FaultRule | None:
        """The first live rule hitting any of ``request_ids`` (job-level faults)."""
        ids = list(request_ids)
        wanted = set(kinds)
        with self._lock:
            for rule in self._rules:
                if rule.kind not in wanted or not rule.in_scope(provider, scope):
                    continue
                if rule.count is not None and rule.fired >= rule.count:
                    continue
                if (rule.match is None and rule.fraction is None) or any(
                    rule.targets(i) for i in ids
                ):
                    rule.fired += 1
                    return rule
        return None
