"""New fields in a feed become columns: the landing table evolves, the trusted tables follow, the curated wait.

Covers the naming and typing rules (``domain.evolution``) on their own, then
whole runs on a small simulated landing zone: a new field in new files
(landing and trusted tables gain it, old rows null; curated tables do not, and
the WARN checks say so; the snapshot, the history and the column schema show
it), a conflicting later value quarantined, a full refresh equal to the
incremental result, the allow-list letting a column into the curated tables,
and the types a new column takes from its first values. The last tests run
the landing step on Spark, and on S3 with the Glue Data Catalog. The fast reader's part is in
engines/test_landing_differential.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from dagster import materialize

from stedi_assets.cli import main
from stedi_assets.definitions import zone_assets
from stedi_assets.domain import evolution
from stedi_assets.domain.schemas import FEED_SCHEMAS
from stedi_assets.domain.simulate import simulate_landing, write_landing
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets_tests.engines.conftest import spark  # noqa: F401 (the session's Spark fixture)
from stedi_assets_tests.s3.conftest import (  # noqa: F401 (the local S3 and Glue server and a bucket on it)
    ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, independent_glue_catalog, s3_bucket, s3_server,
)
from stedi_assets_tests.conftest import check_outcomes, independent_catalog, materialize_all, resources_for, stored_table

ADDRESS = "ann.example@example.com"


# -- the rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "may_be_a_column"),
    [
        ("gyroX", True),
        ("firmware_version", True),
        ("_private", True),
        ("sensor2", True),
        (ADDRESS, False),  # an email address
        ("+1 555 123 4567", False),  # a phone number
        ("15551234567", False),  # a long digit string
        ("tel_15551234567", False),  # a phone number glued to a word
        ("gyro-x", False),  # not a plain identifier
        ("2fast", False),
        ("source_file", False),  # the pipeline's own column of stored records
        ("__line", False),
        ("x" * 65, False),
        ("", False),
    ],
)
def test_only_plain_identifiers_that_do_not_look_personal_may_be_columns(name, may_be_a_column):
    assert evolution.is_column_name(name) is may_be_a_column


@pytest.mark.parametrize(
    ("kinds", "widen", "expected"),
    [
        ({"bigint": 3}, False, "bigint"),
        ({"bigint": 3, "double": 1}, False, "double"),  # fractions widen bigint to double
        ({"boolean": 2}, False, "boolean"),
        ({"string": 2}, False, "string"),
        ({"bigint": 3, "string": 1}, False, "bigint"),  # the kind most values have; the text is quarantined
        ({"bigint": 1, "string": 3}, False, "string"),
        ({"bigint": 1, "boolean": 1}, False, "bigint"),  # a tie goes to numbers
        ({"bigint": 3, "string": 1}, True, "string"),  # only the setting widens to string
        ({"boolean": 1, "double": 1}, True, "string"),
        ({"object": 2}, True, None),  # objects and arrays fit no column
        ({}, False, None),
    ],
)
def test_a_new_column_is_typed_from_its_values(kinds, widen, expected):
    assert evolution.column_type(kinds, widen) == expected


def test_spellings_of_one_name_are_one_column_and_declared_names_add_none():
    schema = FEED_SCHEMAS["accelerometer"]
    added = evolution.new_columns(
        {"gyroX": {"bigint": 1}, "GYROX": {"double": 1}, "X": {"string": 1}, ADDRESS: {"string": 1}}, schema
    )
    assert [(c.name, c.type) for c in added] == [("GYROX", "double")]


# -- whole runs -----------------------------------------------------------------------------


def _simulated(root: Path) -> tuple[Path, dict[str, bytes]]:
    files = simulate_landing(customers=20, seed=7)
    write_landing(root / "landing", files)
    return root / "landing", files


def _readings_with(files: dict[str, bytes], count: int, **extra) -> list[dict]:
    """``count`` readings of the first accelerometer file, made new (x moved), with ``extra`` fields."""
    delivered = next(data for name, data in files.items() if name.startswith("accelerometer/"))
    readings = [json.loads(line) for line in delivered.decode().splitlines()[:count]]
    return [{**r, "x": r["x"] + 1000.5, **{k: v(i) if callable(v) else v for k, v in extra.items()}} for i, r in enumerate(readings)]


def _deliver(landing: Path, name: str, records: list[dict]) -> None:
    (landing / "accelerometer" / name).write_text("".join(json.dumps(r) + "\n" for r in records))


def _columns(root: Path, table: str) -> dict[str, str]:
    schema = independent_catalog(root).load_table(f"stedi.{table}").schema()
    return {f.name: str(f.field_type) for f in schema.fields}


def _accelerometer_refresh(lakehouse: Lakehouse):
    config = {"ops": {"accelerometer_landing": {"config": {"full_refresh": True}}}}
    return materialize(zone_assets, resources=resources_for(lakehouse), run_config=config, raise_on_error=False)


def test_a_new_field_becomes_a_column_of_landing_and_trusted_tables_not_of_curated_ones(tmp_path, capsys):
    landing, files = _simulated(tmp_path)
    root = tmp_path / "lakehouse"
    lakehouse = Lakehouse(landing_uri=str(landing), lakehouse_uri=str(root))
    assert materialize_all(lakehouse).success
    old_rows = stored_table(root, "accelerometer_landing").height

    # A delivery whose readings carry a new field, one named like an email address and one like a phone number.
    _deliver(landing, "accelerometer-new.json", _readings_with(files, 50, gyroX=lambda i: i, **{ADDRESS: 1, "tel_15551234567": 2}))
    result = materialize_all(lakehouse)
    assert result.success

    # Landing and trusted tables gain the column; rows delivered before read it as null.
    for table in ("accelerometer_landing", "accelerometer_trusted"):
        assert _columns(root, table) == {"user": "string", "timestamp": "long", "x": "double", "y": "double", "z": "double", "gyroX": "long"}
    stored = stored_table(root, "accelerometer_landing")
    assert stored.height == old_rows + 50
    assert stored["gyroX"].null_count() == old_rows
    assert sorted(stored["gyroX"].drop_nulls().to_list()) == list(range(50))
    # Names that are not names never become columns; they are still counted, masked.
    events = {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert events["accelerometer_landing"]["unknown_fields"].text == "an***@example.com: 50, tel_15551234567: 50"
    # Curated tables do not take it; the other feeds' tables are untouched.
    for table in ("machine_learning_curated", "customer_curated", "customer_landing", "step_trainer_trusted"):
        assert "gyroX" not in _columns(root, table)

    outcomes = check_outcomes(result)
    assert outcomes[("accelerometer_landing", "new_columns")] is False
    assert outcomes[("customer_landing", "new_columns")] is True
    assert outcomes[("machine_learning_curated", "columns_awaiting_decision")] is False
    assert outcomes[("customer_curated", "columns_awaiting_decision")] is True
    warned = {
        (e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()
    }
    assert warned[("accelerometer_landing", "new_columns")].severity.value == "WARN"
    assert warned[("accelerometer_landing", "new_columns")].metadata["added_columns"].value == "gyroX bigint"
    assert warned[("machine_learning_curated", "columns_awaiting_decision")].metadata["columns_awaiting_decision"].value == "gyroX"

    # Visible history: the snapshot, the materialization, the column schema and `stedi history`.
    snapshot = independent_catalog(root).load_table("stedi.accelerometer_landing").current_snapshot()
    assert snapshot.summary.additional_properties["stedi.added-columns"] == "gyroX bigint"
    assert events["accelerometer_landing"]["added_columns"].text == "gyroX bigint"
    assert events["accelerometer_trusted"]["added_columns"].text == "gyroX bigint"
    shown = [(c.name, c.type) for c in events["accelerometer_landing"]["dagster/column_schema"].schema.columns]
    assert shown[-1] == ("gyroX", "bigint")
    assert main(["history", "accelerometer_landing", "--lakehouse", str(root)]) == 0
    assert "added columns: gyroX bigint" in capsys.readouterr().out

    # A later value the column cannot take is quarantined, with the usual reason.
    _deliver(landing, "accelerometer-later.json", _readings_with(files, 3, gyroX=lambda i: 2.5 if i == 0 else "7", y=9.0))
    result = materialize_all(lakehouse)
    assert result.success and check_outcomes(result)[("accelerometer_landing", "new_columns")] is True
    quarantine = stored_table(root, "accelerometer_quarantine")
    assert quarantine.filter(quarantine["source_file"].str.ends_with("accelerometer-later.json"))["reason"].to_list() == [
        "wrong type for gyroX"
    ]
    assert 7 in stored_table(root, "accelerometer_landing")["gyroX"].to_list()  # "7" reads as a bigint

    # A full refresh gives what the incremental runs gave.
    incremental = {t: stored_table(root, t) for t in ("accelerometer_landing", "accelerometer_quarantine", "accelerometer_trusted")}
    assert _accelerometer_refresh(lakehouse).success
    for table, rows in incremental.items():
        assert stored_table(root, table).equals(rows), table

    # Once decided, the curated table takes it; the customer feed's tables never do.
    decided = Lakehouse(landing_uri=str(landing), lakehouse_uri=str(root), curated_extra_columns=["gyroX"])
    result = _accelerometer_refresh(decided)
    assert result.success
    assert _columns(root, "machine_learning_curated")["gyroX"] == "long"
    assert check_outcomes(result)[("machine_learning_curated", "columns_awaiting_decision")] is True
    assert "gyroX" not in _columns(root, "customer_curated")


LANDING_ONLY = ["accelerometer_landing", "accelerometer_quarantine"]


def _ingest(lakehouse: Lakehouse):
    return materialize(zone_assets, resources=resources_for(lakehouse), selection=LANDING_ONLY, raise_on_error=False)


def _reading(t: int, **extra) -> dict:
    return {"user": "a@test.com", "timestamp": 1_655_564_444_000 + t, "x": 1.0, "y": 0.5, "z": 0.0, **extra}


@pytest.mark.parametrize(
    ("values", "widen", "column", "quarantined"),
    [
        ([1, 2, 1.5], False, "double", 0),  # bigint widens to double when fractions appear
        ([True, False, None], False, "boolean", 0),
        (["a", "b", 3], False, "string", 0),  # the kind most values have; a text column takes a number as text
        ([1, 2, "abc"], False, "long", 1),
        ([1, 2, "abc"], True, "string", 0),  # STEDI_SCHEMA_WIDEN_TO_STRING
    ],
)
def test_a_new_column_takes_its_type_from_its_first_values(tmp_path, values, widen, column, quarantined):
    landing = tmp_path / "landing"
    (landing / "accelerometer").mkdir(parents=True)
    records = [_reading(i, gyroX=value) for i, value in enumerate(values)]
    _deliver(landing, "a.json", records)
    lakehouse = Lakehouse(
        landing_uri=str(landing), lakehouse_uri=str(tmp_path / "lakehouse"), schema_widen_to_string=widen,
        quarantine_max_share=1.0,
    )
    assert _ingest(lakehouse).success
    assert _columns(tmp_path / "lakehouse", "accelerometer_landing")["gyroX"] == column
    assert stored_table(tmp_path / "lakehouse", "accelerometer_quarantine").height == quarantined


@pytest.mark.spark
def test_spark_adds_the_same_columns_as_polars(spark, tmp_path):
    landing = tmp_path / "landing"
    (landing / "accelerometer").mkdir(parents=True)
    _deliver(landing, "a.json", [_reading(i) for i in range(3)])
    lakehouses = {
        engine: Lakehouse(landing_uri=str(landing), lakehouse_uri=str(tmp_path / engine), engine=engine, quarantine_max_share=1.0)
        for engine in ("polars", "spark")
    }
    for lakehouse in lakehouses.values():
        assert _ingest(lakehouse).success
    _deliver(landing, "b.json", [_reading(10 + i, gyroX=i, calibrated=i % 2 == 0, note="n") for i in range(4)])
    _deliver(landing, "c.json", [_reading(20, gyroX=0.5, calibrated=1)])
    tables = {}
    for engine, lakehouse in lakehouses.items():
        assert _ingest(lakehouse).success
        assert _columns(tmp_path / engine, "accelerometer_landing") == {
            "user": "string", "timestamp": "long", "x": "double", "y": "double", "z": "double",
            "calibrated": "boolean", "gyroX": "double", "note": "string",
        }
        tables[engine] = stored_table(tmp_path / engine, "accelerometer_landing")
        quarantine = stored_table(tmp_path / engine, "accelerometer_quarantine")
        assert quarantine["reason"].to_list() == ["wrong type for calibrated"]
    assert tables["spark"].equals(tables["polars"])
    assert tables["spark"]["gyroX"].null_count() == 3


@pytest.mark.s3
def test_glue_sees_a_column_added_on_s3(s3_server, s3_bucket):
    # The Glue Data Catalog's table (what Athena reads) takes the column with the commit (pyiceberg's update_schema).
    lakehouse = Lakehouse(
        landing_uri=s3_bucket.uri("landing"), lakehouse_uri=s3_bucket.uri("lakehouse"),
        glue_database=s3_bucket.name.replace("-", "_"), quarantine_max_share=1.0,
    )
    put = lambda name, records: s3_bucket.put_many(  # noqa: E731
        {f"landing/accelerometer/{name}": "".join(json.dumps(r) + "\n" for r in records).encode()}
    )
    put("a.json", [_reading(i) for i in range(3)])
    assert _ingest(lakehouse).success
    put("b.json", [_reading(10 + i, gyroX=i) for i in range(2)])
    assert _ingest(lakehouse).success

    database = s3_bucket.name.replace("-", "_")
    table = independent_glue_catalog(s3_server.endpoint).load_table(f"{database}.accelerometer_landing")
    assert str(table.schema().find_field("gyroX").field_type) == "long"
    rows = table.scan().to_arrow()
    assert sorted(v for v in rows.column("gyroX").to_pylist() if v is not None) == [0, 1] and rows.num_rows == 5
    glue = boto3.client(
        "glue", endpoint_url=s3_server.endpoint, region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY,
    )
    columns = glue.get_table(DatabaseName=database, Name="accelerometer_landing")["Table"]["StorageDescriptor"]["Columns"]
    assert [(c["Name"], c["Type"]) for c in columns][-1] == ("gyroX", "bigint")
