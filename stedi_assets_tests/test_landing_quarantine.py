"""Reading landing files as delivered: a catalogue of malformed files, and random mutations.

Covers the Polars engine's landing reader and the engine-neutral validation
rules: which records are kept, which are quarantined with which reason at
which file and line, and that every record read is accounted for. Does not
run Dagster (test_quarantine_assets.py does).
"""

from __future__ import annotations

import codecs
import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import narwhals as nw
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stedi_assets.domain import rules
from stedi_assets.lakehouse.engines.polars_landing import read_feed
from stedi_assets.domain.profiles import STEDI_REFERENCE
from stedi_assets.domain.schemas import EPOCH_MS_MAX, FEED_SCHEMAS, RAW_TEXT_LIMIT
from stedi_assets_tests.conftest import materialize_all, published_rows

REPOSITORY = Path(__file__).resolve().parents[1]
T0 = 1_655_564_444_103
SERIAL = "5e0d1a2b-0000-4000-8000-00000000beef"  # made up: no device of the real data


def step(time: int = T0, serial: str = SERIAL, distance: object = 218, **extra: object) -> dict:
    return {"sensorReadingTime": time, "serialNumber": serial, "distanceFromObject": distance, **extra}


def reading(time: int = T0, user: str = "Ann.Lee@test.com", x: object = 1.0, **extra: object) -> dict:
    return {"user": user, "timestamp": time, "x": x, "y": -1.0, "z": 0.0, **extra}


def ndjson(*records: dict | str, end: str = "\n") -> bytes:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    return (end.join(lines) + end).encode()


def read(feed: str, files: dict[str, bytes]):
    return read_feed(FEED_SCHEMAS[feed], sorted(files.items()))


def kept(result) -> list[tuple]:
    """The kept records' values, without the file each came from."""
    return sorted(result.records.drop("source_file").rows())


def quarantined(result) -> list[tuple[str, int, str]]:
    return [(f, line, reason) for f, line, reason, _ in result.quarantine.rows()]


def distinct(result) -> int:
    return rules.landing_records(nw.from_native(result.records.lazy())).collect().shape[0]


def assert_reconciled(result) -> None:
    duplicates = result.records.height - distinct(result)
    assert result.records_read == distinct(result) + result.quarantine.height + duplicates


def row(time: int = T0, serial: str = SERIAL, distance: int | None = 218) -> tuple:
    return (time, serial, distance)


BAD_TRUNCATED = '{"sensorReadingTime": 1655564444103, "serialNum'

# (case id, feed, files, rows kept (sorted), quarantined (file, line, reason), records read)
CATALOGUE = [
    # A line that is not JSON at all, between good ones.
    ("unparseable line", "step_trainer",
     {"a.json": ndjson(step(T0), "this is not json", step(T0 + 1))},
     [row(T0), row(T0 + 1)], [("a.json", 2, "unparseable JSON")], 3),
    # The device lost power while writing: the last line is cut and has no newline.
    ("truncated last line", "step_trainer",
     {"a.json": ndjson(step(T0), step(T0 + 1)) + BAD_TRUNCATED.encode()},
     [row(T0), row(T0 + 1)], [("a.json", 3, "unparseable JSON")], 3),
    # A line holding a JSON value that is not an object.
    ("not an object", "step_trainer",
     {"a.json": ndjson(step(T0), "[1, 2]", "42")},
     [row(T0)], [("a.json", 2, "not a JSON object"), ("a.json", 3, "not a JSON object")], 3),
    # Required fields absent, null or blank; an optional field absent is fine.
    ("missing required field", "step_trainer",
     {"a.json": ndjson(
         {"sensorReadingTime": T0, "distanceFromObject": 1},
         step(T0 + 1, serial=None),
         step(T0 + 2, serial="  "),
         {"sensorReadingTime": T0 + 3, "serialNumber": SERIAL},
     )},
     [row(T0 + 3, distance=None)],
     [("a.json", 1, "missing required field serialNumber"), ("a.json", 2, "missing required field serialNumber"),
      ("a.json", 3, "missing required field serialNumber")], 4),
    # Values of a type the column cannot take.
    ("wrong type", "step_trainer",
     {"a.json": ndjson(
         step(T0, distance="abc"), step(T0 + 1, distance="1.5"), step(T0 + 2, distance=1.5),
         step(T0 + 3, distance=True), step(T0 + 4, serial={"id": 1}), step(T0 + 5, distance=[1]),
         step(T0 + 6),
     )},
     [row(T0 + 6)],
     [("a.json", 1, "wrong type for distanceFromObject"), ("a.json", 2, "wrong type for distanceFromObject"),
      ("a.json", 3, "wrong type for distanceFromObject"), ("a.json", 4, "wrong type for distanceFromObject"),
      ("a.json", 5, "wrong type for serialNumber"), ("a.json", 6, "wrong type for distanceFromObject")], 7),
    # Epoch seconds instead of milliseconds, a time past 2100, a negative distance.
    ("out of range", "step_trainer",
     {"a.json": ndjson(step(1_655_564_444), step(EPOCH_MS_MAX + 1), step(T0, distance=-1), step(EPOCH_MS_MAX))},
     [row(EPOCH_MS_MAX)],
     [("a.json", 1, "value out of range for sensorReadingTime"),
      ("a.json", 2, "value out of range for sensorReadingTime"),
      ("a.json", 3, "value out of range for distanceFromObject")], 4),
    # A JSON array of records; line means the element's 1-based position.
    ("JSON array file", "step_trainer",
     {"a.json": json.dumps([step(T0), step(T0 + 1), "oops", step(T0 + 2, distance=-5)]).encode()},
     [row(T0), row(T0 + 1)],
     [("a.json", 3, "not a JSON object"), ("a.json", 4, "value out of range for distanceFromObject")], 4),
    # A JSON array cut short: the complete elements are kept.
    ("truncated JSON array", "step_trainer",
     {"a.json": json.dumps([step(T0), step(T0 + 1)]).encode()[:-1] + b", " + BAD_TRUNCATED.encode()},
     [row(T0), row(T0 + 1)], [("a.json", 3, "unparseable JSON")], 3),
    # Windows line endings, with a bad line among them.
    ("CRLF line endings", "step_trainer",
     {"a.json": ndjson(step(T0), step(T0 + 1, serial=""), step(T0 + 2), end="\r\n")},
     [row(T0), row(T0 + 2)], [("a.json", 2, "missing required field serialNumber")], 3),
    # A UTF-8 byte order mark before the first record.
    ("UTF-8 BOM", "step_trainer",
     {"a.json": codecs.BOM_UTF8 + ndjson(step(T0), step(T0 + 1))},
     [row(T0), row(T0 + 1)], [], 2),
    # No newline after the last record.
    ("no final newline", "step_trainer",
     {"a.json": ndjson(step(T0), step(T0 + 1)).rstrip(b"\n")},
     [row(T0), row(T0 + 1)], [], 2),
    # Blank lines are not records; lines keep their physical numbers.
    ("blank lines", "step_trainer",
     {"a.json": ndjson(step(T0), "", "   ", step(T0 + 1, distance="x"))},
     [row(T0)], [("a.json", 4, "wrong type for distanceFromObject")], 2),
    # An empty file beside a good one adds nothing.
    ("empty file", "step_trainer",
     {"a.json": b"", "b.json": ndjson(step(T0))},
     [row(T0)], [], 1),
    # A gzip-compressed delivery, with a bad line inside.
    (".json.gz", "step_trainer",
     {"a.json.gz": gzip.compress(ndjson(step(T0), step(T0 + 1, distance=-2)))},
     [row(T0)], [("a.json.gz", 2, "value out of range for distanceFromObject")], 2),
    # A gzip file cut short: what could be read is kept, and the file is reported.
    ("truncated .json.gz", "step_trainer",
     {"a.json.gz": gzip.compress(ndjson(*[step(T0 + i) for i in range(50)]))[:-30]},
     None, [("a.json.gz", 0, "unreadable file")], None),
    # A field no column declares is kept out of the table (counted below).
    ("unknown extra field", "step_trainer",
     {"a.json": ndjson(step(T0, deviceId="d-1"), step(T0 + 1))},
     [row(T0), row(T0 + 1)], [], 2),
    # Field names in any letter case, several spellings in one file.
    ("field-name case", "step_trainer",
     {"a.json": ndjson({"SensorReadingTime": T0, "SERIALNUMBER": SERIAL, "distancefromobject": 1},
                       {"sensorReadingTime": T0 + 1, "serialNumber": SERIAL, "DistanceFromObject": 2})},
     [row(T0, distance=1), row(T0 + 1, distance=2)], [], 2),
    # Numbers delivered as strings: kept when unambiguous.
    ("numbers as strings", "step_trainer",
     {"a.json": ndjson(step(str(T0), distance="218"), step(T0 + 1, distance="-0"), step(T0 + 2, distance=" 7"))},
     [row(T0), row(T0 + 1, distance=0)], [("a.json", 3, "wrong type for distanceFromObject")], 3),
    # The same file delivered twice under two names: kept once.
    ("same file twice", "step_trainer",
     {"a.json": ndjson(step(T0), step(T0 + 1)), "a-copy.json": ndjson(step(T0), step(T0 + 1))},
     [row(T0), row(T0), row(T0 + 1), row(T0 + 1)], [], 4),
    # The same record in two different files.
    ("same record in two files", "step_trainer",
     {"a.json": ndjson(step(T0), step(T0 + 1)), "b.json": ndjson(step(T0 + 1), step(T0 + 2))},
     [row(T0), row(T0 + 1), row(T0 + 1), row(T0 + 2)], [], 4),
]


@pytest.mark.parametrize(
    ("feed", "files", "expected_rows", "expected_quarantine", "expected_read"),
    [pytest.param(*case[1:], id=case[0]) for case in CATALOGUE],
)
def test_catalogue(feed, files, expected_rows, expected_quarantine, expected_read):
    result = read(feed, files)

    if expected_rows is not None:
        assert kept(result) == expected_rows
    if expected_read is not None:
        assert result.records_read == expected_read
    got = quarantined(result)
    if expected_rows is None:  # truncated gzip: the file-level record, then the cut line
        assert got[0] == expected_quarantine[0]
        assert all(reason == "unparseable JSON" for _, _, reason in got[1:])
        assert result.records.height >= 40
    else:
        assert got == expected_quarantine
    assert result.records_read == result.records.height + result.quarantine.height
    assert_reconciled(result)


def test_duplicates_are_dropped_and_counted():
    twice = read("step_trainer", {"a.json": ndjson(step(T0), step(T0 + 1)), "b.json": ndjson(step(T0), step(T0 + 1))})
    once = read("step_trainer", {"a.json": ndjson(step(T0), step(T0 + 1))})

    assert distinct(twice) == distinct(once) == 2
    assert twice.records.height - distinct(twice) == 2


def test_unknown_fields_are_counted_not_typed():
    result = read("step_trainer", {
        "a.json": ndjson(step(T0, deviceId="d-1"), step(T0 + 1, deviceId="d-2", firmware=3)),
        "b.json": ndjson(step(T0 + 2, deviceId="d-3")),
    })

    assert result.unknown_fields == {"deviceId": 3, "firmware": 1}
    assert result.records.columns == ["source_file", *FEED_SCHEMAS["step_trainer"].column_names]


def test_doubles_delivered_as_strings():
    result = read("accelerometer", {"a.json": ndjson(
        reading(x="1.5"), reading(T0 + 1, x="-2"), reading(T0 + 2, x="1e3"), reading(T0 + 3, x="abc"),
        reading(T0 + 4, x=2),
    )})

    assert sorted(r[2] for r in result.records.drop("source_file").rows()) == [-2.0, 1.5, 2.0, 1000.0]
    assert quarantined(result) == [("a.json", 4, "wrong type for x")]


def test_quarantine_keeps_raw_text_cut_to_the_limit():
    long_line = json.dumps(step(T0, serial="s" * 5000, distance="bad"))
    result = read("step_trainer", {"a.json": ndjson(step(T0), long_line, end="\r\n")})

    (source, line, reason, raw_text), = result.quarantine.rows()
    assert (source, line, reason) == ("a.json", 2, "wrong type for distanceFromObject")
    assert raw_text == long_line[:RAW_TEXT_LIMIT]
    assert len(raw_text) == RAW_TEXT_LIMIT


def test_unknown_field_seen_only_after_the_sampled_lines():
    # The fast reader types fields from the first lines; a field (here a
    # second spelling of a column) first seen after them must not be lost.
    records = [step(T0 + i) for i in range(300)]
    records.append({"SensorReadingTime": T0 + 300, "serialNumber": SERIAL, "distanceFromObject": 1, "late": "x"})
    result = read("step_trainer", {"a.json": ndjson(*records)})

    assert result.records.height == 301
    assert result.quarantine.height == 0
    assert result.unknown_fields == {"late": 1}


def test_value_types_change_after_the_sampled_lines():
    records = [step(T0 + i) for i in range(300)] + [step(T0 + 300, distance="12"), step(T0 + 301, distance=1.5)]
    result = read("step_trainer", {"a.json": ndjson(*records)})

    assert result.records.filter(pl.col("sensorReadingTime") == T0 + 300)["distanceFromObject"].to_list() == [12]
    assert quarantined(result) == [("a.json", 302, "wrong type for distanceFromObject")]


def customer(email: str, updated: int, consent: int | None, name: str = "Ann Lee") -> dict:
    return {
        "customerName": name, "email": email, "phone": "8015551212", "birthDay": "1990-01-01",
        "serialNumber": SERIAL, "registrationDate": T0, "lastUpdateDate": updated,
        "shareWithResearchAsOfDate": consent, "shareWithPublicAsOfDate": None, "shareWithFriendsAsOfDate": None,
    }


@pytest.mark.parametrize(
    ("deliveries", "consenting"),
    [
        # Consent withdrawn in a later delivery: the latest record wins.
        pytest.param([customer("a@x.com", T0, T0), customer("a@x.com", T0 + 5, None)], 0, id="consent withdrawn"),
        # Consent given in a later delivery.
        pytest.param([customer("a@x.com", T0, None), customer("a@x.com", T0 + 5, T0 + 5)], 1, id="consent given"),
        # Same lastUpdateDate with and without consent: treated as not consenting.
        pytest.param([customer("a@x.com", T0, T0), customer("a@x.com", T0, None)], 0, id="tie without consent"),
        # The same record delivered three times.
        pytest.param([customer("a@x.com", T0, T0)] * 3, 1, id="same record thrice"),
    ],
)
def test_customer_delivered_several_times(deliveries, consenting):
    files = {f"customer-{i}.json": ndjson(record) for i, record in enumerate(deliveries)}
    result = read("customer", files)
    landing = rules.landing_records(nw.from_native(result.records.lazy()))

    assert rules.current_customer_records(landing).collect().shape[0] == 1
    assert rules.customer_trusted(landing).collect().shape[0] == consenting
    # Either order of delivery gives the same answer.
    reversed_result = read("customer", {f"customer-{9 - i}.json": data for i, data in enumerate(files.values())})
    reversed_landing = rules.landing_records(nw.from_native(reversed_result.records.lazy()))
    assert rules.current_customer_records(reversed_landing).collect().rows() == (
        rules.current_customer_records(landing).collect().rows()
    )


# -- random mutations ---------------------------------------------------------------

_VALID = st.builds(
    step,
    time=st.integers(min_value=T0, max_value=T0 + 10_000),
    serial=st.sampled_from([SERIAL, "a-1", "b-2"]),
    distance=st.integers(min_value=0, max_value=400),
)


def _mutate(record: dict, mutation: str, draw) -> list[str]:
    """The line(s) a mutated record becomes."""
    text = json.dumps(record)
    if mutation == "drop field":
        record.pop(draw(st.sampled_from(sorted(record))))
    elif mutation == "change type":
        record[draw(st.sampled_from(sorted(record)))] = draw(
            st.one_of(st.text(max_size=5), st.floats(allow_nan=False), st.booleans(), st.none(),
                      st.lists(st.integers(), max_size=2), st.integers())
        )
    elif mutation == "truncate":
        return [text[: draw(st.integers(min_value=0, max_value=len(text) - 1))]]
    elif mutation == "garbage":
        return [draw(st.text(max_size=20).filter(lambda s: "\n" not in s and "\r" not in s)), text]
    elif mutation == "key case":
        key = draw(st.sampled_from(sorted(record)))
        record[draw(st.sampled_from([key.upper(), key.lower(), key.swapcase()]))] = record.pop(key)
    elif mutation == "duplicate":
        return [text, text]
    return [json.dumps(record)]


@st.composite
def mutated_files(draw) -> dict[str, bytes]:
    files = {}
    for number in range(draw(st.integers(min_value=1, max_value=3))):
        lines: list[str] = []
        for record in draw(st.lists(_VALID, max_size=12)):
            mutation = draw(st.sampled_from(["none", "drop field", "change type", "truncate", "garbage",
                                             "key case", "duplicate"]))
            lines += _mutate(record, mutation, draw)
        end = draw(st.sampled_from(["\n", "\r\n"]))
        data = end.join(lines).encode() + draw(st.sampled_from([b"", end.encode()]))
        if draw(st.booleans()):
            data = codecs.BOM_UTF8 + data
        files[f"f{number}.json"] = data
    return files


@settings(max_examples=50, deadline=None)
@given(mutated_files())
def test_no_record_is_lost_whatever_the_damage(files):
    result = read("step_trainer", files)

    # Every non-blank line is a record, and each is kept or quarantined, once.
    lines = sum(
        1 for data in files.values()
        for line in data.removeprefix(codecs.BOM_UTF8).split(b"\n") if line.strip(b" \t\r")
    )
    assert result.records_read == lines
    assert result.records_read == result.records.height + result.quarantine.height
    assert_reconciled(result)
    assert result.records.drop("source_file").schema == FEED_SCHEMAS["step_trainer"].polars_schema
    # Nothing kept breaks the contract.
    assert result.records["sensorReadingTime"].null_count() == 0
    assert result.records["serialNumber"].null_count() == 0
    assert (result.records["distanceFromObject"].drop_nulls() >= 0).all()
    assert set(result.quarantine["line"].to_list()) <= set(range(1, lines + 100))


def test_broken_lines_in_a_large_file_are_found_exactly():
    # Large enough that the reader halves the file to find the broken lines.
    lines: list[dict | str] = [step(T0 + i) for i in range(3000)]
    lines[0] = "garbage"
    lines[1700] = BAD_TRUNCATED
    lines[2999] = step(T0 + 2999, distance="7")
    result = read("step_trainer", {"a.json": ndjson(*lines)})

    assert quarantined(result) == [("a.json", 1, "unparseable JSON"), ("a.json", 1701, "unparseable JSON")]
    assert result.records.height == 2998
    assert result.records.filter(pl.col("sensorReadingTime") == T0 + 2999)["distanceFromObject"].to_list() == [7]


# -- one bad record costs only itself --------------------------------------------------


def test_one_fractional_time_quarantines_only_its_record():
    # A fraction read into an integer column must not turn the file's other
    # (integer) times into fractions.
    records = [reading(T0 + i) for i in range(50)] + [reading(1655564600000.5)]
    result = read("accelerometer", {"a.json": ndjson(*records)})

    assert result.records.height == 50
    assert quarantined(result) == [("a.json", 51, "wrong type for timestamp")]


def test_one_bad_record_in_a_real_file_costs_only_itself(stedi_landing):
    path = sorted((stedi_landing / "step_trainer").iterdir())[0]
    data = path.read_bytes()
    lines = sum(1 for line in data.split(b"\n") if line.strip())
    bad = json.dumps(step(1655564600000.5)).encode()
    result = read("step_trainer", {path.name: data.rstrip(b"\n") + b"\n" + bad + b"\n"})

    assert result.records.height == lines
    assert quarantined(result) == [(path.name, lines + 1, "wrong type for sensorReadingTime")]


def test_a_string_that_looks_like_json_is_text():
    # Only a JSON object or array is of the wrong type for a text column, not text that looks like one.
    result = read("step_trainer", {"a.json": ndjson(step(T0, serial="[1, 2]"), step(T0 + 1, serial={"id": 1}))})

    assert kept(result) == [row(T0, serial="[1, 2]")]
    assert quarantined(result) == [("a.json", 2, "wrong type for serialNumber")]


def test_a_name_twice_keeps_its_last_value():
    # As Python's json: the last of two identical names wins; among spellings
    # differing in case, the declared spelling holding a value wins.
    result = read("step_trainer", {"a.json": ndjson(
        '{"sensorReadingTime": 1, "serialNumber": "s", "sensorReadingTime": %d}' % T0,
        '{"SENSORREADINGTIME": "x", "sensorReadingTime": %d, "serialNumber": "s"}' % (T0 + 1),
        '{"SENSORREADINGTIME": %d, "sensorReadingTime": null, "serialNumber": "s"}' % (T0 + 2),
    )})

    assert kept(result) == [row(T0, "s", None), row(T0 + 1, "s", None), row(T0 + 2, "s", None)]


# -- decompression is bounded -----------------------------------------------------------


def gzip_bomb(path, expanded_mib: int) -> None:
    """A gzip file of ``expanded_mib`` MiB of JSON-like text, written without holding it."""
    block = (json.dumps(step()) + "\n").encode() * (2**20 // 80)
    block = block + b" " * (2**20 - len(block))
    with gzip.open(path, "wb", compresslevel=1) as out:
        for _ in range(expanded_mib):
            out.write(block)


def test_a_file_over_the_bound_is_quarantined_whole(tmp_path):
    gzip_bomb(tmp_path / "bomb.json.gz", 3)
    files = {
        "bomb.json.gz": (tmp_path / "bomb.json.gz").read_bytes(),
        "big.json": b" " * (2 * 2**20 + 1),
        "small.json.gz": gzip.compress(ndjson(step(T0))),
    }
    result = read_feed(FEED_SCHEMAS["step_trainer"], sorted(files.items()), max_file_mb=2)

    assert kept(result) == [row(T0)]
    reason = "file larger than 2 MiB after decompression (STEDI_MAX_FILE_MB)"
    assert quarantined(result) == [("big.json", 0, reason), ("bomb.json.gz", 0, reason)]
    assert result.records_read == 3


# The peak is the process's own high-water mark (VmHWM): ru_maxrss would
# carry over the parent's peak through fork and exec.
_MEASURE = """
import re, sys
from pathlib import Path
from stedi_assets.lakehouse.engines.polars_engine import PolarsEngine
from stedi_assets.domain.schemas import FEED_SCHEMAS
from stedi_assets.lakehouse.storage import LocalStore
read = PolarsEngine(max_file_mb=1).read_landing(FEED_SCHEMAS["step_trainer"], [sys.argv[1]], LocalStore())
rows = read.quarantine.collect().to_native().select("line", "reason").rows()
peak_kib = int(re.search(r"VmHWM:\\s*(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
print(rows, peak_kib // 1024)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from Linux's /proc")
def test_memory_stays_bounded_while_finding_a_gzip_bomb(tmp_path):
    bomb = tmp_path / "bomb.json.gz"
    gzip_bomb(bomb, 1024)  # 1 GiB expanded
    assert bomb.stat().st_size < 16 * 2**20

    completed = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(bomb)], capture_output=True, text=True, timeout=300, check=True,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
    )
    rows, peak_mib = completed.stdout.strip().rsplit(" ", 1)

    assert rows == "[(0, 'file larger than 1 MiB after decompression (STEDI_MAX_FILE_MB)')]"
    print(f"peak memory {peak_mib} MiB")
    assert int(peak_mib) < 512, f"peak memory {peak_mib} MiB while reading a 1 GiB gzip bomb"


def test_the_bound_is_a_setting(monkeypatch):
    from stedi_assets.orchestration.resources import build_resources

    assert build_resources({})["lakehouse"].max_file_mb == 1024
    monkeypatch.setenv("STEDI_MAX_FILE_MB", "5")
    with build_resources({"STEDI_MAX_FILE_MB": "5"})["lakehouse"].process_config_and_initialize_cm() as lakehouse:
        assert lakehouse.max_file_mb == 5
        assert lakehouse.get_engine().max_file_mb == 5


def test_one_bad_record_in_the_real_data_leaves_the_landing_table_published(stedi_landing, tmp_path, make_lakehouse):
    landing = tmp_path / "landing"
    shutil.copytree(stedi_landing, landing)
    path = sorted((landing / "step_trainer").iterdir())[0]
    path.write_bytes(path.read_bytes().rstrip(b"\n") + b"\n" + json.dumps(step(1655564600000.5)).encode() + b"\n")

    result = materialize_all(make_lakehouse(landing, profile="stedi-reference"))

    assert result.success
    rows = published_rows(result)
    assert rows["step_trainer_quarantine"] == 1
    assert rows["step_trainer_landing"] == STEDI_REFERENCE["step_trainer_landing"]
    evaluation = next(
        e for e in result.get_asset_check_evaluations()
        if e.asset_key.path[-1] == "step_trainer_landing" and e.check_name == "quarantined_records"
    )
    assert evaluation.severity.value == "WARN"
    assert evaluation.metadata["by_reason"].value == "wrong type for sensorReadingTime: 1"
