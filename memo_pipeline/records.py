"""The normalised input record, as it sits in the landing zone and in ``content_records``.

One ``ContentRecord`` is one thing a person wrote (an e-mail, a chat session, a meeting, a note, a
document page). Loaders turn source files into these; the landing zone stores them as JSONL, one
file per UTC day; ``raw_content`` reads them back.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

DEFAULT_ORG = "acme"
DEFAULT_COLLECTION = "contacts"
# Source timestamps outside these bounds are broken headers or fields, not history: the input
# this project meets spans decades.
EARLIEST_SOURCE_TS = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_SOURCE_TS = datetime(2100, 1, 1, tzinfo=UTC)
# About 50,000 tokens: above any single message, meeting or page in the project's sample data,
# below every supported model's context. Longer content must be split into several records.
MAX_CONTENT_BYTES = 200_000


def to_utc(value: datetime) -> datetime:
    """``value`` in UTC (naive means UTC); ValueError when UTC cannot represent it."""
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"{value.isoformat()} is out of range") from exc


def day_of(value: datetime) -> str | None:
    """The UTC day ``YYYY-MM-DD`` of ``value``, or None outside the accepted source range."""
    try:
        utc = to_utc(value)
    except ValueError:
        return None
    return utc.date().isoformat() if EARLIEST_SOURCE_TS <= utc < LATEST_SOURCE_TS else None


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None: PostgreSQL refuses NUL characters and
    UTF-8 has no encoding for an unpaired surrogate."""
    if "\x00" in value:
        return f"contains a NUL character (U+0000) at position {value.index(chr(0))}; remove it"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"contains an unpaired surrogate (U+{ord(value[exc.start]):04X}) at position "
            f"{exc.start}; it is not text"
        )
    return None


def _check_json(value: Any, where: str) -> None:
    if isinstance(value, str):
        if problem := text_problem(value):
            raise ValueError(f"{where} {problem}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json(str(key), f"{where} key")
            _check_json(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]")


class ContentRecord(BaseModel):
    """A write waiting for extraction.

    ``source_id`` is unique within (org, source); ``record_id`` is derived from both, so loading
    the same file twice yields the same ids.
    """

    source_id: str = Field(min_length=1)
    org: str = DEFAULT_ORG
    collection: str = DEFAULT_COLLECTION
    identifier: str | None = None
    content: str
    source_ts: datetime
    kind: str = "note"
    title: str | None = None
    source: str = ""
    source_line: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("source_ts")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        utc = to_utc(value)
        if not EARLIEST_SOURCE_TS <= utc < LATEST_SOURCE_TS:
            raise ValueError(
                f"{utc.isoformat()} is outside the accepted range "
                f"{EARLIEST_SOURCE_TS:%Y-%m-%d} to {LATEST_SOURCE_TS:%Y-%m-%d}"
            )
        return utc

    @field_validator("source_id", "org", "collection", "identifier", "kind", "title", "source")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        if value is not None and (problem := text_problem(value)):
            raise ValueError(problem)
        return value

    @field_validator("content")
    @classmethod
    def _content(cls, value: str) -> str:
        if problem := text_problem(value):
            raise ValueError(problem)
        size = len(value.encode("utf-8"))
        if size > MAX_CONTENT_BYTES:
            raise ValueError(
                f"is {size:,} bytes, over the limit of {MAX_CONTENT_BYTES:,}; split it into "
                "several records"
            )
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_json(value, "metadata")
        return value

    @property
    def record_id(self) -> str:
        return record_id_for(self.org, self.source_id)

    @property
    def partition_day(self) -> str:
        return self.source_ts.strftime("%Y-%m-%d")

    @property
    def content_hash(self) -> str:
        return content_hash(self.content)


def record_id_for(org: str, source_id: str) -> str:
    digest = hashlib.sha256(f"{org}\x1f{source_id}".encode()).hexdigest()
    return f"r{digest[:31]}"


def content_hash(content: str) -> str:
    return hashlib.sha256(" ".join(content.split()).encode()).hexdigest()
