"""Fixtures of the engine tests: one Spark session for the whole test session, and the
real data set materialized once with each engine."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import ExecuteInProcessResult

from stedi_assets.engines import EngineError
from stedi_assets.resources import StediLakehouse
from stedi_assets_tests.conftest import materialize_all


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """The process's Spark session (one JVM for every Spark test), stopped at the end."""
    try:
        from stedi_assets.engines.spark_engine import spark_session, stop_spark_session

        session = spark_session("local[2]")
    except EngineError as error:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Spark tests: {error}")
        pytest.skip(str(error))
    yield session
    stop_spark_session()


@dataclass(frozen=True)
class Run:
    """One materialization of every table into its own lakehouse."""

    lakehouse: StediLakehouse
    result: ExecuteInProcessResult


def _run(landing: Path, lakehouse_uri: Path, **settings: str) -> Run:
    lakehouse = StediLakehouse(
        landing_uri=str(landing), lakehouse_uri=str(lakehouse_uri), profile="stedi-reference", **settings
    )
    return Run(lakehouse, materialize_all(lakehouse))


def _same_customer(run: Run, lakehouse_uri: Path, engine: str) -> Run:
    """``run``'s tables, with machine_learning_curated recomputed with ml_join=same_customer.

    Only the one table whose rule changes is recomputed; the upstream tables
    are the copied ones (their manifests still name the original files).
    """
    shutil.copytree(run.lakehouse.lakehouse_uri, lakehouse_uri)
    lakehouse = StediLakehouse(
        landing_uri=run.lakehouse.landing_uri, lakehouse_uri=str(lakehouse_uri), profile="stedi-reference",
        engine=engine, ml_join="same_customer",
    )
    return Run(lakehouse, materialize_all(lakehouse, selection="machine_learning_curated"))


@pytest.fixture(scope="session")
def polars_run(stedi_landing, tmp_path_factory) -> Run:
    return _run(stedi_landing, tmp_path_factory.mktemp("polars") / "lakehouse", engine="polars")


@pytest.fixture(scope="session")
def spark_run(stedi_landing, spark, tmp_path_factory) -> Run:
    return _run(stedi_landing, tmp_path_factory.mktemp("spark") / "lakehouse", engine="spark")


@pytest.fixture(scope="session")
def polars_same_customer_run(polars_run, tmp_path_factory) -> Run:
    return _same_customer(polars_run, tmp_path_factory.mktemp("polars_same") / "lakehouse", "polars")


@pytest.fixture(scope="session")
def spark_same_customer_run(spark_run, tmp_path_factory) -> Run:
    return _same_customer(spark_run, tmp_path_factory.mktemp("spark_same") / "lakehouse", "spark")


def _from_consent_date(run: Run, lakehouse_uri: Path, engine: str) -> Run:
    """``run``'s tables, with the tables that depend on the consent scope recomputed with from_consent_date."""
    shutil.copytree(run.lakehouse.lakehouse_uri, lakehouse_uri)
    lakehouse = StediLakehouse(
        landing_uri=run.lakehouse.landing_uri, lakehouse_uri=str(lakehouse_uri), profile="stedi-reference",
        engine=engine, consent_scope="from_consent_date",
    )
    selection = ["accelerometer_trusted", "customer_curated", "step_trainer_trusted", "machine_learning_curated"]
    return Run(lakehouse, materialize_all(lakehouse, selection=selection))


@pytest.fixture(scope="session")
def polars_consent_run(polars_run, tmp_path_factory) -> Run:
    return _from_consent_date(polars_run, tmp_path_factory.mktemp("polars_consent") / "lakehouse", "polars")


@pytest.fixture(scope="session")
def spark_consent_run(spark_run, tmp_path_factory) -> Run:
    return _from_consent_date(spark_run, tmp_path_factory.mktemp("spark_consent") / "lakehouse", "spark")
