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
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

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
