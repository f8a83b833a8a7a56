"""How a Polars frame becomes an Iceberg table's contents: the candidate write paths, timed side by side.

    python -m benchmarks.iceberg_write [--rows 8127300] [--runs 3]

For a frame shaped like accelerometer_landing (user, timestamp, x, y, z; the
default row count is that table at 100x), each run replaces the contents of a
local Iceberg table (SQL catalog in a temporary folder) by:

* ``parquet``: Polars' ``sink_parquet`` alone, no table: the floor;
* ``parquet+commit``: ``sink_parquet`` into the table's data folder, then one
  pyiceberg commit of those files (what the lakehouse does: one snapshot,
  retried on conflict without writing the data again);
* ``pyiceberg overwrite``: ``Table.overwrite(arrow_table)`` (pyiceberg writes
  the files; two snapshots, the first empty);
* ``sink_iceberg``: Polars' ``LazyFrame.sink_iceberg(mode="overwrite")``
  (unstable API; Polars writes the files and commits through pyiceberg).

Prints the median wall time of each and the commit's share. Every path is
checked to leave the table with exactly the frame's rows.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import polars as pl

from stedi_assets.lakehouse.tables import iceberg_schema, replace_contents, table_properties
from stedi_assets.domain.schemas import TABLES

TABLE = TABLES["accelerometer_landing"]


def frame_of(rows: int) -> pl.DataFrame:
    index = pl.int_range(0, rows, eager=True)
    return pl.DataFrame({
        "user": (index % 2_000).cast(pl.String) + "@example.com",
        "timestamp": 1_655_564_444_103 + index,
        "x": (index % 97).cast(pl.Float64) / 7,
        "y": (index % 89).cast(pl.Float64) / 3,
        "z": (index % 83).cast(pl.Float64) / 5,
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8_127_300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from pyiceberg.catalog.sql import SqlCatalog

    frame = frame_of(args.rows)
    arrow = frame.to_arrow()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        catalog = SqlCatalog("stedi", uri=f"sqlite:///{root / 'catalog.db'}", warehouse=root.as_uri())
        catalog.create_namespace("bench")
        tables = {}
        for name in ("commit", "overwrite", "sink"):
            tables[name] = catalog.create_table(
                f"bench.{name}", iceberg_schema(TABLE), location=str(root / name), properties=table_properties(TABLE)
            )

        def parquet() -> None:
            frame.lazy().sink_parquet(root / f"plain-{uuid.uuid4().hex}.parquet")

        commit_times: list[float] = []

        def parquet_and_commit() -> None:
            folder = root / "commit" / "data" / uuid.uuid4().hex
            folder.mkdir(parents=True)
            path = str(folder / "part-00000.parquet")
            frame.lazy().sink_parquet(path)
            started = time.perf_counter()
            replace_contents(lambda: catalog.load_table("bench.commit"), "bench.commit", [path], {})
            commit_times.append(time.perf_counter() - started)

        def pyiceberg_overwrite() -> None:
            catalog.load_table("bench.overwrite").overwrite(arrow)

        def sink_iceberg() -> None:
            frame.lazy().sink_iceberg(catalog.load_table("bench.sink"), mode="overwrite")

        paths = {
            "parquet": parquet,
            "parquet+commit": parquet_and_commit,
            "pyiceberg overwrite": pyiceberg_overwrite,
            "sink_iceberg": sink_iceberg,
        }
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.runs):
            for name, write in paths.items():  # alternated, so a noisy moment hits every path
                started = time.perf_counter()
                write()
                times[name].append(time.perf_counter() - started)
        for name in ("commit", "overwrite", "sink"):
            rows = catalog.load_table(f"bench.{name}").scan().to_arrow().num_rows
            assert rows == args.rows, (name, rows)

    floor = statistics.median(times["parquet"])
    print(f"{args.rows:,} rows x {len(TABLE.columns)} columns, median of {args.runs} runs")
    print(f"{'path':<22} {'seconds':>8} {'x parquet':>10}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<22} {median:>8.2f} {median / floor:>10.2f}")
    print(f"commit alone (parquet+commit): {statistics.median(commit_times):.2f} s")


if __name__ == "__main__":
    main()
