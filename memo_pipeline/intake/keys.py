"""Per-org API keys and access policy.

A key reads ``mk_<key_id>_<secret>``: ``key_id`` finds the row, and only ``sha256(salt ||
secret)`` is stored, so the key is shown once, when it is created. Rotation issues a new key and
lets the org's older keys work until a grace period ends; revocation stops a key at once. Every
key belongs to exactly one org, and everything the API does with it is scoped to that org.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from memo_pipeline.intake.config import NETWORK_CLASSES
from memo_pipeline.schema.collections import OrgSpec

KEY_PREFIX = "mk"


class UnknownOrg(ValueError):
    """The org has no definition in the org config folder."""


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    org: str
    api_key: str  # the only time the plain key exists outside the caller
    expiring_key_ids: tuple[str, ...] = ()
    expires_at: datetime | None = None


def _hash(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}\x1f{secret}".encode()).hexdigest()


def ensure_org(conn: psycopg.Connection, orgs: dict[str, OrgSpec], org: str) -> None:
    if org not in orgs:
        known = ", ".join(sorted(orgs)) or "none"
        raise UnknownOrg(
            f"unknown org {org!r}: define it in the org config folder (known: {known})"
        )
    conn.execute("insert into intake_orgs (org_id) values (%s) on conflict do nothing", (org,))


def create_key(
    conn: psycopg.Connection, orgs: dict[str, OrgSpec], org: str, label: str | None = None
) -> IssuedKey:
    with conn.transaction():
        ensure_org(conn, orgs, org)
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        conn.execute(
            "insert into intake_api_keys (key_id, org_id, salt, key_hash, label) "
            "values (%s, %s, %s, %s, %s)",
            (key_id, org, salt, _hash(salt, secret), label),
        )
    return IssuedKey(key_id=key_id, org=org, api_key=f"{KEY_PREFIX}_{key_id}_{secret}")


def rotate_key(
    conn: psycopg.Connection,
    orgs: dict[str, OrgSpec],
    org: str,
    grace: timedelta,
    label: str | None = None,
) -> IssuedKey:
    """A new key for the org; its other live keys stop working after ``grace``."""
    with conn.transaction():
        issued = create_key(conn, orgs, org, label)
        until = datetime.now(UTC) + grace
        rows = conn.execute(
            "update intake_api_keys set expires_at = least(coalesce(expires_at, %s), %s) "
            "where org_id = %s and key_id <> %s and revoked_at is null "
            "and (expires_at is null or expires_at > now()) returning key_id",
            (until, until, org, issued.key_id),
        ).fetchall()
    return IssuedKey(
        key_id=issued.key_id,
        org=org,
        api_key=issued.api_key,
        expiring_key_ids=tuple(sorted(r["key_id"] for r in rows)),
        expires_at=until,
    )


def revoke_key(conn: psycopg.Connection, key_id: str) -> bool:
    with conn.transaction():
        return bool(
            conn.execute(
                "update intake_api_keys set revoked_at = now() where key_id = %s "
                "and revoked_at is null",
                (key_id,),
            ).rowcount
        )


def list_keys(conn: psycopg.Connection, org: str) -> list[dict[str, Any]]:
    return conn.execute(
        "select key_id, org_id, label, created_at, expires_at, revoked_at, last_used_at "
        "from intake_api_keys where org_id = %s order by created_at, key_id",
        (org,),
    ).fetchall()


def parse_key(api_key: str) -> tuple[str, str] | None:
    prefix, sep, rest = api_key.strip().partition("_")
    key_id, sep2, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not sep or not sep2 or not key_id or not secret:
        return None
    return key_id, secret


def verify_key(conn: psycopg.Connection, api_key: str) -> str | None:
    """The org of a live key, or None (unknown, wrong, expired or revoked)."""
    parsed = parse_key(api_key)
    if parsed is None:
        return None
    key_id, secret = parsed
    row = conn.execute(
        "select org_id, salt, key_hash, expires_at, revoked_at from intake_api_keys "
        "where key_id = %s",
        (key_id,),
    ).fetchone()
    if row is None or not hmac.compare_digest(row["key_hash"], _hash(row["salt"], secret)):
        return None
    now = datetime.now(UTC)
    if row["revoked_at"] is not None or (
        row["expires_at"] is not None and row["expires_at"] <= now
    ):
        return None
    conn.execute(
        "update intake_api_keys set last_used_at = now() where key_id = %s "
        "and (last_used_at is null or last_used_at < now() - interval '1 minute')",
        (key_id,),
    )
    return row["org_id"]


def set_policy(
    conn: psycopg.Connection,
    orgs: dict[str, OrgSpec],
    org: str,
    *,
    webhook_networks: set[str] | None = None,
    rate_per_second: float | None = None,
    burst: int | None = None,
) -> dict[str, Any]:
    """Change an org's webhook network allowance and rate limit; returns the policy."""
    if webhook_networks is not None and not webhook_networks <= set(NETWORK_CLASSES):
        unknown = sorted(webhook_networks - set(NETWORK_CLASSES))
        raise ValueError(f"unknown network class(es) {unknown}; use {', '.join(NETWORK_CLASSES)}")
    with conn.transaction():
        ensure_org(conn, orgs, org)
        if webhook_networks is not None:
            conn.execute(
                "update intake_orgs set webhook_networks = %s, updated_at = now() "
                "where org_id = %s",
                (sorted(webhook_networks), org),
            )
        if rate_per_second is not None or burst is not None:
            conn.execute(
                "update intake_orgs set rate_per_second = coalesce(%s, rate_per_second), "
                "burst = coalesce(%s, burst), updated_at = now() where org_id = %s",
                (rate_per_second, burst, org),
            )
        return conn.execute(
            "select org_id, webhook_networks, rate_per_second, burst from intake_orgs "
            "where org_id = %s",
            (org,),
        ).fetchone()
