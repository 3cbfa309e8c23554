"""The HTTP intake API (FastAPI). Thin: every decision is made in ``memo_pipeline.intake``.

Every route but ``/healthz`` and the OpenAPI document needs an API key (``Authorization: Bearer
<key>`` or ``X-API-Key``) and acts only inside the key's org: another org's event, entity or
memory answers 404, and a body naming another org answers 403. Errors are
``{"error": ..., "field": ...}`` with the offending field where there is one.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memo_pipeline.api.schemas import (
    ErrorBody,
    EventAccepted,
    EventView,
    MemorizeRequest,
    SaveBatchRequest,
    WebhookRequest,
    WebhookSet,
)
from memo_pipeline.intake.events import DocumentIn, WriteIn
from memo_pipeline.intake.netguard import WebhookUrlRefused
from memo_pipeline.intake.service import IntakeService
from memo_pipeline.records import MAX_CONTENT_BYTES, text_problem

log = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 413, 422, 429, 502)
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.field = field
        self.headers = headers


def _error(
    status: int, error: str, field: str | None, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"error": error, "field": field, **extra}, status, headers=headers)


def _field_name(loc: tuple[Any, ...]) -> str | None:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or None


class BodyLimit:
    """Refuses a request body over ``limit`` bytes with 413, before the app parses it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send, int(declared))
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(scope, receive, send, size)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: int) -> None:
        response = _error(
            413, f"request body is over the limit of {self.limit} bytes ({size} so far)", "body"
        )
        await response(scope, receive, send)


def caller(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> str:
    """The caller's org, from its API key; 401 without a live key, 429 over the rate limit."""
    service: IntakeService = request.app.state.service
    key = x_api_key
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(401, "use 'Authorization: Bearer <key>'", "authorization")
        key = value.strip()
    if not key:
        raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", "authorization")
    org = service.authenticate(key)
    if org is None:
        raise ApiError(401, "invalid, expired or revoked API key", "authorization")
    wait = service.retry_after(org)
    if wait > 0:
        seconds = str(max(1, math.ceil(wait))) if math.isfinite(wait) else "3600"
        raise ApiError(
            429,
            f"rate limit of org {org} exceeded; retry after {seconds}s",
            None,
            headers={"Retry-After": seconds},
        )
    return org


Org = Annotated[str, Depends(caller)]


def create_app(service: IntakeService) -> FastAPI:
    app = FastAPI(
        title="memo_pipeline intake",
        version="1",
        description=(
            "Writes with execution_mode sync | async | bulk into one ledger and one Stage 2. "
            "Authenticate with 'Authorization: Bearer <key>' (memo-pipeline keys create)."
        ),
    )

    app.state.service = service

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.field, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            return _error(400, "request body is not valid JSON", "body")
        if tuple(first.get("loc", ())) == ("body",) and first.get("type") in (
            "model_attributes_type",
            "dict_type",
        ):
            return _error(400, "request body must be a JSON object", "body")
        field = _field_name(tuple(first.get("loc", ()))) or "body"
        details = [
            {"field": _field_name(tuple(e.get("loc", ()))) or "body", "error": e.get("msg")}
            for e in errors
        ]
        message = str(first.get("msg", "invalid"))
        if first.get("type") == "missing":
            message = "is required"
        elif first.get("type") == "extra_forbidden":
            message = "is not a known field"
        return _error(422, f"{field}: {message}", field, errors=details)

    def check_text(field: str, value: str | None) -> None:
        if value is not None and (problem := text_problem(value)):
            raise ApiError(422, f"{field}: {problem}", field)

    def check_scope(org: str, named: str | None) -> None:
        if named is not None and named != org:
            raise ApiError(403, f"this key belongs to org {org!r}, not {named!r}", "org")

    def check_collection(org: str, collection: str) -> None:
        collections = service.runtime.orgs[org].collections
        if collection not in collections:
            known = ", ".join(sorted(collections))
            raise ApiError(
                422, f"unknown collection {collection!r} (org {org} has {known})", "collection"
            )

    def check_size(content: str, field: str) -> None:
        size = len(content.encode())
        limit = min(service.config.max_content_bytes, MAX_CONTENT_BYTES)
        if size > limit:
            raise ApiError(413, f"{field} is {size} bytes, over the limit of {limit}", field)

    def respond(org: str, write: WriteIn) -> Response:
        """200 with the stored result for a sync write that finished in time, else 202."""
        accepted = service.accept(write)
        status = accepted.status
        if write.execution_mode == "sync" and accepted.created:
            outcome = service.run_sync(org, accepted.event_id)
            view = outcome.view or {}
            status = view.get("status", status)
            if outcome.done and status == "stored":
                return JSONResponse(EventView.model_validate(view).model_dump(mode="json"), 200)
            if outcome.done and status == "failed":
                error = f"extraction failed: {view.get('reason')}"
                return _error(502, error, None, event_id=accepted.event_id)
        body = EventAccepted(
            event_id=accepted.event_id,
            status=status,
            execution_mode=write.execution_mode,
            escalation=accepted.escalation,
            created=accepted.created,
        )
        return JSONResponse(body.model_dump(mode="json"), 202)

    @app.post(
        "/v1/memorize",
        status_code=202,
        responses={200: {"model": EventView}, 202: {"model": EventAccepted}, **ERRORS},
        summary="Memorize one piece of content",
    )
    def memorize(
        body: MemorizeRequest,
        org: Org,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> Response:
        """``sync`` answers 200 with what was stored; ``async`` and ``bulk`` answer 202 with an
        event id to follow at ``/v1/events/{id}``. The write is committed before the answer."""
        check_scope(org, body.org)
        check_collection(org, body.collection)
        check_size(body.content, "content")
        write = WriteIn(
            org=org,
            kind="memorize",
            execution_mode=body.execution_mode,
            collection=body.collection,
            documents=[DocumentIn(body.content, None, body.title, body.source_ts)],
            identifier=body.identifier,
            deadline=body.deadline,
            idempotency_key=idempotency_key,
        )
        return respond(org, write)

    @app.post(
        "/v1/context/saveBatch",
        status_code=202,
        responses={200: {"model": EventView}, 202: {"model": EventAccepted}, **ERRORS},
        summary="Save a batch of documents",
    )
    def save_batch(
        body: SaveBatchRequest,
        org: Org,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> Response:
        """With ``aiExtraction`` the documents are extracted with the document prompt; without,
        they are chunked and embedded as memories of a document entity. One event per call."""
        check_scope(org, body.org)
        check_collection(org, body.collection)
        limit = service.config.max_batch_documents
        if len(body.documents) > limit:
            raise ApiError(
                413,
                f"documents holds {len(body.documents)} items, over the limit of {limit}",
                "documents",
            )
        for index, doc in enumerate(body.documents):
            check_size(doc.content, f"documents[{index}].content")
        ids = [d.id for d in body.documents if d.id]
        if len(ids) != len(set(ids)):
            raise ApiError(422, "documents: two documents share an id", "documents")
        write = WriteIn(
            org=org,
            kind="save_batch",
            execution_mode=body.execution_mode,
            collection=body.collection,
            documents=[DocumentIn(d.content, d.id, d.title, d.source_ts) for d in body.documents],
            identifier=body.identifier,
            ai_extraction=body.ai_extraction,
            deadline=body.deadline,
            idempotency_key=idempotency_key,
        )
        return respond(org, write)

    @app.get("/v1/events/{event_id}", response_model=EventView, responses=ERRORS)
    def get_event(event_id: str, org: Org) -> Any:
        """Status history with timestamps, the stored result, and errors."""
        check_text("event_id", event_id)
        view = service.event(org, event_id)
        if view is None:
            raise ApiError(404, f"no event {event_id} in org {org}", "event_id")
        return view

    @app.get("/v1/entities/{entity_id}", responses=ERRORS)
    def get_entity(entity_id: str, org: Org) -> Any:
        """An entity with its identifiers, current properties, edges and latest memories."""
        check_text("entity_id", entity_id)
        entity = service.entity(org, entity_id)
        if entity is None:
            raise ApiError(404, f"no entity {entity_id} in org {org}", "entity_id")
        return entity

    @app.get("/v1/memories", responses=ERRORS)
    def list_memories(
        org: Org,
        entity_id: str | None = None,
        identifier: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        """Memories of the org, of one entity (by id or by an identifier such as an e-mail)."""
        check_text("entity_id", entity_id)
        check_text("identifier", identifier)
        return {"memories": service.memories(org, entity_id, identifier, limit)}

    @app.put("/v1/webhook", response_model=WebhookSet, responses=ERRORS)
    def put_webhook(body: WebhookRequest, org: Org) -> Any:
        """Set the org's endpoint. The signing secret is in this answer only."""
        try:
            secret = service.set_webhook(org, body.url, body.secret)
        except WebhookUrlRefused as exc:
            raise ApiError(422, str(exc), "url") from None
        except ValueError as exc:
            raise ApiError(422, f"secret: {exc}", "secret") from None
        return {"url": body.url, "secret": secret}

    @app.get("/v1/webhook", responses=ERRORS)
    def get_webhook(org: Org) -> Any:
        return service.webhook(org)

    @app.delete("/v1/webhook", status_code=204, responses=ERRORS)
    def delete_webhook(org: Org) -> Response:
        service.clear_webhook(org)
        return Response(status_code=204)

    @app.get("/v1/webhook/deliveries", responses=ERRORS)
    def get_deliveries(
        org: Org,
        event_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Any:
        """The delivery log, newest first: one row per attempt with its HTTP status or error."""
        check_text("event_id", event_id)
        return {"deliveries": service.deliveries(org, event_id, limit)}

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(BodyLimit, limit=service.config.max_body_bytes)
    return app
