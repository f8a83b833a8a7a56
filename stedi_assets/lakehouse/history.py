"""A withdrawal reaches history: earlier snapshots that hold a person who has withdrawn are expired.

A trusted or curated table's current snapshot holds consenting customers
only; its earlier snapshots, kept for time travel, may hold a customer who
has withdrawn since. Once the withdrawal is published, each such snapshot
stays readable for ``withdrawal_retention_hours`` at most (default 0: the run
that publishes the withdrawal expires it), and the files only those snapshots
referenced (data files, manifests, manifest lists) are deleted. Snapshots that
hold no withdrawn person, and every snapshot of the other tables, are kept.

Who has withdrawn is read from ``customer_landing``: an email identity whose
latest record (by ``lastUpdateDate``) has no research consent, and every
device named in any record of theirs. A table's rows are matched by its
person column (``email``, ``user``) or its device column (``serialNumber``).

When the withdrawal was published is approximated from above: a snapshot
counts as superseded when the next snapshot of the table was committed, which
is no later than the snapshot that left the person out. A snapshot may thus
expire earlier than its retention, never later.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import narwhals as nw

from stedi_assets.domain.rules import device, with_identity
from stedi_assets.domain.schemas import RESEARCH_CONSENT
from stedi_assets.lakehouse.catalog import TableNotPublishedError, catalog_errors
from stedi_assets.lakehouse.maintenance import plain_uri, referenced_files
from stedi_assets.lakehouse.tables import UPSTREAM

if TYPE_CHECKING:
    from stedi_assets.lakehouse.lakehouse import Lakehouse

PEOPLE, DEVICES = "people", "devices"

HISTORY_KEYS: dict[str, tuple[str, str]] = {
    "customer_trusted": ("email", PEOPLE),
    "customer_curated": ("email", PEOPLE),
    "accelerometer_trusted": ("user", PEOPLE),
    "step_trainer_trusted": ("serialNumber", DEVICES),
    "machine_learning_curated": ("serialNumber", DEVICES),
}
"""The tables whose history is kept free of withdrawn people -> (the column that says whose a row is, of what)."""


@dataclass(frozen=True)
class Withdrawn:
    """The people (email identities) who have withdrawn, and the devices named in their records."""

    people: frozenset[str]
    devices: frozenset[str]

    def values_for(self, table: str) -> tuple[str, frozenset[str]]:
        column, kind = HISTORY_KEYS[table]
        return column, self.people if kind == PEOPLE else self.devices


def withdrawn_customers(customer_landing: nw.LazyFrame) -> Withdrawn:
    """Who has withdrawn, by the landing records: a latest record without research consent."""
    records = with_identity(customer_landing, "email").select(
        "email", "lastUpdateDate", RESEARCH_CONSENT, device("serialNumber")
    )
    rows = records.collect().rows()
    latest: dict[str, int] = {}
    for email, updated, _, _ in rows:
        if email is not None:
            latest[email] = max(latest.get(email, updated), updated)
    people = {
        email for email, updated, consent, _ in rows
        if email is not None and updated == latest.get(email) and consent is None
    }
    devices = {serial for email, _, _, serial in rows if email in people and serial is not None}
    return Withdrawn(frozenset(people), frozenset(devices))


@dataclass(frozen=True)
class Forgotten:
    """What one table's history lost: the snapshots expired and the files deleted with them."""

    table: str
    snapshots_expired: tuple[int, ...] = ()
    files_deleted: int = 0


def superseded_snapshots(iceberg_table, retention_hours: float, now_ms: int) -> list[int]:
    """The snapshots, other than the current one, whose successor was committed ``retention_hours`` ago or more."""
    snapshots = sorted(iceberg_table.snapshots(), key=lambda s: (s.sequence_number or 0, s.timestamp_ms))
    current = iceberg_table.metadata.current_snapshot_id
    cutoff = now_ms - retention_hours * 3_600_000
    return [
        snapshot.snapshot_id
        for snapshot, successor in zip(snapshots, snapshots[1:])
        if snapshot.snapshot_id != current and successor.timestamp_ms <= cutoff
    ]


def holds_any(frame: nw.LazyFrame, table: str, withdrawn: Withdrawn) -> bool:
    """Whether a row of ``frame`` (rows of ``table``) belongs to a withdrawn customer."""
    return int(_withdrawn_or_not(frame, table, withdrawn, True).select(nw.len()).collect().item()) > 0


def snapshot_files(iceberg_table, snapshot_ids: Iterable[int]) -> set[str]:
    """The manifest lists, manifests and data files the snapshots refer to."""
    io = iceberg_table.io
    files: set[str] = set()
    for snapshot_id in snapshot_ids:
        snapshot = iceberg_table.metadata.snapshot_by_id(snapshot_id)
        files.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(io):
            files.add(manifest.manifest_path)
            files.update(e.data_file.file_path for e in manifest.fetch_manifest_entry(io, discard_deleted=True))
    return {plain_uri(f) for f in files}


def forget_withdrawn(lakehouse: Lakehouse, table: str, withdrawn: Withdrawn, now: float | None = None) -> Forgotten:
    """Expire ``table``'s earlier snapshots that hold a withdrawn person, past the retention; delete their files."""
    if not withdrawn.values_for(table)[1]:
        return Forgotten(table)
    now_ms = int((time.time() if now is None else now) * 1000)
    iceberg_table = lakehouse.load_table(table)
    holding = [
        snapshot_id
        for snapshot_id in superseded_snapshots(iceberg_table, lakehouse.withdrawal_retention_hours, now_ms)
        if holds_any(lakehouse.read_table([table], snapshot_id, iceberg_table, in_process=True), table, withdrawn)
    ]
    if not holding:
        return Forgotten(table)
    candidates = snapshot_files(iceberg_table, holding)
    with catalog_errors(lakehouse.catalog_settings(), table):
        iceberg_table.maintenance.expire_snapshots().by_ids(holding).commit()
        # Only what no kept snapshot (nor the metadata log) still refers to.
        still_referenced = referenced_files(lakehouse.load_table(table))
    unreferenced = sorted(candidates - still_referenced)
    lakehouse.store_for(iceberg_table.location()).delete_files(unreferenced)
    return Forgotten(table, tuple(holding), len(unreferenced))


def forget_withdrawn_everywhere(lakehouse: Lakehouse, now: float | None = None) -> list[Forgotten]:
    """:func:`forget_withdrawn` for every table of :data:`HISTORY_KEYS` that exists (the maintenance job's part)."""
    try:
        withdrawn = withdrawn_customers(lakehouse.read_table(["customer_landing"], in_process=True))
    except TableNotPublishedError:
        return []
    forgotten = []
    for table in HISTORY_KEYS:
        try:
            forgotten.append(forget_withdrawn(lakehouse, table, withdrawn, now))
        except TableNotPublishedError:
            continue
    return forgotten


def describe(forgotten: Forgotten) -> str:
    return (
        f"{forgotten.table}: {len(forgotten.snapshots_expired)} earlier snapshot(s) holding customers who withdrew "
        f"expired, {forgotten.files_deleted} file(s) only they referenced deleted"
    )


REMOVALS_ONLY = "stedi.removals_only"
"""Snapshot property: ``true`` on a snapshot that only removed withdrawn customers from the one before."""


_KEY = "__key"


def _withdrawn_or_not(frame: nw.LazyFrame, table: str, withdrawn: Withdrawn, belong: bool) -> nw.LazyFrame:
    """The rows of ``frame`` (rows of ``table``) that belong (or do not) to a withdrawn customer: by the person's
    identity (``rules.with_identity``) or the device's (``rules.device``)."""
    column, values = withdrawn.values_for(table)
    keyed = frame.with_columns(nw.col(column).alias(_KEY))
    keyed = with_identity(keyed, _KEY) if HISTORY_KEYS[table][1] == PEOPLE else keyed.with_columns(device(_KEY))
    held = nw.col(_KEY).is_in(sorted(values))
    return keyed.filter(held if belong else ~held).drop(_KEY)


def publish_removals(
    lakehouse: Lakehouse, tables: Iterable[str], withdrawn: Withdrawn, properties: dict[str, str], run_id: str
) -> dict[str, int]:
    """Remove the rows of withdrawn customers from each published table of ``tables`` and add nothing:
    one commit per table that held some, its other rows as they were. Returns the rows removed per table.

    For a run that holds a table back: the removals it knows of are published all the same.
    """
    removed: dict[str, int] = {}
    for table in tables:
        try:
            iceberg_table = lakehouse.load_table(table)
        except TableNotPublishedError:
            continue
        snapshot = iceberg_table.metadata.current_snapshot()
        if not withdrawn.values_for(table)[1] or snapshot is None:
            continue
        frame = lakehouse.get_engine().hold(lakehouse.read_table([table], iceberg_table=iceberg_table))
        try:
            rows = int(_withdrawn_or_not(frame, table, withdrawn, True).select(nw.len()).collect().item())
            if not rows:
                continue
            recorded = snapshot.summary.additional_properties if snapshot.summary else {}
            # Still computed from the same inputs, less the removed rows: the next ordinary run recomputes it.
            upstream = {k: v for k, v in recorded.items() if k.startswith(UPSTREAM)}
            lakehouse.write_table(
                [table], _withdrawn_or_not(frame, table, withdrawn, False),
                {**upstream, **properties, REMOVALS_ONLY: "true"}, run_id,
            )
            removed[table] = rows
        finally:
            lakehouse.get_engine().release(frame)
    return removed
