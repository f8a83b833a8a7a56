"""Incremental ingestion equals a full rebuild, after any sequence of deliveries, on both engines.

Hypothesis draws sequences of deliveries to the accelerometer feed: new
files, changed files, identical files delivered again (a new modification
time), removed files, with records repeated within and across files and
lines that go to quarantine, and readings carrying a field no column declares
(the delivery that first brings it adds a column). After each delivery the landing step updates
one lakehouse incrementally; a second lakehouse is built from scratch from
the landing folder as it then is. The landing and quarantine tables must be
equal (a column added by a delivery that is gone since stays in the
incremental tables, null), and the ledger's current versions must be exactly
the files there.
A full refresh of the incremental lakehouse at the end gives the same tables.

The derived tables are recomputed whole from these two tables in every run;
``stedi_assets_tests/test_ingestion.py`` runs whole pipelines over fixed
deliveries (a withdrawal, a removal) against full rebuilds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest
from dagster import materialize
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polars.testing import assert_frame_equal

from stedi_assets.domain import rules
from stedi_assets.definitions import zone_assets
from stedi_assets.lakehouse.engines import RecordsFolder, slice_of_file
from stedi_assets.lakehouse.engines.polars_engine import PolarsEngine
from stedi_assets.lakehouse.ledger import current_deliveries, read_ledger
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.domain.schemas import FEED_SCHEMAS, Column
from stedi_assets.lakehouse.storage import LocalStore
from stedi_assets.domain.validation import reference_read
from stedi_assets_tests.conftest import resources_for, stored_table

T0 = 1_655_564_444_000
USERS = ("a@test.com", "b@test.com", " A@test.com")
LANDING = ["accelerometer_landing", "accelerometer_quarantine"]
NAMES = [f"part-{i}.json" for i in range(4)]

settings.register_profile(
    "ingestion", max_examples=20, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "ingestion-spark", max_examples=3, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

reading = st.builds(
    lambda user, t, x, gyro: json.dumps(
        {"user": user, "timestamp": T0 + t, "x": x, "y": 0.5, "z": None, **({"gyroX": gyro} if gyro is not None else {})}
    ),
    # Some readings carry a field no column declares: the delivery that brings it adds a column.
    st.sampled_from(USERS), st.integers(0, 6), st.sampled_from([0.0, 1.0, -1.5]), st.sampled_from([None, None, 1, 2]),
)
line = st.one_of(reading, reading, reading, st.sampled_from(['{"user": "a@test.com"', "not json", '{"timestamp": 1}']))
content = st.lists(line, min_size=0, max_size=6).map(lambda lines: ("\n".join(lines) + "\n").encode() if lines else b"")
delivery = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(NAMES), content),  # a new file, or a changed one
    st.tuples(st.just("deliver again"), st.sampled_from(NAMES), st.none()),
    st.tuples(st.just("remove"), st.sampled_from(NAMES), st.none()),
)


def apply(landing: Path, step: tuple[str, str, bytes | None]) -> None:
    kind, name, data = step
    path = landing / "accelerometer" / name
    if kind == "write":
        path.write_bytes(data)
    elif kind == "deliver again" and path.exists():
        data = path.read_bytes()
        path.unlink()
        time.sleep(0.002)  # another modification time, whatever the file system's resolution
        path.write_bytes(data)
    elif kind == "remove" and path.exists() and len(list(path.parent.iterdir())) > 1:
        path.unlink()


def ingest(lakehouse: Lakehouse, full_refresh: bool = False):
    config = {"ops": {"accelerometer_landing": {"config": {"full_refresh": full_refresh}}}}
    return materialize(
        zone_assets, resources=resources_for(lakehouse), selection=LANDING, run_config=config, raise_on_error=False
    )


def assert_same_tables(root: Path, other: Path, context: object) -> None:
    """The same rows; a column added by a delivery that is gone since stays in the incremental table, null."""
    for name in LANDING:
        incremental, rebuilt = stored_table(root, name), stored_table(other, name)
        gone = [c for c in incremental.columns if c not in rebuilt.columns]
        assert all(incremental[c].null_count() == incremental.height for c in gone), (name, context, incremental)
        incremental = incremental.select(rebuilt.columns).sort(rebuilt.columns)
        assert incremental.equals(rebuilt), (name, context, incremental, rebuilt)


def landing_schema(root: Path):
    """The accelerometer feed's schema with the columns its landing table gained (all bigint here)."""
    columns = stored_table(root, "accelerometer_landing").columns
    added = [Column(c, "bigint", "added") for c in columns if c not in FEED_SCHEMAS["accelerometer"].column_names]
    return FEED_SCHEMAS["accelerometer"].with_columns(added)


def assert_landing_is_the_distinct_records(landing: Path, root: Path, context: object) -> None:
    """The landing table holds each distinct record the reference reader finds in the files once (however
    the engine made them distinct: a slice at a time, from stored records, or whole)."""
    files = sorted((landing / "accelerometer").iterdir())
    records, _, _ = reference_read(landing_schema(root), [(str(p), p.read_bytes()) for p in files])
    table = stored_table(root, "accelerometer_landing")
    assert table.height == len({r[1:] for r in records}) and set(table.rows()) == {r[1:] for r in records}, context


def assert_incremental_equals_rebuild(engine: str, first: bytes, steps: list) -> None:
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        landing = base / "landing"
        (landing / "accelerometer").mkdir(parents=True)
        (landing / "accelerometer" / NAMES[0]).write_bytes(first)

        def lakehouse(name: str) -> Lakehouse:
            return Lakehouse(
                landing_uri=str(landing), lakehouse_uri=str(base / name), engine=engine, quarantine_max_share=1.0
            )

        incremental = lakehouse("incremental")
        for number, step in enumerate([None, *steps]):
            if step is not None:
                apply(landing, step)
            updated = ingest(incremental)
            rebuilt = ingest(lakehouse(f"rebuild-{number}"))
            assert updated.success == rebuilt.success, step
            if not rebuilt.success:  # every file is empty: both fail, the tables stay as they were
                continue
            assert_same_tables(base / "incremental", base / f"rebuild-{number}", (number, step))
            assert_landing_is_the_distinct_records(landing, base / "incremental", (number, step))
            current = current_deliveries(read_ledger(incremental)[0], "accelerometer")
            on_disk = {str(p): p.stat() for p in (landing / "accelerometer").iterdir()}
            assert set(current) == set(on_disk)
            assert all(current[uri]["size_bytes"] == stat.st_size for uri, stat in on_disk.items())
            # Each current version's counts are the reference reader's for that file.
            for uri in on_disk:
                rows, quarantined, _ = reference_read(landing_schema(base / "incremental"), [(uri, Path(uri).read_bytes())])
                counts = current[uri]
                assert (counts["records_read"], counts["records_kept"], counts["records_quarantined"]) == (
                    len(rows) + len(quarantined), len(set(rows)), len(quarantined)
                ), uri
        if ingest(incremental, full_refresh=True).success:
            assert_same_tables(base / "incremental", base / f"rebuild-{len(steps)}", "full refresh")


first_file = content.filter(lambda data: b"user" in data and b"timestamp" in data)


@settings(settings.get_profile("ingestion"))
@given(first=first_file, steps=st.lists(delivery, min_size=1, max_size=4))
def test_polars_ingestion_equals_a_full_rebuild(first, steps):
    assert_incremental_equals_rebuild("polars", first, steps)


@pytest.mark.spark
@settings(settings.get_profile("ingestion-spark"))
@given(first=first_file, steps=st.lists(delivery, min_size=2, max_size=3))
def test_spark_ingestion_equals_a_full_rebuild(spark, first, steps):
    assert_incremental_equals_rebuild("spark", first, steps)


def test_each_file_version_is_read_once(tmp_path, monkeypatch):
    """Files not changed since they were ingested are not read again; a full refresh reads them all."""
    from stedi_assets.lakehouse.storage import LocalStore

    landing = tmp_path / "landing"
    (landing / "accelerometer").mkdir(parents=True)
    for i in range(3):
        (landing / "accelerometer" / NAMES[i]).write_text(json.dumps({"user": "a@test.com", "timestamp": T0 + i}) + "\n")
    lakehouse = Lakehouse(landing_uri=str(landing), lakehouse_uri=str(tmp_path / "lakehouse"))
    reads: list[str] = []
    original = LocalStore.read_bytes
    monkeypatch.setattr(
        LocalStore, "read_bytes",
        lambda self, uri, max_bytes=None: reads.append(Path(uri).name) or original(self, uri, max_bytes),
    )

    assert ingest(lakehouse).success
    assert sorted(reads) == NAMES[:3]
    reads.clear()
    assert ingest(lakehouse).success
    assert reads == []
    (landing / "accelerometer" / NAMES[3]).write_text(json.dumps({"user": "b@test.com", "timestamp": T0}) + "\n")
    os.utime(landing / "accelerometer" / NAMES[0], ns=(1, 1))
    assert ingest(lakehouse).success
    assert sorted(reads) == [NAMES[0], NAMES[3]]
    reads.clear()
    assert ingest(lakehouse, full_refresh=True).success
    assert sorted(reads) == NAMES
    assert stored_table(tmp_path / "lakehouse", "accelerometer_landing").height == 4


@pytest.mark.spark
def test_spark_reads_a_changed_file_anew_while_an_earlier_read_is_cached(spark, tmp_path):
    # Spark answers a query from the cache of any equal plan; a read of the same path must
    # not be answered from an earlier read's cache (here still held) once the file changed.
    from stedi_assets.lakehouse.engines.spark_engine import SparkEngine
    from stedi_assets.lakehouse.storage import LocalStore

    path = tmp_path / "part-0.json"
    engine = SparkEngine()
    timestamps = []
    for t in (T0, T0 + 1):
        path.write_text(json.dumps({"user": "a@test.com", "timestamp": t}) + "\n")
        read = engine.read_landing(FEED_SCHEMAS["accelerometer"], [str(path)], LocalStore())
        timestamps.append([row["timestamp"] for row in read.records.to_native().collect()])
    assert timestamps == [[T0], [T0 + 1]]


_READ_TWICE = """
import json, sys
from pathlib import Path

from stedi_assets.lakehouse.engines.spark_engine import SparkEngine
from stedi_assets.domain.schemas import FEED_SCHEMAS, Column
from stedi_assets.lakehouse.storage import LocalStore

path, t0 = Path(sys.argv[1]), int(sys.argv[2])
engine = SparkEngine("local[1]", {"spark.driver.memory": "1g"})
timestamps = []
for t in (t0, t0 + 1):
    path.write_text(json.dumps({"user": "a@test.com", "timestamp": t}) + "\\n")
    read = engine.read_landing(FEED_SCHEMAS["accelerometer"], [str(path)], LocalStore())
    timestamps.append([row["timestamp"] for row in read.records.to_native().collect()])
print(json.dumps({"optimize": sys.flags.optimize, "timestamps": timestamps}))
"""


@pytest.mark.spark
def test_spark_reads_a_changed_file_anew_under_python_optimizations(spark, tmp_path):
    # As above, in a Python run with -O (and its Spark workers with PYTHONOPTIMIZE),
    # which drops every assert: what keeps two reads' plans apart must not be one.
    # A process of its own (its own Spark driver): optimization is chosen when Python starts.
    environ = {**os.environ, "PYTHONOPTIMIZE": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run(
        [sys.executable, "-O", "-c", _READ_TWICE, str(tmp_path / "part-0.json"), str(T0)],
        capture_output=True, text=True, env=environ, timeout=600,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"optimize": 1, "timestamps": [[T0], [T0 + 1]]}


def test_polars_stores_the_records_it_reads_a_slice_per_file(tmp_path):
    # Records repeated within and across files, a quarantined line, and files
    # of more than one batch: what is stored is exactly what is read, each
    # stored file holds the rows of one slice, and no record is held in memory.
    files = []
    for number in range(40):
        path = tmp_path / f"part-{number:02d}.json"
        lines = [json.dumps({"user": USERS[i % 3], "timestamp": T0 + (number + i) % 23, "x": 1.0, "y": None, "z": 0.5})
                 for i in range(30)]
        path.write_text("\n".join([*lines, lines[0], "not json"]) + "\n")
        files.append(str(path))
    schema = FEED_SCHEMAS["accelerometer"]
    whole = PolarsEngine().read_landing(schema, files, LocalStore())
    folder = RecordsFolder(str(tmp_path / "records"), LocalStore())

    stored = PolarsEngine().read_landing(schema, files, LocalStore(), records_to=folder)

    assert whole.stored is None and stored.stored
    assert {Path(f).parent for f in stored.stored} == {tmp_path / "records"}
    as_read = whole.records.collect().to_native()
    assert_frame_equal(stored.records.collect().to_native().sort(pl.all()), as_read.sort(pl.all()))
    for file in stored.stored:
        timestamps = pl.read_parquet(file)["timestamp"]
        assert ((timestamps % rules.LANDING_SLICES) == slice_of_file(file)).all(), file
    assert (stored.records_read, stored.quarantined, stored.distinct_by_file) == (
        whole.records_read, whole.quarantined, whole.distinct_by_file
    )


def test_stored_records_of_any_layout_are_read_a_slice_at_a_time(tmp_path):
    # Records stored a slice per file (as the Polars engine stores them) beside
    # records of every slice in one file (as the Spark engine, or an earlier
    # version, stored them): each slice frame holds exactly that slice's rows.
    from stedi_assets.lakehouse.ingestion import _records_by_slice

    def records(source: str, times: range) -> pl.DataFrame:
        return pl.DataFrame(
            {"source_file": source, "user": "a@test.com", "timestamp": [T0 + t for t in times], "x": 1.0, "y": None, "z": None},
            schema={"source_file": pl.String, "user": pl.String, "timestamp": pl.Int64, "x": pl.Float64, "y": pl.Float64, "z": pl.Float64},
        )

    sliced = records("a.json", range(0, 40, rules.LANDING_SLICES)).filter((pl.col("timestamp") % rules.LANDING_SLICES) == T0 % rules.LANDING_SLICES)
    one_file = records("b.json", range(40))
    sliced_path = tmp_path / f"part-00000-slice-{T0 % rules.LANDING_SLICES}.parquet"
    sliced.write_parquet(sliced_path)
    one_file.write_parquet(tmp_path / "part-00000.parquet")
    lakehouse = Lakehouse(landing_uri=str(tmp_path), lakehouse_uri=str(tmp_path / "lakehouse"))

    slices = _records_by_slice(lakehouse, "accelerometer", [str(sliced_path), str(tmp_path / "part-00000.parquet")])
    kept = _records_by_slice(lakehouse, "accelerometer", [str(sliced_path), str(tmp_path / "part-00000.parquet")], keep=("b.json",))

    assert len(slices) == rules.LANDING_SLICES
    for number, frame in enumerate(slices):
        rows = frame.collect().to_native()
        assert ((rows["timestamp"] % rules.LANDING_SLICES) == number).all(), number
    everything = pl.concat([frame.collect().to_native() for frame in slices])
    assert_frame_equal(everything.sort(pl.all()), pl.concat([sliced, one_file]).sort(pl.all()))
    assert_frame_equal(pl.concat([frame.collect().to_native() for frame in kept]).sort(pl.all()), one_file.sort(pl.all()))
