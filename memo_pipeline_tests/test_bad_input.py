"""Hostile input, format by format: dates UTC cannot hold or outside the accepted range, NUL
characters and unpaired surrogates (which PostgreSQL and UTF-8 refuse), content over the record
size limit, byte-order marks, a bad byte or a malformed item inside an otherwise good file,
empty files and blank bodies. Each bad item becomes a LoadError naming its line or item and the
field, the good items beside it still load, and through the landing zone every input record ends
stored or dead-lettered (the undated ones listed by ``memo-pipeline dead-letters --undated``).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from memo_pipeline import cli
from memo_pipeline.ingest.loaders import LoadError, LoadOptions, load_all
from memo_pipeline.pipeline.raw import land
from memo_pipeline.records import MAX_CONTENT_BYTES, ContentRecord
from memo_pipeline_tests.test_stage2 import run_days, scalar

BOM = b"\xef\xbb\xbf"


def line(id_: str, **fields) -> str:
    return json.dumps({"id": id_, "content": "Ada Martin joined Initech.", **fields})


def jsonl_lines() -> list[str]:
    return [
        line("good-1", source_ts="2024-06-02T10:00:00Z"),
        line("far-future", source_ts="9999-12-31T23:00:00-05:00"),
        line("year-one", source_ts="0001-01-01T12:00:00Z"),
        line("nul", source_ts="2024-06-02T11:00:00Z", content="Ada \u0000 Martin"),
        line("nul-meta", source_ts="2024-06-02T11:00:00Z", metadata={"thread": ["x\u0000"]}),
        # json.dumps writes a lone surrogate as the escape \ud800, which JSON parsers accept.
        line("surrogate", source_ts="2024-06-02T11:00:00Z", content="Eve \ud800 Stone"),
        line("huge", source_ts="2024-06-02T11:00:00Z", content="y" * (MAX_CONTENT_BYTES + 1)),
        line("good-2", source_ts="2024-06-02T12:00:00Z"),
    ]


def reasons(errors: list[LoadError]) -> dict[str | None, str]:
    return {e.source_id: e.reason for e in errors}


def test_jsonl_bad_dates_text_and_size_are_errors_naming_line_id_and_field(tmp_path: Path):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(jsonl_lines()) + "\n")
    records, errors = load_all(path, "jsonl")

    assert [r.source_id for r in records] == ["good-1", "good-2"]
    got = reasons(errors)
    assert got["far-future"].startswith("line 2 (id far-future): field 'source_ts'")
    assert "out of range" in got["far-future"]
    assert "outside the accepted range 1900-01-01 to 2100-01-01" in got["year-one"]
    assert "field 'content': contains a NUL character (U+0000) at position 4" in got["nul"]
    assert "field 'metadata': metadata.thread[0] contains a NUL" in got["nul-meta"]
    assert "field 'content': contains an unpaired surrogate (U+D800)" in got["surrogate"]
    assert f"over the limit of {MAX_CONTENT_BYTES:,}" in got["huge"]
    # A date outside the range gives no day: a dead letter must not land on a wrong one.
    assert {e.source_id: e.partition_day for e in errors}["year-one"] is None


def test_email_bom_empty_file_blank_body_and_nul(tmp_path: Path):
    mail = tmp_path / "mail"
    mail.mkdir()
    head = "From: Ada Martin <ada@initech.example>\r\nSubject: {s}\r\nDate: {d}\r\n\r\n"
    (mail / "bom.eml").write_bytes(
        BOM + (head.format(s="Hello", d="Sun, 02 Jun 2024 10:00:00 +0000") + "Hi.\r\n").encode()
    )
    (mail / "empty.eml").write_bytes(b"")
    (mail / "blank.eml").write_bytes(
        (head.format(s="Blank", d="Sun, 02 Jun 2024 10:00:00 +0000") + "  \r\n").encode()
    )
    (mail / "nul.eml").write_bytes(
        (head.format(s="Nul", d="Sun, 02 Jun 2024 10:00:00 +0000") + "a\x00b\r\n").encode()
    )
    (mail / "future.eml").write_bytes(
        (head.format(s="Late", d="Fri, 31 Dec 9999 23:00:00 -0500") + "Hi.\r\n").encode()
    )
    records, errors = load_all(mail, "email")

    assert [(r.title, r.partition_day) for r in records] == [("Hello", "2024-06-02")]
    by_file = {Path(e.source).name: e.reason for e in errors}
    assert by_file["empty.eml"] == "the file is empty"
    assert by_file["blank.eml"] == "the message body is empty"
    assert "field 'content': contains a NUL character" in by_file["nul.eml"]
    assert "header 'Date' is unparseable" in by_file["future.eml"]


def test_enron_csv_bom_and_a_bad_byte_spoil_only_their_row(tmp_path: Path):
    def message(n: int, body: str) -> str:
        return (
            f"Message-ID: <{n}.JavaMail@thyme> Date: Mon, 14 May 2001 16:39:00 -0700 (PDT) "
            f"From: phillip.allen@enron.com To: tim.belden@enron.com Subject: Note {n} "
            "Mime-Version: 1.0 X-From: Phillip K Allen X-To: Tim Belden X-Folder: \\sent "
            f"X-Origin: Allen-P X-FileName: pallen.nsf {body}"
        )

    rows = [
        b"id,message",
        b'20,"' + message(20, "Here is our forecast.").encode() + b'"',
        b'31,"' + message(31, "Caf\xe9 later?").encode("latin-1") + b'"',
        b'32,"' + message(32, "   ").encode() + b'"',
        b'33,"' + message(33, "See you Friday.").encode() + b'"',
    ]
    path = tmp_path / "emails.csv"
    path.write_bytes(BOM + b"\r\n".join(rows) + b"\r\n")
    records, errors = load_all(path, "enron-csv")

    assert [r.source_id for r in records] == ["enron-20", "enron-33"]
    got = reasons(errors)
    assert got["enron-31"] == (
        "line 3: field 'message' is not valid UTF-8 (byte 0xE9 at character "
        f"{message(31, 'Caf').__len__()})"
    )
    assert got["enron-32"] == "line 4: field 'message': the body is empty"


def test_locomo_and_qmsum_name_the_bad_session_or_turn_and_keep_the_rest(tmp_path: Path):
    turn = {"speaker": "Ada", "dia_id": "D1:1", "text": "I moved to Lisbon."}
    conversation = {
        "speaker_a": "Ada",
        "speaker_b": "Bo",
        "session_1_date_time": "1:56 pm on 8 May, 2023",
        "session_1": [turn],
        "session_2_date_time": "2:00 pm on 9 May, 2023",
        "session_2": [turn, "not a turn"],
    }
    locomo = tmp_path / "locomo.json"
    locomo.write_bytes(
        BOM + json.dumps([{"sample_id": "s3", "conversation": conversation}]).encode()
    )
    records, errors = load_all(locomo, "locomo")
    assert [r.source_id for r in records] == ["s3-session-1"]
    assert reasons(errors)["s3-session-2"] == "s3 session 2: turn 1 is not an object: 'not a turn'"

    meetings = tmp_path / "meetings"
    meetings.mkdir()
    good = {"meeting_transcripts": [{"speaker": "A", "content": "We ship in May."}]}
    (meetings / "m1.json").write_bytes(BOM + json.dumps(good).encode())
    bad = {"meeting_transcripts": [{"speaker": "A", "content": "Hi."}, 7]}
    (meetings / "m2.json").write_text(json.dumps(bad))
    records, errors = load_all(meetings, "qmsum", LoadOptions(start_date=date(2024, 3, 4)))
    assert [r.source_id for r in records] == ["qmsum-m1"]
    assert reasons(errors)["qmsum-m2"] == "field 'meeting_transcripts'[1] is not an object: 7"


def test_markdown_with_a_bom_keeps_its_front_matter(tmp_path: Path):
    page = tmp_path / "pages" / "team.md"
    page.parent.mkdir()
    page.write_bytes(
        BOM + b"---\r\ntitle: Team\r\ndate: 2024-05-01\r\n---\r\n# Team\r\nAda leads.\r\n"
    )
    (record,), errors = load_all(page.parent, "markdown")
    assert errors == []
    assert (record.title, record.partition_day, record.content) == (
        "Team",
        "2024-05-01",
        "# Team\nAda leads.",
    )


def test_every_bad_record_ends_dead_lettered_and_the_day_goes_on(runtime, monkeypatch, capsys):
    path = runtime.settings.memo_home / "hostile.jsonl"
    path.write_text("\n".join([*jsonl_lines(), "{not json"]) + "\n")
    records, errors = load_all(path, "jsonl")
    with runtime.connection() as conn:
        days = sorted(land(runtime.settings, conn, [*records, *errors], "hostile").days)
    assert days == ["2024-06-02"]
    run_days(runtime, days)

    stored = scalar(runtime, "select count(*) from content_records")
    dead = scalar(runtime, "select count(*) from dead_letters")
    assert (stored, dead) == (2, 7)  # nine lines in, none lost
    assert scalar(runtime, "select count(*) from memories where superseded_by is null") > 0

    monkeypatch.setenv("MEMO_HOME", str(runtime.settings.memo_home))
    args = cli.build_parser().parse_args(["dead-letters", "--undated", "--json"])
    assert args.func(args) == 0
    undated = json.loads(capsys.readouterr().out)
    assert {d["reason"].split(":")[0] for d in undated} >= {
        "line 2 (id far-future)",
        "line 3 (id year-one)",
        "line 9",
    }
    # A record that cannot be built cannot be stored either: the model refuses it too.
    with pytest.raises(ValueError, match="NUL"):
        ContentRecord(source_id="x", content="a\x00", source_ts="2024-06-02T10:00:00Z")
