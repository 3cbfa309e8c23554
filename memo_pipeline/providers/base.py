"""The provider interface: requests in, per-request outcomes out.

Providers know nothing of Stage 2 or the stores. A provider turns a ``ProviderRequest`` (a
rendered prompt plus a request id) into its own wire format, submits batches, reports job status,
streams results keyed by request id, cancels, and makes single synchronous calls. Every result is
classified here into succeeded, retryable or permanent, with usage normalised into ``Usage``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from memo_pipeline.prompts.render import RenderedPrompt

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"


class JobState(StrEnum):
    """Provider job states, folded into what the pipeline acts on."""

    IN_PROGRESS = "in_progress"
    ENDED = "ended"
    FAILED = "failed"


@dataclass(frozen=True)
class ProviderLimits:
    """Batch limits for one provider, loaded from configuration."""

    max_requests_per_batch: int
    max_bytes_per_batch: int
    min_requests_per_batch: int = 1
    min_cacheable_tokens: int = 1024
    request_id_pattern: str = REQUEST_ID_PATTERN.pattern


@dataclass(frozen=True)
class ProviderRequest:
    request_id: str
    prompt: RenderedPrompt
    model: str
    max_tokens: int = 4096
    repair_errors: tuple[str, ...] = ()
    previous_answer: str | None = None

    def __post_init__(self) -> None:
        if not REQUEST_ID_PATTERN.match(self.request_id):
            raise ValueError(
                f"request id {self.request_id!r} does not match {REQUEST_ID_PATTERN.pattern}"
            )


@dataclass(frozen=True)
class Usage:
    """Token usage of one request, normalised across providers.

    ``input_tokens`` counts uncached input only; cache writes are split by lifetime.
    """

    input_tokens: int = 0
    cache_write_5m_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0
    service_tier: str = "standard"

    @property
    def cache_write_tokens(self) -> int:
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_write_tokens + self.cache_read_tokens

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_write_5m_tokens": self.cache_write_5m_tokens,
            "cache_write_1h_tokens": self.cache_write_1h_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "output_tokens": self.output_tokens,
            "service_tier": self.service_tier,
        }


@dataclass(frozen=True)
class RequestOutcome:
    """The final word on one request from one job (or one sync call)."""

    request_id: str
    outcome: Outcome
    answer_text: str | None = None
    error: str | None = None
    usage: Usage = field(default_factory=Usage)
    stop_reason: str | None = None


@dataclass(frozen=True)
class JobHandle:
    """What an operator needs to find a submitted job."""

    provider: str
    job_id: str
    request_count: int
    bytes: int
    model: str
    submitted_at: datetime
    console_url: str | None = None


@dataclass(frozen=True)
class JobStatus:
    state: JobState
    provider_status: str
    counts: dict[str, int] = field(default_factory=dict)
    message: str | None = None


class Provider(ABC):
    """One LLM provider behind the pipeline."""

    name: str
    limits: ProviderLimits

    @abstractmethod
    def submit_batch(self, job_key: str, requests: Sequence[ProviderRequest]) -> JobHandle:
        """Submit one batch. ``job_key`` is deterministic for the batch's content."""

    def find_job(
        self,
        job_key: str,
        requests: Sequence[ProviderRequest],
        *,
        exclude_job_ids: Collection[str] = (),
    ) -> JobHandle | None:
        """Find a job already submitted for ``job_key`` (after a crash); None if there is none.

        ``exclude_job_ids`` are jobs the ledger has already recorded, which can never be the one
        sought; providers that cannot tag a job with its key use it to tell jobs apart.
        """
        return None

    @abstractmethod
    def poll(self, job_id: str) -> JobStatus:
        """Current state of a job."""

    @abstractmethod
    def results(self, job_id: str) -> Iterator[RequestOutcome]:
        """Stream the outcomes of an ended job, keyed by request id, in any order."""

    @abstractmethod
    def cancel(self, job_id: str) -> None:
        """Ask the provider to stop a job."""

    @abstractmethod
    def call_sync(self, request: ProviderRequest) -> RequestOutcome:
        """One synchronous call, for the sync and async paths and for small remainders."""
