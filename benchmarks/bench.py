"""The growth table: ``stedi run`` beside the DuckDB reference (and plain PySpark) on landing zones N times the real one.

For each size the script builds (or reuses) a scaled landing zone under the work
folder, then alternates ``stedi run`` for each engine, the DuckDB reference and,
with ``--spark``, the Spark engine and the plain PySpark script, each in its own
process, ``--runs`` times. It records each child's wall time and the peak
resident memory of its whole process tree (a Spark JVM is a grandchild),
checks that every table holds N times the rows of the 1x answer, and prints the
growth table (medians) and every performance target with its measured value
and ``met``, ``missed`` or ``not measured``.

Usage::

    python -m benchmarks.bench --sizes 1,10,100[,1000] --runs 3 [--spark] [--engines polars]
        [--floor] [--json FILE] [--work DIR] [--source DIR] [--stedi-cmd CMD]
        [--baseline-cmd CMD]

``--baseline-cmd`` measures another build of the pipeline side by side (e.g.
an earlier commit checked out elsewhere:
``--baseline-cmd "env PYTHONPATH=/tmp/old {python} -m stedi_assets.cli run"``),
reported as the engine ``baseline``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import polars as pl
import psutil

from benchmarks.dagster_floor import measure_floor
from benchmarks.duckdb_reference import TABLE_ZONES, run_reference
from benchmarks.scale_data import linked_copy, new_delivery, scale_landing

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
_SOURCE_IN_FOLDER = pathlib.Path("shared") / "stedi" / "landing"
POLL_SECONDS = 0.05
# The 1x target: the lakehouse may cost at most this much more than Dagster's
# own floor plus the DuckDB reference.
TARGET_FACTOR = 1.3
DUCKDB = "duckdb"
PLAIN_PYSPARK = "pyspark"
"""The plain PySpark script (benchmarks/plain_pyspark.py), measured with ``--spark``."""
REFERENCES = (DUCKDB, PLAIN_PYSPARK)
GB = 10**9


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One child process: what ran, how long it took and how much memory its tree held at most."""

    size: int
    engine: str
    run: int
    wall_s: float
    peak_rss_bytes: int


def table_rows(lakehouse: pathlib.Path, table: str) -> int:
    """Row count of one table of a lakehouse.

    The lakehouse keeps its tables in an Iceberg SQL catalog, ``catalog.db``
    (read with pyiceberg); a baseline of the earlier format lists a table's
    files in ``{zone}/{table}/_manifest.json``; the DuckDB reference writes
    ``{zone}/{table}.parquet``, the plain PySpark script a folder of Parquet
    files, ``{zone}/{table}/``.
    """
    if (lakehouse / "catalog.db").is_file():
        from pyiceberg.catalog.sql import SqlCatalog

        catalog = SqlCatalog("stedi", uri=f"sqlite:///{lakehouse / 'catalog.db'}", init_catalog_tables="false")
        snapshot = catalog.load_table(f"stedi.{table}").current_snapshot()
        return int(snapshot.summary["total-records"]) if snapshot else 0
    zone_folder = lakehouse / TABLE_ZONES[table]
    manifest = zone_folder / table / "_manifest.json"
    if manifest.is_file():
        listed = json.loads(manifest.read_text())
        files = [
            str((manifest.parent / uri.removeprefix("file://")).resolve())
            for uri in listed["files"]
        ]
    elif (zone_folder / table).is_dir():
        files = sorted(str(path) for path in (zone_folder / table).glob("*.parquet"))
    else:
        files = [str(zone_folder / f"{table}.parquet")]
    if not files:
        return 0
    return int(pl.scan_parquet(files).select(pl.len()).collect().item())


def check_counts(lakehouse: pathlib.Path, expected: dict[str, int], what: str) -> None:
    """Fail unless every table of ``lakehouse`` holds the expected number of rows."""
    found = {table: table_rows(lakehouse, table) for table in expected}
    wrong = {t: (found[t], rows) for t, rows in expected.items() if found[t] != rows}
    if wrong:
        details = ", ".join(f"{t}: {got:,} rows, expected {want:,}" for t, (got, want) in wrong.items())
        raise SystemExit(f"{what}: wrong counts: {details}")


def _peak_rss(pid: int) -> int:
    """The kernel's peak RSS of one process (``VmHWM``); its current RSS where /proc is missing."""
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return psutil.Process(pid).memory_info().rss


def _record_tree_peaks(process: psutil.Process, peaks: dict[int, int]) -> None:
    """Update ``peaks`` (pid -> peak RSS) for ``process`` and all its descendants."""
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return
    for member in members:
        try:
            peaks[member.pid] = max(peaks.get(member.pid, 0), _peak_rss(member.pid))
        except psutil.Error:
            pass  # the member ended between listing and reading


def run_measured(command: list[str], env: dict[str, str], log: pathlib.Path) -> tuple[float, int]:
    """Run ``command``; return its wall time (s) and the peak RSS (bytes) of its process tree.

    Every 50 ms the tree is listed and each member's own peak RSS read from the
    kernel, so a short spike between two polls is not missed; the figure is the
    sum of those peaks. (The ``ru_maxrss`` of ``wait4`` is not used: for a forked
    child it includes the parent's memory at fork time.)
    """
    with log.open("wb") as output:
        started = time.perf_counter()
        child = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT)
        process = psutil.Process(child.pid)
        peaks: dict[int, int] = {}
        while child.poll() is None:
            _record_tree_peaks(process, peaks)
            time.sleep(POLL_SECONDS)
        wall_s = time.perf_counter() - started
    if child.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"{shlex.join(command)} exited with {child.returncode}; end of {log}:\n{tail}")
    return wall_s, sum(peaks.values())


def default_source() -> pathlib.Path:
    """The real data set: ``shared/stedi/landing`` beside the repository, or beside a folder holding it (a worktree)."""
    for folder in REPO_ROOT.parents:
        if (folder / _SOURCE_IN_FOLDER).is_dir():
            return folder / _SOURCE_IN_FOLDER
    return REPO_ROOT.parent / _SOURCE_IN_FOLDER


def scaled_landing(work: pathlib.Path, source: pathlib.Path, factor: int) -> pathlib.Path:
    """The landing zone ``factor`` times ``source``, built once and reused while the source is the same.

    A zone built from another source is never deleted: that stops the script
    (it may be another source's large copy, or the wrong ``--source``).
    """
    landing = work / f"landing-x{factor}"
    stamp = landing / "_scaled.json"
    description = {"source": str(source.resolve()), "factor": factor}
    if stamp.is_file():
        built = json.loads(stamp.read_text())
        if built == description:
            return landing
        raise SystemExit(
            f"{landing} was built from {built.get('source')}, not {description['source']}: "
            "pass that --source, or remove the folder to rebuild it"
        )
    if not any((source / feed).is_dir() for feed in ("customer", "accelerometer", "step_trainer")):
        raise SystemExit(f"no landing zone at {source} (no customer, accelerometer or step_trainer folder): pass --source")
    shutil.rmtree(landing, ignore_errors=True)  # a build that did not finish
    started = time.perf_counter()
    written = scale_landing(source, factor, landing)
    size_mb = sum(path.stat().st_size for path in written) / 1e6
    print(f"built {landing} ({size_mb:,.0f} MB) in {time.perf_counter() - started:.1f} s", flush=True)
    stamp.write_text(json.dumps(description))
    # Flush the new files to disk now, so that writing them back does not slow
    # down the first measured run.
    os.sync()
    return landing


def stedi_command(template: str | None, landing: pathlib.Path, lakehouse: pathlib.Path) -> list[str]:
    """The command that builds the lakehouse: ``stedi run`` unless a template replaces it.

    A template may use ``{python}``, ``{landing}`` and ``{lakehouse}``.
    """
    if template:
        words = shlex.split(template)
        values = {"python": sys.executable, "landing": str(landing), "lakehouse": str(lakehouse)}
        return [word.format(**values) for word in words]
    stedi = shutil.which("stedi", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("stedi")
    if stedi is None:
        raise SystemExit("no `stedi` command: install the package (pip install -e .) or pass --stedi-cmd")
    return [stedi, "run"]


def _mb(rss_bytes: float) -> str:
    return f"{rss_bytes / 2**20:,.0f}"


@dataclasses.dataclass(frozen=True)
class Figure:
    """One command at one size: median wall time and largest peak memory over its runs."""

    wall_s: float
    peak_rss_bytes: int


def figures(measurements: list[Measurement]) -> dict[tuple[int, str], Figure]:
    """(size, engine) -> its median wall time and largest peak memory."""
    runs: dict[tuple[int, str], list[Measurement]] = {}
    for m in measurements:
        runs.setdefault((m.size, m.engine), []).append(m)
    return {
        key: Figure(statistics.median(m.wall_s for m in found), max(m.peak_rss_bytes for m in found))
        for key, found in runs.items()
    }


def growth_table(
    measurements: list[Measurement], sizes: list[int], engines: list[str], json_mb: dict[int, float] | None = None
) -> list[str]:
    """One row per size: the landing JSON's size, each command's median time and peak memory (MiB), and each
    engine's ratios to the DuckDB reference; ``-`` where a command was not measured."""
    found = figures(measurements)
    json_mb = json_mb or {}
    commands = [*engines, *(r for r in (*REFERENCES, NO_OP, DAILY) if any(e == r for _, e in found))]
    header = f"{'size':>5} {'JSON MB':>9}" + "".join(f" {c + ' s':>12} {c + ' MiB':>13}" for c in commands)
    header += "".join(f" {e + '/duckdb s':>17} {e + '/duckdb MiB':>19}" for e in engines)
    lines = [header]
    for size in sizes:
        line = f"{size:>4}x {json_mb[size]:>9,.0f}" if size in json_mb else f"{size:>4}x {'-':>9}"
        for command in commands:
            figure = found.get((size, command))
            line += f" {figure.wall_s:>12.2f} {_mb(figure.peak_rss_bytes):>13}" if figure else f" {'-':>12} {'-':>13}"
        duckdb = found.get((size, DUCKDB))
        for engine in engines:
            figure = found.get((size, engine))
            if figure and duckdb:
                line += f" {figure.wall_s / duckdb.wall_s:>17.2f} {figure.peak_rss_bytes / duckdb.peak_rss_bytes:>19.2f}"
            else:
                line += f" {'-':>17} {'-':>19}"
        lines.append(line)
    return lines


@dataclasses.dataclass(frozen=True)
class Target:
    """A performance target, what was measured against it, and whether it is met."""

    name: str
    measured: str
    status: str
    """``met``, ``missed`` or ``not measured``."""


NOT_MEASURED = "not measured"


def _target(name: str, ok: bool | None, measured: str = "") -> Target:
    if ok is None:
        return Target(name, measured, NOT_MEASURED)
    return Target(name, measured, "met" if ok else "missed")


DAILY = "daily"
"""``stedi run`` (a new process) after one new accelerometer file of ``DAILY_READINGS`` readings lands on a
lakehouse built at that size: the daily delivery, reflected in every table."""
DAILY_READINGS = 10_000
NO_OP = "no-op"
"""``stedi run`` (a new process) on a lakehouse already up to date with its landing zone."""
FLOOR = "dagster-floor"
"""Dagster's floor (``dagster_floor.py``: eight no-op assets materialized from the command line), recorded
as size 0."""
TARGET_FACTOR_FULL = 2.0
TARGET_PEAK_FULL = 1.0
TARGET_DAILY = 0.5
TARGET_DAILY_1000 = 0.1
TARGET_NO_OP_S = 1.5
TARGET_SPARK = 1.5


def targets(measurements: list[Measurement], engine: str = "polars") -> list[Target]:
    """The performance targets of ``stedi run`` (Polars engine unless another is named), from medians.

    The references: DuckDB's full rebuild at the same size, Dagster's floor (eight no-op assets) plus
    DuckDB for the small sizes, and a plain PySpark script for the Spark engine.
    """
    found = figures(measurements)

    def ratio_target(name: str, measured: Figure | None, reference: Figure | None, bound: float,
                     memory: bool = False, reference_s: float | None = None) -> Target:
        if measured is None or (reference is None and reference_s is None):
            return _target(name, None)
        if memory:
            ratio = measured.peak_rss_bytes / reference.peak_rss_bytes
            text = f"{_mb(measured.peak_rss_bytes)} MiB vs {_mb(reference.peak_rss_bytes)} MiB: {ratio:.2f}x"
            return _target(name, ratio <= bound, text)
        against = reference_s if reference_s is not None else reference.wall_s
        ratio = measured.wall_s / against
        return _target(name, ratio <= bound, f"{measured.wall_s:.2f} s vs {against:.2f} s: {ratio:.2f}x")

    result = [
        ratio_target(f"100x daily delivery <= {TARGET_DAILY}x DuckDB full rebuild",
                     found.get((100, DAILY)), found.get((100, DUCKDB)), TARGET_DAILY),
        ratio_target(f"100x full rebuild <= {TARGET_FACTOR_FULL}x DuckDB",
                     found.get((100, engine)), found.get((100, DUCKDB)), TARGET_FACTOR_FULL),
        ratio_target(f"100x peak <= {TARGET_PEAK_FULL}x DuckDB peak",
                     found.get((100, engine)), found.get((100, DUCKDB)), TARGET_PEAK_FULL, memory=True),
    ]
    floor = found.get((0, FLOOR))
    for size in (1, 10):
        duckdb = found.get((size, DUCKDB))
        reference_s = floor.wall_s + duckdb.wall_s if floor and duckdb else None
        result.append(ratio_target(
            f"{size}x full rebuild <= {TARGET_FACTOR}x (Dagster floor + DuckDB)",
            found.get((size, engine)), None, TARGET_FACTOR, reference_s=reference_s,
        ))
    no_op = found.get((1, NO_OP))
    result.append(_target(
        f"1x no-op run <= {TARGET_NO_OP_S} s", None if no_op is None else no_op.wall_s <= TARGET_NO_OP_S,
        f"{no_op.wall_s:.2f} s" if no_op else "",
    ))
    result.append(ratio_target(f"Spark 100x <= {TARGET_SPARK}x plain PySpark",
                               found.get((100, "spark")), found.get((100, PLAIN_PYSPARK)), TARGET_SPARK))
    result.append(ratio_target(f"1000x daily delivery <= {TARGET_DAILY_1000}x DuckDB full rebuild",
                               found.get((1000, DAILY)), found.get((1000, DUCKDB)), TARGET_DAILY_1000))
    return result


def target_lines(found: list[Target]) -> list[str]:
    width = max(len(t.name) for t in found)
    return [f"{t.name:<{width}}  {t.measured:<40}  {t.status}".rstrip() for t in found]


def _command(
    engine: str, landing: pathlib.Path, lakehouse: pathlib.Path, args: argparse.Namespace
) -> tuple[list[str], dict[str, str]]:
    """The command measured as ``engine`` and its environment."""
    if engine == DUCKDB:
        module_args = ["-m", "benchmarks.duckdb_reference", "--landing", str(landing), "--out", str(lakehouse)]
        return [sys.executable, *module_args], dict(os.environ)
    if engine == PLAIN_PYSPARK:
        module_args = ["-m", "benchmarks.plain_pyspark", "--landing", str(landing), "--out", str(lakehouse)]
        return [sys.executable, *module_args], dict(os.environ)
    baseline = engine == "baseline"
    command = stedi_command(args.baseline_cmd if baseline else args.stedi_cmd, landing, lakehouse)
    return command, {
        **os.environ,
        "STEDI_LANDING_URI": str(landing),
        "STEDI_LAKEHOUSE_URI": str(lakehouse),
        "STEDI_PROFILE": "",
        "STEDI_ENGINE": "polars" if baseline else engine,
    }


def _delivery_landing(work: pathlib.Path, landing: pathlib.Path, size: int) -> pathlib.Path:
    """A copy of ``landing`` made of hard links: a new file lands in the copy alone."""

    copy = work / "runs" / f"landing-x{size}-daily"
    linked_copy(landing, copy)
    return copy


def measure_follow_ups(
    size: int, engine: str, landing: pathlib.Path, lakehouse: pathlib.Path, expected: dict[str, int],
    args: argparse.Namespace, work: pathlib.Path,
) -> list[Measurement]:
    """On a lakehouse just built from ``landing``: a run with nothing to do, then one after the daily delivery.

    Each is checked to have done what it is measured as: the first one ran nothing, the second one
    added the new readings to the landing table.
    """

    command, env = _command(engine, landing, lakehouse, args)
    found = []
    log = work / "runs" / f"x{size}-{NO_OP}.log"
    wall_s, peak = run_measured(command, env, log)
    if "nothing to run" not in log.read_text(errors="replace"):
        raise SystemExit(f"{size}x: a run right after a full build found something to do; see {log}")
    found.append(Measurement(size, NO_OP, args.runs - 1, wall_s, peak))
    new_delivery(landing, DAILY_READINGS, 0)
    wall_s, peak = run_measured(command, env, work / "runs" / f"x{size}-{DAILY}.log")
    rows = table_rows(lakehouse, "accelerometer_landing")
    if rows != expected["accelerometer_landing"] + DAILY_READINGS:
        raise SystemExit(f"{size}x: after the daily delivery accelerometer_landing holds {rows:,} rows, expected "
                         f"{expected['accelerometer_landing'] + DAILY_READINGS:,}")
    found.append(Measurement(size, DAILY, args.runs - 1, wall_s, peak))
    return found


def main(argv: list[str] | None = None) -> None:
    """Command line: measure, check counts, print the growth table and the targets, optionally write the raw figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100", help="comma-separated scale factors (1000 when asked)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each command per size")
    parser.add_argument("--engines", default="polars", help="comma-separated STEDI_ENGINE values")
    parser.add_argument("--spark", action="store_true", help="also the Spark engine and the plain PySpark script")
    parser.add_argument("--source", type=pathlib.Path, default=None, help="the 1x landing zone")
    parser.add_argument("--work", type=pathlib.Path, default=pathlib.Path(".bench"), help="work folder")
    parser.add_argument("--stedi-cmd", default=None, help="replaces `stedi run`; may use {python} {landing} {lakehouse}")
    parser.add_argument("--baseline-cmd", default=None, help="another build, measured as engine `baseline`")
    parser.add_argument(
        "--floor", action="store_true", help="also measure Dagster's floor (measured anyway with size 1 or 10)"
    )
    parser.add_argument("--json", type=pathlib.Path, default=None, help="write the raw figures to this file")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    engines = [engine for engine in args.engines.split(",") if engine]
    if args.spark and "spark" not in engines:
        engines.append("spark")
    if args.baseline_cmd:
        engines.append("baseline")
    references = [DUCKDB, PLAIN_PYSPARK] if args.spark else [DUCKDB]
    source = args.source or default_source()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(dir=work) as scratch:
        single = run_reference(source, scratch)
    print("1x counts: " + ", ".join(f"{t} {n:,}" for t, n in single.items()), flush=True)

    measurements: list[Measurement] = []
    json_mb: dict[int, float] = {}
    for size in sizes:
        landing = scaled_landing(work, source, size)
        json_mb[size] = sum(path.stat().st_size for path in landing.glob("*/*.json*")) / 1e6
        expected = {table: size * rows for table, rows in single.items()}
        for run in range(args.runs):
            # Interleaved, so that a noisy minute on the machine hits every command alike.
            for engine in [*engines, *references]:
                lakehouse = work / "runs" / f"x{size}-{engine}-{run}"
                shutil.rmtree(lakehouse, ignore_errors=True)
                lakehouse.mkdir(parents=True)
                # The last run of the engine the targets judge is followed by a no-op run and the daily
                # delivery, which lands in a copy of the zone of its own (the scaled zone is reused).
                follow_up = engine == engines[0] and engine not in ("baseline", "spark") and run == args.runs - 1
                run_landing = _delivery_landing(work, landing, size) if follow_up else landing
                command, env = _command(engine, run_landing, lakehouse, args)
                wall_s, peak = run_measured(command, env, work / "runs" / f"x{size}-{engine}-{run}.log")
                check_counts(lakehouse, expected, f"{size}x {engine} run {run}")
                measurements.append(Measurement(size, engine, run, wall_s, peak))
                print(f"{size:>4}x {engine:<8} run {run}: {wall_s:7.2f} s, {_mb(peak)} MiB", flush=True)
                if follow_up:
                    for measured in measure_follow_ups(size, engine, run_landing, lakehouse, expected, args, work):
                        measurements.append(measured)
                        print(f"{size:>4}x {measured.engine:<8} run {run}: {measured.wall_s:7.2f} s, "
                              f"{_mb(measured.peak_rss_bytes)} MiB", flush=True)
                    shutil.rmtree(run_landing)
                shutil.rmtree(lakehouse)

    floor_runs: list[float] = []
    if args.floor or any(size in (1, 10) for size in sizes):
        floor_runs = measure_floor(args.runs)
        measurements += [Measurement(0, FLOOR, run, wall_s, 0) for run, wall_s in enumerate(floor_runs)]

    print(f"\ngrowth (median of {args.runs} run(s) per command; peak memory of the process tree, the largest)")
    print("\n".join(growth_table(measurements, sizes, engines, json_mb)))
    found_targets = targets(measurements, engines[0])
    print(f"\ntargets (stedi run, {engines[0]} engine)")
    print("\n".join(target_lines(found_targets)))
    figures_out: dict[str, object] = {
        "counts_1x": single,
        "measurements": [dataclasses.asdict(m) for m in measurements],
        "targets": [dataclasses.asdict(t) for t in found_targets],
    }
    if floor_runs:
        floor_s = statistics.median(floor_runs)
        duckdb_1x = [m.wall_s for m in measurements if m.size == 1 and m.engine == DUCKDB]
        print(f"\ndagster floor (median of {args.runs}): {floor_s:.2f} s")
        figures_out["dagster_floor_s"] = floor_runs
        if duckdb_1x:
            target_s = TARGET_FACTOR * (floor_s + statistics.median(duckdb_1x))
            print(f"1x target: {TARGET_FACTOR} x (floor + duckdb 1x) = {target_s:.2f} s")
            figures_out["target_1x_s"] = target_s
    if args.json:
        args.json.write_text(json.dumps(figures_out, indent=2) + "\n")


if __name__ == "__main__":
    main()
