"""Derived tables updated incrementally: only the rows their inputs' new rows produce.

Every snapshot a derived table's step commits records the snapshot of each
input it was computed from (``stedi.upstream.<table>``), the rule settings
(``stedi.rules.<setting>``) and how it was made (``stedi.update``). Before
computing, the step compares each input as it reads it with the snapshot
recorded (:func:`input_change`):

- **same**: the input holds the same data files: the same rows;
- **appended**: it holds every data file it held then, and more: rows were
  only added (this project's writers never write delete files: removing a row
  rewrites its file, which then is no longer there);
- **changed**: anything else, or the recorded snapshot is no longer kept.

and plans the table (:func:`plan_derived`):

- **unchanged** when every input is the same: nothing is computed (a commit
  without data records the inputs' new snapshot ids, if they have new ones);
- **append** when each input the rule does not add rows for row by row
  (``rules.ADDITIVE_IN``) is the same, some input it does add rows for was
  appended, and the table's current snapshot was computed by a rule step under
  the same settings (a removals-only or erasure commit left it unequal to its
  rule over the recorded inputs): the rows added are the rule over the rows
  added (:func:`added_rows`);
- **replace** otherwise: the rule over the whole inputs, with the reason.

The choice and its reason are logged by the step and kept in its
materialization's metadata. The hypothesis property in
``stedi_assets_tests/engines/test_incremental_tables.py`` holds every table,
after any sequence of deliveries, equal to a full rebuild on both engines.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import narwhals as nw

from stedi_assets.domain import rules
from stedi_assets.lakehouse.catalog import TableNotPublishedError
from stedi_assets.lakehouse.tables import TableRead, data_file_paths, upstream_snapshots

if TYPE_CHECKING:
    from stedi_assets.lakehouse.lakehouse import Lakehouse

UPDATE = "stedi.update"
"""Snapshot property of a derived table's snapshot committed by its rule step: ``replace``, ``append`` or
``unchanged`` (a commit without data that records new input snapshots)."""

SAME, APPENDED, CHANGED = "same", "appended", "changed"
UNCHANGED, APPEND, REPLACE = "unchanged", "append", "replace"


@dataclass(frozen=True)
class InputChange:
    """How an input differs from the snapshot a table was computed from."""

    kind: str
    added: tuple[str, ...] = ()
    """The data files added since (``appended``)."""
    before: tuple[str, ...] = ()
    """The data files of the recorded snapshot (``appended``)."""


def input_change(recorded: int | None, read: TableRead) -> InputChange:
    """How ``read`` differs from its table's snapshot ``recorded`` (None: nothing recorded)."""
    iceberg_table = read.iceberg_table
    if recorded is None or iceberg_table.metadata.snapshot_by_id(recorded) is None:
        return InputChange(CHANGED)
    if recorded == read.snapshot_id:
        return InputChange(SAME)
    before = set(data_file_paths(iceberg_table, recorded))
    now = set(read.files)
    if before == now:
        return InputChange(SAME)
    if before < now:
        return InputChange(APPENDED, tuple(sorted(now - before)), tuple(sorted(before)))
    return InputChange(CHANGED)


@dataclass(frozen=True)
class DerivedPlan:
    """What a derived table's step does, and why."""

    kind: str
    reason: str
    base_snapshot_id: int | None
    changes: Mapping[str, InputChange] = field(default_factory=dict)
    moved: bool = True
    """Whether some input was read at another snapshot than the one recorded: an unchanged table records
    the new ones (a commit without data)."""

    @property
    def appended(self) -> list[str]:
        """The inputs whose added rows the table gains rows for, in the rule's order (``ADDITIVE_IN``)."""
        return [name for name, change in self.changes.items() if change.kind == APPENDED]


def plan_derived(
    iceberg_table, table: str, reads: Mapping[str, TableRead], inputs: Mapping[str, InputChange],
    rule_properties: Mapping[str, str], ignored: Collection[str] = (),
) -> DerivedPlan:
    """The plan of derived ``table`` (its Iceberg table ``iceberg_table``) from its ``reads`` and how each
    differs from the snapshot recorded (``inputs``); ``ignored``: inputs the rule does not use under the
    settings in force."""
    snapshot = iceberg_table.metadata.current_snapshot()
    if snapshot is None:
        return DerivedPlan(REPLACE, "not published yet", None)
    base = snapshot.snapshot_id
    recorded = snapshot.summary.additional_properties if snapshot.summary else {}
    upstream = upstream_snapshots(recorded)
    if UPDATE not in recorded:
        return DerivedPlan(REPLACE, "its current snapshot was not computed by its rule (rows removed since?)", base)
    settings = [k.rsplit(".", 1)[-1] for k, v in rule_properties.items() if recorded.get(k) != v]
    if settings:
        return DerivedPlan(REPLACE, f"computed under other settings: {', '.join(settings)}", base)
    changes = {name: inputs[name] for name in reads if name not in ignored}
    additive = rules.ADDITIVE_IN.get(table, ())
    ordered = {name: changes[name] for name in additive if name in changes}
    ordered.update({name: change for name, change in changes.items() if name not in ordered})
    moved = [name for name, change in ordered.items() if change.kind != SAME]
    if not moved:
        snapshots = any(upstream.get(name) != read.snapshot_id for name, read in reads.items())
        return DerivedPlan(UNCHANGED, "no input changed", base, ordered, moved=snapshots)
    rewritten = [name for name in moved if ordered[name].kind == CHANGED or name not in additive]
    if rewritten:
        what = ", ".join(f"{n} {'changed' if ordered[n].kind == CHANGED else 'gained rows'}" for n in rewritten)
        return DerivedPlan(REPLACE, f"recomputed whole: {what}", base, ordered)
    added = sum(len(ordered[name].added) for name in moved)
    return DerivedPlan(APPEND, f"rows added for {', '.join(moved)} ({added} new data file(s))", base, ordered)


Rule = Callable[[Mapping[str, nw.LazyFrame]], nw.LazyFrame]


def added_rows(
    lakehouse: Lakehouse, table: str, plan: DerivedPlan, reads: Mapping[str, TableRead], rule: Rule,
    current: nw.LazyFrame,
) -> nw.LazyFrame:
    """The rows ``table`` gains: ``rule`` over its inputs' added rows (``plan.appended``), the others whole.

    With inputs A and B both appended (A = A0 + dA, B = B0 + dB), a rule that
    adds rows row by row in each gives rule(A, B) = rule(A0, B0) + rule(dA, B0)
    + rule(A, dB): one term per appended input, the inputs before it new, those
    after it as they were. A table whose rows are distinct on a key
    (``rules.DISTINCT_ON``) gains only rows whose key it does not hold yet
    (``current``: its rows now).
    """
    appended = plan.appended
    terms = []
    for position, name in enumerate(appended):
        frames = {n: read.frame for n, read in reads.items()}
        frames[name] = lakehouse.read_files(reads[name], plan.changes[name].added)
        for later in appended[position + 1:]:
            frames[later] = lakehouse.read_files(reads[later], plan.changes[later].before)
        terms.append(rule(frames))
    rows = nw.concat(terms, how="vertical") if len(terms) > 1 else terms[0]
    key = rules.DISTINCT_ON.get(table)
    if key is not None:
        rows = rules.rows_with_key_not_in(rows, key, current, key)
    return rows


def aligned(rows: nw.LazyFrame, columns: Sequence[str]) -> nw.LazyFrame | None:
    """``rows`` with exactly the table's ``columns``, in its order; None when the rows have others."""
    if set(rows.collect_schema().names()) != set(columns):
        return None
    return rows.select(list(columns))


@dataclass(frozen=True)
class Derivation:
    """A derived table's plan, its rows now (``current``: read unless it is recomputed whole), and, for an
    append, the rows it gains (lazy)."""

    plan: DerivedPlan
    current: TableRead | None
    rows: nw.LazyFrame | None = None
    ignored_same: bool = True
    """Whether every input the rule ignores under the settings in force is the same too: the table's checks
    see those inputs, so only then were the rows kept judged against the inputs the checks see now."""


def derive(
    lakehouse: Lakehouse, table: str, reads: Mapping[str, TableRead], rule: Rule, ignored: Collection[str] = (),
) -> Derivation:
    """Plan derived ``table`` from its ``reads`` (``plan_derived``) and, for an append, the rows it gains."""
    try:
        iceberg_table = lakehouse.load_table(table)
    except TableNotPublishedError:
        # Created by its first commit: a table held back by its checks is never created.
        return Derivation(DerivedPlan(REPLACE, "not published yet", None), None)
    snapshot = iceberg_table.metadata.current_snapshot()
    recorded = upstream_snapshots(snapshot.summary.additional_properties if snapshot and snapshot.summary else {})
    inputs = {name: input_change(recorded.get(name), read) for name, read in reads.items()}
    plan = plan_derived(iceberg_table, table, reads, inputs, lakehouse.rule_properties(), ignored)
    if plan.kind == REPLACE:
        return Derivation(plan, None)
    current = lakehouse.read_snapshot(table, plan.base_snapshot_id, iceberg_table)
    ignored_same = all(inputs[name].kind == SAME for name in ignored if name in inputs)
    if plan.kind == UNCHANGED:
        return Derivation(plan, current, ignored_same=ignored_same)
    rows = aligned(added_rows(lakehouse, table, plan, reads, rule, current.frame), current.schema.column_names)
    if rows is None:
        plan = DerivedPlan(
            REPLACE, "recomputed whole: the new rows bring a column the table lacks", plan.base_snapshot_id, plan.changes
        )
    return Derivation(plan, current, rows, ignored_same)
