"""Identity resolution: map the people and companies in an answer to the org's entities.

Exact identifiers first (e-mail addresses normalised for case and plus-tags, web domains without
``www.``), then the normalised full name of the same entity type. Names are matched only when
they are identical after normalisation: a conservative rule that prefers two entities to a wrong
merge. Nothing is ever matched across orgs: every lookup is scoped by ``org_id``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import psycopg

from memo_pipeline.schema.output import ExtractedEntity

HONORIFICS = {"mr", "mrs", "ms", "miss", "dr", "prof", "sir", "dame"}
COMPANY_SUFFIXES = {"inc", "ltd", "llc", "corp", "corporation", "gmbh", "limited", "plc", "co"}


def normalize_email(value: str) -> str | None:
    text = value.strip().lower().removeprefix("mailto:")
    if text.count("@") != 1:
        return None
    local, domain = text.split("@")
    local = local.split("+", 1)[0]
    if not local or "." not in domain:
        return None
    return f"{local}@{domain}"


def normalize_domain(value: str) -> str | None:
    text = re.sub(r"^[a-z]+://", "", value.strip().lower()).split("/", 1)[0].split(":", 1)[0]
    text = text.removeprefix("www.")
    if "@" in text or "." not in text or " " in text or not re.fullmatch(r"[a-z0-9.-]+", text):
        return None
    return text


def normalize_identifier(value: str, entity_type: str) -> str | None:
    if "@" in value:
        return normalize_email(value) if entity_type == "person" else None
    return normalize_domain(value) if entity_type == "company" else None


def normalize_name(name: str, entity_type: str) -> str:
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    tokens = re.sub(r"[^a-z0-9 ]+", " ", text).split()
    if entity_type == "person":
        tokens = [t for t in tokens if t not in HONORIFICS]
    else:
        while len(tokens) > 1 and tokens[-1] in COMPANY_SUFFIXES:
            tokens.pop()
    return " ".join(tokens)


def _entity_id(org: str, entity_type: str, key: str) -> str:
    return "e" + hashlib.sha256(f"{org}\x1f{entity_type}\x1f{key}".encode()).hexdigest()[:31]


class Resolver:
    """Resolves extracted entities inside one transaction; caches what it has seen."""

    def __init__(self, conn: psycopg.Connection, org: str) -> None:
        self.conn = conn
        self.org = org

    def resolve(self, entity: ExtractedEntity) -> str:
        identifiers = sorted(
            {n for i in entity.identifiers if (n := normalize_identifier(i, entity.type))}
        )
        norm = normalize_name(entity.name, entity.type) or entity.name.strip().lower()
        entity_id = None
        if identifiers:
            row = self.conn.execute(
                "select e.entity_id from entity_identifiers i join entities e using (entity_id) "
                "where i.org_id = %s and i.identifier = any(%s) and e.type = %s "
                "order by e.created_at, e.entity_id limit 1",
                (self.org, identifiers, entity.type),
            ).fetchone()
            entity_id = row["entity_id"] if row else None
        if entity_id is None:
            row = self.conn.execute(
                "select entity_id from entities where org_id = %s and type = %s and norm_name = %s "
                "and merged_into is null order by created_at, entity_id limit 1",
                (self.org, entity.type, norm),
            ).fetchone()
            entity_id = row["entity_id"] if row else None
        if entity_id is None:
            entity_id = _entity_id(self.org, entity.type, identifiers[0] if identifiers else norm)
            self.conn.execute(
                "insert into entities (entity_id, org_id, type, name, norm_name, names) "
                "values (%s, %s, %s, %s, %s, %s) on conflict (entity_id) do nothing",
                (
                    entity_id,
                    self.org,
                    entity.type,
                    entity.name.strip(),
                    norm,
                    [entity.name.strip()],
                ),
            )
        else:
            self.conn.execute(
                "update entities set names = array_append(names, %s) "
                "where entity_id = %s and not (%s = any(names))",
                (entity.name.strip(), entity_id, entity.name.strip()),
            )
        for identifier in identifiers:
            self.conn.execute(
                "insert into entity_identifiers (org_id, identifier, entity_id) values (%s, %s, %s) "
                "on conflict (org_id, identifier) do nothing",
                (self.org, identifier, entity_id),
            )
        return entity_id
