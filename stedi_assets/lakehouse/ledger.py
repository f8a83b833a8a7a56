"""The delivery ledger: one row per landing file version ingested, and what became of it.

Each landing step records here the file versions it read (feed, URI, size,
fingerprint, records read, kept, quarantined and dropped as duplicates, when
and by which run) and retires the versions it replaced or found removed. It
is also the landing steps' memory: the versions marked ``current`` are the
files a landing table was last built from, and ``records_uri`` is where the
kept records of each are stored, so that a table can be rebuilt without
reading those files again.

The ledger is small (a row per file version) and always handled with Polars,
whichever engine computes the tables. It is written after the landing and
quarantine tables are committed; a run stopped in between leaves the new
versions unrecorded, and the next run reads them again, which changes no row
of those tables (see ``stedi_assets.ingestion``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from stedi_assets.lakehouse.catalog import TableNotPublishedError
from stedi_assets.lakehouse.tables import StaleUpdateError, commit_update, data_file_paths
from stedi_assets.schemas import DELIVERY_LEDGER
from stedi_assets.storage import join_uri

if TYPE_CHECKING:
    from stedi_assets.resources import StediLakehouse

CURRENT, REPLACED, REMOVED = "current", "replaced", "removed"
COMMIT_ATTEMPTS = 5


@dataclass(frozen=True)
class Delivery:
    """One file version as read by a landing step."""

    uri: str
    size_bytes: int
    fingerprint: str
    records_read: int
    records_kept: int
    records_quarantined: int
    records_uri: str

    @property
    def duplicates_dropped(self) -> int:
        return self.records_read - self.records_kept - self.records_quarantined


def empty_ledger() -> pl.DataFrame:
    return pl.DataFrame(schema=DELIVERY_LEDGER.polars_schema)


def read_ledger(lakehouse: StediLakehouse) -> tuple[pl.DataFrame, int | None]:
    """Every row of the ledger and the snapshot read (None: no ledger yet)."""
    try:
        table = lakehouse.load_table(DELIVERY_LEDGER.name)
    except TableNotPublishedError:
        return empty_ledger(), None
    snapshot_id = table.metadata.current_snapshot_id
    if snapshot_id is None:
        return empty_ledger(), None
    # Its data files read directly (this project writes no delete files): a tenth of a scan's planning time.
    files = data_file_paths(table, snapshot_id)
    if not files:
        return empty_ledger(), snapshot_id
    store = lakehouse.store_for(files[0])
    frame = pl.scan_parquet(files, storage_options=store.storage_options, schema=DELIVERY_LEDGER.polars_schema)
    return frame.collect(), snapshot_id


def current_deliveries(ledger: pl.DataFrame, feed: str) -> dict[str, dict]:
    """The current version of each file of ``feed``: URI -> its ledger row."""
    rows = ledger.filter((pl.col("feed") == feed) & (pl.col("status") == CURRENT))
    return {row["uri"]: row for row in rows.iter_rows(named=True)}


def record_deliveries(
    lakehouse: StediLakehouse,
    feed: str,
    delivered: Sequence[Delivery],
    retired: Mapping[str, str],
    run_id: str,
) -> int:
    """Add the versions ``delivered`` as current and retire the versions of ``retired`` (URI -> new status).

    Any current version of a delivered URI is retired as ``replaced``. Several
    landing steps (of this run or of others) may record at once: the update
    is planned from the ledger as read and committed only if no other was
    committed since, else planned again. Returns the ledger's new snapshot id.
    """
    now = int(time.time() * 1000)
    retired = {**{d.uri: REPLACED for d in delivered}, **retired}
    new_rows = pl.DataFrame(
        [
            (feed, d.uri, d.size_bytes, d.fingerprint, d.records_read, d.records_kept, d.records_quarantined,
             d.duplicates_dropped, now, run_id, CURRENT, None, d.records_uri)
            for d in delivered
        ],
        schema=DELIVERY_LEDGER.polars_schema,
        orient="row",
    )
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        ledger, base = read_ledger(lakehouse)
        is_retired = (
            (pl.col("feed") == feed) & (pl.col("status") == CURRENT) & pl.col("uri").is_in(list(retired))
        )
        updated = ledger.with_columns(
            pl.when(is_retired).then(pl.col("uri").replace_strict(retired, default=None))
            .otherwise(pl.col("status")).alias("status"),
            pl.when(is_retired).then(pl.lit(now)).otherwise(pl.col("retired_at")).alias("retired_at"),
        )
        contents = pl.concat([updated, new_rows]).sort("feed", "uri", "ingested_at")
        try:
            return _replace_ledger(lakehouse, contents, base, run_id)
        except StaleUpdateError:
            if attempt == COMMIT_ATTEMPTS:
                raise
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def _replace_ledger(lakehouse: StediLakehouse, contents: pl.DataFrame, base: int | None, run_id: str) -> int:
    from stedi_assets.lakehouse.catalog import catalog_errors
    from stedi_assets.lakehouse.tables import RUN_ID

    table = DELIVERY_LEDGER.name
    iceberg_table = lakehouse.load_table(table, create=True)
    from stedi_assets.resources import write_folder

    folder = write_folder(iceberg_table, run_id)
    store = lakehouse.store_for(folder)
    store.prepare_directory(folder)
    path = join_uri(folder, "part-00000.parquet")
    contents.write_parquet(path, storage_options=store.storage_options)
    settings = lakehouse.catalog_settings()
    with catalog_errors(settings, table):
        commit = commit_update(
            lambda: lakehouse.load_table(table), settings.identifier(table), [path], {RUN_ID: run_id}, base,
            replace=True,
        )
    return commit.snapshot_id
