"""Anthropic adapter: Message Batches for bulk, the Messages API for sync, on the real SDK.

Each request sends the collection's static prefix as one system text block whose
``cache_control`` marks the end of the prefix, the record as the user turn, and the answer schema
through ``output_config.format`` (grammar-constrained JSON). A document prompt sends its shared
prefix and its document suffix as two blocks, each with a breakpoint. Batches use a
1-hour TTL by default: the batch cache starts cold and batches can outlive a 5-minute entry.

Results are read through the SDK's JSONL decoder. That decoder breaks when a ``\\r\\n`` falls
across two of its 64-byte reads (gotcha G3); when it raises, the adapter downloads the results
again and splits lines on ``\\n`` only, skipping ids already yielded.

Synchronous calls carry the request id in an ``x-memo-request-id`` header, for correlation in
logs (and for the emulator's fault rules); the API ignores headers it does not know.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anthropic
import orjson
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse

from memo_pipeline.providers.base import (
    JobHandle,
    JobState,
    JobStatus,
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
    setting,
    split_lines,
    warn_if_uncacheable,
)

log = logging.getLogger(__name__)

CACHE_TTLS = ("5m", "1h")
# How far back find_job looks by default: a crash is recovered on the next run, and a batch
# that expired (24 h) is never an orphan worth adopting.
FIND_LOOKBACK = timedelta(hours=24)
FIND_MAX_BATCHES = 500
FALLBACK_ATTEMPTS = 3


def _is_transport_error(exc: BaseException) -> bool:
    # A results stream that breaks mid-way raises the HTTP library's own errors (the SDK only
    # wraps errors of the initial request), so they are recognised by module.
    if isinstance(exc, anthropic.APIConnectionError | anthropic.InternalServerError):
        return True
    return type(exc).__module__.split(".")[0] in ("httpx", "httpx2")


class AnthropicProvider(Provider):
    """Claude through the Anthropic API.

    Credentials come from the environment only (``ANTHROPIC_API_KEY``, or whatever else the SDK
    resolves); pass ``base_url`` to talk to the emulator.
    """

    name = "anthropic"

    def __init__(
        self,
        *,
        limits: ProviderLimits,
        model: str,
        cache_ttl: str = "1h",
        sync_cache_ttl: str = "5m",
        base_url: str | None = None,
        max_retries: int = 4,
        timeout: float = 120.0,
        console_url_template: str | None = None,
        client: anthropic.Anthropic | None = None,
    ) -> None:
        """Build the adapter and its SDK client.

        Args:
            limits: batch limits (requests, bytes, minimum cacheable tokens) from configuration.
            model: the default model for requests that name none.
            cache_ttl: cache lifetime on batch requests, "5m" or "1h".
            sync_cache_ttl: cache lifetime on synchronous calls, "5m" or "1h".
            base_url: API base URL (the emulator's in tests); the SDK default otherwise.
            max_retries: SDK retries of 429/5xx/connection errors per call.
            timeout: seconds per HTTP call.
            console_url_template: ``{job_id}`` link template; defaults to providers.yaml's.
            client: a ready SDK client (overrides base_url, max_retries and timeout).
        """
        for ttl in (cache_ttl, sync_cache_ttl):
            if ttl not in CACHE_TTLS:
                raise ValueError(f"anthropic: cache ttl must be one of {CACHE_TTLS}, not {ttl!r}")
        if client is None and not (
            os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN")
        ):
            raise ValueError("anthropic: set ANTHROPIC_API_KEY in the environment")
        self.limits = limits
        self.model = model
        self.cache_ttl = cache_ttl
        self.sync_cache_ttl = sync_cache_ttl
        self.console_url_template = console_url_template or packaged_provider_settings(
            "anthropic"
        ).get("console_url")
        self._client = client or anthropic.Anthropic(
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
    ) -> AnthropicProvider:
        """Build from the provider's providers.yaml section (``staging_dir`` is not used).

        Keys read: ``cache_ttl``, ``sync_cache_ttl``, ``base_url``, ``max_retries``,
        ``timeout_seconds``, ``console_url``. Credentials never come from configuration.
        """
        return cls(
            limits=limits,
            model=model,
            cache_ttl=setting(config, "cache_ttl", "1h"),
            sync_cache_ttl=setting(config, "sync_cache_ttl", "5m"),
            base_url=setting(config, "base_url"),
            max_retries=int(setting(config, "max_retries", 4)),
            timeout=float(setting(config, "timeout_seconds", 120.0)),
            console_url_template=setting(config, "console_url"),
        )

    def params(self, request: ProviderRequest, *, ttl: str) -> dict[str, Any]:
        """The Messages body for one request: cached system prefix, record, answer schema."""
        # A document prompt gets a second breakpoint after its suffix, so the first one, after
        # the collection's shared prefix, is the same cache entry ordinary writes use.
        prompt = request.prompt
        system = [
            {"type": "text", "text": text, "cache_control": {"type": "ephemeral", "ttl": ttl}}
            for text in (prompt.shared_prefix, prompt.document_suffix)
            if text
        ]
        params: dict[str, Any] = {
            "model": request.model or self.model,
            "max_tokens": request.max_tokens,
            "messages": [
                {"role": turn.role, "content": [{"type": "text", "text": turn.text}]}
                for turn in conversation(request)
            ],
            "output_config": {"format": {"type": "json_schema", "schema": answer_schema()}},
        }
        if system:
            params["system"] = system
        return params

    def _batch_body(self, requests: Sequence[ProviderRequest]) -> list[dict[str, Any]]:
        return [
            {"custom_id": r.request_id, "params": self.params(r, ttl=self.cache_ttl)}
            for r in requests
        ]

    def _handle(
        self, batch: MessageBatch, requests: Sequence[ProviderRequest], size: int
    ) -> JobHandle:
        models = sorted({r.model or self.model for r in requests})
        return JobHandle(
            provider=self.name,
            job_id=batch.id,
            request_count=len(requests),
            bytes=size,
            model=",".join(models),
            submitted_at=batch.created_at,
            console_url=console_url(self.console_url_template, batch.id),
        )

    def submit_batch(self, job_key: str, requests: Sequence[ProviderRequest]) -> JobHandle:
        """Create one Message Batch. Anthropic keeps no metadata: store the returned id at once."""
        body = self._batch_body(requests)
        size = len(orjson.dumps({"requests": body}))
        check_batch(self.name, self.limits, requests, size)
        warn_if_uncacheable(
            self.name,
            requests[0].model or self.model,
            requests[0],
            self.limits.min_cacheable_tokens,
        )
        try:
            batch = self._client.messages.batches.create(requests=body)  # type: ignore[arg-type]
        except anthropic.APIStatusError as exc:
            raise _call_error("create batch", exc) from exc
        except anthropic.APIConnectionError as exc:
            raise ProviderCallError(
                f"anthropic: create batch failed: {exc}", retryable=True
            ) from exc
        log.info("anthropic: submitted batch %s (%s, %d requests)", batch.id, job_key, len(body))
        return self._handle(batch, requests, size)

    def find_job(
        self,
        job_key: str,
        requests: Sequence[ProviderRequest],
        *,
        submitted_after: datetime | None = None,
        exclude_job_ids: Collection[str] | None = None,
    ) -> JobHandle | None:
        """Find a batch already created for these requests (a crash before its id was stored).

        Anthropic batches carry no metadata, so the job key cannot be looked up; the request
        ids are the only link, and they are readable only from the results of an ended batch.
        The scan lists batches newest first, back to ``submitted_after`` (default: 24 hours,
        at most 500 batches), skipping ``exclude_job_ids`` and any whose request count differs.

        * An ended batch is adopted when it has at least one success and its custom ids are
          exactly the request ids (read from its results, stopping at the first foreign id).
          Requiring a success keeps a batch whose every request failed, and whose requests are
          being resubmitted under a new job key, from being mistaken for the resubmission.
        * An in-progress batch cannot be confirmed. It is adopted only when the caller passes
          ``exclude_job_ids`` (every batch id its ledger has recorded, vouching that the rest
          are orphans) and it is the only unrecorded in-progress batch of that size.

        Limits: without ``exclude_job_ids`` an orphan still in progress is not found, so a crash
        between create and recording the id can lead to a second submission of that batch; two
        batches of the same request-id set inside the lookback are indistinguishable.
        """
        wanted = {r.request_id for r in requests}
        cutoff = submitted_after or datetime.now(UTC) - FIND_LOOKBACK
        excluded = set(exclude_job_ids or ())
        in_progress: list[MessageBatch] = []
        size = len(orjson.dumps({"requests": self._batch_body(requests)}))
        try:
            for scanned, batch in enumerate(self._client.messages.batches.list(limit=100)):
                if batch.created_at < cutoff or scanned >= FIND_MAX_BATCHES:
                    break
                counts = batch.request_counts
                total = (
                    counts.processing
                    + counts.succeeded
                    + counts.errored
                    + counts.canceled
                    + counts.expired
                )
                if batch.id in excluded or total != len(wanted):
                    continue
                if batch.processing_status != "ended":
                    in_progress.append(batch)
                elif (
                    counts.succeeded > 0
                    and batch.archived_at is None
                    and self._holds_exactly(batch.id, wanted)
                ):
                    return self._handle(batch, requests, size)
        except anthropic.APIStatusError as exc:
            raise _call_error("list batches", exc) from exc

        if exclude_job_ids is not None and len(in_progress) == 1:
            log.warning(
                "anthropic: adopting unrecorded in-progress batch %s for %s (same request count)",
                in_progress[0].id,
                job_key,
            )
            return self._handle(in_progress[0], requests, size)
        if in_progress:
            log.warning(
                "anthropic: %d in-progress batch(es) of %d requests could hold %s; none adopted",
                len(in_progress),
                len(wanted),
                job_key,
            )
        return None

    def _holds_exactly(self, batch_id: str, wanted: set[str]) -> bool:
        """Whether an ended batch's custom ids are exactly ``wanted``; stops at a foreign id."""
        seen: set[str] = set()
        lines = self._result_lines(batch_id)
        try:
            for line in lines:
                if line.custom_id not in wanted:
                    return False
                seen.add(line.custom_id)
        finally:
            lines.close()
        return seen == wanted

    def poll(self, job_id: str) -> JobStatus:
        try:
            batch = self._client.messages.batches.retrieve(job_id)
        except anthropic.APIStatusError as exc:
            raise _call_error(f"retrieve batch {job_id}", exc) from exc
        state = JobState.ENDED if batch.processing_status == "ended" else JobState.IN_PROGRESS
        return JobStatus(
            state=state,
            provider_status=batch.processing_status,
            counts=batch.request_counts.model_dump(),
        )

    def results(self, job_id: str) -> Iterator[RequestOutcome]:
        """Every request's outcome, in the provider's (arbitrary) order (G1, G4)."""
        for line in self._result_lines(job_id):
            yield self._outcome(line)

    def _result_lines(self, job_id: str) -> Iterator[MessageBatchIndividualResponse]:
        seen: set[str] = set()
        try:
            decoder = self._client.messages.batches.results(job_id)
        except anthropic.APIStatusError as exc:
            raise _call_error(f"results of batch {job_id}", exc) from exc
        except anthropic.AnthropicError as exc:  # no results_url yet: the batch has not ended
            raise ProviderCallError(f"anthropic: {exc}", retryable=True) from exc
        lines = iter(decoder)
        try:
            while True:
                try:
                    line = next(lines)
                except StopIteration:
                    return
                except ValueError as exc:
                    log.warning(
                        "anthropic: results decoder failed on batch %s after %d lines (%s); "
                        "re-reading the results split on \\n only",
                        job_id,
                        len(seen),
                        type(exc).__name__,
                    )
                    break
                seen.add(line.custom_id)
                yield line
        finally:
            decoder.close()
        yield from self._fallback_lines(job_id, seen)

    def _fallback_lines(
        self, job_id: str, seen: set[str]
    ) -> Iterator[MessageBatchIndividualResponse]:
        # The SDK's streaming response keeps its auth and base URL, and retries the initial GET.
        # A stream that breaks mid-way is restarted here (the SDK has no retry for that),
        # skipping ids already yielded.
        for attempt in range(1, FALLBACK_ATTEMPTS + 1):
            try:
                with self._client.messages.batches.with_streaming_response.results(
                    job_id
                ) as response:
                    for raw in split_lines(response.iter_bytes()):
                        line = _parse_line(raw)
                        if line is not None and line.custom_id not in seen:
                            seen.add(line.custom_id)
                            yield line
                return
            except Exception as exc:
                if attempt == FALLBACK_ATTEMPTS or not _is_transport_error(exc):
                    raise
                log.warning(
                    "anthropic: results download of %s broke (%s); attempt %d",
                    job_id,
                    type(exc).__name__,
                    attempt + 1,
                )
                time.sleep(min(0.5 * 2**attempt, 10.0))

    def _outcome(self, line: MessageBatchIndividualResponse) -> RequestOutcome:
        result = line.result
        if result.type == "succeeded":
            return self._message_outcome(line.custom_id, result.message, tier="batch")
        if result.type == "errored":
            error = result.error.error
            return failed_outcome(
                line.custom_id,
                f"errored: {error.type}: {error.message}",
                retryable=retryable_error(error.type),
            )
        # "canceled" and "expired" carry no payload: the request was never run.
        return failed_outcome(line.custom_id, f"{result.type} before it ran", retryable=True)

    def _message_outcome(
        self, request_id: str, message: anthropic.types.Message, *, tier: str
    ) -> RequestOutcome:
        text = "".join(block.text for block in message.content if block.type == "text")
        return answer_outcome(
            request_id, text, message.stop_reason, _usage(message.usage, tier, self.cache_ttl)
        )

    def cancel(self, job_id: str) -> None:
        try:
            self._client.messages.batches.cancel(job_id)
        except anthropic.APIStatusError as exc:
            raise _call_error(f"cancel batch {job_id}", exc) from exc

    def call_sync(self, request: ProviderRequest) -> RequestOutcome:
        """One Messages call; failures come back as outcomes once the SDK's retries are spent."""
        params = self.params(request, ttl=self.sync_cache_ttl)
        try:
            message = self._client.messages.create(
                **params, extra_headers={"x-memo-request-id": request.request_id}
            )
        except anthropic.APIStatusError as exc:
            error_type = _error_type(exc)
            return failed_outcome(
                request.request_id,
                f"HTTP {exc.status_code} {error_type}: {_error_message(exc)}"
                + retry_after_note(exc.response.headers),
                retryable=retryable_error(error_type, exc.status_code),
            )
        except anthropic.APIConnectionError as exc:
            return failed_outcome(
                request.request_id, f"connection failed: {type(exc).__name__}", retryable=True
            )
        return self._message_outcome(
            request.request_id, message, tier=message.usage.service_tier or "standard"
        )


def _parse_line(raw: bytes) -> MessageBatchIndividualResponse | None:
    raw = raw.strip()
    if not raw:
        return None
    return MessageBatchIndividualResponse.model_validate(orjson.loads(raw))


def _usage(usage: anthropic.types.Usage, tier: str, requested_ttl: str) -> Usage:
    """Normalised usage; writes without a TTL split count under the TTL that was requested."""
    written = usage.cache_creation_input_tokens or 0
    if usage.cache_creation is not None:
        write_5m = usage.cache_creation.ephemeral_5m_input_tokens
        write_1h = usage.cache_creation.ephemeral_1h_input_tokens
    elif requested_ttl == "1h":
        write_5m, write_1h = 0, written
    else:
        write_5m, write_1h = written, 0
    return Usage(
        input_tokens=usage.input_tokens,
        cache_write_5m_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
        cache_read_tokens=usage.cache_read_input_tokens or 0,
        output_tokens=usage.output_tokens,
        service_tier=tier,
    )


def _error_type(exc: anthropic.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return error.get("type")
    return None


def _error_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))[:500]
    return exc.message[:500]


def _call_error(call: str, exc: anthropic.APIStatusError) -> ProviderCallError:
    error_type = _error_type(exc)
    return ProviderCallError(
        f"anthropic: {call} failed: HTTP {exc.status_code} {error_type}: {_error_message(exc)}",
        retryable=retryable_error(error_type, exc.status_code),
        status=exc.status_code,
    )
