"""Fixtures of the engine tests: one Spark session for the whole test session, and the
real data set materialized once with each engine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from dagster import ExecuteInProcessResult

from stedi_assets.lakehouse.engines import EngineError
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets_tests.conftest import materialize_all, stored_table


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """The process's Spark session (one JVM for every Spark test), stopped at the end."""
    try:
        from stedi_assets.lakehouse.engines.spark_engine import spark_session, stop_spark_session

        session = spark_session("local[2]")
    except EngineError as error:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Spark tests: {error}")
        pytest.skip(str(error))
    yield session
    stop_spark_session()


@dataclass(frozen=True)
class Run:
    """One materialization of tables into a lakehouse, and the snapshot it committed of each table."""

    lakehouse: Lakehouse
    result: ExecuteInProcessResult
    snapshots: dict[str, int]

    def stored(self, table: str) -> pl.DataFrame:
        """The table as this run left it (an independent pyiceberg read at the run's snapshot)."""
        frame = stored_table(Path(self.lakehouse.lakehouse_uri), table, self.snapshots[table])
        return frame.sort(frame.columns, nulls_last=True)


def _snapshots(result: ExecuteInProcessResult) -> dict[str, int]:
    return {
        e.asset_key.path[-1]: int(e.materialization.metadata["iceberg/snapshot_id"].value)
        for e in result.get_asset_materialization_events()
    }


def _run(landing: Path, lakehouse_uri: Path, **settings: str) -> Run:
    lakehouse = Lakehouse(
        landing_uri=str(landing), lakehouse_uri=str(lakehouse_uri), profile="stedi-reference", **settings
    )
    result = materialize_all(lakehouse)
    return Run(lakehouse, result, _snapshots(result))


def _same_customer(run: Run, engine: str) -> Run:
    """``run``'s tables, with machine_learning_curated recomputed with ml_join=same_customer.

    Only the one table whose rule changes is recomputed, in the same
    lakehouse: a new snapshot of it. ``run`` keeps reading its own snapshot.
    """
    lakehouse = Lakehouse(
        landing_uri=run.lakehouse.landing_uri, lakehouse_uri=run.lakehouse.lakehouse_uri, profile="stedi-reference",
        engine=engine, ml_join="same_customer",
    )
    result = materialize_all(lakehouse, selection="machine_learning_curated")
    return Run(lakehouse, result, {**run.snapshots, **_snapshots(result)})


@pytest.fixture(scope="session")
def polars_run(stedi_landing, tmp_path_factory) -> Run:
    return _run(stedi_landing, tmp_path_factory.mktemp("polars") / "lakehouse", engine="polars")


@pytest.fixture(scope="session")
def spark_run(stedi_landing, spark, tmp_path_factory) -> Run:
    return _run(stedi_landing, tmp_path_factory.mktemp("spark") / "lakehouse", engine="spark")


@pytest.fixture(scope="session")
def polars_same_customer_run(polars_run) -> Run:
    return _same_customer(polars_run, "polars")


@pytest.fixture(scope="session")
def spark_same_customer_run(spark_run) -> Run:
    return _same_customer(spark_run, "spark")


def _from_consent_date(run: Run, engine: str) -> Run:
    """``run``'s tables, with the tables that depend on the consent scope recomputed with from_consent_date.

    In the same lakehouse, as new snapshots. It reads customer_trusted and the
    landing tables of ``run``, which no other recomputation changes; the
    fixtures below order it after the same_customer one, whose
    machine_learning_curated it does not read.
    """
    lakehouse = Lakehouse(
        landing_uri=run.lakehouse.landing_uri, lakehouse_uri=run.lakehouse.lakehouse_uri, profile="stedi-reference",
        engine=engine, consent_scope="from_consent_date",
    )
    selection = ["accelerometer_trusted", "customer_curated", "step_trainer_trusted", "machine_learning_curated"]
    result = materialize_all(lakehouse, selection=selection)
    return Run(lakehouse, result, {**run.snapshots, **_snapshots(result)})


@pytest.fixture(scope="session")
def polars_consent_run(polars_run, polars_same_customer_run) -> Run:
    return _from_consent_date(polars_run, "polars")


@pytest.fixture(scope="session")
def spark_consent_run(spark_run, spark_same_customer_run) -> Run:
    return _from_consent_date(spark_run, "spark")


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory) -> Iterator[object]:
    """A standalone Spark cluster on 127.0.0.1: a master and two workers of one core and 1 GiB each,
    each a JVM of its own; stopped at the end by their process groups, leaving no process behind."""
    from stedi_assets_tests.engines.spark_servers import start_cluster

    cluster = start_cluster(tmp_path_factory.mktemp("spark-cluster"))
    yield cluster
    left = cluster.processes.stop()
    assert left == [], f"processes of the cluster still running in groups {left}; logs in {cluster.logs}"


@pytest.fixture(scope="module")
def spark_connect_server(tmp_path_factory) -> Iterator[object]:
    """A Spark Connect server on 127.0.0.1 (its driver in local[2]); stopped at the end by its process group."""
    from stedi_assets_tests.engines.spark_servers import start_connect_server

    server = start_connect_server(tmp_path_factory.mktemp("spark-connect"))
    yield server
    left = server.processes.stop()
    assert left == [], f"processes of the Connect server still running in groups {left}; logs in {server.logs}"
