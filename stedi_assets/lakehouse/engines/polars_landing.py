"""Reading landing files with Polars: a fast path where it is certain, the reference elsewhere.

What a reader must produce is defined once, record by record, by the reference
in ``stedi_assets.domain.validation`` (each line parsed on its own by Python's json).
This module is a faster way to the same answer for the common file: a file of
flat JSON objects is parsed whole by Polars' JSON reader and validated with
the engine-neutral expressions of ``stedi_assets.domain.validation``, on whole
columns. The fast path is taken only where its answer is certainly the
reference's (see ``_fast_frame``); any other file (a broken line, an array or
object value, an exact duplicate name, a column whose values mix JSON kinds in
a way that changes their typed value, a JSON-array file) is read by the
reference itself, so a bad record never costs the others of its file.
``stedi_assets_tests/engines/test_landing_differential.py`` holds both to the same
answer, and, by each read's ``FeedRead.read_by``, the fast path to the files
it must read and to none it cannot be certain of.

Accepted deliveries: newline-delimited JSON or a JSON array of objects,
optionally gzip-compressed (``.json.gz``, bounded by ``max_file_mb`` after
decompression), with or without a UTF-8 byte order mark, LF or CRLF line
endings and a final newline; blank lines are not records. A record's line is
its 1-based physical line in the (uncompressed) file; in a JSON-array file it
is the element's 1-based position in the array.
"""

from __future__ import annotations

import dataclasses
import io
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import narwhals as nw
import polars as pl

from stedi_assets.domain import evolution, validation
from stedi_assets.domain.schemas import DELIVERED_FROM, TableSchema, delivered_records_schema
from stedi_assets.settings import DEFAULT_MAX_FILE_MB
from stedi_assets.lakehouse.storage import FileTooLarge
from stedi_assets.domain.validation import LINE, REASON, SOURCE, FileRecords, RecordRules

QUARANTINE_SCHEMA = pl.Schema(
    {"source_file": pl.String, "line": pl.Int64, "reason": pl.String, "raw_text": pl.String}
)

ReadBy = Literal["fast", "reference"]
"""How a file was read: whole by Polars (the fast path), or line by line by the reference."""


@dataclass
class FeedRead:
    """Everything read from one feed's files."""

    records: pl.DataFrame
    """The valid records, exact duplicates included, each with its file (``source_file``) and the declared columns."""
    quarantine: pl.DataFrame
    records_read: int
    unknown_fields: dict[str, int] = field(default_factory=dict)
    field_kinds: dict[str, dict[str, int]] = field(default_factory=dict)
    """Unknown fields whose name may become a column -> kind of value -> records (``FileRecords.field_kinds``)."""
    distinct_by_file: dict[str, int] = field(default_factory=dict)
    """Distinct valid records of each file that has any."""
    read_by: dict[str, ReadBy] = field(default_factory=dict)
    """How each file was read: ``"fast"`` where the fast path was certain of the reference's answer,
    ``"reference"`` elsewhere. Lets a test show that the fast path ran, and where it did not."""


class _LineTexts:
    """The raw text of a record by its line, found only when a record is quarantined."""

    def __init__(self, data: bytes):
        self._data = data
        self._lines: list[bytes] | None = None

    def __call__(self, line: int) -> str:
        if self._lines is None:
            self._lines = self._data.split(b"\n")
        if 1 <= line <= len(self._lines):
            return validation.raw_text(self._lines[line - 1])
        return ""


# -- the fast path and its certificate -----------------------------------------------
#
# Polars' reader and Python's json agree on a line that is one flat JSON object
# (names without escapes, values that are strings, numbers, booleans or null),
# read with an explicit schema: every name found in the file, a declared
# column's spellings as its declared type, other names as text. Polars then
# refuses a value of another kind in an integer or double column (the file
# goes to the reference), so those columns hold exactly the reference's values.
# What remains is checked before the fast answer is used; each sends the file
# to the reference:
# - a name twice in one object (Polars keeps the first value, json the last);
# - a number or boolean in a declared text column (Polars writes numbers as
#   text its own way);
# - a lone UTF-16 surrogate escape (Polars reads it as a NUL character): not
#   accepted by the line pattern.
#
# A delivery's lines nearly always share one shape: the same names in the same
# order. The first record's names make a pattern that accepts exactly the flat
# lines of that shape whose declared text columns hold text or null
# (``_shape_pattern``); a line it accepts needs none of the checks above. When
# it accepts every line, one match of the whole text certifies the file; any
# other line is held to the general checks, which only such lines pay for.

_WS = r"[ \t\r]*"
_NAME = r'"[^"\\\x00-\x1f]*"'
_STRING = r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u(?:[0-9a-cA-Ce-fE-F][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2}))*"'
_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_VALUE = f"(?:{_STRING}|{_NUMBER}|true|false|null)"
_TEXT_VALUE = f"(?:{_STRING}|null)"
_MEMBER = f"{_NAME}{_WS}:{_WS}{_VALUE}"
_FLAT_LINE = f"^{_WS}(?:\\{{{_WS}(?:{_MEMBER}(?:{_WS},{_WS}{_MEMBER})*)?{_WS}\\}})?{_WS}$"
"""A line that is blank or one flat JSON object. Names hold no escape, so a
name's text is the name, and in such a line only a name is a string followed
by a colon: ``_NAME_COLON`` finds exactly the names."""
_NAME_COLON = f"{_NAME}{_WS}:"
_BLANK_LINE = f"^{_WS}$"
_FAST_TYPES = {"bigint": pl.Int64, "double": pl.Float64, "string": pl.String}


def _literal(name: str) -> str:
    """A pattern (Polars' regular expressions) matching exactly ``name``: every character but ASCII letters and digits escaped by code point."""
    return "".join(c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):X}}}" for c in name)


def _names(shape: str) -> list[str]:
    """The names of one record from its ``_NAME_COLON`` matches joined by NUL characters."""
    return [name.rstrip(" \t\r:")[1:-1] for name in shape.split("\x00")] if shape else []


def _names_by_record(records: pl.Series) -> list[list[str]] | None:
    """The names of each distinct shape of record; None when a record repeats a name."""
    shapes = records.str.extract_all(_NAME_COLON).list.join("\x00").unique().to_list()
    names = []
    for shape in shapes:
        found = _names(shape)
        if len(set(found)) != len(found):
            return None
        names.append(found)
    return names


def _is_text(name: str, declared: dict[str, str]) -> bool:
    return declared.get(name.lower()) == "string"


def _shape_pattern(line: str, declared: dict[str, str]) -> tuple[list[str], str] | None:
    """The names of a flat record line, each once, and a pattern (unanchored) of exactly the lines that
    have those names in that order, values of the general kinds, and only text or null in declared text columns.

    None when the line is no flat object or repeats a name.
    """
    one = pl.Series([line])
    if not one.str.contains(_FLAT_LINE).item() or one.str.contains(_BLANK_LINE).item():
        return None
    names = _names(one.str.extract_all(_NAME_COLON).list.join("\x00").item())
    if len(set(names)) != len(names):
        return None
    members = f"{_WS},{_WS}".join(
        f'"{_literal(name)}"{_WS}:{_WS}{_TEXT_VALUE if _is_text(name, declared) else _VALUE}' for name in names
    )
    return names, f"{_WS}\\{{{_WS}{members}{_WS}\\}}{_WS}"


def _first_record(text: str) -> str:
    """The first line holding more than blanks (may be empty)."""
    start = 0
    while True:
        end = text.find("\n", start)
        line = text[start:] if end < 0 else text[start:end]
        if line.strip(" \t\r") or end < 0:
            return line
        start = end + 1


def _physical_lines(data: bytes, text: str) -> pl.Series:
    """The file's lines, one per physical line (split at ``\\n``; a carriage return before it may be dropped)."""
    expected = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    # Polars' CSV reader with a separator the file does not hold splits lines
    # several times faster than splitting the text; it also splits at a lone
    # carriage return, which the count would then not match.
    if b"\x01" not in data and data.count(b"\r") == data.count(b"\r\n"):
        try:
            lines = pl.read_csv(
                io.BytesIO(data), has_header=False, separator="\x01", quote_char=None,
                new_columns=["text"], schema={"text": pl.String},
            )["text"].fill_null("")
            if lines.len() == expected:
                return lines
        except pl.exceptions.PolarsError:
            pass
    return pl.DataFrame({"text": [text]}).select(pl.col("text").str.split("\n").explode())["text"]


def _record_lines(data: bytes, text: str, shape: tuple[list[str], str] | None, declared: dict[str, str]) -> tuple[list[str], pl.Series] | None:
    """Every name found in the file's records and the 1-based line of each record; None unless certain (see above)."""
    if shape is not None:
        names, line = shape
        try:
            # One match of the whole text: every line has the shape (the last may
            # be the empty text after a final newline), so no line is blank.
            every_line = pl.Series([text]).str.contains(f"\\A(?:{line}\\n)*(?:{line})?\\z").item()
        except pl.exceptions.ComputeError:  # thousands of names: a pattern beyond the regex size limit
            shape, every_line = None, False
        if every_line:
            lines_in_file = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
            return names, pl.int_range(1, lines_in_file + 1, dtype=pl.Int64, eager=True)
    lines = _physical_lines(data, text)
    other = ~lines.str.contains(f"^{shape[1]}$") if shape is not None else pl.repeat(True, lines.len(), eager=True)
    rest = lines.filter(other)
    if not rest.str.contains(_FLAT_LINE).all():
        return None
    blank = other & lines.str.contains(_BLANK_LINE)
    shapes = _names_by_record(rest.filter(~rest.str.contains(_BLANK_LINE)))
    if shapes is None:
        return None
    found = dict.fromkeys(shape[0] if shape is not None else [])
    for names in shapes:
        found.update(dict.fromkeys(names))
    for name in found:
        # A declared text column holding a number or boolean in a line of
        # another shape: found by its name followed by such a value (or,
        # harmlessly, by text that looks so).
        if _is_text(name, declared) and rest.str.contains(f'"{_literal(name)}"{_WS}:{_WS}[-0-9tf]').any():
            return None
    return list(found), (~blank).arg_true().cast(pl.Int64) + 1


def _careful_name(name: str, declared: dict[str, str]) -> bool:
    """A field only the reference reads: one that may become a column (its values' kinds are counted
    record by record), or one of a boolean column (Polars' reader is not held to the reference there)."""
    kind = declared.get(name.lower())
    return kind == "boolean" or (kind is None and evolution.is_column_name(name))


def _fast_frame(data: bytes, schema: TableSchema) -> pl.DataFrame | None:
    """The file parsed whole by Polars, with each record's line; None unless certainly the reference's reading."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    declared = {column.name.lower(): column.type for column in schema.columns}
    found = _record_lines(data, text, _shape_pattern(_first_record(text), declared), declared)
    if found is None:
        return None
    names, record_lines = found
    if any(_careful_name(name, declared) for name in names):
        return None
    fields = {name: _FAST_TYPES[declared.get(name.lower(), "string")] for name in names}
    if SOURCE in fields or LINE in fields:
        return None
    try:
        frame = pl.read_ndjson(io.BytesIO(data), schema=fields)
    except pl.exceptions.PolarsError:
        return None
    if frame.height != record_lines.len():
        return None
    return frame.with_columns(record_lines.alias(LINE))


# -- files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _ParsedFile:
    """One file: either a raw frame from the fast path, or the reference's reading."""

    uri: str
    problems: list[tuple[int, str, str]]
    raw: pl.DataFrame | None = None
    texts: _LineTexts | None = None
    reference: FileRecords | None = None

    @property
    def read_by(self) -> ReadBy:
        return "fast" if self.raw is not None else "reference"


def _parse(schema: TableSchema, rules: RecordRules, uri: str, data: bytes, max_file_mb: int) -> _ParsedFile:
    data, problems = validation.landing_bytes(uri, data, max_file_mb)
    # The file's first bytes decide both tests unless they are all blank (the
    # whole file would be copied to strip it).
    head = data[:64]
    leading_blank = not head.strip()
    if leading_blank and not data.strip(b" \t\r\n"):
        return _ParsedFile(uri, problems, reference=FileRecords())
    if validation.is_array_file(data if leading_blank else head):
        return _ParsedFile(uri, problems, reference=validation.reference_array(data, rules))
    frame = _fast_frame(data, schema)
    if frame is None:
        return _ParsedFile(uri, problems, reference=validation.reference_lines(data, rules))
    return _ParsedFile(uri, problems, raw=frame, texts=_LineTexts(data))


@dataclass(frozen=True)
class _FileRead:
    kept: list[pl.DataFrame]
    quarantined: list[tuple[str, int, str, str]]
    unknown: dict[str, int]
    records_read: int
    distinct_by_file: dict[str, int]
    read_by: dict[str, ReadBy]
    field_kinds: dict[str, dict[str, int]] = field(default_factory=dict)


_BATCH_FILES = 16
"""Files validated together: validation has a fixed cost per call (building
its expressions), paid once per batch rather than once per file, while only a
batch's raw bytes are held at a time."""


def _add_counts(total: dict[str, int], counts: dict[str, int]) -> None:
    for name, count in counts.items():
        total[name] = total.get(name, 0) + count


def _validate(schema: TableSchema, files: Sequence[_ParsedFile]) -> _FileRead:
    """Type and validate the records of parsed files, all fast-path files of one raw schema at once."""
    rows = [(f.uri, line, reason, text) for f in files for line, reason, text in f.problems]
    kept: list[pl.DataFrame] = []
    unknown: dict[str, int] = {}
    field_kinds: dict[str, dict[str, int]] = {}
    records_read = sum(len(f.problems) for f in files)
    for f in files:
        if f.reference is not None:
            records_read += f.reference.records_read
            rows += [(f.uri, line, reason, text) for line, reason, text in f.reference.quarantined]
            if f.reference.kept:
                kept.append(
                    pl.DataFrame([r[1:] for r in f.reference.kept], schema=schema.polars_schema, orient="row")
                    .select(pl.lit(f.uri, dtype=pl.String).alias(DELIVERED_FROM), *schema.column_names)
                )
            _add_counts(unknown, f.reference.unknown_fields)
            evolution.merge_kinds(field_kinds, f.reference.field_kinds)
    texts = {f.uri: f.texts for f in files if f.raw is not None}
    by_raw_schema: dict[tuple, list[pl.DataFrame]] = {}
    for f in files:
        if f.raw is not None:
            records_read += f.raw.height
            located = f.raw.with_columns(pl.lit(f.uri, dtype=pl.String).alias(SOURCE))
            by_raw_schema.setdefault(tuple(located.schema.items()), []).append(located)
    for frames in by_raw_schema.values():
        raw = nw.from_native(pl.concat(frames).lazy())
        typed, match = validation.validate_records(raw, schema)
        _add_counts(unknown, validation.unknown_field_counts(raw, match))
        typed_frame: pl.DataFrame = typed.collect().to_native()
        kept.append(
            typed_frame.filter(pl.col(REASON).is_null()).select(pl.col(SOURCE).alias(DELIVERED_FROM), *schema.column_names)
        )
        rejected = typed_frame.filter(pl.col(REASON).is_not_null()).select(SOURCE, LINE, REASON)
        for source, line, reason in rejected.iter_rows():
            rows.append((source, line, reason, texts[source](line)))
    # Counted a batch at a time, where the frames are small (a file's records
    # are all in one frame), and a file at a time: without the file's URI in
    # every row, the distinct rows are found in about half the time.
    distinct_by_file: dict[str, int] = {}
    for frame in kept:
        for (uri,), records in frame.partition_by(DELIVERED_FROM, as_dict=True, include_key=False).items():
            _add_counts(distinct_by_file, {uri: records.unique().height})
    return _FileRead(
        kept, rows, unknown, records_read, distinct_by_file, {f.uri: f.read_by for f in files}, field_kinds
    )


def _batches(items: Sequence, size: int) -> Iterable[Sequence]:
    return (items[i:i + size] for i in range(0, len(items), size))


def _combine(schema: TableSchema, reads: Iterable[_FileRead]) -> FeedRead:
    kept: list[pl.DataFrame] = []
    rows: list[tuple[str, int, str, str]] = []
    unknown: dict[str, int] = {}
    field_kinds: dict[str, dict[str, int]] = {}
    records_read = 0
    distinct_by_file: dict[str, int] = {}
    read_by: dict[str, ReadBy] = {}
    for read in reads:
        evolution.merge_kinds(field_kinds, read.field_kinds)
        kept += read.kept
        rows += read.quarantined
        records_read += read.records_read
        _add_counts(unknown, read.unknown)
        _add_counts(distinct_by_file, read.distinct_by_file)
        read_by.update(read.read_by)
    records = pl.concat(kept) if kept else pl.DataFrame(
        schema=delivered_records_schema(schema.name.removesuffix("_landing"), schema).polars_schema
    )
    return FeedRead(
        records=records,
        quarantine=pl.DataFrame(rows, schema=QUARANTINE_SCHEMA, orient="row").sort("source_file", "line", "reason"),
        records_read=records_read,
        unknown_fields=dict(sorted(unknown.items())),
        field_kinds=dict(sorted(field_kinds.items())),
        distinct_by_file=distinct_by_file,
        read_by=read_by,
    )


def read_feed(
    schema: TableSchema, files: Sequence[tuple[str, bytes]], max_file_mb: int = DEFAULT_MAX_FILE_MB
) -> FeedRead:
    """Typed records and quarantined records of one feed's files."""
    rules = RecordRules(schema)
    return _combine(schema, (
        _validate(schema, [_parse(schema, rules, uri, data, max_file_mb) for uri, data in batch])
        for batch in _batches(files, _BATCH_FILES)
    ))


def read_feed_files(
    schema: TableSchema,
    uris: Sequence[str],
    read_bytes: Callable[[str, int], bytes],
    workers: int,
    max_file_mb: int = DEFAULT_MAX_FILE_MB,
    store_records: Callable[[int, pl.DataFrame], None] | None = None,
    on_file: Callable[[str], None] | None = None,
) -> FeedRead:
    """``read_feed`` over files fetched with ``read_bytes(uri, max_bytes)``, several at a time.

    ``read_bytes`` raises ``storage.FileTooLarge`` for a file over ``max_bytes``
    without reading it (``Store.read_bytes``): such a file is quarantined whole,
    as a gzip file that inflates past the bound is.

    Workers fetch the files of a batch in parallel (on S3 they overlap the
    wait for each object's first byte) and parse them as many at a time as
    Polars has threads (Polars parses without holding the GIL); a batch's
    bytes are dropped once it is validated, so the whole feed's raw bytes are
    never held at once. With ``store_records``, each batch's kept records are
    handed to it (with the batch's number) instead of being held: the result's
    ``records`` is then empty, and the feed's records are never all in memory.
    ``on_file`` is told each file's URI once it is parsed (from the worker that parsed it).
    """
    rules = RecordRules(schema)
    # Parsed by as many files at a time as Polars has threads: each parse
    # already keeps them busy, and more at once would only hold more files'
    # text and frames in memory together (0.1 GB at 100x with 8 workers).
    parsing = threading.Semaphore(pl.thread_pool_size())

    limit = max_file_mb * validation.MIB

    def fetch_and_parse(uri: str) -> _ParsedFile:
        try:
            # Bounded before it is read: a file over the bound never costs its size in memory.
            data = read_bytes(uri, limit)
        except FileTooLarge:
            parsed = _ParsedFile(uri, [(0, validation.file_too_large(max_file_mb), "")], reference=FileRecords())
        else:
            with parsing:
                parsed = _parse(schema, rules, uri, data, max_file_mb)
        if on_file is not None:
            on_file(uri)
        return parsed

    reads = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for number, batch in enumerate(_batches(uris, _BATCH_FILES)):
            read = _validate(schema, list(pool.map(fetch_and_parse, batch)))
            if store_records is not None:
                if read.kept:
                    store_records(number, pl.concat(read.kept))
                read = dataclasses.replace(read, kept=[])
            reads.append(read)
    return _combine(schema, reads)
