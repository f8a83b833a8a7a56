"""Validation of landing records: the reference reader, and the same rules as narwhals expressions.

The reference (``reference_read`` and the functions below it) is the
definition: each record parsed on its own with Python's json module, then
typed and checked, giving the landing records and the quarantined ones with
their reasons. The Spark engine runs it in its Python workers; the Polars
engine runs it for any file its fast path cannot read with certainty.

The fast path parses a file into a *raw frame*: one column per field name
found (any letter case, whatever type the JSON reader gave it), plus the
record's source file and line. ``validate_records`` turns that into typed
records and a reason for every record that cannot be kept, with the same
rules written as narwhals expressions on whole columns.

What a field accepts (the declared type comes from schemas.py):

- bigint: a JSON integer, or a string of 1 to 18 decimal digits with an
  optional minus sign (``"123"`` -> 123). Not a fraction (``1.5``,
  ``"1.5"``), not a boolean, object or array.
- double: a JSON number, or a string holding a decimal number
  (``"1.5"``, ``"-2"``, ``"1e3"``). The value must be finite.
- string: a JSON string, as it is (even one that looks like JSON); a
  boolean as ``true``/``false``; a number as Python's json writes it
  (``218``, ``1.5``, ``1e+20``). Not an object or array.
- boolean (only a column added from delivered records, see ``evolution``):
  a JSON ``true`` or ``false``, nothing else.

A record is quarantined for the first of these that applies, in the order
of the schema's columns: a required field is null, absent or blank
(``missing required field <name>``; blank means only Unicode White_Space);
a value has none of the accepted forms
(``wrong type for <name>``); a value is outside the column's declared range
(``value out of range for <name>``). Parsing reasons (``unparseable JSON``,
``not a JSON object``, ``unreadable file``) are decided by the engine while
reading the files.
"""

from __future__ import annotations

import codecs
import json
import math
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import narwhals as nw

from stedi_assets.domain import evolution
from stedi_assets.domain.schemas import NARWHALS_TYPES, RAW_TEXT_LIMIT, Column, TableSchema
from stedi_assets.settings import DEFAULT_MAX_FILE_MB

SOURCE = "__source_file"
LINE = "__line"
REASON = "__reason"

UNPARSEABLE = "unparseable JSON"
NOT_AN_OBJECT = "not a JSON object"
UNREADABLE_FILE = "unreadable file"


def missing_field(name: str) -> str:
    return f"missing required field {name}"


def wrong_type(name: str) -> str:
    return f"wrong type for {name}"


def out_of_range(name: str) -> str:
    return f"value out of range for {name}"


# 18 digits always fit a 64-bit integer; epoch milliseconds have 13.
_INTEGER_TEXT = r"^-?[0-9]{1,18}$"
_DECIMAL_TEXT = r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class FieldMatch:
    """Which field names of the files feed which declared column, and which fields are unknown."""

    spellings: Mapping[str, tuple[str, ...]]
    """Declared column -> the field names spelling it (any case), declared spelling first."""
    unknown: tuple[str, ...]
    """Field names that match no declared column; kept out of the typed table."""


def match_fields(field_names: list[str], schema: TableSchema) -> FieldMatch:
    """Match field names to declared columns without regard to letter case, as Athena does."""
    by_lower: dict[str, list[str]] = {}
    for name in field_names:
        if name in (SOURCE, LINE):
            continue
        by_lower.setdefault(name.lower(), []).append(name)
    spellings: dict[str, tuple[str, ...]] = {}
    for column in schema.columns:
        found = by_lower.pop(column.name.lower(), [])
        # The declared spelling wins when one record holds several spellings.
        spellings[column.name] = tuple(sorted(found, key=lambda s: (s != column.name, s)))
    unknown = tuple(sorted(name for names in by_lower.values() for name in names))
    return FieldMatch(spellings, unknown)


def _integer_types() -> tuple[type[nw.dtypes.DType], ...]:
    return (nw.Int8, nw.Int16, nw.Int32, nw.Int64, nw.Int128, nw.UInt8, nw.UInt16, nw.UInt32, nw.UInt64, nw.UInt128)


def _is(dtype: nw.dtypes.DType, kinds: tuple[type[nw.dtypes.DType], ...]) -> bool:
    return any(dtype == kind for kind in kinds)


def typed_value(column: Column, raw: nw.Expr, dtype: nw.dtypes.DType) -> nw.Expr:
    """The value of ``column`` from ``raw`` values of type ``dtype``; null where the value is not acceptable."""
    integers = _integer_types()
    floats = (nw.Float32, nw.Float64)
    if dtype == nw.Unknown:
        return nw.lit(None, dtype=_target(column))
    if column.type == "boolean":
        return raw if dtype == nw.Boolean else nw.lit(None, dtype=nw.Boolean)
    if column.type == "bigint":
        if _is(dtype, integers):
            # Values beyond 64 bits (read as 128-bit or unsigned) are clipped
            # before the cast only so that the cast cannot fail; they are nulled.
            fits = raw.is_between(_INT64_MIN, _INT64_MAX)
            return nw.when(fits).then(raw.clip(_INT64_MIN, _INT64_MAX)).cast(nw.Int64)
        if dtype == nw.String:
            return nw.when(raw.str.contains(_INTEGER_TEXT)).then(raw).cast(nw.Int64)
        return nw.lit(None, dtype=nw.Int64)
    if column.type == "double":
        if _is(dtype, integers + floats):
            return raw.cast(nw.Float64)
        if dtype == nw.String:
            return nw.when(raw.str.contains(_DECIMAL_TEXT)).then(raw).cast(nw.Float64)
        return nw.lit(None, dtype=nw.Float64)
    if dtype == nw.String:
        return raw
    if _is(dtype, integers + floats + (nw.Boolean,)):
        text = raw.cast(nw.String)
        return text.str.to_lowercase() if dtype == nw.Boolean else text
    return nw.lit(None, dtype=nw.String)


def _target(column: Column) -> nw.dtypes.DType:
    return NARWHALS_TYPES[column.type]


def validate_records(raw: nw.LazyFrame, schema: TableSchema) -> tuple[nw.LazyFrame, FieldMatch]:
    """Typed records with a ``__reason`` column: null for a record that is kept.

    ``raw`` holds the fields as read, and the record's source file and line
    (``__source_file``, ``__line``) where the engine tracks them; the result
    holds those, the declared columns and the reason. Fields are matched to columns without regard to case.
    """
    raw_schema = raw.collect_schema()
    match = match_fields(list(raw_schema), schema)
    located = [name for name in (SOURCE, LINE) if name in raw_schema]
    columns: list[nw.Expr] = []
    missing: list[nw.Expr] = []
    wrong: list[nw.Expr] = []
    ranges: list[nw.Expr] = []
    for column in schema.columns:
        spellings = match.spellings[column.name]
        present_flag = f"__present_{column.name}"
        if not spellings:
            columns += [nw.lit(None, dtype=_target(column)).alias(column.name), nw.lit(False).alias(present_flag)]
        else:
            # Each spelling is typed on its own (one file may hold a number
            # under one spelling and text under another); the first spelling
            # holding a value gives it, acceptable or not.
            typed = [typed_value(column, nw.col(s), raw_schema[s]) for s in spellings]
            value = typed[-1]
            for spelling, typed_spelling in zip(reversed(spellings[:-1]), reversed(typed[:-1])):
                value = nw.when(~nw.col(spelling).is_null()).then(typed_spelling).otherwise(value)
            present = nw.any_horizontal(*[~nw.col(s).is_null() for s in spellings], ignore_nulls=True)
            columns += [value.alias(column.name), present.alias(present_flag)]
        name, present = nw.col(column.name), nw.col(present_flag)
        if column.required:
            blank = (
                (name.str.strip_chars(WHITE_SPACE) == "").fill_null(False) if column.type == "string" else nw.lit(False)
            )
            missing.append(nw.when(~present | blank).then(nw.lit(missing_field(column.name))))
        wrong.append(nw.when(present & name.is_null()).then(nw.lit(wrong_type(column.name))))
        if column.type in ("bigint", "double"):
            outside = ~name.is_finite() if column.type == "double" else nw.lit(False)
            if column.minimum is not None:
                outside = outside | (name < column.minimum)
            if column.maximum is not None:
                outside = outside | (name > column.maximum)
            ranges.append(nw.when(outside.fill_null(False)).then(nw.lit(out_of_range(column.name))))
    reasons = missing + wrong + ranges
    typed = raw.select(*located, *columns)
    reason = nw.coalesce(*reasons) if len(reasons) > 1 else reasons[0]
    typed = typed.with_columns(reason.alias(REASON)).select(*located, *schema.column_names, REASON)
    return typed, match


def kept_records(typed: nw.LazyFrame, schema: TableSchema) -> nw.LazyFrame:
    """The records without a reason, in the declared columns."""
    return typed.filter(nw.col(REASON).is_null()).select(schema.column_names)


def rejected_records(typed: nw.LazyFrame) -> nw.LazyFrame:
    """Source, line and reason of every record with a reason."""
    return typed.filter(~nw.col(REASON).is_null()).select(SOURCE, LINE, REASON)


def unknown_field_counts(raw: nw.LazyFrame, match: FieldMatch) -> dict[str, int]:
    """How many records carry a (non-null) value for each unknown field; a field that is always null is not counted."""
    if not match.unknown:
        return {}
    # Cast before summing: Spark does not sum booleans.
    counts = raw.select([(~nw.col(name).is_null()).cast(nw.Int64).sum().alias(name) for name in match.unknown]).collect()
    return {name: int(counts[name][0]) for name in match.unknown if counts[name][0]}


# -- the reference: every record on its own, with Python's json module ----------
#
# This is the definition of what a landing reader produces; an engine may be
# faster, never different (stedi_assets_tests/engines/test_landing_differential.py
# holds every engine to it, record by record).
#
# A file is decompressed (``.json.gz`` or gzip bytes, all members) up to the
# size bound, a UTF-8 byte order mark at its start is dropped, and then:
# - a file whose first non-blank character is ``[`` is one JSON array of
#   records; a record's line is its 1-based position in the array;
# - any other file is newline-delimited JSON: each line (split at ``\n``, a
#   final ``\r`` belonging to the line ending) holding anything but spaces,
#   tabs and carriage returns is one record, parsed on its own with
#   ``json.loads``; its line is its 1-based physical line.
# A record that is not JSON (``NaN``, ``Infinity`` and lone UTF-16 surrogate
# escapes in a name or text value included) is ``unparseable JSON``; JSON
# that is not an object is ``not a JSON object``.
# Field names match declared columns without regard to letter case (str.lower).
# A name that appears twice in a record with the same spelling keeps its last
# value, as Python's json does. When one record holds several spellings of a
# column, the first of them holding a non-null value gives the value: the
# declared spelling first, then the others in code-point order. The value is
# then typed as the module's docstring says; "blank" means nothing but Unicode
# White_Space characters.

JSON_BLANK = b" \t\r"
"""What a line may hold and still be no record (JSON whitespace; ``\\n`` ends the line)."""

WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
"""The Unicode White_Space characters: a required text made only of these is blank."""

MIB = 2**20


def file_too_large(max_file_mb: int) -> str:
    return f"file larger than {max_file_mb} MiB after decompression (STEDI_MAX_FILE_MB)"


_INTEGER_RE = re.compile(r"-?[0-9]{1,18}")
_DECIMAL_RE = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def is_gzip(uri: str, data: bytes) -> bool:
    return uri.lower().endswith(".gz") or data[:2] == b"\x1f\x8b"


def _inflate(data: bytes, limit: int) -> tuple[bytes | None, str | None]:
    """Every gzip member of ``data``, never holding more than ``limit`` bytes of output.

    Returns (bytes, problem): bytes None when the output passes ``limit``;
    otherwise what could be read, with a problem when it is not the whole file.
    """
    out = bytearray()
    remaining = data
    try:
        while remaining:
            inflater = zlib.decompressobj(wbits=31)
            pending = remaining
            while not inflater.eof:
                # max_length bounds what one call may return (0 would mean no bound).
                piece = inflater.decompress(pending, limit + 1 - len(out))
                out += piece
                if len(out) > limit:
                    return None, None
                pending = inflater.unconsumed_tail
                if not piece and not pending:
                    return bytes(out), "gzip stream ends early (truncated file)"
            remaining = inflater.unused_data.lstrip(b"\x00")
    except zlib.error as error:
        return bytes(out), f"not a valid gzip file ({error})"
    return bytes(out), None


def landing_bytes(uri: str, data: bytes, max_file_mb: int) -> tuple[bytes, list[tuple[int, str, str]]]:
    """A landing file's records as bytes (decompressed, no byte order mark) and its file-level problems.

    A problem is a quarantine record of line 0: (0, reason, detail). A file
    larger than ``max_file_mb`` MiB after decompression yields no bytes and
    one such record; it is found without ever holding more than the bound.
    """
    limit = max_file_mb * MIB
    problems: list[tuple[int, str, str]] = []
    if is_gzip(uri, data):
        inflated, problem = _inflate(data, limit)
        if inflated is None:
            return b"", [(0, file_too_large(max_file_mb), "")]
        data = inflated
        if problem:
            problems.append((0, UNREADABLE_FILE, problem))
    elif len(data) > limit:
        return b"", [(0, file_too_large(max_file_mb), "")]
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    return data, problems


def is_array_file(data: bytes) -> bool:
    return data.lstrip()[:1] == b"["


def raw_text(line: bytes) -> str:
    """A record's text as kept in quarantine: decoded, without its line ending, cut to the limit."""
    return line.rstrip(b"\r").decode("utf-8", errors="replace")[:RAW_TEXT_LIMIT]


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _loads(text: str) -> object:
    """A record's JSON value; ValueError when it is not JSON (NaN and Infinity are not)."""
    return json.loads(text, parse_constant=_no_constants)


def _has_surrogate(record: dict) -> bool:
    return any(
        _SURROGATE_RE.search(key) or (isinstance(value, str) and _SURROGATE_RE.search(value))
        for key, value in record.items()
    )


def reference_value(column: Column, value: object) -> object:
    """A JSON value (not null) as ``column``'s type; None when the column cannot take it."""
    if column.type == "boolean":
        return value if isinstance(value, bool) else None
    if column.type == "bigint":
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value if _INT64_MIN <= value <= _INT64_MAX else None
        if isinstance(value, str) and _INTEGER_RE.fullmatch(value):
            return int(value)
        return None
    if column.type == "double":
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            try:
                return float(value)
            except OverflowError:  # no double holds it: infinite, so out of range
                return math.copysign(math.inf, value)
        if isinstance(value, float):
            return value
        if isinstance(value, str) and _DECIMAL_RE.fullmatch(value):
            return float(value)
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return None


class RecordRules:
    """The validation rules of one schema, applied to one parsed record at a time."""

    def __init__(self, schema: TableSchema):
        self.schema = schema
        self._declared = {column.name.lower(): column for column in schema.columns}

    def spellings(self, record: Mapping[str, object]) -> tuple[dict[str, list[str]], list[str]]:
        """Declared column -> the record's spellings of it (in order of precedence); unknown names."""
        found: dict[str, list[str]] = {}
        unknown: list[str] = []
        for key in record:
            column = self._declared.get(key.lower())
            if column is None:
                unknown.append(key)
            else:
                found.setdefault(column.name, []).append(key)
        for name, keys in found.items():
            keys.sort(key=lambda s, name=name: (s != name, s))
        return found, unknown

    def check(self, record: Mapping[str, object]) -> tuple[tuple, str | None, list[str]]:
        """(typed values in the schema's column order, reason or None, unknown fields with a value)."""
        found, unknown = self.spellings(record)
        values: list[object] = []
        missing: str | None = None
        wrong: str | None = None
        outside: str | None = None
        for column in self.schema.columns:
            raw = next((record[k] for k in found.get(column.name, ()) if record[k] is not None), None)
            present = raw is not None
            value = reference_value(column, raw) if present else None
            values.append(value)
            if column.required and missing is None:
                blank = column.type == "string" and isinstance(value, str) and not value.strip(WHITE_SPACE)
                if not present or blank:
                    missing = missing_field(column.name)
            if present and value is None and wrong is None:
                wrong = wrong_type(column.name)
            if value is not None and column.type in ("bigint", "double") and outside is None:
                beyond = column.type == "double" and not math.isfinite(value)
                if column.minimum is not None and value < column.minimum:
                    beyond = True
                if column.maximum is not None and value > column.maximum:
                    beyond = True
                if beyond:
                    outside = out_of_range(column.name)
        return tuple(values), missing or wrong or outside, [k for k in unknown if record[k] is not None]


@dataclass
class FileRecords:
    """One landing file read by the reference: every record kept or quarantined, once."""

    kept: list[tuple] = field(default_factory=list)
    """(line, typed values in the schema's column order...) of each record kept."""
    quarantined: list[tuple[int, str, str]] = field(default_factory=list)
    """(line, reason, raw text) of each record not kept; line 0 for the file itself."""
    unknown_fields: dict[str, int] = field(default_factory=dict)
    field_kinds: dict[str, dict[str, int]] = field(default_factory=dict)
    """Unknown fields whose name may become a column (``evolution.is_column_name``) -> kind of value -> records."""

    @property
    def records_read(self) -> int:
        return len(self.kept) + len(self.quarantined)

    def add(self, rules: RecordRules, line: int, text: str, value: object) -> None:
        if not isinstance(value, dict):
            self.quarantined.append((line, NOT_AN_OBJECT, text))
            return
        if _has_surrogate(value):
            self.quarantined.append((line, UNPARSEABLE, text))
            return
        values, reason, unknown = rules.check(value)
        for name in unknown:
            self.unknown_fields[name] = self.unknown_fields.get(name, 0) + 1
            if evolution.is_column_name(name):
                kinds = self.field_kinds.setdefault(name, {})
                kind = evolution.kind_of(value[name])
                kinds[kind] = kinds.get(kind, 0) + 1
        if reason is None:
            self.kept.append((line, *values))
        else:
            self.quarantined.append((line, reason, text))


def reference_lines(data: bytes, rules: RecordRules, lines: Iterable[int] | None = None) -> FileRecords:
    """The records of newline-delimited JSON ``data`` (already decompressed), each parsed on its own."""
    result = FileRecords()
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip(JSON_BLANK):
            continue
        text = raw_text(line)
        try:
            value = _loads(line.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            result.quarantined.append((number, UNPARSEABLE, text))
            continue
        result.add(rules, number, text, value)
    return result


def reference_array(data: bytes, rules: RecordRules) -> FileRecords:
    """The records of a file holding one JSON array: each element, in order, until the array breaks.

    A truncation or syntax error ends the walk: the complete elements before
    it are read, and the rest of the file is one unparseable record.
    """
    result = FileRecords()
    text = data.decode("utf-8", errors="replace")
    decoder = json.JSONDecoder(parse_constant=_no_constants)
    blank = " \t\r\n"
    position = text.index("[") + 1
    number = 0
    while True:
        while position < len(text) and text[position] in blank:
            position += 1
        if position < len(text) and text[position] == "]" and number == 0:
            break
        number += 1
        try:
            value, end = decoder.raw_decode(text, position)
        except (ValueError, RecursionError):
            result.quarantined.append((number, UNPARSEABLE, text[position:position + RAW_TEXT_LIMIT]))
            break
        result.add(rules, number, text[position:end][:RAW_TEXT_LIMIT], value)
        position = end
        while position < len(text) and text[position] in blank:
            position += 1
        if position < len(text) and text[position] == ",":
            position += 1
            continue
        if position < len(text) and text[position] == "]" and not text[position + 1:].strip(blank):
            break
        # Anything else after an element (a missing comma, text after the
        # closing bracket, the end of a truncated file) breaks the array here.
        if text[position:].strip(blank):
            number += 1
            result.quarantined.append((number, UNPARSEABLE, text[position:position + RAW_TEXT_LIMIT]))
        break
    return result


def reference_file(uri: str, data: bytes, rules: RecordRules, max_file_mb: int) -> FileRecords:
    """One landing file as delivered (maybe compressed), read by the reference."""
    data, problems = landing_bytes(uri, data, max_file_mb)
    if not data.strip(b" \t\r\n"):
        result = FileRecords()
    elif is_array_file(data):
        result = reference_array(data, rules)
    else:
        result = reference_lines(data, rules)
    result.quarantined[:0] = problems
    return result


def reference_read(
    schema: TableSchema, files: Iterable[tuple[str, bytes]], max_file_mb: int = DEFAULT_MAX_FILE_MB
) -> tuple[list[tuple], list[tuple[str, int, str, str]], dict[str, int]]:
    """What a feed's files hold by the reference: records (source_file, then the declared columns),
    quarantine rows (source_file, line, reason, raw_text) and unknown-field counts."""
    rules = RecordRules(schema)
    rows: list[tuple] = []
    quarantine: list[tuple[str, int, str, str]] = []
    unknown: dict[str, int] = {}
    for uri, data in files:
        read = reference_file(uri, data, rules, max_file_mb)
        rows += [(uri, *record[1:]) for record in read.kept]
        quarantine += [(uri, *q) for q in read.quarantined]
        for name, count in read.unknown_fields.items():
            unknown[name] = unknown.get(name, 0) + count
    return rows, quarantine, unknown
