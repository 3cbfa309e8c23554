"""Per-partition counts, for ``memo-pipeline stats`` and run summaries. Counts only, so two
identical states print identical output."""

from __future__ import annotations

from typing import Any

import psycopg

from memo_pipeline.stores.vectors import VectorStore


def partition_stats(conn: psycopg.Connection, vectors: VectorStore) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def day_entry(day: str) -> dict[str, Any]:
        return out.setdefault(
            day,
            {
                "records": 0,
                "requests": 0,
                # Pending in no job: held by the budget, for a priming job or for more work.
                "waiting": 0,
                "jobs": {},
                "memories": 0,
                "vectors": 0,
                "dead_letters": 0,
            },
        )

    for row in conn.execute(
        "select partition_day::text as day, count(*) as n from content_records group by 1"
    ):
        day_entry(row["day"])["records"] += row["n"]
    for row in conn.execute(
        "select partition_day::text as day, count(*) as n from dead_letters "
        "where stage = 'ingest' and partition_day is not null group by 1"
    ):
        day_entry(row["day"])["records"] += row["n"]
    for row in conn.execute(
        "select partition_day::text as day, count(*) as n from extraction_requests group by 1"
    ):
        day_entry(row["day"])["requests"] = row["n"]
    for row in conn.execute(
        "select partition_day::text as day, count(*) as n from extraction_requests "
        "where status = 'pending' and job_key is null group by 1"
    ):
        day_entry(row["day"])["waiting"] = row["n"]
    for row in conn.execute(
        "select partition_day::text as day, status, count(*) as n from provider_jobs group by 1, 2"
    ):
        day_entry(row["day"])["jobs"][row["status"]] = row["n"]
    for row in conn.execute(
        "select partition_day::text as day, count(*) as n from memories "
        "where superseded_by is null group by 1"
    ):
        day_entry(row["day"])["memories"] = row["n"]
    for row in conn.execute(
        "select partition_day::text as day, count(*) as n from dead_letters "
        "where partition_day is not null group by 1"
    ):
        day_entry(row["day"])["dead_letters"] = row["n"]
    for day, count in vectors.counts_by_day().items():
        day_entry(day)["vectors"] = count
    return {day: out[day] for day in sorted(out)}
