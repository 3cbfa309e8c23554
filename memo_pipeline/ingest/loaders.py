"""Input loaders: turn source files into :class:`~memo_pipeline.records.ContentRecord` objects.

``load(path, fmt, options)`` walks a file or a folder (recursively, in sorted order) and yields one
``ContentRecord`` per loaded item, or a :class:`LoadError` for every line, item or file that could
not be loaded. Nothing is dropped silently: a caller that only wants records must still count or
report the errors.

Formats (``FORMATS``):

- ``jsonl``: the native landing format, one JSON object per line.
- ``email``: ``.eml`` files or maildir folders (``cur/``, ``new/``).
- ``enron-csv``: the Kaggle-style ``id,message`` CSV export of the Enron corpus with collapsed
  whitespace.
- ``locomo``: the LoCoMo benchmark JSON, one record per conversation session.
- ``qmsum``: QMSum meeting JSON files, one record per meeting (undated, see :func:`_load_qmsum`).
- ``markdown``: Markdown pages with optional YAML front matter and a ``manifest.csv`` of dates.

Dates never come from the clock. Undated input is dated from a manifest or ``start_date``; without
either, the item becomes a ``LoadError`` that says which option to pass.
"""

from __future__ import annotations

import csv
import email
import email.utils
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from email import policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, cast

import yaml
from dateutil import parser as date_parser
from pydantic import ValidationError

from memo_pipeline.records import DEFAULT_COLLECTION, DEFAULT_ORG, ContentRecord, day_of, to_utc

FORMATS = ("jsonl", "email", "enron-csv", "locomo", "qmsum", "markdown")
KINDS = ("email", "chat", "meeting", "note", "document", "crm")
DOCUMENTS_COLLECTION = "documents"
_NO_DATE = datetime(1, 1, 1)


@dataclass(frozen=True)
class LoadError:
    """A record or file that could not be loaded; it must never be silently dropped.

    Attributes:
        source: File path as given (or the manifest's path for manifest problems).
        line: 1-based line number for line formats (JSONL/CSV), else None.
        reason: What is wrong, naming the field, e.g. "line 17: field 'content' is empty".
        source_id: The item's id when it could be read.
        partition_day: ``YYYY-MM-DD`` (UTC) when the item's date is known, else None.
    """

    source: str
    line: int | None
    reason: str
    source_id: str | None = None
    partition_day: str | None = None

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class LoadOptions:
    """How to load a source.

    Attributes:
        org: Org of the records (a JSONL line's own ``org`` wins).
        collection: Target collection; None means the loader's default (``documents`` for
            markdown, ``contacts`` otherwise). A JSONL line's own ``collection`` wins.
        start_date: Day 0 for undated input (qmsum, markdown pages without a date).
        manifest: CSV giving dates for undated input. It needs a key column (``path``, ``file``,
            ``meeting_id``, ``name`` or ``id``) and a date column (``date_iso``,
            ``last_commit_date``, ``date``, ``partition_date`` or ``source_ts``); keys match a
            file's path relative to the manifest's folder, or its unique name or stem.
        known_collections: Collection names a record may use (e.g. ``frozenset(org.collections)``);
            a record naming another one becomes a LoadError. None accepts any name.
    """

    org: str = DEFAULT_ORG
    collection: str | None = None
    start_date: date | None = None
    manifest: Path | None = None
    known_collections: frozenset[str] | None = None


LoadItem = ContentRecord | LoadError


def load(path: Path, fmt: str, options: LoadOptions = LoadOptions()) -> Iterator[LoadItem]:
    """Load a file or a folder in the given format.

    Args:
        path: A file, or a folder walked recursively in sorted order.
        fmt: One of ``FORMATS``.
        options: Org, collection and dating options.

    Returns:
        An iterator of records and load errors, in a deterministic order. A ``source_id`` seen
        twice in one load yields a LoadError for the repeat (it would collide on ``record_id``).

    Raises:
        ValueError: ``fmt`` is unknown, or ``options.collection`` is not a known collection.
        FileNotFoundError: ``path`` (or ``options.manifest``) does not exist.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; allowed formats: {', '.join(FORMATS)}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if options.manifest is not None and not Path(options.manifest).is_file():
        raise FileNotFoundError(f"{options.manifest}: manifest not found")
    known = options.known_collections
    if known is not None and options.collection is not None and options.collection not in known:
        raise ValueError(
            f"unknown collection {options.collection!r}; known: {', '.join(sorted(known))}"
        )
    return _unique_ids(_LOADERS[fmt](path, options))


def load_all(
    path: Path, fmt: str, options: LoadOptions = LoadOptions()
) -> tuple[list[ContentRecord], list[LoadError]]:
    """Load everything and split it into records and errors (see :func:`load`)."""
    records: list[ContentRecord] = []
    errors: list[LoadError] = []
    for item in load(path, fmt, options):
        (errors if isinstance(item, LoadError) else records).append(item)
    return records, errors


def _unique_ids(items: Iterable[LoadItem]) -> Iterator[LoadItem]:
    seen: dict[tuple[str, str], str] = {}
    for item in items:
        if isinstance(item, ContentRecord):
            key = (item.org, item.source_id)
            where = item.source if item.source_line is None else f"{item.source}:{item.source_line}"
            if key in seen:
                yield LoadError(
                    item.source,
                    item.source_line,
                    f"duplicate source_id {item.source_id!r} (first loaded from {seen[key]})",
                    item.source_id,
                    item.partition_day,
                )
                continue
            seen[key] = where
        yield item


# --------------------------------------------------------------------------------------------
# Shared helpers


def _files(root: Path, accept: Callable[[Path], bool]) -> list[Path]:
    """The files under ``root`` that ``accept`` takes (``root`` itself if it is a file)."""
    if root.is_file():
        return [root]
    found = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and accept(p)
    ]
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def _rel(root: Path, file: Path) -> str:
    return file.name if root.is_file() else file.relative_to(root).as_posix()


def _none_found(root: Path, what: str) -> LoadError:
    return LoadError(str(root), None, f"no {what} found")


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=UTC)


def _parse_when(text: str, *, fuzzy: bool = False) -> datetime:
    """Parse an ISO-8601, RFC 2822 or free-form date; naive means UTC.

    Raises:
        ValueError: the text is not a date, or it has no year.
    """
    text = text.strip()
    try:
        return to_utc(datetime.fromisoformat(text))
    except ValueError:
        pass
    try:
        return to_utc(email.utils.parsedate_to_datetime(text))
    except (TypeError, ValueError, IndexError):
        pass
    # dateutil fills missing parts from today's date; a sentinel default keeps the clock out and
    # lets a missing year be rejected instead of guessed.
    try:
        parsed = date_parser.parse(text, default=_NO_DATE, fuzzy=fuzzy)
    except OverflowError as exc:
        raise ValueError(str(exc)) from exc
    if parsed.year == _NO_DATE.year:
        raise ValueError(f"no year in {text!r}")
    return to_utc(parsed)


def _describe(exc: ValidationError) -> list[str]:
    """Pydantic errors as messages that name the field."""
    messages = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) or "record"
        if err["type"] == "missing":
            messages.append(f"field '{field}' is missing")
        else:
            messages.append(f"field '{field}': {err['msg'].removeprefix('Value error, ')}")
    return messages


def _make(fields: dict[str, Any], where: str = "") -> LoadItem:
    """Validate ``fields`` into a ContentRecord, or a LoadError naming the bad fields.

    ``where`` prefixes the reason (e.g. "line 3: " or "session 4: ").
    """
    source = fields.get("source", "")
    line = fields.get("source_line")
    source_id = fields.get("source_id")
    ts = fields.get("source_ts")
    day = day_of(ts) if isinstance(ts, datetime) else None
    content = fields.get("content")
    if isinstance(content, str) and not content.strip():
        return LoadError(source, line, f"{where}field 'content' is empty", source_id, day)
    try:
        return ContentRecord.model_validate(fields)
    except ValidationError as exc:
        return LoadError(source, line, where + "; ".join(_describe(exc)), source_id, day)


def _guarded(
    source: Path, produce: Callable[..., LoadItem | Iterable[LoadItem]], *args: Any
) -> Iterator[LoadItem]:
    """Run ``produce(*args)``; an unexpected failure on one file becomes a LoadError for it."""
    try:
        result = produce(*args)
        if isinstance(result, ContentRecord | LoadError):
            yield result
        else:
            yield from result
    except (OSError, ValueError, LookupError, TypeError, AttributeError) as exc:
        yield LoadError(str(source), None, f"cannot load file: {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------------------------
# Manifests

_MANIFEST_KEYS = ("path", "file", "meeting_id", "name", "id")
_MANIFEST_DATES = ("date_iso", "last_commit_date", "date", "partition_date", "source_ts")


@dataclass
class _Manifest:
    path: Path
    by_path: dict[str, datetime]
    by_name: dict[str, datetime]

    def date_for(self, file: Path) -> datetime | None:
        try:
            rel = file.resolve().relative_to(self.path.parent.resolve()).as_posix()
        except ValueError:
            rel = None
        if rel is not None and rel in self.by_path:
            return self.by_path[rel]
        for key in (file.name, file.stem):
            if key in self.by_name:
                return self.by_name[key]
        return None

    def base_for(self, file: Path) -> str | None:
        """``file``'s path relative to the manifest's folder, if it is listed there."""
        try:
            rel = file.resolve().relative_to(self.path.parent.resolve()).as_posix()
        except ValueError:
            return None
        return rel if rel in self.by_path else None


def _read_manifest(path: Path) -> tuple[_Manifest | None, list[LoadError]]:
    source = str(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            key_col = next((c for c in _MANIFEST_KEYS if c in columns), None)
            date_col = next((c for c in _MANIFEST_DATES if c in columns), None)
            if key_col is None or date_col is None:
                missing = "key" if key_col is None else "date"
                wanted = _MANIFEST_KEYS if key_col is None else _MANIFEST_DATES
                reason = (
                    f"manifest has no {missing} column; expected one of: {', '.join(wanted)} "
                    f"(found: {', '.join(columns) or 'nothing'})"
                )
                return None, [LoadError(source, 1, reason)]
            by_path: dict[str, datetime] = {}
            errors: list[LoadError] = []
            line = reader.line_num + 1
            for row in reader:
                row_line, line = line, reader.line_num + 1
                key = (row.get(key_col) or "").strip().removeprefix("./")
                value = (row.get(date_col) or "").strip()
                if not key:
                    errors.append(LoadError(source, row_line, f"column '{key_col}' is empty"))
                    continue
                try:
                    by_path[key] = _parse_when(value)
                except ValueError:
                    errors.append(
                        LoadError(source, row_line, f"column '{date_col}': not a date: {value!r}")
                    )
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return None, [LoadError(source, None, f"cannot read manifest: {exc}")]
    names = Counter(n for key in by_path for n in {Path(key).name, Path(key).stem})
    by_name: dict[str, datetime] = {}
    for key, when in by_path.items():
        for name in {Path(key).name, Path(key).stem}:
            if names[name] == 1:
                by_name[name] = when
    return _Manifest(path, by_path, by_name), errors


def _options_manifest(options: LoadOptions) -> tuple[_Manifest | None, list[LoadError]]:
    if options.manifest is None:
        return None, []
    return _read_manifest(Path(options.manifest))


# --------------------------------------------------------------------------------------------
# jsonl

_JSONL_KEYS = frozenset(
    {"id", "org", "collection", "identifier", "content", "source_ts", "kind", "title", "metadata"}
)


def _load_jsonl(root: Path, options: LoadOptions) -> Iterator[LoadItem]:
    """The native landing format: one JSON object per line.

    Keys: ``id`` (required), ``content`` (required, non-empty), ``source_ts`` (required ISO-8601
    string; naive means UTC), optional ``org``, ``collection``, ``identifier``, ``kind``,
    ``title``, ``metadata``. Unknown keys are kept in ``metadata`` rather than dropped. Empty
    lines are skipped; every other bad line becomes a LoadError and the file goes on.
    """
    files = _files(root, lambda p: p.suffix.lower() == ".jsonl")
    if not files:
        yield _none_found(root, ".jsonl files")
    for file in files:
        yield from _guarded(file, _jsonl_file, file, options)


def _jsonl_file(file: Path, options: LoadOptions) -> Iterator[LoadItem]:
    source = str(file)
    # Split bytes, not text: str.splitlines would also break on U+2028 inside JSON strings.
    for number, raw in enumerate(file.read_bytes().splitlines(), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield LoadError(source, number, f"line {number}: not valid UTF-8: {exc.reason}")
            continue
        if number == 1:
            text = text.removeprefix("\ufeff")
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield LoadError(
                source, number, f"line {number}: invalid JSON: {exc.msg} (column {exc.colno})"
            )
            continue
        if not isinstance(obj, dict):
            yield LoadError(
                source, number, f"line {number}: expected a JSON object, got {type(obj).__name__}"
            )
            continue
        yield _jsonl_record(obj, source, number, options)


def _jsonl_record(obj: dict[str, Any], source: str, number: int, options: LoadOptions) -> LoadItem:
    problems: list[str] = []

    source_id = obj.get("id")
    if isinstance(source_id, int) and not isinstance(source_id, bool):
        source_id = str(source_id)
    if source_id is None:
        problems.append("field 'id' is missing")
    elif not isinstance(source_id, str):
        problems.append(f"field 'id' must be a string, got {type(source_id).__name__}")
        source_id = None
    elif not source_id.strip():
        problems.append("field 'id' is empty")
        source_id = None
    else:
        source_id = source_id.strip()

    content = obj.get("content")
    if content is None:
        problems.append("field 'content' is missing")
    elif not isinstance(content, str):
        problems.append(f"field 'content' must be a string, got {type(content).__name__}")
    elif not content.strip():
        problems.append("field 'content' is empty")

    ts: datetime | None = None
    raw_ts = obj.get("source_ts")
    if raw_ts is None:
        problems.append("field 'source_ts' is missing")
    elif not isinstance(raw_ts, str):
        # pydantic would read a number as a Unix time; the format asks for ISO-8601 text.
        problems.append(
            f"field 'source_ts' must be an ISO-8601 string, got {type(raw_ts).__name__}"
        )
    else:
        try:
            parsed = datetime.fromisoformat(raw_ts.strip())
        except ValueError:
            problems.append(f"field 'source_ts' is not an ISO-8601 timestamp: {raw_ts!r}")
        else:
            try:
                ts = to_utc(parsed)
            except ValueError as exc:
                problems.append(f"field 'source_ts': {exc}")

    collection = obj.get("collection", options.collection or DEFAULT_COLLECTION)
    known = options.known_collections
    if isinstance(collection, str) and known is not None and collection not in known:
        problems.append(
            f"field 'collection': unknown collection {collection!r} "
            f"(known: {', '.join(sorted(known))})"
        )

    kind = obj.get("kind", "note")
    if isinstance(kind, str) and kind not in KINDS:
        problems.append(f"field 'kind': {kind!r} is not one of {', '.join(KINDS)}")

    identifier = obj.get("identifier")
    if isinstance(identifier, str):
        identifier = identifier.strip() or None
        if identifier and "@" in identifier:
            identifier = identifier.lower()

    metadata = obj.get("metadata", {})
    extra = {k: v for k, v in obj.items() if k not in _JSONL_KEYS}
    if extra and isinstance(metadata, dict):
        metadata = {**extra, **metadata}

    # Fields already reported above get valid stand-ins so that pydantic reports only the rest
    # (org, identifier, title, metadata types); without problems the stand-ins are the values.
    fields: dict[str, Any] = {
        "source_id": source_id or "?",
        "org": obj.get("org", options.org),
        "collection": collection,
        "identifier": identifier,
        "content": content if isinstance(content, str) and content.strip() else "?",
        "source_ts": ts or datetime(1970, 1, 1, tzinfo=UTC),
        "kind": kind,
        "title": obj.get("title"),
        "source": source,
        "source_line": number,
        "metadata": metadata,
    }
    record: ContentRecord | None = None
    try:
        record = ContentRecord.model_validate(fields)
    except ValidationError as exc:
        problems.extend(_describe(exc))
    if problems or record is None:
        day = day_of(ts) if ts else None
        where = f"line {number} (id {source_id})" if source_id else f"line {number}"
        return LoadError(source, number, f"{where}: " + "; ".join(problems), source_id, day)
    return record


# --------------------------------------------------------------------------------------------
# email


class _TextExtractor(HTMLParser):
    """Visible text of an HTML body, with line breaks at block elements."""

    _BLOCKS = frozenset({"p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre"})
    _HIDDEN = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def _html_to_text(html: str) -> str:
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = (" ".join(line.split()) for line in "".join(extractor.parts).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _header(msg: EmailMessage, name: str) -> str | None:
    try:
        value = msg.get(name)
    except (ValueError, TypeError, IndexError, AttributeError, LookupError):
        # policy.default parses headers lazily and a few malformed ones raise; keep the raw text.
        raw = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), None)
        value = raw
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _sender(msg: EmailMessage) -> str | None:
    try:
        addresses = msg["From"].addresses if msg["From"] is not None else ()
    except (ValueError, TypeError, IndexError, AttributeError, LookupError):
        addresses = ()
    for address in addresses:
        if address.addr_spec and "@" in address.addr_spec:
            return address.addr_spec.lower()
    _, addr = email.utils.parseaddr(_header(msg, "From") or "")
    return addr.lower() if "@" in addr else None


def _email_body(msg: EmailMessage) -> str | None:
    """The text/plain body, else the stripped text/html one; None if there is neither."""
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return None
    try:
        text = part.get_content()
    except (LookupError, UnicodeError, ValueError):
        # Unknown or lying charset: decode the bytes leniently rather than lose the message.
        payload = part.get_payload(decode=True) or b""
        charset = part.get_content_charset() or "utf-8"
        try:
            text = payload.decode(charset, errors="replace")
        except LookupError:
            text = payload.decode("latin-1")
    if not isinstance(text, str):
        return None
    if part.get_content_type() == "text/html":
        text = _html_to_text(text)
    return text.replace("\r\n", "\n").strip()


def _is_email_file(path: Path) -> bool:
    return path.suffix.lower() == ".eml" or path.parent.name in ("cur", "new")


def _load_email(root: Path, options: LoadOptions) -> Iterator[LoadItem]:
    """``.eml`` files and maildir messages (files in ``cur/`` or ``new/``).

    The ``Date:`` header is authoritative; ``options.manifest`` (e.g. the SpamAssassin
    ``manifest.csv`` with ``file``/``date_iso``) only dates messages whose header is missing or
    unparseable. ``source_id`` is the Message-ID, else the path relative to ``root``.
    """
    manifest, errors = _options_manifest(options)
    yield from errors
    files = _files(root, _is_email_file)
    if not files:
        yield _none_found(root, ".eml files or maildir messages")
    for file in files:
        yield from _guarded(file, _email_record, root, file, manifest, options)


def _email_record(
    root: Path, file: Path, manifest: _Manifest | None, options: LoadOptions
) -> LoadItem:
    source = str(file)
    rel = _rel(root, file)
    raw = file.read_bytes().removeprefix(b"\xef\xbb\xbf")
    if not raw.strip():
        return LoadError(source, None, "the file is empty", rel)
    msg = cast(EmailMessage, email.message_from_bytes(raw, policy=policy.default))
    message_id = _header(msg, "Message-ID")
    source_id = message_id or rel

    raw_date = _header(msg, "Date")
    when: datetime | None = None
    date_source = "header"
    if raw_date:
        try:
            when = to_utc(email.utils.parsedate_to_datetime(raw_date))
        except (TypeError, ValueError, IndexError):
            when = None
    if when is None and manifest is not None:
        when = manifest.date_for(file)
        date_source = "manifest"
    if when is None:
        state = "missing" if raw_date is None else f"unparseable ({raw_date!r})"
        return LoadError(
            source,
            None,
            f"header 'Date' is {state}; date it with --manifest (LoadOptions.manifest)",
            source_id,
        )
    day = day_of(when)

    body = _email_body(msg)
    if body is None:
        return LoadError(source, None, "no text/plain or text/html part", source_id, day)
    if not body.strip():
        return LoadError(source, None, "the message body is empty", source_id, day)

    subject = _header(msg, "Subject")
    head = [f"From: {_header(msg, 'From') or ''}", f"To: {_header(msg, 'To') or ''}"]
    if cc := _header(msg, "Cc"):
        head.append(f"Cc: {cc}")
    head.append(f"Subject: {subject or ''}")
    metadata: dict[str, Any] = {"path": rel, "date_source": date_source}
    for key, header in (
        ("message_id", "Message-ID"),
        ("in_reply_to", "In-Reply-To"),
        ("to", "To"),
        ("cc", "Cc"),
        ("list_id", "List-Id"),
    ):
        if value := _header(msg, header):
            metadata[key] = value
    return _make(
        {
            "source_id": source_id,
            "org": options.org,
            "collection": options.collection or DEFAULT_COLLECTION,
            "identifier": _sender(msg),
            "content": "\n".join(head) + "\n\n" + body,
            "source_ts": when,
            "kind": "email",
            "title": subject,
            "source": source,
            "source_line": None,
            "metadata": metadata,
        },
    )


# --------------------------------------------------------------------------------------------
# enron-csv

# The export collapsed all whitespace, so headers are recovered by position (see its README).
_ENRON_HEADERS = re.compile(
    r"Date: (?P<date>.*?) From: (?P<sender>.*?)(?: To: (?P<to>.*?))? Subject: (?P<subject>.*?)"
    r" Mime-Version:",
    re.S,
)
_ENRON_BODY = re.compile(r"X-FileName: \S+(?: \(Non-Privileged\)\.pst|\.nsf)?")
_ENRON_MESSAGE_ID = re.compile(r"Message-ID: (<[^>\s]+>)")
_ENRON_X_FROM = re.compile(r"X-From: (?P<x_from>.*?) X-To:", re.S)
_ENRON_X_FOLDER = re.compile(r"X-Folder: (?P<folder>.*?) X-Origin:", re.S)
# Bytes that were not UTF-8, as Python's "surrogateescape" decoding keeps them.
_UNDECODED = re.compile("[\udc80-\udcff]")


def _load_enron_csv(root: Path, options: LoadOptions) -> Iterator[LoadItem]:
    """The one-column ``id,message`` CSV; ``source_id`` is ``enron-<id>``.

    ``source_line`` is the CSV line on which the row starts.
    """
    # Messages with attachments inlined exceed the csv module's 128 KiB default field size.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    files = _files(root, lambda p: p.suffix.lower() == ".csv" and p.name != "manifest.csv")
    if not files:
        yield _none_found(root, ".csv files")
    for file in files:
        yield from _guarded(file, _enron_file, file, options)


def _enron_file(file: Path, options: LoadOptions) -> Iterator[LoadItem]:
    source = str(file)
    # A byte that is not UTF-8 spoils its row only (see _enron_row), not the whole file.
    with file.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "message" not in columns:
            yield LoadError(
                source, 1, f"no 'message' column (found: {', '.join(columns) or 'nothing'})"
            )
            return
        line = reader.line_num + 1
        for row in reader:
            row_line, line = line, reader.line_num + 1
            yield _enron_row(row, source, row_line, options)


def _enron_row(row: dict[str, Any], source: str, line: int, options: LoadOptions) -> LoadItem:
    where = f"line {line}: "
    message = row.get("message") or ""
    row_id = (row.get("id") or "").strip()
    id_match = _ENRON_MESSAGE_ID.search(message)
    message_id = id_match.group(1) if id_match else None
    source_id = f"enron-{row_id}" if row_id else message_id
    if not source_id:
        return LoadError(source, line, where + "field 'id' is empty and there is no Message-ID")
    if not message.strip():
        return LoadError(source, line, where + "field 'message' is empty", source_id)
    if bad := _UNDECODED.search(message):
        return LoadError(
            source,
            line,
            f"{where}field 'message' is not valid UTF-8 (byte 0x{ord(bad.group()) - 0xDC00:02X} "
            f"at character {bad.start()})",
            source_id,
        )
    headers = _ENRON_HEADERS.search(message)
    body_start = _ENRON_BODY.search(message)
    if headers is None or body_start is None:
        missing = "Date/From/Subject headers" if headers is None else "X-FileName header"
        return LoadError(
            source, line, f"{where}field 'message': cannot find the {missing}", source_id
        )
    try:
        when = to_utc(email.utils.parsedate_to_datetime(headers["date"]))
    except (TypeError, ValueError, IndexError):
        return LoadError(
            source, line, f"{where}field 'message': unparseable Date {headers['date']!r}", source_id
        )
    sender = headers["sender"].strip()
    to = (headers["to"] or "").strip()
    subject = headers["subject"].strip()
    x_from = _ENRON_X_FROM.search(message)
    sender_name = x_from["x_from"].strip() if x_from else ""
    shown_from = f"{sender_name} <{sender}>" if sender_name else sender
    body = message[body_start.end() :].strip()
    if not body:
        return LoadError(source, line, f"{where}field 'message': the body is empty", source_id)
    content = f"From: {shown_from}\nTo: {to}\nSubject: {subject}\n\n" + body
    metadata: dict[str, Any] = {"row_id": row_id, "to": to}
    if message_id:
        metadata["message_id"] = message_id
    if folder := _ENRON_X_FOLDER.search(message):
        metadata["folder"] = folder["folder"].strip()
    return _make(
        {
            "source_id": source_id,
            "org": options.org,
            "collection": options.collection or DEFAULT_COLLECTION,
            "identifier": sender.lower() if "@" in sender else None,
            "content": content,
            "source_ts": when,
            "kind": "email",
            "title": subject or None,
            "source": source,
            "source_line": line,
            "metadata": metadata,
        },
        where,
    )


# --------------------------------------------------------------------------------------------
# locomo

_SESSION_KEY = re.compile(r"session_(\d+)")
_LOCOMO_DATE = "%I:%M %p on %d %B, %Y"


def _load_locomo(root: Path, options: LoadOptions) -> Iterator[LoadItem]:
    """LoCoMo JSON: one ``chat`` record per conversation session.

    The session date (``"1:56 pm on 8 May, 2023"``) is taken as UTC. ``session_<n>_date_time``
    keys without a ``session_<n>`` turn list (upstream has some in conv-26) carry no content and
    are ignored.
    """
    files = _files(root, lambda p: p.suffix.lower() == ".json")
    if not files:
        yield _none_found(root, ".json files")
    for file in files:
        yield from _guarded(file, _locomo_file, file, options)


def _locomo_file(file: Path, options: LoadOptions) -> Iterator[LoadItem]:
    source = str(file)
    data = json.loads(file.read_text(encoding="utf-8-sig"))
    if not isinstance(data, list):
        yield LoadError(source, None, f"expected a JSON list of conversations, got {type(data)}")
        return
    for index, sample in enumerate(data):
        conversation = sample.get("conversation") if isinstance(sample, dict) else None
        sample_id = sample.get("sample_id") if isinstance(sample, dict) else None
        if not isinstance(conversation, dict) or not sample_id:
            yield LoadError(
                source, None, f"conversation #{index}: field 'sample_id' or 'conversation' missing"
            )
            continue
        sessions = sorted(
            int(m.group(1)) for key in conversation if (m := _SESSION_KEY.fullmatch(key))
        )
        for number in sessions:
            yield _locomo_session(sample_id, conversation, number, source, options)


def _locomo_session(
    sample_id: str, conversation: dict[str, Any], number: int, source: str, options: LoadOptions
) -> LoadItem:
    source_id = f"{sample_id}-session-{number}"
    where = f"{sample_id} session {number}: "
    raw_date = conversation.get(f"session_{number}_date_time")
    if not isinstance(raw_date, str):
        return LoadError(
            source, None, where + f"field 'session_{number}_date_time' is missing", source_id
        )
    try:
        when = datetime.strptime(raw_date.strip(), _LOCOMO_DATE).replace(tzinfo=UTC)
    except ValueError:
        try:
            when = _parse_when(raw_date, fuzzy=True)
        except ValueError:
            return LoadError(
                source,
                None,
                where + f"field 'session_{number}_date_time' is not a date: {raw_date!r}",
                source_id,
            )
    lines = []
    turns = conversation.get(f"session_{number}") or []
    if not isinstance(turns, list):
        return LoadError(source, None, where + f"field 'session_{number}' is not a list", source_id)
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict):
            return LoadError(
                source, None, where + f"turn {index} is not an object: {turn!r:.60}", source_id
            )
        text = " ".join(str(turn.get("text", "")).split())
        if caption := turn.get("blip_caption"):
            text = f"{text} [shares an image: {caption}]".strip()
        if text:
            lines.append(f"{turn.get('speaker', 'Unknown')}: {text}")
    speakers = [conversation.get("speaker_a"), conversation.get("speaker_b")]
    speakers = [s for s in speakers if isinstance(s, str) and s]
    return _make(
        {
            "source_id": source_id,
            "org": options.org,
            "collection": options.collection or DEFAULT_COLLECTION,
            "identifier": None,
            "content": "\n".join(lines),
            "source_ts": when,
            "kind": "chat",
            "title": f"{' and '.join(speakers)}, session {number}",
            "source": source,
            "source_line": None,
            "metadata": {
                "sample_id": sample_id,
                "session": number,
                "speakers": speakers,
                "date_time": raw_date,
            },
        },
        where,
    )


# --------------------------------------------------------------------------------------------
# qmsum

_AMI_MEETING = re.compile(r"(?P<series>[A-Z]{2}\d{4})(?P<part>[a-z])")
_ASR_TAG = re.compile(r"\{[a-z_]+\}")


def _qmsum_day_offsets(meeting_ids: Iterable[str]) -> dict[str, int]:
    """Day offsets from ``start_date`` for undated QMSum meetings.

    AMI series (``ES2006a``..``d``) sorted by series id get index k = 0, 1, ...; meeting letter j
    (a = 0) falls on day k + j, so each series spans four consecutive days and series start one
    day apart. The other meetings, sorted by id, then get one day each after the last AMI day.
    """
    ids = sorted(set(meeting_ids))
    series = sorted({m["series"] for i in ids if (m := _AMI_MEETING.fullmatch(i))})
    offsets: dict[str, int] = {}
    ami_days = 0
    for meeting in ids:
        if m := _AMI_MEETING.fullmatch(meeting):
            offset = series.index(m["series"]) + ord(m["part"]) - ord("a")
            offsets[meeting] = offset
            ami_days = max(ami_days, offset + 1)
    others = [meeting for meeting in ids if meeting not in offsets]
    for index, meeting in enumerate(others):
        offsets[meeting] = ami_days + index
    return offsets


def _load_qmsum(root: Path, options: LoadOptions) -> Iterator[LoadItem]:
    """QMSum meeting files: one ``meeting`` record per file, titled with the meeting id.

    Meetings carry no dates. A meeting's date comes from ``options.manifest`` (``file`` or
    ``meeting_id`` plus ``date``), else from ``options.start_date`` by the rule in
    :func:`_qmsum_day_offsets` (at 00:00 UTC). That rule depends on the set of meetings loaded
    together, so use a manifest when loading subsets must give the same dates. Without either
    option every meeting is a LoadError. ASR tags such as ``{vocalsound}`` are dropped.
    """
    manifest, errors = _options_manifest(options)
    yield from errors
    files = _files(root, lambda p: p.suffix.lower() == ".json")
    if not files:
        yield _none_found(root, ".json meeting files")
    offsets = _qmsum_day_offsets(f.stem for f in files)
    for file in files:
        when = manifest.date_for(file) if manifest else None
        date_source = "manifest"
        if when is None and options.start_date is not None:
            when = _day_start(options.start_date) + timedelta(days=offsets[file.stem])
            date_source = "start_date"
        yield from _guarded(file, _qmsum_record, file, when, date_source, options)


def _qmsum_record(
    file: Path, when: datetime | None, date_source: str, options: LoadOptions
) -> LoadItem:
    source = str(file)
    meeting = file.stem
    source_id = f"qmsum-{meeting}"
    if when is None:
        return LoadError(
            source,
            None,
            "the meeting has no date; pass --start-date or --manifest "
            "(LoadOptions.start_date / manifest)",
            source_id,
        )
    data = json.loads(file.read_text(encoding="utf-8-sig"))
    turns = data.get("meeting_transcripts") if isinstance(data, dict) else None
    if not isinstance(turns, list):
        return LoadError(
            source,
            None,
            "field 'meeting_transcripts' is missing",
            source_id,
            day_of(when),
        )
    lines = []
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict):
            return LoadError(
                source,
                None,
                f"field 'meeting_transcripts'[{index}] is not an object: {turn!r:.60}",
                source_id,
                day_of(when),
            )
        text = " ".join(_ASR_TAG.sub(" ", str(turn.get("content", ""))).split())
        if text:
            lines.append(f"{turn.get('speaker', 'Unknown')}: {text}")
    ami = _AMI_MEETING.fullmatch(meeting)
    return _make(
        {
            "source_id": source_id,
            "org": options.org,
            "collection": options.collection or DEFAULT_COLLECTION,
            "identifier": None,
            "content": "\n".join(lines),
            "source_ts": when,
            "kind": "meeting",
            "title": meeting,
            "source": source,
            "source_line": None,
            "metadata": {
                "meeting_id": meeting,
                "series": ami["series"] if ami else None,
                "utterances": len(turns),
                "date_source": date_source,
            },
        },
    )


# --------------------------------------------------------------------------------------------
# markdown

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.S)
_HEADING = re.compile(r"^#[ \t]+(.+?)[ \t#]*$", re.M)


def _auto_manifest(root: Path) -> Path | None:
    folder = root if root.is_dir() else root.parent
    for candidate in (folder / "manifest.csv", folder.parent / "manifest.csv"):
        if candidate.is_file():
            return candidate
    return None


def _front_matter_date(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        try:
            return to_utc(value)
        except ValueError:
            return None
    if isinstance(value, date):
        return _day_start(value)
    if isinstance(value, str):
        try:
            return _parse_when(value)
        except ValueError:
            return None
    return None


def _load_markdown(root: Path, options: LoadOptions) -> Iterator[LoadItem]:
    """Markdown pages: one ``document`` record per page (collection ``documents`` by default).

    Date: the manifest's date column (``last_commit_date`` for the 18F handbook), else ``date:``
    in the YAML front matter, else ``options.start_date``, else a LoadError. Without
    ``options.manifest``, a ``manifest.csv`` in the folder or its parent is used. The front matter
    is stripped; the title is its ``title`` or the first ``#`` heading. ``source_id`` is the
    page's path relative to the manifest's folder when the manifest lists it, else relative to
    ``root``. Redirect stubs (``redirect_to`` and no body) are LoadErrors.
    """
    manifest_path = options.manifest or _auto_manifest(root)
    manifest, errors = _read_manifest(Path(manifest_path)) if manifest_path else (None, [])
    yield from errors
    files = _files(root, lambda p: p.suffix.lower() in (".md", ".markdown"))
    if not files:
        yield _none_found(root, ".md files")
    for file in files:
        yield from _guarded(file, _markdown_record, root, file, manifest, options)


def _markdown_record(
    root: Path, file: Path, manifest: _Manifest | None, options: LoadOptions
) -> LoadItem:
    source = str(file)
    source_id = (manifest.base_for(file) if manifest else None) or _rel(root, file)
    text = file.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    front: dict[str, Any] = {}
    body = text
    if match := _FRONT_MATTER.match(text):
        try:
            parsed = yaml.safe_load(match.group(1))
        except yaml.YAMLError as exc:
            return LoadError(source, None, f"invalid YAML front matter: {exc}", source_id)
        if parsed is not None and not isinstance(parsed, dict):
            return LoadError(source, None, "front matter is not a mapping", source_id)
        front = parsed or {}
        body = text[match.end() :]

    when = manifest.date_for(file) if manifest else None
    date_source = "manifest"
    if when is None and (when := _front_matter_date(front.get("date"))) is not None:
        date_source = "front_matter"
    if when is None and options.start_date is not None:
        when = _day_start(options.start_date)
        date_source = "start_date"
    day = day_of(when) if when else None

    if not body.strip():
        reason = "redirect stub, no content" if front.get("redirect_to") else "page has no content"
        return LoadError(source, None, reason, source_id, day)
    if when is None:
        return LoadError(
            source,
            None,
            "no date: not dated by a manifest, and no usable 'date' in the front matter; pass "
            "--manifest or --start-date (LoadOptions.manifest / start_date)",
            source_id,
        )
    title = front.get("title")
    if not isinstance(title, str) or not title.strip():
        heading = _HEADING.search(body)
        title = heading.group(1).strip() if heading else None
    return _make(
        {
            "source_id": source_id,
            "org": options.org,
            "collection": options.collection or DOCUMENTS_COLLECTION,
            "identifier": None,
            "content": body.strip(),
            "source_ts": when,
            "kind": "document",
            "title": title.strip() if title else None,
            "source": source,
            "source_line": None,
            "metadata": {"path": _rel(root, file), "date_source": date_source},
        },
    )


_LOADERS: dict[str, Callable[[Path, LoadOptions], Iterator[LoadItem]]] = {
    "jsonl": _load_jsonl,
    "email": _load_email,
    "enron-csv": _load_enron_csv,
    "locomo": _load_locomo,
    "qmsum": _load_qmsum,
    "markdown": _load_markdown,
}
