"""The audit checks on published tables: each passes on a correct lakehouse and fails on a violating one.

Violating tables are published through the lakehouse resource, as a writer
outside the pipeline would; the checks then run in stedi_audit_job, which
recomputes no table. Does not cover alerts (test_alerts.py) or scheduling.
"""

from __future__ import annotations

import narwhals as nw
import pytest
from dagster import DagsterEventType, Definitions

from stedi_assets import rules
from stedi_assets.definitions import defs, stedi_audit_job, zone_assets
from stedi_assets.operations.audit import AUDIT_CHECKS
from stedi_assets.resources import StediLakehouse
from stedi_assets.schemas import RESEARCH_CONSENT, TABLES
from stedi_assets_tests.conftest import resources_for

AUDITS = {(c.asset_key.path[-1], c.name) for check in AUDIT_CHECKS for c in check.check_keys}


def run_audit(lakehouse: StediLakehouse):
    defs = Definitions(
        assets=zone_assets, asset_checks=AUDIT_CHECKS, jobs=[stedi_audit_job], resources=resources_for(lakehouse)
    )
    result = defs.resolve_job_def("stedi_audit_job").execute_in_process(raise_on_error=False)
    assert result.success
    return result, {
        (e.asset_key.path[-1], e.check_name): (e.passed, {k: v.value for k, v in e.metadata.items()})
        for e in result.get_asset_check_evaluations()
    }


def publish(lakehouse: StediLakehouse, table: str, frame: nw.LazyFrame) -> None:
    lakehouse.publish([table], frame.select(TABLES[table].column_names), run_id="out-of-band-writer")


def test_every_audit_passes_on_the_published_tables_and_nothing_is_recomputed(published_lakehouse):
    result, outcomes = run_audit(published_lakehouse)
    assert set(outcomes) == AUDITS
    assert all(passed for passed, _ in outcomes.values()), outcomes
    # A checks-only job: no table was computed or written.
    assert not result.get_asset_materialization_events()
    assert not [e for e in result.all_events if e.event_type == DagsterEventType.ASSET_MATERIALIZATION]


def test_nothing_published_yet_passes(tmp_path):
    _, outcomes = run_audit(StediLakehouse(landing_uri=str(tmp_path), lakehouse_uri=str(tmp_path / "lake")))
    assert all(passed and metadata == {"published": False} for passed, metadata in outcomes.values())


def without_consent(lakehouse: StediLakehouse) -> nw.LazyFrame:
    """Landing records without consent of customers who are not in customer_trusted at all."""
    landing = lakehouse.read_table(["customer_landing"]).filter(nw.col(RESEARCH_CONSENT).is_null())
    return rules.rows_with_key_not_in(landing, "email", lakehouse.read_table(["customer_trusted"]), "email")


def test_customer_trusted_with_a_non_consenting_customer_fails(lakehouse_copy):
    trusted = lakehouse_copy.read_table(["customer_trusted"])
    publish(lakehouse_copy, "customer_trusted", nw.concat([trusted, without_consent(lakehouse_copy).head(2)]))
    _, outcomes = run_audit(lakehouse_copy)
    passed, metadata = outcomes[("customer_trusted", "audit_consenting_customers_only")]
    assert not passed
    assert metadata["rows_without_consent"] == 2
    # Samples are masked: two characters of the local part, then the domain.
    assert "***@" in metadata["sample_rows_without_consent"]


def test_customer_trusted_keeping_a_customer_who_withdrew_fails(lakehouse_copy, tmp_path):
    # A consenting record kept although a later record of the same email withdrew consent.
    landing = lakehouse_copy.read_table(["customer_landing"])
    trusted = lakehouse_copy.read_table(["customer_trusted"])
    withdrawn = trusted.head(1).with_columns(
        nw.lit(None, nw.Int64).alias(RESEARCH_CONSENT), (nw.col("lastUpdateDate") + 1).alias("lastUpdateDate")
    )
    publish(lakehouse_copy, "customer_landing", nw.concat([landing, withdrawn]))
    _, outcomes = run_audit(lakehouse_copy)
    passed, metadata = outcomes[("customer_trusted", "audit_consenting_customers_only")]
    assert not passed and metadata["rows_whose_current_record_has_no_consent"] == 1
    # The same customer's readings and curated row fail their audits too.
    assert not outcomes[("customer_curated", "audit_consenting_customers_only")][0]
    assert not outcomes[("accelerometer_trusted", "audit_consenting_readings_only")][0]


def test_customer_curated_with_a_customer_not_in_customer_trusted_fails(lakehouse_copy):
    curated = lakehouse_copy.read_table(["customer_curated"])
    publish(lakehouse_copy, "customer_curated", nw.concat([curated, without_consent(lakehouse_copy).head(1)]))
    _, outcomes = run_audit(lakehouse_copy)
    passed, metadata = outcomes[("customer_curated", "audit_consenting_customers_only")]
    assert not passed
    assert metadata["rows_not_in_customer_trusted"] == 1 and metadata["rows_without_consent"] == 1


def test_accelerometer_trusted_with_a_non_consenting_reading_fails(lakehouse_copy):
    # Every landed reading, consenting or not.
    publish(lakehouse_copy, "accelerometer_trusted", lakehouse_copy.read_table(["accelerometer_landing"]))
    _, outcomes = run_audit(lakehouse_copy)
    passed, metadata = outcomes[("accelerometer_trusted", "audit_consenting_readings_only")]
    assert not passed and metadata["readings_of_users_not_in_customer_trusted"] > 0
    assert "***@" in metadata["sample_readings_of_users_not_in_customer_trusted"]


def test_step_trainer_trusted_with_a_device_outside_customer_curated_fails(lakehouse_copy):
    publish(lakehouse_copy, "step_trainer_trusted", lakehouse_copy.read_table(["step_trainer_landing"]))
    _, outcomes = run_audit(lakehouse_copy)
    passed, metadata = outcomes[("step_trainer_trusted", "audit_curated_devices_only")]
    assert not passed and metadata["rows_of_devices_not_in_customer_curated"] > 0


def test_machine_learning_curated_with_an_uncurated_device_fails(lakehouse_copy):
    ml = lakehouse_copy.read_table(["machine_learning_curated"])
    stranger = ml.head(1).with_columns(nw.lit("not-a-curated-device").alias("serialNumber"))
    publish(lakehouse_copy, "machine_learning_curated", nw.concat([ml, stranger]))
    _, outcomes = run_audit(lakehouse_copy)
    passed, metadata = outcomes[("machine_learning_curated", "audit_traceable_to_consenting_customers")]
    assert not passed and metadata["rows_of_devices_not_in_customer_curated"] == 1
    assert metadata["rows_without_trusted_reading"] == 0


def test_machine_learning_curated_with_an_identifier_column_fails(lakehouse_copy):
    ml = lakehouse_copy.read_table(["machine_learning_curated"])
    with_email = ml.with_columns(nw.lit("someone@example.com").alias("email"))
    lakehouse_copy.publish(["machine_learning_curated"], with_email, run_id="out-of-band-writer")
    _, outcomes = run_audit(lakehouse_copy)
    passed, metadata = outcomes[("machine_learning_curated", "audit_no_personal_identifiers")]
    assert not passed
    # Either the storage reports the undeclared column or the check names it.
    assert "email" in metadata.get("identifier_columns", "") or "email" in metadata.get("problem", "")


def test_a_missing_reference_table_fails_the_audit(lakehouse_copy):
    lakehouse_copy.store_for(lakehouse_copy.lakehouse_uri).delete_prefix(lakehouse_copy.table_uri(["customer_curated"]))
    _, outcomes = run_audit(lakehouse_copy)
    passed, metadata = outcomes[("step_trainer_trusted", "audit_curated_devices_only")]
    assert not passed and "cannot verify" in metadata["problem"]


@pytest.mark.parametrize("check", AUDIT_CHECKS, ids=lambda c: next(iter(c.check_keys)).to_user_string())
def test_every_audit_check_can_run_on_its_own(check):
    # What the UI's Execute button needs: a job of this one check alone.
    key = next(iter(check.check_keys))
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_check_selection={key}, asset_selection=set())
    assert {n for n in job.graph.node_names()} == {f"{key.asset_key.path[-1]}_{key.name}"}
