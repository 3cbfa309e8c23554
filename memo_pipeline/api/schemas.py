"""Request and response bodies of the intake API (they also make up the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from memo_pipeline.records import (
    DEFAULT_COLLECTION,
    EARLIEST_SOURCE_TS,
    LATEST_SOURCE_TS,
    text_problem,
    to_utc,
)

Mode = Literal["sync", "async", "bulk"]
MODE_FIELD = Field(
    validation_alias=AliasChoices("execution_mode", "executionMode"),
    description="sync: answer when stored; async: background, minutes; bulk: batch API, hours.",
)
SOURCE_TS_ALIASES = AliasChoices("source_ts", "sourceTs", "source_timestamp", "sourceTimestamp")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("deadline", "source_ts", mode="after", check_fields=False)
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else to_utc(value)

    @field_validator("source_ts", mode="after", check_fields=False)
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        if value is not None and not EARLIEST_SOURCE_TS <= value < LATEST_SOURCE_TS:
            raise ValueError(
                f"{value.isoformat()} is outside the accepted range "
                f"{EARLIEST_SOURCE_TS:%Y-%m-%d} to {LATEST_SOURCE_TS:%Y-%m-%d}"
            )
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        if isinstance(value, str) and (problem := text_problem(value)):
            raise ValueError(problem)
        return value


class MemorizeRequest(_Body):
    content: str = Field(min_length=1, description="The text to memorize.")
    identifier: str | None = Field(
        None, description="Who or what the content is mainly about: an e-mail address or other."
    )
    collection: str = Field(DEFAULT_COLLECTION, min_length=1)
    execution_mode: Mode = MODE_FIELD
    deadline: datetime | None = Field(
        None, description="ISO datetime by which the write must be stored (bulk may escalate)."
    )
    source_ts: datetime | None = Field(None, validation_alias=SOURCE_TS_ALIASES)
    title: str | None = None
    org: str | None = Field(None, description="Optional; must be the API key's org if given.")

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class DocumentIn(_Body):
    id: str | None = Field(None, min_length=1, max_length=200)
    title: str | None = None
    content: str = Field(min_length=1)
    source_ts: datetime | None = Field(None, validation_alias=SOURCE_TS_ALIASES)

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class SaveBatchRequest(_Body):
    documents: list[DocumentIn] = Field(min_length=1)
    ai_extraction: bool = Field(
        True,
        validation_alias=AliasChoices("aiExtraction", "ai_extraction"),
        description="true: extract memories with the model; false: chunk and embed only.",
    )
    execution_mode: Mode = MODE_FIELD
    collection: str = Field(DEFAULT_COLLECTION, min_length=1)
    identifier: str | None = None
    deadline: datetime | None = None
    org: str | None = None


class WebhookRequest(_Body):
    url: str = Field(min_length=1, max_length=2000)
    secret: str | None = Field(
        None, description="A whsec_ secret to sign with; one is generated when omitted."
    )


class EventAccepted(BaseModel):
    event_id: str
    status: str
    execution_mode: str
    escalation: str | None = None
    created: bool = True


class StoredResult(BaseModel):
    counts: dict[str, int]
    memories: list[dict[str, Any]]
    entities: list[dict[str, Any]]
    properties: list[dict[str, Any]]
    edges: list[dict[str, Any]]


class EventView(BaseModel):
    event_id: str
    org: str
    kind: str
    execution_mode: str
    ai_extraction: bool
    collection: str
    status: str
    reason: str | None
    deadline: datetime | None
    escalation: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None
    history: list[dict[str, Any]]
    records: list[dict[str, Any]]
    requests: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    result: StoredResult | None


class WebhookSet(BaseModel):
    url: str
    secret: str = Field(description="Shown once: keep it to verify signatures.")


class ErrorBody(BaseModel):
    error: str
    field: str | None = None
