"""Answer validation and the offline extractor: coercion rules, per-field errors, and that the
extractor's answers validate against the example collection. Stage 2 writes are covered in
test_pipeline."""

from __future__ import annotations

import orjson
import pytest

from memo_pipeline.config import REPO_ROOT
from memo_pipeline.ingest.loaders import LoadOptions, load
from memo_pipeline.prompts.render import render
from memo_pipeline.providers.extractor import answer_for_prompt
from memo_pipeline.records import ContentRecord
from memo_pipeline.schema.collections import PropertySpec, load_orgs
from memo_pipeline.stage2.validate import AnswerInvalid, coerce, validate_answer

ORG = load_orgs(REPO_ROOT / "config" / "orgs")["acme"]


@pytest.mark.parametrize(
    ("type_", "value", "expected"),
    [
        ("email", "Dana@North.Example", "dana@north.example"),
        ("phone", "(415) 555-0134", "+14155550134"),
        ("date", "March 4, 2026", "2026-03-04"),
        ("integer", "1,200", 1200),
        ("number", "3.5", 3.5),
        ("boolean", "Yes", True),
        ("string", "  lead  ", "lead"),
    ],
)
def test_coerce(type_, value, expected):
    assert coerce(value, PropertySpec(type=type_, description="d")) == expected


def test_enum_is_case_insensitive_and_returns_the_declared_spelling():
    spec = PropertySpec(type="enum", values=["manager", "director"], description="d")
    assert coerce("DIRECTOR", spec) == "director"
    with pytest.raises(ValueError, match="not one of manager, director"):
        coerce("intern", spec)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"entities": []}', "properties: Field required"),
        (
            '{"entities":[{"ref":"e1","type":"person","name":"A","identifiers":[]}],'
            '"properties":[{"entity":"e1","name":"shoe_size","value":"9"}],"memories":[],"edges":[]}',
            "properties[0].name: 'shoe_size' is not a person property",
        ),
        (
            '{"entities":[{"ref":"e1","type":"person","name":"A","identifiers":[]}],'
            '"properties":[{"entity":"e1","name":"seniority","value":"intern"}],"memories":[],'
            '"edges":[]}',
            "properties[0].value (seniority)",
        ),
        (
            '{"entities":[],"properties":[],"memories":[{"entity":"e9","text":"x"}],"edges":[]}',
            "memories[0].entity: unknown ref 'e9'",
        ),
        (
            '{"entities":[{"ref":"e1","type":"person","name":"A","identifiers":[]},'
            '{"ref":"e2","type":"person","name":"B","identifiers":[]}],"properties":[],'
            '"memories":[],"edges":[{"subject":"e1","predicate":"loves","object":"e2"}]}',
            "edges[0].predicate: 'loves' is not defined",
        ),
    ],
)
def test_invalid_answers_name_the_field(answer, message):
    with pytest.raises(AnswerInvalid) as info:
        validate_answer(answer, ORG.collections["contacts"])
    assert message in str(info.value)


def test_offline_extractor_answers_validate_for_the_example_input():
    records = [
        r
        for r in load(REPO_ROOT / "examples" / "input", "jsonl", LoadOptions())
        if isinstance(r, ContentRecord)
    ]
    assert len(records) >= 30
    memories = 0
    for record in records:
        answer = answer_for_prompt(render(ORG, record).text)
        validated = validate_answer(answer, ORG.collections[record.collection])
        memories += len(validated.output.memories)
        assert answer == answer_for_prompt(render(ORG, record).text)  # deterministic
    assert memories > len(records)


def test_offline_extractor_finds_the_sender():
    record = ContentRecord(
        source_id="x",
        identifier="dana.okafor@northwind.example",
        kind="email",
        source_ts="2026-11-23T10:00:00Z",
        content="From: Dana Okafor <dana.okafor@northwind.example>\n\nI'm the head of data at "
        "Northwind. Call me at (415) 555-0134.",
    )
    answer = orjson.loads(answer_for_prompt(render(ORG, record).text))
    sender = answer["entities"][0]
    assert sender["name"] == "Dana Okafor"
    assert sender["identifiers"] == ["dana.okafor@northwind.example"]
    props = {(p["entity"], p["name"]): p["value"] for p in answer["properties"]}
    assert props[("e1", "phone")] == "+14155550134"


def test_text_postgresql_cannot_store_makes_the_answer_invalid_naming_the_field():
    # A NUL can reach an answer only as a JSON escape. Stored answers are json text, which
    # accepts it; a memory holding one would fail every Stage 2 run of its day, so the answer is
    # judged invalid at collection and repaired instead. Unpaired surrogates the parser refuses.
    contacts = ORG.collections["contacts"]
    answer = {
        "entities": [{"ref": "e1", "type": "person", "name": "Dana Okafor", "identifiers": []}],
        "properties": [],
        "memories": [
            {"entity": "e1", "text": "Dana leads procurement."},
            {"entity": "e1", "text": "Dana renews in March.@NUL@"},
        ],
        "edges": [],
    }
    text = orjson.dumps(answer).decode()
    with pytest.raises(AnswerInvalid) as caught:
        validate_answer(text.replace("@NUL@", "\\u0000"), contacts)
    assert caught.value.errors == [
        "memories[1].text: contains a NUL character (U+0000) at position 21; remove it"
    ]
    with pytest.raises(AnswerInvalid, match="lone leading surrogate"):
        validate_answer(text.replace("@NUL@", "\\udc00"), contacts)
    # Escapes of ordinary characters are no problem.
    fine = validate_answer(text.replace("@NUL@", "\\u00e9"), contacts)
    assert fine.output.memories[1].text == "Dana renews in March.é"
