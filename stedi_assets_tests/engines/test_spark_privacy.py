"""The privacy rules and their checks on the Spark engine, against the Polars engine.

Covers, on Spark frames and through a whole run on a small landing zone:
emails matched as identities (NFKC, trimmed of Unicode spaces and invisible
characters, lower-cased: the same key as on Polars for every code point),
serial numbers matched as devices, customers held back for
an unreadable customer record (recovered from the quarantine's raw text into
a Spark frame), devices shared with a non-consenting customer, and
consent_scope=from_consent_date; each new check failing on Spark-backed data.
The real data set under from_consent_date is in test_spark_parity.
"""

from __future__ import annotations

import json
from pathlib import Path

import narwhals as nw
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from stedi_assets.domain import rules
from stedi_assets.orchestration.checks import CHECKS, CheckInput
from stedi_assets.lakehouse.catalog import TableNotPublishedError
from stedi_assets.domain.schemas import QUARANTINED_CUSTOMERS, TABLES
from stedi_assets_tests.conftest import check_outcomes, materialize_all, stored_table
from stedi_assets_tests.engines.test_spark_engine import T0, as_polars, customer, spark_frame, write_lines

pytestmark = pytest.mark.spark


def polars_frame(table: str, rows: list[dict]) -> nw.LazyFrame:
    schema = TABLES[table]
    return nw.from_native(pl.LazyFrame([{c: r.get(c) for c in schema.column_names} for r in rows], schema=schema.polars_schema))


def both(spark, table: str, rows: list[dict]) -> tuple[nw.LazyFrame, nw.LazyFrame]:
    return spark_frame(spark, table, rows), polars_frame(table, rows)


def quarantined_on(engine_name: str, records: list[tuple]) -> nw.LazyFrame:
    """Quarantined customer records as (email, lastUpdateDate) or (email, lastUpdateDate, serialNumber)."""
    from stedi_assets.lakehouse.engines.polars_engine import PolarsEngine
    from stedi_assets.lakehouse.engines.spark_engine import SparkEngine

    engine = SparkEngine() if engine_name == "spark" else PolarsEngine()
    rows = [("customer-2.json", line, *(record + (None,))[:3]) for line, record in enumerate(records, 1)]
    return engine.frame(rows, QUARANTINED_CUSTOMERS)


def same(on_spark: nw.LazyFrame, on_polars: nw.LazyFrame) -> pl.DataFrame:
    result = as_polars(on_spark)
    assert_frame_equal(result, as_polars(on_polars))
    return result


def run_check(table: str, name: str, frame: nw.LazyFrame, **fields) -> tuple[bool, dict]:
    check = next(c for c in CHECKS[table] if c.name == name)
    result = check.run(CheckInput(table=table, frame=frame, **fields))
    return result.passed, {k: v.value for k, v in result.metadata.items()}


# -- rules ------------------------------------------------------------------------------


def test_identity_and_held_back_customers_alike(spark):
    landing_rows = [
        customer("ann@x.com", 0, T0),
        customer(" Ann@X.com", 5, None),  # withdrawn under another spelling
        customer("bob@x.com", 0, T0),  # held back: an unreadable record as new as his valid one
        customer("cat@x.com", 5, T0),  # an older unreadable record: superseded
        customer("dan@x.com", 0, T0),
    ]
    quarantine = [("BOB@x.com", T0), ("cat@x.com", T0 + 1), ("eve@x.com", None)]
    results = []
    for engine, landing in zip(("spark", "polars"), both(spark, "customer_landing", landing_rows)):
        results.append(rules.customer_trusted(landing, quarantined_on(engine, quarantine)))
    trusted = same(*results)
    assert trusted["email"].to_list() == ["cat@x.com", "dan@x.com"]

    reading_rows = [{"user": u, "timestamp": T0} for u in ("CAT@X.COM", " dan@x.com", "ann@x.com", "bob@x.com")]
    readings = both(spark, "accelerometer_landing", reading_rows)
    accelerometer = same(*(rules.accelerometer_trusted(r, t) for r, t in zip(readings, results)))
    assert accelerometer["user"].to_list() == ["cat@x.com", "dan@x.com"]


def test_shared_devices_and_consent_scope_alike(spark):
    landing_rows = [
        customer("ann@x.com", 0, T0 + 5, serialNumber="own"),
        customer("bob@x.com", 0, T0, serialNumber="shared"),
        customer("cat@x.com", 0, None, serialNumber="shared"),  # no consent: "shared" is not attributable
    ]
    reading_rows = [{"user": user, "timestamp": T0 + i} for user in ("ann@x.com", "bob@x.com") for i in range(10)]
    step_rows = [{"sensorReadingTime": T0 + i, "serialNumber": s, "distanceFromObject": 1} for s in ("own", "shared") for i in range(10)]
    outputs = []
    for landing, readings, steps in zip(
        both(spark, "customer_landing", landing_rows),
        both(spark, "accelerometer_landing", reading_rows),
        both(spark, "step_trainer_landing", step_rows),
    ):
        trusted = rules.customer_trusted(landing)
        accelerometer = rules.accelerometer_trusted(readings, trusted, from_consent_date=True)
        curated = rules.customer_curated(trusted, accelerometer)
        steps = rules.step_trainer_trusted(steps, curated, landing, trusted, from_consent_date=True)
        outputs.append((accelerometer, curated, steps))
    accelerometer, curated, steps = (same(on_spark, on_polars) for on_spark, on_polars in zip(*outputs))
    # Ann's readings from her consent on; all of Bob's (he consented at T0).
    assert accelerometer.filter(pl.col("user") == "ann@x.com")["timestamp"].to_list() == [T0 + i for i in range(5, 10)]
    assert accelerometer.filter(pl.col("user") == "bob@x.com").height == 10
    assert curated["email"].to_list() == ["ann@x.com", "bob@x.com"]
    # Bob's device is Cat's too, and Cat does not consent: none of its readings.
    assert steps["serialNumber"].unique().to_list() == ["own"]
    assert steps["sensorReadingTime"].to_list() == [T0 + i for i in range(5, 10)]


def test_a_device_a_held_back_customer_names_is_excluded_alike(spark):
    landing_rows = [customer("ann@x.com", 0, T0, serialNumber="own"), customer("dan@x.com", 0, T0, serialNumber="dans")]
    step_rows = [{"sensorReadingTime": T0, "serialNumber": s, "distanceFromObject": 1} for s in ("own", "dans")]
    # Eve's only record is quarantined and names Dan's device, spelled otherwise.
    quarantine = [("eve@x.com", T0, " DANS")]
    outputs = []
    for engine, landing, steps in zip(
        ("spark", "polars"), both(spark, "customer_landing", landing_rows), both(spark, "step_trainer_landing", step_rows)
    ):
        trusted = rules.customer_trusted(landing, quarantined_on(engine, quarantine))
        outputs.append(rules.step_trainer_trusted(
            steps, trusted, landing, trusted, quarantined_customers=quarantined_on(engine, quarantine)
        ))
    assert same(*outputs)["serialNumber"].to_list() == ["own"]


def test_unicode_spellings_are_one_identity_and_one_device_alike(spark):
    landing_rows = [
        customer("anna.müller@test.com", 0, T0, serialNumber="dev-a"),
        customer("\u00a0ANNA.MU\u0308LLER@TEST.COM\u200b", 5, None, serialNumber="dev-a"),  # withdrawn, decomposed ü
        customer("josé@correo.es", 0, T0, serialNumber="dev-j"),
        customer("ＪＯＳＥ\u0301@ＣＯＲＲＥＯ.ＥＳ", 0, T0, serialNumber="dev-j"),  # full-width, the same record
        customer("οδυσσευς@x.gr", 0, T0, serialNumber="DEV-O"),
        customer("kim@x.com", 0, T0, serialNumber="shared"),
        customer("\ufeffLEE@x.com", 0, None, serialNumber=" SHARED\u00a0"),  # no consent: the device is not attributable
    ]
    results = [rules.customer_trusted(landing) for landing in both(spark, "customer_landing", landing_rows)]
    trusted = same(*results)
    assert sorted(trusted.select("email", "serialNumber").rows()) == [
        ("josé@correo.es", "dev-j"), ("kim@x.com", "shared"), ("οδυσσευσ@x.gr", "dev-o")
    ]

    reading_rows = [{"user": u, "timestamp": T0} for u in ("JOSÉ@correo.es\u2060", "ΟΔΥΣΣΕΥΣ@X.GR", "kim@x.com")]
    accelerometer = [rules.accelerometer_trusted(r, t) for r, t in zip(both(spark, "accelerometer_landing", reading_rows), results)]
    curated = [rules.customer_curated(t, a) for t, a in zip(results, accelerometer)]
    step_rows = [{"sensorReadingTime": T0, "serialNumber": s} for s in ("DEV-J", "\u200bdev-o ", "shared", "Shared")]
    steps = same(*(
        rules.step_trainer_trusted(s, c, landing, t)
        for s, c, landing, t in zip(both(spark, "step_trainer_landing", step_rows), curated, both(spark, "customer_landing", landing_rows), results)
    ))
    assert steps["serialNumber"].to_list() == ["dev-j", "dev-o"]


def test_identity_is_the_same_on_both_engines_for_every_code_point(spark, tmp_path):
    # Each code point between letters, and alone: normalization and lower case
    # depend on what stands around a character (composition, the final sigma).
    code_points = [chr(c) for c in range(0x80, 0x110000) if not 0xD800 <= c <= 0xDFFF]
    emails = pl.DataFrame(
        {"email": [f"A{c}Σ@X" for c in code_points] + code_points + [f"\u00a0{c}\u200b" for c in code_points]}
    ).with_row_index("n")
    path = str(tmp_path / "emails.parquet")
    emails.write_parquet(path)

    on_polars = as_polars(rules.with_identity(nw.from_native(pl.scan_parquet(path)), "email"))
    on_spark = as_polars(rules.with_identity(nw.from_native(spark.read.parquet(path)), "email"))

    compared = emails.join(on_polars, on="n", suffix="_polars").join(on_spark, on="n", suffix="_spark")
    differing = compared.filter(pl.col("email_polars") != pl.col("email_spark"))
    assert compared.height == emails.height and differing.height == 0, differing.head(10)


# -- checks on violating Spark frames -----------------------------------------------------


def test_new_checks_fail_on_spark_frames(spark):
    consenting = spark_frame(spark, "customer_trusted", [customer("yes@x.com", 0, T0, serialNumber="s-y")])
    landing = spark_frame(spark, "customer_landing", [
        customer("yes@x.com", 0, T0, serialNumber="s-y"), customer("no@x.com", 0, None, serialNumber="s-y"),
    ])

    inputs = {"customer_landing": landing, "quarantined_customers": quarantined_on("spark", [("YES@x.com", None), (None, T0)])}
    passed, metadata = run_check("customer_trusted", "quarantined_records_attributed", consenting, inputs=inputs)
    assert not passed and metadata["records_without_recoverable_email"] == 1 and metadata["samples"] == "customer-2.json:2"
    passed, metadata = run_check("customer_trusted", "unreadable_records_held_back", consenting, inputs=inputs)
    assert not passed and metadata["customers_held_back"] == 1 and metadata["sample_emails"] == "ye***@x.com"
    passed, metadata = run_check("customer_trusted", "consenting_customers_only", consenting, inputs=inputs)
    assert not passed and metadata["rows_of_customers_with_unreadable_newer_records"] == 1

    steps = spark_frame(spark, "step_trainer_trusted", [{"sensorReadingTime": T0 - 1, "serialNumber": "s-y"}])
    inputs = {"customer_curated": consenting, "customer_landing": landing, "customer_trusted": consenting}
    passed, metadata = run_check("step_trainer_trusted", "curated_devices_only", steps, inputs=inputs)
    assert not passed and metadata["readings_of_devices_of_non_consenting_customers"] == 1
    passed, metadata = run_check(
        "step_trainer_trusted", "readings_within_consent_scope", steps, inputs=inputs, consent_scope="from_consent_date"
    )
    assert not passed and metadata["readings_before_consent"] == 1

    readings = spark_frame(spark, "accelerometer_trusted", [{"user": "YES@x.com", "timestamp": T0 - 1}])
    passed, metadata = run_check(
        "accelerometer_trusted", "readings_within_consent_scope", readings,
        inputs={"customer_trusted": consenting}, consent_scope="from_consent_date",
    )
    assert not passed and metadata == {
        "consent_scope": "from_consent_date", "readings_before_consent": 1, "sample_owners": "ye***@x.com",
    }


# -- a whole run ----------------------------------------------------------------------------


def write_privacy_landing(root: Path) -> Path:
    """Ann withdraws in a record that fails validation, Bob under another spelling (full-width, with a
    no-break and a zero-width space); Cat consents late and is read as CAT@X.COM; Gus shares a device with
    Fay, who does not consent and writes it in upper case with a leading space."""
    ann, bob = customer("ann@x.com", 0, T0), customer("bob@x.com", 0, T0)
    write_lines(root / "customer" / "customer-1.json", [
        ann, {**ann, "lastUpdateDate": T0 + 10, "shareWithResearchAsOfDate": ""},
        bob, customer("\u00a0ＢＯＢ@x.com\u200b", 10, None, serialNumber=bob["serialNumber"]),
        customer("cat@x.com", 0, T0 + 5),
        customer("gus@x.com", 0, T0, serialNumber="shared"), customer("fay@x.com", 0, None, serialNumber=" SHARED"),
    ])
    users = {"ann@x.com": "ann@x.com", "bob@x.com": "bob@x.com", "cat@x.com": "CAT@X.COM", "gus@x.com": "gus@x.com"}
    write_lines(root / "accelerometer" / "accelerometer-1.json", [
        {"user": spelled, "timestamp": T0 + i, "x": 1.0, "y": 0.0, "z": 0.0} for spelled in users.values() for i in range(10)
    ])
    serials = [f"sn-{email}" for email in ("ann@x.com", "bob@x.com", "cat@x.com")] + ["shared"]
    write_lines(root / "step_trainer" / "step_trainer-1.json", [
        {"sensorReadingTime": T0 + i, "serialNumber": serial, "distanceFromObject": 100} for serial in serials for i in range(10)
    ])
    return root


def stored_tables(lakehouse) -> dict[str, pl.DataFrame | None]:
    """Every table as an independent pyiceberg client reads it (None if never published), rows sorted."""
    tables = {}
    for table in TABLES:
        try:
            lakehouse.load_table(table)
        except TableNotPublishedError:
            tables[table] = None
            continue
        frame = stored_table(Path(lakehouse.lakehouse_uri), table)
        tables[table] = frame.sort(frame.columns, nulls_last=True)
    return tables


def test_privacy_rules_in_a_spark_run_match_polars(spark, tmp_path):
    from stedi_assets.lakehouse.lakehouse import Lakehouse

    landing = write_privacy_landing(tmp_path / "landing")
    runs = {}
    for engine in ("spark", "polars"):
        lakehouse = Lakehouse(
            landing_uri=str(landing), lakehouse_uri=str(tmp_path / engine), engine=engine,
            consent_scope="from_consent_date", quarantine_max_share=0.5,
        )
        runs[engine] = (lakehouse, materialize_all(lakehouse))

    lakehouse, result = runs["spark"]
    assert result.success
    tables = stored_tables(lakehouse)
    assert tables["customer_trusted"]["email"].to_list() == ["cat@x.com", "gus@x.com"]
    accelerometer = tables["accelerometer_trusted"]
    assert accelerometer.filter(pl.col("user") == "cat@x.com")["timestamp"].to_list() == [T0 + i for i in range(5, 10)]
    assert set(accelerometer["user"]) == {"cat@x.com", "gus@x.com"}
    assert tables["step_trainer_trusted"]["serialNumber"].unique().to_list() == ["sn-cat@x.com"]
    assert tables["step_trainer_trusted"].height == 5
    failed = {key for key, passed in check_outcomes(result).items() if not passed}
    assert failed == {
        ("customer_landing", "quarantined_records"),
        ("customer_trusted", "unreadable_records_held_back"),
        ("machine_learning_curated", "cross_customer_pairs"),
    }
    assert check_outcomes(result) == check_outcomes(runs["polars"][1])
    polars_tables = stored_tables(runs["polars"][0])
    for table, frame in tables.items():
        if table == "customer_quarantine":
            # The engines' landing readers word the reason for a blank number differently; the rows are the same.
            frame, polars_tables[table] = frame.drop("reason"), polars_tables[table].drop("reason")
        assert_frame_equal(frame, polars_tables[table])


def test_unattributable_customer_record_stops_customer_trusted_on_spark(spark, tmp_path, make_lakehouse):
    landing = write_privacy_landing(tmp_path / "landing")
    with (landing / "customer" / "customer-1.json").open("a") as file:
        file.write(json.dumps({"customerName": "nobody", "lastUpdateDate": T0 + 20}) + "\n")
    lakehouse = make_lakehouse(landing, engine="spark", quarantine_max_share="0.5")

    result = materialize_all(lakehouse, selection=["customer_landing", "customer_quarantine", "customer_trusted"])

    assert not result.success
    assert check_outcomes(result)[("customer_trusted", "quarantined_records_attributed")] is False
    with pytest.raises(TableNotPublishedError):
        lakehouse.load_table("customer_trusted")
