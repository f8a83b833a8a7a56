"""The IO manager: each zone table is an Iceberg table; each input is read at one pinned snapshot.

Writing: a derived table's step plans its update (``lakehouse.incremental``):
new contents, which the engine writes as Parquet files and one commit makes
the table's contents (``tables.replace_contents``); rows added, committed
only onto the snapshot they were planned from (``tables.commit_update``); or
none. The snapshot records how (``stedi.update``), the run
id and, for a derived table, the snapshot of every upstream table it was
computed from (``stedi.upstream.<table>``), so the exact inputs of any
snapshot (e.g. the ``machine_learning_curated`` a model was trained on) can
be read back with ``stedi query --as-of``.

Reading: an input is pinned to one snapshot, read once. When the upstream
table was committed by the same run, that run's own snapshot is read, even if
another run has committed a newer one since: a run never computes a table
from a mix of its own and another run's upstream versions. An upstream not
materialized by this run is read at its current snapshot; if the inputs of a
step then disagree (one input was computed from another version of the
other), the materialization says so in its metadata and the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dagster import InitResourceContext, InputContext, IOManager, MetadataValue, OutputContext, io_manager

from stedi_assets.lakehouse.incremental import UPDATE
from stedi_assets.lakehouse.tables import RUN_ID, UPSTREAM, Commit, TableRead, TableUpdate, upstream_snapshots
from stedi_assets.orchestration.masking import mask_metadata

if TYPE_CHECKING:
    from stedi_assets.lakehouse.lakehouse import Lakehouse


@dataclass(frozen=True)
class InputRead:
    snapshot_id: int
    from_this_run: bool
    upstream: dict[str, int] = field(default_factory=dict)
    """The snapshots the input itself was computed from (its stedi.upstream.* properties)."""


def pinned_snapshot(iceberg_table, run_id: str) -> tuple[int | None, bool]:
    """(snapshot to read, whether this run committed it): the run's own latest snapshot, else the current one."""
    own = [s for s in iceberg_table.snapshots() if s.summary and s.summary.additional_properties.get(RUN_ID) == run_id]
    if own:
        return max(own, key=lambda s: (s.sequence_number or 0, s.timestamp_ms)).snapshot_id, True
    return iceberg_table.metadata.current_snapshot_id, False


def upstream_of(iceberg_table, snapshot_id: int) -> dict[str, int]:
    snapshot = iceberg_table.metadata.snapshot_by_id(snapshot_id)
    extra = snapshot.summary.additional_properties if snapshot and snapshot.summary else {}
    return upstream_snapshots(extra)


def mismatches(reads: dict[str, InputRead]) -> list[str]:
    """Inputs computed from another snapshot of a table this step also read."""
    found = []
    for name, read in sorted(reads.items()):
        for upstream, snapshot_id in sorted(read.upstream.items()):
            if upstream in reads and reads[upstream].snapshot_id != snapshot_id:
                found.append(
                    f"{name} was computed from {upstream} snapshot {snapshot_id}, "
                    f"but {upstream} was read at snapshot {reads[upstream].snapshot_id}"
                )
    return found


def snapshot_properties(lakehouse: Lakehouse, run_id: str) -> dict[str, str]:
    """What every snapshot a run commits records: the run, and the rule settings it computed with."""
    return {RUN_ID: run_id, **lakehouse.rule_properties()}


def commit_metadata(lakehouse: Lakehouse, asset_path: list[str], commit: Commit) -> dict[str, Any]:
    """The materialization metadata of a commit: the table, its snapshot and where it is stored."""
    metadata: dict[str, Any] = {
        "dagster/table_name": commit.identifier,
        "iceberg/snapshot_id": MetadataValue.text(str(commit.snapshot_id)),
        "iceberg/metadata_location": MetadataValue.text(commit.metadata_location),
        "iceberg/catalog": lakehouse.catalog_settings().describe(),
        "uri": lakehouse.table_location(asset_path),
    }
    if commit.attempts > 1:
        metadata["iceberg/commit_attempts"] = commit.attempts
    if commit.added_columns:
        # The columns the commit added to the table (also in the snapshot's stedi.added-columns).
        metadata["added_columns"] = commit.added_columns
    return metadata


class LakehouseIOManager(IOManager):
    """Commits a derived table's planned update (new contents, rows added, or none) and hands each
    table downstream as a :class:`TableRead` (a lazy frame at one snapshot, with its data files).
    (The landing steps commit their planned updates themselves.)"""

    def __init__(self, lakehouse: Lakehouse):
        self.lakehouse = lakehouse
        # (run id, op) -> the snapshot each input of that step was read at.
        self._reads: dict[tuple[str, str], dict[str, InputRead]] = {}

    def handle_output(self, context: OutputContext, obj: TableUpdate | Any) -> None:
        """Commit a derived table's planned update; any other object (a lazy frame) becomes the table's new
        contents, not marked as computed by its rule, so that the table's next update recomputes it whole."""
        asset_path = list(context.asset_key.path)
        reads = self._reads.pop((context.run_id, context.op_def.name), {})
        properties = snapshot_properties(self.lakehouse, context.run_id)
        properties.update({f"{UPSTREAM}{name}": str(read.snapshot_id) for name, read in reads.items()})
        if not isinstance(obj, TableUpdate):
            commit = self.lakehouse.write_table(asset_path, obj, properties, context.run_id)
        elif obj.kind == "replace":
            commit = self.lakehouse.write_table(asset_path, obj.replace, {**properties, UPDATE: obj.kind}, context.run_id)
        else:
            commit = self.lakehouse.apply_update(asset_path, obj, {**properties, UPDATE: obj.kind}, context.run_id)
        metadata = commit_metadata(self.lakehouse, asset_path, commit)
        if reads:
            metadata["upstream_snapshots"] = MetadataValue.json(
                {name: str(read.snapshot_id) for name, read in sorted(reads.items())}
            )
            problems = mismatches(reads)
            metadata["upstream_consistent"] = not problems
            if problems:
                metadata["upstream_mismatches"] = MetadataValue.md("\n".join(f"- {p}" for p in problems))
                context.log.warning(f"{commit.identifier} computed from inconsistent inputs: {'; '.join(problems)}")
        # Paths may hold an address (a lakehouse under a user's folder): masked like all metadata.
        context.add_output_metadata(mask_metadata(metadata))

    def load_input(self, context: InputContext) -> TableRead:
        asset_path = list(context.asset_key.path)
        table = asset_path[-1]
        iceberg_table = self.lakehouse.load_table(table)
        snapshot_id, from_this_run = pinned_snapshot(iceberg_table, context.step_context.run_id)
        if snapshot_id is None:
            from stedi_assets.lakehouse.catalog import TableNotPublishedError

            raise TableNotPublishedError(f"table {self.lakehouse.table_identifier(table)} has no snapshot yet")
        read = InputRead(snapshot_id, from_this_run, upstream_of(iceberg_table, snapshot_id))
        self._reads.setdefault((context.step_context.run_id, context.op_def.name), {})[table] = read
        context.add_input_metadata(
            {"iceberg/snapshot_id": MetadataValue.text(str(snapshot_id)), "read_from_this_run": from_this_run}
        )
        return self.lakehouse.read_snapshot(table, snapshot_id, iceberg_table=iceberg_table)


@io_manager(required_resource_keys={"lakehouse"})
def lakehouse_io_manager(init_context: InitResourceContext) -> LakehouseIOManager:
    """The IO manager on the run's ``lakehouse`` resource.

    It takes the lakehouse as a resource key rather than a nested resource, so
    that configuring ``lakehouse`` in the launchpad configures storage too.
    """
    return LakehouseIOManager(init_context.resources.lakehouse)
