"""Packing a day's requests into provider jobs: split by request count and by bytes (``pack``),
sizes taken from the ledger without rendering every request, and never below a request's real
size on the wire; on real PostgreSQL with the ``local`` provider."""

from __future__ import annotations

import dataclasses

import pytest

from memo_pipeline.pipeline.submit import (
    RECORD_PART_BYTES,
    REQUEST_OVERHEAD_BYTES,
    _wire_sizes,
    build_requests,
    pack,
)
from memo_pipeline.providers.base import ProviderLimits
from memo_pipeline_tests.test_costs_ledger import records, run_day


def limits(count: int, size: int) -> ProviderLimits:
    return ProviderLimits(max_requests_per_batch=count, max_bytes_per_batch=size)


@pytest.mark.parametrize(
    ("sizes", "count", "size", "expected"),
    [
        ([10] * 7, 3, 1000, [3, 3, 1]),  # by count
        ([10] * 7, 100, 25, [2, 2, 2, 1]),  # by bytes
        ([10, 20, 5, 5, 30], 100, 30, [2, 2, 1]),  # a batch closes before it would overflow
        ([30, 1], 1, 30, [1, 1]),
        ([], 3, 100, []),
    ],
)
def test_pack_splits_by_count_and_by_bytes(sizes, count, size, expected):
    batches = pack(sizes, limits(count, size))
    assert [len(b) for b in batches] == expected
    assert [i for b in batches for i in b] == list(range(len(sizes)))
    assert all(sum(sizes[i] for i in b) <= size for b in batches)


def test_pack_refuses_an_item_over_the_byte_limit():
    with pytest.raises(ValueError, match="item 1 alone exceeds"):
        pack([10, 101], limits(10, 100))


def test_a_day_is_packed_into_jobs_by_count_and_bytes_from_ledger_sizes(runtime):
    items = records(7)
    items[3] = items[3].model_copy(update={"content": items[3].content + " Grüße, 日本 🦄 " * 40})
    settings = dataclasses.replace(
        runtime.settings, provider_overrides={"local": {"max_requests_per_batch": 3}}
    )
    run_day(runtime, settings, items)
    with runtime.connection() as conn:
        jobs = conn.execute(
            "select request_count, bytes from provider_jobs order by request_count desc"
        ).fetchall()
        rows = conn.execute(
            f"select q.*, {RECORD_PART_BYTES} as record_bytes from extraction_requests q "
            "join content_records c using (record_id) order by request_id"
        ).fetchall()
        sizes = _wire_sizes(conn, settings.orgs, rows)
        built = build_requests(conn, settings.orgs, rows)
    assert [j["request_count"] for j in jobs] == [3, 3, 1]
    # What the provider was sent (recorded at submission) stays within what packing reckoned.
    assert sum(j["bytes"] for j in jobs) <= sum(sizes)
    # The ledger-side size never undercounts the rendered prompt (non-ASCII content included).
    for size, request in zip(sizes, built, strict=True):
        assert size >= len(request.prompt.text.encode()) + REQUEST_OVERHEAD_BYTES
