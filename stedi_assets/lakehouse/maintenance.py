"""Lakehouse maintenance: expire old snapshots, then delete the files no kept snapshot needs.

For each table:

1. **Expire snapshots** older than ``max_age_hours``, always keeping the
   current snapshot and the newest ``min_kept`` ones (one commit, through the
   catalog, so it conflicts safely with a concurrent writer).
2. **Delete unreferenced files** under the table's location: data files,
   manifests and manifest lists that no kept snapshot refers to, and metadata
   files outside the metadata log: what expired snapshots used, and what a
   failed or killed write left behind. pyiceberg does not do this itself.
   Files younger than ``orphan_min_age_hours`` are never deleted: they may
   belong to a write in flight that has not committed yet.

The files are listed **before** the table's metadata is read, so a file a
concurrent writer commits meanwhile is either in that metadata or younger
than the listing; a commit after the listing only adds files younger than
the safety age. Any snapshot that is kept reads completely afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stedi_assets.lakehouse.catalog import TableNotPublishedError
from stedi_assets.domain.schemas import PUBLISHED

if TYPE_CHECKING:
    from stedi_assets.lakehouse.lakehouse import Lakehouse


@dataclass(frozen=True)
class TableMaintenance:
    table: str
    snapshots_expired: int
    snapshots_kept: int
    files_deleted: int
    unreferenced_files_too_young: int


def snapshots_to_expire(iceberg_table, max_age_hours: float, min_kept: int, now_ms: int) -> list[int]:
    """Snapshots older than the age limit, except the current one and the newest ``min_kept``."""
    snapshots = sorted(iceberg_table.snapshots(), key=lambda s: (s.timestamp_ms, s.sequence_number or 0), reverse=True)
    protected = {s.snapshot_id for s in snapshots[:min_kept]}
    protected.add(iceberg_table.metadata.current_snapshot_id)
    cutoff = now_ms - max_age_hours * 3_600_000
    return [s.snapshot_id for s in snapshots if s.snapshot_id not in protected and s.timestamp_ms < cutoff]


def referenced_files(iceberg_table) -> set[str]:
    """Every file the table's metadata refers to: metadata log, manifest lists, manifests, live data files."""
    io = iceberg_table.io
    metadata = iceberg_table.metadata
    files = {iceberg_table.metadata_location}
    files.update(entry.metadata_file for entry in metadata.metadata_log)
    for snapshot in metadata.snapshots:
        files.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(io):
            files.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
                files.add(entry.data_file.file_path)
    if stats := getattr(metadata, "statistics", None):
        files.update(s.statistics_path for s in stats)
    return {plain_uri(f) for f in files}


def plain_uri(uri: str) -> str:
    """A file's URI as the stores list it."""
    # Local files are referred to as paths or file:// URIs; the store lists paths.
    return uri[len("file://"):] if uri.startswith("file://") else uri


def current_records_folders(lakehouse: Lakehouse, table: str) -> set[str]:
    """The delivery-record folders the ledger's current versions of ``table``'s feed refer to."""
    from stedi_assets.lakehouse.ledger import current_deliveries, read_ledger

    if not table.endswith("_landing"):
        return set()
    current = current_deliveries(read_ledger(lakehouse)[0], table.removesuffix("_landing"))
    return {row["records_uri"] for row in current.values() if row["records_uri"]}


def maintain_table(lakehouse: Lakehouse, table: str, now: float | None = None) -> TableMaintenance:
    now = time.time() if now is None else now
    if lakehouse.snapshots_min_kept < 1:
        raise ValueError(f"snapshots_min_kept={lakehouse.snapshots_min_kept}: at least the current snapshot is kept (>= 1)")
    if lakehouse.snapshot_max_age_hours < 0 or lakehouse.orphan_min_age_hours < 0:
        raise ValueError("snapshot_max_age_hours and orphan_min_age_hours must be 0 or more")
    iceberg_table = lakehouse.load_table(table)
    expired = snapshots_to_expire(
        iceberg_table, lakehouse.snapshot_max_age_hours, lakehouse.snapshots_min_kept, int(now * 1000)
    )
    if expired:
        iceberg_table.maintenance.expire_snapshots().by_ids(expired).commit()
    location = iceberg_table.location()
    store = lakehouse.store_for(location)
    listed = store.list_objects(location)  # before the metadata is read again: see the module's docstring
    iceberg_table = lakehouse.load_table(table)
    referenced = referenced_files(iceberg_table)
    # A landing table's delivery records (see stedi_assets.lakehouse.ingestion) are referenced by the ledger's current rows.
    delivery_folders = {folder.rstrip("/") + "/" for folder in current_records_folders(lakehouse, table)}
    referenced.update(uri for uri, _ in listed if any(plain_uri(uri).startswith(plain_uri(f)) for f in delivery_folders))
    safety_cutoff = now - lakehouse.orphan_min_age_hours * 3600
    unreferenced = [(uri, modified) for uri, modified in listed if plain_uri(uri) not in referenced]
    old_enough = [uri for uri, modified in unreferenced if modified <= safety_cutoff]
    store.delete_files(old_enough)
    return TableMaintenance(
        table=table,
        snapshots_expired=len(expired),
        snapshots_kept=len(iceberg_table.snapshots()),
        files_deleted=len(old_enough),
        unreferenced_files_too_young=len(unreferenced) - len(old_enough),
    )


def maintain_lakehouse(
    lakehouse: Lakehouse, now: float | None = None, on_table: Callable[[TableMaintenance], None] | None = None,
) -> list[TableMaintenance]:
    """Maintain every table that exists; a table not yet created is skipped. ``on_table`` is told each
    table's report as soon as the table is done (a large lakehouse takes a while)."""
    reports = []
    for table in PUBLISHED:
        try:
            reports.append(maintain_table(lakehouse, table, now))
        except TableNotPublishedError:
            continue
        if on_table is not None:
            on_table(reports[-1])
    return reports


def describe(report: TableMaintenance) -> str:
    return (
        f"{report.table}: {report.snapshots_expired} snapshot(s) expired, {report.snapshots_kept} kept; "
        f"{report.files_deleted} unreferenced file(s) deleted"
        + (f", {report.unreferenced_files_too_young} younger than the safety age kept" if report.unreferenced_files_too_young else "")
    )


