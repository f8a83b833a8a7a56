"""Every asset check on a good and a violating table, and what a failed blocking check does to a run.

The check functions are fed hand-made frames directly; each rule helper that
builds a privacy-relevant table is broken in turn to show its table's check
failing (the checks derive what they need apart from the rules); the last
tests run the graph with a deliberately broken rule to show that a failed
privacy check keeps the table unpublished and stops everything downstream.
Row counts on the real data are covered by test_acceptance.py.
"""

from __future__ import annotations

from pathlib import Path

import narwhals as nw
import pytest

from stedi_assets.domain import rules
from stedi_assets.orchestration.checks import CHECKS, JUDGED_ADDED, CheckInput
from stedi_assets.domain.schemas import FEEDS, TABLES
from stedi_assets.domain.simulate import simulate_landing, write_landing
from stedi_assets_tests.conftest import check_outcomes, materialize_all, published_rows
from stedi_assets_tests.test_rules import T0, customers, quarantined, readings, steps


def run_check(table: str, name: str, frame: nw.LazyFrame, **fields) -> tuple[bool, dict]:
    check = next(c for c in CHECKS[table] if c.name == name)
    result = check.run(CheckInput(table=table, frame=frame, **fields))
    return result.passed, {k: v.value for k, v in result.metadata.items()}


CONSENTING = customers(
    {"email": "yes@example.com", "serialNumber": "s-y", "shareWithResearchAsOfDate": T0},
)
LANDING = customers(
    {"email": "yes@example.com", "serialNumber": "s-y", "shareWithResearchAsOfDate": T0},
    {"email": "no@example.com", "serialNumber": "s-n"},
)


# -- row count -------------------------------------------------------------------------


def test_row_count_against_a_profile():
    assert run_check("customer_landing", "row_count", LANDING, expected_rows=2, records_read=2)[0]
    passed, metadata = run_check("customer_landing", "row_count", LANDING, expected_rows=3, records_read=2)
    assert not passed and "profile expects 3" in metadata["problem"]


def test_row_count_without_a_profile_fails_on_an_empty_table():
    passed, metadata = run_check("customer_landing", "row_count", LANDING.head(0), records_read=0)
    assert not passed and metadata["problem"] == "table is empty"


@pytest.mark.parametrize(
    ("table", "frame", "inputs"),
    [
        # more trusted customers than distinct emails delivered
        ("customer_trusted", customers({"email": "a@x.org"}, {"email": "a@x.org"}), {"customer_landing": customers({"email": "a@x.org"})}),
        # more trusted readings than landed
        ("accelerometer_trusted", readings(("a@x.org", T0), ("a@x.org", T0)), {"accelerometer_landing": readings(("a@x.org", T0))}),
        # more curated customers than trusted ones
        ("customer_curated", customers({"email": "a@x.org"}, {"email": "b@x.org"}), {"customer_trusted": customers({"email": "a@x.org"})}),
        # more trusted step readings than landed
        ("step_trainer_trusted", steps(("s", T0), ("s", T0)), {"step_trainer_landing": steps(("s", T0))}),
    ],
)
def test_row_count_without_a_profile_fails_when_the_rule_multiplied_rows(table, frame, inputs):
    passed, metadata = run_check(table, "row_count", frame, inputs=inputs)
    assert not passed and "exceed" in metadata["problem"]


def test_row_count_of_machine_learning_curated_is_bounded_by_the_time_join():
    step_readings = steps(("s-a", T0))
    accelerometer = readings(("a@x.org", T0), ("a@x.org", T0 + 1))
    inputs = {"step_trainer_trusted": step_readings, "accelerometer_trusted": accelerometer}
    joined = rules.machine_learning_curated(step_readings, accelerometer, CONSENTING)
    assert run_check("machine_learning_curated", "row_count", joined, inputs=inputs)[0]
    doubled = nw.concat([joined, joined])
    passed, metadata = run_check("machine_learning_curated", "row_count", doubled, inputs=inputs)
    assert not passed and metadata["upper_bound"] == 1


# -- schema --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.drop("phone"),  # a column missing
        lambda f: f.with_columns(nw.lit(1).alias("extra")),  # a column not declared
        lambda f: f.with_columns(nw.col("lastUpdateDate").cast(nw.String)),  # a wrong type
        lambda f: f.select(list(reversed(f.collect_schema().names()))),  # declared columns in another order
    ],
)
def test_schema_fails_on_any_difference(change):
    assert run_check("customer_trusted", "schema", CONSENTING)[0]
    assert not run_check("customer_trusted", "schema", change(CONSENTING))[0]


def _with_gyro(frame: nw.LazyFrame) -> nw.LazyFrame:
    return frame.with_columns(nw.lit(1, dtype=nw.Int64).alias("gyroX"))


def test_schema_takes_added_columns_only_from_the_tables_own_feed():
    # A landing table may carry a column added from delivered records, not one whose name may not be a column.
    assert run_check("customer_landing", "schema", _with_gyro(LANDING))[0]
    passed, metadata = run_check("customer_landing", "schema", LANDING.with_columns(nw.lit(1).alias("__source")))
    assert not passed and metadata["unexpected"] == "__source"
    # A trusted table carries its landing table's added columns, and no other.
    landing = {"customer_landing": _with_gyro(LANDING)}
    assert run_check("customer_trusted", "schema", _with_gyro(CONSENTING), inputs=landing)[0]
    assert not run_check("customer_trusted", "schema", _with_gyro(CONSENTING), inputs={"customer_landing": LANDING})[0]
    # A curated table carries them only once allowed.
    trusted = {"customer_trusted": _with_gyro(CONSENTING)}
    assert not run_check("customer_curated", "schema", _with_gyro(CONSENTING), inputs=trusted)[0]
    assert run_check("customer_curated", "schema", _with_gyro(CONSENTING), inputs=trusted, curated_extra_columns=("gyroX",))[0]


def test_new_columns_warns_when_a_landing_table_gained_columns():
    assert run_check("accelerometer_landing", "new_columns", readings(("a@x.org", T0)))[0]
    passed, metadata = run_check("accelerometer_landing", "new_columns", readings(("a@x.org", T0)), added_columns="gyroX bigint")
    assert not passed and metadata["added_columns"] == "gyroX bigint"
    check = next(c for c in CHECKS["accelerometer_landing"] if c.name == "new_columns")
    assert check.severity.value == "WARN" and not check.blocking


def test_columns_awaiting_decision_names_added_columns_a_curated_table_does_not_carry():
    step_readings, accelerometer = steps(("s-y", T0)), _with_gyro(readings(("yes@example.com", T0)))
    inputs = {"step_trainer_trusted": step_readings, "accelerometer_trusted": accelerometer, "customer_curated": CONSENTING}
    without = rules.machine_learning_curated(step_readings, accelerometer, CONSENTING)
    passed, metadata = run_check("machine_learning_curated", "columns_awaiting_decision", without, inputs=inputs)
    assert not passed and metadata["columns_awaiting_decision"] == "gyroX"
    allowed = rules.machine_learning_curated(step_readings, accelerometer, CONSENTING, extra_columns=("gyroX",))
    assert "gyroX" in allowed.collect_schema().names()
    assert run_check("machine_learning_curated", "columns_awaiting_decision", allowed, inputs=inputs)[0]
    # A column of the customer feed never reaches the ML table, and is not waiting for it either.
    customer_inputs = {"customer_trusted": _with_gyro(CONSENTING), "accelerometer_trusted": accelerometer}
    curated = rules.customer_curated(_with_gyro(CONSENTING), readings(("yes@example.com", T0)))
    passed, metadata = run_check("customer_curated", "columns_awaiting_decision", curated, inputs=customer_inputs)
    assert not passed and metadata["columns_awaiting_decision"] == "gyroX"


# -- privacy ----------------------------------------------------------------------------------


def test_customer_trusted_consent_check():
    assert run_check("customer_trusted", "consenting_customers_only", CONSENTING, inputs={"customer_landing": LANDING})[0]
    passed, metadata = run_check(
        "customer_trusted", "consenting_customers_only", LANDING, inputs={"customer_landing": LANDING}
    )
    assert not passed
    assert metadata["rows_without_consent"] == 1
    # offending emails are masked in the metadata
    assert "no***@example.com" in metadata["sample_emails"] and "no@example.com" not in metadata["sample_emails"]


def test_customer_trusted_consent_check_sees_withdrawn_consent():
    # The older record consents, the current one does not: the older one must not be trusted.
    landing = customers(
        {"email": "a@example.com", "serialNumber": "s", "lastUpdateDate": T0, "shareWithResearchAsOfDate": T0},
        {"email": "a@example.com", "serialNumber": "s", "lastUpdateDate": T0 + 1},
    )
    stale = landing.filter(nw.col("lastUpdateDate") == T0)
    passed, metadata = run_check(
        "customer_trusted", "consenting_customers_only", stale, inputs={"customer_landing": landing}
    )
    assert not passed and metadata["rows_whose_current_record_has_no_consent"] == 1


def test_accelerometer_trusted_consent_check():
    inputs = {"customer_trusted": CONSENTING}
    assert run_check("accelerometer_trusted", "consenting_readings_only", readings(("yes@example.com", T0)), inputs=inputs)[0]
    passed, metadata = run_check(
        "accelerometer_trusted", "consenting_readings_only",
        readings(("yes@example.com", T0), ("no@example.com", T0)), inputs=inputs,
    )
    assert not passed and metadata["readings_of_non_consenting_users"] == 1


def test_customer_curated_unique_customers_check():
    assert run_check("customer_curated", "unique_customers", CONSENTING)[0]
    passed, metadata = run_check("customer_curated", "unique_customers", nw.concat([CONSENTING, CONSENTING]))
    assert not passed and metadata["customers_more_than_once"] == 1


def test_customer_curated_consent_check():
    inputs = {"customer_trusted": CONSENTING}
    assert run_check("customer_curated", "consenting_customers_only", CONSENTING, inputs=inputs)[0]
    passed, metadata = run_check("customer_curated", "consenting_customers_only", LANDING, inputs=inputs)
    assert not passed and metadata["rows_not_in_customer_trusted"] == 1


def test_step_trainer_trusted_device_check():
    inputs = {"customer_curated": CONSENTING, "customer_landing": LANDING, "customer_trusted": CONSENTING}
    assert run_check("step_trainer_trusted", "curated_devices_only", steps(("s-y", T0)), inputs=inputs)[0]
    passed, metadata = run_check(
        "step_trainer_trusted", "curated_devices_only", steps(("s-y", T0), ("s-n", T0)), inputs=inputs
    )
    assert not passed and metadata["readings_of_other_devices"] == 1


def test_consent_checks_compare_email_identities():
    # The current record withdrew consent under another spelling of the email.
    landing = customers(
        {"email": "yes@example.com", "serialNumber": "s-y", "lastUpdateDate": T0, "shareWithResearchAsOfDate": T0},
        {"email": " Yes@Example.com", "serialNumber": "s-y", "lastUpdateDate": T0 + 1},
    )
    passed, metadata = run_check(
        "customer_trusted", "consenting_customers_only", CONSENTING, inputs={"customer_landing": landing}
    )
    assert not passed and metadata["rows_whose_current_record_has_no_consent"] == 1
    # A reading under another spelling of a consenting user's email is theirs.
    inputs = {"customer_trusted": CONSENTING}
    assert run_check("accelerometer_trusted", "consenting_readings_only", readings(("YES@example.com ", T0)), inputs=inputs)[0]
    # One person twice, spelled differently, is a duplicate.
    twice = nw.concat([CONSENTING, CONSENTING.with_columns(nw.lit("YES@EXAMPLE.COM").alias("email"))])
    passed, metadata = run_check("customer_curated", "unique_customers", twice)
    assert not passed and metadata["customers_more_than_once"] == 1


def test_customer_trusted_consent_check_sees_customers_held_back():
    inputs = {"customer_landing": CONSENTING, "quarantined_customers": quarantined(("yes@example.com", T0 + 1))}
    passed, metadata = run_check("customer_trusted", "consenting_customers_only", CONSENTING, inputs=inputs)
    assert not passed and metadata["rows_of_customers_with_unreadable_newer_records"] == 1
    inputs["quarantined_customers"] = quarantined(("yes@example.com", T0 - 1))  # superseded
    assert run_check("customer_trusted", "consenting_customers_only", CONSENTING, inputs=inputs)[0]


def test_unreadable_records_held_back_warns_with_masked_samples():
    check = next(c for c in CHECKS["customer_trusted"] if c.name == "unreadable_records_held_back")
    inputs = {"customer_landing": LANDING, "quarantined_customers": quarantined(("yes@example.com", T0 - 1))}
    assert check.run(CheckInput("customer_trusted", CONSENTING, inputs)).passed
    inputs["quarantined_customers"] = quarantined(("yes@example.com", None), ("new@example.com", T0))
    result = check.run(CheckInput("customer_trusted", CONSENTING.head(0), inputs))
    metadata = {k: v.value for k, v in result.metadata.items()}
    assert not result.passed and result.severity.value == "WARN"
    assert metadata["customers_held_back"] == 2 and metadata["held_back_whose_valid_record_consents"] == 1
    assert "ye***@example.com" in metadata["sample_emails"] and "yes@example.com" not in metadata["sample_emails"]


def test_unreadable_records_held_back_says_when_a_device_cannot_be_read():
    check = next(c for c in CHECKS["customer_trusted"] if c.name == "unreadable_records_held_back")
    # A customer whose only record is quarantined, and names no device: the device they may share is unknown.
    inputs = {"customer_landing": LANDING, "quarantined_customers": quarantined(("new@example.com", T0))}
    metadata = {k: v.value for k, v in check.run(CheckInput("customer_trusted", CONSENTING, inputs)).metadata.items()}
    assert metadata["held_back_whose_device_cannot_be_read"] == 1 and "cannot be excluded" in metadata["problem"]
    inputs["quarantined_customers"] = quarantined(("new@example.com", T0, "s-y"))
    metadata = {k: v.value for k, v in check.run(CheckInput("customer_trusted", CONSENTING, inputs)).metadata.items()}
    assert metadata["held_back_whose_device_cannot_be_read"] == 0 and "problem" not in metadata


def test_quarantined_records_attributed_fails_on_a_record_without_email():
    inputs = {"customer_landing": LANDING, "quarantined_customers": quarantined(("yes@example.com", None))}
    assert run_check("customer_trusted", "quarantined_records_attributed", CONSENTING, inputs=inputs)[0]
    inputs["quarantined_customers"] = quarantined(("yes@example.com", None), (None, T0))
    passed, metadata = run_check("customer_trusted", "quarantined_records_attributed", CONSENTING, inputs=inputs)
    assert not passed and metadata["records_without_recoverable_email"] == 1
    assert metadata["samples"] == "customer-2.json:2"
    check = next(c for c in CHECKS["customer_trusted"] if c.name == "quarantined_records_attributed")
    assert check.blocking and check.severity.value == "ERROR"


def test_step_trainer_trusted_device_check_fails_on_a_device_shared_with_a_non_consenting_customer():
    landing = customers(
        {"email": "yes@example.com", "serialNumber": "s-y", "shareWithResearchAsOfDate": T0},
        {"email": "no@example.com", "serialNumber": "s-y"},
    )
    inputs = {"customer_curated": CONSENTING, "customer_landing": landing, "customer_trusted": CONSENTING}
    passed, metadata = run_check("step_trainer_trusted", "curated_devices_only", steps(("s-y", T0)), inputs=inputs)
    assert not passed
    assert metadata["readings_of_devices_of_non_consenting_customers"] == 1 and metadata["readings_of_other_devices"] == 0
    assert metadata["sample_serial_numbers"] == "s-y"


@pytest.mark.parametrize(
    ("table", "early", "inputs"),
    [
        ("accelerometer_trusted", readings(("yes@example.com", T0 - 1)), {"customer_trusted": CONSENTING}),
        ("step_trainer_trusted", steps(("s-y", T0 - 1)), {"customer_curated": CONSENTING}),
        (
            "machine_learning_curated",
            rules.machine_learning_curated(steps(("s-y", T0 - 1)), readings(("yes@example.com", T0 - 1)), CONSENTING),
            {"customer_curated": CONSENTING},
        ),
    ],
)
def test_readings_within_consent_scope(table, early, inputs):
    # Under any_time every reading of a consenting customer is in scope: the check passes, saying so.
    passed, metadata = run_check(table, "readings_within_consent_scope", early, inputs=inputs)
    assert passed and metadata["consent_scope"] == "any_time"
    on_time = early.with_columns(nw.lit(T0, nw.Int64).alias(c) for c in ("timestamp", "sensorReadingTime") if c in early.collect_schema())
    assert run_check(table, "readings_within_consent_scope", on_time, inputs=inputs, consent_scope="from_consent_date")[0]
    passed, metadata = run_check(table, "readings_within_consent_scope", early, inputs=inputs, consent_scope="from_consent_date")
    assert not passed and metadata["readings_before_consent"] == 1
    if table == "accelerometer_trusted":
        assert metadata["sample_owners"] == "ye***@example.com"


def _machine_learning_inputs():
    step_readings = steps(("s-y", T0))
    accelerometer = readings(("yes@example.com", T0))
    inputs = {"step_trainer_trusted": step_readings, "accelerometer_trusted": accelerometer, "customer_curated": CONSENTING}
    return rules.machine_learning_curated(step_readings, accelerometer, CONSENTING), inputs


def test_machine_learning_curated_identifier_check():
    table, _ = _machine_learning_inputs()
    assert run_check("machine_learning_curated", "no_personal_identifiers", table)[0]
    for leaked in ("user", "Email", "customerName", "phone", "birthday"):
        passed, metadata = run_check(
            "machine_learning_curated", "no_personal_identifiers", table.with_columns(nw.lit("x").alias(leaked))
        )
        assert not passed and metadata["identifier_columns"] == leaked


def test_machine_learning_curated_traceability_check():
    table, inputs = _machine_learning_inputs()
    assert run_check("machine_learning_curated", "traceable_to_consenting_customers", table, inputs=inputs)[0]
    stranger = table.with_columns(nw.lit("s-unknown").alias("serialNumber"))
    passed, metadata = run_check("machine_learning_curated", "traceable_to_consenting_customers", stranger, inputs=inputs)
    assert not passed and metadata["rows_of_uncurated_devices"] == 1
    untrusted_time = table.with_columns(nw.lit(T0 + 99).alias("timestamp"))
    passed, metadata = run_check(
        "machine_learning_curated", "traceable_to_consenting_customers", untrusted_time, inputs=inputs
    )
    assert not passed and metadata["rows_without_trusted_reading"] == 1


def test_cross_customer_pairs_warns():
    curated = customers(
        {"email": "a@example.com", "serialNumber": "s-a", "shareWithResearchAsOfDate": T0},
        {"email": "b@example.com", "serialNumber": "s-b", "shareWithResearchAsOfDate": T0},
    )
    step_readings = steps(("s-a", T0))
    accelerometer = readings(("a@example.com", T0), ("b@example.com", T0))
    inputs = {"step_trainer_trusted": step_readings, "accelerometer_trusted": accelerometer, "customer_curated": curated}
    table = rules.machine_learning_curated(step_readings, accelerometer, curated)
    check = next(c for c in CHECKS["machine_learning_curated"] if c.name == "cross_customer_pairs")
    result = check.run(CheckInput("machine_learning_curated", table, inputs))
    assert not result.passed and result.severity.value == "WARN"
    assert result.metadata["cross_customer_rows"].value == 1
    same = rules.machine_learning_curated(step_readings, accelerometer, curated, same_customer=True)
    assert check.run(CheckInput("machine_learning_curated", same, inputs, same_customer=True)).passed


def test_every_check_has_a_failing_test_here():
    # A guard against adding a check without a test that makes it fail.

    # Checks of the landing feeds' quarantine are made to fail in test_quarantine_assets.py.
    tests = Path(__file__).parent
    source = "".join(p.read_text() for p in (tests / "test_checks.py", tests / "test_quarantine_assets.py"))
    for table, checks in CHECKS.items():
        for check in checks:
            assert f'"{check.name}"' in source, f"{table}.{check.name} has no test"


# -- in a run --------------------------------------------------------------------------------


def test_failed_privacy_check_blocks_publication_and_downstream(stedi_landing, make_lakehouse, monkeypatch, tmp_path):
    # A broken rule that forgets the consent filter.
    monkeypatch.setattr(
        rules, "customer_trusted", lambda customer_landing, quarantined_customers: rules.current_customer_records(customer_landing)
    )
    result = materialize_all(make_lakehouse(stedi_landing))

    assert not result.success
    assert check_outcomes(result)[("customer_trusted", "consenting_customers_only")] is False
    landing = {f"{feed}_{kind}" for feed in FEEDS for kind in ("landing", "quarantine")}
    assert set(published_rows(result)) == landing
    assert not (tmp_path / "lakehouse" / "trusted").exists()
    evaluated = {table for table, _ in check_outcomes(result)}
    assert "accelerometer_trusted" not in evaluated and "machine_learning_curated" not in evaluated


def test_failed_row_count_does_not_block(stedi_landing, make_lakehouse):
    # The simulated profile does not fit the real data: every row count fails, nothing is blocked.
    result = materialize_all(make_lakehouse(stedi_landing, profile="simulated"))
    outcomes = check_outcomes(result)
    assert not any(passed for (table, check), passed in outcomes.items() if check == "row_count")
    assert set(published_rows(result)) == set(TABLES)


# -- a broken rule is caught by its check ------------------------------------------------
# Each case replaces one rule helper that builds a privacy-relevant table with a
# broken one, builds the table with the rules, and shows the table's check
# failing; the same table built by the correct rule passes. The checks derive
# what they need apart from the rules, so the broken helper does not break them.


def _oldest_records(customers: nw.LazyFrame) -> nw.LazyFrame:
    """current_customer_records gone wrong: each customer's oldest record."""
    ranked = rules.with_identity(customers, "email")
    return ranked.unique(subset=["email"], keep="first", order_by=["lastUpdateDate"]).select(
        TABLES["customer_landing"].column_names
    )


WITHDRAWN_LATER = customers(
    {"email": "yes@example.com", "serialNumber": "s-y", "shareWithResearchAsOfDate": T0},
    {"email": "was@example.com", "serialNumber": "s-w", "lastUpdateDate": T0, "shareWithResearchAsOfDate": T0},
    {"email": "WAS@example.com", "serialNumber": "s-w", "lastUpdateDate": T0 + 1},
)
SHARED_DEVICE = customers(
    {"email": "yes@example.com", "serialNumber": "s-y", "shareWithResearchAsOfDate": T0},
    {"email": "no@example.com", "serialNumber": "s-y"},
)
TWO_OWNERS = customers(
    {"email": "a@example.com", "serialNumber": "s-ab", "shareWithResearchAsOfDate": T0},
    {"email": "b@example.com", "serialNumber": "s-ab", "shareWithResearchAsOfDate": T0 + 10},
)


def _customer_trusted_case(landing, quarantine):
    def build():
        inputs = {"customer_landing": landing, "quarantined_customers": quarantine}
        return rules.customer_trusted(landing, quarantine), inputs, {}

    return build


def _accelerometer_trusted_case():
    landing = readings(("yes@example.com", T0), ("no@example.com", T0))
    return rules.accelerometer_trusted(landing, CONSENTING), {"customer_trusted": CONSENTING}, {}


def _step_trainer_trusted_case():
    trusted = rules.customer_trusted(SHARED_DEVICE)
    inputs = {"customer_curated": trusted, "customer_landing": SHARED_DEVICE, "customer_trusted": trusted}
    table = rules.step_trainer_trusted(steps(("s-y", T0)), trusted, SHARED_DEVICE, trusted)
    return table, inputs, {}


def _held_back_device_case():
    held = quarantined(("new@example.com", T0, "S-Y "))
    inputs = {
        "customer_curated": CONSENTING, "customer_landing": CONSENTING, "customer_trusted": CONSENTING,
        "quarantined_customers": held,
    }
    table = rules.step_trainer_trusted(
        steps(("s-y", T0), ("s-other", T0)), CONSENTING, CONSENTING, CONSENTING, quarantined_customers=held
    )
    return table, inputs, {}


def _same_customer_case():
    curated = customers(
        {"email": "a@example.com", "serialNumber": "s-a", "shareWithResearchAsOfDate": T0},
        {"email": "b@example.com", "serialNumber": "s-b", "shareWithResearchAsOfDate": T0},
    )
    step_readings, accelerometer = steps(("s-a", T0)), readings(("a@example.com", T0), ("b@example.com", T0))
    inputs = {"step_trainer_trusted": step_readings, "accelerometer_trusted": accelerometer, "customer_curated": curated}
    table = rules.machine_learning_curated(step_readings, accelerometer, curated, same_customer=True)
    return table, inputs, {"same_customer": True}


def _consent_scope_case():
    # A device of two consenting owners; a reading between their consent dates predates b's consent.
    trusted = rules.customer_trusted(TWO_OWNERS)
    table = rules.step_trainer_trusted(steps(("s-ab", T0 + 5)), trusted, TWO_OWNERS, trusted, from_consent_date=True)
    return table, {"customer_curated": trusted}, {"consent_scope": "from_consent_date"}


BROKEN_RULES = {
    # current_customer_records picks the oldest record: a customer who withdrew later is trusted.
    "oldest_record_is_current": (
        "current_customer_records", lambda original: _oldest_records,
        "customer_trusted", "consenting_customers_only",
        _customer_trusted_case(WITHDRAWN_LATER, quarantined()), "rows_whose_current_record_has_no_consent",
    ),
    # held_back_customers returns nobody: a customer whose newer record is unreadable is trusted.
    "nobody_held_back": (
        "held_back_customers", lambda original: lambda landing, quarantine: original(landing, quarantine).head(0),
        "customer_trusted", "consenting_customers_only",
        _customer_trusted_case(CONSENTING, quarantined(("yes@example.com", None))),
        "rows_of_customers_with_unreadable_newer_records",
    ),
    # The consent filter lets every current record through.
    "no_consent_filter": (
        "customer_trusted", lambda original: lambda landing, quarantine=None: rules.current_customer_records(landing),
        "customer_trusted", "consenting_customers_only",
        _customer_trusted_case(LANDING, quarantined()), "rows_whose_current_record_has_no_consent",
    ),
    # accelerometer_trusted keeps the readings of every user.
    "readings_of_everyone": (
        "rows_with_key_in", lambda original: lambda frame, key, reference, reference_key: frame,
        "accelerometer_trusted", "consenting_readings_only", _accelerometer_trusted_case,
        "readings_of_non_consenting_users",
    ),
    # non_consenting_devices returns nothing: a device shared with a non-consenting customer stays.
    "no_shared_devices": (
        "non_consenting_devices", lambda original: lambda landing, trusted: original(landing, trusted).head(0),
        "step_trainer_trusted", "curated_devices_only", _step_trainer_trusted_case,
        "readings_of_devices_of_non_consenting_customers",
    ),
    # held_back_devices returns nothing: a device named by a held-back customer's record stays.
    "no_held_back_devices": (
        "held_back_devices", lambda original: lambda landing, quarantine: original(landing, quarantine).head(0),
        "step_trainer_trusted", "curated_devices_only", _held_back_device_case,
        "readings_of_devices_of_non_consenting_customers",
    ),
    # device_owners makes everyone own every device: ml_join=same_customer keeps cross-customer pairs.
    "everyone_owns_every_device": (
        "device_owners",
        lambda original: lambda curated: original(curated).select("serialNumber").join(
            original(curated).select("user"), how="cross"
        ),
        "machine_learning_curated", "cross_customer_pairs", _same_customer_case, "cross_customer_rows",
    ),
    # latest_consent_by takes the earliest consent of a device's owners: readings before the later one stay.
    "earliest_consent_of_the_owners": (
        "latest_consent_by",
        lambda original: lambda customers, key, alias=None: customers.group_by(key).agg(
            nw.col("shareWithResearchAsOfDate").min().alias("__consent_date")
        ).rename({key: alias or key}),
        "step_trainer_trusted", "readings_within_consent_scope", _consent_scope_case, "readings_before_consent",
    ),
}


@pytest.mark.parametrize("case", BROKEN_RULES)
def test_a_broken_rule_fails_the_check_of_its_table(case, monkeypatch):
    helper, breaking, table, check, build, kind = BROKEN_RULES[case]
    good, inputs, fields = build()
    assert run_check(table, check, good, inputs=inputs, **fields)[0], "the correct rule passes"
    monkeypatch.setattr(rules, helper, breaking(getattr(rules, helper)))
    broken, inputs, fields = build()
    passed, metadata = run_check(table, check, broken, inputs=inputs, **fields)
    assert not passed and metadata[kind] >= 1, metadata


def test_a_current_record_rule_gone_wrong_blocks_customer_trusted_in_a_run(make_lakehouse, monkeypatch, tmp_path):
    # The simulated customers include some who withdrew in a later record; the broken rule trusts them.
    write_landing(tmp_path / "landing", simulate_landing())
    monkeypatch.setattr(rules, "current_customer_records", _oldest_records)
    result = materialize_all(make_lakehouse(tmp_path / "landing"))

    assert not result.success
    assert check_outcomes(result)[("customer_trusted", "consenting_customers_only")] is False
    assert "customer_trusted" not in published_rows(result)
    # Held back on its first run: no history to judge yet, and the step fails for its check, nothing else.
    assert check_outcomes(result)[("customer_trusted", "withdrawn_out_of_history")] is True
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE" and e.step_key == "customer_trusted"]
    assert "consenting_customers_only" in str(failure.event_specific_data.error), failure.event_specific_data.error


def test_a_broken_rule_fails_the_check_on_the_rows_an_append_adds(make_lakehouse, monkeypatch, tmp_path):
    """On an incremental update the row-by-row privacy checks judge the rows added alone: a rule gone wrong
    for the new readings is caught there, and the table keeps its rows."""
    import json

    landing = tmp_path / "landing"
    write_landing(landing, simulate_landing())
    lakehouse = make_lakehouse(landing)
    assert materialize_all(lakehouse).success
    before = lakehouse.current_snapshot("accelerometer_trusted")
    stranger = {"user": "stranger@example.com", "timestamp": T0, "x": 1.0, "y": 0.0, "z": 1.0}
    (landing / "accelerometer" / "late.json").write_text(json.dumps(stranger) + "\n")
    monkeypatch.setattr(rules, "rows_with_key_in", lambda frame, key, reference, reference_key: frame)

    result = materialize_all(lakehouse)

    assert not result.success
    [evaluation] = [
        e for e in result.get_asset_check_evaluations()
        if (e.asset_key.path[-1], e.check_name) == ("accelerometer_trusted", "consenting_readings_only")
    ]
    assert not evaluation.passed
    assert evaluation.metadata["readings_of_non_consenting_users"].value == 1
    assert evaluation.metadata["judged"].value == JUDGED_ADDED
    assert lakehouse.current_snapshot("accelerometer_trusted") == before


def test_a_held_back_co_owner_keeps_the_shared_device_out_of_every_table_in_a_run(make_lakehouse, tmp_path):
    """A customer whose only record is quarantined (cut short) names the device of a consenting customer:
    its readings leave step_trainer_trusted and machine_learning_curated; the run still publishes."""
    import json

    landing = tmp_path / "landing"
    write_landing(landing, simulate_landing())
    lakehouse = make_lakehouse(landing)
    assert materialize_all(lakehouse).success
    serial = lakehouse.read_table(["machine_learning_curated"]).select("serialNumber").head(1).collect().item()
    before = lakehouse.read_table(["step_trainer_trusted"]).filter(nw.col("serialNumber") == serial).collect().shape[0]
    cut_short = json.dumps({"customerName": "Co Owner", "email": "co.owner@example.com", "serialNumber": serial.upper()})
    (landing / "customer" / "customer-co-owner.json").write_text(cut_short[:-1] + ', "lastUpdateDate": \n')
    result = materialize_all(lakehouse)

    assert result.success and before > 0
    for table in ("step_trainer_trusted", "machine_learning_curated"):
        rows = lakehouse.read_table([table]).filter(nw.col("serialNumber") == serial).collect().shape[0]
        assert rows == 0, table
    assert check_outcomes(result)[("step_trainer_trusted", "curated_devices_only")] is True
