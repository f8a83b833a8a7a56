"""Each engine's landing reader against the reference: a property-based differential test.

The reference (``validation.reference_read``) parses every line on its own
with Python's json module and applies the rules record by record. Generated
deliveries (whitespace around ``:`` and ``,``, field-name case, duplicate
names, escapes and unicode, numbers as text, big and negative numbers,
fractions, nulls, missing and extra fields, broken lines, CRLF, BOM, gzip,
JSON-array files, long files) must give, record by record, the same landing
and quarantine tables on the Polars engine (its fast path included) and on the
Spark engine. Each Polars read also says which files its fast path read
(``FeedRead.read_by``): the fast path must have read every file of ordinary
records, and none holding a line it cannot be certain of (a broken line, an
array or object value, a repeated name, a number in a text column, text in a
number column, a lone surrogate) nor a JSON-array file, so the comparison is
never the reference against itself. Does not cover the zone rules after
landing (test_spark_parity).
"""

from __future__ import annotations

import codecs
import gzip
import json
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stedi_assets.lakehouse.engines.polars_engine import PolarsEngine
from stedi_assets.lakehouse.engines.polars_landing import read_feed
from stedi_assets.domain.schemas import FEED_SCHEMAS
from stedi_assets.lakehouse.storage import LocalStore
from stedi_assets.domain.validation import reference_read

T0 = 1_655_564_444_103

# Deterministic, and enough examples to find a value changed by one unusual
# line in a long file (a field spelled in capitals after a space before a colon).
settings.register_profile(
    "landing-differential", max_examples=300, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Spark reads several generated files per example; fewer examples, each a whole delivery.
settings.register_profile(
    "landing-differential-spark", max_examples=10, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Number:
    """A JSON number written as this exact text."""

    text: str


def ordinary(feed: str, i: int) -> dict:
    """A valid record of the feed, as the devices write it."""
    if feed == "accelerometer":
        return {"user": f"u{i % 3}@test.com", "timestamp": T0 + i, "x": i / 8, "y": -0.5, "z": 1.0}
    if feed == "step_trainer":
        return {"sensorReadingTime": T0 + i, "serialNumber": f"s-{i % 4}", "distanceFromObject": 200 + i}
    return {
        "customerName": "Ann Lee", "email": f"a{i}@test.com", "phone": "8015551212", "birthDay": "1990-01-01",
        "serialNumber": f"s-{i}", "registrationDate": T0, "lastUpdateDate": T0 + i,
        "shareWithResearchAsOfDate": T0 if i % 2 else None, "shareWithPublicAsOfDate": None,
        "shareWithFriendsAsOfDate": None,
    }


_NUMBER_TEXT = st.from_regex(r"-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,3})?([eE][+-]?[0-9]{1,3})?", fullmatch=True)

VALUES = st.one_of(
    st.integers(min_value=T0 - 5, max_value=T0 + 5),
    st.integers(min_value=-3, max_value=500),
    st.sampled_from([
        T0 + 0.5, 1655564600000.5, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**19, 10**18, 1e3, 0.0, -0.0,
        1.5, 9.9, -0.5, 1e300,
    ]),
    st.floats(allow_nan=False, allow_infinity=False),
    _NUMBER_TEXT.map(Number),
    st.sampled_from([
        "123", str(T0), "1.5", "-0", " 7", "1e3", "-2", "1e400", "00012", "1.7976931348623159e308",
        "", "  ", "\u3000", "\x1c", "[1]", "{}", '{"a": 1}',
        "true", "Ann.Lee@test.com", "x\ny", "\ud800", "\U0001f600", 'quote " and \\ backslash', "a\": 1",
    ]),
    st.text(max_size=6),
    st.booleans(),
    st.none(),
    st.lists(st.integers(min_value=-5, max_value=5), max_size=2),
    st.dictionaries(st.sampled_from(["a", "x"]), st.integers(min_value=0, max_value=3), max_size=1),
)


def names_of(feed: str) -> list[str]:
    return [c.name for c in FEED_SCHEMAS[feed].columns]


@st.composite
def field_name(draw, feed: str) -> str:
    name = draw(st.sampled_from(names_of(feed) + ["extra", "note", "__line", "X", "é"]))
    return draw(st.sampled_from([name, name, name.upper(), name.lower(), name.swapcase()]))


@st.composite
def special_record(draw, feed: str) -> list[tuple[str, object]]:
    """Members of an unusual record: some fields of a valid one, changed, added, respelled or repeated."""
    base = ordinary(feed, draw(st.integers(min_value=0, max_value=50)))
    members = [(name, value) for name, value in base.items() if draw(st.integers(0, 5))]
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        change = draw(st.sampled_from(["value", "rename", "add", "repeat"]))
        if change == "value" and members:
            i = draw(st.integers(0, len(members) - 1))
            members[i] = (members[i][0], draw(VALUES))
        elif change == "rename" and members:
            i = draw(st.integers(0, len(members) - 1))
            name = members[i][0]
            members[i] = (draw(st.sampled_from([name.upper(), name.lower(), name.swapcase()])), members[i][1])
        elif change == "repeat" and members:
            name = draw(st.sampled_from([m[0] for m in members]))
            members.insert(draw(st.integers(0, len(members))), (name, draw(VALUES)))
        else:
            members.insert(draw(st.integers(0, len(members))), (draw(field_name(feed)), draw(VALUES)))
    return members


def render_value(value: object, ascii_only: bool) -> str:
    if isinstance(value, Number):
        return value.text
    if isinstance(value, str) and any("\ud800" <= c <= "\udfff" for c in value):
        ascii_only = True  # a lone surrogate can only be written as an escape
    if isinstance(value, dict):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=ascii_only)


@st.composite
def render_record(draw, members: list[tuple[str, object]]) -> str:
    spacing = st.sampled_from(["", "", " ", "\t", "  "])
    ascii_only = draw(st.booleans())
    parts = [
        f"{json.dumps(name, ensure_ascii=ascii_only)}{draw(spacing)}:{draw(spacing)}{render_value(value, ascii_only)}"
        for name, value in members
    ]
    separator = f"{draw(spacing)},{draw(spacing)}"
    return f"{draw(spacing)}{{{draw(spacing)}{separator.join(parts)}{draw(spacing)}}}{draw(spacing)}"


# -- which files the fast path may read ---------------------------------------------
#
# Each family below is a reason the fast path cannot be certain of the
# reference's answer for a file; a generated file is labelled with the
# families it holds from what was generated, without the reader's patterns.

BROKEN_LINE = "a broken line"
NESTED_VALUE = "an array or object value"
REPEATED_NAME = "a repeated name"
NOT_TEXT_IN_TEXT_COLUMN = "a number or boolean in a text column"
NOT_NUMBER_IN_NUMBER_COLUMN = "a value of another kind in a number column"
LONE_SURROGATE = "a lone surrogate"
ARRAY_FILE = "a JSON-array file"
NOT_CERTAIN = frozenset({
    BROKEN_LINE, NESTED_VALUE, REPEATED_NAME, NOT_TEXT_IN_TEXT_COLUMN, NOT_NUMBER_IN_NUMBER_COLUMN,
    LONE_SURROGATE, ARRAY_FILE,
})
INT64 = range(-(2**63), 2**63)


def _column_type(feed: str, name: str) -> str | None:
    """The declared type of the column ``name`` fills (names match without case), None if undeclared."""
    return {c.name.lower(): c.type for c in FEED_SCHEMAS[feed].columns}.get(name.lower())


def _holds_as_it_is(column_type: str, value: object) -> bool:
    """Whether a number column reads ``value`` as a JSON number of its own type (or null)."""
    if value is None:
        return True
    if isinstance(value, bool) or isinstance(value, str | list | dict):
        return False
    if column_type == "double":
        return True
    if isinstance(value, Number):
        return not any(c in value.text for c in ".eE") and int(value.text) in INT64
    return isinstance(value, int) and value in INT64


def record_families(feed: str, members: list[tuple[str, object]]) -> set[str]:
    """The families of ``NOT_CERTAIN`` a record of these members belongs to."""
    families = set()
    names = [name for name, _ in members]
    if len(set(names)) != len(names):
        families.add(REPEATED_NAME)
    for name, value in members:
        column_type = _column_type(feed, name)
        if isinstance(value, list | dict):
            families.add(NESTED_VALUE)
        elif isinstance(value, str) and any("\ud800" <= c <= "\udfff" for c in value):
            families.add(LONE_SURROGATE)
        if column_type == "string" and isinstance(value, int | float | Number):  # bool is an int
            families.add(NOT_TEXT_IN_TEXT_COLUMN)
        if column_type in ("bigint", "double") and not _holds_as_it_is(column_type, value):
            families.add(NOT_NUMBER_IN_NUMBER_COLUMN)
    return families


def line_families(line: str) -> set[str]:
    """``{BROKEN_LINE}`` for a line that holds more than whitespace and is not one JSON object."""
    if not line.strip():
        return set()
    try:
        return set() if isinstance(json.loads(line), dict) else {BROKEN_LINE}
    except ValueError:
        return {BROKEN_LINE}


@dataclass(frozen=True)
class LandingFile:
    """A generated landing file and what it holds."""

    data: bytes
    families: frozenset[str]
    """The families of ``NOT_CERTAIN`` among its lines, or ``{ARRAY_FILE}``."""
    ordinary_only: bool
    """Newline-delimited, and every line an ordinary record (at least one)."""


@st.composite
def broken_line(draw, feed: str) -> str:
    kind = draw(st.sampled_from(
        ["truncated", "garbage", "array", "number", "blank", "empty object", "two objects", "lone carriage return"]
    ))
    text = json.dumps(ordinary(feed, 1))
    if kind == "truncated":
        return text[: draw(st.integers(min_value=1, max_value=len(text) - 1))]
    if kind == "garbage":
        return draw(st.text(max_size=10).filter(lambda s: "\n" not in s))
    if kind == "array":
        return "[1, 2]"
    if kind == "number":
        return "42"
    if kind == "blank":
        return draw(st.sampled_from(["", " ", "\t", "\r", "\x0c"]))
    if kind == "empty object":
        return "{}"
    if kind == "lone carriage return":
        return text + "\r" + text
    return text + " " + text


@st.composite
def landing_file(draw, feed: str) -> LandingFile:
    ordinary_lines = [json.dumps(ordinary(feed, i)) for i in range(draw(st.sampled_from([0, 2, 6, 120])))]
    specials = []
    families: set[str] = set()
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        if draw(st.integers(0, 3)):
            members = draw(special_record(feed))
            families |= record_families(feed, members)
            specials.append(draw(render_record(members)))
        else:
            line = draw(broken_line(feed))
            # The file is split into lines at line feeds alone: a line with a lone carriage return is one line.
            families |= line_families(line)
            specials.append(line)
    lines = list(ordinary_lines)
    for special in specials:
        lines.insert(draw(st.integers(min_value=0, max_value=len(lines))), special)
    array_file = draw(st.integers(0, 7)) == 0
    if array_file:
        # A JSON array of the lines that start like objects (a cut one breaks the array there).
        records = [line for line in lines if line.strip().startswith("{")]
        text = "[" + draw(st.sampled_from([",", ", ", ",\n"])).join(records) + "]"
        families = {ARRAY_FILE}  # what its elements hold is beside the point: the reference reads every array
    else:
        end = draw(st.sampled_from(["\n", "\r\n"]))
        text = end.join(lines) + draw(st.sampled_from(["", end]))
    data = text.encode("utf-8", errors="surrogatepass")
    if draw(st.booleans()):
        data = codecs.BOM_UTF8 + data
    return LandingFile(data, frozenset(families), ordinary_only=bool(ordinary_lines) and not specials and not array_file)


@dataclass(frozen=True)
class Delivery:
    """Generated files of one feed: (name, bytes as delivered) and each file's ``LandingFile``."""

    feed: str
    files: list[tuple[str, bytes]]
    generated: dict[str, LandingFile]


@st.composite
def delivery(draw, max_files: int = 2) -> Delivery:
    feed = draw(st.sampled_from(["accelerometer", "accelerometer", "step_trainer", "customer"]))
    files = []
    generated = {}
    for number in range(draw(st.integers(min_value=1, max_value=max_files))):
        landing = draw(landing_file(feed))
        name = f"part-{number}.json.gz" if draw(st.integers(0, 4)) == 0 else f"part-{number}.json"
        files.append((name, gzip.compress(landing.data) if name.endswith(".gz") else landing.data))
        generated[name] = landing
    return Delivery(feed, files, generated)


def assert_same_as_reference(
    feed: str, files: list[tuple[str, bytes]], records, quarantine, read, unknown, schema=None,
) -> None:
    expected_rows, expected_quarantine, expected_unknown = reference_read(schema or FEED_SCHEMAS[feed], files)
    assert Counter(quarantine) == Counter(expected_quarantine)
    assert Counter(records) == Counter(expected_rows)
    assert read == len(expected_rows) + len(expected_quarantine)
    assert unknown == dict(sorted(expected_unknown.items()))


def assert_read_by_the_fast_path_where_certain(generated: Delivery, read_by: dict[str, str]) -> None:
    """The fast path read every file of ordinary records, and no file holding a line it cannot be certain of."""
    assert read_by.keys() == generated.generated.keys()
    for name, landing in generated.generated.items():
        if landing.ordinary_only:
            assert read_by[name] == "fast", f"{name}: ordinary records, yet not read by the fast path"
        if landing.families:
            assert read_by[name] == "reference", f"{name} holds {sorted(landing.families)}, yet was read fast"


def test_polars_reader_equals_the_reference():
    seen: Counter[str] = Counter()

    @settings(settings.get_profile("landing-differential"))
    @given(delivery())
    def polars_reader_equals_the_reference(generated: Delivery):
        result = read_feed(FEED_SCHEMAS[generated.feed], generated.files)

        assert_same_as_reference(
            generated.feed, generated.files, result.records.rows(), result.quarantine.rows(), result.records_read,
            result.unknown_fields,
        )
        assert_read_by_the_fast_path_where_certain(generated, result.read_by)
        for name, landing in generated.generated.items():
            seen.update(landing.families)
            seen["ordinary records only"] += landing.ordinary_only
            seen["read fast"] += result.read_by[name] == "fast"

    polars_reader_equals_the_reference()

    # Neither assertion above was vacuous: the deliveries held files of
    # ordinary records and every family (but lone surrogates, too rare here:
    # test_one_line_of_another_shape_in_a_file_of_one_shape holds them), and
    # the fast path read many files (139 in these 300 deliveries).
    assert set(seen) >= NOT_CERTAIN - {LONE_SURROGATE}, f"never generated: {sorted(NOT_CERTAIN - set(seen))}"
    assert seen["ordinary records only"] > 0, seen
    assert seen["read fast"] >= 100, seen


def test_an_unknown_field_that_is_always_null_is_not_counted():
    # As in the reference, which counts the records carrying a value for a field.
    files = [("a.json", b'{"extra":null,"serialNumber":"s-0","distanceFromObject":200,"sensorReadingTime":1}\n')]

    result = read_feed(FEED_SCHEMAS["step_trainer"], files)

    assert result.unknown_fields == {}
    assert_same_as_reference(
        "step_trainer", files, result.records.rows(), result.quarantine.rows(), result.records_read,
        result.unknown_fields,
    )


def test_unusual_spacing_after_the_first_lines_changes_no_value():
    # A capitalised name beside a space before a colon, after 120 ordinary
    # lines: its value is read, not nulled; and a valid record spelling
    # timeStamp with such a space is kept, not quarantined as missing its time.
    lines = [json.dumps(ordinary("accelerometer", i)) for i in range(120)]
    capital = '{"user":"u9@test.com","timestamp":%d,"X":9.9,"y" :-0.5,"z":1.0}' % (T0 + 999)
    respelled = '{"user":"u9@test.com","timeStamp":%d,"x" :1.0,"y":-0.5,"z":1.0}' % (T0 + 998)
    files = [
        ("a.json", ("\n".join(lines + [capital]) + "\n").encode()),
        ("b.json", ("\n".join(lines + [respelled]) + "\n").encode()),
    ]

    result = read_feed(FEED_SCHEMAS["accelerometer"], files)

    by_time = {r[1]: r for r in result.records.drop("source_file").rows()}
    assert by_time[T0 + 999][2] == 9.9
    assert by_time[T0 + 998][2] == 1.0
    assert result.quarantine.height == 0
    assert_same_as_reference(
        "accelerometer", files, result.records.rows(), result.quarantine.rows(), result.records_read,
        result.unknown_fields,
    )


def _same_as_reference(feed: str, files: list[tuple[str, bytes]], schema=None):
    result = read_feed(schema or FEED_SCHEMAS[feed], files)
    assert_same_as_reference(
        feed, files, result.records.rows(), result.quarantine.rows(), result.records_read, result.unknown_fields,
        schema,
    )
    return result


_ODD_LINES = {
    # Each differs from the file's shape in one way the shape's certificate must not let through.
    "a repeated name": '{"user":"u9@test.com","timestamp":%d,"x":1.0,"y":-0.5,"z":1.0,"x":2.0}',
    "a number as the user": '{"user":1e20,"timestamp":%d,"x":1.0,"y":-0.5,"z":1.0}',
    "a fraction as the user": '{"user":1.0,"timestamp":%d,"x":1.0,"y":-0.5,"z":1.0}',
    "a boolean as the user": '{"user":true,"timestamp":%d,"x":1.0,"y":-0.5,"z":1.0}',
    "the names in another order": '{"timestamp":%d,"user":"u9@test.com","z":1.0,"y":-0.5,"x":3.0}',
    "an extra field": '{"user":"u9@test.com","timestamp":%d,"x":1.0,"y":-0.5,"z":1.0,"note":5}',
    "an extra field not named like a column": '{"user":"u9@test.com","timestamp":%d,"x":1.0,"y":-0.5,"z":1.0,"no te":5}',
    "a field missing": '{"user":"u9@test.com","timestamp":%d,"x":1.0,"y":-0.5}',
    "a respelled name": '{"user":"u9@test.com","timeStamp":%d,"x":1.0,"y":-0.5,"z":1.0}',
    "an unparseable line": '{"user":"u9@test.com","timestamp":%d,"x":1.0,',
    "a blank line": "   \r",
    "a lone surrogate": '{"user":"\\ud800","timestamp":%d,"x":1.0,"y":-0.5,"z":1.0}',
}
_NOT_CERTAIN_LINES = {
    "a repeated name", "a number as the user", "a fraction as the user", "a boolean as the user",
    "an unparseable line", "a lone surrogate",
    # A field that may become a column: the reference counts its values' kinds, record by record.
    "an extra field",
}


@pytest.mark.parametrize("odd", sorted(_ODD_LINES))
@pytest.mark.parametrize("where", [0, 60, 120])
def test_one_line_of_another_shape_in_a_file_of_one_shape(odd: str, where: int):
    # Most lines share the first line's shape; the one that does not is read
    # as the reference reads it, wherever it is (the first line gives the shape).
    lines = [json.dumps(ordinary("accelerometer", i), separators=(",", ":")) for i in range(120)]
    template = _ODD_LINES[odd]
    lines.insert(where, template % (T0 + 999) if "%d" in template else template)

    result = _same_as_reference("accelerometer", [("a.json", ("\n".join(lines) + "\n").encode())])

    # A line that only changes the shape is certified by the general checks; the others send the file to the reference.
    assert result.read_by == {"a.json": "reference" if odd in _NOT_CERTAIN_LINES else "fast"}


@pytest.mark.parametrize("end", ["\n", "\r\n"])
@pytest.mark.parametrize("final", [True, False])
def test_a_file_of_one_shape_keeps_every_line_number(end: str, final: bool):
    lines = [json.dumps(ordinary("step_trainer", i)) for i in range(50)]
    data = (end.join(lines) + (end if final else "")).encode()

    result = _same_as_reference("step_trainer", [("a.json", data)])

    assert result.records.height == 50
    assert result.read_by == {"a.json": "fast"}


def test_names_that_are_pattern_syntax_match_only_themselves():
    # The shape of the first line is a regular expression built from its
    # names: "a.b" must not accept "aXb", nor "(c)" accept "c".
    first = {"user": "u@test.com", "timestamp": T0, "x": 1.0, "y": 2.0, "z": 3.0, "a.b": 1, "(c)": 2, "[d] é": 3}
    other = {"user": "v@test.com", "timestamp": T0 + 1, "x": 1.0, "y": 2.0, "z": 3.0, "aXb": 1, "c": 2, "d é": 3}
    data = "\n".join(json.dumps(record, ensure_ascii=False) for record in [first, other, first]).encode()

    result = _same_as_reference("accelerometer", [("a.json", data)])

    assert result.unknown_fields == {"(c)": 2, "[d] é": 2, "a.b": 2, "aXb": 1, "c": 1, "d é": 1}


def test_a_record_of_thousands_of_names_is_read():
    # Its shape's pattern is beyond the size of a regular expression; the
    # file is certified by the general checks instead.
    # (Names that may not be columns: a field that may become one sends the file to the reference.)
    record = {**ordinary("step_trainer", 1), **{f"f-{i}": i for i in range(3000)}}
    data = ("\n".join([json.dumps(record)] * 3) + "\n").encode()

    result = _same_as_reference("step_trainer", [("a.json", data)])

    assert result.records.height == 3
    assert result.unknown_fields["f-2999"] == 3
    assert result.read_by == {"a.json": "fast"}


def _as_rows(frame) -> list[tuple]:
    native = frame.to_native()
    if isinstance(native, pl.LazyFrame):
        return native.collect().rows()
    return [tuple(row) for row in native.collect()]


@pytest.mark.spark
@settings(settings.get_profile("landing-differential-spark"))
@given(generated=delivery(max_files=6))
def test_spark_reader_equals_the_reference(spark, generated):
    from stedi_assets.lakehouse.engines.spark_engine import SparkEngine

    feed, files = generated.feed, generated.files
    with tempfile.TemporaryDirectory() as folder:
        uris = []
        for name, data in files:
            (Path(folder) / name).write_bytes(data)
            uris.append(str(Path(folder) / name))
        on_spark = SparkEngine().read_landing(FEED_SCHEMAS[feed], uris, LocalStore())
        on_polars = PolarsEngine().read_landing(FEED_SCHEMAS[feed], uris, LocalStore())
        on_disk = list(zip(uris, (data for _, data in files)))
        for read in (on_spark, on_polars):
            quarantine = _as_rows(read.quarantine)
            assert_same_as_reference(
                feed, on_disk, _as_rows(read.records), quarantine, read.records_read, dict(read.unknown_fields),
            )
            assert read.quarantined == len(quarantine)


def _evolved_accelerometer():
    """The accelerometer feed's schema with columns added from delivered records, one of each type."""
    from stedi_assets.domain.schemas import Column

    return FEED_SCHEMAS["accelerometer"].with_columns([
        Column("gyroX", "bigint", "added"), Column("gain", "double", "added"),
        Column("label", "string", "added"), Column("calibrated", "boolean", "added"),
    ])


def test_added_columns_are_read_by_the_fast_path_as_declared_ones():
    # bigint, double and string columns added to a feed are typed like declared ones, on whole columns.
    lines = [
        json.dumps({**ordinary("accelerometer", i), "GYROX": i, "gain": i / 2, "label": f"l{i}"}, separators=(",", ":"))
        for i in range(60)
    ]
    lines[7] = lines[7].replace('"GYROX":7', '"GYROX":7.5')  # a fraction in a bigint column: wrong type
    lines[9] = lines[9].replace('"label":"l9"', '"label":9')  # a number in a text column: another shape

    result = _same_as_reference("accelerometer", [("a.json", ("\n".join(lines) + "\n").encode())], _evolved_accelerometer())

    assert ("a.json", 8, "wrong type for gyroX") in [row[:3] for row in result.quarantine.rows()]
    assert result.records.height == 59


@pytest.mark.parametrize(
    "value", ["true", "false", "1", "\"true\"", "null", "[true]"],
)
def test_a_boolean_column_is_read_by_the_reference(value: str):
    # Only JSON true and false fit a boolean column; Polars' reader is not held to that, so the reference reads it.
    lines = [json.dumps({**ordinary("accelerometer", i), "calibrated": True}) for i in range(5)]
    lines.append(json.dumps(ordinary("accelerometer", 9))[:-1] + f', "calibrated": {value}}}')

    result = _same_as_reference("accelerometer", [("a.json", ("\n".join(lines) + "\n").encode())], _evolved_accelerometer())

    assert result.read_by == {"a.json": "reference"}
    wrong = value not in ("true", "false", "null")
    assert (result.quarantine.height, result.records.height) == ((1, 5) if wrong else (0, 6))
