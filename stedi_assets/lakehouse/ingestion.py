"""Incremental ingestion: each landing file version is parsed once.

A landing step compares the feed's files (each with a fingerprint: size and
modification time locally, the ETag on S3) with the versions the delivery
ledger holds as current, and plans:

- **nothing to read** when every file is as ingested: the landing and
  quarantine tables stay as they are (no new snapshot);
- **append** when the only change is new files: their distinct records that
  the landing table does not hold yet are added to it;
- **replace** when a file changed or was removed: the table is rebuilt from
  the stored records of the unchanged files and the records of the files read
  now, without reading the unchanged files again;
- **rebuild** (every file read again) on a full refresh, for a table not
  published yet, or when the ledger cannot tell which file delivered what.

Whatever the plan, the tables equal what a full rebuild from the landing zone
as it is would give (``stedi_assets_tests/test_ingestion.py`` holds them to
that after any sequence of deliveries, on both engines). A file re-delivered
with the same content but a new fingerprint is read again and changes no row.

A field of the files read that no column has may add a column to the landing
table (``domain.evolution``): the files are then read again with it, and the
column is added in the commit of the records. Records stored before a column
was added read it as null.

The records of people erased on request (``stedi_assets.lakehouse.erasure``)
are dropped from every file read, and counted in the ledger's ``records_erased``.

Each file version's kept records are stored as Parquet with the file's URI
(``{lakehouse}/landing/{feed}_landing/deliveries/...``, named in the
ledger's ``records_uri``); maintenance deletes those no current version
refers to.
"""

from __future__ import annotations

import fcntl
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import narwhals as nw

from stedi_assets.domain import evolution, rules
from stedi_assets.lakehouse.engines import LandingRead, ReadProgress, slice_of_file
from stedi_assets.lakehouse.erasure import drop_erased, read_register
from stedi_assets.lakehouse.ledger import REFUSED, REMOVED, Delivery, FeedDeliveries
from stedi_assets.lakehouse.tables import DELIVERIES_FOLDER, TableUpdate
from stedi_assets.domain.schemas import DELIVERED_FROM, FEED_SCHEMAS, Column, TableSchema, delivered_records_schema
from stedi_assets.lakehouse.storage import LandingError, FileVersion, is_s3_uri, join_uri, local_path, normalize_uri



@dataclass(frozen=True)
class DeliveryPlan:
    """What a landing step reads and how it updates its tables."""

    listed: Mapping[str, FileVersion]
    """Every file found, and every entry refused (``FileVersion.refused``)."""
    new: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: tuple[str, ...]
    rebuild: bool
    why_rebuild: str = ""
    dropped_rejected: tuple[str, ...] = ()
    """Files of a rejected delivery (``ledger.REJECTED``) that are gone: their quarantined records go."""
    refused: Mapping[str, str] = field(default_factory=dict)
    """Entries refused now that the ledger does not record yet as refused: URI -> why."""
    refused_gone: tuple[str, ...] = ()
    """Refused entries the ledger records that are gone."""

    @property
    def readable(self) -> list[str]:
        return [uri for uri, version in self.listed.items() if not version.refused]

    @property
    def to_read(self) -> list[str]:
        return self.readable if self.rebuild else sorted(self.new + self.changed)

    @property
    def kind(self) -> str:
        """What happens to the landing table: see the module's docstring."""
        if self.rebuild:
            return "rebuild"
        if self.changed or self.removed:
            return "replace"
        return "append" if self.new else "unchanged"

    @property
    def quarantine_changes(self) -> bool:
        return self.kind != "unchanged" or bool(self.dropped_rejected)

    @property
    def has_changes(self) -> bool:
        """Whether a landing step has anything to do (read, drop or record)."""
        return self.quarantine_changes or bool(self.refused or self.refused_gone)

    def describe(self) -> str:
        if self.rebuild:
            text = f"read all {len(self.readable)} file(s) ({self.why_rebuild})"
        else:
            text = (
                f"{len(self.new)} new, {len(self.changed)} changed, {len(self.removed)} removed, "
                f"{len(self.unchanged)} unchanged file(s)"
            )
        if self.dropped_rejected:
            text += f", {len(self.dropped_rejected)} rejected file(s) gone"
        if self.refused:
            text += f", {len(self.refused)} entry(ies) refused unread (not regular files in the landing folder)"
        return text


def plan_deliveries(
    listed: Mapping[str, FileVersion],
    known: FeedDeliveries,
    published: bool,
    full_refresh: bool,
) -> DeliveryPlan:
    """Compare the files found with the live versions the ledger holds.

    A file whose last delivery was rejected is not current: it is new (or
    changed) until a landing table is published with it, so every later step
    of its feed reads it again; once it is gone, its quarantined records go.
    """
    current = known.current
    files = {uri: version for uri, version in listed.items() if not version.refused}
    new = tuple(uri for uri in files if uri not in current)
    changed = tuple(uri for uri in files if uri in current and current[uri]["fingerprint"] != files[uri].fingerprint)
    removed = tuple(sorted(uri for uri in current if uri not in files))
    unchanged = tuple(uri for uri in files if uri in current and uri not in changed)
    dropped_rejected = tuple(sorted(uri for uri in known.rejected if uri not in files and uri not in current))
    refused = {
        uri: version.refused for uri, version in listed.items()
        if version.refused and known.refused.get(uri, {}).get("fingerprint") != version.fingerprint
    }
    refused_gone = tuple(sorted(uri for uri in known.refused if not listed.get(uri, FileVersion("", 0)).refused))
    why = ""
    if full_refresh:
        why = "full refresh"
    elif not published:
        why = "the tables are not published yet"
    elif not current:
        why = "the delivery ledger holds no file of this feed"
    elif any(not current[uri]["records_uri"] for uri in unchanged):
        why = "the ledger does not say where the records of a file are"
    return DeliveryPlan(
        listed, new, changed, removed, unchanged, rebuild=bool(why), why_rebuild=why,
        dropped_rejected=dropped_rejected, refused=refused, refused_gone=refused_gone,
    )


@dataclass(frozen=True)
class LandingUpdate:
    """The planned updates of a feed's landing and quarantine tables, and what the checks see."""

    landing: TableUpdate
    landing_frame: nw.LazyFrame
    """The landing table as it will be, what the checks look at: held by the engine when it replaces
    the table's contents (release it after the step), lazy otherwise."""
    quarantine: TableUpdate
    quarantine_frame: nw.LazyFrame
    records_read: int
    deliveries: tuple[Delivery, ...]
    retired: Mapping[str, str]
    unknown_fields: Mapping[str, int]
    """Fields of the files read that no column has and none was added for (their names are not column names,
    or their values give no type), with how many records carry each."""
    schema: TableSchema = None  # type: ignore[assignment]
    """The landing table's columns after the update: the declared ones, then those added from delivered records."""
    added_columns: tuple[Column, ...] = ()
    """The columns this update adds to the landing table (``evolution``)."""


def delivered_counts(read: LandingRead, distinct: nw.LazyFrame | None) -> dict[str, tuple[int, int, int]]:
    """Per file read: (records read, distinct records kept, records quarantined).

    The distinct records of each file are counted by the engine while it
    reads when it can (``LandingRead.distinct_by_file``), else from ``distinct``.
    """
    counts: dict[str, list[int]] = {uri: [0, 0, 0] for uri in read.files}
    queries = [(read.records, 0), (read.quarantine, 2)]
    if read.distinct_by_file is None:
        queries.append((distinct, 1))
    else:
        for uri, count in read.distinct_by_file.items():
            counts.setdefault(uri, [0, 0, 0])[1] += count
    for frame, position in queries:
        for uri, count in frame.group_by(DELIVERED_FROM).agg(nw.len()).collect().rows():
            counts.setdefault(uri, [0, 0, 0])[position] += count
    return {uri: (c[0] + c[2], c[1], c[2]) for uri, c in counts.items()}


def plan_landing_update(
    lakehouse,
    feed: str,
    plan: DeliveryPlan,
    current: Mapping[str, Mapping],
    bases: tuple[int | None, int | None],
    run_id: str,
    progress: ReadProgress | None = None,
) -> LandingUpdate:
    """Read what ``plan`` says, store the kept records of each file read, and plan both tables' updates.

    ``bases`` are the snapshots of the landing and quarantine tables the plan
    was made from (None: no snapshot). ``progress`` is told the files and
    bytes read (sizes as listed) while the engine reads; not called when
    there is nothing to read.
    """
    engine = lakehouse.get_engine()
    landing_table, quarantine_table = f"{feed}_landing", f"{feed}_quarantine"
    landing_base, quarantine_base = bases
    # The columns the landing table has (declared, and added by earlier deliveries).
    schema = lakehouse.table_schema(landing_table)
    # The records of each file, with the file: stored once, so that the table
    # can be rebuilt later without reading the file again. An engine that
    # stores them while it reads never holds them all.
    to_read = plan.to_read
    sizes = {uri: plan.listed[uri].size for uri in to_read}
    folder = _records_folder(lakehouse, landing_table, run_id)
    read = (
        lakehouse.read_landing(feed, to_read, records_to=folder, sizes=sizes, schema=schema, progress=progress)
        if to_read else None
    )
    added: tuple[Column, ...] = ()
    if read is not None and read.field_kinds:
        added = evolution.new_columns(read.field_kinds, schema, lakehouse.schema_widen_to_string)
        if added:
            # Fields that become columns: the files are read again with them, typed and validated as any
            # column (the first read's stored records, in a folder of their own, are left to maintenance).
            schema = schema.with_columns(added)
            folder = _records_folder(lakehouse, landing_table, run_id)
            read = lakehouse.read_landing(feed, to_read, records_to=folder, sizes=sizes, schema=schema)
    erased: dict[str, int] = {}
    if read is not None:
        # The records of erased people go before anything is counted, stored or published.
        read, erased = drop_erased(lakehouse, feed, read, read_register(lakehouse, create=True))
    deliveries: list[Delivery] = []
    delivered, stored_now = None, ()
    new_quarantine, unknown_fields, read_now, made_distinct = None, {}, 0, False
    if read is not None:
        if read.stored is None:
            # Made distinct first only when the engine did not count each
            # file's distinct records while reading (a second copy of every record).
            made_distinct = read.distinct_by_file is None
            delivered = engine.hold(rules.distinct(read.records)) if made_distinct else read.records
            lakehouse.write_files(delivered, delivered_records_schema(feed, schema), folder)
        else:
            delivered, stored_now = read.records, read.stored
        with engine.errors():
            counts = delivered_counts(read, delivered)
        deliveries = [
            Delivery(
                uri, plan.listed[uri].size, plan.listed[uri].fingerprint, *counts.get(uri, (0, 0, 0)), folder,
                records_erased=erased.get(uri, 0),
            )
            for uri in to_read
        ]
        new_quarantine, unknown_fields, read_now = read.quarantine, dict(read.unknown_fields), read.records_read
        # What else was read is not needed any more: let it go before the table is computed.
        del read
    deliveries += [
        Delivery(uri, plan.listed[uri].size, plan.listed[uri].fingerprint, 0, 0, 0, None, REFUSED, reason)
        for uri, reason in plan.refused.items()
    ]
    retired = {uri: REMOVED for uri in plan.removed + plan.dropped_rejected + plan.refused_gone}

    kind = plan.kind
    if kind in ("unchanged", "append"):
        # The table as published, read once (lazily): compared with the new records, and checked.
        # In the columns it will have: a column added now reads as null in the rows it holds.
        published = lakehouse.read_table([landing_table], landing_base, schema=schema)
    if kind == "unchanged":
        landing, landing_frame = TableUpdate(landing_base), published
    elif kind == "append":
        appended = engine.hold(rules.records_not_in(delivered, published, schema.required_columns))
        landing, landing_frame = TableUpdate(landing_base, append=appended), nw.concat([published, appended])
    else:
        unchanged = _stored_record_files(lakehouse, plan.unchanged, current) if kind == "replace" else []
        if engine.slices_landing:
            # Each slice of the records read from its own files, made distinct on its own.
            slices = _records_by_slice(lakehouse, feed, list(stored_now), schema=schema)
            if unchanged:
                kept = _records_by_slice(lakehouse, feed, unchanged, keep=plan.unchanged, schema=schema)
                slices = [nw.concat([new, old]) for new, old in zip(slices, kept)]
            landing_frame = engine.hold(rules.landing_records(*slices, sliced=True))
        else:
            parts = [delivered] if delivered is not None else []
            if unchanged:
                parts.append(_scan_records(lakehouse, feed, unchanged, schema).filter(nw.col(DELIVERED_FROM).is_in(list(plan.unchanged))))
            landing_frame = engine.hold(rules.landing_records(*parts))
        landing = TableUpdate(landing_base, replace=landing_frame)
    if made_distinct:
        engine.release(delivered)

    if plan.rebuild:
        quarantine_frame = new_quarantine
    else:
        quarantine_frame = lakehouse.read_table([quarantine_table], quarantine_base)
        if plan.quarantine_changes:
            # The rows of the files read again or gone (a rejected file's among them) are replaced by
            # what was just read.
            kept = quarantine_frame.filter(nw.col("source_file").is_in(list(plan.unchanged)))
            quarantine_frame = nw.concat([kept, new_quarantine]) if new_quarantine is not None else kept
    quarantine = TableUpdate(quarantine_base, replace=quarantine_frame if plan.quarantine_changes else None)

    records_read = sum(int(current[uri]["records_read"]) for uri in plan.unchanged if not plan.rebuild)
    records_read += read_now
    if records_read == 0:
        # Publishing an empty table over a good one is never what a delivery of empty files means.
        raise LandingError(
            f"no records for feed {feed!r} at {lakehouse.feed_uri(feed)}/: all {len(plan.listed)} landing file(s) are empty"
        )
    return LandingUpdate(
        landing=landing,
        landing_frame=landing_frame,
        quarantine=quarantine,
        quarantine_frame=quarantine_frame,
        records_read=records_read,
        deliveries=tuple(deliveries),
        retired=retired,
        unknown_fields=unknown_fields,
        schema=schema,
        added_columns=added,
    )


def _records_folder(lakehouse, landing_table: str, run_id: str) -> str:
    """A folder of its own for the records of the files one read stores."""
    return join_uri(lakehouse.table_location([landing_table]), DELIVERIES_FOLDER, f"{run_id[:8]}-{uuid.uuid4().hex[:12]}")


def _stored_record_files(lakehouse, uris: tuple[str, ...], current: Mapping[str, Mapping]) -> list[str]:
    """The Parquet files holding the stored kept records of the files ``uris`` (and maybe of others)."""
    folders = sorted({current[uri]["records_uri"] for uri in uris})
    return [f for folder in folders for f in lakehouse.store_for(folder).list_files(folder) if f.endswith(".parquet")]


def _scan_records(lakehouse, feed: str, files: list[str], schema: TableSchema | None = None) -> nw.LazyFrame:
    """Stored records (``source_file`` and the landing table's columns, ``schema``) of Parquet ``files``; records
    stored before a column was added read it as null."""
    store = lakehouse.store_for(files[0]) if files else None
    return lakehouse.get_engine().scan(files, delivered_records_schema(feed, schema), store)


def _records_by_slice(
    lakehouse, feed: str, files: list[str], keep: tuple[str, ...] | None = None, schema: TableSchema | None = None,
) -> list[nw.LazyFrame]:
    """Stored records of ``files`` (only those of the landing files ``keep``, if given), one frame per slice.

    A file named for its slice (``RecordsFolder``) is read for that slice
    alone; any other is read for each slice, filtered to it.
    """
    by_slice: dict[int | None, list[str]] = {}
    for file in files:
        by_slice.setdefault(slice_of_file(file), []).append(file)
    any_slice = _scan_records(lakehouse, feed, by_slice[None], schema) if None in by_slice else None
    slice_of = rules.slice_number(rules.slice_column(FEED_SCHEMAS[feed].narwhals_schema), rules.LANDING_SLICES)
    slices = []
    for number in range(rules.LANDING_SLICES):
        frame = _scan_records(lakehouse, feed, by_slice.get(number, []), schema)
        if any_slice is not None:
            frame = nw.concat([frame, any_slice.filter(slice_of == number)])
        if keep is not None:
            frame = frame.filter(nw.col(DELIVERED_FROM).is_in(list(keep)))
        slices.append(frame)
    return slices


@contextmanager
def ingest_lock(lakehouse, feed: str) -> Iterator[None]:
    """One landing step of a feed at a time on a local lakehouse (a lock file beside the catalog).

    Two runs ingesting the same feed at once would plan from the same
    snapshot; with the lock the second plans from what the first committed.
    On S3 there is no lock: the second run's commit is refused
    (``StaleUpdateError``) and its step fails, naming the table, to be run again.
    """
    root = normalize_uri(lakehouse.lakehouse_uri)
    if is_s3_uri(root):
        yield
        return
    folder = local_path(root) / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{feed}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
