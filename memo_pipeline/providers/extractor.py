"""The offline extractor: a deterministic heuristic stand-in for a model. It is not a model.

It answers every extraction request with schema-valid output derived from the record's content:
people from e-mail headers, addresses, speaker labels and capitalised names; companies from
corporate suffixes and web domains; contact properties from addresses and phone numbers; one
memory per sentence that names an entity. The ``local`` provider and the provider emulator both
answer with it, so every path can run, and be tested, with no API key and no network. Its quality
is far below a model's; it exists to exercise the pipeline, not to judge extraction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson
import phonenumbers

from memo_pipeline.prompts.render import parse_record_part

MAX_MEMORIES = 12
MAX_ENTITIES = 12
MIN_MEMORY_CHARS = 25
MAX_MEMORY_CHARS = 280

EMAIL_RE = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
NAMED_ADDRESS_RE = re.compile(
    r"\"?([A-Z][A-Za-z'.-]+(?: [A-Z][A-Za-z'.-]+){1,2})\"?\s*<\s*([^<>\s]+@[^<>\s]+)\s*>"
)
SPEAKER_RE = re.compile(r"^\s*([A-Z][A-Za-z.'-]+(?: [A-Z][A-Za-z.'-]+){0,2}):\s+(\S.*)$", re.M)
PERSON_RE = re.compile(
    r"\b([A-Z][a-z]{1,15}(?:-[A-Z][a-z]+)?) ([A-Z][a-z]{1,20}(?:-[A-Z][a-z]+)?)\b"
)
COMPANY_RE = re.compile(
    r"\b((?:[A-Z][A-Za-z0-9&'-]+ ){0,3}[A-Z][A-Za-z0-9&'-]+),? "
    r"(Inc|Ltd|LLC|Corp|Corporation|GmbH|Limited|plc|Technologies|Systems|Labs|Group)\b\.?"
)
TITLE_RE = re.compile(
    r"\b(?:I am|I'm|is|as) (?:a |an |the |our )?((?:senior |lead |chief |head of |vice president of )?"
    r"(?:[a-z]+ )?(?:engineer|manager|director|designer|developer|analyst|consultant|founder|"
    r"president|ceo|cto|cfo|coo|officer|scientist|architect|lead|recruiter|administrator))\b"
    r"(?: (?:at|of|for) ((?:[A-Z][A-Za-z0-9&'-]+ ?){1,4}))?",
    re.I,
)
SENTENCE_RE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")
FREE_MAIL = {
    "gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "aol.com", "icloud.com",
    "yahoo.co.uk", "eircom.net", "msn.com", "example.com", "example.org", "mail.com",
}  # fmt: skip
NOT_NAMES = {
    "The", "This", "That", "These", "Those", "Thanks", "Thank", "Hi", "Hello", "Dear", "Best",
    "Regards", "Kind", "Sent", "From", "To", "Subject", "Date", "Re", "Fwd", "Monday", "Tuesday",
    "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "January", "February", "March",
    "April", "May", "June", "July", "August", "September", "October", "November", "December",
    "New", "Project", "Meeting", "Please", "Let", "We", "Our", "Your", "If", "It", "In", "On",
    "At", "For", "And", "But", "So", "Yes", "No", "Good", "Great", "Just", "All", "Any", "What",
    "When", "Where", "Why", "How", "Who", "Also", "Cheers", "Message", "Original", "Open",
    "Source", "Linux", "Irish", "United", "States", "Street", "Road", "North", "South", "East",
    "West", "Mr", "Mrs", "Ms", "Dr", "Professor", "Grad", "Marketing", "User", "Interface",
    "Industrial", "Designer", "Manager", "Team", "Group", "Company", "Inc", "Ltd", "Corp",
}  # fmt: skip


@dataclass
class _Entity:
    ref: str
    type: str
    name: str
    identifiers: list[str] = field(default_factory=list)


@dataclass
class _Answer:
    entities: dict[str, _Entity] = field(default_factory=dict)
    properties: list[dict[str, str]] = field(default_factory=list)
    memories: list[dict[str, str]] = field(default_factory=list)
    edges: list[dict[str, str]] = field(default_factory=list)

    def entity(self, type_: str, name: str, identifier: str | None = None) -> _Entity | None:
        key = " ".join(name.lower().split())
        for existing in self.entities.values():
            same_id = identifier and identifier in existing.identifiers
            if existing.type == type_ and (
                same_id or " ".join(existing.name.lower().split()) == key
            ):
                if identifier and identifier not in existing.identifiers:
                    existing.identifiers.append(identifier)
                return existing
        if len(self.entities) >= MAX_ENTITIES:
            return None
        ent = _Entity(ref=f"e{len(self.entities) + 1}", type=type_, name=name)
        if identifier:
            ent.identifiers.append(identifier)
        self.entities[ent.ref] = ent
        return ent

    def add_property(self, ent: _Entity, name: str, value: str, allowed: set[str]) -> None:
        if name not in allowed:
            return
        item = {"entity": ent.ref, "name": name, "value": value}
        if item not in self.properties:
            self.properties.append(item)

    def add_edge(self, subject: _Entity, predicate: str, obj: _Entity, allowed: set[str]) -> None:
        if predicate not in allowed or subject.ref == obj.ref:
            return
        item = {"subject": subject.ref, "predicate": predicate, "object": obj.ref}
        if item not in self.edges:
            self.edges.append(item)

    def as_dict(self) -> dict[str, list[dict[str, object]]]:
        return {
            "entities": [
                {"ref": e.ref, "type": e.type, "name": e.name, "identifiers": e.identifiers}
                for e in self.entities.values()
            ],
            "properties": self.properties,
            "memories": self.memories,
            "edges": self.edges,
        }


def _name_from_address(address: str) -> str:
    local = address.split("@", 1)[0].split("+", 1)[0]
    parts = [p for p in re.split(r"[._-]+", local) if p.isalpha()]
    return " ".join(p.capitalize() for p in parts) or local


def _company_from_domain(domain: str) -> str:
    labels = domain.lower().split(".")
    core = (
        labels[-3] if len(labels) >= 3 and labels[-2] in {"co", "com", "org", "ac"} else labels[-2]
    )
    return core.replace("-", " ").title()


def _schema_names(prefix: str) -> tuple[set[str], set[str]]:
    """Property and predicate names declared in the prompt's static prefix."""
    props: set[str] = set()
    predicates: set[str] = set()
    section = ""
    for line in prefix.splitlines():
        if line in {"Properties:", "Edge predicates:"}:
            section = line
            continue
        match = re.match(r"^  - ([a-z_]+)[ :(]", line)
        if not match:
            if line and not line.startswith((" ", "Entity type")):
                section = ""
            continue
        (props if section == "Properties:" else predicates).add(match.group(1))
    return props, predicates


def _sentences(content: str) -> Iterable[str]:
    for block in re.split(r"\n\s*\n", content):
        text = " ".join(block.split())
        if not text or text.startswith(">"):
            continue
        yield from SENTENCE_RE.split(text)


def extract(
    content: str, identifier: str = "", prefix: str = ""
) -> dict[str, list[dict[str, object]]]:
    """Heuristic extraction of one record's content; deterministic for the same input."""
    props, predicates = _schema_names(prefix)
    if not prefix:
        props = {"email", "phone", "job_title", "employer", "domain"}
        predicates = {"works_at", "knows", "mentions"}
    answer = _Answer()
    subject: _Entity | None = None

    if identifier and "@" in identifier:
        named = {addr.lower(): name for name, addr in NAMED_ADDRESS_RE.findall(content)}
        subject = answer.entity(
            "person",
            named.get(identifier.lower()) or _name_from_address(identifier),
            identifier.lower(),
        )
    elif identifier:
        subject = answer.entity("person", identifier)

    for name, address in NAMED_ADDRESS_RE.findall(content):
        answer.entity("person", name.strip(), address.lower())
    for address in sorted(set(a.lower() for a in EMAIL_RE.findall(content))):
        if not any(address in e.identifiers for e in answer.entities.values()):
            answer.entity("person", _name_from_address(address), address)
    for speaker, _ in SPEAKER_RE.findall(content):
        if speaker.split()[0] not in NOT_NAMES and speaker not in {
            "Subject",
            "From",
            "To",
            "Date",
            "Cc",
        }:
            answer.entity("person", speaker)
    for first, last in PERSON_RE.findall(content):
        if first not in NOT_NAMES and last not in NOT_NAMES:
            answer.entity("person", f"{first} {last}")
    for base, suffix in COMPANY_RE.findall(content):
        answer.entity("company", f"{base} {suffix}".strip())

    for ent in list(answer.entities.values()):
        for ident in list(ent.identifiers):
            if "@" not in ident:
                continue
            answer.add_property(ent, "email", ident, props)
            domain = ident.rsplit("@", 1)[1]
            if domain not in FREE_MAIL and ent.type == "person":
                company = answer.entity("company", _company_from_domain(domain), domain)
                if company:
                    answer.add_property(company, "domain", domain, props)
                    answer.add_property(ent, "employer", company.name, props)
                    answer.add_edge(ent, "works_at", company, predicates)

    phone_owner = subject or next(iter(answer.entities.values()), None)
    if phone_owner:
        for match in phonenumbers.PhoneNumberMatcher(content, "US"):
            formatted = phonenumbers.format_number(
                match.number, phonenumbers.PhoneNumberFormat.E164
            )
            answer.add_property(phone_owner, "phone", formatted, props)
        title = TITLE_RE.search(content)
        if title:
            answer.add_property(
                phone_owner, "job_title", " ".join(title.group(1).lower().split()), props
            )

    if subject:
        for ent in answer.entities.values():
            if ent.type == "person" and ent is not subject:
                answer.add_edge(
                    subject, "knows" if "knows" in predicates else "mentions", ent, predicates
                )

    by_name = sorted(answer.entities.values(), key=lambda e: -len(e.name))
    seen: set[str] = set()
    for sentence in _sentences(content):
        if len(answer.memories) >= MAX_MEMORIES:
            break
        text = sentence.strip()
        speaker = SPEAKER_RE.match(text)
        owner = None
        if speaker:
            owner = next((e for e in by_name if e.name == speaker.group(1)), None)
            if owner:
                text = f"{owner.name} said: {speaker.group(2)}"
        if owner is None:
            owner = next((e for e in by_name if e.name in text), None)
        if owner is None and subject is not None and re.search(r"\b(I|I'm|my|we)\b", text):
            owner = subject
            text = f"{subject.name} wrote: {text}"
        if owner is None or len(text) < MIN_MEMORY_CHARS or EMAIL_RE.fullmatch(text):
            continue
        text = text[:MAX_MEMORY_CHARS].rstrip()
        key = text.lower()
        if key not in seen:
            seen.add(key)
            answer.memories.append({"entity": owner.ref, "text": text})
    return answer.as_dict()


def answer_for_prompt(prompt_text: str) -> str:
    """The JSON answer for a full rendered prompt (static prefix + record part)."""
    fields, content = parse_record_part(prompt_text)
    prefix = prompt_text[: prompt_text.rfind("<record>")] if "<record>" in prompt_text else ""
    result = extract(content, fields.get("identifier", ""), prefix)
    return orjson.dumps(result).decode()
