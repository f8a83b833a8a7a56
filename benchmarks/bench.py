"""Compare ``stedi run`` with the DuckDB reference on landing zones 1, 10, 100... times the real one.

For each size the script builds (or reuses) a scaled landing zone under the work
folder, then alternates ``stedi run`` for each engine and the DuckDB reference,
each in its own process, ``--runs`` times. It records each child's wall time and
the peak resident memory of its whole process tree (a Spark JVM is a grandchild),
checks that every lakehouse table holds N times the rows of the 1x answer, and
prints medians and ratios.

Usage::

    python -m benchmarks.bench --sizes 1,10,100 --runs 3 [--engines polars,spark]
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
from benchmarks.scale_data import scale_landing

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "stedi" / "landing"
POLL_SECONDS = 0.05
# The 1x target: the lakehouse may cost at most this much more than Dagster's
# own floor plus the DuckDB reference.
TARGET_FACTOR = 1.3


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
    ``{zone}/{table}.parquet``.
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


def scaled_landing(work: pathlib.Path, source: pathlib.Path, factor: int) -> pathlib.Path:
    """The landing zone ``factor`` times ``source``, built once and reused while the source is the same."""
    landing = work / f"landing-x{factor}"
    stamp = landing / "_scaled.json"
    description = {"source": str(source.resolve()), "factor": factor}
    if stamp.is_file() and json.loads(stamp.read_text()) == description:
        return landing
    shutil.rmtree(landing, ignore_errors=True)
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


def report(measurements: list[Measurement], sizes: list[int], engines: list[str]) -> list[str]:
    """The table of medians and one ratio line per size and engine."""
    def of(size: int, engine: str) -> list[Measurement]:
        return [m for m in measurements if m.size == size and m.engine == engine]

    lines = [
        f"{'size':>5} {'engine':<8} {'stedi s':>9} {'duckdb s':>9} {'ratio':>6} "
        f"{'stedi MiB':>10} {'duckdb MiB':>11}"
    ]
    ratios = []
    for size in sizes:
        duckdb_runs = of(size, "duckdb")
        duckdb_s = statistics.median(m.wall_s for m in duckdb_runs)
        duckdb_rss = max(m.peak_rss_bytes for m in duckdb_runs)
        for engine in engines:
            runs = of(size, engine)
            stedi_s = statistics.median(m.wall_s for m in runs)
            stedi_rss = max(m.peak_rss_bytes for m in runs)
            lines.append(
                f"{size:>4}x {engine:<8} {stedi_s:>9.2f} {duckdb_s:>9.2f} {stedi_s / duckdb_s:>6.2f} "
                f"{_mb(stedi_rss):>10} {_mb(duckdb_rss):>11}"
            )
            ratios.append(f"{size}x {engine}: stedi run takes {stedi_s / duckdb_s:.2f} times the DuckDB reference")
    return lines + [""] + ratios


def main(argv: list[str] | None = None) -> None:
    """Command line: measure, check counts, print the table, optionally write the raw figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100", help="comma-separated scale factors")
    parser.add_argument("--runs", type=int, default=3, help="runs of each command per size")
    parser.add_argument("--engines", default="polars", help="comma-separated STEDI_ENGINE values")
    parser.add_argument("--source", type=pathlib.Path, default=DEFAULT_SOURCE, help="the 1x landing zone")
    parser.add_argument("--work", type=pathlib.Path, default=pathlib.Path(".bench"), help="work folder")
    parser.add_argument("--stedi-cmd", default=None, help="replaces `stedi run`; may use {python} {landing} {lakehouse}")
    parser.add_argument("--baseline-cmd", default=None, help="another build, measured as engine `baseline`")
    parser.add_argument("--floor", action="store_true", help="also measure Dagster's floor and the 1x target")
    parser.add_argument("--json", type=pathlib.Path, default=None, help="write the raw figures to this file")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    engines = [engine for engine in args.engines.split(",") if engine]
    if args.baseline_cmd:
        engines.append("baseline")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(dir=work) as scratch:
        single = run_reference(args.source, scratch)
    print("1x counts: " + ", ".join(f"{t} {n:,}" for t, n in single.items()), flush=True)

    measurements: list[Measurement] = []
    for size in sizes:
        landing = scaled_landing(work, args.source, size)
        expected = {table: size * rows for table, rows in single.items()}
        for run in range(args.runs):
            for engine in [*engines, "duckdb"]:
                lakehouse = work / "runs" / f"x{size}-{engine}-{run}"
                shutil.rmtree(lakehouse, ignore_errors=True)
                lakehouse.mkdir(parents=True)
                if engine == "duckdb":
                    command = [
                        sys.executable, "-m", "benchmarks.duckdb_reference",
                        "--landing", str(landing), "--out", str(lakehouse),
                    ]
                    env = dict(os.environ)
                else:
                    baseline = engine == "baseline"
                    command = stedi_command(args.baseline_cmd if baseline else args.stedi_cmd, landing, lakehouse)
                    env = {
                        **os.environ,
                        "STEDI_LANDING_URI": str(landing),
                        "STEDI_LAKEHOUSE_URI": str(lakehouse),
                        "STEDI_PROFILE": "",
                        "STEDI_ENGINE": "polars" if baseline else engine,
                    }
                wall_s, peak = run_measured(command, env, work / "runs" / f"x{size}-{engine}-{run}.log")
                check_counts(lakehouse, expected, f"{size}x {engine} run {run}")
                shutil.rmtree(lakehouse)
                measurements.append(Measurement(size, engine, run, wall_s, peak))
                print(f"{size:>4}x {engine:<8} run {run}: {wall_s:7.2f} s, {_mb(peak)} MiB", flush=True)

    print()
    print("\n".join(report(measurements, sizes, engines)))
    figures: dict[str, object] = {
        "counts_1x": single,
        "measurements": [dataclasses.asdict(m) for m in measurements],
    }
    if args.floor:
        floor_runs = measure_floor(args.runs)
        floor_s = statistics.median(floor_runs)
        duckdb_1x = [m.wall_s for m in measurements if m.size == 1 and m.engine == "duckdb"]
        print(f"\ndagster floor (median of {args.runs}): {floor_s:.2f} s")
        figures["dagster_floor_s"] = floor_runs
        if duckdb_1x:
            target_s = TARGET_FACTOR * (floor_s + statistics.median(duckdb_1x))
            print(f"1x target: {TARGET_FACTOR} x (floor + duckdb 1x) = {target_s:.2f} s")
            figures["target_1x_s"] = target_s
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
