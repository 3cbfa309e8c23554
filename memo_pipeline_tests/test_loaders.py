"""Tests for the input loaders in ``memo_pipeline.ingest.loaders``.

Covers every format on the real public data in ``../shared/data`` (record and error counts, date
ranges, UTC timestamps, deterministic ``source_id``s across two loads), the shipped example input
in ``examples/input``, and error handling on small fixtures written here or in
``fixtures/bad_input.jsonl``: malformed JSONL lines, empty content, unknown collections, missing or
bad dates, undated meetings, redirect stubs, e-mail without a ``Date:`` header, manifests and
unknown formats.

Left out: extraction quality, landing-zone writing, and assertions about what the real data says
about real people (only counts, dates and structure are checked). Tests that need
``../shared/data`` are skipped when it is absent.
"""

from __future__ import annotations

import re
from datetime import UTC, date
from pathlib import Path

import pytest

from memo_pipeline.ingest.loaders import (
    FORMATS,
    KINDS,
    LoadError,
    LoadOptions,
    _qmsum_day_offsets,
    _read_manifest,
    load,
    load_all,
)
from memo_pipeline.records import ContentRecord

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
EXAMPLES = REPO / "examples" / "input"
BAD_INPUT = Path(__file__).resolve().parent / "fixtures" / "bad_input.jsonl"

needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real input data not found at {DATA} (shared data folder absent)"
)


def _check_records(records: list[ContentRecord], kind: str) -> None:
    for record in records:
        assert record.source_ts.tzinfo is not None
        assert record.source_ts.utcoffset().total_seconds() == 0
        assert record.kind == kind
        assert record.content.strip()
        assert record.source
        assert record.org == "acme"


def _ids(records: list[ContentRecord]) -> list[str]:
    return [r.source_id for r in records]


# ------------------------------------------------------------------------------------- API


def test_unknown_format_raises_naming_the_allowed_formats(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="allowed formats: jsonl, email"):
        load(tmp_path, "docx")


def test_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nothing-here", "jsonl")


def test_unknown_option_collection_raises(tmp_path: Path) -> None:
    options = LoadOptions(collection="nope", known_collections=frozenset({"contacts"}))
    with pytest.raises(ValueError, match="unknown collection 'nope'"):
        load(tmp_path, "jsonl", options)


def test_empty_folder_is_reported(tmp_path: Path) -> None:
    records, errors = load_all(tmp_path, "jsonl")
    assert records == []
    assert len(errors) == 1
    assert "no .jsonl files found" in errors[0].reason


def test_formats_constant() -> None:
    assert FORMATS == ("jsonl", "email", "enron-csv", "locomo", "qmsum", "markdown")


# ------------------------------------------------------------------------------------- jsonl


def test_jsonl_bad_input_yields_errors_with_line_and_field() -> None:
    items = list(load(BAD_INPUT, "jsonl"))
    errors = {e.line: e for e in items if isinstance(e, LoadError)}
    records = {r.source_line: r for r in items if isinstance(r, ContentRecord)}

    assert sorted(records) == [1, 5, 8]
    assert sorted(errors) == [2, 4, 6, 7]
    assert all(e.source == str(BAD_INPUT) for e in errors.values())

    assert errors[2].reason.startswith("line 2: invalid JSON")
    assert errors[4].reason == "line 4 (id bad-fixture-4): field 'content' is empty"
    assert errors[4].source_id == "bad-fixture-4"
    assert errors[4].partition_day == "2026-11-24"
    assert errors[6].reason == "line 6 (id bad-fixture-6): field 'source_ts' is missing"
    assert errors[6].partition_day is None
    assert "field 'source_ts'" in errors[7].reason
    assert "next tuesday" in errors[7].reason
    assert str(errors[6]).startswith(f"{BAD_INPUT}:6: line 6 (id bad-fixture-6): field 'source_ts'")

    first = records[1]
    assert first.source_id == "bad-fixture-1"
    assert first.identifier == "ines.duarte@harbor.example"
    assert first.source_ts.isoformat() == "2026-11-23T08:00:00+00:00"
    assert first.collection == "contacts"
    naive = records[8]
    assert naive.source_ts.tzinfo == UTC
    assert naive.partition_day == "2026-11-24"
    assert naive.kind == "crm"


def test_jsonl_unknown_collection_with_known_collections() -> None:
    options = LoadOptions(known_collections=frozenset({"contacts", "documents"}))
    records, errors = load_all(BAD_INPUT, "jsonl", options)
    by_line = {e.line: e for e in errors}
    assert by_line[5].reason.startswith(
        "line 5 (id bad-fixture-5): field 'collection': unknown collection 'nope'"
    )
    assert by_line[5].partition_day == "2026-11-24"
    assert [r.source_line for r in records] == [1, 8]


def test_jsonl_defaults_types_and_extra_keys(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"id": 7, "source_ts": "2026-11-23", "content": "x", "thread": "t1"}\n'
        '{"id": "a", "source_ts": 1700000000, "content": "x"}\n'
        '{"id": "b", "source_ts": "2026-11-23", "content": "x", "kind": "tweet",'
        ' "metadata": [1]}\n'
        "[1, 2]\n"
    )
    items = list(load(path, "jsonl", LoadOptions(org="other", collection="documents")))
    record, *errors = items
    assert isinstance(record, ContentRecord)
    assert (record.source_id, record.org, record.collection) == ("7", "other", "documents")
    assert record.metadata == {"thread": "t1"}
    assert "field 'source_ts' must be an ISO-8601 string" in errors[0].reason
    assert "field 'kind'" in errors[1].reason and "field 'metadata'" in errors[1].reason
    assert "expected a JSON object" in errors[2].reason


def test_jsonl_duplicate_ids_are_errors(tmp_path: Path) -> None:
    line = '{"id": "same", "source_ts": "2026-11-23T10:00:00Z", "content": "x"}\n'
    (tmp_path / "a.jsonl").write_text(line)
    (tmp_path / "b.jsonl").write_text(line)
    records, errors = load_all(tmp_path, "jsonl")
    assert len(records) == 1
    assert "duplicate source_id 'same'" in errors[0].reason
    assert errors[0].source == str(tmp_path / "b.jsonl")


# ------------------------------------------------------------------------------ example input


def test_example_input_loads_cleanly_over_several_days() -> None:
    options = LoadOptions(known_collections=frozenset({"contacts", "documents"}))
    records, errors = load_all(EXAMPLES, "jsonl", options)
    assert errors == []
    assert 30 <= len(records) <= 40
    assert len({r.partition_day for r in records}) >= 3
    assert {r.org for r in records} == {"acme"}
    assert {r.kind for r in records} <= set(KINDS)
    assert {"email", "meeting", "note", "crm", "document"} <= {r.kind for r in records}
    documents = [r for r in records if r.collection == "documents"]
    assert 3 <= len(documents) <= 4
    for record in records:
        assert Path(record.source).stem == record.partition_day, record.source_id
        if record.kind == "email":
            assert record.identifier and record.identifier == record.identifier.lower()
            assert record.content.startswith("From: ")
            assert "\nSubject: " in record.content
    assert _ids(records) == _ids(load_all(EXAMPLES, "jsonl")[0])


def test_example_input_uses_fictional_domains_and_numbers() -> None:
    records, _ = load_all(EXAMPLES, "jsonl")
    text = "\n".join(r.content for r in records)
    domains = set(re.findall(r"@([a-z0-9.-]+)", text))
    assert domains and all(d.endswith(".example") for d in domains)
    numbers = re.findall(r"555[ -]?(\d{4})", text)
    assert numbers and all(n.startswith("01") for n in numbers)


# ------------------------------------------------------------------------------------- email


@pytest.fixture(scope="module")
def spamassassin() -> tuple[list[ContentRecord], list[LoadError]]:
    return load_all(DATA / "spamassassin_ham" / "emails", "email")


@needs_data
def test_email_spamassassin_counts_and_dates(spamassassin) -> None:
    records, errors = spamassassin
    files = list((DATA / "spamassassin_ham" / "emails").glob("*.eml"))
    assert len(files) == 602
    assert len(records) + len(errors) == 602
    assert len(records) == 602
    _check_records(records, "email")
    days = {r.partition_day for r in records}
    assert min(days) >= "2002-07-01" and max(days) <= "2002-08-31"
    assert len(days) == 29  # the README's UTC window
    assert all(r.identifier and "@" in r.identifier for r in records)
    assert all(r.identifier == r.identifier.lower() for r in records)
    assert all(r.content.startswith("From: ") for r in records)
    assert len(set(_ids(records))) == 602


@needs_data
def test_email_source_ids_are_deterministic(spamassassin) -> None:
    again, _ = load_all(DATA / "spamassassin_ham" / "emails", "email")
    assert _ids(again) == _ids(spamassassin[0])
    assert [r.record_id for r in again] == [r.record_id for r in spamassassin[0]]


@needs_data
def test_email_spamassassin_manifest_matches_headers(spamassassin) -> None:
    manifest, errors = _read_manifest(DATA / "spamassassin_ham" / "manifest.csv")
    assert errors == [] and manifest is not None
    for record in spamassassin[0]:
        assert manifest.date_for(Path(record.source)) == record.source_ts, record.source


MESSAGE = """From: Ines Duarte <Ines.Duarte@Harbor.example>
To: sales@acme-analytics.example
Subject: {subject}
{date}Content-Type: {ctype}; charset={charset}

{body}
"""


def _write_mail(
    path: Path,
    *,
    subject: str = "Hello",
    date_header: str | None = "Mon, 23 Nov 2026 10:00:00 +0100",
    ctype: str = "text/plain",
    charset: str = "utf-8",
    body: str = "I am the office manager.",
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    date_line = f"Date: {date_header}\n" if date_header else ""
    text = MESSAGE.format(subject=subject, date=date_line, ctype=ctype, charset=charset, body=body)
    path.write_bytes(text.encode(charset))
    return path


def test_email_fixture_fields_and_fallbacks(tmp_path: Path) -> None:
    _write_mail(tmp_path / "a.eml")
    _write_mail(
        tmp_path / "b.eml",
        subject="HTML",
        ctype="text/html",
        body="<html><style>p {}</style><p>Caf&eacute; owner</p><br>Second line</html>",
    )
    _write_mail(tmp_path / "c.eml", subject="Latin", charset="latin-1", body="Señora Núñez")
    _write_mail(tmp_path / "d.eml", date_header=None)
    _write_mail(tmp_path / "e.eml", date_header="not a date")
    items = list(load(tmp_path, "email"))
    a, b, c, d, e = items
    assert isinstance(a, ContentRecord)
    assert a.identifier == "ines.duarte@harbor.example"
    assert a.title == "Hello"
    assert a.source_id == "a.eml"
    assert a.source_ts.isoformat() == "2026-11-23T09:00:00+00:00"
    assert a.content == (
        "From: Ines Duarte <Ines.Duarte@Harbor.example>\nTo: sales@acme-analytics.example\n"
        "Subject: Hello\n\nI am the office manager."
    )
    assert isinstance(b, ContentRecord)
    assert b.content.endswith("Subject: HTML\n\nCafé owner\n\nSecond line")
    assert isinstance(c, ContentRecord) and c.content.endswith("Señora Núñez")
    assert isinstance(d, LoadError) and "header 'Date' is missing" in d.reason
    assert "--manifest" in d.reason
    assert isinstance(e, LoadError) and "unparseable" in e.reason


def test_email_manifest_dates_undated_messages(tmp_path: Path) -> None:
    _write_mail(tmp_path / "mail" / "d.eml", date_header=None)
    _write_mail(tmp_path / "mail" / "a.eml")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "file,partition_date,date_iso\n"
        "mail/d.eml,2026-11-24,2026-11-24T23:30:00-02:00\n"
        "mail/a.eml,2001-01-01,2001-01-01T00:00:00Z\n"
    )
    records, errors = load_all(tmp_path / "mail", "email", LoadOptions(manifest=manifest))
    assert errors == []
    by_id = {r.source_id: r for r in records}
    assert by_id["d.eml"].partition_day == "2026-11-25"
    assert by_id["d.eml"].metadata["date_source"] == "manifest"
    # The header is authoritative; the manifest only fills gaps.
    assert by_id["a.eml"].partition_day == "2026-11-23"


def test_email_maildir_layout(tmp_path: Path) -> None:
    _write_mail(tmp_path / "inbox" / "cur" / "1700000000.M1.host:2,S", subject="one")
    _write_mail(tmp_path / "inbox" / "new" / "1700000001.M2.host", subject="two")
    (tmp_path / "inbox" / "tmp").mkdir()
    (tmp_path / "notes.txt").write_text("not mail")
    records, errors = load_all(tmp_path, "email")
    assert errors == []
    assert [r.title for r in records] == ["one", "two"]
    assert records[0].source_id == "inbox/cur/1700000000.M1.host:2,S"


# --------------------------------------------------------------------------------- enron-csv


@needs_data
def test_enron_csv_real_sample() -> None:
    folder = DATA / "enron_kaggle_sample"
    records, errors = load_all(folder, "enron-csv")
    assert errors == []
    assert len(records) == 40
    _check_records(records, "email")
    assert _ids(records) == [f"enron-{n}" for n in range(1, 41)]
    assert _ids(load_all(folder, "enron-csv")[0]) == _ids(records)
    days = {r.partition_day for r in records}
    assert min(days) >= "2000-07-01" and max(days) <= "2001-05-31"
    assert all(r.source_line and r.source_line >= 2 for r in records)
    assert all(r.identifier and r.identifier.endswith("@enron.com") for r in records)
    assert all("X-FileName" not in r.content for r in records)


def test_enron_csv_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "sample.csv"
    good = (
        "Message-ID: <1.JavaMail> Date: Mon, 14 May 2001 16:39:00 -0700 (PDT) From: a@b.example "
        "To: c@d.example Subject: Plan Mime-Version: 1.0 X-From: A B X-To: C X-Folder: \\x "
        "X-Origin: A X-FileName: a.nsf  Body text here"
    )
    path.write_text(f'id,message\n1,"{good}"\n2,"no headers at all"\n3,"multi\nline"\n,"{good}"\n')
    items = list(load(path, "enron-csv"))
    first, second, third, fourth = items
    assert isinstance(first, ContentRecord)
    assert first.source_id == "enron-1" and first.source_line == 2
    assert first.title == "Plan"
    assert first.source_ts.isoformat() == "2001-05-14T23:39:00+00:00"
    assert (
        first.content == "From: A B <a@b.example>\nTo: c@d.example\nSubject: Plan\n\nBody text here"
    )
    assert isinstance(second, LoadError) and second.line == 3
    assert "field 'message'" in second.reason
    assert isinstance(third, LoadError) and third.line == 4
    # An empty id falls back to the Message-ID, which duplicates nothing here.
    assert isinstance(fourth, ContentRecord) and fourth.source_id == "<1.JavaMail>"
    assert fourth.source_line == 6


# ------------------------------------------------------------------------------------ locomo


@needs_data
def test_locomo_sessions() -> None:
    folder = DATA / "locomo"
    records, errors = load_all(folder, "locomo")
    assert errors == []
    assert len(records) == 217
    _check_records(records, "chat")
    assert _ids(load_all(folder, "locomo")[0]) == _ids(records)
    assert len(set(_ids(records))) == 217
    assert all(re.fullmatch(r"conv-\d+-session-\d+", sid) for sid in _ids(records))
    assert all(re.fullmatch(r"\w+ and \w+, session \d+", r.title or "") for r in records)
    days = {r.partition_day for r in records}
    assert len(days) > 100
    assert min(days) >= "2022-01-01" and max(days) <= "2024-12-31"
    assert any("[shares an image: " in r.content for r in records)
    assert all(re.match(r"^\w+: ", r.content) for r in records)


def test_locomo_bad_session_date(tmp_path: Path) -> None:
    path = tmp_path / "conv.json"
    path.write_text(
        '[{"sample_id": "c1", "conversation": {"speaker_a": "Ann", "speaker_b": "Bo",'
        ' "session_1_date_time": "1:56 pm on 8 May, 2023",'
        ' "session_1": [{"speaker": "Ann", "dia_id": "D1:1", "text": "Hi"}],'
        ' "session_2": [{"speaker": "Bo", "dia_id": "D2:1", "text": "Yo"}]}}]'
    )
    first, second = load(path, "locomo")
    assert isinstance(first, ContentRecord)
    assert first.source_ts.isoformat() == "2023-05-08T13:56:00+00:00"
    assert first.content == "Ann: Hi"
    assert isinstance(second, LoadError)
    assert "session_2_date_time" in second.reason and second.source_id == "c1-session-2"


# ------------------------------------------------------------------------------------- qmsum


@needs_data
def test_qmsum_without_dates_is_an_error_per_meeting() -> None:
    records, errors = load_all(DATA / "qmsum" / "meetings", "qmsum")
    assert records == []
    assert len(errors) == 35
    assert all("--start-date" in e.reason for e in errors)


@needs_data
def test_qmsum_with_start_date() -> None:
    options = LoadOptions(start_date=date(2026, 11, 23))
    records, errors = load_all(DATA / "qmsum", "qmsum", options)
    assert errors == []
    assert len(records) == 35
    _check_records(records, "meeting")
    by_title = {r.title: r for r in records}
    assert by_title["ES2006a"].partition_day == "2026-11-23"
    assert by_title["ES2006d"].partition_day == "2026-11-26"
    assert by_title["ES2009a"].partition_day == "2026-11-24"
    assert all("{vocalsound}" not in r.content and "{disfmarker}" not in r.content for r in records)
    assert _ids(load_all(DATA / "qmsum", "qmsum", options)[0]) == _ids(records)


@needs_data
def test_qmsum_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "dates.csv"
    manifest.write_text("meeting_id,date\nES2006a,2026-12-01\nES2006b,oops\n")
    options = LoadOptions(manifest=manifest)
    records, errors = load_all(DATA / "qmsum" / "meetings" / "ES2006a.json", "qmsum", options)
    assert [r.partition_day for r in records] == ["2026-12-01"]
    assert len(errors) == 1 and errors[0].line == 3 and "column 'date'" in errors[0].reason


def test_qmsum_day_offsets_rule() -> None:
    ids = ["ES2006a", "ES2006b", "ES2006d", "TS3010a", "TS3010d", "Bed002", "covid_2"]
    offsets = _qmsum_day_offsets(ids)
    assert offsets["ES2006a"] == 0
    assert offsets["ES2006d"] == 3
    assert offsets["TS3010a"] == 1
    assert offsets["TS3010d"] == 4
    assert (offsets["Bed002"], offsets["covid_2"]) == (5, 6)


# ---------------------------------------------------------------------------------- markdown


@needs_data
def test_markdown_handbook_with_auto_manifest() -> None:
    folder = DATA / "handbook_18f" / "pages"
    records, errors = load_all(folder, "markdown")
    assert len(records) + len(errors) == 222
    assert len(errors) == 6
    assert all(e.reason == "redirect stub, no content" for e in errors)
    _check_records(records, "document")
    assert {r.collection for r in records} == {"documents"}
    assert all(r.source_id.startswith("pages/") for r in records)
    assert all(r.metadata["date_source"] == "manifest" for r in records)
    assert all(r.title for r in records)
    assert all(not r.content.startswith("---") for r in records)
    days = {r.partition_day for r in records}
    assert min(days) >= "2022-01-01" and max(days) <= "2025-12-31"
    assert _ids(load_all(folder, "markdown")[0]) == _ids(records)


def test_markdown_dates_titles_and_stubs(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(
        "---\ntitle: Travel\ndate: 2026-11-20\n---\nBook via the portal.\n"
    )
    (tmp_path / "b.md").write_text("Intro line\n\n# Expense policy\n\nKeep receipts.\n")
    (tmp_path / "c.md").write_text("---\ntitle: Old\nredirect_to: /new/\n---\n")
    (tmp_path / "d.md").write_text("---\ntitle: [unclosed\n---\nText\n")
    a, b, c, d = load(tmp_path, "markdown")
    assert isinstance(a, ContentRecord)
    assert (a.title, a.partition_day, a.content) == ("Travel", "2026-11-20", "Book via the portal.")
    assert isinstance(b, LoadError) and "--start-date" in b.reason
    assert isinstance(c, LoadError) and c.reason == "redirect stub, no content"
    assert isinstance(d, LoadError) and "invalid YAML front matter" in d.reason

    options = LoadOptions(start_date=date(2026, 11, 23), collection="contacts")
    records, errors = load_all(tmp_path, "markdown", options)
    assert [r.source_id for r in records] == ["a.md", "b.md"]
    assert records[1].title == "Expense policy"
    assert records[1].partition_day == "2026-11-23"
    assert records[1].collection == "contacts"
    assert len(errors) == 2
