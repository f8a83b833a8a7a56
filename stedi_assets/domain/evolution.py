"""Schema evolution of the landing tables: which delivered fields become columns, and of which type.

A field that no column of its feed declares (matched without regard to
letter case, as every field is) becomes a nullable column of the feed's
landing table when its name is a plain identifier that does not look like
personal data (``is_column_name``) and its values give it a type
(``column_type``). Any other field stays out and is only counted as unknown.

A column, once added, keeps its type: Iceberg cannot change a bigint column
into a double or a string one, so a later value the column cannot take is
quarantined (``wrong type for <name>``), as for a declared column.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from stedi_assets.domain.schemas import DELIVERED_FROM, Column, ColumnType, TableSchema

ADDED_DESCRIPTION = "Added from the delivered records: a field no column declares."

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LONG_DIGITS = re.compile(r"[0-9]{7,}")
"""Seven digits in a row: a phone number, an account or an id, not a name."""
MAX_NAME_LENGTH = 64

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def is_column_name(name: str) -> bool:
    """Whether a delivered field's name may become a column.

    A plain identifier (``^[A-Za-z_][A-Za-z0-9_]*$``, so never an email
    address or a phone number written with spaces or signs) of at most 64
    characters, holding no run of seven or more digits (a phone number, an
    account or id number glued to a word), not a name the pipeline uses
    itself (``source_file``, anything starting with two underscores).
    """
    return (
        bool(_IDENTIFIER.match(name))
        and len(name) <= MAX_NAME_LENGTH
        and not _LONG_DIGITS.search(name)
        and not name.startswith("__")
        and name.lower() != DELIVERED_FROM
    )


def kind_of(value: object) -> str | None:
    """The kind of a (non-null) JSON value: boolean, bigint, double, string; ``object`` for an object or array."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint" if _INT64_MIN <= value <= _INT64_MAX else "double"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if value is None:
        return None
    return "object"


# A tie between kinds goes to the first of this order: numbers, then booleans, then text.
_PREFERENCE = ("number", "boolean", "string")


def column_type(kinds: Mapping[str, int], widen_to_string: bool = False) -> ColumnType | None:
    """The type of a new column from how many of its values were of each kind; None when none fits.

    One kind gives its type; bigint widens to double when fractions appear.
    Kinds that disagree otherwise (numbers and text, booleans and numbers...)
    give string only with ``widen_to_string``; without it the column takes the
    kind most of the values have (numbers, then booleans, then text on a tie)
    and the values it cannot take are quarantined. Objects and arrays fit no column
    and count for none (such a value is quarantined).
    """
    counts = {kind: count for kind, count in kinds.items() if count}
    numbers = counts.get("bigint", 0) + counts.get("double", 0)
    number_type: ColumnType = "double" if counts.get("double") else "bigint"
    groups = {"number": numbers, "boolean": counts.get("boolean", 0), "string": counts.get("string", 0)}
    present = [group for group in _PREFERENCE if groups[group]]
    if not present:
        return None
    if len(present) > 1 and widen_to_string:
        return "string"
    best = max(present, key=lambda group: (groups[group], -_PREFERENCE.index(group)))
    return number_type if best == "number" else best  # type: ignore[return-value]


def new_columns(
    field_kinds: Mapping[str, Mapping[str, int]], schema: TableSchema, widen_to_string: bool = False
) -> tuple[Column, ...]:
    """The columns to add to ``schema`` for the fields seen with their value kinds (``field_kinds``).

    Spellings of one name in different letter cases are one column, named by
    the first spelling in code-point order; a field the schema already has
    (in any case), a name that is not a column name, or one whose values give
    no type adds nothing. Columns come in order of their names (lower-cased).
    """
    present = {column.name.lower() for column in schema.columns}
    by_lower: dict[str, dict[str, dict[str, int]]] = {}
    for name, kinds in field_kinds.items():
        if name.lower() in present or not is_column_name(name):
            continue
        by_lower.setdefault(name.lower(), {})[name] = dict(kinds)
    added = []
    for lower in sorted(by_lower):
        spellings = by_lower[lower]
        merged: dict[str, int] = {}
        for kinds in spellings.values():
            for kind, count in kinds.items():
                merged[kind] = merged.get(kind, 0) + count
        found = column_type(merged, widen_to_string)
        if found is not None:
            added.append(Column(sorted(spellings)[0], found, ADDED_DESCRIPTION))
    return tuple(added)


def merge_kinds(total: dict[str, dict[str, int]], more: Mapping[str, Mapping[str, int]]) -> None:
    """Add the value-kind counts ``more`` to ``total``."""
    for name, kinds in more.items():
        into = total.setdefault(name, {})
        for kind, count in kinds.items():
            into[kind] = into.get(kind, 0) + count


def describe(columns: Iterable[Column]) -> str:
    """``name type`` of each column, comma-separated: how a snapshot and a check name added columns."""
    return ", ".join(f"{column.name} {column.type}" for column in columns)

