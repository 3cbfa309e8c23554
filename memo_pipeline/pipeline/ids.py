"""Deterministic ids for ledger rows. Every id a provider sees matches ``^[A-Za-z0-9_-]{1,64}$``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def request_key(
    org: str, record_id: str, content_hash: str, schema_version: str, model: str
) -> str:
    """The work: one record's content under one schema version and model."""
    return "k" + _digest(org, record_id, content_hash, schema_version, model)[:39]


def request_id(key: str, attempt: int) -> str:
    return f"{key[:40]}-a{attempt}"


def job_key(provider: str, model: str, request_ids: Iterable[str]) -> str:
    """A batch's identity: its provider, model and exact set of requests."""
    return "j" + _digest(provider, model, *sorted(request_ids))[:31]
