"""Provider-neutral prompt rendering.

A prompt is a static prefix (the collection's schema, instructions, few-shot examples and output
rules) followed by the record. The prefix is byte-identical for every record of a collection:
everything in it is sorted, and it holds no timestamps or ids. It ends exactly where the cache
breakpoint goes. The schema version is a hash of this provider-neutral prefix, so switching
provider or model is not a schema change.

A document saved for extraction (a record whose ``metadata["prompt"]`` is ``"document"``) gets the
same prefix followed by fixed document instructions: its ``static_prefix`` is the collection's
prefix plus ``document_suffix``. Adapters that place one cache breakpoint put it after the whole
static prefix; an adapter that can place two (Anthropic) puts the first after ``shared_prefix``,
so documents and ordinary writes share one cache entry, and the second after the suffix. The
document instructions are fixed text (``DOCUMENT_FORMAT`` names their version) and do not change
the schema version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from memo_pipeline.records import ContentRecord
from memo_pipeline.schema.collections import CollectionSpec, OrgSpec
from memo_pipeline.schema.output import output_json_schema
from memo_pipeline.tokens import estimate_tokens

PROMPT_FORMAT = "memo-extract-v1"

OUTPUT_RULES = """\
Output rules:
- Answer with one JSON object and nothing else, matching the answer schema below exactly.
- List every person and company the content is about in "entities", each with a short ref
  (e1, e2, ...), its type, its full name as written, and any e-mail addresses or web domains
  seen for it in "identifiers".
- The record's identifier, when given, belongs to the entity the record is mainly about.
- "properties" holds values for the properties defined above only, written as text; leave a
  property out when the content does not state it.
- "memories" holds atomic facts: one fact per item, self-contained, in the third person, naming
  the entity, with no pronouns that point outside the item. Do not repeat a fact.
- "edges" connects two entities by one of the predicates defined above.
- Extract only what the content states. Never guess."""


DOCUMENT_PROMPT = "document"
DOCUMENT_FORMAT = "memo-document-v1"
DOCUMENT_INSTRUCTIONS = """\
Document instructions:
- The record is a document saved by an application (a page, a file, a knowledge-base entry),
  not a message: it has no sender, and its identifier may be empty.
- Use the document's title as context for its facts; do not turn the title into a memory.
- Extract facts about the people and companies the document describes; skip boilerplate such as
  navigation, tables of contents, legal notices and version histories.

"""


@dataclass(frozen=True)
class RenderedPrompt:
    """One record's prompt. ``static_prefix`` is shared by the collection; ``record_part`` not.

    ``document_suffix`` is the tail of ``static_prefix`` that only document prompts carry (empty
    otherwise); ``shared_prefix`` is the rest, identical for every prompt of the collection.
    """

    static_prefix: str
    record_part: str
    schema_version: str
    prefix_key: str
    document_suffix: str = ""

    @property
    def text(self) -> str:
        return self.static_prefix + self.record_part

    @property
    def shared_prefix(self) -> str:
        return self.static_prefix[: len(self.static_prefix) - len(self.document_suffix)]


def _property_lines(collection: CollectionSpec) -> list[str]:
    lines: list[str] = []
    for type_name in sorted(collection.entity_types):
        spec = collection.entity_types[type_name]
        lines.append(f"Entity type '{type_name}': {spec.description.strip()}")
        for prop_name in sorted(spec.properties):
            prop = spec.properties[prop_name]
            kind = prop.type
            if prop.type == "enum":
                kind = "one of " + ", ".join(prop.values)
            line = f"  - {prop_name} ({kind}{', several' if prop.multi else ''}): "
            line += prop.description.strip()
            if prop.instructions:
                line += " " + prop.instructions.strip()
            lines.append(line)
    return lines


def render_static_prefix(org: OrgSpec, collection_name: str) -> str:
    """The shared prefix for one collection: identical bytes for every record."""
    collection = org.collections[collection_name]
    parts = [
        f"You extract memories for the organisation '{org.display_name}'.",
        f"Collection '{collection_name}': {collection.description.strip()}",
        "",
        "Instructions:",
        collection.instructions.strip(),
        "",
        "Properties:",
        *_property_lines(collection),
        "",
        "Edge predicates:",
        *[
            f"  - {name}: {collection.predicates[name].strip()}"
            for name in sorted(collection.predicates)
        ],
        "",
        OUTPUT_RULES,
        "",
        "Answer schema (JSON Schema):",
        json.dumps(output_json_schema(), sort_keys=True, separators=(",", ":")),
    ]
    for index, example in enumerate(collection.examples, start=1):
        parts += [
            "",
            f"Example {index} content:",
            example.content.strip(),
            f"Example {index} answer:",
            json.dumps(example.output, sort_keys=True, separators=(",", ":")),
        ]
    parts += ["", "The record to extract from follows.", ""]
    return "\n".join(parts)


_PREFIX_CACHE: dict[tuple[int, str], tuple[OrgSpec, str, str]] = {}


def _prefix_and_version(org: OrgSpec, collection_name: str) -> tuple[str, str]:
    # Keyed by object identity (specs are not hashable); the stored spec keeps the id valid.
    cached = _PREFIX_CACHE.get((id(org), collection_name))
    if cached is not None and cached[0] is org:
        return cached[1], cached[2]
    prefix = render_static_prefix(org, collection_name)
    digest = hashlib.sha256(f"{PROMPT_FORMAT}\n{prefix}".encode()).hexdigest()
    _PREFIX_CACHE[(id(org), collection_name)] = (org, prefix, f"sv{digest[:16]}")
    return prefix, f"sv{digest[:16]}"


def static_prefix(org: OrgSpec, collection_name: str) -> str:
    return _prefix_and_version(org, collection_name)[0]


def schema_version(org: OrgSpec, collection_name: str) -> str:
    return _prefix_and_version(org, collection_name)[1]


RECORD_OPEN = "<record>"
RECORD_CLOSE = "</record>"


def render_record_part(record: ContentRecord, content: str | None = None) -> str:
    """The per-record tail. ``content`` overrides the record's (e.g. redacted before sending)."""
    header = {
        "kind": record.kind,
        "date": record.source_ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "identifier": record.identifier or "",
        "title": record.title or "",
    }
    head = "\n".join(f"{key}: {value}" for key, value in header.items())
    body = record.content if content is None else content
    return f"{RECORD_OPEN}\n{head}\n<content>\n{body}\n</content>\n{RECORD_CLOSE}\n"


def record_part_tokens(record: ContentRecord) -> int:
    """The offline token estimate of the record's part of its prompt, as sent unredacted.

    It depends on the record alone, so it is computed once when the record is stored
    (``content_records.record_tokens``) and every later plan of the record reads it.
    """
    return estimate_tokens(render_record_part(record))


@dataclass(frozen=True)
class PromptShape:
    """What a record's prompt shares with its collection: everything but the record part."""

    static_prefix: str
    schema_version: str
    prefix_key: str
    document_suffix: str = ""


def prompt_shape(org: OrgSpec, collection: str, metadata: dict | None = None) -> PromptShape:
    """The shape of the prompt of any record of ``collection`` carrying ``metadata``."""
    prefix, version = _prefix_and_version(org, collection)
    if (metadata or {}).get("prompt") == DOCUMENT_PROMPT:
        return PromptShape(
            static_prefix=prefix + DOCUMENT_INSTRUCTIONS,
            schema_version=version,
            prefix_key=f"{org.org}-{collection}-{version}-{DOCUMENT_FORMAT}",
            document_suffix=DOCUMENT_INSTRUCTIONS,
        )
    return PromptShape(
        static_prefix=prefix, schema_version=version, prefix_key=f"{org.org}-{collection}-{version}"
    )


def render(org: OrgSpec, record: ContentRecord, content: str | None = None) -> RenderedPrompt:
    shape = prompt_shape(org, record.collection, record.metadata)
    return RenderedPrompt(
        static_prefix=shape.static_prefix,
        record_part=render_record_part(record, content),
        schema_version=shape.schema_version,
        prefix_key=shape.prefix_key,
        document_suffix=shape.document_suffix,
    )


def parse_record_part(text: str) -> tuple[dict[str, str], str]:
    """Split a rendered record part back into its header fields and content.

    Used by the offline extractor (and the provider emulator), which see only the request text.
    """
    start = text.rfind(RECORD_OPEN)
    if start < 0:
        return {}, text
    block = text[start + len(RECORD_OPEN) :]
    head, _, rest = block.partition("<content>\n")
    content, _, _ = rest.rpartition("\n</content>")
    fields: dict[str, str] = {}
    for line in head.strip().splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            fields[key.strip()] = value.strip()
        elif line.endswith(":"):
            fields[line[:-1].strip()] = ""
    return fields, content
