"""The zone rules on small hand-made tables, run through the Polars engine.

Covers each rule of rules.py and the cases that broke the reference system:
consent only to public or friends, consent absent vs null, a customer
delivered twice, readings without a customer, two customers sharing a
timestamp, and emails and serial numbers spelled differently (Unicode spaces,
invisible characters, full-width and decomposed letters, letter case). Storage,
checks and Dagster are not involved.
"""

from __future__ import annotations

import unicodedata

import narwhals as nw
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from stedi_assets.domain import rules
from stedi_assets.domain.schemas import TABLES

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
    from stedi_assets.lakehouse.engines.polars_landing import read_feed

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


@pytest.mark.parametrize("slices", [1, 2, 3, 4, 7])
def test_distinct_by_slice_keeps_each_distinct_row_once(slices: int):
    # Negative, null and large values of the slicing column, duplicates in
    # several slices, and rows equal but for a null: each distinct row once.
    frame = pl.LazyFrame(
        {
            "key": [-7, -7, -1, None, None, 0, 3, 3, 2**62, 5, 6, 9, 9],
            "text": ["a", "a", "b", "c", "c", None, "d", "d", "e", "f", None, "g", "h"],
        },
        schema={"key": pl.Int64, "text": pl.String},
    )

    slice_of = rules.slice_number("key", slices)
    result = collect(rules.distinct_by_slice([nw.from_native(frame).filter(slice_of == i) for i in range(slices)]))

    expected = frame.collect().unique()
    assert_frame_equal(result.sort("key", "text"), expected.sort("key", "text"))


def test_landing_records_made_distinct_a_slice_at_a_time():
    landing = readings(*[(f"u{i % 5}@example.com", T0 + i % 11) for i in range(200)])
    slice_of = rules.slice_number("timestamp", rules.LANDING_SLICES)

    result = collect(rules.landing_records(*[landing.filter(slice_of == i) for i in range(rules.LANDING_SLICES)], sliced=True))

    assert result.height == 55  # 5 users x 11 times: every pair occurs
    assert_frame_equal(result.sort("user", "timestamp"), collect(rules.distinct(landing)).sort("user", "timestamp"))


# -- identity: one person, one email ------------------------------------------------------


SPELLINGS = [
    # (as delivered, identity)
    (" \tAnn.Example@X.com \n", "ann.example@x.com"),  # ASCII whitespace and letter case
    ("\u00a0ann@x.com\u00a0", "ann@x.com"),  # no-break spaces
    ("\u200bann@x.com\u200b", "ann@x.com"),  # zero-width spaces
    ("\ufeff\u2003ann@x.com\u200d\u3000", "ann@x.com"),  # byte order mark, em space, zero-width joiner, ideographic space
    ("\u202aann@x.com\u202c", "ann@x.com"),  # direction embedding around
    ("ａｎｎ@ｘ.ｃｏｍ", "ann@x.com"),  # full-width letters (NFKC)
    ("ANN@X.COM", "ann@x.com"),
    ("Anna.Müller@Test.com", "anna.müller@test.com"),  # precomposed ü
    ("ANNA.MU\u0308LLER@TEST.COM", "anna.müller@test.com"),  # u and a combining diaeresis (NFKC composes them)
    ("José.García@Correo.ES", "josé.garcía@correo.es"),
    ("ΟΔΥΣΣΕΥΣ@ΠΑΡΑΔΕΙΓΜΑ.ΕΛ", "οδυσσευσ@παραδειγμα.ελ"),  # final sigma folded: "ς" and "σ" are one letter
    ("\u212aim@x.com", "kim@x.com"),  # the Kelvin sign is a K
    ("\ufb01on@x.com", "fion@x.com"),  # the "fi" ligature
    ("STRAẞE@x.de", "straße@x.de"),  # lower case, not case folding: ß stays ß (and straße is not strasse)
]


@pytest.mark.parametrize(("delivered", "identity"), SPELLINGS)
def test_identity_normalizes_trims_and_lower_cases(delivered, identity):
    frame = customers({"email": delivered, "serialNumber": "s"})
    assert collect(rules.with_identity(frame, "email"))["email"].to_list() == [identity]
    assert rules.identity_of(delivered) == identity
    # The identity is its own key: applied again it changes nothing.
    assert collect(rules.with_identity(rules.with_identity(frame, "email"), "email"))["email"].to_list() == [identity]
    assert rules.identity_of(identity) == identity


def test_identity_in_python_is_the_frames_for_every_assigned_code_point():
    # Between letters, with a final sigma, and inside a no-break and a zero-width space: normalization,
    # lower case and trimming all look at what stands around a character. Python's unicodedata knows
    # Unicode 14; characters assigned since may differ.
    assigned = [chr(c) for c in range(0x80, 0x110000) if unicodedata.category(chr(c)) not in ("Cn", "Cs")]
    delivered = [f"\u00a0A{c}ΑΣ@X\u200b" for c in assigned] + [f"{c}\u3000" for c in assigned]
    frame = nw.from_native(pl.LazyFrame({"email": delivered}))
    in_frame = collect(rules.with_identity(frame, "email"))["email"].to_list()
    assert [(d, f) for d, f in zip(delivered, in_frame) if rules.identity_of(d) != f] == []


def test_identity_keeps_null_and_leaves_inner_characters():
    frame = customers({"email": "ann\u00a0@x.com", "serialNumber": "s"}, {"email": None, "serialNumber": "s"})
    assert collect(rules.with_identity(frame, "email"))["email"].to_list() == ["ann @x.com", None]


@pytest.mark.parametrize(
    "newer_email",
    [
        "Ann@x.com",  # another letter case
        " ann@x.com ",  # spaces around
        "ANN@X.COM\t",  # both
        "ann@x.com\u00a0",  # a no-break space
        "\u200bann@x.com",  # a zero-width space
        "\u2060ANN@X.COM\ufeff",  # word joiner, byte order mark and another letter case
        "ａｎｎ@ｘ.ｃｏｍ",  # full-width
        "ＡＮＮ@Ｘ.ＣＯＭ",  # full-width capitals
    ],
)
def test_a_withdrawal_spelled_differently_is_the_same_customer(newer_email):
    frame = customers(
        {"email": "ann@x.com", "serialNumber": "s", "lastUpdateDate": T0, "shareWithResearchAsOfDate": T0},
        {"email": newer_email, "serialNumber": "s", "lastUpdateDate": T0 + 1},
    )
    assert emails(rules.customer_trusted(frame)) == []
    assert collect(rules.current_customer_records(frame))["email"].to_list() == ["ann@x.com"]


@pytest.mark.parametrize(
    ("consenting_email", "withdrawn_email"),
    [
        ("Anna.Müller@Test.com", "\u00a0ANNA.MÜLLER@TEST.COM"),  # another case of a non-ASCII letter
        ("Anna.Müller@Test.com", "anna.mu\u0308ller@test.com\u200b"),  # the ü decomposed
        ("josé.garcía@correo.es", "JOSÉ.GARCÍA@CORREO.ES"),
        ("ΟΔΥΣΣΕΥΣ@x.gr", "οδυσσευς@x.gr"),  # the final sigma as a capital and as a small letter
    ],
)
def test_a_withdrawal_in_another_unicode_form_withdraws_the_person(consenting_email, withdrawn_email):
    frame = customers(
        {"email": consenting_email, "serialNumber": "s", "lastUpdateDate": T0, "shareWithResearchAsOfDate": T0},
        {"email": withdrawn_email, "serialNumber": "s", "lastUpdateDate": T0 + 1},
    )
    assert emails(rules.customer_trusted(frame)) == []
    # Readings in yet another spelling belong to nobody trusted.
    assert collect(rules.accelerometer_trusted(readings((withdrawn_email, T0), (consenting_email, T0)), rules.customer_trusted(frame))).height == 0


def test_an_unreadable_record_in_another_unicode_form_holds_the_person_back():
    landing = customers({"email": "Anna.Müller@Test.com", "serialNumber": "s", "shareWithResearchAsOfDate": T0})
    recovered = rules.recover_identity('{"email": "\\u00a0ANNA.MU\\u0308LLER@TEST.COM\\u200b", "lastUpdateDate": 1')
    assert recovered == ("anna.müller@test.com", None)
    assert emails(rules.customer_trusted(landing, quarantined(recovered))) == []


def test_trusted_tables_store_the_normalized_email_and_match_readings_by_identity():
    trusted = rules.customer_trusted(
        customers({"email": " Ann@X.com", "serialNumber": "s", "shareWithResearchAsOfDate": T0})
    )
    assert emails(trusted) == ["ann@x.com"]
    landing = readings(("ANN@X.COM", T0), ("ann@x.com ", T0 + 1), ("bob@x.com", T0))
    accelerometer = rules.accelerometer_trusted(landing, trusted)
    assert collect(accelerometer)["user"].to_list() == ["ann@x.com", "ann@x.com"]
    assert emails(rules.customer_curated(trusted, rules.with_identity(readings(("Ann@x.com", T0)), "user"))) == [
        "ann@x.com"
    ]
    assert collect(rules.device_owners(trusted)).rows() == [("s", "ann@x.com")]


# -- fail safe: records that could not be read ---------------------------------------------


@pytest.mark.parametrize(
    ("raw_text", "identity"),
    [
        # JSON that failed validation: blank consent, consent 0, a date as text
        ('{"email": "Ann@x.com", "lastUpdateDate": 1655564000001, "shareWithResearchAsOfDate": ""}', ("ann@x.com", 1655564000001)),
        ('{"email": "ann@x.com", "lastUpdateDate": 1655564000001, "shareWithResearchAsOfDate": 0}', ("ann@x.com", 1655564000001)),
        ('{"email": " ann@x.com", "lastUpdateDate": "1655564000001", "registrationDate": "2022-06-18"}', ("ann@x.com", 1655564000001)),
        # field names in another letter case, as the landing reader accepts them
        ('{"EMAIL": "ann@x.com", "LastUpdateDate": 1655564000001}', ("ann@x.com", 1655564000001)),
        # an unreadable lastUpdateDate: the record may be the newest
        ('{"email": "ann@x.com", "lastUpdateDate": "yesterday"}', ("ann@x.com", None)),
        ('{"email": "ann@x.com", "lastUpdateDate": 1.6e12}', ("ann@x.com", None)),
        ('{"email": "ann@x.com"}', ("ann@x.com", None)),
        # out of range (seconds, not milliseconds): it proves nothing about when the record was written
        ('{"email": "ann@x.com", "lastUpdateDate": 1655564000}', ("ann@x.com", None)),
        ('{"email": "ann@x.com", "lastUpdateDate": 1655564000, "phone": "80', ("ann@x.com", None)),
        # not JSON (cut short): found by the tolerant pattern
        ('{"Email" : "ann@x.com", "lastUpdateDate": 1655564000001, "phone": "80', ("ann@x.com", 1655564000001)),
        ('{"email": "ann@x.com", "lastUpdateDate": 16555', ("ann@x.com", None)),
        # no email to be found: nobody can tell whose record it is
        ('{"email": null, "lastUpdateDate": 1655564000001}', (None, 1655564000001)),
        ('{"email": "  ", "lastUpdateDate": 1655564000001}', (None, 1655564000001)),
        ('{"customerName": "Ann", "lastUpdateDate": 1', (None, None)),
        ('{"customerName": "Ann", "lastUpdateDate": 1655564000001, "ph', (None, 1655564000001)),
        ("[1, 2]", (None, None)),
        ("not json", (None, None)),
        ("", (None, None)),
    ],
)
def test_recover_identity(raw_text, identity):
    assert rules.recover_identity(raw_text) == identity


def quarantined(*records: tuple) -> nw.LazyFrame:
    """Quarantined customer records as (email, lastUpdateDate) or (email, lastUpdateDate, serialNumber)."""
    from stedi_assets.domain.schemas import QUARANTINED_CUSTOMERS

    rows = [("customer-2.json", line, *(record + (None,))[:3]) for line, record in enumerate(records, 1)]
    return nw.from_native(pl.LazyFrame(rows, schema=QUARANTINED_CUSTOMERS.polars_schema, orient="row"))


CONSENTING_ANN = {"email": "ann@x.com", "serialNumber": "s-a", "lastUpdateDate": T0, "shareWithResearchAsOfDate": T0}


@pytest.mark.parametrize(
    ("quarantined_record", "trusted"),
    [
        (("ann@x.com", T0 + 1), False),  # newer than the valid record: held back
        (("ann@x.com", T0), False),  # as new as the valid record: not provably older, held back
        (("ann@x.com", None), False),  # lastUpdateDate unreadable: may be newer, held back
        (("Ann@X.com", T0 + 1), False),  # the same person, spelled differently
        (("ann@x.com", T0 - 1), True),  # provably older: superseded by the valid record
        (("bob@x.com", T0 + 1), True),  # somebody else's record
        ((None, T0 + 1), True),  # nobody's: the quarantined_records_attributed check stops the table instead
    ],
)
def test_customer_with_an_unreadable_record_is_held_back(quarantined_record, trusted):
    result = rules.customer_trusted(customers(CONSENTING_ANN), quarantined(quarantined_record))
    assert emails(result) == (["ann@x.com"] if trusted else [])


def test_held_back_customers_include_those_without_a_valid_record():
    held = rules.held_back_customers(customers(CONSENTING_ANN), quarantined(("carl@x.com", T0), ("ann@x.com", T0 - 5)))
    assert emails(held) == ["carl@x.com"]


def test_an_older_unreadable_record_does_not_hide_a_newer_withdrawal():
    frame = customers(CONSENTING_ANN, {**CONSENTING_ANN, "lastUpdateDate": T0 + 2, "shareWithResearchAsOfDate": None})
    assert emails(rules.customer_trusted(frame, quarantined(("ann@x.com", T0 + 1)))) == []


# -- shared devices ---------------------------------------------------------------------------


def test_device_shared_with_a_non_consenting_customer_is_excluded():
    landing = customers(
        {"email": "ann@x.com", "serialNumber": "shared", "shareWithResearchAsOfDate": T0},
        {"email": "bob@x.com", "serialNumber": "shared"},  # no consent
        {"email": "cat@x.com", "serialNumber": "own", "shareWithResearchAsOfDate": T0},
    )
    trusted = rules.customer_trusted(landing)
    step_readings = steps(("shared", T0), ("shared", T0 + 1), ("own", T0))
    result = collect(rules.step_trainer_trusted(step_readings, trusted, landing, trusted))
    assert result["serialNumber"].to_list() == ["own"]
    assert collect(rules.non_consenting_devices(landing, trusted))["serialNumber"].to_list() == ["shared"]


def test_device_shared_by_two_consenting_customers_stays():
    landing = customers(
        {"email": "ann@x.com", "serialNumber": "shared", "shareWithResearchAsOfDate": T0},
        {"email": "bob@x.com", "serialNumber": "shared", "shareWithResearchAsOfDate": T0},
    )
    trusted = rules.customer_trusted(landing)
    result = collect(rules.step_trainer_trusted(steps(("shared", T0), ("shared", T0 + 1)), trusted, landing, trusted))
    assert result.height == 2  # each reading once, not once per owner


@pytest.mark.parametrize(
    ("on_the_record", "in_the_readings"),
    [
        ("shared", "SHARED"),  # upper case in the readings
        ("SHARED", "shared"),  # upper case on the customer record
        (" shared", "shared"),  # a leading space on the record
        ("shared", "\u00a0Shared\u200b"),  # a no-break space, another case, a zero-width space
        ("5D2A-FF", "5d2a-ff "),
    ],
)
def test_a_serial_number_spelled_differently_is_the_same_device(on_the_record, in_the_readings):
    landing = customers(
        {"email": "ann@x.com", "serialNumber": "own", "shareWithResearchAsOfDate": T0},
        {"email": "bob@x.com", "serialNumber": on_the_record.lower().strip(), "shareWithResearchAsOfDate": T0},
        {"email": "cat@x.com", "serialNumber": on_the_record},  # no consent: the device is not attributable
    )
    trusted = rules.customer_trusted(landing)
    step_readings = steps((in_the_readings, T0), ("OWN", T0 + 1))
    result = collect(rules.step_trainer_trusted(step_readings, trusted, landing, trusted))
    # The non-consenting owner's device is excluded however it is spelled; the stored serial number is the device.
    assert result["serialNumber"].to_list() == ["own"]
    assert collect(rules.non_consenting_devices(landing, trusted))["serialNumber"].to_list() == [
        on_the_record.strip().lower()
    ]


@pytest.mark.parametrize("spelling", ["S-A", " s-a", "s-a\t", "\u00a0S-A\u200b"])
def test_a_consenting_owner_s_device_spelled_differently_is_theirs(spelling):
    landing = customers({"email": "ann@x.com", "serialNumber": "s-a", "shareWithResearchAsOfDate": T0})
    trusted = rules.customer_trusted(landing)
    result = collect(rules.step_trainer_trusted(steps((spelling, T0)), trusted, landing, trusted))
    assert result["serialNumber"].to_list() == ["s-a"]
    pairs = rules.machine_learning_curated(
        rules.step_trainer_trusted(steps((spelling, T0)), trusted, landing, trusted),
        rules.accelerometer_trusted(readings(("ann@x.com", T0)), trusted), trusted, same_customer=True,
    )
    assert collect(pairs).height == 1


def test_device_of_a_held_back_customer_is_excluded():
    landing = customers(
        {"email": "ann@x.com", "serialNumber": "shared", "shareWithResearchAsOfDate": T0},
        {"email": "bob@x.com", "serialNumber": "shared", "shareWithResearchAsOfDate": T0},
    )
    trusted = rules.customer_trusted(landing, quarantined(("bob@x.com", None)))
    assert emails(trusted) == ["ann@x.com"]
    assert collect(rules.step_trainer_trusted(steps(("shared", T0)), trusted, landing, trusted)).height == 0


# -- consent scope ---------------------------------------------------------------------------


def test_consent_scope_from_consent_date_keeps_readings_from_the_consent_on():
    landing = customers(
        {"email": "ann@x.com", "serialNumber": "s-a", "shareWithResearchAsOfDate": T0 + 10},
        {"email": "bob@x.com", "serialNumber": "s-b", "shareWithResearchAsOfDate": T0 + 50},  # every reading before
    )
    trusted = rules.customer_trusted(landing)
    landing_readings = readings(("ann@x.com", T0 + 9), ("Ann@x.com", T0 + 10), ("ann@x.com", T0 + 11), ("bob@x.com", T0 + 20))
    any_time = rules.accelerometer_trusted(landing_readings, trusted)
    assert collect(any_time).height == 4
    scoped = rules.accelerometer_trusted(landing_readings, trusted, from_consent_date=True)
    assert sorted(collect(scoped)["timestamp"].to_list()) == [T0 + 10, T0 + 11]
    curated = rules.customer_curated(trusted, scoped)
    assert emails(curated) == ["ann@x.com"]  # bob's readings all predate his consent
    step_readings = steps(("s-a", T0 + 9), ("s-a", T0 + 10), ("s-b", T0 + 60))
    result = rules.step_trainer_trusted(step_readings, curated, landing, trusted, from_consent_date=True)
    assert collect(result)["sensorReadingTime"].to_list() == [T0 + 10]


def test_consent_scope_of_a_shared_device_is_its_latest_owner_consent():
    landing = customers(
        {"email": "ann@x.com", "serialNumber": "shared", "shareWithResearchAsOfDate": T0},
        {"email": "bob@x.com", "serialNumber": "shared", "shareWithResearchAsOfDate": T0 + 10},
    )
    trusted = rules.customer_trusted(landing)
    step_readings = steps(("shared", T0 + 5), ("shared", T0 + 10))
    result = rules.step_trainer_trusted(step_readings, trusted, landing, trusted, from_consent_date=True)
    assert collect(result)["sensorReadingTime"].to_list() == [T0 + 10]


def test_expected_rows_by_consent_scope():
    from stedi_assets.domain.profiles import expected_rows

    assert expected_rows("stedi-reference", "accelerometer_trusted", False) == 40_981
    assert expected_rows("stedi-reference", "accelerometer_trusted", False, "from_consent_date") == 32_025
    assert expected_rows("stedi-reference", "customer_trusted", False, "from_consent_date") == 482
    assert expected_rows("stedi-reference", "machine_learning_curated", True, "from_consent_date") == 32_025
    assert expected_rows("stedi-reference", "machine_learning_curated", False, "from_consent_date") == 34_253
    # a profile without counts for the mode checks the bounds only
    assert expected_rows("simulated", "customer_curated", False, "from_consent_date") is None


def test_the_serial_number_of_a_quarantined_customer_record_is_recovered():
    cut_short = '{"customerName": "B", "email": "b@example.com", "serialNumber": "S-1", "lastUpdateDate": '
    assert rules.quarantined_customer_rows([("c.json", 1, cut_short)]) == [("c.json", 1, "b@example.com", None, "S-1")]
    unparsable = '{"email": "b@example.com", "SerialNumber": "S-2", "lastUpdateDate": "x"}'
    assert rules.quarantined_customer_rows([("c.json", 2, unparsable)])[0][-1] == "S-2"
    assert rules.quarantined_customer_rows([("c.json", 3, '{"email": "b@example.com"')])[0][-1] is None


@pytest.mark.parametrize(
    ("held", "kept"),
    [
        # A customer whose only record is quarantined names the device a consenting customer owns: out.
        pytest.param([("b@example.com", T0, " S-A")], 0, id="held back, no valid record"),
        # A record no one can be named for, naming the device: out.
        pytest.param([(None, None, "s-a")], 0, id="unattributable"),
        # The consenting owner's own quarantined record, provably older than their valid one: superseded.
        pytest.param([("a@example.com", T0 - 1, "s-a")], 1, id="superseded"),
        # A held-back customer whose record names another device: this one stays.
        pytest.param([("b@example.com", T0, "s-b")], 1, id="another device"),
    ],
)
def test_a_device_a_held_back_customer_names_is_excluded_whoever_shares_it(held, kept):
    landing = customers({"email": "a@example.com", "serialNumber": "s-a", "shareWithResearchAsOfDate": T0})
    result = rules.step_trainer_trusted(steps(("s-a", T0)), landing, landing, landing, quarantined_customers=quarantined(*held))
    assert collect(result).height == kept
    # The invariant the check judges finds the device independently when the rule keeps it.
    from stedi_assets.domain import invariants

    kept_anyway = rules.step_trainer_trusted(steps(("s-a", T0)), landing, landing, landing)
    references = {
        "customer_curated": landing, "customer_landing": landing, "customer_trusted": landing,
        "quarantined_customers": quarantined(*held),
    }
    shared = invariants.curated_devices(kept_anyway, references)["readings_of_devices_of_non_consenting_customers"]
    assert collect(shared.rows).height == 1 - kept
