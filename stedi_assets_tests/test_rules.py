"""The zone rules on small hand-made tables, run through the Polars engine.

Covers each rule of rules.py and the cases that broke the reference system:
consent only to public or friends, consent absent vs null, a customer
delivered twice, readings without a customer, and two customers sharing a
timestamp. Storage, checks and Dagster are not involved.
"""

from __future__ import annotations

import narwhals as nw
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from stedi_assets import rules
from stedi_assets.schemas import TABLES

T0 = 1_655_564_000_000


def customers(*records: dict) -> nw.LazyFrame:
    base = {
        "customerName": "Ann Example",
        "phone": "8015551212",
        "birthDay": "1990-01-01",
        "registrationDate": T0,
        "lastUpdateDate": T0,
        "shareWithResearchAsOfDate": None,
        "shareWithPublicAsOfDate": None,
        "shareWithFriendsAsOfDate": None,
    }
    rows = [{**base, **r} for r in records]
    return nw.from_native(pl.LazyFrame(rows, schema=TABLES["customer_landing"].polars_schema))


def readings(*records: tuple[str, int]) -> nw.LazyFrame:
    rows = [{"user": u, "timestamp": t, "x": 1.0, "y": 0.0, "z": -1.0} for u, t in records]
    return nw.from_native(pl.LazyFrame(rows, schema=TABLES["accelerometer_landing"].polars_schema))


def steps(*records: tuple[str, int]) -> nw.LazyFrame:
    rows = [{"sensorReadingTime": t, "serialNumber": s, "distanceFromObject": 200} for s, t in records]
    return nw.from_native(pl.LazyFrame(rows, schema=TABLES["step_trainer_landing"].polars_schema))


def collect(frame: nw.LazyFrame) -> pl.DataFrame:
    return frame.to_native().collect()


def emails(frame: nw.LazyFrame) -> list[str]:
    return sorted(collect(frame)["email"].to_list())


@pytest.mark.parametrize(
    ("consent", "trusted"),
    [
        ({"shareWithResearchAsOfDate": T0}, True),  # research consent
        ({"shareWithPublicAsOfDate": T0}, False),  # public only is not research consent
        ({"shareWithFriendsAsOfDate": T0}, False),  # friends only neither
        ({"shareWithPublicAsOfDate": T0, "shareWithFriendsAsOfDate": T0}, False),  # both, still no research
        ({}, False),  # the field absent from the record: parsed as null
        ({"shareWithResearchAsOfDate": None}, False),  # the field present and null
    ],
)
def test_customer_trusted_requires_research_consent(consent, trusted):
    frame = customers({"email": "a@example.com", "serialNumber": "s-a", **consent})
    assert emails(rules.customer_trusted(frame)) == (["a@example.com"] if trusted else [])


def test_consent_absent_in_the_feed_file_is_null():
    # The feed omits share* keys for customers who did not consent; the parser
    # must turn an absent key into null, not drop the record.
    from stedi_assets.engines.polars_landing import read_feed

    data = b'{"email": "a@example.com", "serialNumber": "s", "lastUpdateDate": 1655564000000}\n'
    parsed = read_feed(TABLES["customer_landing"], [("customer-1.json", data)]).records
    assert parsed.height == 1
    assert parsed["shareWithResearchAsOfDate"].to_list() == [None]


@pytest.mark.parametrize(
    ("older", "newer", "trusted"),
    [
        # consent withdrawn in the newer record: not trusted
        ({"shareWithResearchAsOfDate": T0}, {"shareWithResearchAsOfDate": None}, False),
        # consent given in the newer record: trusted, once
        ({"shareWithResearchAsOfDate": None}, {"shareWithResearchAsOfDate": T0 + 5}, True),
        # both consent: one row, not two
        ({"shareWithResearchAsOfDate": T0}, {"shareWithResearchAsOfDate": T0}, True),
    ],
)
def test_customer_delivered_twice_resolves_to_the_latest_record(older, newer, trusted):
    frame = customers(
        {"email": "a@example.com", "serialNumber": "s-old", "lastUpdateDate": T0, **older},
        {"email": "a@example.com", "serialNumber": "s-new", "lastUpdateDate": T0 + 10, **newer},
    )
    result = collect(rules.customer_trusted(frame))
    assert result["email"].to_list() == (["a@example.com"] if trusted else [])
    if trusted:
        assert result["serialNumber"].to_list() == ["s-new"]


def test_tie_on_last_update_goes_to_the_record_without_consent():
    frame = customers(
        {"email": "a@example.com", "serialNumber": "s-1", "shareWithResearchAsOfDate": T0},
        {"email": "a@example.com", "serialNumber": "s-2", "shareWithResearchAsOfDate": None},
    )
    assert emails(rules.customer_trusted(frame)) == []


def test_current_record_does_not_depend_on_delivery_order():
    records = [
        {"email": "a@example.com", "serialNumber": "s-1", "phone": "1", "shareWithResearchAsOfDate": T0},
        {"email": "a@example.com", "serialNumber": "s-2", "phone": "2", "shareWithResearchAsOfDate": T0},
    ]
    forward = collect(rules.current_customer_records(customers(*records)))
    backward = collect(rules.current_customer_records(customers(*reversed(records))))
    assert_frame_equal(forward, backward)
    assert forward.height == 1


def test_customer_delivered_twice_does_not_double_readings():
    trusted = rules.customer_trusted(
        customers(
            {"email": "a@example.com", "serialNumber": "s-a", "shareWithResearchAsOfDate": T0},
            {"email": "a@example.com", "serialNumber": "s-a", "shareWithResearchAsOfDate": T0, "phone": "other"},
        )
    )
    accelerometer = rules.accelerometer_trusted(readings(("a@example.com", T0), ("a@example.com", T0 + 1)), trusted)
    assert collect(accelerometer).height == 2


def test_accelerometer_trusted_keeps_consenting_users_only():
    trusted = rules.customer_trusted(
        customers(
            {"email": "yes@example.com", "serialNumber": "s-y", "shareWithResearchAsOfDate": T0},
            {"email": "no@example.com", "serialNumber": "s-n"},
        )
    )
    landing = readings(("yes@example.com", T0), ("no@example.com", T0), ("nobody@example.com", T0))
    result = collect(rules.accelerometer_trusted(landing, trusted))
    # the reading of a user with no customer record at all is dropped too
    assert result["user"].to_list() == ["yes@example.com"]
    assert result.columns == TABLES["accelerometer_trusted"].column_names


def test_customer_curated_needs_readings_and_lists_each_customer_once():
    trusted = rules.customer_trusted(
        customers(
            {"email": "with@example.com", "serialNumber": "s-w", "shareWithResearchAsOfDate": T0},
            {"email": "without@example.com", "serialNumber": "s-o", "shareWithResearchAsOfDate": T0},
        )
    )
    accelerometer = readings(("with@example.com", T0), ("with@example.com", T0 + 1), ("with@example.com", T0 + 2))
    assert emails(rules.customer_curated(trusted, accelerometer)) == ["with@example.com"]


def test_step_trainer_trusted_keeps_curated_devices_only():
    curated = customers({"email": "a@example.com", "serialNumber": "s-a", "shareWithResearchAsOfDate": T0})
    landing = steps(("s-a", T0), ("s-a", T0 + 1), ("s-unknown", T0))
    result = collect(rules.step_trainer_trusted(landing, curated, curated, curated))
    assert result["serialNumber"].to_list() == ["s-a", "s-a"]


def _two_customers_sharing_a_timestamp():
    curated = customers(
        {"email": "a@example.com", "serialNumber": "s-a", "shareWithResearchAsOfDate": T0},
        {"email": "b@example.com", "serialNumber": "s-b", "shareWithResearchAsOfDate": T0},
    )
    step_readings = steps(("s-a", T0), ("s-b", T0 + 1))
    # a and b both have an accelerometer reading at T0; only a's step trainer read then.
    accelerometer = readings(("a@example.com", T0), ("b@example.com", T0), ("b@example.com", T0 + 1))
    return step_readings, accelerometer, curated


def test_machine_learning_curated_pairs_on_time_alone_by_default():
    step_readings, accelerometer, curated = _two_customers_sharing_a_timestamp()
    result = collect(rules.machine_learning_curated(step_readings, accelerometer, curated))
    assert result.columns == TABLES["machine_learning_curated"].column_names
    # s-a at T0 pairs with a's and b's readings (the reference rule's flaw); s-b at T0+1 with b's.
    assert sorted(zip(result["serialNumber"], result["timestamp"])) == [("s-a", T0), ("s-a", T0), ("s-b", T0 + 1)]
    assert not set(result.columns) & {"user", "email", "customerName", "phone", "birthDay"}


def test_machine_learning_curated_same_customer_drops_cross_customer_pairs():
    step_readings, accelerometer, curated = _two_customers_sharing_a_timestamp()
    result = collect(rules.machine_learning_curated(step_readings, accelerometer, curated, same_customer=True))
    assert sorted(zip(result["serialNumber"], result["timestamp"])) == [("s-a", T0), ("s-b", T0 + 1)]
    pairs = rules.simultaneous_readings(step_readings, accelerometer)
    crossed = collect(rules.cross_customer_pairs(pairs, rules.device_owners(curated)))
    assert crossed.select("serialNumber", "user").rows() == [("s-a", "b@example.com")]


def test_landing_records_drop_exact_duplicates_only():
    landing = readings(("a@example.com", T0), ("a@example.com", T0), ("a@example.com", T0 + 1))
    assert collect(rules.landing_records(landing)).height == 2
