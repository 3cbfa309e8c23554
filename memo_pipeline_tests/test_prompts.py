"""Prompt rendering: the static prefix is byte-identical across records and carries the schema
version; the record comes last. Provider wire formats are covered by the provider tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from memo_pipeline.config import REPO_ROOT
from memo_pipeline.prompts.render import parse_record_part, render, schema_version, static_prefix
from memo_pipeline.records import ContentRecord
from memo_pipeline.schema.collections import ConfigError, load_org, load_orgs


@pytest.fixture(scope="module")
def org():
    return load_orgs(REPO_ROOT / "config" / "orgs")["acme"]


def _record(i: int, content: str) -> ContentRecord:
    return ContentRecord(
        source_id=f"s{i}",
        content=content,
        identifier=f"p{i}@x.example",
        source_ts=datetime(2026, 11, 20 + i, 9, i, tzinfo=UTC),
        kind="email",
        title=f"t{i}",
    )


def test_static_prefix_is_byte_identical_across_records(org):
    prompts = [render(org, _record(i, f"Body number {i} about Dana.")) for i in range(5)]
    assert len({p.static_prefix.encode() for p in prompts}) == 1
    assert len({p.schema_version for p in prompts}) == 1
    for i, prompt in enumerate(prompts):
        assert prompt.text.startswith(prompt.static_prefix)
        assert prompt.text.endswith(prompt.record_part)
        assert f"Body number {i}" in prompt.record_part
        assert f"Body number {i}" not in prompt.static_prefix
        assert f"p{i}@x.example" not in prompt.static_prefix


def test_prefix_holds_no_timestamps_or_ids(org):
    prefix = static_prefix(org, "contacts")
    assert "2026" not in prefix
    assert "s0" not in prefix.split()


def test_schema_version_changes_with_the_collection_not_the_provider(org):
    before = schema_version(org, "contacts")
    other_provider = org.model_copy(
        update={"provider": org.provider.model_copy(update={"provider": "openai"})}
    )
    assert schema_version(other_provider, "contacts") == before
    changed = org.model_copy(deep=True)
    changed.collections["contacts"].instructions += " Also note hobbies."
    assert schema_version(changed, "contacts") != before


def test_record_part_round_trips(org):
    prompt = render(org, _record(1, "Line one.\n\nLine two."))
    fields, content = parse_record_part(prompt.text)
    assert content == "Line one.\n\nLine two."
    assert fields["identifier"] == "p1@x.example"
    assert fields["date"] == "2026-11-21T09:01:00Z"


def test_invalid_org_file_names_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("org: Bad Org\ndisplay_name: x\ncollections: {}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: org: String should match pattern"):
        load_org(path)
