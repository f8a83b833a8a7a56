"""The schema of every feed and table, declared once.

Parsing, the column-schema metadata, the schema checks, the README's table of
columns and the catalog DDL are all derived from these declarations.
Column names keep the feeds' spelling so that queries written for the
reference system (Athena over the same data) run unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import narwhals as nw
import polars as pl

# Logical types, named as Hive/Athena names them.
ColumnType = Literal["string", "bigint", "double"]

POLARS_TYPES: dict[str, type[pl.DataType]] = {
    "string": pl.String,
    "bigint": pl.Int64,
    "double": pl.Float64,
}
NARWHALS_TYPES: dict[str, type[nw.dtypes.DType]] = {
    "string": nw.String,
    "bigint": nw.Int64,
    "double": nw.Float64,
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


@dataclass(frozen=True)
class TableSchema:
    name: str
    zone: Literal["landing", "trusted", "curated"]
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


RESEARCH_CONSENT = "shareWithResearchAsOfDate"

CUSTOMER_COLUMNS = (
    Column("customerName", "string", "Full name of the customer.", pii=True),
    Column("email", "string", "Email address; identifies the customer.", required=True, pii=True),
    Column("phone", "string", "Phone number.", pii=True),
    Column("birthDay", "string", "Date of birth, yyyy-MM-dd.", pii=True),
    Column("serialNumber", "string", "Serial number of the customer's Step Trainer.", required=True),
    Column("registrationDate", "bigint", "Registration time, epoch milliseconds."),
    Column("lastUpdateDate", "bigint", "Time the record was last updated, epoch milliseconds.", required=True),
    Column(RESEARCH_CONSENT, "bigint", "Time research consent was given, epoch milliseconds; null without consent."),
    Column("shareWithPublicAsOfDate", "bigint", "Time public sharing was allowed, epoch milliseconds; null if not."),
    Column("shareWithFriendsAsOfDate", "bigint", "Time sharing with friends was allowed, epoch milliseconds; null if not."),
)
ACCELEROMETER_COLUMNS = (
    Column("user", "string", "Email of the customer whose phone took the reading.", required=True, pii=True),
    Column("timestamp", "bigint", "Reading time, epoch milliseconds.", required=True),
    Column("x", "double", "Acceleration along x."),
    Column("y", "double", "Acceleration along y."),
    Column("z", "double", "Acceleration along z."),
)
STEP_TRAINER_COLUMNS = (
    Column("sensorReadingTime", "bigint", "Reading time, epoch milliseconds.", required=True),
    Column("serialNumber", "string", "Serial number of the Step Trainer.", required=True),
    Column("distanceFromObject", "bigint", "Distance measured by the sensor."),
)
MACHINE_LEARNING_COLUMNS = STEP_TRAINER_COLUMNS + tuple(
    c for c in ACCELEROMETER_COLUMNS if c.name != "user"
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
            "customer_trusted", "trusted", "one row per customer (email) who consented to research",
            CUSTOMER_COLUMNS,
            "Each email's current record (latest lastUpdateDate) where shareWithResearchAsOfDate is set.",
            key=("email",),
        ),
        TableSchema(
            "accelerometer_trusted", "trusted", "one row per accelerometer reading of a consenting customer",
            ACCELEROMETER_COLUMNS,
            "Accelerometer readings whose user is a customer in customer_trusted.",
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
            "Step-trainer readings whose serialNumber belongs to a customer in customer_curated.",
        ),
        TableSchema(
            "machine_learning_curated", "curated",
            "one row per (step-trainer reading, accelerometer reading) taken at the same time",
            MACHINE_LEARNING_COLUMNS,
            "step_trainer_trusted joined with accelerometer_trusted on sensorReadingTime = timestamp; no PII.",
        ),
    )
}

FEED_SCHEMAS: dict[str, TableSchema] = {feed: TABLES[f"{feed}_landing"] for feed in FEEDS}
