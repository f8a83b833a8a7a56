"""The Spark engine on a standalone Spark cluster on loopback, against a plain PySpark script on the same cluster.

Scales the real STEDI data (default 10x, benchmarks/scale_data.py), starts a
master and two one-core workers on 127.0.0.1 (each its own JVM, as the tests
do: stedi_assets_tests/engines/spark_servers.py), then runs, each in its own
process and as an application of that cluster, ``--runs`` times each:

* ``stedi run --full-refresh`` with the Spark engine (every check included);
* benchmarks/plain_pyspark.py: the five rules as a plain PySpark script (no Dagster, no checks).

Both get the same shuffle partitions (2 x the cluster's cores). Prints the
medians side by side; the cluster is stopped by its process groups at the end.

Usage::

    python -m benchmarks.spark_cluster [--factor N] [--runs R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.scale_data import scale_landing
from benchmarks.spark_vs_polars import REAL_LANDING, REPOSITORY, measure
from stedi_assets_tests.engines.spark_servers import spark_conf, start_cluster

WORKERS = 2


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=int, default=10, help="copies of the real data (default 10)")
    parser.add_argument("--runs", type=int, default=1, help="runs R of each command (medians are reported)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="spark-cluster-bench-") as folder:
        root = Path(folder)
        landing = root / "landing"
        scale_landing(REAL_LANDING, args.factor, landing)
        cluster = start_cluster(root / "cluster", workers=WORKERS)
        try:
            partitions = str(2 * WORKERS)
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("STEDI_", "DAGSTER_HOME"))},
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")])),
                "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable,
                "STEDI_SPARK_MASTER": cluster.master_url,
                "STEDI_SPARK_CONF": spark_conf(
                    spark_pyspark_python=sys.executable, spark_sql_shuffle_partitions=partitions,
                    spark_driver_host="127.0.0.1",
                ),
            }
            results: dict[str, list[float]] = {}
            for run in range(args.runs):
                out = root / f"run{run}"
                commands = {
                    "stedi run, spark": [
                        sys.executable, "-m", "stedi_assets.cli", "run", "-q", "--full-refresh", "--engine", "spark",
                        "--landing", str(landing), "--lakehouse", str(out / "spark"),
                    ],
                    "plain pyspark": [
                        sys.executable, "-m", "benchmarks.plain_pyspark", "--landing", str(landing),
                        "--out", str(out / "plain"), "--master", cluster.master_url,
                    ],
                }
                for label, command in commands.items():
                    seconds = measure(command, env, REPOSITORY).seconds
                    results.setdefault(label, []).append(seconds)
                    print(f"run {run + 1}: {label:<18} {seconds:6.1f} s", flush=True)
        finally:
            left = cluster.processes.stop()
            if left:
                print(f"cluster processes still running in groups {left}", file=sys.stderr)

    print(f"\n{args.factor}x on a loopback cluster of {WORKERS} one-core workers, runs: {args.runs}")
    medians = {label: statistics.median(seconds) for label, seconds in results.items()}
    for label, seconds in medians.items():
        print(f"{label:<18} {seconds:10.1f} s")
    print(f"spark engine / plain pyspark: {medians['stedi run, spark'] / medians['plain pyspark']:.2f}x")


if __name__ == "__main__":
    main()
