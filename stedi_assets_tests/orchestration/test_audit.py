"""The audit checks on published tables: each passes on a correct lakehouse and fails on a violating one.

Violating tables are published through the lakehouse's IO manager by stand-in
assets, as a writer outside the pipeline would; the checks then run in
stedi_audit_job, which recomputes no table. Tables built by a broken rule
helper are published the same way and fail their audit. Does not cover alerts
(test_alerts.py) or scheduling (test_definitions.py).
"""

from __future__ import annotations

import narwhals as nw
import polars as pl
import pytest
from dagster import DagsterEventType, Definitions

from stedi_assets.domain import rules
from stedi_assets.orchestration.assets import quarantined_customers
from stedi_assets.definitions import defs, stedi_audit_job, zone_assets
from stedi_assets.orchestration.audit import AUDIT_CHECKS
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.domain.schemas import RESEARCH_CONSENT, TABLES
from stedi_assets_tests.conftest import resources_for
from stedi_assets_tests.orchestration.conftest import publish_tables

AUDITS = {(c.asset_key.path[-1], c.name) for check in AUDIT_CHECKS for c in check.check_keys}


def run_audit(lakehouse: Lakehouse):
    definitions = Definitions(
        assets=zone_assets, asset_checks=AUDIT_CHECKS, jobs=[stedi_audit_job], resources=resources_for(lakehouse)
    )
    result = definitions.resolve_job_def("stedi_audit_job").execute_in_process(raise_on_error=False)
    assert result.success
    return result, {
        (e.asset_key.path[-1], e.check_name): (e.passed, {k: v.value for k, v in e.metadata.items()})
        for e in result.get_asset_check_evaluations()
    }


def test_every_audit_passes_on_the_published_tables_and_nothing_is_recomputed(published_lakehouse):
    result, outcomes = run_audit(published_lakehouse)
    assert set(outcomes) == AUDITS
    assert all(passed for passed, _ in outcomes.values()), outcomes
    # A checks-only job: no table was computed or written.
    assert not result.get_asset_materialization_events()
    assert not [e for e in result.all_events if e.event_type == DagsterEventType.ASSET_MATERIALIZATION]


def test_the_republished_tables_pass_too(publish):
    # The stand-in publishing of the tests below changes nothing by itself.
    _, outcomes = run_audit(publish())
    assert all(passed for passed, _ in outcomes.values()), outcomes


def test_nothing_published_yet_passes(tmp_path):
    _, outcomes = run_audit(Lakehouse(landing_uri=str(tmp_path), lakehouse_uri=str(tmp_path / "lake")))
    assert all(passed and metadata == {"published": False} for passed, metadata in outcomes.values())


def without_consent(frames: dict[str, nw.LazyFrame]) -> nw.LazyFrame:
    """Landing records without consent of customers who are not in customer_trusted at all."""
    landing = rules.with_identity(frames["customer_landing"].filter(nw.col(RESEARCH_CONSENT).is_null()), "email")
    return rules.rows_with_key_not_in(landing, "email", frames["customer_trusted"], "email")


def test_customer_trusted_with_a_non_consenting_customer_fails(publish, published_frames):
    trusted = nw.concat([published_frames["customer_trusted"], without_consent(published_frames).head(2)])
    _, outcomes = run_audit(publish(customer_trusted=trusted))
    passed, metadata = outcomes[("customer_trusted", "audit_consenting_customers_only")]
    assert not passed
    assert metadata["rows_without_consent"] == 2
    # Samples are masked: two characters of the local part, then the domain.
    assert "***@" in metadata["sample_rows_without_consent"]


def test_customer_trusted_keeping_a_customer_who_withdrew_fails(publish, published_frames):
    # A consenting customer kept although a later record of the same email withdrew consent.
    withdrawn = published_frames["customer_trusted"].head(1).with_columns(
        nw.lit(None, nw.Int64).alias(RESEARCH_CONSENT), (nw.col("lastUpdateDate") + 1).alias("lastUpdateDate")
    )
    _, outcomes = run_audit(publish(customer_landing=nw.concat([published_frames["customer_landing"], withdrawn])))
    passed, metadata = outcomes[("customer_trusted", "audit_consenting_customers_only")]
    assert not passed and metadata["rows_whose_current_record_has_no_consent_or_is_held_back"] == 1
    # The same customer's readings and curated row fail their audits too.
    assert not outcomes[("customer_curated", "audit_consenting_customers_only")][0]
    assert not outcomes[("accelerometer_trusted", "audit_consenting_readings_only")][0]


def test_a_customer_with_an_unreadable_newer_record_is_held_back_and_fails_the_audit(publish, published_frames):
    # A quarantined record of a trusted customer, newer than their current one: consent is not proven.
    customer = published_frames["customer_trusted"].head(1).collect().rows(named=True)[0]
    raw = '{"email": "%s", "lastUpdateDate": %d, "shareWithResearchAsOfDate": ' % (
        customer["email"], customer["lastUpdateDate"] + 1
    )
    broken = nw.from_native(
        pl.DataFrame(
            {"source_file": ["customer-late.json"], "line": [1], "reason": ["not valid JSON"], "raw_text": [raw]},
            schema=TABLES["customer_quarantine"].polars_schema,
        ).lazy()
    )
    quarantine = nw.concat([published_frames["customer_quarantine"], broken])
    _, outcomes = run_audit(publish(customer_quarantine=quarantine))
    passed, metadata = outcomes[("customer_trusted", "audit_consenting_customers_only")]
    assert not passed and metadata["rows_whose_current_record_has_no_consent_or_is_held_back"] == 1
    assert not outcomes[("accelerometer_trusted", "audit_consenting_readings_only")][0]


def test_customer_curated_with_a_customer_not_in_customer_trusted_fails(publish, published_frames):
    curated = nw.concat([published_frames["customer_curated"], without_consent(published_frames).head(1)])
    _, outcomes = run_audit(publish(customer_curated=curated))
    passed, metadata = outcomes[("customer_curated", "audit_consenting_customers_only")]
    assert not passed
    assert metadata["rows_not_in_customer_trusted"] == 1 and metadata["rows_without_consent"] == 1


def test_accelerometer_trusted_with_a_non_consenting_reading_fails(publish, published_frames):
    # Every landed reading, consenting or not.
    _, outcomes = run_audit(publish(accelerometer_trusted=published_frames["accelerometer_landing"]))
    passed, metadata = outcomes[("accelerometer_trusted", "audit_consenting_readings_only")]
    assert not passed and metadata["readings_of_users_not_in_customer_trusted"] > 0
    assert "***@" in metadata["sample_readings_of_users_not_in_customer_trusted"]


def test_step_trainer_trusted_with_a_device_outside_customer_curated_fails(publish, published_frames):
    _, outcomes = run_audit(publish(step_trainer_trusted=published_frames["step_trainer_landing"]))
    passed, metadata = outcomes[("step_trainer_trusted", "audit_curated_devices_only")]
    assert not passed and metadata["rows_of_devices_not_in_customer_curated"] > 0


def test_a_device_shared_with_a_non_consenting_customer_fails_the_audits(publish, published_frames):
    # A non-consenting customer whose current record (the newest of all) carries a curated customer's device.
    device = published_frames["step_trainer_trusted"].select("serialNumber").head(1).collect().item()
    newest = published_frames["customer_landing"].select(nw.col("lastUpdateDate").max()).collect().item() + 1
    stranger = without_consent(published_frames).head(1).with_columns(
        nw.lit(device).alias("serialNumber"), nw.lit(newest).alias("lastUpdateDate")
    )
    _, outcomes = run_audit(publish(customer_landing=nw.concat([published_frames["customer_landing"], stranger])))
    passed, metadata = outcomes[("step_trainer_trusted", "audit_curated_devices_only")]
    assert not passed and metadata["rows_of_devices_of_non_consenting_customers"] > 0
    assert metadata["rows_of_devices_not_in_customer_curated"] == 0
    passed, metadata = outcomes[("machine_learning_curated", "audit_traceable_to_consenting_customers")]
    assert not passed and metadata["rows_of_devices_of_non_consenting_customers"] > 0


def test_machine_learning_curated_with_an_uncurated_device_fails(publish, published_frames):
    ml = published_frames["machine_learning_curated"]
    stranger = ml.head(1).with_columns(nw.lit("not-a-curated-device").alias("serialNumber"))
    _, outcomes = run_audit(publish(machine_learning_curated=nw.concat([ml, stranger])))
    passed, metadata = outcomes[("machine_learning_curated", "audit_traceable_to_consenting_customers")]
    assert not passed and metadata["rows_of_devices_not_in_customer_curated"] == 1
    assert metadata["rows_without_trusted_reading"] == 0


def test_machine_learning_curated_with_an_identifier_column_fails(publish, monkeypatch):
    # The lakehouse refuses to publish a column the table does not declare; another writer
    # (a schema evolved outside the pipeline) could add one. The storage then shows it:
    lakehouse = publish()
    original = type(lakehouse).read_table

    def with_email(self, asset_path, *args, **kwargs):
        frame = original(self, asset_path, *args, **kwargs)
        if asset_path[-1] == "machine_learning_curated":
            return frame.with_columns(nw.lit("someone@example.com").alias("Email"))
        return frame

    monkeypatch.setattr(type(lakehouse), "read_table", with_email)
    _, outcomes = run_audit(lakehouse)
    passed, metadata = outcomes[("machine_learning_curated", "audit_no_personal_identifiers")]
    assert not passed and metadata["identifier_columns"] == "Email"
    # The other audits of the table are not concerned with its columns.
    assert outcomes[("machine_learning_curated", "audit_traceable_to_consenting_customers")][0]


def test_an_unreadable_table_fails_the_audit_with_the_reason_masked(publish, published_frames, monkeypatch):
    lakehouse = publish()

    def unreadable(self, asset_path, *args, **kwargs):
        if asset_path[-1] == "customer_curated":
            raise OSError("cannot read the file of Ann.Example@example.com")
        return original(self, asset_path, *args, **kwargs)

    original = type(lakehouse).read_table
    monkeypatch.setattr(type(lakehouse), "read_table", unreadable)
    _, outcomes = run_audit(lakehouse)
    passed, metadata = outcomes[("customer_curated", "audit_consenting_customers_only")]
    assert not passed
    assert metadata["problem"] == "cannot verify: OSError: cannot read the file of An***@example.com"


def test_a_missing_reference_table_fails_the_audit(publish):
    _, outcomes = run_audit(publish(customer_curated=None, machine_learning_curated=None))
    passed, metadata = outcomes[("step_trainer_trusted", "audit_curated_devices_only")]
    assert not passed and "cannot verify" in metadata["problem"]


@pytest.mark.parametrize("check", AUDIT_CHECKS, ids=lambda c: next(iter(c.check_keys)).to_user_string())
def test_every_audit_check_can_run_on_its_own(check):
    # What the UI's Execute button needs: a job of this one check alone.
    key = next(iter(check.check_keys))
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_check_selection={key}, asset_selection=set())
    assert set(job.graph.node_names()) == {f"{key.asset_key.path[-1]}_{key.name}"}


# -- tables a broken rule built ------------------------------------------------------------
# What a broken rule helper publishes, the audit of the published table finds:
# the audits derive what they need apart from the rules.


def _oldest_records(customers: nw.LazyFrame) -> nw.LazyFrame:
    """current_customer_records gone wrong: each customer's oldest record."""
    ranked = rules.with_identity(customers, "email")
    return ranked.unique(subset=["email"], keep="first", order_by=["lastUpdateDate"]).select(
        TABLES["customer_landing"].column_names
    )


def test_customer_trusted_built_with_the_oldest_records_fails_the_audit(publish, published_frames, published_lakehouse, monkeypatch):
    # The simulated customers include some who withdrew in a later record.
    monkeypatch.setattr(rules, "current_customer_records", _oldest_records)
    quarantine = quarantined_customers(published_lakehouse, published_frames["customer_quarantine"])
    broken = rules.customer_trusted(published_frames["customer_landing"], quarantine).collect().lazy()
    _, outcomes = run_audit(publish(customer_trusted=broken))
    passed, metadata = outcomes[("customer_trusted", "audit_consenting_customers_only")]
    assert not passed and metadata["rows_whose_current_record_has_no_consent_or_is_held_back"] > 0


def test_customer_trusted_built_without_holding_anyone_back_fails_the_audit(publish, published_frames, published_lakehouse, monkeypatch):
    # A cut-short record of a trusted customer, newer than their current one.
    customer = published_frames["customer_trusted"].head(1).collect().rows(named=True)[0]
    raw = '{"email": "%s", "lastUpdateDate": %d, "shareWithResearchAsOfDate": ' % (
        customer["email"], customer["lastUpdateDate"] + 1
    )
    broken_record = nw.from_native(
        pl.DataFrame(
            {"source_file": ["customer-late.json"], "line": [1], "reason": ["not valid JSON"], "raw_text": [raw]},
            schema=TABLES["customer_quarantine"].polars_schema,
        ).lazy()
    )
    quarantine = nw.concat([published_frames["customer_quarantine"], broken_record])
    monkeypatch.setattr(rules, "held_back_customers", lambda landing, quarantined: quarantined.select("email").head(0))
    recovered = quarantined_customers(published_lakehouse, quarantine)
    broken = rules.customer_trusted(published_frames["customer_landing"], recovered).collect().lazy()
    _, outcomes = run_audit(publish(customer_quarantine=quarantine, customer_trusted=broken))
    passed, metadata = outcomes[("customer_trusted", "audit_consenting_customers_only")]
    assert not passed and metadata["rows_whose_current_record_has_no_consent_or_is_held_back"] == 1


def test_step_trainer_trusted_built_without_shared_devices_fails_the_audit(publish, published_frames, monkeypatch):
    # A non-consenting customer whose current record (the newest of all) carries a curated customer's device.
    device = published_frames["step_trainer_trusted"].select("serialNumber").head(1).collect().item()
    newest = published_frames["customer_landing"].select(nw.col("lastUpdateDate").max()).collect().item() + 1
    stranger = without_consent(published_frames).head(1).with_columns(
        nw.lit(device).alias("serialNumber"), nw.lit(newest).alias("lastUpdateDate")
    )
    landing = nw.concat([published_frames["customer_landing"], stranger]).collect().lazy()
    monkeypatch.setattr(rules, "non_consenting_devices", lambda landing, trusted: landing.select("serialNumber").head(0))
    frames = published_frames
    broken = rules.step_trainer_trusted(
        frames["step_trainer_landing"], frames["customer_curated"], landing, frames["customer_trusted"]
    ).collect().lazy()
    _, outcomes = run_audit(publish(customer_landing=landing, step_trainer_trusted=broken))
    passed, metadata = outcomes[("step_trainer_trusted", "audit_curated_devices_only")]
    assert not passed and metadata["rows_of_devices_of_non_consenting_customers"] > 0
