"""The asset checks of every table, evaluated on the computed table before it is published.

Privacy checks are blocking ERROR checks: a table that fails one is not
published and nothing downstream runs. Values that identify a person never go
into check metadata as they are; samples of emails are masked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import narwhals as nw
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, MetadataValue

from stedi_assets.domain import evolution, invariants, rules
from stedi_assets.orchestration.masking import mask_email
from stedi_assets.orchestration.landing import DEFAULT_QUARANTINE_MAX_SHARE, check_quarantined_records
from stedi_assets.domain.schemas import NARWHALS_TYPES, TABLES
from stedi_assets.lakehouse.history import HISTORY_KEYS

ERROR = AssetCheckSeverity.ERROR
WARN = AssetCheckSeverity.WARN
_SAMPLE_SIZE = 5
JUDGED_ADDED = "the rows this update added; the rows kept passed when their step published them"


@dataclass(frozen=True)
class CheckInput:
    """What a check looks at: the computed table and the upstream tables it came from."""

    table: str
    frame: nw.LazyFrame
    inputs: Mapping[str, nw.LazyFrame] = field(default_factory=dict)
    expected_rows: int | None = None
    same_customer: bool = False
    consent_scope: str = "any_time"
    """Which readings a research consent covers (settings.CONSENT_SCOPES)."""
    records_read: int | None = None
    """Landing tables: records read from the feed's files before duplicates were dropped."""
    quarantine: nw.LazyFrame | None = None
    """Landing tables: the records of the feed that were quarantined."""
    quarantined: int = 0
    """Landing tables: how many records were quarantined (counted once, by the asset)."""
    quarantine_max_share: float = DEFAULT_QUARANTINE_MAX_SHARE
    """Landing tables: above this share of quarantined records the landing table is held back."""
    refused: Mapping[str, str] = field(default_factory=dict)
    """Landing tables: entries of the feed's folder refused unread (not regular files inside it) -> why."""
    added_columns: str = ""
    """Landing tables: the columns this materialization adds from delivered records (``name type, ...``)."""
    curated_extra_columns: tuple[str, ...] = ()
    """Curated tables: the added columns they may carry (curated_extra_columns, STEDI_CURATED_EXTRA_COLUMNS)."""
    added: nw.LazyFrame | None = None
    """A derived table updated incrementally (``lakehouse.incremental``): the rows this update adds (none, for
    a table left unchanged). The rows it keeps passed every blocking check when their step committed them,
    against the inputs as they were then; since then the inputs are the same but for rows added to those the
    rule adds rows for row by row. A check judged row by row (``Check.row_by_row``) judges these rows alone."""

    @cached_property
    def rows(self) -> int:
        """Rows of the computed table, counted once for every check and the metadata."""
        return row_count(self.frame)


# A check's outcome: passed and metadata, and optionally the severity of this
# result when it differs from the check's own (a WARN below a threshold).


Outcome = tuple[bool, dict[str, object]] | tuple[bool, dict[str, object], AssetCheckSeverity]


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    evaluate: Callable[[CheckInput], Outcome]
    severity: AssetCheckSeverity = ERROR
    blocking: bool = False
    row_by_row: bool = False
    """The check judges each row on its own against the inputs, and a row that passes still passes when rows
    are added to the inputs the rule adds rows for (it looks a row up in them, never for its absence): on a
    table updated incrementally it judges the rows added alone (``CheckInput.added``). Only a blocking ERROR
    check may be: the rows kept are known to pass it because their step published them."""

    def __post_init__(self) -> None:
        if self.row_by_row and not (self.blocking and self.severity == ERROR):
            raise ValueError(f"{self.name}: only a blocking ERROR check can judge the rows added alone")

    def spec(self, table: str) -> AssetCheckSpec:
        return AssetCheckSpec(self.name, asset=table, description=self.description, blocking=self.blocking)

    def run(self, check_input: CheckInput) -> AssetCheckResult:
        judged = check_input
        if self.row_by_row and check_input.added is not None:
            judged = replace(check_input, frame=check_input.added)
        passed, metadata, *severity = self.evaluate(judged)
        if judged is not check_input:
            metadata = {**metadata, "judged": JUDGED_ADDED}
        return AssetCheckResult(
            asset_key=check_input.table,
            check_name=self.name,
            passed=passed,
            severity=severity[0] if severity else self.severity,
            metadata=metadata,
        )


# -- helpers -----------------------------------------------------------------


def row_count(frame: nw.LazyFrame) -> int:
    return int(frame.select(nw.len()).collect().item())


def row_counts(*frames: nw.LazyFrame) -> list[int]:
    """The rows of each frame, counted in one query (one row of counts side by side).

    On Spark every query is planned and started on its own; the counts of a
    check go together, and shared parts of their plans are computed once.
    """
    if len(frames) == 1:
        return [row_count(frames[0])]
    counts = frames[0].select(nw.len().alias("count_0"))
    for number, frame in enumerate(frames[1:], 1):
        counts = counts.join(frame.select(nw.len().alias(f"count_{number}")), how="cross")
    row = counts.collect().rows()[0]
    return [int(value) for value in row]


def _sample(frame: nw.LazyFrame, column: str, mask: bool = False) -> str:
    values = frame.select(column).head(_SAMPLE_SIZE).collect()[column].to_list()
    return ", ".join(mask_email(v) if mask else str(v) for v in values)


# -- row count -------------------------------------------------------------------


def _upper_bound(ci: CheckInput) -> tuple[int | None, str]:
    """The most rows the table's rule can produce from its upstream tables."""
    inputs = ci.inputs
    if ci.table.endswith("_landing"):
        return ci.records_read, "records read from the landing files"
    if ci.table == "customer_trusted":
        identities = rules.with_identity(inputs["customer_landing"].select("email"), "email")
        emails = identities.select(nw.col("email").n_unique()).collect().item()
        return int(emails), "distinct email identities in customer_landing"
    if ci.table == "accelerometer_trusted":
        return row_count(inputs["accelerometer_landing"]), "rows of accelerometer_landing"
    if ci.table == "customer_curated":
        return row_count(inputs["customer_trusted"]), "rows of customer_trusted"
    if ci.table == "step_trainer_trusted":
        return row_count(inputs["step_trainer_landing"]), "rows of step_trainer_landing"
    if ci.table == "machine_learning_curated":
        steps = inputs["step_trainer_trusted"].group_by("sensorReadingTime").agg(nw.len().alias("steps"))
        readings = (
            inputs["accelerometer_trusted"]
            .group_by("timestamp")
            .agg(nw.len().alias("readings"))
            .rename({"timestamp": "sensorReadingTime"})
        )
        pairs = steps.join(readings, on="sensorReadingTime").select(
            (nw.col("steps") * nw.col("readings")).sum().alias("pairs")
        )
        return int(pairs.collect().item() or 0), "step readings x accelerometer readings per shared time"
    raise KeyError(ci.table)


def check_row_count(ci: CheckInput) -> Outcome:
    rows = ci.rows
    bound, bound_meaning = _upper_bound(ci)
    problems = []
    if rows == 0:
        problems.append("table is empty")
    if bound is not None and rows > bound:
        problems.append(f"{rows} rows exceed the {bound} {bound_meaning}")
    if ci.expected_rows is not None and rows != ci.expected_rows:
        problems.append(f"{rows} rows, profile expects {ci.expected_rows}")
    metadata: dict[str, object] = {"rows": rows, "upper_bound": bound if bound is not None else -1}
    if ci.expected_rows is not None:
        metadata["expected_rows"] = ci.expected_rows
    if problems:
        metadata["problem"] = "; ".join(problems)
    return not problems, metadata


# -- schema -----------------------------------------------------------------------


# The tables each table's added columns may come from: its own feed's, never another feed's.
ADDED_COLUMNS_FROM: dict[str, tuple[str, ...]] = {
    "customer_trusted": ("customer_landing",),
    "accelerometer_trusted": ("accelerometer_landing",),
    "step_trainer_trusted": ("step_trainer_landing",),
    "customer_curated": ("customer_trusted",),
    "machine_learning_curated": ("step_trainer_trusted", "accelerometer_trusted"),
}
CURATED = ("customer_curated", "machine_learning_curated")


def _added_upstream(ci: CheckInput) -> list[str]:
    """The added columns of the tables ``ci.table``'s added columns may come from, in their order."""
    found: list[str] = []
    for upstream in ADDED_COLUMNS_FROM.get(ci.table, ()):
        if upstream in ci.inputs:
            found += [n for n in rules.added_columns(ci.inputs[upstream], upstream) if n not in found]
    return found


def _unexpected_added(ci: CheckInput, added: list[str]) -> list[str]:
    """Added columns the table may not carry: in a landing table, a name that may not be a column; in a
    trusted or curated one, a column its own feed did not add; in a curated one, a column not allowed."""
    if ci.table.endswith("_landing"):
        return [name for name in added if not evolution.is_column_name(name)]
    upstream = _added_upstream(ci)
    allowed = [n for n in upstream if n in ci.curated_extra_columns] if ci.table in CURATED else upstream
    return [name for name in added if name not in allowed]


def check_schema(ci: CheckInput) -> Outcome:
    declared = TABLES[ci.table].narwhals_schema
    actual = ci.frame.collect_schema()
    missing = [c for c in declared if c not in actual]
    added = [c for c in actual if c not in declared]
    unexpected = _unexpected_added(ci, added)
    types = tuple(NARWHALS_TYPES.values())
    unexpected += [f"{c} ({actual[c]})" for c in added if c not in unexpected and not any(actual[c] == t for t in types)]
    wrong_type = [f"{c}: {actual[c]} (declared {declared[c]})" for c in declared if c in actual and actual[c] != declared[c]]
    order_differs = not missing and list(actual)[:len(declared)] != list(declared)
    passed = not (missing or unexpected or wrong_type or order_differs)
    metadata: dict[str, object] = {"columns": ", ".join(f"{c} {t}" for c, t in actual.items())}
    if added:
        metadata["added_columns"] = ", ".join(added)
    if not passed:
        metadata.update(
            missing=", ".join(missing), unexpected=", ".join(unexpected), wrong_type="; ".join(wrong_type),
            order_differs=order_differs,
        )
    return passed, metadata


# -- schema evolution ----------------------------------------------------------------


def check_new_columns(ci: CheckInput) -> Outcome:
    """WARN when this materialization added columns to the landing table from delivered records."""
    if not ci.added_columns:
        return True, {"added_columns": "none"}
    return False, {
        "added_columns": ci.added_columns,
        "what_to_do": "look at the new columns (docs/bad-input.md); the trusted tables carry them, the curated "
        "ones only once each is declared in schemas.py or listed in STEDI_CURATED_EXTRA_COLUMNS",
    }


def check_columns_awaiting_decision(ci: CheckInput) -> Outcome:
    """WARN while an upstream table of the curated table's own feeds has added columns it does not carry."""
    carried = set(ci.frame.collect_schema().names())
    waiting = [name for name in _added_upstream(ci) if name not in carried]
    if not waiting:
        return True, {"columns_awaiting_decision": "none"}
    return False, {
        "columns_awaiting_decision": ", ".join(waiting),
        "what_to_do": "a new field may be personal data: declare it in schemas.py, or list it in "
        "STEDI_CURATED_EXTRA_COLUMNS once it is known not to be; until then it stays out of this table",
    }


# -- privacy ------------------------------------------------------------------------
# Each privacy invariant is written once, in invariants.py, and judged here on
# the computed table and the step's inputs (the audit judges the published
# tables with the same functions). The invariants derive what they need on
# their own, not with the rules that built the table.

_SAMPLE_KEYS = {"email": "sample_emails", "user": "sample_users", "serialNumber": "sample_serial_numbers"}


def _judged(found: Mapping[str, invariants.Violation]) -> Outcome:
    """Outcome of an invariant: the rows of each kind of violation, and masked samples of the offending ones."""
    metadata: dict[str, object] = dict(zip(found, row_counts(*(v.rows for v in found.values()))))
    samples: dict[str, list[str]] = {}
    for kind, violation in found.items():
        if metadata[kind]:
            key = _SAMPLE_KEYS.get(violation.column, f"sample_{violation.column}s")
            distinct_values = rules.distinct(violation.rows.select(violation.column))
            samples.setdefault(key, []).append(_sample(distinct_values, violation.column, mask=violation.personal))
    metadata.update({key: "; ".join(values) for key, values in samples.items()})
    return all(metadata[kind] == 0 for kind in found), metadata


def _invariant_check(invariant: invariants.Invariant) -> Callable[[CheckInput], Outcome]:
    def evaluate(ci: CheckInput) -> Outcome:
        return _judged(invariant(ci.frame, ci.inputs))

    evaluate.__name__ = f"check_{invariant.__name__}"
    evaluate.__doc__ = invariant.__doc__
    return evaluate


check_consenting_customers = _invariant_check(invariants.consenting_customers)
check_consenting_readings = _invariant_check(invariants.consenting_readings)
check_curated_devices = _invariant_check(invariants.curated_devices)
check_traceable = _invariant_check(invariants.traceable)


def check_unique_customers(ci: CheckInput) -> Outcome:
    duplicated = rules.with_identity(ci.frame, "email").group_by("email").agg(nw.len().alias("copies")).filter(nw.col("copies") > 1)
    emails = row_count(duplicated)
    metadata: dict[str, object] = {"customers_more_than_once": emails}
    if emails:
        metadata["sample_emails"] = _sample(duplicated, "email", mask=True)
    return emails == 0, metadata


def check_held_back_customers(ci: CheckInput) -> Outcome:
    """Customers held back because a quarantined record of theirs may be newer than their current one."""
    landing, quarantined = ci.inputs["customer_landing"], ci.inputs["quarantined_customers"]
    held_back = invariants.held_back(landing, quarantined)
    consenting = held_back.join(invariants.withdrawn(landing), on="email", how="anti").join(
        invariants.latest_records(landing).select("email"), on="email", how="semi"
    )
    # Held back with no valid record: only their quarantined records can name their device.
    named = rules.with_identity(
        quarantined.filter(~nw.col("email").is_null() & ~nw.col("serialNumber").is_null()), "email"
    ).select("email")
    device_unknown = held_back.join(invariants.latest_records(landing).select("email"), on="email", how="anti").join(
        named, on="email", how="anti"
    )
    customers, consenting_customers, unknown = row_counts(held_back, consenting, device_unknown)
    metadata: dict[str, object] = {
        "customers_held_back": customers,
        "held_back_whose_valid_record_consents": consenting_customers,
        "held_back_whose_device_cannot_be_read": unknown,
        "rule": "a customer with a quarantined record not provably older than their current valid record "
        "is treated as not consenting; the devices their records name are excluded",
    }
    if customers:
        metadata["sample_emails"] = _sample(held_back, "email", mask=True)
    if unknown:
        metadata["problem"] = (
            f"{unknown} held-back customer(s) have no valid record and no readable serialNumber: a device they "
            "share with a consenting customer cannot be excluded; correct their records"
        )
    return customers == 0, metadata


def check_quarantined_records_attributed(ci: CheckInput) -> Outcome:
    """Every quarantined customer record names its customer: otherwise nobody can prove who withdrew."""
    anonymous = ci.inputs["quarantined_customers"].filter(nw.col("email").is_null())
    records = row_count(anonymous)
    metadata: dict[str, object] = {"records_without_recoverable_email": records}
    if records:
        rows = anonymous.select("source_file", "line").sort("source_file", "line").head(_SAMPLE_SIZE).collect().rows()
        metadata["samples"] = ", ".join(f"{source.rsplit('/', 1)[-1]}:{line}" for source, line in rows)
        metadata["problem"] = "customer_quarantine holds records whose email cannot be read; fix or remove them"
    return records == 0, metadata


def _before_consent(ci: CheckInput) -> nw.LazyFrame:
    if ci.table == "accelerometer_trusted":
        readings = rules.with_identity(ci.frame, "user")
        trusted = rules.with_identity(ci.inputs["customer_trusted"], "email")
        return invariants.readings_before_consent(readings, "timestamp", "user", trusted, "email")
    # Step readings (also those of the ML table) go to a device's curated owners; the latest consent counts.
    readings = ci.frame.with_columns(rules.device("serialNumber"))
    owners = ci.inputs["customer_curated"].with_columns(rules.device("serialNumber"))
    return invariants.readings_before_consent(readings, "sensorReadingTime", "serialNumber", owners, "serialNumber")


def check_consent_scope(ci: CheckInput) -> Outcome:
    """Under consent_scope=from_consent_date, no reading taken before its owner's consent date."""
    if ci.consent_scope != "from_consent_date":
        return True, {"consent_scope": ci.consent_scope, "note": "every reading of a consenting customer is in scope"}
    early = _before_consent(ci)
    rows = row_count(early)
    metadata: dict[str, object] = {"consent_scope": ci.consent_scope, "readings_before_consent": rows}
    if rows:
        key = "user" if ci.table == "accelerometer_trusted" else "serialNumber"
        metadata["sample_owners" if key == "user" else "sample_serial_numbers"] = _sample(
            rules.distinct(early.select(key)), key, mask=key == "user"
        )
    return rows == 0, metadata


def check_no_personal_identifiers(ci: CheckInput) -> Outcome:
    found = invariants.identifier_columns(ci.frame.collect_schema())
    return not found, {"identifier_columns": ", ".join(found) or "none"}


def check_cross_customer_pairs(ci: CheckInput) -> Outcome:
    """Rows of the table pairing one customer's step reading with another customer's accelerometer reading."""
    crossed = invariants.cross_customer_rows(ci.frame, ci.inputs)
    total = ci.rows
    return crossed == 0, {
        "cross_customer_rows": crossed,
        "rows": total,
        "share": MetadataValue.float(crossed / total if total else 0.0),
        "hint": "set ml_join=same_customer (STEDI_ML_JOIN) to pair readings of the same customer only",
    }


def check_files_within_landing_zone(ci: CheckInput) -> Outcome:
    """Every entry of the feed's folder is a regular file inside it; the others are named, never read."""
    if not ci.refused:
        return True, {"entries_refused": 0}
    names = sorted(ci.refused)
    by_reason: dict[str, int] = {}
    for reason in ci.refused.values():
        by_reason[reason] = by_reason.get(reason, 0) + 1
    return False, {
        "entries_refused": len(names),
        "entries": "; ".join(f"{uri.rsplit('/', 1)[-1]}: {ci.refused[uri]}" for uri in names[:_SAMPLE_SIZE]),
        "by_reason": "; ".join(f"{reason}: {count}" for reason, count in sorted(by_reason.items())),
        "what_to_do": "remove the entries, or replace each with the regular file it should be; each is recorded "
        "in the delivery ledger as 'refused'",
    }


# -- registry -------------------------------------------------------------------------

ROW_COUNT = Check(
    "row_count",
    "Row count matches the data-set profile; without one: non-empty and no more rows than the rule allows.",
    check_row_count,
)
SCHEMA = Check(
    "schema",
    "The declared columns, with their types, in order; after them only columns added from delivered records "
    "that the table may carry (its own feed's; in a curated table only those in STEDI_CURATED_EXTRA_COLUMNS).",
    check_schema,
    blocking=True,
)

NEW_COLUMNS = Check(
    "new_columns",
    "Columns this materialization added to the landing table from fields no column declared (WARN), by name "
    "and type.",
    check_new_columns,
    severity=WARN,
)

COLUMNS_AWAITING_DECISION = Check(
    "columns_awaiting_decision",
    "Columns added to this table's upstream tables from delivered records that it does not carry until each is "
    "declared or listed in STEDI_CURATED_EXTRA_COLUMNS (WARN): a new field may be personal data.",
    check_columns_awaiting_decision,
    severity=WARN,
)

QUARANTINED_RECORDS = Check(
    "quarantined_records",
    "Records that could not be kept: WARN if any; ERROR, holding the table back, above the allowed share "
    "(quarantine_max_share, STEDI_QUARANTINE_MAX_SHARE). The files read by a step that was held back are "
    "recorded in the delivery ledger as 'rejected', with the reason: remove or correct them and the next "
    "ordinary run (the sensor, stedi run, Materialize all) publishes the feed; no full refresh is needed.",
    check_quarantined_records,
    blocking=True,
)

FILES_WITHIN_LANDING_ZONE = Check(
    "files_within_landing_zone",
    "Every entry of the feed's landing folder is a regular file inside it: a symbolic link, a device or FIFO, "
    "or an S3 key that leaves its prefix is refused unread and recorded in the delivery ledger (WARN).",
    check_files_within_landing_zone,
    severity=WARN,
)

CONSENT_SCOPE = Check(
    "readings_within_consent_scope",
    "Privacy: with consent_scope=from_consent_date (STEDI_CONSENT_SCOPE), no reading taken before its owner's "
    "research consent date; passes trivially under any_time.",
    check_consent_scope,
    blocking=True,
    row_by_row=True,
)

# The tables whose history is judged, and the column that says whose a row is: the contract the history
# purge (lakehouse.history) is written against, as rules.with_identity is the rules' and the invariants'.
HISTORY_TABLES = tuple(HISTORY_KEYS)

CHECKS: dict[str, tuple[Check, ...]] = {
    "customer_landing": (ROW_COUNT, SCHEMA, QUARANTINED_RECORDS, FILES_WITHIN_LANDING_ZONE, NEW_COLUMNS),
    "accelerometer_landing": (ROW_COUNT, SCHEMA, QUARANTINED_RECORDS, FILES_WITHIN_LANDING_ZONE, NEW_COLUMNS),
    "step_trainer_landing": (ROW_COUNT, SCHEMA, QUARANTINED_RECORDS, FILES_WITHIN_LANDING_ZONE, NEW_COLUMNS),
    "customer_trusted": (
        ROW_COUNT,
        SCHEMA,
        Check(
            "consenting_customers_only",
            "Privacy: only customers whose current record has research consent and no unreadable record "
            "that may be newer.",
            check_consenting_customers,
            blocking=True,
            row_by_row=True,
        ),
        Check(
            "quarantined_records_attributed",
            "Privacy: every quarantined customer record's email can be recovered; otherwise no one can prove who "
            "withdrew, and the table is not published.",
            check_quarantined_records_attributed,
            blocking=True,
        ),
        Check(
            "unreadable_records_held_back",
            "Customers treated as not consenting because a quarantined record of theirs may be newer than their "
            "current one (masked samples).",
            check_held_back_customers,
            severity=WARN,
        ),
    ),
    "accelerometer_trusted": (
        ROW_COUNT,
        SCHEMA,
        Check(
            "consenting_readings_only",
            "Privacy: only readings whose user is a customer in customer_trusted.",
            check_consenting_readings,
            blocking=True,
            row_by_row=True,
        ),
        CONSENT_SCOPE,
    ),
    "customer_curated": (
        ROW_COUNT,
        SCHEMA,
        Check("unique_customers", "Privacy: no customer (email) appears twice.", check_unique_customers, blocking=True),
        Check(
            "consenting_customers_only",
            "Privacy: only customers of customer_trusted, all with research consent.",
            check_consenting_customers,
            blocking=True,
            row_by_row=True,
        ),
        COLUMNS_AWAITING_DECISION,
    ),
    "step_trainer_trusted": (
        ROW_COUNT,
        SCHEMA,
        Check(
            "curated_devices_only",
            "Privacy: only readings of devices that belong to customers in customer_curated and to no "
            "customer outside customer_trusted.",
            check_curated_devices,
            blocking=True,
            row_by_row=True,
        ),
        CONSENT_SCOPE,
    ),
    "machine_learning_curated": (
        ROW_COUNT,
        SCHEMA,
        Check(
            "no_personal_identifiers",
            "Privacy: no column identifies a person (name, email, phone, birthday, user).",
            check_no_personal_identifiers,
            blocking=True,
        ),
        Check(
            "traceable_to_consenting_customers",
            "Privacy: every row's device is a curated customer's and its reading a trusted one.",
            check_traceable,
            blocking=True,
            row_by_row=True,
        ),
        CONSENT_SCOPE,
        Check(
            "cross_customer_pairs",
            "Rows pairing one customer's step reading with another customer's accelerometer reading.",
            check_cross_customer_pairs,
            severity=WARN,
        ),
        COLUMNS_AWAITING_DECISION,
    ),
}


@dataclass(frozen=True)
class HistoryCheck:
    """A check judged on a table's kept snapshots after the step published it, not on the computed frame."""

    name: str
    description: str

    def spec(self, table: str) -> AssetCheckSpec:
        return AssetCheckSpec(self.name, asset=table, description=self.description)


WITHDRAWN_OUT_OF_HISTORY = HistoryCheck(
    "withdrawn_out_of_history",
    "Privacy over time: no earlier snapshot of this table, superseded longer ago than "
    "STEDI_WITHDRAWAL_RETENTION_HOURS, holds a customer whose latest record withdraws consent (or a device of "
    "theirs); the step expires such snapshots once the table is published, and judges its history afterwards.",
)

HISTORY_CHECKS: dict[str, tuple[HistoryCheck, ...]] = {table: (WITHDRAWN_OUT_OF_HISTORY,) for table in HISTORY_TABLES}


def check_specs(table: str) -> list[AssetCheckSpec]:
    """Every check of ``table``'s step: those on the computed frame, then those on its history."""
    return [check.spec(table) for check in (*CHECKS.get(table, ()), *HISTORY_CHECKS.get(table, ()))]


def check_withdrawn_out_of_history(
    table: str, snapshots: list[tuple[int, int | None, bool, Sequence[str]]], read_file: Callable[[str], nw.LazyFrame],
    customer_landing: nw.LazyFrame, retention_hours: int, now_ms: int,
) -> AssetCheckResult:
    """``snapshots``: (snapshot id, commit time of the next snapshot or None, whether it is current, its data
    files) for each snapshot kept; a snapshot superseded longer ago than the retention must hold no withdrawn
    customer. A snapshot's rows are its data files' (the tables have no delete files: ``data_file_paths``), so
    each file is judged once (``read_file``), however many snapshots hold it."""
    column, kind = HISTORY_KEYS[table]
    cutoff = now_ms - retention_hours * 3_600_000
    judged = [(i, files) for i, at, current, files in snapshots if not current and at is not None and at <= cutoff]
    in_file: dict[str, int] = {}
    found = {}
    for snapshot_id, files in judged:
        for path in files:
            if path not in in_file:
                in_file[path] = row_count(invariants.rows_of_withdrawn(read_file(path), column, kind, customer_landing))
        count = sum(in_file[path] for path in files)
        if count:
            found[str(snapshot_id)] = count
    metadata = {"snapshots_judged": len(judged), "retention_hours": retention_hours}
    if found:
        metadata["snapshots_holding_withdrawn"] = MetadataValue.json(found)
        metadata["problem"] = (
            f"{len(found)} earlier snapshot(s) of {table} still hold rows of customers who withdrew "
            f"({sum(found.values())} rows): time travel returns them"
        )
    return AssetCheckResult(
        asset_key=table, check_name=WITHDRAWN_OUT_OF_HISTORY.name, passed=not found, severity=ERROR, metadata=metadata
    )
