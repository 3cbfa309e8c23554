"""Reading the entity graph: entities, their neighbours, and memories reachable over edges.

An edge is stored once, subject to object, and read from both ends: every query here follows
edges in both directions. Only current rows count (entities not merged away, edges and memories
not superseded), and every query is scoped to one org.
"""

from __future__ import annotations

from typing import Any

import psycopg

from memo_pipeline.stage2.identity import normalize_domain, normalize_email, normalize_name
from memo_pipeline.stage2.merge import live_entity


class EntityNotFound(LookupError):
    """An entity reference matched nothing, or more than one entity; the message says which."""


def list_entities(conn: psycopg.Connection, org: str | None = None) -> list[dict[str, Any]]:
    """One row per current entity: org, id, type, names, identifiers and memory count."""
    return conn.execute(
        "select e.org_id as org, e.entity_id as id, e.type, e.names, "
        'coalesce((select array_agg(i.identifier order by i.identifier collate "C") '
        "from entity_identifiers i where i.entity_id = e.entity_id), '{}') as identifiers, "
        "(select count(*) from memories m where m.entity_id = e.entity_id "
        "and m.superseded_by is null) as memory_count "
        "from entities e where e.merged_into is null and (%s::text is null or e.org_id = %s) "
        "order by e.org_id, e.type, e.name, e.entity_id",
        (org, org),
    ).fetchall()


def find_entity(conn: psycopg.Connection, org: str, ref: str) -> dict[str, Any]:
    """The current entity an id, e-mail address, web domain or full name refers to."""
    ref = ref.strip()
    row = conn.execute(
        "select entity_id from entities where org_id = %s and entity_id = %s", (org, ref)
    ).fetchone()
    if row is None:
        identifier = normalize_email(ref) if "@" in ref else normalize_domain(ref)
        if identifier:
            row = conn.execute(
                "select entity_id from entity_identifiers where org_id = %s and identifier = %s",
                (org, identifier),
            ).fetchone()
    if row is not None:
        return entity_summary(conn, live_entity(conn, row["entity_id"]))

    names = {normalize_name(ref, "person"), normalize_name(ref, "company")} - {""}
    rows = conn.execute(
        "select entity_id, type, name from entities where org_id = %s and merged_into is null "
        "and norm_names && %s order by created_at, entity_id",
        (org, sorted(names)),
    ).fetchall()
    if not rows:
        raise EntityNotFound(f"org {org}: no entity has the id, identifier or name {ref!r}")
    if len(rows) > 1:
        listed = ", ".join(f"{r['entity_id']} ({r['type']} {r['name']})" for r in rows)
        raise EntityNotFound(f"org {org}: {ref!r} names {len(rows)} entities, pass an id: {listed}")
    return entity_summary(conn, rows[0]["entity_id"])


def entity_summary(conn: psycopg.Connection, entity_id: str) -> dict[str, Any]:
    return conn.execute(
        "select e.org_id as org, e.entity_id as id, e.type, e.name, e.names, "
        'coalesce((select array_agg(i.identifier order by i.identifier collate "C") '
        "from entity_identifiers i where i.entity_id = e.entity_id), '{}') as identifiers "
        "from entities e where e.entity_id = %s",
        (entity_id,),
    ).fetchone()


def neighbours(conn: psycopg.Connection, org: str, entity_id: str) -> list[dict[str, Any]]:
    """Entities one edge away, whichever end the entity is on.

    ``direction`` is ``out`` when the entity is the edge's subject, ``in`` when it is its object.
    """
    return conn.execute(
        "select n.entity_id as id, n.type, n.name, e.predicate, "
        "case when e.subject_id = %(id)s then 'out' else 'in' end as direction, "
        "e.edge_id, e.source_record_ids from edges e join entities n on n.entity_id = "
        "case when e.subject_id = %(id)s then e.object_id else e.subject_id end "
        "where e.org_id = %(org)s and e.superseded_by is null "
        "and (e.subject_id = %(id)s or e.object_id = %(id)s) "
        "order by n.name, e.predicate, direction, e.edge_id",
        {"org": org, "id": entity_id},
    ).fetchall()


def reachable_memories(
    conn: psycopg.Connection, org: str, entity_id: str, hops: int = 1
) -> list[dict[str, Any]]:
    """Current memories of the entity and of every entity within ``hops`` edges of it (edges
    followed in both directions), nearest first, with the number of hops to each."""
    if hops < 0:
        raise ValueError("hops must be zero or more")
    return conn.execute(
        "with recursive walk (entity_id, hops) as ("
        "  select %(id)s::text, 0"
        "  union"
        "  select case when e.subject_id = w.entity_id then e.object_id else e.subject_id end,"
        "         w.hops + 1"
        "  from walk w join edges e on e.org_id = %(org)s and e.superseded_by is null"
        "   and (e.subject_id = w.entity_id or e.object_id = w.entity_id)"
        "  where w.hops < %(hops)s"
        "), nearest as (select entity_id, min(hops) as hops from walk group by entity_id) "
        "select m.memory_id, m.entity_id, n.name as entity, r.hops, m.text, m.source_ts, "
        "m.source_record_ids from nearest r join entities n using (entity_id) "
        "join memories m on m.entity_id = r.entity_id and m.org_id = %(org)s "
        "and m.superseded_by is null "
        "order by r.hops, n.name, m.source_ts, m.memory_id",
        {"org": org, "id": entity_id, "hops": hops},
    ).fetchall()
