"""Dagster's own floor: the wall time of materializing eight no-op assets from the command line.

Whatever the lakehouse does, a ``dagster asset materialize`` of a graph shaped
like it (eight assets, same dependencies) costs at least this much: process
start, imports, loading the code location, the run and its event log.

Usage::

    python -m benchmarks.dagster_floor [--runs R]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

# Eight assets with the lakehouse's dependency graph; each does nothing.
_FLOOR_MODULE = '''
from dagster import Definitions, asset, in_process_executor


@asset
def customer_landing() -> None: ...


@asset
def accelerometer_landing() -> None: ...


@asset
def step_trainer_landing() -> None: ...


@asset(deps=[customer_landing])
def customer_trusted() -> None: ...


@asset(deps=[accelerometer_landing, customer_trusted])
def accelerometer_trusted() -> None: ...


@asset(deps=[customer_trusted, accelerometer_trusted])
def customer_curated() -> None: ...


@asset(deps=[step_trainer_landing, customer_curated])
def step_trainer_trusted() -> None: ...


@asset(deps=[step_trainer_trusted, accelerometer_trusted])
def machine_learning_curated() -> None: ...


defs = Definitions(
    assets=[
        customer_landing, accelerometer_landing, step_trainer_landing, customer_trusted,
        accelerometer_trusted, customer_curated, step_trainer_trusted, machine_learning_curated,
    ],
    executor=in_process_executor,
)
'''


def measure_floor(runs: int = 5) -> list[float]:
    """Wall times (s) of ``runs`` materializations of the no-op graph, each in a new process.

    One more run comes first and is not counted: it creates the instance's storage.
    """
    with tempfile.TemporaryDirectory(prefix="dagster-floor-") as folder:
        root = pathlib.Path(folder)
        module = root / "floor_assets.py"
        module.write_text(_FLOOR_MODULE)
        home = root / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = {**os.environ, "DAGSTER_HOME": str(home)}
        command = [sys.executable, "-m", "dagster", "asset", "materialize", "-f", str(module), "--select", "*"]
        timings = []
        for _ in range(runs + 1):
            started = time.perf_counter()
            subprocess.run(command, env=env, cwd=root, check=True, capture_output=True)
            timings.append(time.perf_counter() - started)
    return timings[1:]


def main(argv: list[str] | None = None) -> None:
    """Command line: print each run's wall time and the median."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="number of materializations R")
    args = parser.parse_args(argv)
    timings = measure_floor(args.runs)
    print("runs (s):", " ".join(f"{t:.2f}" for t in timings))
    print(f"median dagster floor (s): {statistics.median(timings):.2f}")


if __name__ == "__main__":
    main()
