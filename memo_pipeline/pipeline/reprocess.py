"""Which days hold content whose latest extraction used a schema version that is not current."""

from __future__ import annotations

from datetime import date

import psycopg

from memo_pipeline.pipeline.registry import ProviderRegistry
from memo_pipeline.prompts.render import schema_version
from memo_pipeline.schema.collections import OrgSpec


def stale_days(
    conn: psycopg.Connection,
    orgs: dict[str, OrgSpec],
    registry: ProviderRegistry,
    start: date,
    end: date,
) -> list[str]:
    current = {
        (org.org, name, schema_version(org, name))
        for org in orgs.values()
        for name in org.collections
    }
    rows = conn.execute(
        "select distinct c.partition_day::text as day, c.org_id, c.collection from content_records c "
        "where c.partition_day >= %s and c.partition_day < %s",
        (start, end),
    ).fetchall()
    days: set[str] = set()
    for row in rows:
        org = orgs.get(row["org_id"])
        if org is None or row["collection"] not in org.collections:
            continue
        version = schema_version(org, row["collection"])
        done = conn.execute(
            "select 1 from content_records c where c.partition_day = %s and c.org_id = %s "
            "and c.collection = %s and not exists (select 1 from extraction_requests q "
            "where q.record_id = c.record_id and q.schema_version = %s) limit 1",
            (row["day"], row["org_id"], row["collection"], version),
        ).fetchone()
        if done and (row["org_id"], row["collection"], version) in current:
            days.add(row["day"])
    return sorted(days)
