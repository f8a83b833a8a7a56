"""The Polars engine: the fast default on one machine."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from collections.abc import Mapping
from typing import Sequence

import narwhals as nw
import polars as pl

from stedi_assets.domain import rules
from stedi_assets.lakehouse.engines import LandingRead, ReadProgress, ReadTally, RecordsFolder
from stedi_assets.lakehouse.engines.polars_landing import read_feed_files
from stedi_assets.domain.schemas import TableSchema, delivered_records_schema
from stedi_assets.lakehouse.storage import Store, join_uri
from stedi_assets.lakehouse.storage_s3 import object_store_errors
from stedi_assets.settings import DEFAULT_MAX_FILE_MB

# Landing files read at the same time.
LANDING_READERS = 8
_SLICE = "__slice"


class PolarsEngine:
    name = "polars"
    slices_landing = True

    def __init__(self, max_file_mb: int = DEFAULT_MAX_FILE_MB) -> None:
        self.max_file_mb = max_file_mb

    def close(self) -> None:
        """Nothing to release: Polars runs in this process."""

    def read_landing(
        self, feed: TableSchema, files: Sequence[str], store: Store, records_to: RecordsFolder | None = None,
        sizes: Mapping[str, int] | None = None, progress: ReadProgress | None = None,
    ) -> LandingRead:
        # ``sizes`` is not needed to bound a file: its size is looked at as it is opened
        # (``Store.read_bytes``); only the progress counts them, looked up when not listed.
        if progress is not None and sizes is None:
            sizes = {f: store.size(f) for f in files}
        tally = ReadTally(progress, files, sizes or {})
        # Several files at a time: Polars parses without the GIL, and on S3
        # each read waits tens of milliseconds for the first byte.
        stored: list[str] = []
        records_schema = delivered_records_schema(feed.name.removesuffix("_landing"), feed)
        store_records = None
        if records_to is not None:
            records_to.store.prepare_directory(records_to.uri)
            slice_of = rules.slice_number(rules.slice_column(feed.narwhals_schema), rules.LANDING_SLICES)

            def store_records(part: int, records: pl.DataFrame) -> None:
                # Each slice of the batch in a file of its own (see RecordsFolder).
                numbered = nw.from_native(records).with_columns(slice_of.alias(_SLICE)).to_native()
                for (number,), rows in sorted(numbered.partition_by(_SLICE, as_dict=True, include_key=False).items()):
                    stored.append(self._write_file(rows.lazy(), records_schema, records_to.part_uri(part, number), records_to.store))

        read = read_feed_files(
            feed, files, store.read_bytes, workers=LANDING_READERS, max_file_mb=self.max_file_mb,
            store_records=store_records, on_file=tally.read if progress is not None else None,
        )
        return LandingRead(
            records=self.scan(stored, records_schema, records_to.store) if records_to is not None
            else nw.from_native(read.records.lazy()),
            records_read=read.records_read,
            files=tuple(files),
            quarantine=nw.from_native(read.quarantine.lazy()),
            unknown_fields=read.unknown_fields,
            field_kinds=read.field_kinds,
            quarantined=read.quarantine.height,
            distinct_by_file=read.distinct_by_file,
            stored=tuple(stored) if records_to is not None else None,
        )

    def scan(self, files: Sequence[str], schema: TableSchema, store: Store) -> nw.LazyFrame:
        if not files:
            return nw.from_native(pl.LazyFrame(schema=schema.polars_schema))
        # A file written before a column was added lacks it: read as null.
        return nw.from_native(pl.scan_parquet(
            list(files), storage_options=store.storage_options, schema=schema.polars_schema, missing_columns="insert",
        ))

    def frame(self, rows: Sequence[tuple], schema: TableSchema) -> nw.LazyFrame:
        return nw.from_native(pl.LazyFrame(list(rows), schema=schema.polars_schema, orient="row"))

    def hold(self, frame: nw.LazyFrame) -> nw.LazyFrame:
        native = frame.to_native()
        with object_store_errors():
            collected = native.collect() if isinstance(native, pl.LazyFrame) else native
        return nw.from_native(collected.lazy())

    def release(self, frame: nw.LazyFrame) -> None:
        return None

    def errors(self) -> AbstractContextManager[None]:
        return nullcontext()

    def write(self, frame: nw.LazyFrame, schema: TableSchema, directory_uri: str, store: Store) -> list[str]:
        store.prepare_directory(directory_uri)
        return [self._write_file(frame.to_native(), schema, join_uri(directory_uri, "part-00000.parquet"), store)]

    @staticmethod
    def _write_file(frame: pl.LazyFrame | pl.DataFrame, schema: TableSchema, path: str, store: Store) -> str:
        # Exactly the declared columns and types: the Iceberg commit validates them against the table.
        typed = frame.lazy().select([pl.col(name).cast(dtype) for name, dtype in schema.polars_schema.items()])
        with object_store_errors(path):
            typed.sink_parquet(path, storage_options=store.storage_options)
        return path
