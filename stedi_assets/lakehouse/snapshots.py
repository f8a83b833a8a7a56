"""The current snapshot of each table, read from a local SQLite catalog and the tables' metadata files.

Deciding what is out of date (``planning.out_of_date``) needs of each table
only its current snapshot (id and summary) and the delivery ledger's rows.
pyiceberg gives them after importing its SQL catalog (SQLAlchemy) and its
PyArrow file IO (pyarrow, pandas) and parsing each metadata file whole: most
of the time a ``stedi run`` with nothing to do used to take. For the local
SQLite catalog they are read here with the standard library (the catalog's
``iceberg_tables`` rows, each current metadata file's JSON) and Polars (the
ledger's manifest list and manifests are Avro files): fields of the Iceberg
table spec, nothing of pyiceberg's own.

Whenever that is not certain to give pyiceberg's answer (another catalog, an
``s3://`` lakehouse, a table the catalog lacks, one stored outside the
lakehouse, a file that does not read, delete files) the functions here return
None and the caller loads the tables with pyiceberg, which then says what is
wrong in its own one line.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from stedi_assets.domain.schemas import PUBLISHED
from stedi_assets.lakehouse.catalog import CATALOG_FILE, CATALOG_NAME, CatalogSettings
from stedi_assets.lakehouse.storage import StorageError, local_path, normalize_uri

# Manifest entry status and content values of the Iceberg spec.
_DELETED = 2
_DATA = 0


@dataclass(frozen=True)
class CurrentSnapshot:
    """A table's current snapshot: its id, its summary's properties and (read directly) its manifest list."""

    snapshot_id: int
    properties: Mapping[str, str]
    """The snapshot summary's properties (``total-records``, ``stedi.upstream.<table>``...), not its operation."""
    manifest_list: str | None = None


def _catalog_rows(settings: CatalogSettings) -> dict[str, str | None] | None:
    """Table name -> metadata location of every table of the lakehouse's SQLite catalog; None when there is none."""
    if settings.kind != "sqlite":
        return None
    try:
        path = local_path(settings.lakehouse_uri) / CATALOG_FILE
        if not path.is_file():
            return None
        # Read-only: reading must never create or change the catalog.
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as connection:
            rows = connection.execute(
                "SELECT table_name, metadata_location FROM iceberg_tables "
                "WHERE catalog_name = ? AND table_namespace = ?",
                (CATALOG_NAME, settings.database),
            ).fetchall()
    except (sqlite3.Error, StorageError, OSError, ValueError):
        return None
    return dict(rows)


def holds_every_table(settings: CatalogSettings) -> bool:
    """Whether the local SQLite catalog holds every table of the lakehouse: then none was lost from it
    (``recovery.open_catalog`` looks for lost tables only among those it lacks)."""
    rows = _catalog_rows(settings)
    return rows is not None and all(rows.get(table) for table in PUBLISHED)


def current_snapshots(settings: CatalogSettings, tables: Collection[str]) -> dict[str, CurrentSnapshot] | None:
    """The current snapshot of each of ``tables`` that has one, or None when pyiceberg must be asked
    (see the module's docstring)."""
    rows = _catalog_rows(settings)
    if rows is None or not all(rows.get(table) for table in PUBLISHED):
        return None
    root = settings.lakehouse_uri.rstrip("/") + "/"
    found: dict[str, CurrentSnapshot] = {}
    for table in tables:
        try:
            metadata = json.loads(local_path(rows[table]).read_bytes())
            location = metadata["location"]
            # As ``Lakehouse.load_table``: a table stored outside the lakehouse is refused there.
            if not normalize_uri(location).startswith(root) and not location.startswith(root):
                return None
            current = metadata.get("current-snapshot-id")
            if current is None or current == -1:
                continue
            snapshot = next(s for s in metadata["snapshots"] if s["snapshot-id"] == current)
        except (OSError, ValueError, KeyError, TypeError, StopIteration, StorageError):
            return None
        summary = {k: str(v) for k, v in snapshot.get("summary", {}).items() if k != "operation"}
        found[table] = CurrentSnapshot(int(current), summary, snapshot.get("manifest-list"))
    return found


def data_files(snapshot: CurrentSnapshot) -> list[str] | None:
    """The Parquet files holding ``snapshot`` (as ``tables.data_file_paths``), or None when pyiceberg must
    be asked: no manifest list, one that does not read, or delete files."""
    import polars as pl

    if not snapshot.manifest_list:
        return None
    try:
        manifests = pl.read_avro(local_path(snapshot.manifest_list))
        if (manifests["content"] != _DATA).any():
            return None
        paths = []
        for manifest in manifests["manifest_path"]:
            entries = pl.read_avro(local_path(manifest)).filter(pl.col("status") != _DELETED)
            files = entries.select(
                pl.col("data_file").struct.field("content"), pl.col("data_file").struct.field("file_path")
            )
            if (files["content"] != _DATA).any():
                return None
            paths += files["file_path"].to_list()
    except Exception:  # noqa: BLE001 - whatever the cause, pyiceberg reads it or says why
        return None
    return sorted(paths)
