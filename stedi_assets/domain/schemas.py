"""The schema of every feed and table, declared once.

Parsing, the column-schema metadata, the schema checks, the table of
columns in docs/privacy.md and the catalog DDL are all derived from these declarations.
Column names keep the feeds' spelling so that queries written for the
reference system (Athena over the same data) run unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import narwhals as nw
import polars as pl

RAW_TEXT_LIMIT = 1_000
"""Characters of a quarantined record's raw text kept in its quarantine table."""

# Logical types, named as Hive/Athena names them.
# A declared column is string, bigint or double; a column added from the
# delivered records (``evolution``) may also be boolean.
ColumnType = Literal["string", "bigint", "double", "boolean"]

POLARS_TYPES: dict[str, type[pl.DataType]] = {
    "string": pl.String,
    "bigint": pl.Int64,
    "double": pl.Float64,
    "boolean": pl.Boolean,
}
NARWHALS_TYPES: dict[str, type[nw.dtypes.DType]] = {
    "string": nw.String,
    "bigint": nw.Int64,
    "double": nw.Float64,
    "boolean": nw.Boolean,
}


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    description: str
    required: bool = False
    """A record without a value here cannot be used and is not a valid row."""
    pii: bool = False
    """A direct identifier of a person: never allowed in machine_learning_curated."""
    minimum: float | None = None
    """Smallest valid value (inclusive); a landing record below it is quarantined."""
    maximum: float | None = None
    """Largest valid value (inclusive); a landing record above it is quarantined."""


@dataclass(frozen=True)
class TableSchema:
    name: str
    zone: Literal["landing", "trusted", "curated", "quarantine", "operations"]
    grain: str
    columns: tuple[Column, ...]
    rule: str
    key: tuple[str, ...] = field(default=())

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def polars_schema(self) -> pl.Schema:
        return pl.Schema({c.name: POLARS_TYPES[c.type] for c in self.columns})

    @property
    def narwhals_schema(self) -> nw.Schema:
        return nw.Schema({c.name: NARWHALS_TYPES[c.type] for c in self.columns})

    @property
    def pii_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.pii]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def with_columns(self, extra: tuple[Column, ...] | list[Column]) -> TableSchema:
        """This schema with ``extra`` columns after its own (those it already has, by name in any case, skipped)."""
        present = {c.name.lower() for c in self.columns}
        added = tuple(c for c in extra if c.name.lower() not in present)
        return dataclasses.replace(self, columns=self.columns + added) if added else self

    def extra_columns(self) -> tuple[Column, ...]:
        """The columns beyond the declaration of the table of this name (added from delivered records)."""
        declared = {c.name for c in TABLES[self.name].columns} if self.name in TABLES else set()
        return tuple(c for c in self.columns if c.name not in declared)


RESEARCH_CONSENT = "shareWithResearchAsOfDate"

# Valid epoch-millisecond times: from 2000-01-01 up to 2100-01-01 (UTC), both
# inclusive. A reading outside that window is a device clock or unit error
# (seconds instead of milliseconds), not a time the product existed.
EPOCH_MS_MIN = 946_684_800_000
EPOCH_MS_MAX = 4_102_444_800_000
EPOCH_MS = dict(minimum=EPOCH_MS_MIN, maximum=EPOCH_MS_MAX)

CUSTOMER_COLUMNS = (
    Column("customerName", "string", "Full name of the customer.", pii=True),
    Column("email", "string", "Email address; identifies the customer.", required=True, pii=True),
    Column("phone", "string", "Phone number.", pii=True),
    Column("birthDay", "string", "Date of birth, yyyy-MM-dd.", pii=True),
    Column("serialNumber", "string", "Serial number of the customer's Step Trainer.", required=True),
    Column("registrationDate", "bigint", "Registration time, epoch milliseconds.", **EPOCH_MS),
    Column(
        "lastUpdateDate", "bigint", "Time the record was last updated, epoch milliseconds.", required=True, **EPOCH_MS
    ),
    Column(
        RESEARCH_CONSENT, "bigint", "Time research consent was given, epoch milliseconds; null without consent.",
        **EPOCH_MS,
    ),
    Column(
        "shareWithPublicAsOfDate", "bigint", "Time public sharing was allowed, epoch milliseconds; null if not.",
        **EPOCH_MS,
    ),
    Column(
        "shareWithFriendsAsOfDate", "bigint", "Time sharing with friends was allowed, epoch milliseconds; null if not.",
        **EPOCH_MS,
    ),
)
ACCELEROMETER_COLUMNS = (
    Column("user", "string", "Email of the customer whose phone took the reading.", required=True, pii=True),
    Column("timestamp", "bigint", "Reading time, epoch milliseconds.", required=True, **EPOCH_MS),
    Column("x", "double", "Acceleration along x."),
    Column("y", "double", "Acceleration along y."),
    Column("z", "double", "Acceleration along z."),
)
STEP_TRAINER_COLUMNS = (
    Column("sensorReadingTime", "bigint", "Reading time, epoch milliseconds.", required=True, **EPOCH_MS),
    Column("serialNumber", "string", "Serial number of the Step Trainer.", required=True),
    Column("distanceFromObject", "bigint", "Distance measured by the sensor.", minimum=0),
)
MACHINE_LEARNING_COLUMNS = STEP_TRAINER_COLUMNS + tuple(
    c for c in ACCELEROMETER_COLUMNS if c.name != "user"
)

QUARANTINE_COLUMNS = (
    Column("source_file", "string", "URI of the landing file the record was read from."),
    Column(
        "line", "bigint",
        "1-based physical line of the record in the file; in a JSON-array file, the element's 1-based position; "
        "0 when the whole file could not be read.",
    ),
    Column("reason", "string", "Why the record was not kept, e.g. 'missing required field email'."),
    Column(
        "raw_text", "string", f"The record as delivered, cut to {RAW_TEXT_LIMIT} characters.", pii=True,
    ),
)

FEEDS = ("customer", "accelerometer", "step_trainer")

TABLES: dict[str, TableSchema] = {
    t.name: t
    for t in (
        TableSchema(
            "customer_landing", "landing", "one row per distinct customer record delivered",
            CUSTOMER_COLUMNS, "Every customer record delivered, typed.",
        ),
        TableSchema(
            "accelerometer_landing", "landing", "one row per distinct accelerometer reading delivered",
            ACCELEROMETER_COLUMNS, "Every accelerometer record delivered, typed.",
        ),
        TableSchema(
            "step_trainer_landing", "landing", "one row per distinct step-trainer reading delivered",
            STEP_TRAINER_COLUMNS, "Every step-trainer record delivered, typed.",
        ),
        TableSchema(
            "customer_trusted", "trusted", "one row per customer (email identity) who consented to research",
            CUSTOMER_COLUMNS,
            "Each customer's current record (latest lastUpdateDate) where shareWithResearchAsOfDate is set, unless "
            "a quarantined record of theirs may be newer; email as its identity (NFKC, trimmed, lower-cased), "
            "serialNumber as its device (trimmed, lower-cased).",
            key=("email",),
        ),
        TableSchema(
            "accelerometer_trusted", "trusted", "one row per accelerometer reading of a consenting customer",
            ACCELEROMETER_COLUMNS,
            "Accelerometer readings whose user is a customer in customer_trusted (within the consent scope); "
            "user as its identity (NFKC, trimmed, lower-cased).",
        ),
        TableSchema(
            "customer_curated", "curated", "one row per consenting customer with accelerometer readings",
            CUSTOMER_COLUMNS,
            "Customers in customer_trusted with readings in accelerometer_trusted.",
            key=("email",),
        ),
        TableSchema(
            "step_trainer_trusted", "trusted", "one row per step-trainer reading of a curated customer's device",
            STEP_TRAINER_COLUMNS,
            "Step-trainer readings whose serialNumber belongs to a customer in customer_curated and to no customer "
            "outside customer_trusted (within the consent scope); serialNumber trimmed and lower-cased.",
        ),
        TableSchema(
            "machine_learning_curated", "curated",
            "one row per (step-trainer reading, accelerometer reading) taken at the same time",
            MACHINE_LEARNING_COLUMNS,
            "step_trainer_trusted joined with accelerometer_trusted on sensorReadingTime = timestamp; no PII.",
        ),
    )
}

for _feed in FEEDS:
    TABLES[f"{_feed}_quarantine"] = TableSchema(
        f"{_feed}_quarantine", "quarantine", f"one row per {_feed} landing record that could not be kept",
        QUARANTINE_COLUMNS, f"Records of the {_feed} feed that are unparseable or break the {_feed}_landing schema.",
    )

QUARANTINED_CUSTOMERS = TableSchema(
    "quarantined_customers", "quarantine",
    "one row per customer_quarantine record: whose it is, as far as it can be read",
    (
        QUARANTINE_COLUMNS[0],
        QUARANTINE_COLUMNS[1],
        Column("email", "string", "Email identity recovered from the raw text; null if none can be.", pii=True),
        Column("lastUpdateDate", "bigint", "lastUpdateDate recovered from the raw text; null if unreadable."),
        Column("serialNumber", "string", "serialNumber recovered from the raw text; null if none can be."),
    ),
    "Derived in memory from customer_quarantine.raw_text for customer_trusted; not stored.",
)
"""Who the quarantined customer records belong to: an input of customer_trusted (see rules.held_back_customers)."""

FEED_SCHEMAS: dict[str, TableSchema] = {feed: TABLES[f"{feed}_landing"] for feed in FEEDS}
QUARANTINE_SCHEMAS: dict[str, TableSchema] = {feed: TABLES[f"{feed}_quarantine"] for feed in FEEDS}
ZONE_TABLES: tuple[str, ...] = tuple(name for name, table in TABLES.items() if table.zone != "quarantine")
"""The eight tables of the landing, trusted and curated zones."""


DELIVERY_LEDGER = TableSchema(
    "delivery_ledger", "operations", "one row per landing file version found by a landing step",
    (
        Column("feed", "string", "Feed the file was delivered to: customer, accelerometer or step_trainer."),
        Column("uri", "string", "URI of the landing file."),
        Column("size_bytes", "bigint", "Size of this version of the file, in bytes."),
        Column(
            "fingerprint", "string",
            "What tells this version from another: size and modification time (ns) in a local folder, the ETag on S3.",
        ),
        Column("records_read", "bigint", "Records read from this version (records read = kept + quarantined + duplicates)."),
        Column(
            "records_kept", "bigint",
            "Distinct valid records of this version; a record another file also delivered is one row of the landing table.",
        ),
        Column("records_quarantined", "bigint", "Records of this version in the feed's quarantine table."),
        Column("duplicates_dropped", "bigint", "Exact repeats of another record of the same version, dropped."),
        Column("ingested_at", "bigint", "When this version was ingested, epoch milliseconds.", **EPOCH_MS),
        Column("run_id", "string", "Dagster run that ingested this version."),
        Column(
            "status", "string",
            "'current' while the landing table holds this version; 'rejected' when it was read but the landing "
            "table was held back (see reason; it is read again until it is removed or corrected); 'refused' for an "
            "entry that is not a file that may be read (a symbolic link, a device, a key outside the prefix), never "
            "read; 'replaced' once a newer version of the file was ingested; 'removed' once the file was gone.",
        ),
        Column("retired_at", "bigint", "When this version was replaced or removed, epoch milliseconds; null while current."),
        Column(
            "records_uri", "string",
            "Folder of the Parquet files holding the kept records of this version (with source_file), from which "
            "the landing table is rebuilt when another file is replaced or removed.",
        ),
        Column("reason", "string", "Why a version is 'rejected' or 'refused'; null otherwise."),
        Column(
            "records_erased", "bigint",
            "Records of this version that belong to an erased person (see erasure_register), dropped as they were "
            "read and not counted in records_read; null in rows written before erasure existed.",
        ),
    ),
    "Written by each landing step after its tables are committed: what arrived, when, and what became of it.",
)
"""The delivery ledger: not an asset of its own, written by the three landing steps."""

ERASURE_REGISTER = TableSchema(
    "erasure_register", "operations", "one row per identity erased (a person's email, or a device of theirs)",
    (
        Column(
            "identity_sha256", "string",
            "SHA-256 of the register's salt and the normalized identity (the email as rules.identity_of gives it, "
            "or the serial number as rules.device_of gives it); never the identity itself.",
        ),
        Column("identity_kind", "string", "'email' for a person, 'device' for a Step Trainer of theirs."),
        Column("requested_at", "bigint", "When the erasure was requested, epoch milliseconds.", **EPOCH_MS),
        Column(
            "erased_at", "bigint",
            "When the erasure was completed, epoch milliseconds; null while it is under way or if it stopped "
            "(ingestion drops the identity all the same; run the erasure again to complete it).",
            **EPOCH_MS,
        ),
        Column("run_id", "string", "The run (Dagster run id, or the id `stedi erase` prints) that erased it."),
        Column("found", "bigint", "1 when the identity was found anywhere in the lakehouse by this erasure, else 0."),
        Column(
            "tables_touched", "string",
            "What the erasure changed, per table: rows removed, files rewritten, snapshots expired (the same for "
            "every identity of one request).",
        ),
        Column("rows_removed", "bigint", "Rows and landing lines the whole request removed."),
        Column("files_rewritten", "bigint", "Data, delivery-record and landing files the whole request rewrote or deleted."),
        Column("snapshots_expired", "bigint", "Snapshots the whole request expired."),
    ),
    "Appended to by each erasure; read by every landing step, which drops the records of the identities it holds.",
)
"""Who has been erased, as one-way hashes: what keeps an erased person out of later deliveries."""

PUBLISHED: dict[str, TableSchema] = {**TABLES, DELIVERY_LEDGER.name: DELIVERY_LEDGER, ERASURE_REGISTER.name: ERASURE_REGISTER}
"""Every table of the lakehouse a reader can query: the zone and quarantine tables and the delivery ledger."""


DELIVERED_FROM = "source_file"
"""The column naming the landing file a delivered record was read from."""


def delivered_records_schema(feed: str, landing: TableSchema | None = None) -> TableSchema:
    """The kept records of a feed as stored per delivery: the file they came from, then the landing table's
    columns (``landing``: the landing table's schema with its added columns; default: the declared one)."""
    landing = landing or FEED_SCHEMAS[feed]
    return TableSchema(
        f"{feed}_delivered", "landing", f"one row per valid record of each {feed} file version (repeats may be kept)",
        (Column(DELIVERED_FROM, "string", "URI of the landing file the record was read from."), *landing.columns),
        "The records each landing file delivered, kept to rebuild the landing table without reading the files again.",
    )
