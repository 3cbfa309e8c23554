"""The extraction answer: what every provider path must return for one record.

The same pydantic model drives the JSON schema sent to the providers (structured output where the
provider supports it, schema text in the cached prompt where it does not) and the validation of
what comes back. Entities are referred to by a short local ``ref`` inside one answer; Stage 2 maps
refs to the org's entities.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EntityType = Literal["person", "company"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExtractedEntity(_Strict):
    ref: str = Field(
        description="Short local label used by properties, memories and edges, e.g. e1."
    )
    type: EntityType
    name: str = Field(description="Full name as written in the content.")
    identifiers: list[str] = Field(
        description="Exact identifiers seen for this entity: e-mail addresses, web domains."
    )


class ExtractedProperty(_Strict):
    entity: str = Field(description="ref of the entity the value belongs to")
    name: str = Field(description="property name from the collection schema")
    value: str = Field(description="the value as text; typed by the collection schema")


class ExtractedMemory(_Strict):
    entity: str = Field(description="ref of the entity the fact is about")
    text: str = Field(description="one atomic, self-contained fact in the third person")


class ExtractedEdge(_Strict):
    subject: str = Field(description="ref of the subject entity")
    predicate: str = Field(description="relation name from the collection's predicates")
    object: str = Field(description="ref of the object entity")


class ExtractionOutput(_Strict):
    entities: list[ExtractedEntity]
    properties: list[ExtractedProperty]
    memories: list[ExtractedMemory]
    edges: list[ExtractedEdge]


def output_json_schema() -> dict[str, Any]:
    """The answer schema in the strict subset every provider accepts.

    Objects carry ``additionalProperties: false`` and list every property as required; ``$defs``
    are inlined because some structured-output implementations reject references.
    """
    schema = ExtractionOutput.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]]))
            out = {k: resolve(v) for k, v in node.items() if k != "title"}
            if out.get("type") == "object":
                out["additionalProperties"] = False
                out["required"] = list(out.get("properties", {}))
            return out
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)
