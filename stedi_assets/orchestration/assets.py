"""The zone tables as software-defined assets: eight zone tables and each feed's quarantine.

Each asset computes its table with the configured engine, runs the table's
checks on the result, and hands the table to the IO manager, which commits it
to its Iceberg table, only if no blocking check failed: a table that breaks a privacy contract is
never published, and Dagster skips everything downstream of it.
"""

import time
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

import narwhals as nw
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    AssetDep,
    Config,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    Output,
    ResourceParam,
    TableColumn,
    TableSchemaMetadataValue,
    asset,
    multi_asset,
)
from dagster import TableSchema as DagsterTableSchema
from pydantic import Field

from stedi_assets.domain import rules
from stedi_assets.orchestration.checks import (
    CHECKS,
    HISTORY_CHECKS,
    CheckInput,
    check_specs,
    check_withdrawn_out_of_history,
    row_count,
)
from stedi_assets.lakehouse.history import describe as describe_forgotten
from stedi_assets.lakehouse.history import forget_withdrawn, publish_removals, withdrawn_customers
from stedi_assets.lakehouse.ingestion import ingest_lock, plan_deliveries, plan_landing_update
from stedi_assets.lakehouse.ledger import REFUSED, REJECTED, feed_deliveries, read_ledger, record_deliveries
from stedi_assets.lakehouse import incremental
from stedi_assets.lakehouse.tables import TableRead, TableUpdate
from stedi_assets.orchestration.feeds import DATA_VERSION_TAG, USER_PROVIDED_TAG, feed_key
from stedi_assets.orchestration.landing import landing_metadata
from stedi_assets.orchestration.io_manager import commit_metadata, snapshot_properties
from stedi_assets.orchestration.masking import mask_emails, mask_metadata, masked, masks_errors
from stedi_assets.orchestration.progress import read_progress
from stedi_assets.domain.profiles import expected_rows
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.domain.evolution import ADDED_DESCRIPTION
from stedi_assets.domain.evolution import describe as describe_columns
from stedi_assets.domain.schemas import NARWHALS_TYPES, QUARANTINED_CUSTOMERS, TABLES
from stedi_assets.lakehouse.storage import FileVersion


def column_schema(table: str, frame: nw.LazyFrame | None = None) -> TableSchemaMetadataValue:
    """The table's columns as Dagster shows them: the declared ones, then those of ``frame`` added from
    delivered records, with their types."""
    columns = [TableColumn(c.name, c.type, description=c.description) for c in TABLES[table].columns]
    if frame is not None:
        types = {dtype: name for name, dtype in NARWHALS_TYPES.items()}
        found = frame.collect_schema()
        for name in rules.added_columns(frame, table):
            column_type = next((t for d, t in types.items() if found[name] == d), str(found[name]))
            columns.append(TableColumn(name, column_type, description=ADDED_DESCRIPTION))
    return MetadataValue.table_schema(DagsterTableSchema(columns=columns))


def _materialize(
    context: AssetExecutionContext,
    lakehouse: ResourceParam[Lakehouse],
    table: str,
    frame: nw.LazyFrame,
    inputs: Mapping[str, nw.LazyFrame],
    records_read: int | None = None,
    quarantine: nw.LazyFrame | None = None,
    quarantined: int = 0,
    extra_metadata: Mapping[str, Any] | None = None,
    update: TableUpdate | None = None,
    refused: Mapping[str, str] | None = None,
    added_columns: str = "",
    derived: TableUpdate | None = None,
    added: nw.LazyFrame | None = None,
) -> Iterator[Output | AssetCheckResult]:
    """Check ``frame`` and, unless a blocking check failed, publish it, or commit ``update`` when given.

    With an ``update`` (a landing table's, committed here) or a ``derived``
    update (a derived table's rows added or none, committed by the IO manager)
    the frame is checked as it is: held already when it replaces the table,
    lazy when rows are added to it (its whole contents need not be computed to
    be checked). Otherwise ``frame`` is the table's new contents. ``added``: the rows a derived update adds
    (``CheckInput.added``), which the checks judged row by row judge alone.
    """
    engine = lakehouse.get_engine()
    # Who has withdrawn, for a privacy table's removals and history: customer_landing read once per step.
    customer_landing = cache(lambda: lakehouse.read_table(["customer_landing"], in_process=True))
    hold = update is None and derived is None
    held = engine.hold(frame) if hold else frame
    try:
        check_input = CheckInput(
            table=table,
            frame=held,
            inputs=inputs,
            expected_rows=expected_rows(lakehouse.profile, table, lakehouse.same_customer, lakehouse.consent_scope),
            same_customer=lakehouse.same_customer,
            consent_scope=lakehouse.consent_scope,
            records_read=records_read,
            quarantine=quarantine,
            quarantined=quarantined,
            quarantine_max_share=lakehouse.quarantine_max_share,
            refused=refused or {},
            added_columns=added_columns,
            curated_extra_columns=tuple(lakehouse.curated_extra_columns),
            added=added,
        )
        with engine.errors():
            results = [(check, check.run(check_input)) for check in CHECKS[table]]
        # A blocking check stops publication only when it fails as an ERROR;
        # some checks fail as a WARN below their threshold.
        blocked = [
            c.name for c, r in results if c.blocking and not r.passed and r.severity == AssetCheckSeverity.ERROR
        ]
        if blocked:
            context.log.error(mask_emails(f"{table} not published: blocking check(s) failed: {', '.join(blocked)}"))
            if table in HISTORY_CHECKS:
                removed = _publish_removals(context, lakehouse, table, customer_landing())
                note = {"removals_published": MetadataValue.json(removed)} if removed else {}
                results = [(c, r.with_metadata({**r.metadata, **note}) if c.name in blocked else r) for c, r in results]
        else:
            metadata = {
                "dagster/row_count": MetadataValue.int(check_input.rows),
                "dagster/column_schema": column_schema(table, held),
                "engine": engine.name,
            }
            if added_columns:
                metadata["added_columns"] = added_columns
            if records_read is not None:
                metadata.update(landing_metadata(records_read, check_input.rows, quarantined, extra_metadata or {}))
            elif extra_metadata:
                metadata.update(extra_metadata)
            if update is None:
                derived = derived or TableUpdate(None, replace=held)
                metadata["update"] = derived.kind
                # Everything emitted goes to the event log: no email address in it, whatever a value holds.
                # Each materialization that commits is a new snapshot, so a new data version: tables
                # computed from this one are stale in Dagster's view until they are computed again.
                version = (
                    _kept_data_version(context, table, derived.base_snapshot_id)
                    if derived.kind == "unchanged" and not derived.record else DataVersion(f"run {context.run.run_id}")
                )
                yield masked(Output(derived, metadata=metadata, data_version=version))
            else:
                yield commit_planned(context, lakehouse, table, update, metadata)
        for _, result in results:
            yield masked(result)
        if table in HISTORY_CHECKS:
            # After the commit (Dagster stores an output before the step goes on), whether or not it was published.
            yield from _history(context, lakehouse, table, customer_landing())
    finally:
        if hold:
            engine.release(held)


def _kept_data_version(context: AssetExecutionContext, table: str, snapshot_id: int | None) -> DataVersion:
    """The data version of the table's latest materialization: a step that commits nothing keeps it."""
    event = context.instance.get_latest_materialization_event(AssetKey(table))
    materialization = event.asset_materialization if event is not None else None
    recorded = materialization.tags.get(DATA_VERSION_TAG) if materialization is not None and materialization.tags else None
    return DataVersion(recorded or f"snapshot {snapshot_id}")


def _publish_removals(
    context: AssetExecutionContext, lakehouse: Lakehouse, table: str, customer_landing: nw.LazyFrame
) -> dict[str, int]:
    """A held-back table: remove the customers who withdrew from it and every table downstream, add nothing."""
    tables = [table, *(t for t in ZONE_ORDER if t in downstream_of(table))]
    withdrawn = withdrawn_customers(customer_landing)
    properties = snapshot_properties(lakehouse, context.run.run_id)
    removed = publish_removals(lakehouse, tables, withdrawn, properties, context.run.run_id)
    for name, rows in removed.items():
        context.log.warning(
            f"{name}: {rows} row(s) of customers who withdrew removed, nothing added, while {table} is held back"
        )
        # The tables downstream are not materialized by this run (their steps are skipped): recorded here.
        context.log_event(AssetMaterialization(
            asset_key=name, metadata={"removals_only": True, "rows_removed": rows, "held_back": table},
            # A new snapshot: a new data version.
            tags={DATA_VERSION_TAG: f"removals {context.run.run_id}", USER_PROVIDED_TAG: "true"},
        ))
        forgotten = forget_withdrawn(lakehouse, name, withdrawn)
        if forgotten.snapshots_expired:
            context.log.info(describe_forgotten(forgotten))
    return removed


def _history(
    context: AssetExecutionContext, lakehouse: Lakehouse, table: str, customer_landing: nw.LazyFrame
) -> Iterator[AssetCheckResult]:
    """Expire the table's earlier snapshots that hold a customer who has withdrawn since, then judge its history."""
    now_ms = int(time.time() * 1000)
    if lakehouse.current_snapshot(table) is None:
        # Never published (held back on its first run): no history to judge yet.
        yield masked(check_withdrawn_out_of_history(table, [], lambda path: None, customer_landing, lakehouse.withdrawal_retention_hours, now_ms))
        return
    forgotten = forget_withdrawn(lakehouse, table, withdrawn_customers(customer_landing))
    if forgotten.snapshots_expired:
        context.log.info(describe_forgotten(forgotten))
    iceberg_table = lakehouse.load_table(table)
    current = iceberg_table.metadata.current_snapshot_id
    ordered = sorted(iceberg_table.snapshots(), key=lambda s: (s.sequence_number or 0, s.timestamp_ms))
    successors = {s.snapshot_id: nxt.timestamp_ms for s, nxt in zip(ordered, ordered[1:])}
    snapshots = [
        (s.snapshot_id, successors.get(s.snapshot_id), s.snapshot_id == current,
         lakehouse.snapshot_files(table, iceberg_table, s.snapshot_id))
        for s in ordered
    ]
    read = lakehouse.read_snapshot(table, current, iceberg_table, in_process=True)
    yield masked(check_withdrawn_out_of_history(
        table, snapshots, lambda path: lakehouse.read_files(read, [path], in_process=True), customer_landing,
        lakehouse.withdrawal_retention_hours, now_ms,
    ))


def quarantined_customers(lakehouse: ResourceParam[Lakehouse], customer_quarantine: nw.LazyFrame) -> nw.LazyFrame:
    """Whose each quarantined customer record is, as a frame of the engine in use.

    The customer feed is small and its quarantine smaller: the raw texts are
    read into Python, where the JSON parser can recover what a frame cannot.
    """
    texts = customer_quarantine.select("source_file", "line", "raw_text").collect().rows()
    return lakehouse.get_engine().frame(rules.quarantined_customer_rows(texts), QUARANTINED_CUSTOMERS)


@masks_errors
def _derive(
    context: AssetExecutionContext,
    lakehouse: ResourceParam[Lakehouse],
    table: str,
    rule: incremental.Rule,
    reads: Mapping[str, TableRead],
    extra: Mapping[str, nw.LazyFrame] | None = None,
    ignored: tuple[str, ...] = (),
) -> Iterator[Output | AssetCheckResult]:
    """A trusted or curated table: ``rule`` over the upstream tables (``reads``, and ``extra`` frames computed
    from them), updated incrementally when its inputs only gained rows (``lakehouse.incremental``); its
    checks judge the whole table and see the inputs too."""
    extra = dict(extra or {})
    whole = lambda frames: rule({**frames, **extra})  # noqa: E731
    derivation = incremental.derive(lakehouse, table, reads, whole, ignored)
    plan, current = derivation.plan, derivation.current
    frames = {name: read.frame for name, read in reads.items()}
    engine = lakehouse.get_engine()
    kind, reason, held = plan.kind, plan.reason, None
    if kind == incremental.REPLACE:
        contents, update = whole(frames), None
    elif kind == incremental.UNCHANGED:
        contents, update = current.frame, TableUpdate(plan.base_snapshot_id, record=plan.moved)
    else:
        held = engine.hold(derivation.rows)
        with engine.errors():
            adds = row_count(held)
        if adds:
            reason = f"{reason}: {adds} row(s)"
            contents = nw.concat([current.frame, held], how="vertical")
            update = TableUpdate(plan.base_snapshot_id, append=held)
        else:
            # The new input rows give none: the rows stay, the new input snapshots are recorded.
            engine.release(held)
            held = None
            kind, reason = incremental.UNCHANGED, f"the new rows of {', '.join(plan.appended)} add no rows"
            contents, update = current.frame, TableUpdate(plan.base_snapshot_id, record=True)
    context.log.info(mask_emails(f"{table}: {kind}: {reason}"))
    # The rows kept passed the blocking checks when they were committed; checks judged row by row judge the
    # rows added alone, when every input the checks see is as it was then but for rows added.
    added = None
    if derivation.ignored_same and kind != incremental.REPLACE:
        added = held if held is not None else current.frame.head(0)
    try:
        yield from _materialize(
            context, lakehouse, table, contents, {**frames, **extra}, extra_metadata={"update_reason": reason},
            derived=update, added=added,
        )
    finally:
        if held is not None:
            engine.release(held)


class LandingConfig(Config):
    """How a landing step reads its feed."""

    full_refresh: bool = Field(
        default=False,
        description="Read every landing file of the feed again and rebuild its tables, instead of only the files "
        "that are new, changed or removed since they were last ingested.",
    )


@masks_errors
def _landing(context: AssetExecutionContext, lakehouse: ResourceParam[Lakehouse], feed: str, full_refresh: bool) -> Iterator:
    # A missing or empty landing zone fails here, before anything is written.
    listed = lakehouse.landing_versions(feed)
    lakehouse.catalog(create=True)
    with ingest_lock(lakehouse, feed):
        yield from _ingest(context, lakehouse, feed, listed, full_refresh)


def _ingest(
    context: AssetExecutionContext, lakehouse: ResourceParam[Lakehouse], feed: str, listed: Mapping[str, FileVersion],
    full_refresh: bool,
) -> Iterator:
    known = feed_deliveries(read_ledger(lakehouse)[0], feed)
    bases = (lakehouse.current_snapshot(f"{feed}_landing"), lakehouse.current_snapshot(f"{feed}_quarantine"))
    plan = plan_deliveries(listed, known, published=None not in bases, full_refresh=full_refresh)
    context.log.info(mask_emails(f"{feed}: {plan.describe()}"))
    update = plan_landing_update(
        lakehouse, feed, plan, known.current, bases, context.run.run_id, progress=read_progress(context.op_def.name),
    )
    engine = lakehouse.get_engine()
    landing_kind = update.landing.kind
    quarantine = engine.hold(update.quarantine_frame)
    try:
        with engine.errors():
            quarantined = row_count(quarantine)
        quarantine_update = (
            update.quarantine if update.quarantine.kind == "unchanged"
            else TableUpdate(update.quarantine.base_snapshot_id, replace=quarantine)
        )
        # The quarantine is published even when the landing table is not:
        # it is where one finds out why.
        yield commit_planned(context, lakehouse, f"{feed}_quarantine", quarantine_update, {
            "dagster/row_count": MetadataValue.int(quarantined),
            "dagster/column_schema": column_schema(f"{feed}_quarantine"),
            "records_read": MetadataValue.int(update.records_read),
        })
        published, held_back = False, []
        for event in _materialize(
            context, lakehouse, f"{feed}_landing", update.landing_frame, {},
            records_read=update.records_read, quarantine=quarantine, quarantined=quarantined,
            extra_metadata={"unknown_fields": dict(update.unknown_fields)},
            update=update.landing, refused={uri: v.refused for uri, v in listed.items() if v.refused},
            added_columns=describe_columns(update.added_columns),
        ):
            published = published or isinstance(event, MaterializeResult)
            if isinstance(event, AssetCheckResult) and _holds_back(event, f"{feed}_landing"):
                held_back.append(event)
            yield event
        deliveries, retired = update.deliveries, update.retired
        if not published:
            # Every version read is recorded, as rejected: the next run reads it again until it is
            # removed or corrected, and its removal is then a change like any other.
            reason = rejection_reason(held_back)
            deliveries = tuple(
                d if d.status == REFUSED else d.with_status(REJECTED, reason) for d in deliveries
            )
            # The landing table still holds the versions it held: only what left the quarantine is retired.
            gone = set(plan.dropped_rejected) | set(plan.refused_gone)
            retired = {uri: status for uri, status in retired.items() if uri in gone}
            context.log.error(mask_emails(
                f"{feed}: {len(deliveries)} file version(s) recorded as rejected in the delivery ledger; "
                "remove or correct them and the next run publishes the feed (no full refresh needed)"
            ))
        if deliveries or retired:
            record_deliveries(lakehouse, feed, deliveries, retired, context.run.run_id)
    finally:
        engine.release(quarantine)
        if landing_kind == "replace":
            engine.release(update.landing_frame)


def commit_planned(
    context: AssetExecutionContext, lakehouse: Lakehouse, table: str, update: TableUpdate, metadata: Mapping[str, Any]
) -> MaterializeResult:
    """Commit a landing step's planned ``update`` of ``table`` onto the snapshot it was planned from, and say so."""
    commit = lakehouse.apply_update([table], update, snapshot_properties(lakehouse, context.run.run_id), context.run.run_id)
    metadata = {**metadata, "update": update.kind, **commit_metadata(lakehouse, [table], commit)}
    # Everything emitted goes to the event log: no email address in it, whatever a value holds.
    # The data version is the snapshot: an unchanged table keeps its version, and what is computed
    # from it stays fresh in Dagster's view.
    return MaterializeResult(
        asset_key=table, metadata=mask_metadata(metadata), data_version=DataVersion(f"snapshot {commit.snapshot_id}")
    )


def _holds_back(result: AssetCheckResult, table: str) -> bool:
    return not result.passed and result.severity == AssetCheckSeverity.ERROR and any(
        check.name == result.check_name and check.blocking for check in CHECKS[table]
    )


def rejection_reason(held_back: list[AssetCheckResult]) -> str:
    """Why a landing table was held back, in one line: each failed blocking check and its problem."""
    parts = []
    for result in held_back:
        problem = result.metadata.get("problem")
        text = getattr(problem, "value", problem)
        parts.append(f"{result.check_name}: {text}" if text else result.check_name)
    return mask_emails("landing table held back by " + ("; ".join(parts) or "a failed blocking check"))


POOL = "stedi_lakehouse"
"""Every asset's Dagster pool (concurrency key): a deployment can limit overlapping lakehouse writes."""

_ASSET_OPTIONS = dict(output_required=False, kinds={"iceberg"}, pool=POOL)


def _landing_specs(feed: str) -> list[AssetSpec]:
    # Skippable: a landing table held back by a blocking check is not materialized, its quarantine is.
    # Both record the feed's data version they were read at (feeds.py).
    return [
        AssetSpec(
            f"{feed}_landing",
            description=f"One row per distinct {feed.replace('_', '-')} record delivered to the landing zone.",
            skippable=True, kinds={"iceberg"}, deps=[AssetDep(feed_key(feed))],
        ),
        AssetSpec(
            f"{feed}_quarantine",
            description=f"One row per {feed.replace('_', '-')} landing record that could not be kept, with why.",
            skippable=True, kinds={"iceberg"}, deps=[AssetDep(feed_key(feed))],
        ),
    ]


@multi_asset(specs=_landing_specs("customer"), check_specs=check_specs("customer_landing"), pool=POOL)
def customer_landing(context: AssetExecutionContext, config: LandingConfig, lakehouse: ResourceParam[Lakehouse]):
    """One row per distinct customer record delivered, and one per record quarantined."""
    yield from _landing(context, lakehouse, "customer", config.full_refresh)


@multi_asset(specs=_landing_specs("accelerometer"), check_specs=check_specs("accelerometer_landing"), pool=POOL)
def accelerometer_landing(context: AssetExecutionContext, config: LandingConfig, lakehouse: ResourceParam[Lakehouse]):
    """One row per distinct accelerometer reading delivered, and one per record quarantined."""
    yield from _landing(context, lakehouse, "accelerometer", config.full_refresh)


@multi_asset(specs=_landing_specs("step_trainer"), check_specs=check_specs("step_trainer_landing"), pool=POOL)
def step_trainer_landing(context: AssetExecutionContext, config: LandingConfig, lakehouse: ResourceParam[Lakehouse]):
    """One row per distinct step-trainer reading delivered, and one per record quarantined."""
    yield from _landing(context, lakehouse, "step_trainer", config.full_refresh)


@asset(check_specs=check_specs("customer_trusted"), **_ASSET_OPTIONS)
def customer_trusted(
    context: AssetExecutionContext,
    lakehouse: ResourceParam[Lakehouse],
    customer_landing: TableRead,
    customer_quarantine: TableRead,
):
    """One row per customer (email identity) whose current record consents and none of whose records is unreadable."""
    yield from _derive(
        context, lakehouse, "customer_trusted",
        lambda f: rules.customer_trusted(f["customer_landing"], f["quarantined_customers"]),
        {"customer_landing": customer_landing, "customer_quarantine": customer_quarantine},
        {"quarantined_customers": quarantined_customers(lakehouse, customer_quarantine.frame)},
    )


@asset(check_specs=check_specs("accelerometer_trusted"), **_ASSET_OPTIONS)
def accelerometer_trusted(
    context: AssetExecutionContext,
    lakehouse: ResourceParam[Lakehouse],
    accelerometer_landing: TableRead,
    customer_trusted: TableRead,
):
    """One row per accelerometer reading of a customer in customer_trusted."""
    yield from _derive(
        context, lakehouse, "accelerometer_trusted",
        lambda f: rules.accelerometer_trusted(
            f["accelerometer_landing"], f["customer_trusted"], from_consent_date=lakehouse.from_consent_date
        ),
        {"accelerometer_landing": accelerometer_landing, "customer_trusted": customer_trusted},
    )


@asset(check_specs=check_specs("customer_curated"), **_ASSET_OPTIONS)
def customer_curated(
    context: AssetExecutionContext,
    lakehouse: ResourceParam[Lakehouse],
    customer_trusted: TableRead,
    accelerometer_trusted: TableRead,
):
    """One row per consenting customer who has accelerometer readings."""
    yield from _derive(
        context, lakehouse, "customer_curated",
        lambda f: rules.customer_curated(
            f["customer_trusted"], f["accelerometer_trusted"], extra_columns=tuple(lakehouse.curated_extra_columns)
        ),
        {"customer_trusted": customer_trusted, "accelerometer_trusted": accelerometer_trusted},
    )


@asset(check_specs=check_specs("step_trainer_trusted"), **_ASSET_OPTIONS)
def step_trainer_trusted(
    context: AssetExecutionContext,
    lakehouse: ResourceParam[Lakehouse],
    step_trainer_landing: TableRead,
    customer_curated: TableRead,
    customer_landing: TableRead,
    customer_trusted: TableRead,
    customer_quarantine: TableRead,
):
    """One row per step-trainer reading of a curated customer's device that no non-consenting customer shares."""
    yield from _derive(
        context, lakehouse, "step_trainer_trusted",
        lambda f: rules.step_trainer_trusted(
            f["step_trainer_landing"], f["customer_curated"], f["customer_landing"], f["customer_trusted"],
            from_consent_date=lakehouse.from_consent_date, quarantined_customers=f["quarantined_customers"],
        ),
        {
            "step_trainer_landing": step_trainer_landing, "customer_curated": customer_curated,
            "customer_landing": customer_landing, "customer_trusted": customer_trusted,
            "customer_quarantine": customer_quarantine,
        },
        {"quarantined_customers": quarantined_customers(lakehouse, customer_quarantine.frame)},
    )


@asset(check_specs=check_specs("machine_learning_curated"), **_ASSET_OPTIONS)
def machine_learning_curated(
    context: AssetExecutionContext,
    lakehouse: ResourceParam[Lakehouse],
    step_trainer_trusted: TableRead,
    accelerometer_trusted: TableRead,
    customer_curated: TableRead,
):
    """One row per step-trainer reading paired with an accelerometer reading taken at the same time."""
    yield from _derive(
        context, lakehouse, "machine_learning_curated",
        lambda f: rules.machine_learning_curated(
            f["step_trainer_trusted"], f["accelerometer_trusted"], f["customer_curated"],
            same_customer=lakehouse.same_customer, extra_columns=tuple(lakehouse.curated_extra_columns),
        ),
        {
            "step_trainer_trusted": step_trainer_trusted, "accelerometer_trusted": accelerometer_trusted,
            "customer_curated": customer_curated,
        },
        # Paired on time alone, the table does not depend on who the curated customers are.
        ignored=() if lakehouse.same_customer else ("customer_curated",),
    )


ZONE_ASSETS = [
    customer_landing,
    accelerometer_landing,
    step_trainer_landing,
    customer_trusted,
    accelerometer_trusted,
    customer_curated,
    step_trainer_trusted,
    machine_learning_curated,
]

ZONE_UPSTREAM: dict[str, frozenset[str]] = {
    key.path[-1]: frozenset(dep.path[-1] for dep in deps if dep.path[-1] in TABLES)
    for asset in ZONE_ASSETS for key, deps in asset.asset_deps.items()
}
"""Each zone table -> the tables it is computed from (none for a landing or quarantine table, which
are read from their feed's files)."""

ZONE_ORDER = [key.path[-1] for asset in ZONE_ASSETS for key in asset.keys]
"""Every zone table, each after the tables it is computed from."""


def downstream_of(table: str) -> set[str]:
    """The tables computed, directly or not, from ``table``."""
    found: set[str] = set()
    grew = {table}
    while grew:
        grew = {t for t, inputs in ZONE_UPSTREAM.items() if inputs & (grew | found) and t not in found}
        found |= grew
    return found - {table}
