"""Batch input files serialised once per line shape (``providers.jsonl.batch_jsonl``) are byte for
byte the lines serialised whole: tricky text, repair requests, several shapes in one batch, and a
prefix that contains a placeholder (which must fall back to whole lines, not cut wrongly)."""

from __future__ import annotations

from dataclasses import replace

import orjson

from memo_pipeline.prompts.render import RenderedPrompt
from memo_pipeline.providers.classify import conversation
from memo_pipeline.providers.jsonl import _SLOTS, batch_jsonl
from memo_pipeline.providers.openai import OpenAIProvider
from memo_pipeline_tests.emulator_fixtures import limits_for, make_requests

TRICKY = [
    'quotes " and \\ backslashes',
    "control \x00 \x1f \t tabs\r\nand CRLF",
    "unicode é ü 日本語 and an emoji 🦄, a lone \u2028 separator",
    "",
]


def whole(requests, line_for) -> bytes:
    return b"".join(orjson.dumps(line_for(r)) + b"\n" for r in requests)


def bedrock_like(request):
    turns = [
        {"role": t.role, "content": [{"type": "text", "text": t.text}]}
        for t in conversation(request)
    ]
    return {
        "recordId": request.request_id,
        "modelInput": {"system": request.prompt.static_prefix, "messages": turns},
    }


def test_spliced_lines_equal_whole_lines_for_every_shape(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-sent")  # the client is built, never called
    base = make_requests(6)
    requests = [
        replace(r, prompt=replace(r.prompt, record_part=r.prompt.record_part + text))
        for r, text in zip(base, TRICKY + ["", ""], strict=True)
    ]
    requests[4] = replace(requests[4], repair_errors=("properties[0].value: not a phone",))
    requests[5] = replace(
        requests[5], repair_errors=("bad",), previous_answer='{"entities": "no"}', max_tokens=8000
    )
    requests += make_requests(3, start=10, prefix='A short prefix with "quotes" and é.', model="m2")
    openai = OpenAIProvider(limits=limits_for("openai"), model="gpt-6-luna")
    for line_for in (openai.line, bedrock_like):
        assert batch_jsonl(requests, line_for) == whole(requests, line_for)
        assert batch_jsonl(requests[:1], line_for) == whole(requests[:1], line_for)
    assert batch_jsonl([], openai.line) == b""


def test_a_prefix_holding_a_placeholder_is_serialised_whole():
    requests = make_requests(3)
    for id_slot, text_slot in _SLOTS:
        prefix = f"Prefix quoting {id_slot} and {text_slot} by accident."
        odd = [
            replace(r, prompt=RenderedPrompt(prefix, r.prompt.record_part, "sv", "k"))
            for r in requests
        ]
        assert batch_jsonl(odd, bedrock_like) == whole(odd, bedrock_like)
