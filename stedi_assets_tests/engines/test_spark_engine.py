"""The Spark engine on small hand-made landing zones and frames.

Covers: field names matched without case, one-line errors for bad landing
files and for a machine without Java, the zone rules' tie-breaking on Spark,
checks failing on violating Spark-backed data (directly, and through a run
with a deliberately broken rule), empty tables, the session's settings, and
the STEDI_SPARK_* settings. Not covered here: the real data set (see
test_spark_parity), clusters and S3.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import narwhals as nw
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from pyiceberg.io.pyarrow import parquet_file_to_data_file

from stedi_assets.domain import rules
from stedi_assets.orchestration.checks import CheckInput, check_consenting_readings, check_unique_customers
from stedi_assets.lakehouse.engines.polars_engine import PolarsEngine
from stedi_assets.lakehouse.catalog import TableNotPublishedError
from stedi_assets.orchestration.resources import build_resources
from stedi_assets.settings import parse_spark_conf
from stedi_assets.domain.schemas import FEED_SCHEMAS, TABLES
from stedi_assets.lakehouse.storage import LocalStore
from stedi_assets_tests.conftest import check_outcomes, materialize_all, stored_table

REPOSITORY = Path(__file__).resolve().parents[2]


def write_lines(path: Path, records: list[dict | str]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return str(path)


def as_polars(frame: nw.LazyFrame) -> pl.DataFrame:
    native = frame.to_native()
    collected = native.collect() if isinstance(native, pl.LazyFrame) else pl.from_arrow(native.toArrow())
    return collected.sort(collected.columns, nulls_last=True)


def customer(email: str, updated: int, consent: int | None, **other: object) -> dict:
    record = {
        "customerName": email.split("@")[0], "email": email, "phone": "8015551212", "birthDay": "1900-01-01",
        "serialNumber": f"sn-{email}", "registrationDate": T0, "lastUpdateDate": T0 + updated,
        "shareWithResearchAsOfDate": consent, "shareWithPublicAsOfDate": None, "shareWithFriendsAsOfDate": None,
    }
    return record | other


def spark_frame(spark, table: str, rows: list[dict]) -> nw.LazyFrame:
    from stedi_assets.lakehouse.engines.spark_engine import spark_schema

    schema = TABLES[table]
    return nw.from_native(spark.createDataFrame([tuple(r.get(c) for c in schema.column_names) for r in rows], spark_schema(schema)))


# -- landing JSON ----------------------------------------------------------------


T0 = 1_655_564_444_103  # a reading time of the real data, epoch milliseconds


def read_with_both(files: list[str], feed: str = "accelerometer"):
    from stedi_assets.lakehouse.engines.spark_engine import SparkEngine

    return (
        SparkEngine().read_landing(FEED_SCHEMAS[feed], files, LocalStore()),
        PolarsEngine().read_landing(FEED_SCHEMAS[feed], files, LocalStore()),
    )


@pytest.mark.spark
def test_field_names_match_without_case(spark, tmp_path):
    files = [
        write_lines(tmp_path / "a.json", [{"user": "a@x.com", "timeStamp": T0, "x": 1.0, "y": 0, "z": -1.0}]),
        write_lines(tmp_path / "b.json", [
            {"user": "b@x.com", "timestamp": T0 + 1, "x": 0.5, "y": 1.0, "z": 0.0},
            {"User": "c@x.com", "TIMESTAMP": T0 + 2, "x": "2"},  # other spellings; a number as text
            "",
        ]),
    ]

    on_spark, on_polars = read_with_both(files)

    assert on_spark.records_read == on_polars.records_read == 3
    assert as_polars(on_spark.records)["timestamp"].to_list() == [T0, T0 + 1, T0 + 2]
    assert_frame_equal(as_polars(on_spark.records), as_polars(on_polars.records))


@pytest.mark.spark
def test_bad_records_are_quarantined_alike(spark, tmp_path):
    good = write_lines(tmp_path / "good.json", [{"user": "a@x.com", "timestamp": T0}])
    # A name with characters that URIs escape: the quarantine names the file as the store does.
    bad = write_lines(tmp_path / "bad feed+1%.json", [
        '{"user": "b@x.com", "timestamp": %d}\r' % T0,  # CRLF line ending
        '{"user": "b@x.com", "timestamp": 1',  # cut short
        "[1, 2]",  # JSON, not an object
        "not json",
        {"user": "c@x.com", "timestamp": "yesterday"},
        {"user": "d@x.com", "timestamp": 5},  # not an epoch-milliseconds time
        {"timestamp": T0, "extra": 1},  # no user; a field no column declares
    ])

    on_spark, on_polars = read_with_both([good, bad])

    assert on_spark.records_read == on_polars.records_read == 8
    assert on_spark.unknown_fields == on_polars.unknown_fields
    assert_frame_equal(as_polars(on_spark.records), as_polars(on_polars.records))
    quarantine = as_polars(on_spark.quarantine)
    assert_frame_equal(quarantine, as_polars(on_polars.quarantine))
    assert quarantine.select("line", "reason").rows() == [
        (2, "unparseable JSON"), (3, "not a JSON object"), (4, "unparseable JSON"),
        (5, "wrong type for timestamp"), (6, "value out of range for timestamp"), (7, "missing required field user"),
    ]
    assert set(quarantine["source_file"]) == {bad}


# -- rules -----------------------------------------------------------------------


@pytest.mark.spark
def test_current_customer_record_ties_resolve_alike(spark):
    rows = [
        # Latest record wins, whatever the order of delivery.
        customer("late@x.com", 3, 100), customer("late@x.com", 5, None), customer("late@x.com", 4, 100),
        # A tie on lastUpdateDate goes to the record without consent.
        customer("tie@x.com", 7, 100), customer("tie@x.com", 7, None),
        # A full tie on consent is decided by the other columns (nulls included), the same on both engines.
        customer("other@x.com", 9, 100, phone=None), customer("other@x.com", 9, 100, phone="1"),
        customer("other@x.com", 9, 100, registrationDate=None),
        customer("solo@x.com", 1, 50),
    ]
    on_spark = rules.current_customer_records(spark_frame(spark, "customer_landing", rows))
    on_polars = rules.current_customer_records(nw.from_native(pl.LazyFrame(rows, schema=TABLES["customer_landing"].polars_schema)))

    current = as_polars(on_spark)
    assert_frame_equal(current, as_polars(on_polars))
    assert dict(zip(current["email"], current["shareWithResearchAsOfDate"])) == {
        "late@x.com": None, "tie@x.com": None, "other@x.com": 100, "solo@x.com": 50,
    }
    assert as_polars(rules.customer_trusted(spark_frame(spark, "customer_landing", rows)))["email"].to_list() == [
        "other@x.com", "solo@x.com",
    ]


# -- checks on violating data --------------------------------------------------------


@pytest.mark.spark
def test_checks_fail_on_violating_spark_frames(spark):
    trusted = spark_frame(spark, "customer_trusted", [customer("yes@x.com", 1, T0)])
    readings = spark_frame(spark, "accelerometer_trusted", [
        {"user": "yes@x.com", "timestamp": T0}, {"user": "no@x.com", "timestamp": T0 + 1},
    ])
    passed, metadata = check_consenting_readings(
        CheckInput("accelerometer_trusted", readings, {"customer_trusted": trusted})
    )
    assert not passed
    assert metadata == {"readings_of_non_consenting_users": 1, "sample_users": "no***@x.com"}

    twice = spark_frame(spark, "customer_curated", [customer("twice@x.com", 1, 10), customer("twice@x.com", 2, 10)])
    passed, metadata = check_unique_customers(CheckInput("customer_curated", twice))
    assert not passed
    assert metadata == {"customers_more_than_once": 1, "sample_emails": "tw***@x.com"}


@pytest.fixture
def small_landing(tmp_path) -> Path:
    landing = tmp_path / "landing"
    write_lines(landing / "customer" / "customer-1.json", [
        customer("yes@x.com", 1, T0), customer("no@x.com", 1, None),
    ])
    write_lines(landing / "accelerometer" / "accelerometer-1.json", [
        {"user": "yes@x.com", "timeStamp": T0, "x": 0.0, "y": 0.0, "z": 0.0},
        {"user": "no@x.com", "timeStamp": T0 + 1, "x": 0.0, "y": 0.0, "z": 0.0},
    ])
    write_lines(landing / "step_trainer" / "step_trainer-1.json", [
        {"sensorReadingTime": T0, "serialNumber": "sn-yes@x.com", "distanceFromObject": 200},
    ])
    return landing


@pytest.mark.spark
def test_broken_rule_is_stopped_by_the_privacy_check(spark, small_landing, make_lakehouse, monkeypatch, tmp_path):
    # A rule that lets every reading through, the non-consenting customer's too.
    monkeypatch.setattr(
        rules, "accelerometer_trusted", lambda accelerometer_landing, customer_trusted, from_consent_date: accelerometer_landing
    )
    lakehouse = make_lakehouse(small_landing, engine="spark")

    result = materialize_all(lakehouse, selection=[
        "customer_landing", "customer_quarantine", "accelerometer_landing", "accelerometer_quarantine",
        "customer_trusted", "accelerometer_trusted",
    ])

    assert not result.success
    outcomes = check_outcomes(result)
    assert outcomes[("accelerometer_trusted", "consenting_readings_only")] is False
    assert outcomes[("customer_trusted", "consenting_customers_only")] is True
    assert lakehouse.load_table("customer_trusted").metadata.current_snapshot_id is not None
    with pytest.raises(TableNotPublishedError):  # never published
        lakehouse.load_table("accelerometer_trusted")


# -- writing ---------------------------------------------------------------------------


@pytest.mark.spark
def test_empty_table_round_trip(spark, tmp_path):
    from stedi_assets.lakehouse.engines.spark_engine import SparkEngine

    engine = SparkEngine()
    schema = TABLES["customer_curated"]
    files = engine.write(spark_frame(spark, "customer_curated", []), schema, str(tmp_path / "v1"), LocalStore())

    assert files
    assert pl.read_parquet(files).schema == schema.polars_schema
    assert engine.scan(files, schema, LocalStore()).select(nw.len()).collect().item() == 0


@pytest.mark.spark
def test_spark_types_are_cast_to_the_declared_ones_before_the_commit(spark, tmp_path, make_lakehouse):
    from pyspark.sql import functions as F

    # What Spark arithmetic or a JSON read can produce: a decimal and an int where the table has double and bigint.
    frame = spark.createDataFrame(
        [("ann@x.com", T0, "1.5")], "user string, timestamp bigint, x string"
    ).select(
        "user", F.col("timestamp").cast("decimal(20,0)").alias("timestamp"), F.col("x").cast("decimal(22,1)").alias("x"),
        F.lit(0).cast("int").alias("y"), F.lit(-1).cast("int").alias("z"),
    )
    lakehouse = make_lakehouse(tmp_path / "landing", engine="spark")

    commit = lakehouse.write_table(["accelerometer_landing"], nw.from_native(frame), {"stedi.run_id": "r"}, "run-1")

    stored = stored_table(tmp_path / "lakehouse", "accelerometer_landing")
    assert stored.schema == TABLES["accelerometer_landing"].polars_schema
    assert stored.rows() == [("ann@x.com", T0, 1.5, 0.0, -1.0)]
    assert commit.rows == 1

    # Without the cast, the commit refuses Spark's types: the cast is what makes this work.
    raw = tmp_path / "raw"
    frame.write.parquet(str(raw))
    iceberg_table = lakehouse.load_table("accelerometer_landing")
    with pytest.raises(ValueError, match="Mismatch in fields"):
        parquet_file_to_data_file(iceberg_table.io, iceberg_table.metadata, str(next(raw.glob("part-*.parquet"))))


# -- session and settings -------------------------------------------------------------------


@pytest.mark.spark
def test_session_is_shared_and_quiet(spark):
    from stedi_assets.lakehouse.engines.spark_engine import SparkEngine

    assert SparkEngine("local[*]", {"spark.sql.shuffle.partitions": "3"}).session is spark
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.ui.enabled") == "false"
    assert conf.get("spark.sql.shuffle.partitions") == str(2 * os.cpu_count())
    assert "spark-log4j2.properties" in conf.get("spark.driver.extraJavaOptions")


_RUN_THEN_LOOK = """
import sys
from dagster import materialize
from pyspark.sql import SparkSession
from stedi_assets.definitions import zone_assets
from stedi_assets.lakehouse.engines import spark_engine
from stedi_assets.orchestration.resources import StediLakehouse, lakehouse_io_manager

def run():
    lakehouse = StediLakehouse(landing_uri=sys.argv[1], lakehouse_uri=sys.argv[2], engine="spark", spark_master="local[1]")
    result = materialize(
        zone_assets, resources={"lakehouse": lakehouse, "io_manager": lakehouse_io_manager},
        selection=["customer_landing", "customer_quarantine"],
    )
    return result.success

if sys.argv[3] == "already-running":
    running = spark_engine.spark_session("local[1]")
    print(run(), SparkSession.getActiveSession() is running)
else:
    print(run(), SparkSession.getActiveSession() is None and spark_engine.dead_jvm_message() is None)
"""


@pytest.mark.spark
@pytest.mark.parametrize("before", ["none", "already-running"])
def test_a_run_stops_the_spark_session_it_started_and_only_that(small_landing, tmp_path, before):
    """The lakehouse resource's teardown closes the engine: the session the run started is stopped
    (cleanly, its JVM not killed); a session the process had started before is left running."""
    completed = subprocess.run(
        [sys.executable, "-c", _RUN_THEN_LOOK, str(small_landing), str(tmp_path / f"lakehouse-{before}"), before],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPOSITORY)}, cwd=tmp_path, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.split() == ["True", "True"], completed.stderr[-2000:]


@pytest.mark.spark
@pytest.mark.parametrize("java_home", [None, "/nonexistent-jdk"])
def test_missing_java_is_one_line(small_landing, tmp_path, java_home):
    environment = {"PATH": str(tmp_path / "empty-bin"), "PYTHONPATH": str(REPOSITORY), "HOME": str(tmp_path)}
    if java_home:
        environment["JAVA_HOME"] = java_home
    completed = subprocess.run(
        [sys.executable, "-m", "stedi_assets.cli", "run", "--engine", "spark",
         "--landing", str(small_landing), "--lakehouse", str(tmp_path / "lakehouse")],
        capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=300,
    )
    assert completed.returncode == 1
    summary = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    # One line per step that failed (the three landing steps), each saying why.
    assert summary
    assert all(line.endswith(": the Spark engine needs Java 17+ ('java' not found on PATH / JAVA_HOME)") for line in summary)
    # The JVM was never started: no Java stack trace, no py4j.
    assert "org.apache" not in completed.stderr and "py4j" not in completed.stderr.lower()
    assert not list((tmp_path / "lakehouse").rglob("*.parquet"))


@pytest.mark.parametrize(
    ("memory_gib", "expected"),
    [
        (24, "6144m"),  # a quarter of the machine
        (2, "1024m"),  # never below Spark's own default
        (256, "8192m"),  # capped: the rest is for the Python workers, the page cache and other processes
    ],
)
def test_local_driver_memory_is_a_share_of_the_machine(memory_gib, expected):
    from stedi_assets.lakehouse.engines.spark_engine import session_settings

    assert session_settings("local[2]", {}, memory_bytes=memory_gib * 2**30)["spark.driver.memory"] == expected
    # The user's setting wins; a cluster's driver keeps Spark's default.
    assert session_settings("local[2]", {"spark.driver.memory": "3g"}, memory_bytes=memory_gib * 2**30)[
        "spark.driver.memory"] == "3g"
    assert "spark.driver.memory" not in session_settings("spark://head:7077", {}, memory_bytes=memory_gib * 2**30)


@pytest.mark.parametrize(
    "master, setting",
    [("local[2]", "spark.driver.memory"),  # locally the tasks run in the driver's heap
     ("spark://head:7077", "spark.executor.memory"), ("yarn", "spark.executor.memory")],
)
def test_the_out_of_memory_line_names_where_the_tasks_run(master, setting):
    from stedi_assets.lakehouse.engines.spark_engine import out_of_memory_message

    line = out_of_memory_message("java.lang.OutOfMemoryError: Java heap space", master)
    assert f", {setting}=" in line and f"raise {setting}, e.g. STEDI_SPARK_CONF={setting}=" in line
    assert "\n" not in line


@pytest.mark.spark
def test_session_driver_memory_is_sized_from_the_machine(spark):
    from stedi_assets.lakehouse.engines.spark_engine import local_driver_memory, machine_memory_bytes

    assert spark.sparkContext.getConf().get("spark.driver.memory") == local_driver_memory(machine_memory_bytes())


@pytest.mark.spark
def test_out_of_memory_is_one_line_naming_the_setting(small_landing, tmp_path):
    # Spark's binaryFile source holds a landing file whole in the JVM heap,
    # with copies: a 200 MB file does not fit a 512 MiB driver (the smallest
    # heap Spark starts with), which dies of an OutOfMemoryError.
    readings = "".join(
        json.dumps({"user": f"u{i % 1000}@x.com", "timestamp": T0 + i, "x": 0.25, "y": -0.5, "z": 1.0}) + "\n"
        for i in range(10_000)
    ).encode()
    with open(small_landing / "accelerometer" / "large.json", "wb") as large:
        for _ in range(200 * 2**20 // len(readings) + 1):
            large.write(readings)
    environment = {
        **os.environ, "PYTHONPATH": str(REPOSITORY), "STEDI_SPARK_CONF": "spark.driver.memory=512m",
        "STEDI_PROFILE": "",
    }
    environment.pop("DAGSTER_HOME", None)
    completed = subprocess.run(
        [sys.executable, "-m", "stedi_assets.cli", "run", "--engine", "spark",
         "--landing", str(small_landing), "--lakehouse", str(tmp_path / "lakehouse")],
        capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=600,
    )

    assert completed.returncode == 1
    summary = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    # One line per failed step, each saying so and naming the setting to raise. The heap
    # usually runs out (the JVM exits, failing every step), sometimes Arrow's buffers
    # (bounded by the heap too) in the one step reading the large file.
    assert summary
    for line in summary:
        assert re.fullmatch(
            r"error: \w+: Spark ran out of memory \((the driver JVM exited with )?[\w.]*OutOfMemory[^)]*"
            r"spark\.driver\.memory=512m\): raise spark\.driver\.memory, e\.g\. STEDI_SPARK_CONF=spark\.driver\.memory=1024m",
            line,
        ), line
    # Not the errors of a JVM that is gone.
    for noise in ("Connection refused", "Py4J", "py4j", "<exception str() failed>", "Traceback"):
        assert noise not in completed.stderr, completed.stderr[-3000:]


def test_spark_settings_from_the_environment():
    lakehouse = build_resources({
        "STEDI_ENGINE": "spark",
        "STEDI_SPARK_MASTER": "spark://cluster:7077",
        "STEDI_SPARK_CONF": "spark.sql.shuffle.partitions=4, spark.driver.memory=2g",
    })["lakehouse"]
    assert lakehouse.spark_conf == {"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "2g"}
    assert build_resources({})["lakehouse"].spark_conf == {}
    assert parse_spark_conf("spark.a=x=y") == {"spark.a": "x=y"}
    with pytest.raises(ValueError, match="'driver.memory=2g' is not a spark"):
        parse_spark_conf("driver.memory=2g")


@pytest.mark.spark
def test_one_bad_record_costs_only_itself_on_both_engines(spark, tmp_path):
    # One fractional time among good readings; one capitalised name beside a
    # space before a colon after the first hundred lines: the same tables on both engines.
    good = [{"user": "a@x.com", "timestamp": T0 + i, "x": 1.0, "y": 0.5, "z": -1.0} for i in range(120)]
    files = [
        write_lines(tmp_path / "fraction.json", [*good[:50], {"user": "a@x.com", "timestamp": 1655564600000.5}]),
        write_lines(tmp_path / "spacing.json", [
            *good, '{"user":"b@x.com","timestamp":%d,"X":9.9,"y" :-0.5,"z":1.0}' % (T0 + 999),
        ]),
    ]

    on_spark, on_polars = read_with_both(files)

    records = as_polars(on_spark.records)
    assert records.height == 50 + 121
    assert records.filter(pl.col("timestamp") == T0 + 999)["x"].to_list() == [9.9]
    assert as_polars(on_spark.quarantine).select("line", "reason").rows() == [(51, "wrong type for timestamp")]
    assert_frame_equal(records, as_polars(on_polars.records))
    assert_frame_equal(as_polars(on_spark.quarantine), as_polars(on_polars.quarantine))


@pytest.mark.spark
def test_landing_files_are_read_once_and_nothing_is_cached_twice(spark, tmp_path):
    from pyspark import StorageLevel

    from stedi_assets.lakehouse.engines.spark_engine import SparkEngine

    good = [{"user": "a@x.com", "timestamp": T0 + i, "x": 1.0, "y": 0.5, "z": -1.0} for i in range(10)]
    clean = [write_lines(tmp_path / "clean.json", good)]
    dirty = [*clean, write_lines(tmp_path / "dirty.json", ['{"user": "a@x.com", "timestamp": "soon"}'])]
    engine = SparkEngine()
    schema = FEED_SCHEMAS["accelerometer"]

    # Nothing quarantined: an empty table of the driver's, computed by no Spark job, never cached.
    read = engine.read_landing(schema, clean, LocalStore())
    native = read.quarantine.to_native()
    assert read.quarantined == 0
    assert native._jdf.queryExecution().optimizedPlan().getClass().getSimpleName() == "LocalRelation"
    assert engine.hold(read.quarantine).to_native().storageLevel == StorageLevel.NONE
    # The parsed rows are cached once; the landing table is held (cached) for its checks and the writer.
    held = engine.hold(nw.from_native(read.records.to_native().distinct()))
    assert held.to_native().storageLevel != StorageLevel.NONE
    engine.release(held)
    engine.release(read.quarantine)
    assert held.to_native().storageLevel == StorageLevel.NONE

    # A quarantine is read from the parsed rows' cache, not cached again.
    read = engine.read_landing(schema, dirty, LocalStore())
    assert read.quarantined == 1
    assert engine.hold(read.quarantine).to_native().storageLevel == StorageLevel.NONE
    assert as_polars(read.quarantine).select("line", "reason").rows() == [(1, "wrong type for timestamp")]
    engine.release(read.quarantine)


@pytest.mark.spark
def test_a_file_far_over_the_bound_is_quarantined_from_its_size(spark, tmp_path):
    # Spark's binaryFile source reads a file whole: a 50 GiB file must never reach it.
    from stedi_assets.lakehouse.engines.spark_engine import SparkEngine

    huge = tmp_path / "huge.json"
    with open(huge, "wb") as handle:
        handle.truncate(50 * 2**30)  # sparse: its size says enough
    good = write_lines(tmp_path / "good.json", [{"user": "a@x.com", "timestamp": T0}])
    files = [str(huge), good]

    read = SparkEngine(max_file_mb=2).read_landing(FEED_SCHEMAS["accelerometer"], files, LocalStore())

    assert as_polars(read.quarantine).rows() == [
        (str(huge), 0, "file larger than 2 MiB after decompression (STEDI_MAX_FILE_MB)", "")
    ]
    assert as_polars(read.records)["user"].to_list() == ["a@x.com"]
    assert (read.records_read, read.quarantined) == (2, 1)


@pytest.mark.spark
def test_a_file_over_the_bound_is_quarantined_alike(spark, tmp_path):
    import gzip

    from stedi_assets.lakehouse.engines.spark_engine import SparkEngine

    bomb = tmp_path / "bomb.json.gz"
    with gzip.open(bomb, "wb") as out:
        for _ in range(3):
            out.write(b" " * 2**20)
    good = write_lines(tmp_path / "good.json", [{"user": "a@x.com", "timestamp": T0}])
    files = [str(bomb), good]

    on_spark = SparkEngine(max_file_mb=2).read_landing(FEED_SCHEMAS["accelerometer"], files, LocalStore())
    on_polars = PolarsEngine(max_file_mb=2).read_landing(FEED_SCHEMAS["accelerometer"], files, LocalStore())

    quarantine = as_polars(on_spark.quarantine)
    assert quarantine.rows() == [(str(bomb), 0, "file larger than 2 MiB after decompression (STEDI_MAX_FILE_MB)", "")]
    assert_frame_equal(quarantine, as_polars(on_polars.quarantine))
    assert_frame_equal(as_polars(on_spark.records), as_polars(on_polars.records))
    assert on_spark.records_read == on_polars.records_read == 2
