"""Shared fixtures and helpers of the intake tests (test_api, test_webhooks, test_intake_*).

No tests here. The fixtures give each test the session's real PostgreSQL and LanceDB, emptied
(intake tables too), with three orgs (``acme`` and two copies of it, ``beta`` and ``gamma``)
so that tenancy and the three execution modes can be compared side by side; an
``IntakeService`` with fast worker and retry settings; and the service over real HTTP on a free
loopback port. ``Receiver`` is a real webhook endpoint that verifies signatures with
``standardwebhooks`` and can be told to fail its first N deliveries.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from memo_pipeline.api.server import ServerThread
from memo_pipeline.intake.config import IntakeConfig
from memo_pipeline.intake.crypto import SecretBox
from memo_pipeline.intake.keys import create_key
from memo_pipeline.intake.service import IntakeService

INTAKE_TABLES = [
    "intake_webhook_deliveries", "intake_outbox", "intake_event_history", "intake_event_records",
    "intake_documents", "intake_events", "intake_api_keys", "intake_orgs",
]  # fmt: skip
ORGS = ("acme", "beta", "gamma")


def fast_config(**changes: Any) -> IntakeConfig:
    values: dict[str, Any] = {
        "worker_interval_seconds": 0.1,
        "webhook_backoff_base_seconds": 0.1,
        "webhook_backoff_max_seconds": 0.3,
        "call_backoff_max_seconds": 0.2,
        "webhook_allowed_networks": frozenset({"loopback"}),
    }
    values.update(changes)
    return IntakeConfig(**values)


@pytest.fixture
def intake_runtime(runtime):
    """The session's emptied stores with orgs acme, beta and gamma (copies of acme)."""
    with runtime.connection() as conn:
        conn.execute(f"truncate {', '.join(INTAKE_TABLES)} restart identity cascade")
        conn.commit()
    original = runtime.orgs
    acme = original["acme"]
    runtime.__dict__["orgs"] = {
        name: acme if name == "acme" else acme.model_copy(update={"org": name}) for name in ORGS
    }
    try:
        yield runtime
    finally:
        runtime.__dict__["orgs"] = original


@pytest.fixture
def service(intake_runtime) -> Iterator[IntakeService]:
    svc = IntakeService(intake_runtime, fast_config(), SecretBox(Fernet.generate_key()))
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture
def server(service) -> Iterator[ServerThread]:
    with ServerThread(service) as srv:
        yield srv


def new_key(service: IntakeService, org: str) -> str:
    with service.runtime.connection() as conn:
        return create_key(conn, service.runtime.orgs, org).api_key


def http(server: ServerThread, key: str | None) -> httpx.Client:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)


def email(name: str, company: str = "northwind") -> tuple[str, str]:
    """A short e-mail and its sender's address: cheap to extract and to embed."""
    first, last = name.split()
    address = f"{first.lower()}.{last.lower()}@{company}.example"
    content = (
        f"From: {name} <{address}>\n"
        f"Hi, I'm the procurement lead at {company.title()} Traders. "
        "We plan to renew the analytics contract in March."
    )
    return content, address


SOURCE_TS = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


class Receiver:
    """A webhook endpoint: verifies every delivery; fails the first ``fail_first`` with 500."""

    def __init__(self, fail_first: int = 0) -> None:
        self.secret: str | None = None
        self.fail_first = fail_first
        self.seen = 0
        self.verified: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.rejected = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    receiver.seen += 1
                    failing = receiver.seen <= receiver.fail_first
                if failing:
                    self.send_response(500)
                    self.end_headers()
                    return
                try:
                    payload = Webhook(receiver.secret or "").verify(body, dict(self.headers))
                except WebhookVerificationError:
                    with receiver.lock:
                        receiver.rejected += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.verified.append(payload)
                    receiver.headers.append(dict(self.headers))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> dict[str, str]:
        with self.lock:
            return {p["data"]["event_id"]: p["data"]["status"] for p in self.verified}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    try:
        yield rec
    finally:
        rec.close()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll until ``predicate()`` is truthy; fail the test after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout}s")
