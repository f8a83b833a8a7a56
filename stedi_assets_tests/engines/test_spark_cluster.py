"""The Spark engine on a standalone Spark cluster: a master and two workers on 127.0.0.1, each a JVM
of its own (the ``spark_cluster`` fixture), driven by ``stedi run`` with ``STEDI_SPARK_MASTER``.

On the real data set, less two files delivered afterwards: after each run the tables (landing,
trusted, curated and quarantine) are identical to the Polars engine's over the same landing folder,
and ``stedi run`` prints the same summary (rows and check outcomes). The work is shown to have run
on the executors from Spark's own event log; an executor killed (SIGKILL) while it runs a landing
step's read is replaced and its tasks run again, the run publishing every table equal to the Polars
engine's; and a node whose Python cannot import the package fails the run with one line. Not covered:
YARN, Kubernetes and S3 from the executors (no hadoop-aws jars here).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from stedi_assets.domain.schemas import TABLES
from stedi_assets_tests.conftest import stored_table
from stedi_assets_tests.engines.spark_servers import (
    assert_runs_print_what_polars_prints,
    assert_tables_equal_polars,
    executors_removed,
    run_deliveries,
    spark_conf,
    stedi_run,
    stedi_run_started,
    tasks_by_executor,
)

pytestmark = pytest.mark.spark

# Few shuffle partitions: Spark's 200 make thousands of tiny tasks on two cores.
SHUFFLE_PARTITIONS = "4"


@pytest.fixture(scope="module")
def event_logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("spark-events")


@pytest.fixture(scope="module")
def deliveries(spark_cluster, stedi_landing, event_logs, tmp_path_factory):
    conf = spark_conf(
        spark_pyspark_python=sys.executable,  # the nodes' Python: this one, with the package installed
        spark_sql_shuffle_partitions=SHUFFLE_PARTITIONS, spark_driver_host="127.0.0.1",
        spark_eventLog_enabled="true", spark_eventLog_dir=event_logs.as_uri(), spark_eventLog_compress="false",
    )
    return run_deliveries(
        tmp_path_factory.mktemp("cluster-deliveries"), stedi_landing,
        STEDI_SPARK_MASTER=spark_cluster.master_url, STEDI_SPARK_CONF=conf,
    )


def test_each_run_prints_what_the_polars_engine_prints(deliveries):
    assert_runs_print_what_polars_prints(deliveries)


def test_tables_are_identical_to_the_polars_engines_after_each_delivery(deliveries):
    assert_tables_equal_polars(deliveries)


def test_the_work_ran_on_the_executors(spark_cluster, deliveries, event_logs):
    ran = tasks_by_executor(event_logs)
    # Each worker's executor ran tasks; the driver ran none.
    assert ran["driver"] == 0
    assert len(ran) == 2 and min(ran.values()) > 0, ran
    apps = spark_cluster.status()["completedapps"]
    assert [(app["name"], app["state"]) for app in apps] == [("stedi", "FINISHED")] * 2, apps


def test_a_node_without_the_package_fails_the_run_with_one_line(spark_cluster, stedi_landing, tmp_path):
    # A Python with every dependency but not the package: the environment's site-packages on its path,
    # without the site machinery that installs the editable package's finder (-S).
    site_packages = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "pyspark").is_dir())
    python = tmp_path / "python-without-stedi"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    python.chmod(0o755)
    conf = spark_conf(
        spark_pyspark_python=str(python), spark_executorEnv_PYTHONPATH=site_packages,
        spark_sql_shuffle_partitions=SHUFFLE_PARTITIONS, spark_driver_host="127.0.0.1",
        spark_task_maxFailures="1",
    )
    lakehouse = tmp_path / "lakehouse"
    result = stedi_run(
        stedi_landing, lakehouse, STEDI_ENGINE="spark", STEDI_SPARK_MASTER=spark_cluster.master_url,
        STEDI_SPARK_CONF=conf,
    )

    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3 and all(
        line.endswith(
            "Spark's Python workers cannot import stedi_assets (ModuleNotFoundError): install stedi_assets with its "
            "'spark' extra into the Python of every node of the cluster (the one spark.pyspark.python or "
            "PYSPARK_PYTHON names)"
        )
        for line in errors
    ), result.stderr
    assert "Traceback" not in result.stderr
    # Nothing was published.
    assert [line.split()[1] for line in result.stdout.splitlines()[2:]] == ["-"] * len(TABLES)


def executors_running_a_task(workdir: Path) -> list[tuple[str, str]]:
    """(application id, executor id) of each executor that has started a task, from the workers' executor logs
    (those of earlier applications too)."""
    found = []
    for stderr in sorted(workdir.glob("worker-*/app-*/*/stderr")):
        if "Running task" in stderr.read_text(errors="replace"):
            found.append((stderr.parent.parent.name, stderr.parent.name))
    return found


def executor_pid(application: str, executor: str) -> int | None:
    """The process id of an executor's JVM, by its command line."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [word.decode(errors="replace") for word in argv]
        if "org.apache.spark.executor.CoarseGrainedExecutorBackend" in words and application in words:
            if words[words.index("--executor-id") + 1] == executor:
                return int(entry.name)
    return None


def test_an_executor_killed_during_a_landing_read_is_replaced_and_the_tables_come_out_right(
    spark_cluster, deliveries, tmp_path
):
    events = tmp_path / "events"
    events.mkdir()
    conf = spark_conf(
        spark_pyspark_python=sys.executable, spark_sql_shuffle_partitions=SHUFFLE_PARTITIONS,
        spark_driver_host="127.0.0.1", spark_eventLog_enabled="true", spark_eventLog_dir=events.as_uri(),
        spark_eventLog_compress="false",
    )
    lakehouse = tmp_path / "lakehouse"
    run = stedi_run_started(
        deliveries.landing, lakehouse, STEDI_ENGINE="spark", STEDI_SPARK_MASTER=spark_cluster.master_url,
        STEDI_SPARK_CONF=conf,
    )
    workdir = spark_cluster.logs.parent
    # The first tasks of a run are its landing steps' reads: kill the executor running one, at once.
    deadline = time.monotonic() + 300
    killed = None
    while killed is None and run.poll() is None and time.monotonic() < deadline:
        for found in executors_running_a_task(workdir):
            pid = executor_pid(*found)  # None for an earlier application's executor, long gone
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed = found
                break
        time.sleep(0.05)
    out, err = run.communicate(timeout=900)

    assert killed is not None, "no executor ran a task while the run lasted"
    # Spark saw the executor lost and ran its tasks again on another (or a new) executor.
    assert executors_removed(events) == [killed[1]]
    assert run.returncode == 0, out + err
    assert "OK: every table published" in out
    for table in TABLES:
        assert_frame_equal(stored_table(lakehouse, table), stored_table(deliveries.polars_lakehouse, table))
