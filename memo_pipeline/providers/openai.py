"""OpenAI adapter: the Batch API over Chat Completions for bulk, Chat Completions for sync.

Each request is a chat completion with the static prefix as the system message (OpenAI caches
identical prefixes automatically; ``prompt_cache_key`` routes a collection's requests to the same
cache), the record as the user message, and the answer schema as a strict ``json_schema``
response format. The job key is stored in the batch's metadata, so ``find_job`` is exact.

Results come from both files: the output file (where a line counts only with
``status_code == 200``: G10) and the error file (failed requests, ``batch_expired`` lines of an
expired batch: G9). A batch whose every request failed ends ``completed`` with no output file
(G8); a request present in neither file is reported retryable.

Synchronous calls carry the request id in an ``x-memo-request-id`` header, for correlation in
logs (and for the emulator's fault rules); the API ignores headers it does not know.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai
import orjson
from openai.types import Batch

from memo_pipeline.providers.base import (
    JobHandle,
    JobState,
    JobStatus,
    Outcome,
    Provider,
    ProviderLimits,
    ProviderRequest,
    RequestOutcome,
    Usage,
)
from memo_pipeline.providers.classify import (
    ProviderCallError,
    answer_outcome,
    answer_schema,
    check_batch,
    console_url,
    conversation,
    failed_outcome,
    packaged_provider_settings,
    retry_after_note,
    retryable_error,
    retryable_status,
    setting,
    single_model,
    split_lines,
    warn_if_uncacheable,
)
from memo_pipeline.providers.jsonl import batch_jsonl

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
JOB_KEY_FIELD = "memo_job_key"
METADATA_VALUE_MAX = 512
FIND_MAX_BATCHES = 1000
IN_PROGRESS = {"validating", "in_progress", "finalizing", "cancelling"}
ENDED = {"completed", "expired", "cancelled"}
# Batch validation errors about one line's shape: that request is malformed as written. A
# duplicate custom_id is not among them: the request itself is fine, sent once it can succeed.
LINE_ERRORS = {
    "invalid_json_line",
    "missing_required_parameter",
    "invalid_method",
    "url_mismatch",
    "model_mismatch",
}
SHORT_TTLS = {"5m", "30m"}


def _metadata_key(job_key: str) -> str:
    # Metadata values are limited to 512 characters; longer keys are stored as a digest.
    if len(job_key) <= METADATA_VALUE_MAX:
        return job_key
    return "sha256:" + hashlib.sha256(job_key.encode()).hexdigest()


class OpenAIProvider(Provider):
    """GPT models through the OpenAI API.

    Credentials come from the environment only (``OPENAI_API_KEY``); pass ``base_url`` (ending
    in ``/v1``) to talk to the emulator.
    """

    name = "openai"

    def __init__(
        self,
        *,
        limits: ProviderLimits,
        model: str,
        cache_ttl: str = "30m",
        base_url: str | None = None,
        max_retries: int = 4,
        timeout: float = 120.0,
        console_url_template: str | None = None,
        client: openai.OpenAI | None = None,
    ) -> None:
        """Build the adapter and its SDK client.

        Args:
            limits: batch limits (requests, bytes, minimum cacheable tokens) from configuration.
            model: the default model for requests that name none.
            cache_ttl: the cache lifetime the account's model uses ("30m" by default; "12h"
                where extended retention applies). OpenAI caches automatically; the value only
                decides whether reported cache writes count as short- or long-lived in ``Usage``.
            base_url: API base URL ending in /v1 (the emulator's in tests); the SDK default
                otherwise.
            max_retries: SDK retries of 429/5xx/connection errors per call.
            timeout: seconds per HTTP call.
            console_url_template: ``{job_id}`` link template; defaults to providers.yaml's.
            client: a ready SDK client (overrides base_url, max_retries and timeout).
        """
        if client is None and not os.environ.get("OPENAI_API_KEY"):
            raise ValueError("openai: set OPENAI_API_KEY in the environment")
        self.limits = limits
        self.model = model
        self.cache_ttl = cache_ttl
        self.console_url_template = console_url_template or packaged_provider_settings(
            "openai"
        ).get("console_url")
        self._client = client or openai.OpenAI(
            base_url=base_url, max_retries=max_retries, timeout=timeout
        )

    @classmethod
    def from_config(
        cls,
        *,
        limits: ProviderLimits,
        model: str,
        config: dict[str, Any],
        staging_dir: Path | None = None,
    ) -> OpenAIProvider:
        """Build from the provider's providers.yaml section (``staging_dir`` is not used).

        Keys read: ``cache_ttl``, ``base_url``, ``max_retries``, ``timeout_seconds``,
        ``console_url``. Credentials never come from configuration.
        """
        return cls(
            limits=limits,
            model=model,
            cache_ttl=setting(config, "cache_ttl", "30m"),
            base_url=setting(config, "base_url"),
            max_retries=int(setting(config, "max_retries", 4)),
            timeout=float(setting(config, "timeout_seconds", 120.0)),
            console_url_template=setting(config, "console_url"),
        )

    def body(self, request: ProviderRequest) -> dict[str, Any]:
        """The chat completions body for one request."""
        messages: list[dict[str, Any]] = []
        if request.prompt.static_prefix:
            messages.append({"role": "system", "content": request.prompt.static_prefix})
        messages.extend({"role": turn.role, "content": turn.text} for turn in conversation(request))
        return {
            "model": request.model or self.model,
            "messages": messages,
            "max_completion_tokens": request.max_tokens,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "extraction", "schema": answer_schema(), "strict": True},
            },
            "prompt_cache_key": request.prompt.prefix_key,
        }

    def line(self, request: ProviderRequest) -> dict[str, Any]:
        """One line of the batch input file."""
        return {
            "custom_id": request.request_id,
            "method": "POST",
            "url": ENDPOINT,
            "body": self.body(request),
        }

    def _jsonl(self, requests: Sequence[ProviderRequest]) -> bytes:
        return batch_jsonl(requests, self.line)

    def _handle(self, batch: Batch, request_count: int, size: int, model: str) -> JobHandle:
        return JobHandle(
            provider=self.name,
            job_id=batch.id,
            request_count=request_count,
            bytes=size,
            model=model,
            submitted_at=datetime.fromtimestamp(batch.created_at, UTC),
            console_url=console_url(self.console_url_template, batch.id),
        )

    def submit_batch(self, job_key: str, requests: Sequence[ProviderRequest]) -> JobHandle:
        """Upload the JSONL input file, then create the batch tagged with the job key."""
        model = single_model(self.name, self.model, requests)
        data = self._jsonl(requests)
        check_batch(self.name, self.limits, requests, len(data))
        warn_if_uncacheable(self.name, model, requests[0], self.limits.min_cacheable_tokens)
        try:
            uploaded = self._client.files.create(
                file=("batch.jsonl", data, "application/jsonl"), purpose="batch"
            )
            batch = self._client.batches.create(
                input_file_id=uploaded.id,
                endpoint=ENDPOINT,
                completion_window="24h",
                metadata={JOB_KEY_FIELD: _metadata_key(job_key)},
            )
        except openai.APIStatusError as exc:
            raise _call_error("create batch", exc) from exc
        except openai.APIConnectionError as exc:
            raise ProviderCallError(f"openai: create batch failed: {exc}", retryable=True) from exc
        log.info("openai: submitted batch %s (%s, %d requests)", batch.id, job_key, len(requests))
        return self._handle(batch, len(requests), len(data), model)

    def find_job(
        self,
        job_key: str,
        requests: Sequence[ProviderRequest],
        *,
        exclude_job_ids: Collection[str] = (),
    ) -> JobHandle | None:
        """The newest batch whose metadata carries this job key (scans up to 1,000 batches)."""
        wanted = _metadata_key(job_key)
        try:
            for scanned, batch in enumerate(self._client.batches.list(limit=100)):
                if scanned >= FIND_MAX_BATCHES:
                    break
                if (batch.metadata or {}).get(JOB_KEY_FIELD) == wanted:
                    model = batch.model or single_model(self.name, self.model, requests)
                    return self._handle(batch, len(requests), len(self._jsonl(requests)), model)
        except openai.APIStatusError as exc:
            raise _call_error("list batches", exc) from exc
        return None

    def _retrieve(self, job_id: str) -> Batch:
        try:
            return self._client.batches.retrieve(job_id)
        except openai.APIStatusError as exc:
            raise _call_error(f"retrieve batch {job_id}", exc) from exc

    def poll(self, job_id: str) -> JobStatus:
        batch = self._retrieve(job_id)
        counts = batch.request_counts.model_dump() if batch.request_counts else {}
        if batch.status in IN_PROGRESS:
            return JobStatus(JobState.IN_PROGRESS, batch.status, counts)
        if batch.status in ENDED:
            message = None
            if batch.status == "completed" and counts.get("completed") == 0:
                message = "no request succeeded; see the error file"
            return JobStatus(JobState.ENDED, batch.status, counts, message)
        return JobStatus(JobState.FAILED, batch.status, counts, _batch_errors(batch))

    def results(self, job_id: str) -> Iterator[RequestOutcome]:
        """Outcomes from the output and error files; ids found in neither are retryable."""
        batch = self._retrieve(job_id)
        if batch.status in IN_PROGRESS:
            raise ProviderCallError(
                f"openai: batch {job_id} is still {batch.status}", retryable=True
            )
        if batch.status == "failed":
            yield from self._failed_batch_outcomes(batch)
            return

        seen: set[str] = set()
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            for line in self._lines(file_id):
                outcome = self._line_outcome(line)
                if outcome.request_id in seen:
                    continue
                seen.add(outcome.request_id)
                yield outcome

        total = batch.request_counts.total if batch.request_counts else 0
        if len(seen) < total:
            for request_id in self._input_ids(batch.input_file_id):
                if request_id not in seen:
                    seen.add(request_id)
                    yield failed_outcome(
                        request_id,
                        f"no result line in a {batch.status} batch",
                        retryable=True,
                    )

    def _lines(self, file_id: str) -> Iterator[dict[str, Any]]:
        for _, line in self._numbered_lines(file_id):
            yield line

    def _numbered_lines(self, file_id: str) -> Iterator[tuple[int, dict[str, Any]]]:
        """(line number, object) for each JSON line of a file, streamed; numbers count from 1."""
        try:
            with self._client.files.with_streaming_response.content(file_id) as response:
                for number, raw in enumerate(split_lines(response.iter_bytes()), start=1):
                    if not raw.strip():
                        continue
                    try:
                        line = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        # Its id is unreadable; the request shows up as missing (retryable).
                        log.warning("openai: file %s line %d is not JSON; skipped", file_id, number)
                        continue
                    if isinstance(line, dict):
                        yield number, line
        except openai.APIStatusError as exc:
            raise _call_error(f"download file {file_id}", exc) from exc

    def _input_ids(self, file_id: str) -> list[str]:
        return [str(line.get("custom_id")) for line in self._lines(file_id)]

    def _failed_batch_outcomes(self, batch: Batch) -> Iterator[RequestOutcome]:
        # Validation failed before anything ran. A request whose line is malformed as written
        # fails the same way again (permanent); every other request can go again (retryable).
        errors = batch.errors.data if batch.errors and batch.errors.data else []
        by_line = {e.line: e for e in errors if e.line is not None and e.code in LINE_ERRORS}
        summary = _batch_errors(batch) or "batch failed validation"
        outcomes: dict[str, RequestOutcome] = {}
        for number, line in self._numbered_lines(batch.input_file_id):
            request_id = str(line.get("custom_id"))
            error = by_line.get(number)
            if error is not None:
                outcomes[request_id] = failed_outcome(
                    request_id, f"batch validation: {error.code}: {error.message}", retryable=False
                )
            elif request_id not in outcomes:
                outcomes[request_id] = failed_outcome(
                    request_id, f"batch failed: {summary}", retryable=True
                )
        yield from outcomes.values()

    def _line_outcome(self, line: dict[str, Any]) -> RequestOutcome:
        request_id = str(line.get("custom_id"))
        error = line.get("error")
        response = line.get("response")
        if error:
            code = error.get("code")
            return failed_outcome(
                request_id,
                f"{code}: {error.get('message', '')}",
                retryable=retryable_error(code) or code is None,
            )
        if not isinstance(response, dict):
            return failed_outcome(request_id, "result line without a response", retryable=True)
        status = response.get("status_code")
        body = response.get("body") or {}
        if status != 200:
            # A rejected request can sit in the output file with "error": null (G10).
            detail = body.get("error") if isinstance(body, dict) else None
            message = detail.get("message", "") if isinstance(detail, dict) else ""
            code = (detail or {}).get("code") or (detail or {}).get("type")
            return failed_outcome(
                request_id,
                f"HTTP {status} {code}: {message}",
                retryable=retryable_status(status if isinstance(status, int) else None),
            )
        return self._completion_outcome(request_id, body, tier="batch")

    def _completion_outcome(
        self, request_id: str, body: dict[str, Any], *, tier: str
    ) -> RequestOutcome:
        usage = _usage(body.get("usage") or {}, tier, self.cache_ttl)
        choices = body.get("choices") or []
        if not choices:
            return failed_outcome(
                request_id, "completion without choices", retryable=True, usage=usage
            )
        choice = choices[0]
        message = choice.get("message") or {}
        if message.get("refusal"):
            return RequestOutcome(
                request_id,
                Outcome.PERMANENT,
                error=f"the model refused: {str(message['refusal'])[:200]}",
                usage=usage,
                stop_reason="refusal",
            )
        return answer_outcome(
            request_id, message.get("content"), choice.get("finish_reason"), usage
        )

    def cancel(self, job_id: str) -> None:
        try:
            self._client.batches.cancel(job_id)
        except openai.APIStatusError as exc:
            raise _call_error(f"cancel batch {job_id}", exc) from exc

    def call_sync(self, request: ProviderRequest) -> RequestOutcome:
        """One chat completion; failures come back as outcomes once the SDK's retries are spent."""
        try:
            completion = self._client.chat.completions.create(
                **self.body(request), extra_headers={"x-memo-request-id": request.request_id}
            )
        except openai.APIStatusError as exc:
            code = _error_code(exc)
            return failed_outcome(
                request.request_id,
                f"HTTP {exc.status_code} {code}: {_error_message(exc)}"
                + retry_after_note(exc.response.headers),
                retryable=retryable_status(exc.status_code),
            )
        except openai.APIConnectionError as exc:
            return failed_outcome(
                request.request_id, f"connection failed: {type(exc).__name__}", retryable=True
            )
        tier = (
            "standard"
            if completion.service_tier in (None, "default", "auto")
            else completion.service_tier
        )
        return self._completion_outcome(request.request_id, completion.model_dump(), tier=tier)


def _usage(usage: dict[str, Any], tier: str, cache_ttl: str) -> Usage:
    """Normalised usage. ``prompt_tokens`` includes cached and written tokens; both come out.

    OpenAI's cache lifetimes (30m, 12h) have no field of their own in ``Usage``: short-lived
    writes count as ``cache_write_5m_tokens``, long-lived ones as ``cache_write_1h_tokens``;
    cost code prices them with the provider's own rates.
    """
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") or 0
    written = details.get("cache_write_tokens") or 0
    prompt = usage.get("prompt_tokens") or 0
    short = cache_ttl in SHORT_TTLS
    return Usage(
        input_tokens=max(0, prompt - cached - written),
        cache_write_5m_tokens=written if short else 0,
        cache_write_1h_tokens=0 if short else written,
        cache_read_tokens=cached,
        output_tokens=usage.get("completion_tokens") or 0,
        service_tier=tier,
    )


def _batch_errors(batch: Batch) -> str | None:
    if not batch.errors or not batch.errors.data:
        return None
    parts = [
        f"{e.code} (line {e.line}): {e.message}" if e.line is not None else f"{e.code}: {e.message}"
        for e in batch.errors.data[:5]
    ]
    more = len(batch.errors.data) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _error_code(exc: openai.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return error.get("code") or error.get("type")
    return None


def _error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
    return exc.message[:500]


def _call_error(call: str, exc: openai.APIStatusError) -> ProviderCallError:
    return ProviderCallError(
        f"openai: {call} failed: HTTP {exc.status_code} {_error_code(exc)}: {_error_message(exc)}",
        retryable=retryable_status(exc.status_code),
        status=exc.status_code,
    )
