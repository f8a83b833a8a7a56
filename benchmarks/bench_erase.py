"""Erasing one person against a full rebuild, on a landing zone N times the real one.

On a scaled landing zone (``benchmarks/scale_data.py``, 100x by default) the
lakehouse is built once with ``stedi run``. Then one consenting customer with
readings (of the first copy) is erased with ``stedi erase`` (a new process,
start-up included), and a second lakehouse is rebuilt from scratch from the
erased landing zone with ``stedi run --full-refresh``. Every table of both
must hold the same rows (count and an order-independent hash). Prints both
times, and the files the erasure rewrote or deleted against those it kept
(landing files, and the lakehouse's Parquet files), from their inode and
modification time before and after.

Usage::

    python -m benchmarks.bench_erase --size 100 [--work DIR] [--source DIR]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys

from benchmarks.bench import default_source, scaled_landing
from benchmarks.incremental import table_digests
from benchmarks.scale_data import linked_copy
from benchmarks.spark_vs_polars import measure

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]


def stedi(*arguments: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_HOME")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
    return measure([sys.executable, "-m", "stedi_assets.cli", *arguments], env, REPOSITORY)


def file_states(folder: pathlib.Path, suffix: str) -> dict[pathlib.Path, tuple[int, int]]:
    """Every file under ``folder`` ending in ``suffix`` -> (inode, modification time in ns)."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.rglob(f"*{suffix}") if p.is_file()}


def changes(before: dict, after: dict) -> tuple[int, int]:
    """(files rewritten or deleted, files kept as they were) among those there before."""
    kept = sum(1 for path, state in before.items() if after.get(path) == state)
    return len(before) - kept, kept


def someone_to_erase(lakehouse: pathlib.Path) -> str:
    """A customer of customer_curated (the first copy's), with readings and a device."""
    from stedi_assets.lakehouse.query import query

    return query(
        "SELECT email FROM customer_curated WHERE email NOT LIKE 'k%' ORDER BY email LIMIT 1", str(lakehouse)
    ).item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100, help="scale factor of the landing zone")
    parser.add_argument("--source", type=pathlib.Path, default=default_source(), help="the 1x landing zone")
    parser.add_argument("--work", type=pathlib.Path, default=pathlib.Path(".bench"), help="work folder")
    args = parser.parse_args(argv)

    scaled = scaled_landing(args.work, args.source, args.size)
    work = args.work / "erase"
    landing, lakehouse, rebuilt = work / "landing", work / "lakehouse", work / "rebuilt"
    # Hard links: the erasure replaces a file it rewrites (a new inode), the scaled zone keeps the original.
    linked_copy(scaled, landing)
    for folder in (lakehouse, rebuilt):
        shutil.rmtree(folder, ignore_errors=True)
    built = stedi("run", "--landing", str(landing), "--lakehouse", str(lakehouse))
    print(f"{args.size}x: first build {built.seconds:.2f} s, {built.peak_rss_bytes / 2**20:,.0f} MiB", flush=True)

    email = someone_to_erase(lakehouse)
    landing_before, parquet_before = file_states(landing, ".json"), file_states(lakehouse, ".parquet")
    erased = stedi("erase", email, "--landing", str(landing), "--lakehouse", str(lakehouse))
    landing_changed, landing_kept = changes(landing_before, file_states(landing, ".json"))
    parquet_changed, parquet_kept = changes(parquet_before, file_states(lakehouse, ".parquet"))
    rebuild = stedi("run", "--full-refresh", "--landing", str(landing), "--lakehouse", str(rebuilt))
    if table_digests(lakehouse) != table_digests(rebuilt):
        raise SystemExit("after the erasure the tables differ from a full rebuild of the erased landing zone")
    print(
        f"{args.size}x: erasing one person {erased.seconds:.2f} s ({erased.peak_rss_bytes / 2**20:,.0f} MiB), "
        f"full rebuild {rebuild.seconds:.2f} s ({rebuild.peak_rss_bytes / 2**20:,.0f} MiB): "
        f"{erased.seconds / rebuild.seconds:.0%} of the rebuild; every table equal to the rebuild's\n"
        f"landing files: {landing_changed} rewritten or deleted, {landing_kept} kept; "
        f"lakehouse Parquet files: {parquet_changed} rewritten or deleted, {parquet_kept} kept"
    )


if __name__ == "__main__":
    main()
