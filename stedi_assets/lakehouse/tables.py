"""Iceberg tables of the declared schemas, and the one commit that replaces a table's contents.

A materialization writes Parquet files into the table's ``data/`` folder (the
engine does that, Polars or Spark) and then commits them in **one snapshot**
of operation ``overwrite``: every data file of the current snapshot is removed
and the new ones are added, in one catalog commit. Readers see the previous
snapshot or the new one, never a mix; every snapshot holds a complete table,
so time travel to any of them gives a whole table (pyiceberg's own
``overwrite`` makes two snapshots, the first of them empty).

The files carry no Iceberg field ids: the table's name mapping
(``schema.name-mapping.default``) maps their columns by name, as the spec
provides for imported files; Spark, Trino, Athena and pyiceberg honour it.

Commits are optimistic: when another writer committed first, the commit is
rebuilt against the new current snapshot (whose files it then replaces) and
tried again; after :data:`COMMIT_ATTEMPTS` the step fails with one line.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from stedi_assets.lakehouse.catalog import CatalogError
from stedi_assets.domain.schemas import PUBLISHED, Column, TableSchema
from stedi_assets.lakehouse.storage import join_uri, normalize_uri

COMMIT_ATTEMPTS = 5
DELIVERIES_FOLDER = "deliveries"
"""The folder, in a landing table's location, of the records each landing file delivered (see ingestion)."""
RUN_ID = "stedi.run_id"
ADDED_COLUMNS = "stedi.added-columns"
"""Snapshot property: the columns the snapshot's commit added to the table (``name type, ...``)."""
UPSTREAM = "stedi.upstream."
"""Snapshot property prefix: ``stedi.upstream.<table>`` = the upstream snapshot id a table was computed from."""

TABLE_PROPERTIES = {
    "format-version": "2",
    # Old metadata files are deleted by the commit that makes them older than the last 20.
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
}


PLANNED_UPDATE_PROPERTIES = {"commit.retry.num-retries": "0"}
"""Tables updated by :func:`commit_update` (incremental landing tables, the ledger): pyiceberg must not
retry a conflicting commit by rebasing it, since the update depends on the snapshot it was planned from."""


def iceberg_schema(table: TableSchema):
    """The Iceberg schema of a declared table: field ids 1..n in column order, the column docs.

    Every field is optional: a landing record without a required value is
    quarantined before it reaches a table, and the files written by Polars and
    Spark declare every column optional.
    """
    from pyiceberg.schema import Schema
    from pyiceberg.types import NestedField

    return Schema(
        *(
            NestedField(i, c.name, iceberg_type(c.type), required=False, doc=c.description)
            for i, c in enumerate(table.columns, start=1)
        )
    )


def iceberg_type(column_type: str):
    """The Iceberg type of a column type."""
    from pyiceberg.types import BooleanType, DoubleType, LongType, StringType

    return {"string": StringType(), "bigint": LongType(), "double": DoubleType(), "boolean": BooleanType()}[column_type]


def column_type_of(field_type) -> str | None:
    """The column type of an Iceberg type; None for a type no column of this project has."""
    return {"string": "string", "long": "bigint", "double": "double", "boolean": "boolean"}.get(str(field_type))


def effective_schema(iceberg_table, table: TableSchema) -> TableSchema:
    """The declared schema with the columns the Iceberg table has beyond it (added from delivered records)."""
    declared = {c.name for c in table.columns}
    extra = [
        Column(f.name, column_type_of(f.field_type), f.doc or "", pii=False)
        for f in iceberg_table.schema().fields
        if f.name not in declared and column_type_of(f.field_type) is not None
    ]
    return table.with_columns(extra)


def table_properties(table: TableSchema) -> dict[str, str]:
    from pyiceberg.table.name_mapping import create_mapping_from_schema

    return {
        **TABLE_PROPERTIES,
        **(PLANNED_UPDATE_PROPERTIES if table.zone in ("landing", "operations") else {}),
        "comment": f"{table.zone} zone: {table.grain}",
        "schema.name-mapping.default": create_mapping_from_schema(iceberg_schema(table)).model_dump_json(),
    }


@dataclass(frozen=True)
class TableUpdate:
    """A change planned against one snapshot of a table (``base_snapshot_id``; None: the table has none).

    Exactly one of: ``replace`` (the table's whole new contents), ``append``
    (rows to add), or neither (the table stays as it is; nothing is committed
    unless ``record``).
    """

    base_snapshot_id: int | None
    replace: Any = None
    append: Any = None
    record: bool = False
    """With neither: commit a snapshot without data anyway, to record new snapshot properties (a derived
    table's new input snapshots, when its rows stay the same)."""

    @property
    def kind(self) -> str:
        return "replace" if self.replace is not None else "append" if self.append is not None else "unchanged"


@dataclass(frozen=True)
class TableRead:
    """A table read at one snapshot: its rows as a lazy frame of the engine, and the data files holding them."""

    table: str
    frame: Any
    """A narwhals LazyFrame."""
    snapshot_id: int
    files: tuple[str, ...]
    schema: TableSchema
    iceberg_table: Any
    """The Iceberg table it was read from (its other snapshots: what changed since one of them)."""


@dataclass(frozen=True)
class Commit:
    """What one materialization committed."""

    identifier: str
    snapshot_id: int
    metadata_location: str
    rows: int
    attempts: int
    committed: bool = True
    """False when the update changed nothing: the snapshot is the one the table already had."""
    added_columns: str = ""
    """Columns this commit added to the table (``name type, ...``); empty if none."""

    @classmethod
    def of(cls, iceberg_table, identifier: str, attempts: int = 1, committed: bool = True) -> Commit:
        """The table's current snapshot, as committed (or, ``committed=False``, as it already was)."""
        snapshot = iceberg_table.metadata.current_snapshot()
        return cls(
            identifier=identifier,
            snapshot_id=snapshot.snapshot_id,
            metadata_location=iceberg_table.metadata_location,
            rows=int(snapshot.summary.get("total-records", 0)),
            attempts=attempts,
            committed=committed,
            added_columns=snapshot.summary.get(ADDED_COLUMNS, "") if committed and snapshot.summary else "",
        )


def open_or_create(
    catalog, identifier: str, table: TableSchema, location: str, before_create: Callable[[], None] | None = None
):
    """The table ``identifier``, created with the declared schema at ``location`` if it does not exist.

    Another run may create it at the same moment; the loser loads the winner's table.
    ``before_create`` is called before a table is created, and may refuse it by raising.
    """
    from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError, TableAlreadyExistsError

    namespace = identifier.rsplit(".", 1)[0]
    try:
        return catalog.load_table(identifier)
    except NoSuchTableError:
        pass
    if before_create is not None:
        before_create()
    try:
        catalog.create_namespace(namespace)
    except NamespaceAlreadyExistsError:
        pass
    try:
        return catalog.create_table(
            identifier, iceberg_schema(table), location=location, properties=table_properties(table)
        )
    except TableAlreadyExistsError:
        return catalog.load_table(identifier)


def evolve_schema(iceberg_table, table: TableSchema):
    """``iceberg_table`` with every declared column it lacks added at the end (nullable, with its doc);
    files written before read such a column as null. Returns the table as committed."""
    from pyiceberg.exceptions import CommitFailedException

    present = {field.name for field in iceberg_table.schema().fields}
    missing = [column for column in table.columns if column.name not in present]
    if not missing:
        return iceberg_table
    try:
        # One commit; the table's name mapping gains the columns with the schema.
        with iceberg_table.update_schema() as update:
            for column in missing:
                update.add_column(column.name, iceberg_type(column.type), doc=column.description)
    except CommitFailedException:
        # Another writer committed first (perhaps the same change): look again from its metadata.
        return evolve_schema(iceberg_table.refresh(), table)
    return iceberg_table


def check_schema(iceberg_table, table: TableSchema, identifier: str) -> None:
    """The table's current schema must start with the declared one (names, types, order); columns after
    it are columns added from delivered records, of a type a column may have."""
    expected = iceberg_schema(table)
    fields = iceberg_table.schema().fields
    found = [(f.name, str(f.field_type)) for f in fields]
    wanted = [(f.name, str(f.field_type)) for f in expected.fields]
    added_ok = all(column_type_of(f.field_type) is not None for f in fields[len(wanted):])
    if found[:len(wanted)] != wanted or not added_ok:
        raise CatalogError(
            f"table {identifier}: its schema {found} is not the declared one {wanted}; "
            "drop the table or migrate it before writing"
        )


def current_data_files(iceberg_table, snapshot_id: int | None = None) -> list:
    """The DataFile entries of a snapshot (default: the current one)."""
    metadata = iceberg_table.metadata
    snapshot = metadata.snapshot_by_id(snapshot_id) if snapshot_id is not None else metadata.current_snapshot()
    if snapshot is None:
        return []
    return [
        entry.data_file
        for manifest in snapshot.manifests(iceberg_table.io)
        for entry in manifest.fetch_manifest_entry(iceberg_table.io, discard_deleted=True)
    ]


def stage_files(
    iceberg_table, files: Sequence[str], properties: Mapping[str, str], replace: bool,
    columns: Sequence[Column] = (),
):
    """A transaction of one snapshot adding the Parquet ``files`` (and, with ``replace``, removing every
    current one), which first adds to the table each of ``columns`` it lacks: the schema change and the
    data are one commit, recorded in the snapshot's ``stedi.added-columns``."""
    from pyiceberg.io.pyarrow import parquet_file_to_data_file

    from stedi_assets.domain.evolution import describe

    transaction = iceberg_table.transaction()
    present = {f.name for f in iceberg_table.schema().fields}
    added = [column for column in columns if column.name not in present]
    properties = dict(properties)
    if added:
        # The table's name mapping gains the columns with the schema (pyiceberg updates both).
        with transaction.update_schema() as update:
            for column in added:
                update.add_column(column.name, iceberg_type(column.type), doc=column.description)
        properties[ADDED_COLUMNS] = describe(added)
    # Read against the schema as it will be, with the added columns.
    data_files = [parquet_file_to_data_file(iceberg_table.io, transaction.table_metadata, f) for f in files]
    producer = transaction.update_snapshot(snapshot_properties=properties)
    with (producer.overwrite() if replace else producer.fast_append()) as update:
        if replace:
            for data_file in current_data_files(iceberg_table):
                update.delete_data_file(data_file)
        for data_file in data_files:
            update.append_data_file(data_file)
    return transaction


def replace_contents(
    load: Callable[[], Any],
    identifier: str,
    files: Sequence[str],
    properties: Mapping[str, str],
    attempts: int = COMMIT_ATTEMPTS,
    columns: Sequence[Column] = (),
) -> Commit:
    """Make ``files`` the whole contents of the table, in one snapshot and one commit.

    ``load`` returns the table as currently committed; it is called again after
    a conflict, and the commit is rebuilt on top of what the other writer
    committed (its files are the ones replaced).
    """
    from pyiceberg.exceptions import CommitFailedException, ValidationException

    for attempt in range(1, attempts + 1):
        iceberg_table = load()
        transaction = stage_files(iceberg_table, files, properties, replace=True, columns=columns)
        try:
            committed = transaction.commit_transaction()
        # pyiceberg retries a conflict itself when the other commit does not touch
        # this one's files (e.g. maintenance expired snapshots); when it does (another
        # run replaced the contents), it refuses, and the commit is rebuilt here.
        except (CommitFailedException, ValidationException) as error:
            if attempt == attempts:
                raise CatalogError(
                    f"table {identifier}: commit conflict: other writers committed first {attempts} times in a row "
                    f"({str(error).strip().splitlines()[0] if str(error).strip() else 'stale metadata'}); run the step again"
                ) from None
            time.sleep(0.05 * attempt)
            continue
        return Commit.of(committed, identifier, attempts=attempt)
    raise AssertionError("unreachable")


class StaleUpdateError(CatalogError):
    """The table changed after an update to it was planned: another writer committed first."""


def commit_update(
    load: Callable[[], Any],
    identifier: str,
    files: Sequence[str],
    properties: Mapping[str, str],
    base_snapshot_id: int | None,
    replace: bool,
    columns: Sequence[Column] = (),
) -> Commit:
    """Commit ``files`` as the table's whole contents (``replace``) or as rows added to it, in one snapshot.

    The update was computed from the table at ``base_snapshot_id``: if
    another writer has committed since, it is refused with
    :class:`StaleUpdateError` (one line) rather than rebuilt, because its
    contents depend on what it was computed from. The check and the commit
    are one: the catalog refuses the commit if the table's current snapshot
    changes in between.
    """
    from pyiceberg.exceptions import CommitFailedException, ValidationException

    iceberg_table = load()
    if any(iceberg_table.properties.get(k) != v for k, v in PLANNED_UPDATE_PROPERTIES.items()):
        # A table created before it was updated this way.
        with iceberg_table.transaction() as transaction:
            transaction.set_properties(PLANNED_UPDATE_PROPERTIES)
        iceberg_table = load()
    current = iceberg_table.metadata.current_snapshot_id
    if current != base_snapshot_id:
        raise StaleUpdateError(
            f"table {identifier}: another run committed snapshot {current} after this update was planned "
            f"from snapshot {base_snapshot_id}; run the step again"
        )
    transaction = stage_files(iceberg_table, files, properties, replace=replace, columns=columns)
    try:
        committed = transaction.commit_transaction()
    except (CommitFailedException, ValidationException):
        raise StaleUpdateError(
            f"table {identifier}: another run committed while this update was being committed; run the step again"
        ) from None
    return Commit.of(committed, identifier, attempts=1)


def data_file_paths(iceberg_table, snapshot_id: int | None = None) -> list[str]:
    """The Parquet files holding the table at ``snapshot_id`` (default: current).

    This project's writers never write delete files; a table that has some
    (written by another engine) is refused rather than read wrong.
    """
    paths = []
    for task in iceberg_table.scan(snapshot_id=snapshot_id).plan_files():
        if task.delete_files:
            raise CatalogError(
                f"{iceberg_table.metadata_location}: the table has delete files (written by another engine); "
                "read it with pyiceberg or an Iceberg engine"
            )
        paths.append(task.file.file_path)
    return sorted(paths)


def upstream_snapshots(properties: Mapping[str, str]) -> dict[str, int]:
    """The upstream snapshots a snapshot's properties record (``stedi.upstream.<table>`` = snapshot id)."""
    return {k[len(UPSTREAM):]: int(v) for k, v in properties.items() if k.startswith(UPSTREAM)}


@dataclass(frozen=True)
class SnapshotInfo:
    snapshot_id: int
    committed_at: datetime
    operation: str
    run_id: str
    rows: int
    upstream: dict[str, int]
    current: bool
    added_columns: str = ""
    """Columns the snapshot's commit added to the table (``name type, ...``); empty if none."""


def history(iceberg_table) -> list[SnapshotInfo]:
    """Every snapshot of the table, oldest first."""
    current = iceberg_table.metadata.current_snapshot_id
    infos = []
    for snapshot in sorted(iceberg_table.snapshots(), key=lambda s: (s.timestamp_ms, s.sequence_number or 0)):
        summary = snapshot.summary
        extra = summary.additional_properties if summary else {}
        infos.append(
            SnapshotInfo(
                snapshot_id=snapshot.snapshot_id,
                committed_at=datetime.fromtimestamp(snapshot.timestamp_ms / 1000, tz=timezone.utc),
                operation=summary.operation.value if summary else "",
                run_id=extra.get(RUN_ID, ""),
                rows=int(extra.get("total-records", 0)),
                upstream=upstream_snapshots(extra),
                current=snapshot.snapshot_id == current,
                added_columns=extra.get(ADDED_COLUMNS, ""),
            )
        )
    return infos


def snapshot_at(iceberg_table, timestamp_ms: int) -> int | None:
    """The snapshot that was current at ``timestamp_ms`` (from the table's snapshot log), or None."""
    found = None
    for entry in iceberg_table.metadata.snapshot_log:
        if entry.timestamp_ms <= timestamp_ms and iceberg_table.metadata.snapshot_by_id(entry.snapshot_id):
            found = entry.snapshot_id
    return found


def table_location(lakehouse_uri: str, asset_path: Sequence[str]) -> str:
    """Where a table is stored: ``{lakehouse}/{zone}/{asset key}``. The whole asset key goes into the
    path, so two tables never share a folder."""
    return join_uri(normalize_uri(lakehouse_uri), PUBLISHED[asset_path[-1]].zone, *asset_path)


def write_folder(iceberg_table, run_id: str) -> str:
    """A folder of its own for one write's data files: a failed or concurrent write never touches another's
    files; files of a write that was never committed are deleted by maintenance."""
    return join_uri(iceberg_table.location(), "data", f"{run_id[:8]}-{uuid.uuid4().hex[:12]}")
