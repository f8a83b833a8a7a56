"""Wall time and peak memory of the Spark engine against Polars and against plain PySpark.

Materializes every table of the same landing zone (default: the real STEDI
data) three ways, each in its own process, ``--runs`` times each:

* ``stedi run`` with the Polars engine;
* ``stedi run`` with the Spark engine (every check included);
* benchmarks/plain_pyspark.py: the five rules as a plain PySpark script (no Dagster, no checks).

Peak memory is the largest sum of the resident set sizes of the process tree
(Python and, for Spark, the JVM it starts), polled every 50 ms. Prints the
medians and the ratio Spark engine / plain PySpark.

Usage::

    python -m benchmarks.spark_vs_polars [--landing DIR] [--runs R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

REPOSITORY = Path(__file__).resolve().parents[1]
REAL_LANDING = REPOSITORY.parent / "shared" / "stedi" / "landing"
_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_rss_bytes: int


def measure(command: list[str], env: dict[str, str], cwd: Path) -> Measurement:
    """Run ``command`` to completion; its wall time and the peak RSS of its process tree."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        peak = max(peak, _tree_rss(root))
        time.sleep(_POLL_SECONDS)
    seconds = time.perf_counter() - started
    output = process.stdout.read().decode(errors="replace") if process.stdout else ""
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}:\n{output[-3000:]}")
    return Measurement(seconds, peak)


def _tree_rss(root: psutil.Process) -> int:
    total = 0
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def commands(landing: Path, out: Path) -> dict[str, list[str]]:
    stedi = [sys.executable, "-m", "stedi_assets.cli", "run", "--landing", str(landing)]
    return {
        "stedi run, polars": [*stedi, "--engine", "polars", "--lakehouse", str(out / "polars")],
        "stedi run, spark": [*stedi, "--engine", "spark", "--lakehouse", str(out / "spark")],
        "plain pyspark": [
            sys.executable, "-m", "benchmarks.plain_pyspark", "--landing", str(landing), "--out", str(out / "plain"),
        ],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", type=Path, default=REAL_LANDING, help="landing zone (default: the real data)")
    parser.add_argument("--runs", type=int, default=3, help="runs R of each command (medians are reported)")
    args = parser.parse_args(argv)

    results: dict[str, list[Measurement]] = {}
    with tempfile.TemporaryDirectory(prefix="spark-vs-polars-") as folder:
        root = Path(folder)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")])),
        }
        env.pop("DAGSTER_HOME", None)  # an ephemeral Dagster instance: no run storage to write
        for run in range(args.runs):
            # Interleaved, so that a noisy minute on the machine hits every command alike.
            for label, command in commands(args.landing.resolve(), root / f"run{run}").items():
                measurement = measure(command, env, REPOSITORY)
                results.setdefault(label, []).append(measurement)
                print(f"run {run + 1}: {label:<18} {measurement.seconds:6.1f} s  {measurement.peak_rss_bytes / 2**20:7.0f} MiB",
                      flush=True)

    print(f"\nlanding: {args.landing}  runs: {args.runs}  cores: {os.cpu_count()}")
    print(f"{'':<18} {'median wall':>12} {'median peak RSS':>16}")
    medians = {}
    for label, measurements in results.items():
        seconds = statistics.median(m.seconds for m in measurements)
        peak = statistics.median(m.peak_rss_bytes for m in measurements)
        medians[label] = seconds
        print(f"{label:<18} {seconds:10.1f} s {peak / 2**20:12.0f} MiB")
    ratio = medians["stedi run, spark"] / medians["plain pyspark"]
    print(f"\nspark engine / plain pyspark: {ratio:.2f}x (target: within 1.3x)")
    print(f"spark engine / polars engine: {medians['stedi run, spark'] / medians['stedi run, polars']:.1f}x")


if __name__ == "__main__":
    main()
