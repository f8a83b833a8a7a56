"""Validation of landing records, written once as narwhals expressions.

An engine parses a feed's files into a *raw frame*: one column per field
name found in the files (any letter case, whatever type the JSON reader
inferred), plus the record's source file and line. The functions here turn
that into typed records and a reason for every record that cannot be kept,
so the Polars and the Spark engine quarantine exactly the same records.

What a field accepts (the declared type comes from schemas.py):

- bigint: a JSON integer, or a string of 1 to 18 decimal digits with an
  optional minus sign (``"123"`` -> 123). Not a fraction (``1.5``,
  ``"1.5"``), not a boolean, object or array.
- double: a JSON number, or a string holding a decimal number
  (``"1.5"``, ``"-2"``, ``"1e3"``). The value must be finite.
- string: a JSON string; a number or boolean is kept as its JSON text.
  Not an object or array.

A record is quarantined for the first of these that applies, in the order
of the schema's columns: a required field is null, absent or blank
(``missing required field <name>``); a value has none of the accepted forms
(``wrong type for <name>``); a value is outside the column's declared range
(``value out of range for <name>``). Parsing reasons (``unparseable JSON``,
``not a JSON object``, ``unreadable file``) are decided by the engine while
reading the files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import narwhals as nw

from stedi_assets.schemas import NARWHALS_TYPES, Column, TableSchema

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
# How a JSON reader renders an object or array read into a string column.
_NESTED_TEXT = r"^\s*(\{.*\}|\[.*\])\s*$"
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
        return nw.when(~raw.str.contains(_NESTED_TEXT)).then(raw)
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
            # under one spelling and text under another); the first value wins.
            typed = [typed_value(column, nw.col(s), raw_schema[s]) for s in spellings]
            value = nw.coalesce(*typed) if len(typed) > 1 else typed[0]
            present = nw.any_horizontal(*[~nw.col(s).is_null() for s in spellings], ignore_nulls=True)
            columns += [value.alias(column.name), present.alias(present_flag)]
        name, present = nw.col(column.name), nw.col(present_flag)
        if column.required:
            blank = (name.str.strip_chars() == "").fill_null(False) if column.type == "string" else nw.lit(False)
            missing.append(nw.when(~present | blank).then(nw.lit(missing_field(column.name))))
        wrong.append(nw.when(present & name.is_null()).then(nw.lit(wrong_type(column.name))))
        if column.type != "string":
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
    """How many records carry a (non-null) value for each unknown field."""
    if not match.unknown:
        return {}
    # Cast before summing: Spark does not sum booleans.
    counts = raw.select([(~nw.col(name).is_null()).cast(nw.Int64).sum().alias(name) for name in match.unknown]).collect()
    return {name: int(counts[name][0]) for name in match.unknown}
