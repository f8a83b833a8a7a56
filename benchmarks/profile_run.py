"""Where a materialization's time goes: per asset, in checks, and the compute without Dagster start-up.

Materializes every asset in this process (so imports and process start are
not counted) over a scaled landing zone, timing each step and every check
evaluation, and reports:

- the compute: wall time of the materialization itself;
- the checks' share: time spent evaluating checks over the rest of the
  materialization (the target is at most 25% at 100x);
- with ``--daily``: the same for the run after the daily delivery (one new
  accelerometer file of 10,000 readings, ``bench.DAILY_READINGS``) on the
  lakehouse the first run built, and the time of each check.

Peak memory is measured per process by ``bench.py``.

Usage::

    python -m benchmarks.profile_run --size 100 [--engine polars] [--runs 3] [--work .bench] [--spark-conf k=v,...] [--daily]
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import statistics
import tempfile
import time

from benchmarks.bench import DAILY_READINGS, default_source, scaled_landing
from benchmarks.scale_data import linked_copy, new_delivery


def profile_once(
    landing: pathlib.Path, engine: str, spark_conf: dict[str, str] | None = None, daily: bool = False
) -> dict[str, object]:
    """One materialization of every asset over ``landing``; with ``daily``, the figures are those of a second
    one after the daily delivery, on the lakehouse the first one built (in a copy of ``landing``)."""
    from dagster import materialize

    from stedi_assets.orchestration import checks
    from stedi_assets.definitions import zone_assets
    from stedi_assets.lakehouse.lakehouse import Lakehouse
    from stedi_assets.orchestration.resources import StediLakehouse
    from stedi_assets.orchestration.resources import lakehouse_io_manager

    check_seconds: dict[str, float] = collections.defaultdict(float)
    each_check: dict[str, float] = collections.defaultdict(float)
    check_jobs: dict[str, int] = collections.defaultdict(int)
    original_run = checks.Check.run

    def timed_run(self, check_input):
        start, jobs = time.perf_counter(), spark_jobs(engine)
        try:
            return original_run(self, check_input)
        finally:
            seconds = time.perf_counter() - start
            check_seconds[check_input.table] += seconds
            each_check[f"{check_input.table}.{self.name}"] += seconds
            check_jobs[check_input.table] += spark_jobs(engine) - jobs

    def materialize_all(lakehouse):
        return materialize(
            zone_assets,
            resources={"lakehouse": StediLakehouse.configured_as(lakehouse), "io_manager": lakehouse_io_manager},
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        )

    checks.Check.run = timed_run
    try:
        with tempfile.TemporaryDirectory(prefix="stedi-profile-") as folder:
            if daily:
                copy = pathlib.Path(folder) / "landing"
                linked_copy(landing, copy)
                landing = copy
            lakehouse = Lakehouse(
                landing_uri=str(landing), lakehouse_uri=f"{folder}/lakehouse", engine=engine, spark_conf=spark_conf or {}
            )
            if daily:
                assert materialize_all(lakehouse).success
                new_delivery(landing, DAILY_READINGS, 0)
                for found in (check_seconds, each_check, check_jobs):
                    found.clear()
            start, jobs = time.perf_counter(), spark_jobs(engine)
            result = materialize_all(lakehouse)
            wall, jobs = time.perf_counter() - start, spark_jobs(engine) - jobs
    finally:
        checks.Check.run = original_run
    assert result.success
    steps = {
        event.step_key: event.event_specific_data.duration_ms / 1000
        for event in result.all_events
        if event.event_type_value == "STEP_SUCCESS"
    }
    return {
        "wall_s": wall, "steps_s": steps, "checks_s": dict(check_seconds), "jobs": jobs, "check_jobs": dict(check_jobs),
        "each_check_s": dict(each_check),
    }


def spark_jobs(engine: str, spark_conf: dict[str, str] | None = None) -> int:
    """Spark jobs started so far in this process (0 for other engines); starts the session if needed."""
    if engine != "spark":
        return 0
    from stedi_assets.lakehouse.engines.spark_engine import spark_session

    return len(spark_session(conf=spark_conf).sparkContext.statusTracker().getJobIdsForGroup())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100, help="scale factor of the landing zone")
    parser.add_argument("--engine", default="polars")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--spark-conf", default="", help="Spark engine: spark.* settings, as STEDI_SPARK_CONF")
    parser.add_argument("--source", type=pathlib.Path, default=None, help="the 1x landing zone")
    parser.add_argument("--work", type=pathlib.Path, default=pathlib.Path(".bench"))
    parser.add_argument("--daily", action="store_true", help="profile the run after the daily delivery")
    args = parser.parse_args(argv)

    landing = scaled_landing(args.work, args.source or default_source(), args.size)
    from stedi_assets.settings import parse_spark_conf

    spark_conf = parse_spark_conf(args.spark_conf) if args.spark_conf else {}
    spark_jobs(args.engine, spark_conf)  # the session starts with these settings
    runs = [profile_once(landing, args.engine, spark_conf, args.daily) for _ in range(args.runs)]
    walls = [r["wall_s"] for r in runs]
    median_run = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]
    checks_total = sum(median_run["checks_s"].values())

    print(f"{args.size}x {args.engine}{', after the daily delivery' if args.daily else ''}: materialization {statistics.median(walls):.2f} s (median of {len(runs)}: "
          + ", ".join(f"{w:.2f}" for w in walls) + ")")
    print(f"{'step':<26} {'step s':>8} {'checks s':>9} {'check jobs':>10}")
    for step, seconds in median_run["steps_s"].items():
        print(f"{step:<26} {seconds:>8.2f} {median_run['checks_s'].get(step, 0.0):>9.2f}"
              f" {median_run['check_jobs'].get(step, 0):>10}")
    if args.engine == "spark":
        print(f"Spark jobs: {median_run['jobs']}, of them in checks: {sum(median_run['check_jobs'].values())}")
    print(f"{'check':<60} {'s':>8}")
    for name, seconds in sorted(median_run["each_check_s"].items(), key=lambda item: -item[1]):
        print(f"{name:<60} {seconds:>8.2f}")
    without_checks = median_run["wall_s"] - checks_total
    print(f"checks: {checks_total:.2f} s, {checks_total / without_checks:.0%} on top of the rest ({without_checks:.2f} s)")


if __name__ == "__main__":
    main()
