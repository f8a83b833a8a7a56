"""Reading landing files with Polars: a vectorised path, and a careful one for broken files.

A file is parsed whole by Polars' JSON reader first. Only when that fails
(a line is not JSON, or not an object) is the file split into lines and each
line parsed on its own with Python's json module, to tell which lines are
broken; the good lines are then parsed by Polars again. Field types, required
fields and ranges are always checked with the engine-neutral expressions of
``stedi_assets.validation``, on whole columns.

Accepted deliveries: newline-delimited JSON or a JSON array of objects,
optionally gzip-compressed (``.json.gz``), with or without a UTF-8 byte order
mark, LF or CRLF line endings and a final newline; blank lines are not
records. A record's line is its 1-based physical line in the (uncompressed)
file; in a JSON-array file it is the element's 1-based position in the array.
"""

from __future__ import annotations

import codecs
import io
import json
import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import narwhals as nw
import polars as pl

from stedi_assets import validation
from stedi_assets.schemas import POLARS_TYPES, RAW_TEXT_LIMIT, TableSchema
from stedi_assets.validation import LINE, NOT_AN_OBJECT, REASON, SOURCE, UNPARSEABLE, UNREADABLE_FILE

_SAMPLE_LINES = 100
QUARANTINE_SCHEMA = pl.Schema(
    {"source_file": pl.String, "line": pl.Int64, "reason": pl.String, "raw_text": pl.String}
)


@dataclass
class FeedRead:
    """Everything read from one feed's files."""

    records: pl.DataFrame
    quarantine: pl.DataFrame
    records_read: int
    unknown_fields: dict[str, int] = field(default_factory=dict)


@dataclass
class _Parsed:
    """One file parsed: a raw frame (fields as read, plus source and line) and the lines already rejected."""

    raw: list[pl.DataFrame]
    records: int
    rejected: list[tuple[int, str, str]]  # (line, reason, raw text)
    texts: _LineTexts


class _LineTexts:
    """The raw text of a record by its line, found only when a record is quarantined."""

    def __init__(self, data: bytes, is_array: bool, elements: dict[int, str] | None = None):
        self._data = data
        self._is_array = is_array
        self._elements = elements
        self._lines: list[bytes] | None = None

    def __call__(self, line: int) -> str:
        if self._is_array:
            if self._elements is None:
                parsed = json.loads(self._data.decode("utf-8"))
                self._elements = {i: json.dumps(e, ensure_ascii=False) for i, e in enumerate(parsed, 1)}
            return self._elements.get(line, "")
        if self._lines is None:
            self._lines = self._data.split(b"\n")
        if 1 <= line <= len(self._lines):
            return _text(self._lines[line - 1])
        return ""


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\r").decode("utf-8", errors="replace")[:RAW_TEXT_LIMIT]


def _decompress(data: bytes) -> tuple[bytes, str | None]:
    """The uncompressed bytes of a gzip file (all members), and a problem if it could not be read whole."""
    out = []
    remaining = data
    try:
        while remaining:
            inflater = zlib.decompressobj(wbits=31)
            out.append(inflater.decompress(remaining))
            if not inflater.eof:
                return b"".join(out), "gzip stream ends early (truncated file)"
            remaining = inflater.unused_data.lstrip(b"\x00")
    except zlib.error as error:
        return b"".join(out), f"not a valid gzip file ({error})"
    return b"".join(out), None


def _physical_lines(data: bytes) -> int:
    if not data:
        return 0
    return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} does not fit a double")
    return value


def _loads(text: str) -> object:
    # Python's json accepts NaN and Infinity, and numbers no double can hold;
    # Polars' reader does not, and the good lines go back to Polars.
    return json.loads(text, parse_constant=_no_constants, parse_float=_finite)


def _with_lines(frame: pl.DataFrame, lines: Sequence[int]) -> pl.DataFrame:
    return frame.with_columns(pl.Series(LINE, lines, dtype=pl.Int64))


def _read_ndjson(data: bytes) -> pl.DataFrame:
    return pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)


def _kinds(record: dict) -> tuple:
    """A record's field names and JSON value kinds: records alike in this read alike."""
    return tuple(sorted((key, type(value).__name__) for key, value in record.items()))


def _parse_good_lines(
    good: list[tuple[int, bytes, tuple]], rejected: list[tuple[int, str, str]]
) -> list[pl.DataFrame]:
    """Parse lines already known to be JSON objects with Polars.

    All together first; if their types clash (a number in one line, a list in
    another), each group of lines alike is parsed on its own, and validated
    on its own; a line Polars still cannot read is quarantined.
    """
    if not good:
        return []
    try:
        frame = _read_ndjson(b"\n".join(line for _, line, _ in good))
        if frame.height == len(good):
            return [_with_lines(frame, [n for n, _, _ in good])]
    except pl.exceptions.PolarsError:
        pass
    groups: dict[tuple, list[tuple[int, bytes]]] = {}
    for number, line, kinds in good:
        groups.setdefault(kinds, []).append((number, line))
    frames = []
    for lines in groups.values():
        try:
            frame = _read_ndjson(b"\n".join(line for _, line in lines))
            if frame.height == len(lines):
                frames.append(_with_lines(frame, [n for n, _ in lines]))
                continue
        except pl.exceptions.PolarsError:
            pass
        for number, line in lines:
            try:
                frames.append(_with_lines(_read_ndjson(line), [number]))
            except pl.exceptions.PolarsError:
                rejected.append((number, UNPARSEABLE, _text(line)))
    return frames


def _sampled_schema(data: bytes, schema: TableSchema) -> pl.Schema | None:
    """Field types from the first lines, widened where later lines may legitimately differ."""
    # Only the sample's bytes go to the reader: given the whole file, inference
    # would scan all of it.
    end = 0
    for _ in range(_SAMPLE_LINES):
        end = data.find(b"\n", end) + 1
        if end == 0:
            end = len(data)
            break
    try:
        sample = pl.read_ndjson(io.BytesIO(data[:end]), infer_schema_length=None)
    except pl.exceptions.PolarsError:
        return None
    declared = {c.name.lower(): POLARS_TYPES[c.type] for c in schema.columns}
    fields = {}
    for name, dtype in sample.schema.items():
        target = declared.get(name.lower())
        if dtype == pl.Null:
            # Null in every sampled line: read as the declared type (strictly,
            # so a value of another type sends the file to the full inference).
            dtype = target or pl.String
        elif target == pl.Float64 and dtype.is_integer():
            dtype = pl.Float64
        fields[name] = dtype
    return pl.Schema(fields)


def _every_field_read(data: bytes, frame: pl.DataFrame) -> bool:
    """Whether the frame holds every field of the file, not just those seen in the sample.

    Each ``":`` in the file ends a field name; each is either a non-null cell
    of the frame or a null literal. A field first seen after the sample (or
    unusual spacing, or ``":`` inside a value) breaks the balance, and then
    the file is read with full inference instead: slower, never wrong.
    """
    separators = data.count(b'":')
    nulls = data.count(b'":null') + data.count(b'": null') if b"null" in data else 0
    cells = sum(frame.height - count for count in frame.null_count().row(0)) if frame.width else 0
    return separators == cells + nulls


def _read_fast(data: bytes, schema: TableSchema) -> pl.DataFrame | None:
    """The whole file with types inferred from a sample; None if that does not hold for every line."""
    sampled = _sampled_schema(data, schema)
    if sampled is None:
        return None
    try:
        frame = pl.read_ndjson(io.BytesIO(data), schema=sampled)
    except pl.exceptions.PolarsError:
        return None
    return frame if _every_field_read(data, frame) else None


def _parse_ndjson(data: bytes, schema: TableSchema) -> _Parsed:
    texts = _LineTexts(data, is_array=False)
    physical = _physical_lines(data)
    frame = _read_fast(data, schema)
    if frame is None:
        try:
            frame = _read_ndjson(data)
        except pl.exceptions.PolarsError:
            frame = None
    if frame is not None:
        if frame.height == physical:
            return _Parsed([_with_lines(frame, range(1, physical + 1))], physical, [], texts)
        # Blank lines are not records: number the others.
        numbers = [i for i, line in enumerate(data.split(b"\n"), 1) if line.strip()]
        if frame.height == len(numbers):
            return _Parsed([_with_lines(frame, numbers)], len(numbers), [], texts)
    # The careful path: halve the file until the broken lines are found.
    frames: list[pl.DataFrame] = []
    rejected: list[tuple[int, str, str]] = []
    records = _parse_block(data.split(b"\n"), 1, frames, rejected)
    return _Parsed(_merge_alike(frames), records, rejected, texts)


_CAREFUL_BLOCK = 256
"""Lines below which a block that Polars cannot read is parsed line by line."""


def _parse_block(lines: list[bytes], first: int, frames: list[pl.DataFrame], rejected: list) -> int:
    """Parse ``lines`` (numbered from ``first``) into ``frames`` and ``rejected``; return the records found.

    A block Polars reads whole is done; one it cannot read is split in two,
    so a few broken lines in a large file cost a few dozen Polars reads, and
    only small blocks around them are parsed line by line in Python.
    """
    numbers = [first + i for i, line in enumerate(lines) if line.strip()]
    if not numbers:
        return 0
    if len(lines) > _CAREFUL_BLOCK:
        try:
            frame = _read_ndjson(b"\n".join(lines))
            if frame.height == len(numbers):
                frames.append(_with_lines(frame, numbers))
                return len(numbers)
        except pl.exceptions.PolarsError:
            pass
        half = len(lines) // 2
        return _parse_block(lines[:half], first, frames, rejected) + _parse_block(
            lines[half:], first + half, frames, rejected
        )
    good: list[tuple[int, bytes, tuple]] = []
    records = 0
    for number, line in zip(range(first, first + len(lines)), lines):
        stripped = line.strip()
        if not stripped:
            continue
        records += 1
        try:
            value = _loads(stripped.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            rejected.append((number, UNPARSEABLE, _text(line)))
            continue
        if isinstance(value, dict):
            good.append((number, stripped, _kinds(value)))
        else:
            rejected.append((number, NOT_AN_OBJECT, _text(line)))
    frames.extend(_parse_good_lines(good, rejected))
    return records


def _merge_alike(frames: list[pl.DataFrame]) -> list[pl.DataFrame]:
    """Frames of the same schema as one frame each: fewer, larger frames to validate."""
    by_schema: dict[tuple, list[pl.DataFrame]] = {}
    for frame in frames:
        by_schema.setdefault(tuple(frame.schema.items()), []).append(frame)
    return [pl.concat(alike) if len(alike) > 1 else alike[0] for alike in by_schema.values()]


def _parse_array(data: bytes) -> _Parsed:
    try:
        frame = pl.read_json(io.BytesIO(data), infer_schema_length=None)
        return _Parsed([_with_lines(frame, range(1, frame.height + 1))], frame.height, [], _LineTexts(data, True))
    except pl.exceptions.PolarsError:
        pass
    # Walk the array element by element: keep every complete element before
    # a truncation or a syntax error, and quarantine the rest as one record.
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
    decoder = json.JSONDecoder(parse_constant=_no_constants, parse_float=_finite)
    good: list[tuple[int, bytes, tuple]] = []
    rejected: list[tuple[int, str, str]] = []
    elements: dict[int, str] = {}
    position = text.index("[") + 1
    number = 0
    while True:
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        if position < len(text) and text[position] == "]" and number == 0:
            break
        number += 1
        try:
            value, end = decoder.raw_decode(text, position)
        except (ValueError, RecursionError):
            rejected.append((number, UNPARSEABLE, text[position:position + RAW_TEXT_LIMIT]))
            break
        element = json.dumps(value, ensure_ascii=False)
        elements[number] = element[:RAW_TEXT_LIMIT]
        if isinstance(value, dict):
            good.append((number, element.encode("utf-8"), _kinds(value)))
        else:
            rejected.append((number, NOT_AN_OBJECT, elements[number]))
        position = end
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        if position < len(text) and text[position] == ",":
            position += 1
            continue
        if position < len(text) and text[position] == "]" and not text[position + 1:].strip():
            break
        # Anything else after an element (a missing comma, text after the
        # closing bracket, the end of a truncated file) breaks the array here.
        if text[position:].strip():
            number += 1
            rejected.append((number, UNPARSEABLE, text[position:position + RAW_TEXT_LIMIT]))
        break
    raw = _parse_good_lines(good, rejected)
    return _Parsed(raw, len(good) + len(rejected), rejected, _LineTexts(data, True, elements))


def parse_file(uri: str, data: bytes, schema: TableSchema) -> tuple[_Parsed, list[tuple[int, str, str]]]:
    """Parse one landing file; return it and the file-level problems (as line-0 records)."""
    problems: list[tuple[int, str, str]] = []
    if uri.lower().endswith(".gz") or data[:2] == b"\x1f\x8b":
        data, problem = _decompress(data)
        if problem:
            problems.append((0, UNREADABLE_FILE, problem))
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    start = data.lstrip()[:1]
    if not start:
        return _Parsed([], 0, [], _LineTexts(data, False)), problems
    parsed = _parse_array(data) if start == b"[" else _parse_ndjson(data, schema)
    return parsed, problems


def _quarantine_frame(rows: list[tuple[str, int, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=QUARANTINE_SCHEMA, orient="row")


@dataclass(frozen=True)
class _FileRead:
    kept: list[pl.DataFrame]
    quarantined: list[tuple[str, int, str, str]]
    unknown: dict[str, int]
    records_read: int


@dataclass(frozen=True)
class _ParsedFile:
    uri: str
    parsed: _Parsed
    problems: list[tuple[int, str, str]]


_BATCH_FILES = 16
"""Files validated together: validation has a fixed cost per call (building
its expressions), paid once per batch rather than once per file, while only a
batch's raw bytes are held at a time."""


def _parse(schema: TableSchema, uri: str, data: bytes) -> _ParsedFile:
    parsed, problems = parse_file(uri, data, schema)
    return _ParsedFile(uri, parsed, problems)


def _validate(schema: TableSchema, files: Sequence[_ParsedFile]) -> _FileRead:
    """Type and validate the records of parsed files, all files of one raw schema at once."""
    rows = [(f.uri, line, reason, text) for f in files for line, reason, text in f.problems + f.parsed.rejected]
    texts = {f.uri: f.parsed.texts for f in files}
    by_raw_schema: dict[tuple, list[pl.DataFrame]] = {}
    for f in files:
        for frame in f.parsed.raw:
            located = frame.with_columns(pl.lit(f.uri, dtype=pl.String).alias(SOURCE))
            by_raw_schema.setdefault(tuple(located.schema.items()), []).append(located)
    kept: list[pl.DataFrame] = []
    unknown: dict[str, int] = {}
    for frames in by_raw_schema.values():
        raw = nw.from_native(pl.concat(frames).lazy())
        typed, match = validation.validate_records(raw, schema)
        for name, count in validation.unknown_field_counts(raw, match).items():
            unknown[name] = unknown.get(name, 0) + count
        typed_frame: pl.DataFrame = typed.collect().to_native()
        kept.append(typed_frame.filter(pl.col(REASON).is_null()).select(schema.column_names))
        rejected = typed_frame.filter(pl.col(REASON).is_not_null()).select(SOURCE, LINE, REASON)
        for source, line, reason in rejected.iter_rows():
            rows.append((source, line, reason, texts[source](line)))
    records_read = sum(f.parsed.records + len(f.problems) for f in files)
    return _FileRead(kept, rows, unknown, records_read)


def _batches(items: Sequence, size: int) -> Iterable[Sequence]:
    return (items[i:i + size] for i in range(0, len(items), size))


def _combine(schema: TableSchema, reads: Iterable[_FileRead]) -> FeedRead:
    kept: list[pl.DataFrame] = []
    rows: list[tuple[str, int, str, str]] = []
    unknown: dict[str, int] = {}
    records_read = 0
    for read in reads:
        kept += read.kept
        rows += read.quarantined
        records_read += read.records_read
        for name, count in read.unknown.items():
            unknown[name] = unknown.get(name, 0) + count
    records = pl.concat(kept) if kept else pl.DataFrame(schema=schema.polars_schema)
    return FeedRead(
        records=records,
        quarantine=_quarantine_frame(rows).sort("source_file", "line", "reason"),
        records_read=records_read,
        unknown_fields=dict(sorted(unknown.items())),
    )


def read_feed(schema: TableSchema, files: Sequence[tuple[str, bytes]]) -> FeedRead:
    """Typed records and quarantined records of one feed's files."""
    batches = _batches(files, _BATCH_FILES)
    return _combine(schema, (_validate(schema, [_parse(schema, uri, data) for uri, data in b]) for b in batches))


def read_feed_files(
    schema: TableSchema, uris: Sequence[str], read_bytes: Callable[[str], bytes], workers: int
) -> FeedRead:
    """``read_feed`` over files fetched with ``read_bytes``, several at a time.

    Workers fetch and parse the files of a batch in parallel (Polars parses
    without holding the GIL, and on S3 the workers overlap the wait for each
    object's first byte); a batch's bytes are dropped once it is validated,
    so the whole feed's raw bytes are never held at once.
    """
    reads = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for batch in _batches(uris, _BATCH_FILES):
            parsed = list(pool.map(lambda uri: _parse(schema, uri, read_bytes(uri)), batch))
            reads.append(_validate(schema, parsed))
    return _combine(schema, reads)
