"""Parity of the Spark engine with the Polars engine on the real STEDI data.

Both engines materialize the whole graph once per test session (see conftest);
every table must hold the same rows (as multisets) with the same column names
and types, the reference counts, and the same check outcomes. Also covers
ml_join=same_customer and consent_scope=from_consent_date, that Spark's files
are committed to Iceberg with the declared types, and that each engine reads
the other's data files. Not covered: Spark on a cluster or on S3 (s3a://).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from stedi_assets.lakehouse.tables import current_data_files, data_file_paths
from stedi_assets.domain.profiles import STEDI_REFERENCE
from stedi_assets.domain.schemas import FEEDS, TABLES, ZONE_TABLES
from stedi_assets_tests.conftest import check_outcomes, published_rows

pytestmark = pytest.mark.spark


def stored_table(run, table: str) -> pl.DataFrame:
    """The table as the run committed it, read by an independent pyiceberg client, rows in a canonical order."""
    return run.stored(table)


@pytest.mark.parametrize("table", list(TABLES))
def test_every_table_is_identical(polars_run, spark_run, table):
    spark_table = stored_table(spark_run, table)

    assert spark_table.schema == TABLES[table].polars_schema
    assert spark_table.height == STEDI_REFERENCE.get(table, 0)  # the real data set quarantines nothing
    assert_frame_equal(spark_table, stored_table(polars_run, table))


def test_reference_counts_and_check_outcomes(polars_run, spark_run):
    assert spark_run.result.success
    assert published_rows(spark_run.result) == {
        **{name: STEDI_REFERENCE[name] for name in ZONE_TABLES},
        **{f"{feed}_quarantine": 0 for feed in FEEDS},
    }
    outcomes = check_outcomes(spark_run.result)
    # As on Polars: the time-only join pairs readings of different customers, reported as a warning.
    assert {key for key, passed in outcomes.items() if not passed} == {
        ("machine_learning_curated", "cross_customer_pairs")
    }
    assert outcomes == check_outcomes(polars_run.result)


def test_check_metadata_is_the_same(polars_run, spark_run):
    def metadata(result):
        return {
            (e.asset_key.path[-1], e.check_name): {k: v.value for k, v in e.metadata.items()}
            for e in result.get_asset_check_evaluations()
        }

    assert metadata(spark_run.result) == metadata(polars_run.result)


def test_table_metadata_names_the_engine(spark_run):
    engines = {
        e.asset_key.path[-1]: e.materialization.metadata["engine"].value
        for e in spark_run.result.get_asset_materialization_events()
        if e.asset_key.path[-1] in ZONE_TABLES
    }
    assert engines == {table: "spark" for table in ZONE_TABLES}


def test_same_customer_join(polars_same_customer_run, spark_same_customer_run):
    assert spark_same_customer_run.result.success
    assert published_rows(spark_same_customer_run.result) == {"machine_learning_curated": 40_981}
    assert all(check_outcomes(spark_same_customer_run.result).values())
    assert_frame_equal(
        stored_table(spark_same_customer_run, "machine_learning_curated"),
        stored_table(polars_same_customer_run, "machine_learning_curated"),
    )


def test_spark_part_files_are_committed_with_the_declared_types(spark_run):
    for table in TABLES:
        iceberg_table = spark_run.lakehouse.load_table(table)
        snapshot = iceberg_table.metadata.snapshot_by_id(spark_run.snapshots[table])
        assert int(snapshot.summary["total-records"]) == STEDI_REFERENCE.get(table, 0)
        files = [f.file_path for f in current_data_files(iceberg_table, snapshot.snapshot_id)]
        names = [uri.rsplit("/", 1)[-1] for uri in files]
        assert names and all(n.startswith("part-") and n.endswith(".parquet") for n in names)
        # Spark's own files (_SUCCESS, checksums) are not left beside them.
        folder = Path(files[0]).parent
        assert sorted(p.name for p in folder.iterdir()) == sorted(names)
        assert pl.read_parquet(files).schema == TABLES[table].polars_schema


def test_spark_reads_the_tables_polars_wrote(polars_run, spark_run):
    from stedi_assets.lakehouse.engines.spark_engine import SparkEngine

    engine = SparkEngine()
    for table in ("customer_trusted", "machine_learning_curated"):
        files = data_file_paths(polars_run.lakehouse.load_table(table), polars_run.snapshots[table])
        scanned = engine.scan(files, TABLES[table], polars_run.lakehouse.store_for(files[0]))
        frame = pl.from_arrow(scanned.to_native().toArrow())
        assert_frame_equal(frame.sort(frame.columns, nulls_last=True), stored_table(spark_run, table))


def test_consent_scope_from_consent_date(polars_consent_run, spark_consent_run):
    assert spark_consent_run.result.success
    assert published_rows(spark_consent_run.result) == {
        "accelerometer_trusted": 32_025, "customer_curated": 464, "step_trainer_trusted": 11_297,
        "machine_learning_curated": 34_253,
    }
    outcomes = check_outcomes(spark_consent_run.result)
    assert outcomes == check_outcomes(polars_consent_run.result)
    assert {key for key, passed in outcomes.items() if not passed} == {("machine_learning_curated", "cross_customer_pairs")}
    for table in ("accelerometer_trusted", "customer_curated", "step_trainer_trusted", "machine_learning_curated"):
        assert_frame_equal(stored_table(spark_consent_run, table), stored_table(polars_consent_run, table))
