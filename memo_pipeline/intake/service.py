"""The intake as one object: what the HTTP service (and tests) call, without any web framework.

``IntakeService`` authenticates keys, applies rate limits, accepts writes, runs ``sync`` writes
inline with a timeout, and reads events, entities, memories and webhook state, always scoped to
the caller's org. Its background ``Worker`` ends events whose answers Stage 2 has stored (for
the batch path, where Stage 2 runs in Dagster) and drains the webhook outbox.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from memo_pipeline.config import Settings
from memo_pipeline.intake import webhooks
from memo_pipeline.intake.config import IntakeConfig
from memo_pipeline.intake.crypto import SecretBox
from memo_pipeline.intake.events import Accepted, WriteIn, accept, event_view, finalize
from memo_pipeline.intake.extract import process_events
from memo_pipeline.intake.keys import verify_key
from memo_pipeline.intake.netguard import Resolver
from memo_pipeline.intake.ratelimit import RateLimiter
from memo_pipeline.intake.runtime import IntakeRuntime, Runtime
from memo_pipeline.stage2.identity import normalize_domain, normalize_email

log = logging.getLogger(__name__)

POLICY_TTL_SECONDS = 30.0


@dataclass
class SyncOutcome:
    done: bool
    view: dict[str, Any] | None


class IntakeService:
    def __init__(
        self,
        runtime: Runtime,
        config: IntakeConfig,
        box: SecretBox,
        resolver: Resolver | None = None,
    ) -> None:
        self.runtime = runtime
        self.config = config
        self.box = box
        self.resolver = resolver
        self.limiter = RateLimiter(self._rate_policy)
        self._policies: dict[str, tuple[float, tuple[float, int]]] = {}
        self._sync_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="memo-intake-sync")
        self.worker = Worker(self)

    @classmethod
    def from_settings(cls, settings: Settings, config: IntakeConfig | None = None) -> IntakeService:
        runtime = IntakeRuntime(settings)
        runtime.urls  # noqa: B018 - start the database and migrate before serving
        return cls(runtime, config or IntakeConfig.from_env(), SecretBox.from_settings(settings))

    def close(self) -> None:
        self.worker.stop()
        self._sync_pool.shutdown(wait=False, cancel_futures=True)

    def authenticate(self, api_key: str) -> str | None:
        with self.runtime.connection() as conn:
            return verify_key(conn, api_key)

    def _rate_policy(self, org: str) -> tuple[float, int]:
        now = datetime.now(UTC).timestamp()
        cached = self._policies.get(org)
        if cached and now - cached[0] < POLICY_TTL_SECONDS:
            return cached[1]
        with self.runtime.connection() as conn:
            row = conn.execute(
                "select rate_per_second, burst from intake_orgs where org_id = %s", (org,)
            ).fetchone()
        policy = (
            float(row["rate_per_second"])
            if row and row["rate_per_second"] is not None
            else self.config.rate_per_second,
            int(row["burst"]) if row and row["burst"] is not None else self.config.rate_burst,
        )
        self._policies[org] = (now, policy)
        return policy

    def retry_after(self, org: str) -> float:
        """0 when the org may make a request now, else seconds to wait."""
        return self.limiter.check(org)

    def accept(self, write: WriteIn) -> Accepted:
        return accept(self.runtime, self.config, write)

    def run_sync(self, org: str, event_id: str) -> SyncOutcome:
        """Process a sync write inline; gives up waiting after ``sync_timeout_seconds``.

        On time-out the work goes on in the background; should the process stop, the intake
        sensor picks the event up again once it is stale.
        """
        future = self._sync_pool.submit(
            partial(process_events, self.runtime, self.config, [event_id], 1)
        )
        try:
            future.result(timeout=self.config.sync_timeout_seconds)
        except FutureTimeout:
            return SyncOutcome(False, self.event(org, event_id))
        return SyncOutcome(True, self.event(org, event_id))

    def event(self, org: str, event_id: str) -> dict[str, Any] | None:
        with self.runtime.connection() as conn:
            return event_view(conn, org, event_id)

    def entity(self, org: str, entity_id: str) -> dict[str, Any] | None:
        with self.runtime.connection() as conn:
            entity = conn.execute(
                "select entity_id, type, name, names, created_at from entities "
                "where entity_id = %s and org_id = %s",
                (entity_id, org),
            ).fetchone()
            if entity is None:
                return None
            entity["identifiers"] = [
                r["identifier"]
                for r in conn.execute(
                    "select identifier from entity_identifiers where org_id = %s "
                    "and entity_id = %s order by identifier",
                    (org, entity_id),
                )
            ]
            entity["properties"] = conn.execute(
                "select property, value, valid_from from property_values where org_id = %s "
                "and entity_id = %s and superseded_by is null order by property, value_id",
                (org, entity_id),
            ).fetchall()
            entity["edges"] = conn.execute(
                "select subject_id, predicate, object_id from edges where org_id = %s "
                "and (subject_id = %s or object_id = %s) order by edge_id",
                (org, entity_id, entity_id),
            ).fetchall()
            entity["memories"] = self._memories(conn, org, entity_id, 100)
        return entity

    def memories(
        self, org: str, entity_id: str | None, identifier: str | None, limit: int
    ) -> list[dict[str, Any]]:
        with self.runtime.connection() as conn:
            if identifier and not entity_id:
                key = normalize_email(identifier) or normalize_domain(identifier) or identifier
                row = conn.execute(
                    "select entity_id from entity_identifiers where org_id = %s "
                    "and identifier = %s",
                    (org, key),
                ).fetchone()
                if row is None:
                    return []
                entity_id = row["entity_id"]
            return self._memories(conn, org, entity_id, limit)

    @staticmethod
    def _memories(conn, org: str, entity_id: str | None, limit: int) -> list[dict[str, Any]]:
        return conn.execute(
            "select memory_id, entity_id, text, source_ts, source_record_ids from memories "
            "where org_id = %s and (%s::text is null or entity_id = %s) "
            "and superseded_by is null order by source_ts desc, memory_id limit %s",
            (org, entity_id, entity_id, limit),
        ).fetchall()

    def set_webhook(self, org: str, url: str, secret: str | None) -> str:
        with self.runtime.connection() as conn:
            return webhooks.set_endpoint(
                conn, self.box, self.config, org, url, secret, self.resolver
            )

    def webhook(self, org: str) -> dict[str, Any]:
        with self.runtime.connection() as conn:
            return webhooks.endpoint(conn, org)

    def clear_webhook(self, org: str) -> None:
        with self.runtime.connection() as conn:
            webhooks.clear_endpoint(conn, org)

    def deliveries(self, org: str, event_id: str | None, limit: int) -> list[dict[str, Any]]:
        with self.runtime.connection() as conn:
            return webhooks.deliveries(conn, org, event_id, limit)

    def work_once(self) -> tuple[int, int]:
        """One pass of the background work: (events ended, webhooks delivered)."""
        ended = finalize(self.runtime)
        delivered = webhooks.deliver_due(
            self.runtime, self.box, self.config, resolver=self.resolver
        )
        return len(ended.stored) + len(ended.failed), delivered.delivered


class Worker:
    """A daemon thread running ``IntakeService.work_once`` every ``worker_interval_seconds``."""

    def __init__(self, service: IntakeService) -> None:
        self.service = service
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="memo-intake-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.service.work_once()
            except Exception:  # noqa: BLE001 - the loop outlives one bad pass; the next retries
                log.exception("intake worker pass failed")
            self._stop.wait(self.service.config.worker_interval_seconds)
