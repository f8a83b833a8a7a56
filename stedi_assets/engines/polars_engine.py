"""The Polars engine: the fast default on one machine."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import narwhals as nw
import polars as pl

from stedi_assets.engines import EngineError, LandingRead
from stedi_assets.schemas import TableSchema
from stedi_assets.storage import Store, join_uri
from stedi_assets.storage_s3 import object_store_errors

# Landing files read at the same time.
LANDING_READERS = 8


def conform_to_schema(raw: pl.DataFrame, schema: TableSchema, source: str) -> pl.DataFrame:
    """Rename fields to the declared spelling, matching names case-insensitively, and cast.

    Feeds have been delivered with the same field spelt ``timeStamp`` and
    ``timestamp``; like Athena, the names are compared without case. When one
    file holds several spellings, their values are merged.
    """
    by_lower: dict[str, list[str]] = {}
    for name in raw.columns:
        by_lower.setdefault(name.lower(), []).append(name)
    columns = []
    for column in schema.columns:
        spellings = by_lower.get(column.name.lower(), [])
        dtype = schema.polars_schema[column.name]
        if not spellings:
            columns.append(pl.lit(None, dtype=dtype).alias(column.name))
            continue
        values = pl.coalesce([pl.col(s) for s in spellings]) if len(spellings) > 1 else pl.col(spellings[0])
        columns.append(values.cast(dtype).alias(column.name))
    try:
        return raw.select(columns)
    except pl.exceptions.PolarsError as error:
        first_line = str(error).strip().splitlines()[0]
        raise EngineError(f"{source}: values do not match the {schema.name} schema ({first_line})") from None


def parse_ndjson(data: bytes, schema: TableSchema, source: str) -> pl.DataFrame:
    """Typed records of one newline-delimited JSON file."""
    if not data.strip():
        return pl.DataFrame(schema=schema.polars_schema)
    try:
        raw = pl.read_ndjson(io.BytesIO(data), infer_schema_length=None)
    except pl.exceptions.PolarsError as error:
        first_line = str(error).strip().splitlines()[0]
        raise EngineError(f"{source}: not valid newline-delimited JSON ({first_line})") from None
    return conform_to_schema(raw, schema, source)


class PolarsEngine:
    name = "polars"

    def read_landing(self, feed: TableSchema, files: Sequence[str], store: Store) -> LandingRead:
        # Several files at a time: on S3 each read waits tens of milliseconds for
        # the first byte, and a feed may be delivered as thousands of small files.
        with ThreadPoolExecutor(max_workers=LANDING_READERS) as pool:
            frames = list(pool.map(lambda uri: parse_ndjson(store.read_bytes(uri), feed, uri), files))
        records = pl.concat(frames) if frames else pl.DataFrame(schema=feed.polars_schema)
        return LandingRead(nw.from_native(records.lazy()), records.height, tuple(files))

    def scan(self, files: Sequence[str], schema: TableSchema, store: Store) -> nw.LazyFrame:
        if not files:
            return nw.from_native(pl.LazyFrame(schema=schema.polars_schema))
        return nw.from_native(
            pl.scan_parquet(list(files), storage_options=store.storage_options, schema=schema.polars_schema)
        )

    def hold(self, frame: nw.LazyFrame) -> nw.LazyFrame:
        native = frame.to_native()
        with object_store_errors():
            collected = native.collect() if isinstance(native, pl.LazyFrame) else native
        return nw.from_native(collected.lazy())

    def release(self, frame: nw.LazyFrame) -> None:
        return None

    def write(self, frame: nw.LazyFrame, directory_uri: str, store: Store) -> list[str]:
        store.prepare_directory(directory_uri)
        path = join_uri(directory_uri, "part-00000.parquet")
        with object_store_errors(path):
            frame.to_native().sink_parquet(path, storage_options=store.storage_options)
        return [path]
