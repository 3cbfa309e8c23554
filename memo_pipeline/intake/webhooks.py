"""Webhooks: per-org endpoints, Standard Webhooks signatures, and the outbox deliverer.

An org sets one endpoint; its signing secret (``whsec_...``, generated when none is given) is
shown once and stored encrypted. Each event that ends (stored or failed) leaves one outbox row,
written in the transaction that ended it; ``deliver_due`` drains the outbox: it signs the body
with the ``standardwebhooks`` library (``webhook-id``, ``webhook-timestamp``,
``webhook-signature`` = HMAC-SHA256), posts it, logs every attempt in
``intake_webhook_deliveries``, and retries failures with capped exponential backoff until
``webhook_max_attempts``; a row that runs out of attempts is kept, marked ``exhausted``.
The ``webhook-id`` stays the same across attempts so a receiver can drop duplicates.
"""

from __future__ import annotations

import base64
import logging
import random
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from memo_pipeline.intake.config import IntakeConfig
from memo_pipeline.intake.crypto import SecretBox
from memo_pipeline.intake.netguard import Resolver, WebhookUrlRefused, check_webhook_url, redact_url
from memo_pipeline.intake.runtime import Runtime

log = logging.getLogger(__name__)

USER_AGENT = "memo-pipeline-webhooks/1"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _allowed(row: dict[str, Any] | None, config: IntakeConfig) -> set[str]:
    org_networks = set(row["webhook_networks"] or ()) if row else set()
    return org_networks | set(config.webhook_allowed_networks)


def set_endpoint(
    conn: psycopg.Connection,
    box: SecretBox,
    config: IntakeConfig,
    org: str,
    url: str,
    secret: str | None = None,
    resolver: Resolver | None = None,
) -> str:
    """Set the org's endpoint after checking where it points; returns the signing secret."""
    row = conn.execute("select * from intake_orgs where org_id = %s", (org,)).fetchone()
    check_webhook_url(url, _allowed(row, config), resolver)
    secret = secret or new_secret()
    try:
        Webhook(secret)  # refuses a secret it could not sign with
    except (ValueError, TypeError, EmptyWebhookSecretError) as exc:
        raise ValueError(
            "must be a whsec_ secret followed by base64 (or leave it out and one is generated): "
            f"{exc.__class__.__name__}"
        ) from None
    with conn.transaction():
        conn.execute(
            "insert into intake_orgs (org_id, webhook_url, webhook_secret) values (%s, %s, %s) "
            "on conflict (org_id) do update set webhook_url = excluded.webhook_url, "
            "webhook_secret = excluded.webhook_secret, updated_at = now()",
            (org, url, box.encrypt(secret)),
        )
    return secret


def clear_endpoint(conn: psycopg.Connection, org: str) -> None:
    with conn.transaction():
        conn.execute(
            "update intake_orgs set webhook_url = null, webhook_secret = null, updated_at = now() "
            "where org_id = %s",
            (org,),
        )


def endpoint(conn: psycopg.Connection, org: str) -> dict[str, Any]:
    row = conn.execute(
        "select webhook_url, webhook_networks, updated_at from intake_orgs where org_id = %s",
        (org,),
    ).fetchone()
    if row is None or not row["webhook_url"]:
        return {"url": None, "configured": False}
    return {
        "url": row["webhook_url"],
        "configured": True,
        "allowed_networks": sorted(row["webhook_networks"] or []),
        "updated_at": row["updated_at"],
    }


def deliveries(
    conn: psycopg.Connection, org: str, event_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    return conn.execute(
        "select d.message_id, d.event_id, d.attempt, d.url, d.status_code, d.error, "
        "d.duration_ms, d.at, o.status as message_status, o.event_type "
        "from intake_webhook_deliveries d join intake_outbox o using (message_id) "
        "where d.org_id = %s and (%s::text is null or d.event_id = %s) "
        "order by d.id desc limit %s",
        (org, event_id, event_id, limit),
    ).fetchall()


def backoff(attempts: int, config: IntakeConfig) -> float:
    """Seconds before the next attempt after ``attempts`` failures: doubling, capped, jittered."""
    base = config.webhook_backoff_base_seconds * 2 ** max(0, attempts - 1)
    return min(config.webhook_backoff_max_seconds, base) * random.uniform(0.8, 1.2)


@dataclass
class DeliverySummary:
    delivered: int = 0
    failed: int = 0
    exhausted: int = 0


def _send(
    client: httpx.Client, url: str, secret: str, message_id: str, body: str
) -> httpx.Response:
    now = datetime.now(UTC)
    signature = Webhook(secret).sign(message_id, now, body)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    return client.post(url, content=body.encode(), headers=headers)


def deliver_due(
    runtime: Runtime,
    box: SecretBox,
    config: IntakeConfig,
    limit: int = 50,
    resolver: Resolver | None = None,
) -> DeliverySummary:
    """Attempt every due outbox row once (at most ``limit``); safe to run in several processes."""
    summary = DeliverySummary()
    with (
        runtime.connection() as conn,
        httpx.Client(timeout=config.webhook_timeout_seconds, follow_redirects=False) as client,
    ):
        for _ in range(limit):
            with conn.transaction():
                row = conn.execute(
                    "select o.*, g.webhook_url, g.webhook_secret, g.webhook_networks "
                    "from intake_outbox o left join intake_orgs g using (org_id) "
                    "where o.status = 'pending' and o.next_attempt_at <= now() "
                    "order by o.next_attempt_at, o.message_id limit 1 "
                    "for update of o skip locked"
                ).fetchone()
                if row is None:
                    break
                _attempt(conn, client, box, config, row, summary, resolver)
    return summary


def _attempt(
    conn: psycopg.Connection,
    client: httpx.Client,
    box: SecretBox,
    config: IntakeConfig,
    row: dict[str, Any],
    summary: DeliverySummary,
    resolver: Resolver | None,
) -> None:
    attempt = row["attempts"] + 1
    url = row["webhook_url"]
    status_code: int | None = None
    error: str | None = None
    started = time.monotonic()
    if not url:
        error = "the org has no webhook endpoint"
    else:
        try:
            check_webhook_url(url, _allowed(row, config), resolver)
            body = orjson.dumps(row["payload"]).decode()
            response = _send(
                client, url, box.decrypt(row["webhook_secret"]), row["message_id"], body
            )
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except WebhookUrlRefused as exc:
            error = f"refused: {exc}"
        except httpx.HTTPError as exc:
            error = f"{exc.__class__.__name__}: {str(exc)[:300]}"
    duration = int((time.monotonic() - started) * 1000)
    conn.execute(
        "insert into intake_webhook_deliveries (message_id, org_id, event_id, attempt, url, "
        "status_code, error, duration_ms) values (%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            row["message_id"],
            row["org_id"],
            row["event_id"],
            attempt,
            redact_url(url) if url else "",
            status_code,
            error,
            duration,
        ),
    )
    if error is None:
        conn.execute(
            "update intake_outbox set status = 'delivered', attempts = %s, delivered_at = now(), "
            "last_error = null where message_id = %s",
            (attempt, row["message_id"]),
        )
        summary.delivered += 1
        return
    exhausted = attempt >= config.webhook_max_attempts
    conn.execute(
        "update intake_outbox set status = %s, attempts = %s, last_error = %s, "
        "next_attempt_at = %s where message_id = %s",
        (
            "exhausted" if exhausted else "pending",
            attempt,
            error,
            datetime.now(UTC) + timedelta(seconds=backoff(attempt, config)),
            row["message_id"],
        ),
    )
    summary.exhausted += exhausted
    summary.failed += not exhausted
    log.info(
        "webhook %s for event %s: attempt %d failed (%s)%s",
        row["message_id"],
        row["event_id"],
        attempt,
        error,
        "; giving up" if exhausted else "",
    )
