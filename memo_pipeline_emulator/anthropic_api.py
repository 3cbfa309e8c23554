"""Emulated Anthropic Messages API and Message Batches API.

Implements what ``anthropic.Anthropic().messages`` and ``.messages.batches`` call: create,
retrieve, list (newest first, ``after_id``/``before_id``/``limit`` paging), cancel, delete,
the JSONL results stream behind ``results_url``, and the synchronous ``POST /v1/messages``.
Per-request ``params`` are validated when the batch runs, as the real service does: a malformed
request comes back ``errored``; a bad ``custom_id`` fails the whole create with a 400 (G2).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from memo_pipeline_emulator.caching import Breakpoint, CacheUse, estimate_tokens
from memo_pipeline_emulator.common import (
    Answer,
    iso,
    json_body,
    json_response,
    make_answer,
    new_id,
    progress_done,
    result_order,
)
from memo_pipeline_emulator.faults import ERROR_STATUS, FaultRule

if TYPE_CHECKING:
    from memo_pipeline_emulator.server import EmulatorState

CUSTOM_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
BATCH_WINDOW_SECONDS = 24 * 3600.0
ITEM_FAULTS = ("expired", "error", "max_tokens", "invalid_json", "refusal")
SYNC_FAULTS = ("error", "max_tokens", "invalid_json", "refusal")
STOP_REASONS = {"end": "end_turn", "max_tokens": "max_tokens", "refusal": "refusal"}
VALID_TTLS = {"5m", "1h"}


def error_body(error_type: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": new_id("req_emu"),
    }


def error_response(
    error_type: str, message: str, status: int | None = None, retry_after: float | None = None
) -> Response:
    headers = {}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    return json_response(
        error_body(error_type, message), status or ERROR_STATUS.get(error_type, 500), headers
    )


def fault_response(state: EmulatorState, fault: FaultRule) -> Response:
    error_type = fault.error_type or "api_error"
    retry_after = None
    if fault.status == 429:
        retry_after = (
            fault.retry_after if fault.retry_after is not None else state.config.retry_after_seconds
        )
    message = fault.message or f"emulated {error_type}"
    return error_response(error_type, message, fault.status, retry_after)


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def validate_params(params: Any, *, in_batch: bool) -> str | None:
    """The first problem with a Messages request body, worded like the API, or None."""
    if not isinstance(params, dict):
        return "params: Input should be a valid dictionary"
    if not isinstance(params.get("model"), str) or not params["model"]:
        return "model: Field required"
    max_tokens = params.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        return "max_tokens: Field required"
    if max_tokens < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    messages = params.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: Field required"
    if in_batch and params.get("stream"):
        return "stream: streaming is not supported for requests in a Message Batch"
    breakpoints = 0
    system = params.get("system")
    blocks: list[dict[str, Any]] = []
    if isinstance(system, list):
        blocks.extend(b for b in system if isinstance(b, dict))
    elif system is not None and not isinstance(system, str):
        return "system: Input should be a valid string or list of text blocks"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        blocks.extend(_content_blocks(message.get("content")))
    for block in blocks:
        control = block.get("cache_control")
        if control is None:
            continue
        breakpoints += 1
        if control.get("type") != "ephemeral" or control.get("ttl", "5m") not in VALID_TTLS:
            return "cache_control: Input should be {'type': 'ephemeral', 'ttl': '5m' | '1h'}"
    if breakpoints > 4:
        return "A maximum of 4 blocks with cache_control may be provided. Found " + str(breakpoints)
    output_config = params.get("output_config")
    if output_config is not None:
        fmt = output_config.get("format") if isinstance(output_config, dict) else None
        if fmt is not None and (
            fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict)
        ):
            return "output_config.format: expected {'type': 'json_schema', 'schema': {...}}"
    return None


def prompt_parts(params: dict[str, Any]) -> tuple[str, str, Breakpoint | None]:
    """(text for the extractor, all prompt text, breakpoint) of a Messages request.

    The extractor sees the system text followed by the user text, as rendered. The breakpoint is
    the last block carrying ``cache_control`` (or the last block under top-level automatic
    caching); its prefix is every block up to it, in ``system -> messages`` order. One breakpoint
    is modelled; requests with several are cached at their last one.
    """
    system = params.get("system")
    blocks: list[tuple[str, dict[str, Any] | None, str]] = []
    if isinstance(system, str):
        blocks.append((system, None, "system"))
    elif isinstance(system, list):
        blocks.extend((b.get("text", ""), b.get("cache_control"), "system") for b in system)
    for message in params.get("messages", []):
        for block in _content_blocks(message.get("content")):
            text = block.get("text", "") if block.get("type") == "text" else ""
            blocks.append((text, block.get("cache_control"), message.get("role", "user")))

    extractor_text = "".join(text for text, _, role in blocks if role in ("system", "user"))
    all_text = "".join(text for text, _, _ in blocks)
    marked = [i for i, (_, control, _) in enumerate(blocks) if control]
    automatic = params.get("cache_control")
    if marked:
        last = marked[-1]
        control = blocks[last][1] or {}
    elif isinstance(automatic, dict) and blocks:
        last = len(blocks) - 1
        control = automatic
    else:
        return extractor_text, all_text, None
    salt = orjson.dumps(
        {
            "model": params.get("model"),
            "tools": params.get("tools"),
            "tool_choice": params.get("tool_choice"),
            "output_config": params.get("output_config"),
        },
        option=orjson.OPT_SORT_KEYS,
    ).decode()
    prefix = "".join(text for text, _, _ in blocks[: last + 1])
    return extractor_text, all_text, Breakpoint(prefix, control.get("ttl", "5m"), salt)


def anthropic_usage(use: CacheUse, output_tokens: int, tier: str | None) -> dict[str, Any]:
    """Anthropic usage: ``input_tokens`` is the uncached part; writes are split by TTL."""
    usage: dict[str, Any] = {
        "input_tokens": use.uncached_tokens,
        "cache_creation_input_tokens": use.write_tokens,
        "cache_read_input_tokens": use.read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": use.write_tokens if use.write_ttl == "5m" else 0,
            "ephemeral_1h_input_tokens": use.write_tokens if use.write_ttl == "1h" else 0,
        },
        "output_tokens": output_tokens,
    }
    if tier is not None:
        usage["service_tier"] = tier
    return usage


def message_body(model: str, answer: Answer, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": new_id("msg_emu"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": answer.text}],
        "stop_reason": STOP_REASONS[answer.stop],
        "stop_sequence": None,
        "usage": usage,
    }


def run_messages_request(
    state: EmulatorState,
    params: dict[str, Any],
    fault: FaultRule | None,
    *,
    namespace: str,
    tier: str | None,
    deferred: list[CacheUse] | None,
) -> dict[str, Any]:
    """Answer one validated Messages body; cache writes go to ``deferred`` when batching."""
    extractor_text, all_text, breakpoint_ = prompt_parts(params)
    total = estimate_tokens(all_text)
    minimum = state.min_cacheable(params["model"])
    if deferred is None:
        use = state.cache.use(namespace, breakpoint_, total, minimum)
    else:
        use = state.cache.plan(namespace, breakpoint_, total, minimum)
        deferred.append(use)
    answer = make_answer(extractor_text, params["max_tokens"], fault)
    return message_body(params["model"], answer, anthropic_usage(use, answer.output_tokens, tier))


@dataclass
class AnthropicBatch:
    id: str
    seq: int
    created_at: float
    end_at: float
    expires_at: float
    requests: list[dict[str, Any]]
    crlf_split: bool = False
    processing_status: str = "in_progress"
    ended_at: float | None = None
    cancel_initiated_at: float | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)


class AnthropicStore:
    """Batches of one emulator; every method runs under the emulator lock."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.batches: dict[str, AnthropicBatch] = {}
        self._seq = 0

    def reset(self) -> None:
        self.batches.clear()

    def tick(self, now: float) -> None:
        due = [
            b
            for b in self.batches.values()
            if b.processing_status == "canceling"
            or (b.processing_status == "in_progress" and now >= min(b.end_at, b.expires_at))
        ]
        # Oldest first, so a priming batch's cache writes land before later batches run.
        for batch in sorted(due, key=lambda b: (min(b.end_at, b.expires_at), b.seq)):
            self._finish(batch, now)

    def _finish(self, batch: AnthropicBatch, now: float) -> None:
        faults = self.state.faults
        canceling = batch.processing_status == "canceling"
        window_closed = not canceling and batch.end_at > batch.expires_at
        deferred: list[CacheUse] = []
        lines = []
        for request in batch.requests:
            custom_id = request["custom_id"]
            result: dict[str, Any]
            if window_closed:
                result = {"type": "expired"}
            elif canceling and not progress_done(
                custom_id, batch.created_at, batch.end_at, batch.cancel_initiated_at or now
            ):
                result = {"type": "canceled"}
            else:
                result = self._run_item(
                    request, faults.find("anthropic", "batch", custom_id, ITEM_FAULTS), deferred
                )
            lines.append({"custom_id": custom_id, "result": result})
        self.state.cache.commit(deferred)
        order = result_order([line["custom_id"] for line in lines], batch.id)
        batch.lines = [lines[i] for i in order]
        batch.processing_status = "ended"
        batch.ended_at = now

    def _run_item(
        self, request: dict[str, Any], fault: FaultRule | None, deferred: list[CacheUse]
    ) -> dict[str, Any]:
        if fault is not None and fault.kind == "expired":
            return {"type": "expired"}
        if fault is not None and fault.kind == "error":
            message = fault.message or f"emulated {fault.error_type}"
            return {
                "type": "errored",
                "error": error_body(fault.error_type or "api_error", message),
            }
        params = request.get("params")
        problem = validate_params(params, in_batch=True)
        if problem is not None:
            return {"type": "errored", "error": error_body("invalid_request_error", problem)}
        message = run_messages_request(
            self.state, params, fault, namespace="anthropic-batch", tier="batch", deferred=deferred
        )
        return {"type": "succeeded", "message": message}

    def create(
        self, requests: list[dict[str, Any]], delay: float, extra: float, crlf: bool
    ) -> AnthropicBatch:
        now = self.state.clock.now()
        self._seq += 1
        batch = AnthropicBatch(
            id=new_id("msgbatch_emu"),
            seq=self._seq,
            created_at=now,
            end_at=now + delay + extra,
            expires_at=now + BATCH_WINDOW_SECONDS,
            requests=requests,
            crlf_split=crlf,
        )
        self.batches[batch.id] = batch
        return batch

    def listing(self) -> list[AnthropicBatch]:
        return sorted(self.batches.values(), key=lambda b: b.seq, reverse=True)


def batch_json(batch: AnthropicBatch, base_url: str) -> dict[str, Any]:
    counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    if batch.processing_status == "ended":
        for line in batch.lines:
            counts[line["result"]["type"]] += 1
    else:
        counts["processing"] = len(batch.requests)
    ended = batch.processing_status == "ended"
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": batch.processing_status,
        "request_counts": counts,
        "created_at": iso(batch.created_at),
        "expires_at": iso(batch.expires_at),
        "ended_at": iso(batch.ended_at),
        "cancel_initiated_at": iso(batch.cancel_initiated_at),
        "archived_at": None,
        "results_url": f"{base_url}/v1/messages/batches/{batch.id}/results" if ended else None,
    }


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _authenticated(request: Request) -> bool:
    return bool(request.headers.get("x-api-key") or request.headers.get("authorization"))


def _unauthenticated() -> Response:
    return error_response("authentication_error", "x-api-key header is required", 401)


def crlf_split_chunks(lines: list[bytes], chunk_size: int) -> Iterator[bytes]:
    """JSONL with ``\\r\\n`` line ends, each ``\\r`` the last byte of a ``chunk_size`` chunk.

    Lines are padded with spaces (valid JSON whitespace) so every ``\\r`` falls on a chunk
    boundary of the SDK's fixed-size reader, and each HTTP chunk also ends between ``\\r`` and
    ``\\n``: the split-CRLF stream of gotcha G3.
    """
    offset = 0
    pending = b""
    for line in lines:
        pad = (chunk_size - 1 - (offset + len(line))) % chunk_size
        piece = line + b" " * pad + b"\r"
        offset += len(piece)
        yield pending + piece
        pending = b"\n"
        offset += 1
    if pending:
        yield pending


def routes(state: EmulatorState) -> list[Route]:
    store = state.anthropic
    config = state.config

    async def create_message(request: Request) -> Response:
        if not _authenticated(request):
            return _unauthenticated()
        body = await json_body(request)
        request_id = request.headers.get("x-memo-request-id")
        with state.lock:
            state.tick()
            state.count("sync_calls", "anthropic")
            fault = state.faults.find("anthropic", "sync", request_id, SYNC_FAULTS)
            if fault is not None and fault.kind == "error":
                return fault_response(state, fault)
            problem = validate_params(body, in_batch=False)
            if problem is not None:
                return error_response("invalid_request_error", problem, 400)
            message = run_messages_request(
                state, body, fault, namespace="anthropic-sync", tier="standard", deferred=None
            )
        return json_response(message)

    async def create_batch(request: Request) -> Response:
        if not _authenticated(request):
            return _unauthenticated()
        raw = await request.body()
        if len(raw) > config.anthropic_max_bytes:
            return error_response(
                "request_too_large", "Request exceeds the maximum allowed number of bytes.", 413
            )
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return error_response("invalid_request_error", "Request body is not valid JSON", 400)
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            return error_response("invalid_request_error", "requests: Field required", 400)
        if len(requests) > config.anthropic_max_requests:
            return error_response(
                "invalid_request_error",
                f"requests: List should have at most {config.anthropic_max_requests} items",
                400,
            )
        seen: set[str] = set()
        for index, item in enumerate(requests):
            problem = _custom_id_problem(item, seen)
            if problem is not None:
                return error_response("invalid_request_error", f"requests.{index}.{problem}", 400)
        ids = [item["custom_id"] for item in requests]
        delay = float(request.headers.get("x-emulator-batch-delay", config.batch_delay_seconds))
        with state.lock:
            state.tick()
            fault = state.faults.find_any("anthropic", "create", ids, ["error"])
            if fault is not None:
                return fault_response(state, fault)
            stuck = state.faults.find_any("anthropic", "batch", ids, ["stuck"])
            crlf = state.faults.find_any("anthropic", "batch", ids, ["crlf_split"])
            batch = store.create(
                requests, delay, (stuck.seconds or 0.0) if stuck else 0.0, crlf is not None
            )
            state.count("batches_created", "anthropic")
            return json_response(batch_json(batch, _base_url(request)))

    async def retrieve_batch(request: Request) -> Response:
        if not _authenticated(request):
            return _unauthenticated()
        with state.lock:
            state.tick()
            batch = store.batches.get(request.path_params["batch_id"])
            if batch is None:
                return error_response("not_found_error", "Message batch not found", 404)
            return json_response(batch_json(batch, _base_url(request)))

    async def delete_batch(request: Request) -> Response:
        if not _authenticated(request):
            return _unauthenticated()
        with state.lock:
            state.tick()
            batch = store.batches.get(request.path_params["batch_id"])
            if batch is None:
                return error_response("not_found_error", "Message batch not found", 404)
            if batch.processing_status != "ended":
                return error_response(
                    "invalid_request_error", "A batch can be deleted only after it has ended", 400
                )
            del store.batches[batch.id]
            return json_response({"id": batch.id, "type": "message_batch_deleted"})

    async def list_batches(request: Request) -> Response:
        if not _authenticated(request):
            return _unauthenticated()
        query = request.query_params
        try:
            limit = int(query.get("limit", 20))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            return error_response("invalid_request_error", "limit: must be between 1 and 1000", 400)
        with state.lock:
            state.tick()
            items = store.listing()
            ids = [b.id for b in items]
            after_id, before_id = query.get("after_id"), query.get("before_id")
            if after_id:
                start = ids.index(after_id) + 1 if after_id in ids else len(ids)
                page = items[start : start + limit]
                has_more = start + limit < len(items)
            elif before_id:
                end = ids.index(before_id) if before_id in ids else 0
                page = items[max(0, end - limit) : end]
                has_more = end - limit > 0
            else:
                page = items[:limit]
                has_more = limit < len(items)
            data = [batch_json(b, _base_url(request)) for b in page]
        return json_response(
            {
                "data": data,
                "has_more": has_more,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    async def cancel_batch(request: Request) -> Response:
        if not _authenticated(request):
            return _unauthenticated()
        with state.lock:
            state.tick()
            batch = store.batches.get(request.path_params["batch_id"])
            if batch is None:
                return error_response("not_found_error", "Message batch not found", 404)
            if batch.processing_status == "in_progress":
                batch.processing_status = "canceling"
                batch.cancel_initiated_at = state.clock.now()
            return json_response(batch_json(batch, _base_url(request)))

    async def batch_results(request: Request) -> Response:
        if not _authenticated(request):
            return _unauthenticated()
        with state.lock:
            state.tick()
            batch = store.batches.get(request.path_params["batch_id"])
            if batch is None:
                return error_response("not_found_error", "Message batch not found", 404)
            if batch.processing_status != "ended":
                return error_response(
                    "invalid_request_error", f"Batch {batch.id} is still processing", 400
                )
            encoded = [orjson.dumps(line) for line in batch.lines]
            crlf = batch.crlf_split
        if crlf:
            body: Iterator[bytes] = crlf_split_chunks(encoded, config.results_chunk_size)
        else:
            body = iter([b"".join(line + b"\n" for line in encoded)])
        return StreamingResponse(body, media_type="application/binary")

    return [
        Route("/v1/messages", create_message, methods=["POST"]),
        Route("/v1/messages/batches", create_batch, methods=["POST"]),
        Route("/v1/messages/batches", list_batches, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}", retrieve_batch, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}", delete_batch, methods=["DELETE"]),
        Route("/v1/messages/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
        Route("/v1/messages/batches/{batch_id}/results", batch_results, methods=["GET"]),
    ]


def _custom_id_problem(item: Any, seen: set[str]) -> str | None:
    if not isinstance(item, dict):
        return "custom_id: Field required"
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str):
        return "custom_id: Field required"
    if len(custom_id) > 64:
        return "custom_id: String should have at most 64 characters"
    if not custom_id:
        return "custom_id: String should have at least 1 character"
    if not CUSTOM_ID_RE.match(custom_id):
        return "custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'"
    if custom_id in seen:
        return f"custom_id: '{custom_id}' is not unique within the batch"
    seen.add(custom_id)
    if "params" not in item:
        return "params: Field required"
    return None
