"""Property value history: which value of a single-valued property is current.

A single-valued property (``job_title``) keeps every value ever stated, each with ``valid_from``
(the source timestamp of the record that stated it). The chain is always rebuilt from the whole
set in source-time order, never patched by arrival order, so a late value from an older source
slots into history instead of replacing a newer one. Rebuilding is deterministic: the same set of
values gives the same chain, which is what lets a merge be undone exactly. Retracted values (a
newer extraction of their record no longer states them) are left out of the chain.
"""

from __future__ import annotations

import psycopg

from memo_pipeline.schema.collections import CollectionSpec


def is_single_valued(collection: CollectionSpec, entity_type: str, name: str) -> bool:
    spec = collection.entity_types.get(entity_type)
    prop = spec.properties.get(name) if spec else None
    return prop is not None and not prop.multi


def single_valued_properties(collection: CollectionSpec) -> dict[str, list[str]]:
    """Entity type -> names of its single-valued properties."""
    return {
        type_name: sorted(name for name, prop in spec.properties.items() if not prop.multi)
        for type_name, spec in collection.entity_types.items()
    }


def rebuild_chain(conn: psycopg.Connection, entity_id: str, name: str) -> None:
    """Point each value at the next one in source time; the newest has ``superseded_by`` null."""
    rows = conn.execute(
        "select value_id from property_values where entity_id = %s and property = %s "
        "and retracted_by is null order by valid_from, created_at, value_id",
        (entity_id, name),
    ).fetchall()
    ids = [r["value_id"] for r in rows]
    for current, following in zip(ids, [*ids[1:], None][: len(ids)], strict=True):
        conn.execute(
            "update property_values set superseded_by = %s where value_id = %s "
            "and superseded_by is distinct from %s",
            (following, current, following),
        )


def current_value(conn: psycopg.Connection, entity_id: str, name: str) -> object | None:
    row = conn.execute(
        "select value from property_values where entity_id = %s and property = %s "
        "and superseded_by is null and retracted_by is null "
        "order by valid_from desc, created_at desc limit 1",
        (entity_id, name),
    ).fetchone()
    return row["value"] if row else None
