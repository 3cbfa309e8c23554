"""A small Python client for the intake API (httpx).

    from memo_pipeline.client import MemoClient

    with MemoClient("http://127.0.0.1:8080", api_key) as client:
        event = client.memorize("Dana runs procurement at Northwind.", execution_mode="bulk")
        client.wait(event["event_id"])

Every write carries an ``Idempotency-Key`` (generated unless given), so the client retries a
write that hit a rate limit (429, honouring Retry-After), a 503/504 or a refused connection without
creating a second event. Errors raise ``MemoApiError`` with the API's ``error`` and ``field``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

FINAL = ("stored", "failed")


class MemoApiError(RuntimeError):
    def __init__(self, status: int, error: str, field: str | None, body: Any = None) -> None:
        super().__init__(f"HTTP {status}: {error}" + (f" (field {field})" if field else ""))
        self.status = status
        self.error = error
        self.field = field
        self.body = body


class _Retryable(Exception):
    def __init__(self, response: httpx.Response | None, cause: Exception | None = None) -> None:
        super().__init__(str(cause) if cause else f"HTTP {response.status_code}")
        self.response = response
        self.retry_after: float | None = None
        if response is not None:
            try:
                self.retry_after = float(response.headers.get("retry-after", ""))
            except ValueError:
                self.retry_after = None


def _wait(ceiling: float):
    fallback = wait_exponential_jitter(multiplier=0.5, max=ceiling)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, ceiling)
        return fallback(state)

    return wait


def _iso(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


class MemoClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 120.0,
        max_attempts: int = 6,
        max_wait: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )
        self.max_attempts = max_attempts
        self.max_wait = max_wait

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MemoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        def once() -> httpx.Response:
            try:
                response = self._http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                raise _Retryable(None, exc) from exc
            if response.status_code in (429, 503, 504):
                raise _Retryable(response)
            return response

        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            wait=_wait(self.max_wait),
            stop=stop_after_attempt(self.max_attempts),
            reraise=True,
        )
        try:
            response = retrying(once)
        except _Retryable as exc:
            if exc.response is None:
                raise
            response = exc.response
        if response.status_code == 204:
            return None
        try:
            body = response.json() if response.content else None
        except ValueError:
            raise MemoApiError(
                response.status_code, f"not a JSON answer: {response.text[:200]!r}", None
            ) from None
        if response.status_code >= 400:
            error = body.get("error", response.text) if isinstance(body, dict) else response.text
            field = body.get("field") if isinstance(body, dict) else None
            raise MemoApiError(response.status_code, error, field, body)
        return body

    def memorize(
        self,
        content: str,
        *,
        execution_mode: str = "async",
        identifier: str | None = None,
        collection: str | None = None,
        deadline: datetime | str | None = None,
        source_ts: datetime | str | None = None,
        title: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Store one piece of content. ``sync`` returns the stored result, else the event id."""
        body = {
            "content": content,
            "execution_mode": execution_mode,
            "identifier": identifier,
            "collection": collection,
            "deadline": _iso(deadline),
            "source_ts": _iso(source_ts),
            "title": title,
        }
        return self._request(
            "POST",
            "/v1/memorize",
            json={k: v for k, v in body.items() if v is not None},
            headers={"idempotency-key": idempotency_key or uuid.uuid4().hex},
        )

    def save_batch(
        self,
        documents: Iterable[Mapping[str, Any]],
        *,
        ai_extraction: bool = True,
        execution_mode: str = "async",
        collection: str | None = None,
        deadline: datetime | str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Save documents ({id?, title?, content, source_ts?}); one event for the batch."""
        body: dict[str, Any] = {
            "documents": [dict(d) for d in documents],
            "aiExtraction": ai_extraction,
            "execution_mode": execution_mode,
        }
        if collection:
            body["collection"] = collection
        if deadline:
            body["deadline"] = _iso(deadline)
        return self._request(
            "POST",
            "/v1/context/saveBatch",
            json=body,
            headers={"idempotency-key": idempotency_key or uuid.uuid4().hex},
        )

    def event(self, event_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/events/{event_id}")

    def wait(self, event_id: str, timeout: float = 600.0, interval: float = 1.0) -> dict[str, Any]:
        """Poll an event until it is stored or failed; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.event(event_id)
            if event["status"] in FINAL:
                return event
            if time.monotonic() > deadline:
                raise TimeoutError(f"event {event_id} is still {event['status']}")
            time.sleep(interval)

    def entity(self, entity_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/entities/{entity_id}")

    def memories(
        self, *, entity_id: str | None = None, identifier: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        params = {"entity_id": entity_id, "identifier": identifier, "limit": limit}
        body = self._request(
            "GET", "/v1/memories", params={k: v for k, v in params.items() if v is not None}
        )
        return body["memories"]

    def set_webhook(self, url: str, secret: str | None = None) -> dict[str, Any]:
        """Set the org's endpoint; the answer holds the signing secret (shown once)."""
        body = {"url": url} | ({"secret": secret} if secret else {})
        return self._request("PUT", "/v1/webhook", json=body)

    def deliveries(self, event_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if event_id:
            params["event_id"] = event_id
        return self._request("GET", "/v1/webhook/deliveries", params=params)["deliveries"]
