"""The landing zone and ``raw_content``: input records on their way into PostgreSQL.

The landing zone holds one folder per UTC day with JSONL files in the native format (one
``ContentRecord`` per line). Loading a source writes its records there, grouped by day; a source
loaded again rewrites the same files, so nothing is landed twice. ``load_partition`` reads a day's
files, checks each line, upserts good records into ``content_records`` and dead-letters the rest
with file, line and reason.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from memo_pipeline.config import Settings
from memo_pipeline.ingest.loaders import LoadError
from memo_pipeline.prompts.render import record_part_tokens
from memo_pipeline.records import ContentRecord
from memo_pipeline.schema.collections import OrgSpec


@dataclass
class LandingSummary:
    days: dict[str, int] = field(default_factory=dict)
    errors: int = 0

    @property
    def records(self) -> int:
        return sum(self.days.values())


@dataclass
class RawSummary:
    day: str
    files: int = 0
    lines: int = 0
    stored: int = 0
    changed: int = 0
    dead_letters: int = 0


def dead_letter(
    conn: psycopg.Connection,
    *,
    stage: str,
    reason: str,
    org: str | None = None,
    day: str | None = None,
    source: str | None = None,
    line: int | None = None,
    record_id: str | None = None,
    request_id: str | None = None,
) -> None:
    """Record something that could not be stored. Repeating the same failure records it once.

    The reason and source are made storable first: the text that failed may hold a NUL or an
    unpaired surrogate, which PostgreSQL refuses, and the failure must not be lost with it.
    """
    reason, source = storable(reason), storable(source) if source is not None else None
    key = hashlib.sha256(
        "\x1f".join(str(x) for x in (stage, source, line, record_id, request_id, reason)).encode()
    ).hexdigest()
    conn.execute(
        "insert into dead_letters (dedup_key, stage, org_id, partition_day, source, source_line, "
        "record_id, request_id, reason) values (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "on conflict (dedup_key) do nothing",
        (key, stage, org, day, source, line, record_id, request_id, reason),
    )


def storable(text: str) -> str:
    """``text`` with NUL characters and unpaired surrogates written as escapes."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def land(
    settings: Settings,
    conn: psycopg.Connection,
    items: Iterable[ContentRecord | LoadError],
    source_label: str,
) -> LandingSummary:
    """Write loaded records into the landing zone by day; dead-letter what failed to load."""
    summary = LandingSummary()
    by_day: dict[str, list[ContentRecord]] = defaultdict(list)
    with conn.transaction():
        for item in items:
            if isinstance(item, LoadError):
                summary.errors += 1
                named = not item.source_id or item.source_id in item.reason
                dead_letter(
                    conn,
                    stage="ingest",
                    reason=item.reason if named else f"record {item.source_id}: {item.reason}",
                    day=item.partition_day,
                    source=item.source,
                    line=item.line,
                )
                continue
            by_day[item.partition_day].append(item)
    stem = hashlib.sha256(source_label.encode()).hexdigest()[:12]
    for day, records in sorted(by_day.items()):
        folder = settings.landing_dir / day
        folder.mkdir(parents=True, exist_ok=True)
        records.sort(key=lambda r: (r.source_ts, r.source_id))
        body = b"".join(orjson.dumps(r.model_dump(mode="json")) + b"\n" for r in records)
        target = folder / f"{stem}.jsonl"
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(body)
        tmp.replace(target)
        summary.days[day] = len(records)
    return summary


def landed_days(settings: Settings) -> list[str]:
    if not settings.landing_dir.is_dir():
        return []
    return sorted(
        p.name for p in settings.landing_dir.iterdir() if p.is_dir() and any(p.glob("*.jsonl"))
    )


def _check(record: ContentRecord, orgs: dict[str, OrgSpec]) -> str | None:
    if not record.content.strip():
        return "field 'content' is empty"
    org = orgs.get(record.org)
    if org is None:
        return f"field 'org': unknown org {record.org!r}"
    if record.collection not in org.collections:
        known = ", ".join(sorted(org.collections))
        return f"field 'collection': unknown collection {record.collection!r} (org {record.org} has {known})"
    return None


def load_partition(
    settings: Settings, conn: psycopg.Connection, orgs: dict[str, OrgSpec], day: str
) -> RawSummary:
    """Upsert a day's landed records; bad lines go to dead letters and the rest goes on."""
    summary = RawSummary(day=day)
    files = sorted((settings.landing_dir / day).glob("*.jsonl"))
    rows: list[tuple] = []
    with conn.transaction():
        for path in files:
            summary.files += 1
            for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
                if not raw.strip():
                    continue
                summary.lines += 1
                where = f"{path.name} line {number}"
                try:
                    record = ContentRecord.model_validate(orjson.loads(raw))
                except orjson.JSONDecodeError as exc:
                    dead_letter(
                        conn,
                        stage="ingest",
                        reason=f"{where}: invalid JSON: {exc}",
                        day=day,
                        source=str(path),
                        line=number,
                    )
                    summary.dead_letters += 1
                    continue
                except ValidationError as exc:
                    fields = "; ".join(
                        f"field '{'.'.join(str(p) for p in e['loc'])}': {e['msg']}"
                        for e in exc.errors()
                    )
                    dead_letter(
                        conn,
                        stage="ingest",
                        reason=f"{where}: {fields}",
                        day=day,
                        source=str(path),
                        line=number,
                    )
                    summary.dead_letters += 1
                    continue
                problem = _check(record, orgs)
                if problem:
                    dead_letter(
                        conn,
                        stage="ingest",
                        reason=f"record {record.source_id} ({record.source}"
                        f"{f' line {record.source_line}' if record.source_line else ''}): {problem}",
                        org=record.org,
                        day=day,
                        source=record.source or str(path),
                        line=record.source_line or number,
                        record_id=record.record_id,
                    )
                    summary.dead_letters += 1
                    continue
                rows.append(
                    (
                        record.record_id,
                        record.org,
                        record.source_id,
                        record.collection,
                        day,
                        record.kind,
                        record.identifier,
                        record.title,
                        record.content,
                        record.content_hash,
                        record.source_ts,
                        record.source,
                        record.source_line,
                        Jsonb(record.metadata),
                        record_part_tokens(record),
                    )
                )
        with conn.cursor() as cur:
            cur.executemany(
                "insert into content_records (record_id, org_id, source_id, collection, "
                "partition_day, kind, identifier, title, content, content_hash, source_ts, source, "
                "source_line, metadata, record_tokens) "
                "values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "on conflict (record_id) do update set content = excluded.content, "
                "content_hash = excluded.content_hash, collection = excluded.collection, "
                "identifier = excluded.identifier, title = excluded.title, "
                "source_ts = excluded.source_ts, partition_day = excluded.partition_day, "
                "record_tokens = excluded.record_tokens "
                "where content_records.content_hash <> excluded.content_hash",
                rows,
            )
    summary.stored = len(rows)
    return summary


def landing_sources(settings: Settings, day: str) -> list[Path]:
    return sorted((settings.landing_dir / day).glob("*.jsonl"))
