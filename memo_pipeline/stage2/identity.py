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
3. the same full name with an e-mail address at the same organisation's domain (or a subdomain
   of it) as the addresses of exactly one entity of that name: one person writing from two
   mailboxes of one employer (``jane.doe@`` and ``jdoe@example.com``). Public mail providers
   (``PUBLIC_MAIL_DOMAINS``) do not count as an organisation, and addresses at two different
   organisations stay two people (a namesake, or someone who changed jobs: the rules cannot
   tell them apart; ``memo-pipeline merge`` joins them by hand).

When one extracted entity links two existing entities (its identifiers belong to both, its
identifier belongs to one and its name to another that has no identifiers of its own, or rule 3
links it to a namesake), the younger entity is merged into the older one
(``merge.merge_entities``), with the evidence recorded; a merge that was undone is not made again.
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
# Mail domains shared by unrelated people: the same name at one of these is no evidence.
PUBLIC_MAIL_DOMAINS = frozenset(
    {
        "aol.com", "gmail.com", "googlemail.com", "gmx.com", "gmx.de", "gmx.net", "hotmail.com",
        "hotmail.co.uk", "icloud.com", "live.com", "mail.com", "mail.ru", "me.com", "msn.com",
        "outlook.com", "proton.me", "protonmail.com", "qq.com", "web.de", "yahoo.co.uk",
        "yahoo.com", "yandex.ru", "163.com", "126.com",
    }
)  # fmt: skip


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


def organisation_domains(identifiers: Sequence[str]) -> set[str]:
    """The mail domains of normalised addresses, public mail providers left out."""
    domains = {i.rpartition("@")[2] for i in identifiers if "@" in i}
    return {d for d in domains if d not in PUBLIC_MAIL_DOMAINS}


def same_organisation(ours: set[str], theirs: set[str]) -> bool:
    """Some domain of one side equals a domain of the other, or is a subdomain of it."""
    return any(a == b or a.endswith("." + b) or b.endswith("." + a) for a in ours for b in theirs)


def _norm_of(entity: ExtractedEntity) -> str:
    name = entity.name.strip()
    return normalize_name(name, entity.type) or name.lower()


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
        # Name candidates read for the whole answer at once; valid until this resolver changes
        # an entity's names, identifiers or merges (then each lookup reads again).
        self._names: dict[tuple[str, str], list[dict[str, Any]]] | None = None

    def resolve_answer(self, output: ExtractionOutput) -> dict[str, str]:
        """ref -> live entity id, for every entity of the answer."""
        extra: dict[str, list[str]] = {}
        types = {e.ref: e.type for e in output.entities}
        for prop in output.properties:
            if prop.name in IDENTIFIER_PROPERTIES.get(types.get(prop.entity, ""), set()):
                extra.setdefault(prop.entity, []).append(prop.value)
        self._read_names(output.entities)
        refs = {e.ref: self.resolve(e, extra.get(e.ref, [])) for e in output.entities}
        self._names = None
        if not self.merges:
            return refs  # every entity resolves to a live one
        # A merge made for a later entity may have folded one resolved earlier.
        return {ref: live_entity(self.conn, entity_id) for ref, entity_id in refs.items()}

    def _identifier_owners(self, identifiers: list[str], entity_type: str) -> dict[str, str]:
        rows = self.conn.execute(
            "select i.identifier, i.entity_id from entity_identifiers i join entities e "
            "using (entity_id) where i.org_id = %s and i.identifier = any(%s) and e.type = %s",
            (self.org, identifiers, entity_type),
        ).fetchall()
        return {r["identifier"]: live_entity(self.conn, r["entity_id"]) for r in rows}

    def _read_names(self, entities: Sequence[ExtractedEntity]) -> None:
        """The name candidates of every matchable entity of an answer, in one read."""
        keys = sorted(
            {(norm, e.type) for e in entities if name_matchable(norm := _norm_of(e), e.type)}
        )
        names: dict[tuple[str, str], list[dict[str, Any]]] = {key: [] for key in keys}
        self._names = names
        if not keys:
            return
        for row in self.conn.execute(
            "select k.norm, k.type, e.entity_id, e.created_at, e.names, exists (select 1 from "
            "entity_identifiers i where i.entity_id = e.entity_id) as has_identifiers "
            "from unnest(%s::text[], %s::text[]) as k(norm, type) join entities e "
            "on e.org_id = %s and e.type = k.type and k.norm = any(e.norm_names) "
            "and e.merged_into is null order by k.norm, k.type, e.created_at, e.entity_id",
            ([k[0] for k in keys], [k[1] for k in keys], self.org),
        ):
            names[(row.pop("norm"), row.pop("type"))].append(row)

    def _changed(self, changed: object = True) -> None:
        """This resolver changed an entity (when ``changed`` is truthy): read names again."""
        if changed:
            self._names = None

    def _name_candidates(self, norm: str, entity_type: str) -> list[dict[str, Any]]:
        if self._names is not None and (norm, entity_type) in self._names:
            return self._names[(norm, entity_type)]
        return self.conn.execute(
            "select e.entity_id, e.created_at, e.names, exists (select 1 from entity_identifiers i "
            "where i.entity_id = e.entity_id) as has_identifiers from entities e "
            "where e.org_id = %s and e.type = %s and %s = any(e.norm_names) "
            "and e.merged_into is null order by e.created_at, e.entity_id",
            (self.org, entity_type, norm),
        ).fetchall()

    def _colleague(
        self, candidates: list[dict[str, Any]], identifiers: list[str], entity_type: str
    ) -> str | None:
        """The one namesake (rule 3) whose addresses share an organisation domain with ours."""
        domains = organisation_domains(identifiers)
        if entity_type != "person" or not domains:
            return None
        held = [c["entity_id"] for c in candidates if c["has_identifiers"]]
        if not held:
            return None
        theirs: dict[str, set[str]] = {}
        for row in self.conn.execute(
            "select entity_id, identifier from entity_identifiers where entity_id = any(%s)",
            (held,),
        ):
            theirs.setdefault(row["entity_id"], set()).add(row["identifier"])
        matches = [
            e for e in held if same_organisation(domains, organisation_domains(theirs.get(e, ())))
        ]
        return matches[0] if len(matches) == 1 else None

    def _merge(
        self,
        ids: list[str],
        entity_type: str,
        evidence: dict[str, Any],
        prefer: str | None = None,
    ) -> str:
        """Merge ``ids`` into the oldest; returns it, or ``prefer`` if every merge was undone
        before (the entity the answer's own identifiers point at keeps the answer)."""
        ordered = order_by_age(self.conn, ids)
        survivor = ordered[0]
        blocked = [m for m in ordered[1:] if merge_blocked(self.conn, self.org, survivor, m)]
        if prefer is not None and len(blocked) == len(ordered) - 1:
            return prefer
        for merged in ordered[1:]:
            if merged in blocked:
                continue
            self._changed()
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
        norm = _norm_of(entity)
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

        colleague: str | None = None
        candidates: list[dict[str, Any]] = []
        if name_matchable(norm, entity.type):
            candidates = self._name_candidates(norm, entity.type)
            if target is None:
                usable = [c for c in candidates if not (identifiers and c["has_identifiers"])]
                if usable:  # oldest first
                    target = usable[0]["entity_id"]
                else:
                    colleague = self._colleague(candidates, identifiers, entity.type)
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
                        prefer=target,
                    )
                else:
                    colleague = self._colleague(others, identifiers, entity.type)

        if target is None:
            target = self._create(entity.type, name, norm, identifiers)
        elif not any(c["entity_id"] == target and name in c["names"] for c in candidates):
            self._add_name(target, name, norm)  # a candidate holding the name has its norm too
        if colleague is not None and live_entity(self.conn, colleague) != target:
            # A recorded merge rather than a silent match, so that an operator can undo it.
            self._add_identifiers(target, identifiers)
            target = self._merge(
                [target, colleague],
                entity.type,
                {
                    "rule": "name_and_mail_domain",
                    "name": name,
                    "identifiers": identifiers,
                    "name_match": colleague,
                },
                prefer=target,
            )
        self._add_identifiers(target, identifiers)
        return target

    def _add_identifiers(self, entity_id: str, identifiers: list[str]) -> None:
        for identifier in identifiers:
            added = self.conn.execute(
                "insert into entity_identifiers (org_id, identifier, entity_id) values (%s, %s, %s) "
                "on conflict (org_id, identifier) do nothing",
                (self.org, identifier, entity_id),
            ).rowcount
            self._changed(added)

    def _create(self, entity_type: str, name: str, norm: str, identifiers: list[str]) -> str:
        entity_id = entity_key(self.org, entity_type, identifiers[0] if identifiers else norm)
        inserted = self.conn.execute(
            "insert into entities (entity_id, org_id, type, name, norm_name, names, norm_names, "
            "created_at) values (%s, %s, %s, %s, %s, %s, %s, clock_timestamp()) "
            "on conflict (entity_id) do nothing",
            (entity_id, self.org, entity_type, name, norm, [name], [norm]),
        ).rowcount
        if inserted:
            self._changed()
            return entity_id
        # The deterministic id exists already (an entity merged away, or one the name rules
        # declined): continue with whoever holds its data now.
        entity_id = live_entity(self.conn, entity_id)
        self._add_name(entity_id, name, norm)
        return entity_id

    def _add_name(self, entity_id: str, name: str, norm: str) -> None:
        changed = self.conn.execute(
            "update entities set names = case when %s = any(names) then names "
            "else array_append(names, %s) end, norm_names = case when %s = any(norm_names) "
            "then norm_names else array_append(norm_names, %s) end "
            "where entity_id = %s and not (%s = any(names) and %s = any(norm_names))",
            (name, name, norm, norm, entity_id, name, norm),
        ).rowcount
        self._changed(changed)
