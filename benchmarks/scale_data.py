"""Write a landing zone N times the size of a source one, with exactly known answers.

Copy ``k`` (0 to N-1) of the source gets its own identities and its own stretch of
time, so that no record of one copy can ever join a record of another:

* emails (``customer.email``, ``accelerometer.user``) get the local-part prefix ``k{k}.``;
* serial numbers get their first 8 hex digits replaced by ``k`` in hex, keeping the uuid shape;
* every instant moves by ``k * (span of the source's instants + 1 day)``.

Copy 0 keeps the source's values. Every lakehouse table of the result therefore
holds exactly N times the rows it holds for the source. Absent consent fields are
written as ``null``; both mean "no consent".

Usage::

    python -m benchmarks.scale_data --source DIR --factor N --out DIR [--files-per-feed K]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import time

import polars as pl

from benchmarks.duckdb_reference import FEED_COLUMNS

_POLARS_TYPES: dict[str, type[pl.DataType]] = {
    "VARCHAR": pl.String,
    "BIGINT": pl.Int64,
    "DOUBLE": pl.Float64,
}
TIME_COLUMNS: dict[str, tuple[str, ...]] = {
    "customer": (
        "registrationDate", "lastUpdateDate",
        "shareWithResearchAsOfDate", "shareWithPublicAsOfDate", "shareWithFriendsAsOfDate",
    ),
    "accelerometer": ("timestamp",),
    "step_trainer": ("sensorReadingTime",),
}
EMAIL_COLUMNS: dict[str, tuple[str, ...]] = {"customer": ("email",), "accelerometer": ("user",)}
SERIAL_COLUMNS: dict[str, tuple[str, ...]] = {"customer": ("serialNumber",), "step_trainer": ("serialNumber",)}
DAY_MS = 86_400_000


def feed_schema(feed: str) -> dict[str, type[pl.DataType]]:
    """The Polars schema of one feed, in the feed's own key order and spelling."""
    return {name: _POLARS_TYPES[sql_type] for name, sql_type in FEED_COLUMNS[feed].items()}


def read_feed(landing: str | pathlib.Path, feed: str) -> pl.DataFrame:
    """Every record of one feed of a landing zone."""
    pattern = str(pathlib.Path(landing) / feed / "*.json")
    return pl.scan_ndjson(pattern, schema=feed_schema(feed)).collect()


def copy_shift_ms(feeds: dict[str, pl.DataFrame]) -> int:
    """How far one copy moves in time from the previous one: the span of all instants plus a day."""
    bounds = [
        (frame[column].min(), frame[column].max())
        for feed, frame in feeds.items()
        for column in TIME_COLUMNS[feed]
        if frame[column].null_count() < frame.height
    ]
    earliest = min(int(low) for low, _ in bounds)  # type: ignore[arg-type]
    latest = max(int(high) for _, high in bounds)  # type: ignore[arg-type]
    return latest - earliest + DAY_MS


def serial_prefix(copy: int) -> str:
    """The 8 hex digits that start every serial number of ``copy`` (``copy`` >= 1)."""
    return f"{copy:08x}"


def check_copies_are_disjoint(feeds: dict[str, pl.DataFrame], factor: int) -> None:
    """Fail if a rewritten serial number or email of some copy could equal a source one."""
    serials = pl.concat([feeds[f][c] for f, cs in SERIAL_COLUMNS.items() for c in cs]).drop_nulls()
    prefixes = set(serials.str.slice(0, 8).unique().to_list())
    clashing = prefixes & {serial_prefix(k) for k in range(1, factor)}
    if clashing:
        raise ValueError(f"source serial numbers already start with copy prefixes {sorted(clashing)}")
    emails = pl.concat([feeds[f][c] for f, cs in EMAIL_COLUMNS.items() for c in cs]).drop_nulls()
    if factor > 1 and emails.str.contains(r"^k\d+\.").any():
        raise ValueError("source emails already start with a copy prefix like 'k1.'")


def copy_of(feed: str, frame: pl.DataFrame, copy: int, shift_ms: int) -> pl.DataFrame:
    """Copy number ``copy`` of one feed's records; copy 0 is ``frame`` itself."""
    if copy == 0:
        return frame
    return frame.with_columns(
        *(pl.col(c) + copy * shift_ms for c in TIME_COLUMNS[feed]),
        *((pl.lit(f"k{copy}.") + pl.col(c)).alias(c) for c in EMAIL_COLUMNS.get(feed, ())),
        *((pl.lit(serial_prefix(copy)) + pl.col(c).str.slice(8)).alias(c) for c in SERIAL_COLUMNS.get(feed, ())),
    )


def _delivery_stamp(landing: pathlib.Path, feed: str) -> int:
    """The first delivery instant in the source's file names (``customer-1691348231425.json``), or 0."""
    stamps = [
        int(match.group(1))
        for path in (landing / feed).glob("*.json")
        if (match := re.search(r"(\d{13})\.json$", path.name))
    ]
    return min(stamps, default=0)


def scale_landing(
    source: str | pathlib.Path,
    factor: int,
    out: str | pathlib.Path,
    files_per_feed: int | None = None,
) -> list[pathlib.Path]:
    """Write ``factor`` disjoint copies of the ``source`` landing zone under ``out``.

    Each feed is written as ``files_per_feed`` files (default: one per copy), each
    holding a run of consecutive copies. Returns the written files.
    """
    if factor < 1:
        raise ValueError("factor must be at least 1")
    source_path, out_path = pathlib.Path(source), pathlib.Path(out)
    files = min(files_per_feed or factor, factor)
    feeds = {feed: read_feed(source_path, feed) for feed in FEED_COLUMNS}
    check_copies_are_disjoint(feeds, factor)
    shift_ms = copy_shift_ms(feeds)
    written = []
    for feed, frame in feeds.items():
        folder = out_path / feed
        folder.mkdir(parents=True, exist_ok=True)
        stamp = _delivery_stamp(source_path, feed)
        for part in range(files):
            target = folder / f"{feed}-{stamp + part}.json"
            with target.open("wb") as handle:
                for copy in range(part * factor // files, (part + 1) * factor // files):
                    copy_of(feed, frame, copy, shift_ms).write_ndjson(handle)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> None:
    """Command line: scale a landing zone and print the size of the result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="source landing zone folder")
    parser.add_argument("--factor", required=True, type=int, help="number of copies N")
    parser.add_argument("--out", required=True, help="folder for the scaled landing zone")
    parser.add_argument("--files-per-feed", type=int, default=None, help="files per feed (default: N)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    written = scale_landing(args.source, args.factor, args.out, args.files_per_feed)
    size = sum(path.stat().st_size for path in written)
    print(
        f"wrote {len(written)} files, {size / 1e6:,.1f} MB, in {time.perf_counter() - started:.1f} s "
        f"to {args.out}"
    )


if __name__ == "__main__":
    main()


def linked_copy(source: pathlib.Path, target: pathlib.Path) -> None:
    """A landing zone of hard links to ``source``'s files: new files go into the copy alone."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, copy_function=os.link)


def new_delivery(landing: pathlib.Path, readings: int, round_number: int) -> pathlib.Path:
    """A new accelerometer file: readings of existing files, each moved past every instant of the zone."""
    files = sorted((landing / "accelerometer").glob("*.json"))
    frame = pl.concat([pl.read_ndjson(f) for f in files[:2]]).head(readings)
    latest = pl.concat([pl.scan_ndjson(f).select(pl.col("timestamp").max()) for f in files]).max().collect().item()
    moved = frame.with_columns(pl.col("timestamp") + (latest - frame["timestamp"].min() + 1 + round_number * 10**9))
    path = landing / "accelerometer" / f"delivery-{round_number:03d}.json"
    path.write_text("".join(json.dumps(row) + "\n" for row in moved.iter_rows(named=True)))
    return path
