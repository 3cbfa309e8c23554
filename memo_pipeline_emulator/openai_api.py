"""Emulated OpenAI Files, Batch and Chat Completions APIs.

Implements what ``openai.OpenAI().files`` / ``.batches`` / ``.chat.completions`` call. Batch
validation follows the documented behaviour: the upload must be ``.jsonl``; lines missing
``method``, a ``url`` other than the batch endpoint, a second model, a repeated ``custom_id``
(G7) or bad JSON make the batch ``failed`` with line-numbered ``errors`` rather than failing the
create call. Output and error files are written the way the service writes them: successes in
the output file, failed requests (``response.status_code`` != 200, or ``error`` with
``batch_expired``/``batch_cancelled``) in the error file, and a batch whose every request failed
ends ``completed`` with no output file (G8).

Caching (an assumption: OpenAI documents no batch-specific cache behaviour): sync calls and batch
lines share one cache, and a batch runs its lines in input order, so the first line of a prefix
writes and the following lines read. Hits come in 128-token steps past the 1,024-token floor, and
``prompt_tokens`` includes both cached and written tokens, as the API reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from memo_pipeline_emulator.caching import Breakpoint, CacheUse, estimate_tokens
from memo_pipeline_emulator.common import (
    json_body,
    json_response,
    make_answer,
    new_id,
    progress_done,
    result_order,
)
from memo_pipeline_emulator.faults import FaultRule

if TYPE_CHECKING:
    from memo_pipeline_emulator.server import EmulatorState

ENDPOINTS = {
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
}
BATCH_WINDOW_SECONDS = 24 * 3600
ITEM_FAULTS = ("expired", "error", "max_tokens", "invalid_json", "refusal", "output_4xx")
SYNC_FAULTS = ("error", "max_tokens", "invalid_json", "refusal")
CACHE_ROUND = 128
OPENAI_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "overloaded"),
}
STATUS_FOR_ANTHROPIC_NAME = {529: 503}


def error_payload(message: str, status: int, param: str | None = None) -> dict[str, Any]:
    error_type, code = OPENAI_ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_response(
    message: str, status: int, param: str | None = None, retry_after: float | None = None
) -> Response:
    headers = {}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    return json_response(error_payload(message, status, param), status, headers)


def _fault_status(fault: FaultRule) -> int:
    status = fault.status or 500
    return STATUS_FOR_ANTHROPIC_NAME.get(status, status)


def validate_chat_body(body: Any) -> tuple[str, str | None] | None:
    """The first problem with a chat completions body as (message, param), or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object", None
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter", "model"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "Missing required parameter: 'messages'.", "messages"
    fmt = body.get("response_format")
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") not in (
            "text",
            "json_object",
            "json_schema",
        ):
            return "Invalid value for 'response_format.type'.", "response_format"
        if fmt.get("type") == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                return (
                    "Missing required parameter: 'response_format.json_schema.name'.",
                    "response_format",
                )
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and (not isinstance(value, int) or value < 1):
            return f"Invalid '{key}': integer below minimum value.", key
    return None


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def chat_prompt(body: dict[str, Any]) -> tuple[str, str, Breakpoint]:
    """(text for the extractor, all prompt text, implicit-cache breakpoint).

    OpenAI caches exact prompt prefixes automatically. The model here: the shared prefix is the
    leading system/developer messages; requests share an entry only with the same model,
    ``prompt_cache_key`` (which routes requests to the same cache) and response format.
    """
    messages = body["messages"]
    texts = [
        (m.get("role"), _message_text(m.get("content"))) for m in messages if isinstance(m, dict)
    ]
    extractor_text = "".join(t for role, t in texts if role in ("system", "developer", "user"))
    all_text = "".join(t for _, t in texts)
    prefix = ""
    for role, text in texts:
        if role not in ("system", "developer"):
            break
        prefix += text
    salt = orjson.dumps(
        {
            "model": body.get("model"),
            "prompt_cache_key": body.get("prompt_cache_key"),
            "response_format": body.get("response_format"),
            "tools": body.get("tools"),
        },
        option=orjson.OPT_SORT_KEYS,
    ).decode()
    return extractor_text, all_text, Breakpoint(prefix, "30m", salt)


def run_chat(state: EmulatorState, body: dict[str, Any], fault: FaultRule | None) -> dict[str, Any]:
    """A chat.completion for a validated body; prompt caching as modelled in ``chat_prompt``."""
    extractor_text, all_text, breakpoint_ = chat_prompt(body)
    total = estimate_tokens(all_text)
    minimum = state.min_cacheable(body["model"])
    use: CacheUse = state.cache.use(
        "openai",
        breakpoint_ if breakpoint_.prefix_text else None,
        total,
        minimum,
        round_to=CACHE_ROUND,
    )
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 16384
    answer = make_answer(extractor_text, max_tokens, fault)
    refused = answer.stop == "refusal"
    prompt_tokens = use.uncached_tokens + use.read_tokens + use.write_tokens
    return {
        "id": new_id("chatcmpl-emu"),
        "object": "chat.completion",
        "created": int(state.clock.now()),
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None if refused else answer.text,
                    "refusal": answer.text if refused else None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "length" if answer.stop == "max_tokens" else "stop",
            }
        ],
        "usage": {
            # prompt_tokens includes the cached tokens; cache writes are a subset of it too.
            "prompt_tokens": prompt_tokens,
            "completion_tokens": answer.output_tokens,
            "total_tokens": prompt_tokens + answer.output_tokens,
            "prompt_tokens_details": {
                "cached_tokens": use.read_tokens,
                "cache_write_tokens": use.write_tokens,
                "audio_tokens": 0,
            },
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": None,
    }


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": self.created_at + 30 * 86400,
            "status_details": None,
        }


@dataclass
class OpenAIBatch:
    id: str
    seq: int
    input_file_id: str
    endpoint: str
    metadata: dict[str, str] | None
    created_at: float
    end_at: float
    status: str = "validating"
    lines: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    errors: list[dict[str, Any]] | None = None
    timestamps: dict[str, float] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: {"total": 0, "completed": 0, "failed": 0}
    )
    usage: dict[str, int] = field(default_factory=dict)


class OpenAIStore:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, OpenAIBatch] = {}
        self._seq = 0

    def reset(self) -> None:
        self.files.clear()
        self.batches.clear()

    def add_file(self, filename: str, purpose: str, data: bytes) -> StoredFile:
        stored = StoredFile(
            new_id("file-emu"), filename, purpose, data, int(self.state.clock.now())
        )
        self.files[stored.id] = stored
        return stored

    def tick(self, now: float) -> None:
        for batch in sorted(self.batches.values(), key=lambda b: b.seq):
            if batch.status == "validating":
                self._validate(batch, now)
            if batch.status == "cancelling":
                self._finish(batch, now, cancelled=True)
            elif batch.status == "in_progress":
                if now >= batch.created_at + BATCH_WINDOW_SECONDS and batch.end_at > now:
                    self._finish(batch, now, window_closed=True)
                elif now >= batch.end_at:
                    self._finish(batch, now)

    def _validate(self, batch: OpenAIBatch, now: float) -> None:
        errors: list[dict[str, Any]] = []
        stored = self.files[batch.input_file_id]
        # Line numbers in errors count physical lines from 1, blank ones included.
        raw_lines = [
            (number, line)
            for number, line in enumerate(stored.data.split(b"\n"), start=1)
            if line.strip()
        ]
        limit = self.state.config.openai_max_requests
        if not raw_lines:
            errors.append(_batch_error("empty_file", "The input file is empty.", None, None))
        elif len(raw_lines) > limit:
            errors.append(
                _batch_error(
                    "too_many_tasks", f"The batch has more than {limit} requests.", None, None
                )
            )
        seen: set[str] = set()
        for number, raw in raw_lines:
            if errors and errors[0]["code"] in ("empty_file", "too_many_tasks"):
                break
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                errors.append(
                    _batch_error(
                        "invalid_json_line",
                        "This line is not parseable as valid JSON.",
                        number,
                        None,
                    )
                )
                continue
            if not isinstance(line, dict):
                errors.append(
                    _batch_error(
                        "invalid_json_line", "Each line must be a JSON object.", number, None
                    )
                )
                continue
            for key in ("custom_id", "method", "url", "body"):
                if key not in line:
                    errors.append(
                        _batch_error(
                            "missing_required_parameter",
                            f"Missing required parameter: '{key}'.",
                            number,
                            key,
                        )
                    )
                    break
            else:
                problem = self._line_problem(batch, line, number, seen)
                if problem is not None:
                    errors.append(problem)
                    continue
                batch.lines.append(line)
        if errors:
            batch.status = "failed"
            batch.errors = errors
            batch.timestamps["failed_at"] = now
            batch.lines = []
            return
        batch.counts["total"] = len(batch.lines)
        batch.status = "in_progress"
        batch.timestamps["in_progress_at"] = now

    def _line_problem(
        self, batch: OpenAIBatch, line: dict[str, Any], number: int, seen: set[str]
    ) -> dict[str, Any] | None:
        custom_id = line["custom_id"]
        if line["method"] != "POST":
            return _batch_error(
                "invalid_method", "Only POST is supported for batch requests.", number, "method"
            )
        if line["url"] != batch.endpoint:
            return _batch_error(
                "url_mismatch",
                f"The provided URL '{line['url']}' does not match the batch endpoint '{batch.endpoint}'.",
                number,
                "url",
            )
        model = line["body"].get("model") if isinstance(line["body"], dict) else None
        if batch.model is None:
            batch.model = model
        elif model != batch.model:
            return _batch_error(
                "model_mismatch",
                "All requests in a batch must use the same model.",
                number,
                "body.model",
            )
        if custom_id in seen:
            return _batch_error(
                "duplicate_custom_id",
                "The custom_id for this request is a duplicate of another request. "
                "The custom_id parameter must be unique for each request in a batch.",
                number,
                "custom_id",
            )
        seen.add(custom_id)
        return None

    def _finish(
        self,
        batch: OpenAIBatch,
        now: float,
        *,
        cancelled: bool = False,
        window_closed: bool = False,
    ) -> None:
        faults = self.state.faults
        outputs: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        expired_any = window_closed
        usage = {"input_tokens": 0, "cached_tokens": 0, "output_tokens": 0}
        for line in batch.lines:
            custom_id = str(line["custom_id"])
            if window_closed:
                failures.append(_unrun_line(custom_id, "batch_expired"))
                continue
            cancel_at = batch.timestamps.get("cancelling_at", now)
            if cancelled and not progress_done(
                custom_id, batch.created_at, batch.end_at, cancel_at
            ):
                failures.append(_unrun_line(custom_id, "batch_cancelled"))
                continue
            fault = faults.find("openai", "batch", custom_id, ITEM_FAULTS)
            if fault is not None and fault.kind == "expired":
                expired_any = True
                failures.append(_unrun_line(custom_id, "batch_expired"))
                continue
            if fault is not None and fault.kind in ("error", "output_4xx"):
                status = _fault_status(fault) if fault.kind == "error" else (fault.status or 400)
                message = fault.message or f"emulated error {status}"
                target = outputs if fault.kind == "output_4xx" else failures
                target.append(_response_line(custom_id, status, error_payload(message, status)))
                continue
            problem = validate_chat_body(line["body"])
            if problem is not None:
                failures.append(
                    _response_line(custom_id, 400, error_payload(problem[0], 400, problem[1]))
                )
                continue
            completion = run_chat(self.state, line["body"], fault)
            usage["input_tokens"] += completion["usage"]["prompt_tokens"]
            usage["cached_tokens"] += completion["usage"]["prompt_tokens_details"]["cached_tokens"]
            usage["output_tokens"] += completion["usage"]["completion_tokens"]
            outputs.append(_response_line(custom_id, 200, completion))

        batch.counts["completed"] = sum(
            1 for line in outputs if line["response"]["status_code"] == 200
        )
        batch.counts["failed"] = len(batch.lines) - batch.counts["completed"]
        batch.usage = usage
        if outputs:
            batch.output_file_id = self._write_result_file(batch, "output", outputs)
        if failures:
            batch.error_file_id = self._write_result_file(batch, "error", failures)
        if cancelled:
            batch.status = "cancelled"
            batch.timestamps["cancelled_at"] = now
        elif expired_any:
            batch.status = "expired"
            batch.timestamps["expired_at"] = now
        else:
            batch.status = "completed"
            batch.timestamps["finalizing_at"] = now
            batch.timestamps["completed_at"] = now

    def _write_result_file(self, batch: OpenAIBatch, kind: str, lines: list[dict[str, Any]]) -> str:
        order = result_order([str(line["custom_id"]) for line in lines], batch.id)
        data = b"".join(orjson.dumps(lines[i]) + b"\n" for i in order)
        return self.add_file(f"batch_{batch.id}_{kind}.jsonl", "batch_output", data).id

    def create(
        self, input_file_id: str, endpoint: str, metadata: dict[str, str] | None, delay: float
    ) -> OpenAIBatch:
        now = self.state.clock.now()
        self._seq += 1
        batch = OpenAIBatch(
            id=new_id("batch_emu"),
            seq=self._seq,
            input_file_id=input_file_id,
            endpoint=endpoint,
            metadata=metadata,
            created_at=now,
            end_at=now + delay,
        )
        self.batches[batch.id] = batch
        return batch


def _batch_error(code: str, message: str, line: int | None, param: str | None) -> dict[str, Any]:
    return {"code": code, "message": message, "line": line, "param": param}


def _response_line(custom_id: str, status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": new_id("batch_req_emu"),
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": new_id("req_emu"), "body": body},
        "error": None,
    }


def _unrun_line(custom_id: str, code: str) -> dict[str, Any]:
    messages = {
        "batch_expired": "This request could not be executed before the completion window expired.",
        "batch_cancelled": "This request was not executed because the batch was cancelled.",
    }
    return {
        "id": new_id("batch_req_emu"),
        "custom_id": custom_id,
        "response": None,
        "error": {"code": code, "message": messages[code]},
    }


def batch_json(batch: OpenAIBatch) -> dict[str, Any]:
    stamps = {k: int(v) for k, v in batch.timestamps.items()}
    usage = batch.usage
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "model": batch.model,
        "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
        "input_file_id": batch.input_file_id,
        "completion_window": "24h",
        "status": batch.status,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": int(batch.created_at),
        "in_progress_at": stamps.get("in_progress_at"),
        "expires_at": int(batch.created_at + BATCH_WINDOW_SECONDS),
        "finalizing_at": stamps.get("finalizing_at"),
        "completed_at": stamps.get("completed_at"),
        "failed_at": stamps.get("failed_at"),
        "expired_at": stamps.get("expired_at"),
        "cancelling_at": stamps.get("cancelling_at"),
        "cancelled_at": stamps.get("cancelled_at"),
        "request_counts": dict(batch.counts),
        "metadata": batch.metadata,
        "usage": {
            "input_tokens": usage.get("input_tokens", 0),
            "input_tokens_details": {"cached_tokens": usage.get("cached_tokens", 0)},
            "output_tokens": usage.get("output_tokens", 0),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.get("input_tokens", 0) + usage.get("output_tokens", 0),
        },
    }


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form fields of a multipart/form-data body: name -> (filename, bytes)."""
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    fields: dict[str, tuple[str | None, bytes]] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        fields[str(name)] = (part.get_filename(), payload)
    return fields


def _authenticated(request: Request) -> bool:
    return request.headers.get("authorization", "").startswith("Bearer ")


def _unauthenticated() -> Response:
    return error_response("You didn't provide an API key.", 401)


def routes(state: EmulatorState) -> list[Route]:
    store = state.openai
    config = state.config

    async def upload_file(request: Request) -> Response:
        if not _authenticated(request):
            return _unauthenticated()
        body = await request.body()
        fields = parse_multipart(request.headers.get("content-type", ""), body)
        purpose = fields.get("purpose", (None, b""))[1].decode()
        filename, data = fields.get("file", (None, b""))
        if not purpose:
            return error_response("Missing required parameter: 'purpose'.", 400, "purpose")
        if filename is None:
            return error_response("Missing required parameter: 'file'.", 400, "file")
        if purpose == "batch":
            if not filename.endswith(".jsonl"):
                return error_response(
                    "Invalid file format for Batch API. Must be .jsonl", 400, "file"
                )
            if len(data) > config.openai_max_file_bytes:
                return error_response(
                    f"File is too large for the Batch API (maximum {config.openai_max_file_bytes} bytes).",
                    400,
                    "file",
                )
        with state.lock:
            stored = store.add_file(filename, purpose, data)
            return json_response(stored.as_json())

    async def retrieve_file(request: Request) -> Response:
        if not _authenticated(request):
            return _unauthenticated()
        with state.lock:
            stored = store.files.get(request.path_params["file_id"])
            if stored is None:
                return error_response("No such File object", 404, "id")
            return json_response(stored.as_json())

    async def file_content(request: Request) -> Response:
        if not _authenticated(request):
            return _unauthenticated()
        with state.lock:
            stored = store.files.get(request.path_params["file_id"])
            if stored is None:
                return error_response("No such File object", 404, "id")
            data = stored.data
        return Response(data, media_type="application/octet-stream")

    async def create_batch(request: Request) -> Response:
        if not _authenticated(request):
            return _unauthenticated()
        body = await json_body(request)
        if not isinstance(body, dict):
            return error_response("The request body must be a JSON object", 400)
        endpoint = body.get("endpoint")
        if body.get("completion_window") != "24h":
            return error_response(
                "Invalid completion_window: only '24h' is supported.", 400, "completion_window"
            )
        if endpoint not in ENDPOINTS:
            return error_response(f"Invalid endpoint: {endpoint!r}.", 400, "endpoint")
        metadata = body.get("metadata")
        if metadata is not None and (
            not isinstance(metadata, dict)
            or len(metadata) > 16
            or any(len(str(k)) > 64 or len(str(v)) > 512 for k, v in metadata.items())
        ):
            return error_response(
                "Invalid metadata: at most 16 pairs, keys 64 and values 512 characters.",
                400,
                "metadata",
            )
        delay = float(request.headers.get("x-emulator-batch-delay", config.batch_delay_seconds))
        with state.lock:
            state.tick()
            stored = store.files.get(str(body.get("input_file_id")))
            if stored is None:
                return error_response("No such File object", 404, "input_file_id")
            if stored.purpose != "batch":
                return error_response(
                    "The input file must have purpose 'batch'.", 400, "input_file_id"
                )
            ids = _custom_ids(stored.data)
            fault = state.faults.find_any("openai", "create", ids, ["error"])
            if fault is not None:
                status = _fault_status(fault)
                retry = (
                    fault.retry_after
                    if fault.retry_after is not None
                    else config.retry_after_seconds
                )
                return error_response(
                    fault.message or f"emulated error {status}",
                    status,
                    None,
                    retry if status == 429 else None,
                )
            stuck = state.faults.find_any("openai", "batch", ids, ["stuck"])
            batch = store.create(
                stored.id, endpoint, metadata, delay + ((stuck.seconds or 0.0) if stuck else 0.0)
            )
            state.count("batches_created", "openai")
            return json_response(batch_json(batch))

    async def retrieve_batch(request: Request) -> Response:
        if not _authenticated(request):
            return _unauthenticated()
        with state.lock:
            state.tick()
            batch = store.batches.get(request.path_params["batch_id"])
            if batch is None:
                return error_response("No batch found with that id", 404, "batch_id")
            return json_response(batch_json(batch))

    async def list_batches(request: Request) -> Response:
        if not _authenticated(request):
            return _unauthenticated()
        try:
            limit = int(request.query_params.get("limit", 20))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            return error_response("Invalid 'limit': must be between 1 and 100.", 400, "limit")
        with state.lock:
            state.tick()
            items = sorted(store.batches.values(), key=lambda b: b.seq, reverse=True)
            after = request.query_params.get("after")
            ids = [b.id for b in items]
            start = ids.index(after) + 1 if after in ids else (len(ids) if after else 0)
            page = items[start : start + limit]
            data = [batch_json(b) for b in page]
        return json_response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": start + limit < len(items),
            }
        )

    async def cancel_batch(request: Request) -> Response:
        if not _authenticated(request):
            return _unauthenticated()
        with state.lock:
            state.tick()
            batch = store.batches.get(request.path_params["batch_id"])
            if batch is None:
                return error_response("No batch found with that id", 404, "batch_id")
            if batch.status in ("validating", "in_progress"):
                batch.status = "cancelling"
                batch.timestamps["cancelling_at"] = state.clock.now()
            return json_response(batch_json(batch))

    async def chat_completions(request: Request) -> Response:
        if not _authenticated(request):
            return _unauthenticated()
        body = await json_body(request)
        request_id = request.headers.get("x-memo-request-id")
        with state.lock:
            state.tick()
            state.count("sync_calls", "openai")
            fault = state.faults.find("openai", "sync", request_id, SYNC_FAULTS)
            if fault is not None and fault.kind == "error":
                status = _fault_status(fault)
                retry = (
                    fault.retry_after
                    if fault.retry_after is not None
                    else config.retry_after_seconds
                )
                return error_response(
                    fault.message or f"emulated error {status}",
                    status,
                    None,
                    retry if status == 429 else None,
                )
            problem = validate_chat_body(body)
            if problem is not None:
                return error_response(problem[0], 400, problem[1])
            return json_response(run_chat(state, body, fault))

    return [
        Route("/v1/files", upload_file, methods=["POST"]),
        Route("/v1/files/{file_id}", retrieve_file, methods=["GET"]),
        Route("/v1/files/{file_id}/content", file_content, methods=["GET"]),
        Route("/v1/batches", create_batch, methods=["POST"]),
        Route("/v1/batches", list_batches, methods=["GET"]),
        Route("/v1/batches/{batch_id}", retrieve_batch, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    ]


def _custom_ids(data: bytes) -> list[str]:
    ids = []
    for raw in data.split(b"\n"):
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(line, dict) and "custom_id" in line:
            ids.append(str(line["custom_id"]))
    return ids
