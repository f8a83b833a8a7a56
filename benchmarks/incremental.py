"""One new delivery against a full rebuild: how long until every table reflects it.

On a scaled landing zone (``benchmarks/scale_data.py``, 100x by default) the
lakehouse is built once with ``stedi run``. Then, for each round:

1. a new accelerometer file of ``--readings`` readings lands: readings of
   consenting customers of the scaled data, moved to instants no other
   reading has, so they reach accelerometer_trusted and every table after it;
2. ``stedi run`` updates the lakehouse (a new process, start-up included): it
   reads the new file alone and recomputes the tables downstream of it;
3. ``stedi run --full-refresh`` rebuilds a second lakehouse from scratch from
   the same landing zone (the full rebuild, side by side);
4. every table of both lakehouses must hold the same rows (compared by
   count and by an order-independent hash of the rows).

Prints the medians, their ratio and the target (at most 35% of the full rebuild).

Usage::

    python -m benchmarks.incremental --size 100 --rounds 3 [--readings 10000] [--work DIR] [--source DIR]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import sys

import polars as pl

from benchmarks.bench import default_source, scaled_landing
from benchmarks.scale_data import linked_copy, new_delivery
from benchmarks.spark_vs_polars import measure

TARGET = 0.35
REPOSITORY = pathlib.Path(__file__).resolve().parents[1]


def table_digests(lakehouse: pathlib.Path) -> dict[str, tuple[int, int]]:
    """Table -> (rows, order-independent hash of its rows), read by an independent pyiceberg client."""
    from pyiceberg.catalog.sql import SqlCatalog

    from stedi_assets.domain.schemas import TABLES

    catalog = SqlCatalog("stedi", uri=f"sqlite:///{lakehouse / 'catalog.db'}", init_catalog_tables="false")
    digests = {}
    for name in TABLES:
        frame = pl.from_arrow(catalog.load_table(f"stedi.{name}").scan().to_arrow())
        digests[name] = (frame.height, int(frame.hash_rows(seed=0).sum()) if frame.height else 0)
    return digests


def stedi_run(landing: pathlib.Path, lakehouse: pathlib.Path, *extra: str):
    command = [sys.executable, "-m", "stedi_assets.cli", "run", "--landing", str(landing), "--lakehouse", str(lakehouse),
               *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_HOME")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
    return measure(command, env, REPOSITORY)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100, help="scale factor of the landing zone")
    parser.add_argument("--rounds", type=int, default=3, help="deliveries, each measured against a full rebuild")
    parser.add_argument("--readings", type=int, default=10_000, help="readings in each new file")
    parser.add_argument("--source", type=pathlib.Path, default=default_source(), help="the 1x landing zone")
    parser.add_argument("--work", type=pathlib.Path, default=pathlib.Path(".bench"), help="work folder")
    args = parser.parse_args(argv)

    scaled = scaled_landing(args.work, args.source, args.size)
    work = args.work / "incremental"
    landing, lakehouse = work / "landing", work / "lakehouse"
    linked_copy(scaled, landing)
    shutil.rmtree(lakehouse, ignore_errors=True)
    built = stedi_run(landing, lakehouse)
    print(f"{args.size}x: first build {built.seconds:.2f} s, {built.peak_rss_bytes / 2**20:,.0f} MiB", flush=True)

    updates, rebuilds = [], []
    for number in range(args.rounds):
        delivered = new_delivery(landing, args.readings, number)
        update = stedi_run(landing, lakehouse)
        rebuilt_lakehouse = work / "rebuilt"
        shutil.rmtree(rebuilt_lakehouse, ignore_errors=True)
        rebuild = stedi_run(landing, rebuilt_lakehouse, "--full-refresh")
        same = table_digests(lakehouse) == table_digests(rebuilt_lakehouse)
        if not same:
            raise SystemExit(f"round {number + 1}: after {delivered.name} the tables differ from a full rebuild")
        updates.append(update)
        rebuilds.append(rebuild)
        print(
            f"round {number + 1}: {delivered.name} ({args.readings:,} readings): update {update.seconds:.2f} s "
            f"({update.peak_rss_bytes / 2**20:,.0f} MiB), full rebuild {rebuild.seconds:.2f} s "
            f"({rebuild.peak_rss_bytes / 2**20:,.0f} MiB); every table equal",
            flush=True,
        )
    update_s = statistics.median(m.seconds for m in updates)
    rebuild_s = statistics.median(m.seconds for m in rebuilds)
    ratio = update_s / rebuild_s
    print(
        f"\n{args.size}x, medians of {args.rounds}: one new file reflected in every table in {update_s:.2f} s; "
        f"full rebuild {rebuild_s:.2f} s; {ratio:.1%} of the rebuild (target: at most {TARGET:.0%}): "
        f"{'met' if ratio <= TARGET else 'missed'}"
    )


if __name__ == "__main__":
    main()
