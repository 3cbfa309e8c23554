"""Helpers shared by the provider adapters: outcome classification, answer checks, limits.

Every provider result ends up as one ``RequestOutcome``:

* ``SUCCEEDED``: the model finished normally and its answer parses as a JSON object. Whether it
  matches the answer schema is Stage 2's question, not the adapter's.
* ``RETRYABLE``: trying again can work: expired, canceled, 429, 5xx / overloaded, the answer cut
  off at ``max_tokens`` (retry with a larger budget), an answer that is not JSON, a record the
  job never reached.
* ``PERMANENT``: the same request will fail again: invalid request, refusal, other 4xx.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import yaml

from memo_pipeline.providers.base import (
    Outcome,
    ProviderLimits,
    ProviderRequest,
    RequestOutcome,
    Usage,
)
from memo_pipeline.schema.output import output_json_schema
from memo_pipeline.tokens import estimate_tokens

log = logging.getLogger(__name__)

TRUNCATED_STOPS = frozenset({"max_tokens", "length", "model_context_window_exceeded"})
REFUSAL_STOPS = frozenset({"refusal", "content_filter", "content_filtered", "guardrail_intervened"})
UNFINISHED_STOPS = frozenset({"pause_turn", "tool_use", "tool_calls", "malformed_model_output"})
RETRYABLE_ERROR_TYPES = frozenset(
    {
        "rate_limit_error",
        "api_error",
        "overloaded_error",
        "timeout_error",
        "server_error",
        "rate_limit_exceeded",
        "batch_expired",
        "batch_cancelled",
        "token_limit_exceeded",
        "ThrottlingException",
        "InternalServerException",
        "ServiceUnavailableException",
        "ModelTimeoutException",
        "ModelNotReadyException",
        "ModelErrorException",
        "ServiceQuotaExceededException",
    }
)


class ProviderCallError(RuntimeError):
    """A provider call (submit, poll, results, cancel) failed.

    ``retryable`` says whether the same call can succeed later (429, 5xx, network); the message
    names the provider, the call and the provider's error, never a credential.
    """

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


def retry_after_note(headers: Mapping[str, str] | None) -> str:
    """``"; retry-after 12s"`` when the response said how long to wait, else ``""``.

    The sync callers read it back from the outcome's error to wait what the provider asked
    (``retry-after-ms`` is OpenAI's and Anthropic's finer form; an HTTP date is ignored).
    """
    if not headers:
        return ""
    lowered = {k.lower(): v for k, v in headers.items()}
    with suppress(TypeError, ValueError):
        if "retry-after-ms" in lowered:
            return f"; retry-after {float(lowered['retry-after-ms']) / 1000:g}s"
        if "retry-after" in lowered:
            return f"; retry-after {float(lowered['retry-after']):g}s"
    return ""


def retryable_status(status: int | None) -> bool:
    """HTTP statuses worth retrying: timeouts, conflicts, 429 and every 5xx (incl. 529)."""
    return status is None or status in (408, 409, 425, 429) or status >= 500


def retryable_error(error_type: str | None, status: int | None = None) -> bool:
    if error_type in RETRYABLE_ERROR_TYPES:
        return True
    if status is not None:
        return retryable_status(status)
    return False


@lru_cache(maxsize=1)
def answer_schema() -> dict[str, Any]:
    """The strict answer schema, built once (the adapters send it with every request)."""
    return output_json_schema()


def _strip_fences(text: str) -> str:
    # Models asked for JSON in the prompt (Bedrock batch has no structured output) sometimes wrap
    # it in a Markdown fence; the fence is not part of the answer.
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```"):
        body = stripped[3:-3]
        first_newline = body.find("\n")
        if first_newline >= 0 and body[:first_newline].strip().isalpha():
            body = body[first_newline + 1 :]
        return body.strip()
    return stripped


def answer_outcome(
    request_id: str, text: str | None, stop_reason: str | None, usage: Usage
) -> RequestOutcome:
    """Classify a finished model turn: success only for a complete JSON object answer."""
    if stop_reason in TRUNCATED_STOPS:
        return RequestOutcome(
            request_id,
            Outcome.RETRYABLE,
            answer_text=text,
            error=f"answer truncated (stop reason {stop_reason}); retry with a larger max_tokens",
            usage=usage,
            stop_reason=stop_reason,
        )
    if stop_reason in REFUSAL_STOPS:
        return RequestOutcome(
            request_id,
            Outcome.PERMANENT,
            answer_text=text,
            error=f"the model refused (stop reason {stop_reason})",
            usage=usage,
            stop_reason=stop_reason,
        )
    if stop_reason in UNFINISHED_STOPS:
        return RequestOutcome(
            request_id,
            Outcome.RETRYABLE,
            answer_text=text,
            error=f"the turn did not finish (stop reason {stop_reason})",
            usage=usage,
            stop_reason=stop_reason,
        )
    answer = _strip_fences(text or "")
    if not answer:
        return RequestOutcome(
            request_id,
            Outcome.RETRYABLE,
            error="empty answer",
            usage=usage,
            stop_reason=stop_reason,
        )
    try:
        parsed = orjson.loads(answer)
    except orjson.JSONDecodeError as exc:
        return RequestOutcome(
            request_id,
            Outcome.RETRYABLE,
            answer_text=text,
            error=f"answer is not valid JSON: {exc}",
            usage=usage,
            stop_reason=stop_reason,
        )
    if not isinstance(parsed, dict):
        return RequestOutcome(
            request_id,
            Outcome.RETRYABLE,
            answer_text=text,
            error=f"answer is JSON but not an object ({type(parsed).__name__})",
            usage=usage,
            stop_reason=stop_reason,
        )
    return RequestOutcome(
        request_id, Outcome.SUCCEEDED, answer_text=answer, usage=usage, stop_reason=stop_reason
    )


def failed_outcome(
    request_id: str,
    reason: str,
    *,
    retryable: bool,
    usage: Usage | None = None,
    stop_reason: str | None = None,
) -> RequestOutcome:
    return RequestOutcome(
        request_id,
        Outcome.RETRYABLE if retryable else Outcome.PERMANENT,
        error=reason,
        usage=usage or Usage(),
        stop_reason=stop_reason,
    )


def split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """JSONL lines from a byte stream, split on ``\\n`` only however the chunks fall.

    A ``\\r`` stays with its line (JSON parsers take it as whitespace), so a ``\\r\\n`` split
    across two chunks cannot produce an empty or broken line (gotcha G3).
    """
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        yield from complete
    if buffer:
        yield buffer


@dataclass(frozen=True)
class Turn:
    role: str  # "user" | "assistant"
    text: str


def repair_text(errors: Sequence[str]) -> str:
    lines = "\n".join(f"- {error}" for error in errors)
    return (
        "Your previous answer was not accepted:\n"
        f"{lines}\n"
        "Answer again with one JSON object that matches the answer schema, and nothing else."
    )


def conversation(request: ProviderRequest) -> list[Turn]:
    """The turns after the cached prefix: the record, then (for a repair) answer and errors.

    The record stays the first user turn so a repair request reuses the same cache entry.
    """
    turns = [Turn("user", request.prompt.record_part)]
    if request.previous_answer:
        turns.append(Turn("assistant", request.previous_answer))
        turns.append(Turn("user", repair_text(request.repair_errors or ("invalid answer",))))
    elif request.repair_errors:
        turns[0] = Turn(
            "user", request.prompt.record_part + "\n" + repair_text(request.repair_errors)
        )
    return turns


def check_batch(
    provider: str, limits: ProviderLimits, requests: Sequence[ProviderRequest], size: int
) -> None:
    """Refuse a batch the provider would reject; packing to the limits is the caller's job."""
    count = len(requests)
    if count == 0:
        raise ValueError(f"{provider}: a batch needs at least one request")
    if count > limits.max_requests_per_batch:
        raise ValueError(
            f"{provider}: {count} requests exceed the limit of {limits.max_requests_per_batch} "
            "per batch; pack smaller batches"
        )
    if count < limits.min_requests_per_batch:
        raise ValueError(
            f"{provider}: {count} requests are below the minimum of "
            f"{limits.min_requests_per_batch} per batch; send them through call_sync or wait "
            "for more"
        )
    if size > limits.max_bytes_per_batch:
        raise ValueError(
            f"{provider}: the batch is {size} bytes, over the limit of "
            f"{limits.max_bytes_per_batch}; pack smaller batches"
        )
    seen: set[str] = set()
    for request in requests:
        if request.request_id in seen:
            raise ValueError(
                f"{provider}: request id {request.request_id!r} appears twice in one batch"
            )
        seen.add(request.request_id)


@lru_cache(maxsize=8)
def packaged_provider_settings(provider: str) -> dict[str, Any]:
    """The provider's section of the packaged ``config/providers.yaml`` (defaults only)."""
    text = (Path(__file__).resolve().parent.parent / "config" / "providers.yaml").read_text()
    return dict((yaml.safe_load(text) or {}).get("providers", {}).get(provider, {}))


def setting(config: dict[str, Any], key: str, default: Any = None) -> Any:
    """A provider setting from configuration, with empty values treated as missing."""
    value = config.get(key)
    return default if value in (None, "") else value


def console_url(template: str | None, job_id: str) -> str | None:
    """The operator console link for a job; ids are URL-encoded (Bedrock ARNs contain '/')."""
    if not template:
        return None
    return template.format(job_id=quote(job_id, safe=""))


_warned_prefixes: set[tuple[str, str]] = set()


def warn_if_uncacheable(
    provider: str, model: str, request: ProviderRequest, min_tokens: int
) -> None:
    """Log once per prefix when it looks too short to be cached at all (gotcha G6).

    Providers silently skip caching below the model's minimum; the estimate here is an offline
    heuristic (Claude's tokenizer usually counts more), so treat the warning as a prompt to check
    the usage counters of a pilot batch.
    """
    key = (provider, request.prompt.prefix_key)
    estimate = estimate_tokens(request.prompt.static_prefix)
    if estimate >= min_tokens or key in _warned_prefixes:
        return
    _warned_prefixes.add(key)
    log.warning(
        "%s: static prefix %s is about %d tokens, below the %d-token minimum that %s caches; "
        "expect no cache writes or reads",
        provider,
        request.prompt.prefix_key,
        estimate,
        min_tokens,
        model,
    )


def single_model(provider: str, default: str, requests: Sequence[ProviderRequest]) -> str:
    """The one model of a batch (OpenAI files and Bedrock jobs carry exactly one)."""
    models = {request.model or default for request in requests}
    if len(models) != 1:
        raise ValueError(f"{provider}: one batch must use one model, got {sorted(models)}")
    return models.pop()
