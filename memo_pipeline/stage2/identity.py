"""Identity resolution: map the people and companies in an answer to the org's entities.

Rules, in order, always inside one org (every lookup is scoped by ``org_id``):

1. exact identifiers: e-mail addresses (case and ``+tag`` ignored) for people, web domains
   (scheme, ``www.`` and path ignored) for companies, from the entity's ``identifiers`` and from
   its typed ``email``/``domain`` property values in the same answer;
2. the normalised full name (accents, case, punctuation, honorifics and company suffixes
   ignored) against every name an entity is known by. Conservative: a one-word person name never
   matches by name, and a name that comes with an identifier never links to an entity holding a
   different identifier of its own. A bare name known to several entities goes to the oldest of
   them, so that a mention resolves the same way before and after a namesake appears (and the
   same content ingested twice lands on the same entities).

When one extracted entity links two existing entities (its identifiers belong to both, or its
identifier belongs to one and its name to another that has no identifiers of its own), the younger
entity is merged into the older one (``merge.merge_entities``), with the evidence recorded; a
merge that was undone is not made again.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import psycopg

from memo_pipeline.schema.output import ExtractedEntity, ExtractionOutput
from memo_pipeline.stage2.merge import live_entity, merge_blocked, merge_entities, order_by_age

HONORIFICS = {"mr", "mrs", "ms", "miss", "dr", "prof", "sir", "dame"}
COMPANY_SUFFIXES = {"inc", "ltd", "llc", "corp", "corporation", "gmbh", "limited", "plc", "co"}
# Typed property values that are identifiers of their entity.
IDENTIFIER_PROPERTIES = {"person": {"email"}, "company": {"domain"}}


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
    text = text.removeprefix("www.").rstrip(".")
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


def entity_key(org: str, entity_type: str, key: str) -> str:
    return "e" + hashlib.sha256(f"{org}\x1f{entity_type}\x1f{key}".encode()).hexdigest()[:31]


def name_matchable(norm: str, entity_type: str) -> bool:
    return bool(norm) and (entity_type != "person" or len(norm.split()) >= 2)


class Resolver:
    """Resolves the entities of one answer inside the caller's transaction."""

    def __init__(
        self,
        conn: psycopg.Connection,
        org: str,
        single_valued: dict[str, list[str]] | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        self.conn = conn
        self.org = org
        self.single_valued = single_valued or {}
        self.provenance = provenance or {}
        self.merges: list[int] = []

    def resolve_answer(self, output: ExtractionOutput) -> dict[str, str]:
        """ref -> live entity id, for every entity of the answer."""
        extra: dict[str, list[str]] = {}
        types = {e.ref: e.type for e in output.entities}
        for prop in output.properties:
            if prop.name in IDENTIFIER_PROPERTIES.get(types.get(prop.entity, ""), set()):
                extra.setdefault(prop.entity, []).append(prop.value)
        refs = {e.ref: self.resolve(e, extra.get(e.ref, [])) for e in output.entities}
        # A merge made for a later entity may have folded one resolved earlier.
        return {ref: live_entity(self.conn, entity_id) for ref, entity_id in refs.items()}

    def _identifier_owners(self, identifiers: list[str], entity_type: str) -> dict[str, str]:
        rows = self.conn.execute(
            "select i.identifier, i.entity_id from entity_identifiers i join entities e "
            "using (entity_id) where i.org_id = %s and i.identifier = any(%s) and e.type = %s",
            (self.org, identifiers, entity_type),
        ).fetchall()
        return {r["identifier"]: live_entity(self.conn, r["entity_id"]) for r in rows}

    def _name_candidates(self, norm: str, entity_type: str) -> list[dict[str, Any]]:
        return self.conn.execute(
            "select e.entity_id, e.created_at, exists (select 1 from entity_identifiers i "
            "where i.entity_id = e.entity_id) as has_identifiers from entities e "
            "where e.org_id = %s and e.type = %s and %s = any(e.norm_names) "
            "and e.merged_into is null order by e.created_at, e.entity_id",
            (self.org, entity_type, norm),
        ).fetchall()

    def _merge(self, ids: list[str], entity_type: str, evidence: dict[str, Any]) -> str:
        ordered = order_by_age(self.conn, ids)
        survivor = ordered[0]
        for merged in ordered[1:]:
            if merge_blocked(self.conn, self.org, survivor, merged):
                continue
            self.merges.append(
                merge_entities(
                    self.conn,
                    self.org,
                    survivor,
                    merged,
                    {**evidence, **self.provenance},
                    self.single_valued.get(entity_type, []),
                )
            )
        return survivor

    def resolve(self, entity: ExtractedEntity, extra_identifiers: Sequence[str] = ()) -> str:
        name = entity.name.strip()
        identifiers = sorted(
            {
                n
                for i in [*entity.identifiers, *extra_identifiers]
                if (n := normalize_identifier(i, entity.type))
            }
        )
        norm = normalize_name(name, entity.type) or name.lower()
        owners = self._identifier_owners(identifiers, entity.type) if identifiers else {}
        found = sorted(set(owners.values()))

        target: str | None = None
        if len(found) > 1:
            target = self._merge(
                found,
                entity.type,
                {"rule": "shared_identifiers", "name": name, "identifiers": owners},
            )
        elif found:
            target = found[0]

        if name_matchable(norm, entity.type):
            candidates = self._name_candidates(norm, entity.type)
            if target is None:
                usable = [c for c in candidates if not (identifiers and c["has_identifiers"])]
                if usable:  # oldest first
                    target = usable[0]["entity_id"]
            else:
                others = [c for c in candidates if c["entity_id"] != target]
                if len(others) == 1 and not others[0]["has_identifiers"]:
                    target = self._merge(
                        [target, others[0]["entity_id"]],
                        entity.type,
                        {
                            "rule": "name_and_identifier",
                            "name": name,
                            "identifiers": owners,
                            "name_match": others[0]["entity_id"],
                        },
                    )

        if target is None:
            target = self._create(entity.type, name, norm, identifiers)
        else:
            self._add_name(target, name, norm)
        for identifier in identifiers:
            self.conn.execute(
                "insert into entity_identifiers (org_id, identifier, entity_id) values (%s, %s, %s) "
                "on conflict (org_id, identifier) do nothing",
                (self.org, identifier, target),
            )
        return target

    def _create(self, entity_type: str, name: str, norm: str, identifiers: list[str]) -> str:
        entity_id = entity_key(self.org, entity_type, identifiers[0] if identifiers else norm)
        inserted = self.conn.execute(
            "insert into entities (entity_id, org_id, type, name, norm_name, names, norm_names, "
            "created_at) values (%s, %s, %s, %s, %s, %s, %s, clock_timestamp()) "
            "on conflict (entity_id) do nothing",
            (entity_id, self.org, entity_type, name, norm, [name], [norm]),
        ).rowcount
        if inserted:
            return entity_id
        # The deterministic id exists already (an entity merged away, or one the name rules
        # declined): continue with whoever holds its data now.
        entity_id = live_entity(self.conn, entity_id)
        self._add_name(entity_id, name, norm)
        return entity_id

    def _add_name(self, entity_id: str, name: str, norm: str) -> None:
        self.conn.execute(
            "update entities set names = case when %s = any(names) then names "
            "else array_append(names, %s) end, norm_names = case when %s = any(norm_names) "
            "then norm_names else array_append(norm_names, %s) end "
            "where entity_id = %s and not (%s = any(names) and %s = any(norm_names))",
            (name, name, norm, norm, entity_id, name, norm),
        )
