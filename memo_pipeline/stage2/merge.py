"""Entity merges: two entities of one org found to be the same, recorded and undoable.

``merge_entities`` folds the younger entity into the older one: identifiers, names, memories,
edges and property values move to the survivor, and ``entities.merged_into`` points the merged
entity at it. A memory (or edge) the survivor already holds is not duplicated: the merged one is
superseded by the survivor's and its sources are added to it. Everything that moved is listed in
the ``entity_merges`` row beside the evidence, and ``undo_merge`` puts exactly that back. An
undone merge is remembered: the same pair is not merged again automatically.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from memo_pipeline.schema.collections import OrgSpec
from memo_pipeline.stage2.history import rebuild_chain, single_valued_properties


class MergeError(ValueError):
    """A merge cannot be made or undone; the message says why and what to do."""


def live_entity(conn: psycopg.Connection, entity_id: str) -> str:
    """Follow ``merged_into`` to the entity that holds the data now."""
    seen = {entity_id}
    while True:
        row = conn.execute(
            "select merged_into from entities where entity_id = %s", (entity_id,)
        ).fetchone()
        if row is None or row["merged_into"] is None:
            return entity_id
        entity_id = row["merged_into"]
        if entity_id in seen:
            raise MergeError(f"entity {entity_id}: merged_into forms a cycle")
        seen.add(entity_id)


def merge_blocked(conn: psycopg.Connection, org: str, a: str, b: str) -> bool:
    """True when a merge of these two entities was undone: someone decided they differ."""
    return (
        conn.execute(
            "select 1 from entity_merges where org_id = %s and undone_at is not null and "
            "((survivor_id = %s and merged_id = %s) or (survivor_id = %s and merged_id = %s))",
            (org, a, b, b, a),
        ).fetchone()
        is not None
    )


def order_by_age(conn: psycopg.Connection, entity_ids: list[str]) -> list[str]:
    rows = conn.execute(
        "select entity_id from entities where entity_id = any(%s) order by created_at, entity_id",
        (entity_ids,),
    ).fetchall()
    return [r["entity_id"] for r in rows]


def _remove(values: list[str], drop: list[str]) -> list[str]:
    return [v for v in values if v not in drop]


def _union(a: list[str], b: list[str]) -> list[str]:
    return sorted(set(a) | set(b))


def merge_entities(
    conn: psycopg.Connection,
    org: str,
    survivor: str,
    merged: str,
    evidence: dict[str, Any],
    single_valued: list[str],
) -> int:
    """Fold ``merged`` into ``survivor`` inside the caller's transaction; returns the merge id."""
    rows = conn.execute(
        "select * from entities where entity_id = any(%s) and org_id = %s for update",
        ([survivor, merged], org),
    ).fetchall()
    by_id = {r["entity_id"]: r for r in rows}
    if len(by_id) != 2 or survivor == merged:
        raise MergeError(f"org {org}: cannot merge {merged} into {survivor}: not two entities")
    if by_id[merged]["merged_into"] or by_id[survivor]["merged_into"]:
        raise MergeError(f"org {org}: {merged} or {survivor} is already merged away")
    if by_id[merged]["type"] != by_id[survivor]["type"]:
        raise MergeError(f"org {org}: {merged} and {survivor} are of different types")
    merge_id = conn.execute(
        "insert into entity_merges (org_id, survivor_id, merged_id, evidence) "
        "values (%s, %s, %s, %s) returning merge_id",
        (org, survivor, merged, Jsonb(evidence)),
    ).fetchone()["merge_id"]

    identifiers = [
        r["identifier"]
        for r in conn.execute(
            "update entity_identifiers set entity_id = %s where org_id = %s and entity_id = %s "
            "returning identifier",
            (survivor, org, merged),
        )
    ]
    keep, gone = by_id[survivor], by_id[merged]
    names_added = [n for n in gone["names"] if n not in keep["names"]]
    norm_added = [n for n in gone["norm_names"] if n not in keep["norm_names"]]
    conn.execute(
        "update entities set names = names || %s::text[], norm_names = norm_names || %s::text[] "
        "where entity_id = %s",
        (names_added, norm_added, survivor),
    )
    conn.execute("update entities set merged_into = %s where entity_id = %s", (survivor, merged))

    changes = {
        "identifiers": sorted(identifiers),
        "names_added": names_added,
        "norm_names_added": norm_added,
        **_move_memories(conn, org, survivor, merged),
        **_move_edges(conn, org, survivor, merged, merge_id),
        **_move_values(conn, org, survivor, merged, single_valued),
    }
    conn.execute(
        "update entity_merges set changes = %s where merge_id = %s", (Jsonb(changes), merge_id)
    )
    return merge_id


def _move_memories(
    conn: psycopg.Connection, org: str, survivor: str, merged: str
) -> dict[str, Any]:
    moved, collapsed = [], []
    rows = conn.execute(
        "select memory_id, norm_hash, alias_hashes, source_record_ids from memories "
        "where org_id = %s and entity_id = %s and superseded_by is null order by memory_id",
        (org, merged),
    ).fetchall()
    for row in rows:
        twin = conn.execute(
            "select memory_id, source_record_ids, alias_hashes from memories where org_id = %s "
            "and entity_id = %s and (norm_hash = %s or alias_hashes @> %s::text[]) "
            "and superseded_by is null order by norm_hash = %s desc limit 1",
            (org, survivor, row["norm_hash"], [row["norm_hash"]], row["norm_hash"]),
        ).fetchone()
        if twin is None:
            conn.execute(
                "update memories set entity_id = %s, vector_dirty = true, "
                "updated_at = clock_timestamp() where memory_id = %s",
                (survivor, row["memory_id"]),
            )
            moved.append(row["memory_id"])
            continue
        added = sorted(set(row["source_record_ids"]) - set(twin["source_record_ids"]))
        aliases = [a for a in row["alias_hashes"] if a not in twin["alias_hashes"]]
        conn.execute(
            "update memories set superseded_by = %s, vector_dirty = true, "
            "updated_at = clock_timestamp() where memory_id = %s",
            (twin["memory_id"], row["memory_id"]),
        )
        conn.execute(
            "update memories set source_record_ids = %s, alias_hashes = alias_hashes || %s, "
            "updated_at = clock_timestamp() where memory_id = %s",
            (_union(twin["source_record_ids"], added), aliases, twin["memory_id"]),
        )
        collapsed.append(
            {
                "memory_id": row["memory_id"],
                "into": twin["memory_id"],
                "added_sources": added,
                "added_aliases": aliases,
            }
        )
    return {"memories_moved": moved, "memories_collapsed": collapsed}


def _move_edges(
    conn: psycopg.Connection, org: str, survivor: str, merged: str, merge_id: int
) -> dict[str, Any]:
    moved, collapsed, dropped = [], [], []
    rows = conn.execute(
        "select * from edges where org_id = %s and superseded_by is null "
        "and (subject_id = %s or object_id = %s) order by edge_id",
        (org, merged, merged),
    ).fetchall()
    for row in rows:
        subject = survivor if row["subject_id"] == merged else row["subject_id"]
        obj = survivor if row["object_id"] == merged else row["object_id"]
        if subject == obj:
            # The edge linked the two entities that are now one: nothing left to connect.
            conn.execute(
                "update edges set superseded_by = %s where edge_id = %s",
                (f"merge:{merge_id}", row["edge_id"]),
            )
            dropped.append(row["edge_id"])
            continue
        twin = conn.execute(
            "select edge_id, source_record_ids, first_seen from edges where org_id = %s "
            "and subject_id = %s and predicate = %s and object_id = %s and superseded_by is null",
            (org, subject, row["predicate"], obj),
        ).fetchone()
        if twin is None:
            conn.execute(
                "update edges set subject_id = %s, object_id = %s where edge_id = %s",
                (subject, obj, row["edge_id"]),
            )
            moved.append(
                {
                    "edge_id": row["edge_id"],
                    "subject": row["subject_id"],
                    "object": row["object_id"],
                }
            )
            continue
        added = sorted(set(row["source_record_ids"]) - set(twin["source_record_ids"]))
        conn.execute(
            "update edges set superseded_by = %s where edge_id = %s",
            (twin["edge_id"], row["edge_id"]),
        )
        conn.execute(
            "update edges set source_record_ids = %s, first_seen = least(first_seen, %s) "
            "where edge_id = %s",
            (_union(twin["source_record_ids"], added), row["first_seen"], twin["edge_id"]),
        )
        collapsed.append(
            {
                "edge_id": row["edge_id"],
                "into": twin["edge_id"],
                "added_sources": added,
                "first_seen": twin["first_seen"].isoformat(),
            }
        )
    return {"edges_moved": moved, "edges_collapsed": collapsed, "edges_dropped": dropped}


def _move_values(
    conn: psycopg.Connection, org: str, survivor: str, merged: str, single_valued: list[str]
) -> dict[str, Any]:
    rows = conn.execute(
        "update property_values set entity_id = %s where org_id = %s and entity_id = %s "
        "returning value_id, property",
        (survivor, org, merged),
    ).fetchall()
    rebuilt = sorted({r["property"] for r in rows} & set(single_valued))
    for name in rebuilt:
        rebuild_chain(conn, survivor, name)
    return {"values_moved": sorted(r["value_id"] for r in rows), "chains_rebuilt": rebuilt}


def merge_by_hand(
    conn: psycopg.Connection,
    orgs: dict[str, OrgSpec],
    survivor: str,
    merged: str,
    note: str = "",
) -> int:
    """An operator's merge of two live entities of one org and type; returns the merge id.

    Recorded like an automatic one (rule ``manual``) and undone the same way; it is made even
    when an automatic merge of the same pair was undone before: the operator has decided again.
    """
    row = conn.execute(
        "select org_id, type from entities where entity_id = %s", (survivor,)
    ).fetchone()
    if row is None:
        raise MergeError(f"entity {survivor} does not exist")
    org = orgs.get(row["org_id"])
    single_valued = sorted(
        {
            name
            for collection in (org.collections.values() if org else ())
            for name in single_valued_properties(collection).get(row["type"], [])
        }
    )
    return merge_entities(
        conn, row["org_id"], survivor, merged, {"rule": "manual", "note": note}, single_valued
    )


def undo_merge(conn: psycopg.Connection, merge_id: int) -> None:
    """Restore both entities as they were before the merge, inside the caller's transaction.

    Only the latest merge touching either entity can be undone: undo later ones first.
    """
    merge = conn.execute(
        "select * from entity_merges where merge_id = %s for update", (merge_id,)
    ).fetchone()
    if merge is None:
        raise MergeError(f"merge {merge_id} does not exist")
    if merge["undone_at"] is not None:
        raise MergeError(f"merge {merge_id} was already undone at {merge['undone_at']}")
    org, survivor, merged = merge["org_id"], merge["survivor_id"], merge["merged_id"]
    later = conn.execute(
        "select merge_id from entity_merges where org_id = %s and undone_at is null "
        "and merge_id > %s and (survivor_id = any(%s) or merged_id = any(%s)) order by merge_id",
        (org, merge_id, [survivor, merged], [survivor, merged]),
    ).fetchall()
    if later:
        raise MergeError(
            f"merge {merge_id}: undo the later merges of the same entities first: "
            + ", ".join(str(r["merge_id"]) for r in later)
        )
    c = merge["changes"]

    conn.execute("update entities set merged_into = null where entity_id = %s", (merged,))
    conn.execute(
        "update entity_identifiers set entity_id = %s where org_id = %s and entity_id = %s "
        "and identifier = any(%s)",
        (merged, org, survivor, c["identifiers"]),
    )
    row = conn.execute(
        "select names, norm_names from entities where entity_id = %s", (survivor,)
    ).fetchone()
    conn.execute(
        "update entities set names = %s, norm_names = %s where entity_id = %s",
        (
            _remove(row["names"], c["names_added"]),
            _remove(row["norm_names"], c["norm_names_added"]),
            survivor,
        ),
    )
    _restore_memories(conn, survivor, merged, c)
    _restore_edges(conn, merge_id, c)

    conn.execute(
        "update property_values set entity_id = %s where value_id = any(%s)",
        (merged, c["values_moved"]),
    )
    for name in c["chains_rebuilt"]:
        rebuild_chain(conn, survivor, name)
        rebuild_chain(conn, merged, name)
    conn.execute("update entity_merges set undone_at = now() where merge_id = %s", (merge_id,))


def _restore_memories(
    conn: psycopg.Connection, survivor: str, merged: str, c: dict[str, Any]
) -> None:
    conn.execute(
        "update memories set entity_id = %s, vector_dirty = true, updated_at = clock_timestamp() "
        "where memory_id = any(%s) and entity_id = %s",
        (merged, c["memories_moved"], survivor),
    )
    for item in c["memories_collapsed"]:
        conn.execute(
            "update memories set superseded_by = null, vector_dirty = true, "
            "updated_at = clock_timestamp() where memory_id = %s and superseded_by = %s",
            (item["memory_id"], item["into"]),
        )
        twin = conn.execute(
            "select source_record_ids, alias_hashes from memories where memory_id = %s",
            (item["into"],),
        ).fetchone()
        conn.execute(
            "update memories set source_record_ids = %s, alias_hashes = %s, "
            "updated_at = clock_timestamp() where memory_id = %s",
            (
                _remove(twin["source_record_ids"], item["added_sources"]),
                _remove(twin["alias_hashes"], item["added_aliases"]),
                item["into"],
            ),
        )


def _restore_edges(conn: psycopg.Connection, merge_id: int, c: dict[str, Any]) -> None:
    for item in c["edges_moved"]:
        conn.execute(
            "update edges set subject_id = %s, object_id = %s where edge_id = %s",
            (item["subject"], item["object"], item["edge_id"]),
        )
    for item in c["edges_collapsed"]:
        conn.execute(
            "update edges set superseded_by = null where edge_id = %s and superseded_by = %s",
            (item["edge_id"], item["into"]),
        )
        twin = conn.execute(
            "select source_record_ids from edges where edge_id = %s", (item["into"],)
        ).fetchone()
        conn.execute(
            "update edges set source_record_ids = %s, first_seen = %s where edge_id = %s",
            (
                _remove(twin["source_record_ids"], item["added_sources"]),
                item["first_seen"],
                item["into"],
            ),
        )
    conn.execute(
        "update edges set superseded_by = null where edge_id = any(%s) and superseded_by = %s",
        (c["edges_dropped"], f"merge:{merge_id}"),
    )
