"""The zone rules, each written once.

Every rule takes and returns narwhals LazyFrames, so the same definition runs
on the Polars engine (polars.LazyFrame underneath) and on the Spark engine
(pyspark DataFrame underneath). Rules only filter with semi joins or join on
keys made unique first, so a key repeated on the other side never multiplies
rows.

The privacy rules, in one place:

- Identity: a customer is their email in Unicode's compatibility form (NFKC),
  trimmed of every Unicode space and invisible character at both ends, and
  lower-cased (``with_identity``); a device is its serial number trimmed the
  same way and lower-cased (``device``). Every match uses those forms: the
  current record per customer, the accelerometer's ``user``, the device
  owners, every check. Landing tables keep emails and serial numbers as
  delivered; trusted and curated tables store the normalized forms.
- Fail safe: a customer with a quarantined record that is not provably older
  than their current valid record is held back, treated as not consenting
  (``held_back_customers``).
- Shared devices: a device's readings are research data only if every
  customer whose current record carries the device is in customer_trusted
  (``non_consenting_devices``).
- Consent scope: under ``from_consent_date`` a reading counts only if taken at
  or after its owner's ``shareWithResearchAsOfDate``; the default
  ``any_time`` is the reference rule (consent covers every reading).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import narwhals as nw

from stedi_assets.domain.schemas import DELIVERED_FROM, EPOCH_MS_MAX, EPOCH_MS_MIN, RESEARCH_CONSENT, TABLES

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


def added_columns(frame: nw.LazyFrame, table: str) -> list[str]:
    """The columns of ``frame``, a frame of ``table``, that ``table`` does not declare: columns added to a
    landing table from delivered records (``evolution``), carried by the tables computed from it."""
    declared = set(TABLES[table].column_names) | {DELIVERED_FROM}
    return [name for name in frame.collect_schema().names() if name not in declared]


_NEW = "__new"


def distinct(frame: nw.LazyFrame) -> nw.LazyFrame:
    """Each distinct row once (two nulls are equal).

    On Spark written as a group-by on every column: Spark runs it as a plain
    hash aggregate, where narwhals' ``unique()`` becomes a sorted window. On
    Polars ``unique()`` is a hash unique, about twice as fast as the group-by.
    """
    if frame.implementation.is_polars():
        return frame.unique()
    return frame.group_by(*frame.collect_schema().names()).agg()


def slice_number(column: str, slices: int) -> nw.Expr:
    """Which of ``slices`` slices a row falls in: its integer ``column`` modulo ``slices`` (Polars' modulo
    is never negative), a null in the last slice. Equal rows fall in the same slice."""
    return (nw.col(column) % slices).fill_null(slices - 1)


def distinct_by_slice(parts: Sequence[nw.LazyFrame]) -> nw.LazyFrame:
    """``distinct`` of the rows of ``parts``, frames that no two equal rows are split between (slices).

    Polars' distinct on every column holds an encoding of every row beside
    its result, about four times the table's own size (1.8 GB for the 8
    million readings at 100x); a slice at a time holds a slice's share of that.
    """
    return nw.concat([distinct(part) for part in parts], how="vertical")


LANDING_SLICES = 8
"""Slices the landing records are stored and made distinct in by an engine that slices them
(``Engine.slices_landing``)."""


def slice_column(schema: Mapping[str, Any]) -> str:
    """The column landing records are sliced by: their first 64-bit integer column (every feed has one)."""
    return next(name for name, dtype in schema.items() if dtype == nw.Int64)


def landing_records(*parts: nw.LazyFrame, sliced: bool = False) -> nw.LazyFrame:
    """Typed records of one feed (in one or more frames), each distinct record once, whichever file delivered it.

    A file delivered twice, or a record repeated in two files, must not change
    any count downstream. ``sliced``: the parts are the slices of the records
    (``slice_number``), made distinct one at a time.
    """
    names = [n for n in parts[0].collect_schema().names() if n != DELIVERED_FROM]
    records = [part.select(names) for part in parts]
    if sliced:
        return distinct_by_slice(records)
    return distinct(nw.concat(records) if len(records) > 1 else records[0])


def records_not_in(new: nw.LazyFrame, existing: nw.LazyFrame, on: list[str]) -> nw.LazyFrame:
    """The distinct rows of ``new`` (declared columns) that are not rows of ``existing``.

    Equality is ``distinct``'s (a group-by on every column: two nulls are
    equal), so ``distinct(existing + result) == distinct(existing + new)``.
    Only rows of ``existing`` that share the values of ``on`` (columns that
    are never null) with a new row are compared, so a large table is scanned
    for its keys alone.
    """
    names = [n for n in new.collect_schema().names() if n != DELIVERED_FROM]
    fresh = new.select(names)
    candidates = existing.select(names).join(fresh.select(on).unique(), on=on, how="semi")
    marked = nw.concat([
        candidates.with_columns(nw.lit(0, dtype=nw.Int8()).alias(_NEW)),
        fresh.with_columns(nw.lit(1, dtype=nw.Int8()).alias(_NEW)),
    ])
    return marked.group_by(*names).agg(nw.col(_NEW).min()).filter(nw.col(_NEW) == 1).select(names)


# -- identity: who a person is, which device is which --------------------------------

# Trimmed from both ends of an email or a serial number: Unicode's White_Space
# and Default_Ignorable_Code_Point characters (no-break and other spaces,
# zero-width spaces and joiners, direction marks, the byte order mark, the soft
# hyphen, variation selectors, Hangul fillers, tags), as code point ranges.
_INVISIBLE = (
    (0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0xAD, 0xAD), (0x34F, 0x34F), (0x61C, 0x61C),
    (0x115F, 0x1160), (0x1680, 0x1680), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x2000, 0x200F),
    (0x2028, 0x202F), (0x205F, 0x206F), (0x3000, 0x3000), (0x3164, 0x3164), (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


def _at_both_ends(escape: str, start: str, end: str) -> str:
    members = "".join(escape % first if first == last else f"{escape % first}-{escape % last}" for first, last in _INVISIBLE)
    return rf"{start}[{members}]+|[{members}]+{end}"


# The same pattern for both engines' regex dialects: Rust's (Polars) and
# Java's (Spark) both read \x{...}, \A and \z; Python's ``re`` has its own escapes.
_INVISIBLE_AT_ENDS = _at_both_ends(r"\x{%X}", r"\A", r"\z")
_INVISIBLE_AT_ENDS_PYTHON = re.compile(_at_both_ends(r"\U%08X", r"\A", r"\Z"))
_NON_ASCII = r"[^\x00-\x7F]"


def _trimmed(text: nw.Expr) -> nw.Expr:
    return text.str.replace_all(_INVISIBLE_AT_ENDS, "")


def _case_folded(text: nw.Expr) -> nw.Expr:
    # Lower case, with the final sigma folded to sigma as case folding does:
    # lower-casing writes a word-final capital sigma as "ς", and the engines
    # disagree on where a word ends.
    return text.str.to_lowercase().str.replace_all("ς", "σ", literal=True)


def _case_folded_text(text: str) -> str:
    return text.lower().replace("ς", "σ")


def _compatibility_normalized(frame: nw.LazyFrame, columns: Sequence[str]) -> nw.LazyFrame:
    """``frame`` with the text of ``columns`` in Unicode normalization form NFKC.

    narwhals has no Unicode normalization, so this one step is written for
    each engine's frames: Polars' own ``str.normalize``; on Spark, which has no
    such function, ICU4J's (the library Spark ships for its collations)
    through the ``reflect`` SQL function, evaluated in the JVM. ASCII text is
    already in NFKC, so only values with other characters are normalized.
    Both follow Unicode's tables and give the same result for every code
    point (tested in the engine tests).
    """
    if not columns:
        return frame
    native = frame.to_native()
    implementation = frame.implementation
    if implementation.is_polars():
        import polars as pl

        return nw.from_native(native.with_columns(
            pl.when(pl.col(c).str.contains(_NON_ASCII)).then(pl.col(c).str.normalize("NFKC")).otherwise(pl.col(c)).alias(c)
            for c in columns
        ))
    if implementation.is_pyspark() or implementation.is_pyspark_connect():
        from pyspark.sql import functions as F

        def nfkc(column: str) -> object:
            # Normalizer.compose(text, true) is NFKC (compose(text, false) would be NFC).
            composed = F.reflect(F.lit("com.ibm.icu.text.Normalizer"), F.lit("compose"), F.col(column), F.lit(True))
            return F.when(F.col(column).rlike(_NON_ASCII), composed).otherwise(F.col(column))

        return nw.from_native(native.withColumns({c: nfkc(c) for c in columns}))
    raise NotImplementedError(f"no Unicode normalization for {implementation} frames")


def with_identity(frame: nw.LazyFrame, *columns: str) -> nw.LazyFrame:
    """``frame`` with the email in each of ``columns`` replaced by the key of its person.

    The key: the email in NFKC (full-width letters, ligatures, the Kelvin
    sign read as the letters they stand for), trimmed of every Unicode space
    and invisible character at both ends (``_INVISIBLE``), and lower-cased in
    Unicode. Lower case rather than full case folding, because Polars and
    Spark offer no case folding: ``ß`` and ``ss`` stay two spellings, as
    IDNA2008 keeps ``faß.de`` and ``fass.de`` two domains; only the final
    sigma is folded. Python, Polars and Spark agree on every character Unicode
    14 (Python 3.11's ``unicodedata``) assigns; the form is its own key:
    applied again it changes nothing.
    """
    normalized = _compatibility_normalized(frame, columns)
    return normalized.with_columns(_case_folded(_trimmed(nw.col(c))).alias(c) for c in columns)


def identity_of(email: str) -> str:
    """``with_identity`` of one email in Python, for emails recovered outside a frame."""
    return _case_folded_text(_INVISIBLE_AT_ENDS_PYTHON.sub("", unicodedata.normalize("NFKC", email)))


def device_of(serial: str) -> str:
    """``device`` of one serial number in Python."""
    return _case_folded_text(_INVISIBLE_AT_ENDS_PYTHON.sub("", serial))


def device(column: str) -> nw.Expr:
    """The serial number in ``column`` as the key of a device: trimmed as emails are, and lower-cased."""
    return _case_folded(_trimmed(nw.col(column))).alias(column)


def current_customer_records(customers: nw.LazyFrame) -> nw.LazyFrame:
    """One record per customer (email identity): the most recently updated one, email and serial number normalized."""
    ranked = with_identity(customers, "email").with_columns(
        device("serialNumber"),
        nw.col(RESEARCH_CONSENT).is_null().cast(nw.Int8).alias(_NO_CONSENT),
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
    return current.select(_columns_of("customer_landing") + added_columns(customers, "customer_landing"))


def rows_with_key_in(frame: nw.LazyFrame, key: str, reference: nw.LazyFrame, reference_key: str) -> nw.LazyFrame:
    """Rows of ``frame`` whose ``key`` occurs as ``reference_key`` in ``reference``; a semi join, never multiplying rows."""
    return frame.join(reference.select(nw.col(reference_key).alias(key)), on=key, how="semi")


def rows_with_key_not_in(frame: nw.LazyFrame, key: str, reference: nw.LazyFrame, reference_key: str) -> nw.LazyFrame:
    """Rows of ``frame`` whose ``key`` does not occur as ``reference_key`` in ``reference``."""
    return frame.join(reference.select(nw.col(reference_key).alias(key)), on=key, how="anti")


# -- fail safe: customer records that could not be read ------------------------------

_EMAIL_FIELD = re.compile(r'"email"\s*:\s*"((?:[^"\\]|\\.)*)"', re.IGNORECASE)
_SERIAL_FIELD = re.compile(r'"serialNumber"\s*:\s*"((?:[^"\\]|\\.)*)"', re.IGNORECASE)
_LAST_UPDATE_FIELD = re.compile(r'"lastUpdateDate"\s*:\s*"?\s*(-?\d+)\s*"?\s*[,}]', re.IGNORECASE)


def _field(record: dict, name: str) -> object:
    """A field of a parsed record, its name matched without case as the landing reader matches it."""
    if name in record:
        return record[name]
    return next((value for key, value in record.items() if key.lower() == name.lower()), None)


def _as_epoch_ms(value: object) -> int | None:
    """An integer (or integer text) within the valid epoch-millisecond range; None otherwise.

    A value out of range (seconds instead of milliseconds, say) says nothing
    about when the record was written, so it cannot prove the record older.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        value = int(value)
    if isinstance(value, int) and EPOCH_MS_MIN <= value <= EPOCH_MS_MAX:
        return value
    return None


def recover_identity(raw_text: str | None) -> tuple[str | None, int | None]:
    """(email identity, lastUpdateDate) of a quarantined customer record, each None if unreadable.

    The record is parsed as JSON if possible; otherwise (cut short, not JSON)
    an ``"email"`` key is looked for in any letter case, and a
    ``"lastUpdateDate"`` with an integer value. A lastUpdateDate that is not
    an integer (or integer text) of the valid epoch-millisecond range is
    unreadable: such a record may be the newest.
    """
    if not raw_text:
        return None, None
    record = _parsed(raw_text)
    email = _recovered_text(record, raw_text, "email", _EMAIL_FIELD)
    if isinstance(record, dict):
        last_update = _as_epoch_ms(_field(record, "lastUpdateDate"))
    else:
        update = _LAST_UPDATE_FIELD.search(raw_text)
        last_update = _as_epoch_ms(int(update.group(1))) if update else None
    email = identity_of(email) if isinstance(email, str) else None
    return email or None, last_update


def recover_serial(raw_text: str | None) -> str | None:
    """The serialNumber a quarantined customer record names (as text, any letter case of the key); None if unreadable."""
    if not raw_text:
        return None
    serial = _recovered_text(_parsed(raw_text), raw_text, "serialNumber", _SERIAL_FIELD)
    return serial if isinstance(serial, str) and serial.strip() else None


def _parsed(raw_text: str) -> object:
    try:
        return json.loads(raw_text)
    except ValueError:
        return None


def _recovered_text(record: object, raw_text: str, name: str, pattern: re.Pattern) -> object:
    """Field ``name`` of the parsed ``record``; or, for a record cut short or not JSON, the string value
    ``pattern`` finds for it in the raw text."""
    if isinstance(record, dict):
        return _field(record, name)
    found = pattern.search(raw_text)
    if not found:
        return None
    try:
        return json.loads(f'"{found.group(1)}"')
    except ValueError:
        return found.group(1)


def quarantined_customer_rows(quarantine: Iterable[tuple[str, int, str | None]]) -> list[tuple]:
    """Rows of the quarantined-customers frame from (source_file, line, raw_text) of the customer quarantine."""
    return [
        (source, line, *recover_identity(raw_text), recover_serial(raw_text)) for source, line, raw_text in quarantine
    ]


def held_back_customers(customer_landing: nw.LazyFrame, quarantined_customers: nw.LazyFrame) -> nw.LazyFrame:
    """Emails of customers treated as not consenting because a record of theirs could not be read.

    ``quarantined_customers`` has one row per quarantined customer record:
    the email identity and lastUpdateDate recovered from it (null if
    unreadable). A customer is held back when one of their quarantined records
    is not provably older than their current valid record: its lastUpdateDate
    is unreadable, or not before the current record's, or the customer has no
    valid record at all. A quarantined record with an earlier lastUpdateDate
    than the current valid one is superseded and does not matter.
    """
    current = current_customer_records(customer_landing).select(
        "email", nw.col("lastUpdateDate").alias("__current_update")
    )
    records = with_identity(quarantined_customers.filter(~nw.col("email").is_null()), "email").select("email", "lastUpdateDate")
    # current has one row per email, so the left join keeps one row per quarantined record.
    undecided = records.join(current, on="email", how="left").filter(
        nw.col("__current_update").is_null()
        | nw.col("lastUpdateDate").is_null()
        | (nw.col("lastUpdateDate") >= nw.col("__current_update"))
    )
    return distinct(undecided.select("email"))


def held_back_devices(customer_landing: nw.LazyFrame, quarantined_customers: nw.LazyFrame) -> nw.LazyFrame:
    """Devices (``device``) named in a quarantined customer record of a held-back customer, or of one that cannot
    be attributed: whose they are cannot be told from the valid records, so their readings stay out."""
    records = quarantined_customers.filter(~nw.col("serialNumber").is_null())
    unattributed = records.filter(nw.col("email").is_null())
    attributed = with_identity(records.filter(~nw.col("email").is_null()), "email")
    held = rows_with_key_in(attributed, "email", held_back_customers(customer_landing, quarantined_customers), "email")
    named = nw.concat([unattributed.select("serialNumber"), held.select("serialNumber")])
    return distinct(named.select(device("serialNumber")))


def customer_trusted(
    customer_landing: nw.LazyFrame, quarantined_customers: nw.LazyFrame | None = None
) -> nw.LazyFrame:
    """Customers whose current record carries research consent and who are not held back.

    The asset always passes ``quarantined_customers`` (see
    ``held_back_customers``); without it no record is taken to be unreadable.
    """
    consenting = current_customer_records(customer_landing).filter(~nw.col(RESEARCH_CONSENT).is_null())
    if quarantined_customers is None:
        return consenting
    held_back = held_back_customers(customer_landing, quarantined_customers)
    return rows_with_key_not_in(consenting, "email", held_back, "email")


# -- consent scope and devices ---------------------------------------------------------

_CONSENT_DATE = "__consent_date"


def latest_consent_by(customers: nw.LazyFrame, key: str, alias: str | None = None) -> nw.LazyFrame:
    """(key, consent date) with one row per ``key``: the latest research consent date among its customers.

    For a device shared by several consenting customers the latest date is the
    conservative one: before it, one of the owners had not yet consented.
    """
    return customers.group_by(key).agg(nw.col(RESEARCH_CONSENT).max().alias(_CONSENT_DATE)).rename(
        {key: alias or key}
    )


def _with_consent_date(
    readings: nw.LazyFrame, key: str, customers: nw.LazyFrame, customer_key: str
) -> nw.LazyFrame:
    # One consent row per key: the inner join never multiplies readings, and
    # drops those without a consenting owner.
    return readings.join(latest_consent_by(customers, customer_key, alias=key), on=key, how="inner")


def readings_before_consent(
    readings: nw.LazyFrame, time: str, key: str, customers: nw.LazyFrame, customer_key: str
) -> nw.LazyFrame:
    """Readings whose ``time`` is before the consent date of their owner (``key`` matched to ``customer_key``)."""
    joined = _with_consent_date(readings, key, customers, customer_key)
    return joined.filter(nw.col(time) < nw.col(_CONSENT_DATE)).drop(_CONSENT_DATE)


def _from_consent_date(
    readings: nw.LazyFrame, time: str, key: str, customers: nw.LazyFrame, customer_key: str
) -> nw.LazyFrame:
    """Readings taken at or after the consent date of their owner; readings without an owner are dropped."""
    joined = _with_consent_date(readings, key, customers, customer_key)
    return joined.filter(nw.col(time) >= nw.col(_CONSENT_DATE)).drop(_CONSENT_DATE)


def non_consenting_devices(customer_landing: nw.LazyFrame, customer_trusted: nw.LazyFrame) -> nw.LazyFrame:
    """serialNumbers (as devices) on the current record of a customer not in customer_trusted, each once.

    Such a customer did not consent (or is held back); readings of the device
    cannot be attributed to a consenting owner, even if one shares it.
    """
    current = current_customer_records(customer_landing)
    others = rows_with_key_not_in(current, "email", customer_trusted, "email")
    return distinct(others.select("serialNumber"))


# -- the trusted and curated tables -----------------------------------------------------


def accelerometer_trusted(
    accelerometer_landing: nw.LazyFrame, customer_trusted: nw.LazyFrame, from_consent_date: bool = False
) -> nw.LazyFrame:
    """Accelerometer readings of consenting customers (user identity = email), user normalized.

    With ``from_consent_date`` only readings whose ``timestamp`` is at or after
    the user's ``shareWithResearchAsOfDate``.
    """
    readings = with_identity(accelerometer_landing, "user")
    if from_consent_date:
        readings = _from_consent_date(readings, "timestamp", "user", customer_trusted, "email")
    else:
        readings = rows_with_key_in(readings, "user", customer_trusted, "email")
    # The feed's added columns come along: a trusted table follows its landing table.
    return readings.select(_columns_of("accelerometer_trusted") + added_columns(accelerometer_landing, "accelerometer_landing"))


def customer_curated(
    customer_trusted: nw.LazyFrame, accelerometer_trusted: nw.LazyFrame, extra_columns: Sequence[str] = ()
) -> nw.LazyFrame:
    """Consenting customers that have readings in accelerometer_trusted, each once.

    Under ``from_consent_date`` accelerometer_trusted holds only readings in
    scope, so a customer whose every reading predates their consent is left out.
    Of the columns added to customer_trusted from delivered records, only those
    of ``extra_columns`` (decided to be fit for it) are carried.
    """
    customers = rows_with_key_in(customer_trusted, "email", accelerometer_trusted, "user")
    allowed = [name for name in added_columns(customer_trusted, "customer_trusted") if name in extra_columns]
    return customers.select(_columns_of("customer_curated") + allowed)


def step_trainer_trusted(
    step_trainer_landing: nw.LazyFrame,
    customer_curated: nw.LazyFrame,
    customer_landing: nw.LazyFrame,
    customer_trusted: nw.LazyFrame,
    from_consent_date: bool = False,
    quarantined_customers: nw.LazyFrame | None = None,
) -> nw.LazyFrame:
    """Step-trainer readings of devices that belong to curated customers and to no non-consenting one.

    A device on the current record of a customer outside customer_trusted is
    excluded whoever else owns it, and so is a device named in a quarantined
    record of a held-back (or unattributable) customer (``held_back_devices``). With ``from_consent_date`` only readings
    whose ``sensorReadingTime`` is at or after the consent date of the device's
    curated owner (the latest, if several). serialNumber is matched and stored as a device (``device``).
    """
    readings = step_trainer_landing.with_columns(device("serialNumber"))
    customer_curated = customer_curated.with_columns(device("serialNumber"))
    readings = rows_with_key_in(readings, "serialNumber", customer_curated, "serialNumber")
    readings = rows_with_key_not_in(
        readings, "serialNumber", non_consenting_devices(customer_landing, customer_trusted), "serialNumber"
    )
    if quarantined_customers is not None:
        readings = rows_with_key_not_in(
            readings, "serialNumber", held_back_devices(customer_landing, quarantined_customers), "serialNumber"
        )
    if from_consent_date:
        readings = _from_consent_date(readings, "sensorReadingTime", "serialNumber", customer_curated, "serialNumber")
    return readings.select(_columns_of("step_trainer_trusted") + added_columns(step_trainer_landing, "step_trainer_landing"))


ADDITIVE_IN: dict[str, tuple[str, ...]] = {
    "accelerometer_trusted": ("accelerometer_landing",),
    "step_trainer_trusted": ("step_trainer_landing",),
    "customer_curated": ("accelerometer_trusted",),
    "machine_learning_curated": ("step_trainer_trusted", "accelerometer_trusted"),
}
"""Each derived table -> the inputs its rule gives rows for row by row, in order: with the other inputs
unchanged, rows added to one of these add to the table the rows the rule gives for the added rows alone
(a filter of an input's rows by the other inputs, a join of two inputs), and remove none. customer_curated
gains, of those, the customers it does not hold yet (``DISTINCT_ON``). Every other input (the customers,
the devices, the quarantine) changes which rows pass, so a change to it recomputes the table whole
(``lakehouse.incremental``)."""

DISTINCT_ON: dict[str, str] = {"customer_curated": "email"}
"""Derived tables that hold one row per key, whose rule over added input rows may name a key they hold."""


def device_owners(customer_curated: nw.LazyFrame) -> nw.LazyFrame:
    """Distinct (serialNumber, user) pairs: which customer (email identity) owns which device (``device``)."""
    owners = with_identity(customer_curated, "email").select(device("serialNumber"), nw.col("email").alias("user"))
    return distinct(owners)


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
    extra_columns: Sequence[str] = (),
) -> nw.LazyFrame:
    """Simultaneous step-trainer and accelerometer readings, without identifiers.

    By default readings are paired on time alone, as the reference system
    specified. With ``same_customer`` the accelerometer reading must also come
    from the customer who owns the step trainer. Of the columns added to the
    step-trainer and accelerometer tables from delivered records, only those of
    ``extra_columns`` are carried (a step-trainer column first when both feeds
    added one of the same name); never one of the customer feed.
    """
    steps = [n for n in added_columns(step_trainer_trusted, "step_trainer_trusted") if n in extra_columns]
    readings = [
        n for n in added_columns(accelerometer_trusted, "accelerometer_trusted") if n in extra_columns and n not in steps
    ]
    pairs = simultaneous_readings(
        step_trainer_trusted.select(_columns_of("step_trainer_trusted") + steps),
        accelerometer_trusted.select(_columns_of("accelerometer_trusted") + readings),
    )
    if same_customer:
        pairs = pairs.join(device_owners(customer_curated), on=["serialNumber", "user"], how="semi")
    return pairs.select(_columns_of("machine_learning_curated") + steps + readings)
