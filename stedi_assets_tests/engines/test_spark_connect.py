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

from stedi_assets_tests.engines.spark_servers import (
    assert_runs_print_what_polars_prints,
    assert_tables_equal_polars,
    run_deliveries,
    spark_conf,
    tasks_by_executor,
)

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
    assert_runs_print_what_polars_prints(deliveries)


def test_tables_are_identical_to_the_polars_engines_after_each_delivery(deliveries):
    assert_tables_equal_polars(deliveries)


def test_the_server_ran_the_work(spark_connect_server, deliveries):
    ran = tasks_by_executor(spark_connect_server.event_logs)
    # The server runs local[2]: its driver is its executor.
    assert set(ran) == {"driver"} and ran["driver"] > 0, ran

