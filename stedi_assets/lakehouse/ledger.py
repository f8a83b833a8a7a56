"""The delivery ledger: one row per landing file version found, and what became of it.

Each landing step records here the file versions it read (feed, URI, size,
fingerprint, records read, kept, quarantined and dropped as duplicates, dropped
as an erased person's (``stedi_assets.lakehouse.erasure``), when
and by which run) and retires the versions it replaced or found removed. It
is also the landing steps' memory: the versions marked ``current`` are the
files a landing table was last built from, and ``records_uri`` is where the
kept records of each are stored, so that a table can be rebuilt without
reading those files again.

Every version a landing step read has its row, whether the landing table was
published or not: a version read by a step whose landing table was held back
(too many records quarantined, say) is ``rejected``, with the reason, and its
records are in the quarantine table. It is read again by every later step of
its feed until it is removed or corrected, and its removal is a change like
any other: the next run drops its quarantined records and publishes the feed.
An entry of the landing folder that is not a file that may be read (a
symbolic link, a device or FIFO, an S3 key leaving its prefix) is ``refused``:
recorded with the reason, never read.

The ledger is small (a row per file version) and always handled with Polars,
whichever engine computes the tables. It is written after the landing and
quarantine tables are committed; a run stopped in between leaves the new
versions unrecorded, and the next run reads them again, which changes no row
of those tables (see ``stedi_assets.lakehouse.ingestion``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from stedi_assets.lakehouse.catalog import TableNotPublishedError
from stedi_assets.lakehouse.tables import StaleUpdateError, commit_update, data_file_paths, evolve_schema, write_folder
from stedi_assets.domain.schemas import DELIVERY_LEDGER
from stedi_assets.lakehouse.storage import join_uri

if TYPE_CHECKING:
    from stedi_assets.lakehouse.lakehouse import Lakehouse

CURRENT, REPLACED, REMOVED, REJECTED, REFUSED = "current", "replaced", "removed", "rejected", "refused"
LIVE = (CURRENT, REJECTED, REFUSED)
"""The statuses of a version that is still there as far as the ledger knows; the others are retired."""
COMMIT_ATTEMPTS = 5


@dataclass(frozen=True)
class Delivery:
    """One file version as read by a landing step (or, ``refused``, found and not read)."""

    uri: str
    size_bytes: int
    fingerprint: str
    records_read: int
    records_kept: int
    records_quarantined: int
    records_uri: str | None
    status: str = CURRENT
    reason: str | None = None
    records_erased: int = 0
    """Records of erased people dropped as they were read: not part of ``records_read``."""

    @property
    def duplicates_dropped(self) -> int:
        return self.records_read - self.records_kept - self.records_quarantined

    def with_status(self, status: str, reason: str | None) -> Delivery:
        return dataclasses.replace(self, status=status, reason=reason)


# What a new row of a URI retires of that URI's live rows: a published version
# replaces whatever was there; a rejected one replaces an earlier rejected or
# refused entry, never the version the landing table still holds.
_REPLACES = {CURRENT: LIVE, REJECTED: (REJECTED, REFUSED), REFUSED: (REJECTED, REFUSED)}


@dataclass(frozen=True)
class FeedDeliveries:
    """The live rows of one feed's files: URI -> ledger row, by status."""

    current: dict[str, dict]
    rejected: dict[str, dict]
    refused: dict[str, dict]


def empty_ledger() -> pl.DataFrame:
    return pl.DataFrame(schema=DELIVERY_LEDGER.polars_schema)


def read_ledger(lakehouse: Lakehouse) -> tuple[pl.DataFrame, int | None]:
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
    return ledger_from_files(files, lakehouse.store_for(files[0]).storage_options), snapshot_id


def ledger_from_files(files: Sequence[str], storage_options: Mapping | None = None) -> pl.DataFrame:
    """Every row of the ledger's data ``files`` (those of one snapshot)."""
    if not files:
        return empty_ledger()
    # A ledger written before a column was declared has files without it: it reads as null.
    frame = pl.scan_parquet(
        list(files), storage_options=storage_options, schema=DELIVERY_LEDGER.polars_schema, missing_columns="insert"
    )
    return frame.collect()


def current_deliveries(ledger: pl.DataFrame, feed: str) -> dict[str, dict]:
    """The current version of each file of ``feed``: URI -> its ledger row."""
    return feed_deliveries(ledger, feed).current


def feed_deliveries(ledger: pl.DataFrame, feed: str) -> FeedDeliveries:
    """The live rows of ``feed``'s files (the newest of each URI and status)."""
    rows = ledger.filter((pl.col("feed") == feed) & pl.col("status").is_in(LIVE)).sort("ingested_at")
    by_status: dict[str, dict[str, dict]] = {status: {} for status in LIVE}
    for row in rows.iter_rows(named=True):
        by_status[row["status"]][row["uri"]] = row
    return FeedDeliveries(by_status[CURRENT], by_status[REJECTED], by_status[REFUSED])


def record_deliveries(
    lakehouse: Lakehouse,
    feed: str,
    delivered: Sequence[Delivery],
    retired: Mapping[str, str],
    run_id: str,
) -> int:
    """Add the versions ``delivered`` (each with its status) and retire the live versions of ``retired``
    (URI -> new status).

    A delivered version retires the live rows of its URI that it replaces
    (``_REPLACES``) as ``replaced``. Several landing steps (of this run or of
    others) may record at once: the update is planned from the ledger as read
    and committed only if no other was committed since, else planned again.
    Returns the ledger's new snapshot id.
    """
    now = int(time.time() * 1000)
    new_rows = pl.DataFrame(
        [
            (feed, d.uri, d.size_bytes, d.fingerprint, d.records_read, d.records_kept, d.records_quarantined,
             d.duplicates_dropped, now, run_id, d.status, None, d.records_uri, d.reason, d.records_erased)
            for d in delivered
        ],
        schema=DELIVERY_LEDGER.polars_schema,
        orient="row",
    )
    of_feed = (pl.col("feed") == feed) & pl.col("status").is_in(LIVE)
    new_status = pl.when(of_feed & pl.col("uri").is_in(list(retired))).then(
        pl.col("uri").replace_strict(dict(retired), default=None, return_dtype=pl.String)
    )
    for status, replaced in _REPLACES.items():
        uris = [d.uri for d in delivered if d.status == status]
        if uris:
            new_status = new_status.when(of_feed & pl.col("uri").is_in(uris) & pl.col("status").is_in(replaced)).then(
                pl.lit(REPLACED)
            )
    new_status = new_status.otherwise(pl.lit(None, dtype=pl.String))
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        ledger, base = read_ledger(lakehouse)
        updated = ledger.with_columns(new_status.alias("_retired")).with_columns(
            pl.coalesce("_retired", "status").alias("status"),
            pl.when(pl.col("_retired").is_not_null()).then(pl.lit(now)).otherwise(pl.col("retired_at")).alias("retired_at"),
        ).drop("_retired")
        contents = pl.concat([updated, new_rows]).sort("feed", "uri", "ingested_at")
        try:
            return _replace_ledger(lakehouse, contents, base, run_id)
        except StaleUpdateError:
            if attempt == COMMIT_ATTEMPTS:
                raise
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def _replace_ledger(lakehouse: Lakehouse, contents: pl.DataFrame, base: int | None, run_id: str) -> int:
    from stedi_assets.lakehouse.catalog import catalog_errors
    from stedi_assets.lakehouse.tables import RUN_ID

    table = DELIVERY_LEDGER.name
    iceberg_table = evolve_schema(lakehouse.load_table(table, create=True), DELIVERY_LEDGER)

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
