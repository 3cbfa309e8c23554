"""Validation of a model answer against the collection's typed schema.

Parsing checks the JSON and the answer's shape (the pydantic ``ExtractionOutput``); validation
then checks every reference, property and predicate against the collection and coerces property
values to their declared types: dates to ISO dates, numbers, booleans, enums compared
case-insensitively, e-mail addresses lower-cased. Errors name the item and the field, so that a
repair request can show the model exactly what to fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import phonenumbers
from dateutil import parser as date_parser
from pydantic import ValidationError

from memo_pipeline.records import text_problem
from memo_pipeline.schema.collections import CollectionSpec, PropertySpec
from memo_pipeline.schema.output import ExtractionOutput

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")


@dataclass(frozen=True)
class ValidatedAnswer:
    output: ExtractionOutput
    values: dict[int, Any]  # index into output.properties -> coerced value


class AnswerInvalid(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def coerce(value: str, spec: PropertySpec) -> Any:
    """Coerce a property value written as text to its declared type; raise ValueError."""
    text = value.strip()
    if not text:
        raise ValueError("is empty")
    match spec.type:
        case "string" | "url":
            return text
        case "email":
            if not EMAIL_RE.match(text):
                raise ValueError(f"{text!r} is not an e-mail address")
            return text.lower()
        case "phone":
            try:
                number = phonenumbers.parse(text, "US")
            except phonenumbers.NumberParseException as exc:
                raise ValueError(f"{text!r} is not a phone number") from exc
            if not phonenumbers.is_possible_number(number):
                raise ValueError(f"{text!r} is not a possible phone number")
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        case "date":
            try:
                parsed = date_parser.parse(text)
            except (ValueError, OverflowError) as exc:
                raise ValueError(f"{text!r} is not a date") from exc
            return parsed.date().isoformat()
        case "integer":
            cleaned = text.replace(",", "").replace("_", "")
            try:
                number = float(cleaned)
            except ValueError as exc:
                raise ValueError(f"{text!r} is not an integer") from exc
            if not number.is_integer():
                raise ValueError(f"{text!r} is not an integer")
            return int(number)
        case "number":
            try:
                return float(text.replace(",", ""))
            except ValueError as exc:
                raise ValueError(f"{text!r} is not a number") from exc
        case "boolean":
            lowered = text.lower()
            if lowered in {"true", "yes", "1"}:
                return True
            if lowered in {"false", "no", "0"}:
                return False
            raise ValueError(f"{text!r} is not a boolean")
        case "enum":
            for allowed in spec.values:
                if allowed.lower() == text.lower():
                    return allowed
            raise ValueError(f"{text!r} is not one of {', '.join(spec.values)}")
    raise ValueError(f"unknown type {spec.type}")


def parse_answer(text: str | None) -> ExtractionOutput:
    if not text:
        raise AnswerInvalid(["answer is empty"])
    try:
        # pydantic parses and validates in one pass, faster than loading the JSON first.
        return ExtractionOutput.model_validate_json(text)
    except ValidationError as exc:
        errors = exc.errors()
        if errors and errors[0]["type"] == "json_invalid":
            raise AnswerInvalid([f"answer is not valid JSON: {errors[0]['msg']}"]) from exc
        raise AnswerInvalid(
            [f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in errors]
        ) from exc


def _unstorable(output: ExtractionOutput) -> list[str]:
    """Fields whose text PostgreSQL cannot store (a NUL, an unpaired surrogate)."""
    fields = [
        *(
            (f"entities[{i}].{name}", value)
            for i, e in enumerate(output.entities)
            for name, value in (
                ("ref", e.ref),
                ("name", e.name),
                *(("identifiers", v) for v in e.identifiers),
            )
        ),
        *(
            (f"properties[{i}].{name}", value)
            for i, p in enumerate(output.properties)
            for name, value in (("entity", p.entity), ("name", p.name), ("value", p.value))
        ),
        *(
            (f"memories[{i}].{name}", value)
            for i, m in enumerate(output.memories)
            for name, value in (("entity", m.entity), ("text", m.text))
        ),
        *(
            (f"edges[{i}].{name}", value)
            for i, e in enumerate(output.edges)
            for name, value in (
                ("subject", e.subject),
                ("predicate", e.predicate),
                ("object", e.object),
            )
        ),
    ]
    return [f"{where}: {problem}" for where, value in fields if (problem := text_problem(value))]


def validate_answer(text: str | None, collection: CollectionSpec) -> ValidatedAnswer:
    """Parse and check an answer; raise ``AnswerInvalid`` with every problem found."""
    output = parse_answer(text)
    # JSON can only carry a NUL or a lone surrogate as a \u escape; answers without one skip
    # the walk over every string.
    errors: list[str] = _unstorable(output) if "\\u" in text else []
    types: dict[str, str] = {}
    for index, entity in enumerate(output.entities):
        if entity.ref in types:
            errors.append(f"entities[{index}].ref: {entity.ref!r} is used twice")
        types[entity.ref] = entity.type
        if not entity.name.strip():
            errors.append(f"entities[{index}].name: is empty")
        if entity.type not in collection.entity_types:
            errors.append(
                f"entities[{index}].type: {entity.type!r} is not defined in the collection"
            )

    values: dict[int, Any] = {}
    for index, prop in enumerate(output.properties):
        entity_type = types.get(prop.entity)
        if entity_type is None:
            errors.append(f"properties[{index}].entity: unknown ref {prop.entity!r}")
            continue
        spec = collection.entity_types.get(entity_type)
        prop_spec = spec.properties.get(prop.name) if spec else None
        if prop_spec is None:
            errors.append(
                f"properties[{index}].name: {prop.name!r} is not a {entity_type} property"
            )
            continue
        try:
            values[index] = coerce(prop.value, prop_spec)
        except ValueError as exc:
            errors.append(f"properties[{index}].value ({prop.name}): {exc}")

    for index, memory in enumerate(output.memories):
        if memory.entity not in types:
            errors.append(f"memories[{index}].entity: unknown ref {memory.entity!r}")
        if not memory.text.strip():
            errors.append(f"memories[{index}].text: is empty")
    for index, edge in enumerate(output.edges):
        for field_name in ("subject", "object"):
            if getattr(edge, field_name) not in types:
                errors.append(
                    f"edges[{index}].{field_name}: unknown ref {getattr(edge, field_name)!r}"
                )
        if edge.predicate not in collection.predicates:
            errors.append(f"edges[{index}].predicate: {edge.predicate!r} is not defined")
    if errors:
        raise AnswerInvalid(errors)
    return ValidatedAnswer(output=output, values=values)
