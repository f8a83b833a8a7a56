"""The Spark engine through Spark Connect: ``stedi run`` with ``STEDI_SPARK_REMOTE`` against a Spark
Connect server on 127.0.0.1 (the ``spark_connect_server`` fixture, its own driver in local[2]).

The client process has no JVM: every DataFrame the engine builds is sent to the server, whose
Python workers read the landing files. On the real data set, less two files delivered afterwards,
the tables after each run are identical to the Polars engine's over the same landing folder and
``stedi run`` prints the same summary; the server's event log shows that it ran the work. Not
covered: a hosted Connect server (EMR, Databricks), authentication tokens, TLS.
"""

from __future__ import annotations

import pytest
from polars.testing import assert_frame_equal

from stedi_assets.domain.profiles import STEDI_REFERENCE
from stedi_assets.domain.schemas import TABLES
from stedi_assets_tests.conftest import stored_table
from stedi_assets_tests.engines.spark_servers import run_deliveries, spark_conf, tasks_by_executor

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def deliveries(spark_connect_server, stedi_landing, tmp_path_factory):
    return run_deliveries(
        tmp_path_factory.mktemp("connect-deliveries"), stedi_landing,
        STEDI_SPARK_REMOTE=spark_connect_server.url,
        # A setting a Connect session may change; the server's own (master, memory) are the server's.
        STEDI_SPARK_CONF=spark_conf(spark_sql_shuffle_partitions="4"),
    )


def test_each_run_prints_what_the_polars_engine_prints(deliveries):
    for step in deliveries.steps:
        assert step.spark.returncode == 0, step.spark.stdout + step.spark.stderr
        assert step.spark.stdout == step.polars.stdout
    second = deliveries.steps[1].spark.stdout
    assert "WARN cross_customer_pairs" in second and "OK: every table published" in second
    assert next(line for line in second.splitlines() if line.startswith("customer_landing ")).endswith("up to date")


def test_tables_are_identical_to_the_polars_engines_after_each_delivery(deliveries):
    assert set(deliveries.tables_after_first) == set(TABLES)
    for table, (polars_table, spark_table) in deliveries.tables_after_first.items():
        assert_frame_equal(spark_table, polars_table)
    for table in TABLES:
        spark_table = stored_table(deliveries.spark_lakehouse, table)
        assert spark_table.height == STEDI_REFERENCE.get(table, 0), table
        assert_frame_equal(spark_table, stored_table(deliveries.polars_lakehouse, table))


def test_the_server_ran_the_work(spark_connect_server, deliveries):
    ran = tasks_by_executor(spark_connect_server.event_logs)
    # The server runs local[2]: its driver is its executor.
    assert set(ran) == {"driver"} and ran["driver"] > 0, ran

