"""The zone rules, each written once.

Every rule takes and returns narwhals LazyFrames, so the same definition runs
on the Polars engine (polars.LazyFrame underneath) and on the Spark engine
(pyspark DataFrame underneath). Rules only filter with semi joins or join on
keys made unique first, so a key repeated on the other side never multiplies
rows.
"""

from __future__ import annotations

import narwhals as nw

from stedi_assets.schemas import RESEARCH_CONSENT, TABLES

# Order in which the records of one email are ranked; the last one is current.
# A tie on lastUpdateDate goes to the record *without* research consent: when
# in doubt, the customer is treated as not consenting. The remaining columns
# make the choice deterministic whatever order the records arrived in.
_NO_CONSENT = "__no_research_consent"
_CURRENT_RECORD_ORDER = (
    "lastUpdateDate",
    _NO_CONSENT,
    "registrationDate",
    "serialNumber",
    "customerName",
    "phone",
    "birthDay",
    RESEARCH_CONSENT,
    "shareWithPublicAsOfDate",
    "shareWithFriendsAsOfDate",
)
_STRING_ORDER_COLUMNS = frozenset({"serialNumber", "customerName", "phone", "birthDay"})


def _columns_of(table: str) -> list[str]:
    return TABLES[table].column_names


def distinct(frame: nw.LazyFrame) -> nw.LazyFrame:
    """Each distinct row once.

    Written as a group-by on every column rather than ``unique()``: Spark runs
    it as a plain hash aggregate, where narwhals' ``unique()`` becomes a
    sorted window; Polars runs both alike.
    """
    return frame.group_by(*frame.collect_schema().names()).agg()


def landing_records(records: nw.LazyFrame) -> nw.LazyFrame:
    """Typed records of one feed, each distinct record once.

    A file delivered twice, or a record repeated in two files, must not change
    any count downstream.
    """
    return distinct(records)


def current_customer_records(customers: nw.LazyFrame) -> nw.LazyFrame:
    """One record per email: the most recently updated one."""
    ranked = customers.with_columns(
        nw.col(RESEARCH_CONSENT).is_null().cast(nw.Int8).alias(_NO_CONSENT)
    )
    order_keys = []
    for name in _CURRENT_RECORD_ORDER:
        # Engines sort nulls differently; an explicit stand-in keeps the
        # choice identical on every engine.
        key = f"__order_{name}"
        stand_in = "" if name in _STRING_ORDER_COLUMNS else -1
        ranked = ranked.with_columns(nw.col(name).fill_null(stand_in).alias(key))
        order_keys.append(key)
    current = ranked.unique(subset=["email"], keep="last", order_by=order_keys)
    return current.select(_columns_of("customer_landing"))


def rows_with_key_in(frame: nw.LazyFrame, key: str, reference: nw.LazyFrame, reference_key: str) -> nw.LazyFrame:
    """Rows of ``frame`` whose ``key`` occurs as ``reference_key`` in ``reference``; a semi join, never multiplying rows."""
    return frame.join(reference.select(nw.col(reference_key).alias(key)), on=key, how="semi")


def rows_with_key_not_in(frame: nw.LazyFrame, key: str, reference: nw.LazyFrame, reference_key: str) -> nw.LazyFrame:
    """Rows of ``frame`` whose ``key`` does not occur as ``reference_key`` in ``reference``."""
    return frame.join(reference.select(nw.col(reference_key).alias(key)), on=key, how="anti")


def customer_trusted(customer_landing: nw.LazyFrame) -> nw.LazyFrame:
    """Customers whose current record carries research consent."""
    return current_customer_records(customer_landing).filter(
        ~nw.col(RESEARCH_CONSENT).is_null()
    )


def accelerometer_trusted(
    accelerometer_landing: nw.LazyFrame, customer_trusted: nw.LazyFrame
) -> nw.LazyFrame:
    """Accelerometer readings of consenting customers (user = email)."""
    readings = rows_with_key_in(accelerometer_landing, "user", customer_trusted, "email")
    return readings.select(_columns_of("accelerometer_trusted"))


def customer_curated(
    customer_trusted: nw.LazyFrame, accelerometer_trusted: nw.LazyFrame
) -> nw.LazyFrame:
    """Consenting customers that have accelerometer readings, each once."""
    customers = rows_with_key_in(customer_trusted, "email", accelerometer_trusted, "user")
    return customers.select(_columns_of("customer_curated"))


def step_trainer_trusted(
    step_trainer_landing: nw.LazyFrame, customer_curated: nw.LazyFrame
) -> nw.LazyFrame:
    """Step-trainer readings of devices that belong to curated customers."""
    readings = rows_with_key_in(step_trainer_landing, "serialNumber", customer_curated, "serialNumber")
    return readings.select(_columns_of("step_trainer_trusted"))


def device_owners(customer_curated: nw.LazyFrame) -> nw.LazyFrame:
    """Distinct (serialNumber, user) pairs: which customer owns which device."""
    return distinct(customer_curated.select("serialNumber", nw.col("email").alias("user")))


def simultaneous_readings(
    step_trainer_trusted: nw.LazyFrame, accelerometer_trusted: nw.LazyFrame
) -> nw.LazyFrame:
    """Step-trainer readings paired with accelerometer readings taken at the same time.

    Keeps the accelerometer's ``user`` so that checks can tell whether both
    readings come from the same customer; it is dropped before storage.
    """
    readings = accelerometer_trusted.with_columns(
        nw.col("timestamp").alias("sensorReadingTime")
    )
    return step_trainer_trusted.join(readings, on="sensorReadingTime", how="inner")


def cross_customer_pairs(pairs: nw.LazyFrame, owners: nw.LazyFrame) -> nw.LazyFrame:
    """Pairs whose accelerometer reading is not from the step trainer's owner."""
    return pairs.join(owners, on=["serialNumber", "user"], how="anti")


def machine_learning_curated(
    step_trainer_trusted: nw.LazyFrame,
    accelerometer_trusted: nw.LazyFrame,
    customer_curated: nw.LazyFrame,
    same_customer: bool = False,
) -> nw.LazyFrame:
    """Simultaneous step-trainer and accelerometer readings, without identifiers.

    By default readings are paired on time alone, as the reference system
    specified. With ``same_customer`` the accelerometer reading must also come
    from the customer who owns the step trainer.
    """
    pairs = simultaneous_readings(step_trainer_trusted, accelerometer_trusted)
    if same_customer:
        pairs = pairs.join(device_owners(customer_curated), on=["serialNumber", "user"], how="semi")
    return pairs.select(_columns_of("machine_learning_curated"))
