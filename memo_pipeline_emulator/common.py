"""Helpers shared by the emulator's provider modules: responses, ids, ordering, answers."""

from __future__ import annotations

import hashlib
import itertools
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from memo_pipeline.providers.extractor import answer_for_prompt
from memo_pipeline_emulator.caching import estimate_tokens
from memo_pipeline_emulator.faults import FaultRule

REFUSAL_TEXT = "I can't help with that request."


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data), status_code=status, media_type="application/json", headers=headers
    )


async def json_body(request: Request) -> Any:
    """The request body as JSON, or None when it is not JSON."""
    raw = await request.body()
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


_counter = itertools.count(1)


def new_id(prefix: str, length: int = 24) -> str:
    """A unique id; a counter keeps ids of one run sortable by creation."""
    return f"{prefix}{next(_counter):06d}{secrets.token_hex(length)[: max(0, length - 6)]}"


def result_order(ids: list[str], salt: str = "") -> list[int]:
    """Indexes of ``ids`` in a deterministic shuffled order that is never the input order.

    Real providers return results out of order (gotcha G1); a consumer that zips results with
    inputs must fail here every time, not by chance.
    """
    order = sorted(
        range(len(ids)), key=lambda i: hashlib.sha256(f"{salt}\x1f{ids[i]}".encode()).digest()
    )
    if len(order) > 1 and order == list(range(len(order))):
        order = order[1:] + order[:1]
    return order


@dataclass(frozen=True)
class Answer:
    """What the emulated model said: text, a neutral stop reason and output tokens."""

    text: str
    stop: str  # "end" | "max_tokens" | "refusal"
    output_tokens: int


def make_answer(prompt_text: str, max_tokens: int, fault: FaultRule | None = None) -> Answer:
    """The offline extractor's answer to a prompt, shaped by an item fault if one applies.

    Answers longer than ``max_tokens`` (by the token estimate) are cut off, as a real model's
    would be.
    """
    if fault is not None and fault.kind == "refusal":
        return Answer(REFUSAL_TEXT, "refusal", estimate_tokens(REFUSAL_TEXT))
    full = answer_for_prompt(prompt_text)
    if fault is not None and fault.kind == "invalid_json":
        text = "Here are the extracted memories:\n" + full.replace('"', "'")
        return Answer(text, "end", max(1, estimate_tokens(text)))
    if fault is not None and fault.kind == "max_tokens":
        cut = max(1, min(len(full) // 2, max_tokens * 4))
        return Answer(full[:cut], "max_tokens", max(1, min(max_tokens, estimate_tokens(full))))
    if estimate_tokens(full) > max_tokens:
        return Answer(full[: max_tokens * 4], "max_tokens", max_tokens)
    return Answer(full, "end", max(1, estimate_tokens(full)))


def progress_done(request_id: str, started: float, ends: float, now: float) -> bool:
    """Whether a request of a job stopped early (cancel) had already finished.

    Requests finish in a stable pseudo-random order spread over the job's run time, so a cancel
    halfway through leaves about half of them done.
    """
    if ends <= started:
        return True
    share = (now - started) / (ends - started)
    digest = hashlib.sha256(f"progress\x1f{request_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share
