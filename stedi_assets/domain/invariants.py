"""The privacy invariants, each written once, as functions over frames.

Each invariant takes the table it judges and the reference frames it needs
(``references``: upstream tables, the landing data) and returns what violates
it, by kind. The in-step checks (``checks.py``) pass the computed table and the
step's inputs; the audit checks (``operations/audit.py``) pass the published
tables. An invariant looks at the references it is given: a kind that needs a
reference the caller does not have is not judged.

Independent of the rules: an invariant derives what it needs from the judged
table and the landing data with its own short code, never with the rule
helpers of ``rules.py`` that built the table (``current_customer_records``,
``held_back_customers``, ``non_consenting_devices``, ...), so a mistake in a
rule is not repeated by the check that guards it. What the rules and the
invariants share is the contract both are written against, and nothing else:

- who a person is: ``rules.with_identity`` (an email in NFKC, trimmed of
  Unicode spaces and invisible characters, lower-cased), and which device is
  which: ``rules.device`` (a serial number trimmed and lower-cased);
- what a quarantined customer record says: the frame of quarantined customer
  records (``schemas.QUARANTINED_CUSTOMERS``: the email identity and
  lastUpdateDate recovered from each, null if unreadable), read from the raw
  text once by ``rules.recover_identity``.

The reference keys are the tables' names, and ``quarantined_customers`` for
the frame of quarantined customer records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import narwhals as nw

from stedi_assets.domain.rules import device, with_identity
from stedi_assets.domain.schemas import RESEARCH_CONSENT, TABLES


@dataclass(frozen=True)
class Violation:
    """Rows that break an invariant, and which of their columns shows whose they are."""

    rows: nw.LazyFrame
    column: str
    personal: bool
    """Whether ``column`` identifies a person (its values are masked wherever they are shown)."""


Invariant = Callable[[nw.LazyFrame, Mapping[str, nw.LazyFrame]], dict[str, Violation]]

_LATEST = "__latest_update"
_CONSENT_DATE = "__consent_date"


# -- what the landing data says, derived here ----------------------------------------


def _keyed(frame: nw.LazyFrame, key: str, keys: nw.LazyFrame, keys_column: str, *, present: bool) -> nw.LazyFrame:
    """Rows of ``frame`` whose ``key`` is (``present``) or is not among ``keys``; never multiplies rows."""
    return frame.join(keys.select(nw.col(keys_column).alias(key)), on=key, how="semi" if present else "anti")


def _latest_update(customer_landing: nw.LazyFrame) -> nw.LazyFrame:
    """(email, latest lastUpdateDate) per email identity of the valid customer records."""
    customers = with_identity(customer_landing.select("email", "lastUpdateDate"), "email")
    return customers.group_by("email").agg(nw.col("lastUpdateDate").max().alias(_LATEST))


def latest_records(customer_landing: nw.LazyFrame) -> nw.LazyFrame:
    """Each identity's valid records with its latest lastUpdateDate (more than one on a tie), email as identity,
    serialNumber as device."""
    records = with_identity(customer_landing, "email").with_columns(device("serialNumber"))
    # One row per email on the right: the join never multiplies records.
    joined = records.join(_latest_update(customer_landing), on="email", how="inner")
    return joined.filter(nw.col("lastUpdateDate") == nw.col(_LATEST)).drop(_LATEST)


def withdrawn(customer_landing: nw.LazyFrame) -> nw.LazyFrame:
    """Emails (identities) without research consent now: a latest record of theirs has none.

    On a tie of latest records, the one without consent counts (privacy first).
    """
    return latest_records(customer_landing).filter(nw.col(RESEARCH_CONSENT).is_null()).select("email")


def held_back(customer_landing: nw.LazyFrame, quarantined_customers: nw.LazyFrame) -> nw.LazyFrame:
    """Emails with a quarantined record not provably older than their latest valid one.

    Not provably older: its lastUpdateDate is unreadable, or not before the
    latest valid record's, or the customer has no valid record.
    """
    records = with_identity(quarantined_customers.filter(~nw.col("email").is_null()), "email").select("email", "lastUpdateDate")
    dated = records.join(_latest_update(customer_landing), on="email", how="left")
    undecided = dated.filter(
        nw.col(_LATEST).is_null() | nw.col("lastUpdateDate").is_null() | (nw.col("lastUpdateDate") >= nw.col(_LATEST))
    )
    return undecided.select("email").unique()


def not_consenting(references: Mapping[str, nw.LazyFrame]) -> nw.LazyFrame | None:
    """Emails who do not consent now (withdrawn, or held back when the quarantine is given); None without landing."""
    landing = references.get("customer_landing")
    if landing is None:
        return None
    found = [withdrawn(landing)]
    if "quarantined_customers" in references:
        found.append(held_back(landing, references["quarantined_customers"]))
    return nw.concat(found) if len(found) > 1 else found[0]


def devices_outside_consent(references: Mapping[str, nw.LazyFrame]) -> nw.LazyFrame | None:
    """serialNumbers on a latest record of a customer who does not consent now or is not in customer_trusted.

    A non-consenting customer counts with their latest records without consent
    (the record that wins a tie), anyone else outside with all their latest
    records. None without customer_landing.
    """
    landing = references.get("customer_landing")
    if landing is None:
        return None
    latest = latest_records(landing)
    outside = [latest.filter(nw.col(RESEARCH_CONSENT).is_null())]
    if "quarantined_customers" in references:
        quarantined = references["quarantined_customers"]
        held = held_back(landing, quarantined)
        outside.append(_keyed(latest, "email", held, "email", present=True))
        # The devices their quarantined records name (or records no one can be named for).
        named = quarantined.filter(~nw.col("serialNumber").is_null())
        outside.append(named.filter(nw.col("email").is_null()))
        outside.append(_keyed(with_identity(named.filter(~nw.col("email").is_null()), "email"), "email", held, "email", present=True))
    if "customer_trusted" in references:
        trusted = with_identity(references["customer_trusted"].select("email"), "email")
        outside.append(_keyed(latest, "email", trusted, "email", present=False))
    return nw.concat([frame.select(device("serialNumber")) for frame in outside])


# -- the invariants ---------------------------------------------------------------------


def consenting_customers(customers: nw.LazyFrame, references: Mapping[str, nw.LazyFrame]) -> dict[str, Violation]:
    """Every customer has research consent, also on their identity's latest landing record, is that record,
    is not held back, and (when given) is in customer_trusted."""
    customers = with_identity(customers, "email")
    found = {"rows_without_consent": Violation(customers.filter(nw.col(RESEARCH_CONSENT).is_null()), "email", True)}
    landing = references.get("customer_landing")
    if landing is not None:
        found["rows_whose_current_record_has_no_consent"] = Violation(
            _keyed(customers, "email", withdrawn(landing), "email", present=True), "email", True
        )
        # A row must be its identity's latest record: an older one may carry an older consent.
        dated = customers.join(_latest_update(landing), on="email", how="left")
        found["rows_not_of_the_current_record"] = Violation(
            dated.filter(nw.col(_LATEST).is_null() | (nw.col("lastUpdateDate") != nw.col(_LATEST))), "email", True
        )
        if "quarantined_customers" in references:
            found["rows_of_customers_with_unreadable_newer_records"] = Violation(
                _keyed(customers, "email", held_back(landing, references["quarantined_customers"]), "email", present=True),
                "email", True,
            )
            found["rows_whose_current_record_has_no_consent_or_is_held_back"] = Violation(
                _keyed(customers, "email", not_consenting(references), "email", present=True), "email", True
            )
    if "customer_trusted" in references:
        trusted = with_identity(references["customer_trusted"].select("email"), "email")
        found["rows_not_in_customer_trusted"] = Violation(
            _keyed(customers, "email", trusted, "email", present=False), "email", True
        )
    return found


def consenting_readings(readings: nw.LazyFrame, references: Mapping[str, nw.LazyFrame]) -> dict[str, Violation]:
    """Every reading's user is in customer_trusted and, when the landing data is given, consents now."""
    readings = with_identity(readings, "user")
    trusted = with_identity(references["customer_trusted"].select("email"), "email")
    found = {
        "readings_of_non_consenting_users": Violation(
            _keyed(readings, "user", trusted, "email", present=False), "user", True
        )
    }
    if "customer_landing" in references and "quarantined_customers" in references:
        found["readings_of_users_whose_current_record_has_no_consent_or_is_held_back"] = Violation(
            _keyed(readings, "user", not_consenting(references), "email", present=True), "user", True
        )
    return found


def _device_violations(frame: nw.LazyFrame, references: Mapping[str, nw.LazyFrame], uncurated: str, shared: str) -> dict:
    frame = frame.with_columns(device("serialNumber"))
    curated = references["customer_curated"].select(device("serialNumber"))
    found = {
        uncurated: Violation(
            _keyed(frame, "serialNumber", curated, "serialNumber", present=False),
            "serialNumber", False,
        )
    }
    devices = devices_outside_consent(references)
    if devices is not None:
        found[shared] = Violation(_keyed(frame, "serialNumber", devices, "serialNumber", present=True), "serialNumber", False)
    return found


def curated_devices(readings: nw.LazyFrame, references: Mapping[str, nw.LazyFrame]) -> dict[str, Violation]:
    """Every reading's device is on a curated customer's row, and on no latest landing record of a customer
    who does not consent now or is outside customer_trusted (a shared device)."""
    return _device_violations(
        readings, references, "readings_of_other_devices", "readings_of_devices_of_non_consenting_customers"
    )


def traceable(rows: nw.LazyFrame, references: Mapping[str, nw.LazyFrame]) -> dict[str, Violation]:
    """Every machine-learning row's device is a curated customer's (and, with the landing data, no
    non-consenting customer's), and its accelerometer time is a trusted reading's."""
    found = _device_violations(rows, references, "rows_of_uncurated_devices", "rows_of_devices_of_non_consenting_customers")
    found["rows_without_trusted_reading"] = Violation(
        _keyed(rows, "timestamp", references["accelerometer_trusted"], "timestamp", present=False), "timestamp", False
    )
    return found


_PERSONAL_IDENTIFIERS = frozenset(
    column.name.lower() for table in TABLES.values() for column in table.columns if column.pii
)


def identifier_columns(columns: Iterable[str]) -> list[str]:
    """The columns named like a personal identifier of any table (any letter case)."""
    return [column for column in columns if column.lower() in _PERSONAL_IDENTIFIERS]


def readings_before_consent(
    readings: nw.LazyFrame, time: str, key: str, owners: nw.LazyFrame, owner_key: str
) -> nw.LazyFrame:
    """Readings whose ``time`` is before their owners' latest research consent date (``key`` = ``owner_key``).

    Readings without an owner in ``owners`` are not judged here (the table's
    other privacy checks see them).
    """
    consent = owners.group_by(owner_key).agg(nw.col(RESEARCH_CONSENT).max().alias(_CONSENT_DATE))
    joined = readings.join(consent.rename({owner_key: key}), on=key, how="inner")
    return joined.filter(nw.col(time) < nw.col(_CONSENT_DATE)).drop(_CONSENT_DATE)


_COPIES, _BY_OWNERS = "__copies", "__readings_by_owners"
_ACCELEROMETER = ["timestamp", "x", "y", "z"]


def cross_customer_rows(rows: nw.LazyFrame, references: Mapping[str, nw.LazyFrame]) -> int:
    """How many rows of a machine-learning table pair a device with an accelerometer reading of someone
    who does not own it.

    From the table's own rows: an accelerometer reading is known by its
    (timestamp, x, y, z); the device's owners are the customer_curated
    identities whose row carries its serialNumber. Of the identical rows of
    one device and one such reading, as many can be the owners' as the owners
    have readings with those values in accelerometer_trusted; the others pair
    the device with someone else's reading.
    """
    curated = with_identity(references["customer_curated"], "email")
    owners = curated.select(device("serialNumber"), nw.col("email").alias("user")).unique()
    by_owners = (
        with_identity(references["accelerometer_trusted"].select(*_ACCELEROMETER, "user"), "user")
        .join(owners, on="user", how="inner")
        .group_by("serialNumber", *_ACCELEROMETER)
        .agg(nw.len().alias(_BY_OWNERS))
    )
    rows = rows.with_columns(device("serialNumber"))
    copies = rows.group_by(*rows.collect_schema().names()).agg(nw.len().alias(_COPIES))
    crossed = copies.join(by_owners, on=["serialNumber", *_ACCELEROMETER], how="left").with_columns(
        nw.col(_BY_OWNERS).fill_null(0)
    )
    total = crossed.filter(nw.col(_COPIES) > nw.col(_BY_OWNERS)).select(
        (nw.col(_COPIES) - nw.col(_BY_OWNERS)).sum()
    )
    return int(total.collect().item() or 0)


# -- history ---------------------------------------------------------------------------

_KEY = "__key"


def rows_of_withdrawn(rows: nw.LazyFrame, column: str, kind: str, customer_landing: nw.LazyFrame) -> nw.LazyFrame:
    """Rows of ``rows`` that belong to a customer whose latest record withdraws consent: by ``column``,
    their email (``kind`` ``people``) or a device named in any record of theirs (``devices``)."""
    gone = withdrawn(customer_landing)
    keyed = rows.with_columns(nw.col(column).alias(_KEY))
    if kind == "people":
        keyed = with_identity(keyed, _KEY)
        return keyed.join(gone.select(nw.col("email").alias(_KEY)), on=_KEY, how="semi").drop(_KEY)
    records = with_identity(customer_landing, "email")
    devices = records.join(gone, on="email", how="semi").select(device("serialNumber").alias(_KEY))
    return keyed.with_columns(device(_KEY)).join(devices, on=_KEY, how="semi").drop(_KEY)
