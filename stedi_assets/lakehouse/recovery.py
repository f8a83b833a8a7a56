"""The catalog is rebuilt from the tables' own metadata files, never silently replaced.

Every commit writes a new metadata file ``{table}/metadata/NNNNN-uuid.metadata.json``
(NNNNN counts the table's commits) holding the table's schema and every kept
snapshot; the catalog only points at the current one. So a lost catalog
(deleted, emptied, or another catalog configured) loses nothing but those
pointers, and :func:`recover_catalog` sets them again: each table is registered
at its newest readable metadata file, with its snapshot history intact. A
table whose current metadata file is missing or unreadable is re-pointed the
same way, to the newest one that reads, i.e. back to its last readable snapshot.

Until then :func:`lost_tables` lets every writer and reader refuse to work
with a catalog that does not hold the tables stored under the lakehouse
root: creating them afresh would start their history again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass

from stedi_assets.lakehouse.catalog import (
    CATALOG_FILE,
    RECOVER_COMMAND,
    CatalogError,
    CatalogSettings,
    _reason,
    build_catalog,
    catalog_errors,
)
from stedi_assets.domain.schemas import PUBLISHED
from stedi_assets.lakehouse.storage import StorageError, join_uri, local_path, normalize_uri
from stedi_assets.lakehouse.tables import table_location
_METADATA_FILE = re.compile(r"(\d+)-[0-9a-fA-F-]{36}\.metadata\.json")


@dataclass(frozen=True)
class MetadataFile:
    version: int
    """The commit count in its name: 0 for the file written when the table was created."""
    uri: str

    @property
    def name(self) -> str:
        return self.uri.rsplit("/", 1)[-1]


def metadata_files(store, location: str) -> list[MetadataFile]:
    """The table's metadata files, newest (highest version) first."""
    found = []
    for uri in store.list_files(join_uri(location, "metadata")):
        match = _METADATA_FILE.fullmatch(uri.rsplit("/", 1)[-1])
        if match:
            found.append(MetadataFile(int(match.group(1)), uri))
    return sorted(found, key=lambda f: (f.version, f.uri), reverse=True)


def committed_tables(settings: CatalogSettings, store, tables: Collection[str] = tuple(PUBLISHED)) -> list[str]:
    """Those of ``tables`` that have committed at least once (a metadata file of version 1 or more).

    A table's first commit happens after the catalog holds it, so such a
    table missing from the catalog was lost from it; a table that was only
    created (version 0) has no history to lose. Empty when the lakehouse
    cannot be listed: whatever reads or writes it next fails on that, naming it.
    """
    committed = []
    for table in tables:
        try:
            files = metadata_files(store, table_location(settings.lakehouse_uri, [table]))
        except StorageError:
            return []
        if any(f.version >= 1 for f in files):
            committed.append(table)
    return committed


def held_tables(catalog, settings: CatalogSettings) -> set[str]:
    from pyiceberg.exceptions import NoSuchNamespaceError

    with catalog_errors(settings, None):
        try:
            return {identifier[-1] for identifier in catalog.list_tables(settings.database)}
        except NoSuchNamespaceError:
            return set()


def lost_catalog_error(settings: CatalogSettings, lost: Collection[str], holds_any: bool) -> CatalogError:
    """The one line for a catalog that lacks tables stored under the lakehouse root."""
    if holds_any:
        what = f"does not hold {', '.join(lost)}, stored under {settings.lakehouse_uri}"
    else:
        what = f"holds none of the {len(lost)} tables stored under {settings.lakehouse_uri} (it is missing, empty or another catalog)"
    return CatalogError(
        f"the catalog {settings.describe()} {what}: nothing was read or written; run `{RECOVER_COMMAND}` to register "
        "the tables again from their metadata files, with their snapshots"
    )


def open_catalog(settings: CatalogSettings, store, create: bool = True):
    """The catalog (:func:`build_catalog`), once it is known to hold every table that committed under the
    lakehouse root; else one line naming the catalog and the recovery command, before anything is created.

    Only the tables the catalog does not hold are looked for under the root: a catalog that holds every
    table costs one listing of the catalog, not one of each table's metadata folder.
    """
    if settings.kind == "sqlite" and not (local_path(settings.lakehouse_uri) / CATALOG_FILE).exists():
        # Building the catalog would create its file: look first.
        stored = committed_tables(settings, store)
        if stored:
            raise lost_catalog_error(settings, stored, holds_any=False)
    catalog = build_catalog(settings, create=create)
    try:
        held = held_tables(catalog, settings)
    except CatalogError:
        return catalog  # not listable (credentials, network): whatever reads or writes next fails on it, naming it
    lost = committed_tables(settings, store, [table for table in PUBLISHED if table not in held])
    if lost:
        raise lost_catalog_error(settings, lost, holds_any=bool(held))
    return catalog


def check_not_lost(settings: CatalogSettings, store, table: str) -> None:
    """Before a table is created: refuse when it has committed before (the catalog lost it)."""
    files = metadata_files(store, table_location(settings.lakehouse_uri, [table]))
    if any(f.version >= 1 for f in files):
        raise lost_catalog_error(settings, [table], holds_any=True)


# -- recovery ------------------------------------------------------------------


@dataclass(frozen=True)
class Recovered:
    """What the recovery did with one table stored under the lakehouse root."""

    table: str
    action: str
    """``kept`` (the catalog's entry reads), ``registered`` (the catalog did not hold it), ``re-pointed``
    (its metadata file was missing or unreadable) or ``failed`` (no metadata file of it reads)."""
    metadata_location: str | None = None
    snapshots: int = 0
    current_snapshot_id: int | None = None
    skipped: tuple[str, ...] = ()
    """Newer metadata files that did not read, each with the reason."""
    reason: str = ""
    """Why the catalog's entry was re-pointed, or why the table failed."""


def _broken(error: BaseException) -> bool:
    """A metadata file that is gone or does not parse: what re-pointing mends (not a network or access error)."""
    return isinstance(error, (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError)) or (
        type(error).__name__ == "ValidationError"
    )


def _read_metadata(catalog, uri: str):
    from pyiceberg.io import load_file_io
    from pyiceberg.serializers import FromInputFile

    io = load_file_io(catalog.properties, uri)
    metadata = FromInputFile.table_metadata(io.new_input(uri))
    snapshot = metadata.current_snapshot()
    # The current snapshot must be readable too: its manifest list is the first file a read opens.
    if snapshot is not None and not io.new_input(snapshot.manifest_list).exists():
        raise FileNotFoundError(2, "manifest list missing", snapshot.manifest_list)
    return metadata


def newest_readable(catalog, files: list[MetadataFile], location: str):
    """(file, metadata, skipped) for the newest of ``files`` that reads and belongs at ``location``.

    Files of one version (two writers raced to commit it) are ordered by the
    time they were written.
    """
    skipped: list[str] = []
    versions = sorted({f.version for f in files}, reverse=True)
    for version in versions:
        readable = []
        for candidate in (f for f in files if f.version == version):
            try:
                metadata = _read_metadata(catalog, candidate.uri)
            except Exception as error:  # noqa: BLE001 - each reason is reported
                if not _broken(error):
                    raise
                skipped.append(f"{candidate.name} ({_reason(error)})")
                continue
            if normalize_uri(metadata.location) != normalize_uri(location):
                skipped.append(f"{candidate.name} (written for a table at {metadata.location}, not {location})")
                continue
            readable.append((metadata.last_updated_ms, candidate, metadata))
        if readable:
            _, chosen, metadata = max(readable, key=lambda item: (item[0], item[1].uri))
            return chosen, metadata, tuple(skipped)
    return None, None, tuple(skipped)


def recover_catalog(catalog, settings: CatalogSettings, store) -> list[Recovered]:
    """Register every table stored under the lakehouse root that the catalog lacks, and re-point every
    entry whose metadata file is missing or unreadable, each at its newest readable metadata file.

    Entries that read are kept as they are. A table is only ever registered
    from its own metadata files: no data or metadata file is written or deleted.
    """
    from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError

    results = []
    namespace_ready = False
    for table in PUBLISHED:
        location = table_location(settings.lakehouse_uri, [table])
        with catalog_errors(settings, table):
            files = metadata_files(store, location)
        if not files:
            continue
        identifier = settings.identifier(table)
        reason = ""
        with catalog_errors(settings, table):
            try:
                catalog.load_table(identifier)
                results.append(Recovered(table, "kept"))
                continue
            except NoSuchTableError:
                registered = False
            except Exception as error:  # noqa: BLE001 - only a broken metadata file is mended
                if not _broken(error):
                    raise
                registered, reason = True, _reason(error)
            chosen, metadata, skipped = newest_readable(catalog, files, location)
            if chosen is None:
                results.append(Recovered(table, "failed", skipped=skipped, reason="no metadata file of it reads"))
                continue
            if not namespace_ready:
                try:
                    catalog.create_namespace(settings.database)
                except NamespaceAlreadyExistsError:
                    pass
                namespace_ready = True
            if registered:
                # Neither SQL nor Glue catalogs can move an entry to another metadata file: the
                # entry alone is dropped (drop_table deletes no file; purge_table would) and registered again.
                catalog.drop_table(identifier)
            catalog.register_table(identifier, chosen.uri)
        results.append(Recovered(
            table, "re-pointed" if registered else "registered", chosen.uri, len(metadata.snapshots),
            metadata.current_snapshot_id, skipped, reason,
        ))
    return results


def describe(result: Recovered, settings: CatalogSettings) -> str:
    """One line for one table's recovery."""
    identifier = settings.identifier(result.table)
    skipped = f"; skipped newer {', '.join(result.skipped)}" if result.skipped else ""
    if result.action == "kept":
        return f"{identifier}: in the catalog, its metadata reads: kept"
    if result.action == "failed":
        return f"{identifier}: not recovered: {result.reason}{skipped}"
    state = f"{result.snapshots} snapshot(s), current {result.current_snapshot_id}"
    name = (result.metadata_location or "").rsplit("/", 1)[-1]
    if result.action == "registered":
        return f"{identifier}: registered at {name} ({state}){skipped}"
    return f"{identifier}: re-pointed to {name} ({state}); the catalog's metadata could not be read: {result.reason}{skipped}"
