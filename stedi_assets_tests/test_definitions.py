"""The code location as Dagster loads it: assets, groups, lineage, checks, settings.

Covers build_resources (the STEDI_* variables) and launchpad configuration of
the lakehouse resource, including a bad launchpad value failing the run before
anything is published. Running the tables is covered elsewhere; each
setting's accepted values are in test_settings.py.
"""

from __future__ import annotations


import pytest
from dagster import AssetKey, EnvVar

from stedi_assets.checks import CHECKS
from stedi_assets.definitions import build_definitions, defs
from stedi_assets.resources import DEFAULT_LAKEHOUSE_URI, build_resources
from stedi_assets.schemas import TABLES
from stedi_assets.storage import normalize_uri
from stedi_assets_tests.conftest import stored_table


def test_assets_groups_and_lineage():
    graph = defs.resolve_asset_graph()
    keys = {key.path[-1] for key in graph.get_all_asset_keys()}
    assert keys == set(TABLES)
    for name, table in TABLES.items():
        assert graph.get(AssetKey(name)).group_name == table.zone
    parents = {name: {p.path[-1] for p in graph.get(AssetKey(name)).parent_keys} for name in TABLES}
    assert parents == {
        "customer_landing": set(),
        "accelerometer_landing": set(),
        "step_trainer_landing": set(),
        "customer_trusted": {"customer_landing", "customer_quarantine"},
        "accelerometer_trusted": {"accelerometer_landing", "customer_trusted"},
        "customer_curated": {"customer_trusted", "accelerometer_trusted"},
        "step_trainer_trusted": {"step_trainer_landing", "customer_curated", "customer_landing", "customer_trusted"},
        "machine_learning_curated": {"step_trainer_trusted", "accelerometer_trusted", "customer_curated"},
        "customer_quarantine": set(),
        "accelerometer_quarantine": set(),
        "step_trainer_quarantine": set(),
    }


def test_every_asset_is_in_the_lakehouse_pool():
    # One pool for every write: a deployment's pool limit queues overlapping runs' writes.
    from stedi_assets.definitions import zone_assets

    assert {asset.op.pool for asset in zone_assets} == {"stedi_lakehouse"}


def test_catalog_and_maintenance_settings_come_from_the_environment():
    lakehouse = build_resources({
        "STEDI_CATALOG_URI": "postgresql://catalog-host/stedi", "STEDI_NAMESPACE": "lab",
        "STEDI_SNAPSHOT_MAX_AGE_HOURS": "48", "STEDI_SNAPSHOTS_MIN_KEPT": "3", "STEDI_ORPHAN_MIN_AGE_HOURS": "6",
    })["lakehouse"]
    assert lakehouse.catalog_uri == EnvVar("STEDI_CATALOG_URI")
    assert lakehouse.namespace == EnvVar("STEDI_NAMESPACE")
    assert lakehouse.snapshot_max_age_hours == EnvVar.int("STEDI_SNAPSHOT_MAX_AGE_HOURS")
    defaults = build_resources({})["lakehouse"]
    assert (defaults.catalog_uri, defaults.namespace) == ("", "stedi")


def test_every_check_is_declared_on_its_asset():
    graph = defs.resolve_asset_graph()
    declared = {(key.asset_key.path[-1], key.name) for key in graph.asset_check_keys}
    assert declared == {(table, check.name) for table, checks in CHECKS.items() for check in checks}


def test_settings_come_from_the_environment_as_env_vars():
    lakehouse = build_resources(
        {"STEDI_LAKEHOUSE_URI": "s3://bucket/lake", "STEDI_PROFILE": "stedi-reference", "STEDI_CONSENT_SCOPE": "from_consent_date"}
    )["lakehouse"]
    # A set variable is passed by name, so the UI shows the name and the value is resolved at run time.
    assert lakehouse.lakehouse_uri == EnvVar("STEDI_LAKEHOUSE_URI")
    assert lakehouse.profile == EnvVar("STEDI_PROFILE")
    assert lakehouse.consent_scope == EnvVar("STEDI_CONSENT_SCOPE")


def test_defaults_without_environment():
    lakehouse = build_resources({})["lakehouse"]
    assert lakehouse.lakehouse_uri == normalize_uri(DEFAULT_LAKEHOUSE_URI)
    assert (lakehouse.profile, lakehouse.engine, lakehouse.ml_join) == ("", "polars", "time")
    assert lakehouse.consent_scope == "any_time"


def test_launchpad_config_reaches_assets_and_storage(stedi_landing, tmp_path):
    # What a user does in the launchpad: set the lakehouse resource's config for one run.
    job = build_definitions().resolve_job_def("stedi_job")
    config = {"landing_uri": str(stedi_landing), "lakehouse_uri": str(tmp_path / "lake"), "profile": "stedi-reference"}
    result = job.execute_in_process(run_config={"resources": {"lakehouse": {"config": config}}})

    assert result.success
    assert stored_table(tmp_path / "lake", "customer_curated").height == 482


def test_launchpad_consent_scope(stedi_landing, tmp_path):
    job = build_definitions().resolve_job_def("stedi_job")
    config = {
        "landing_uri": str(stedi_landing), "lakehouse_uri": str(tmp_path / "lake"), "profile": "stedi-reference",
        "consent_scope": "from_consent_date",
    }
    result = job.execute_in_process(run_config={"resources": {"lakehouse": {"config": config}}})

    assert result.success
    assert stored_table(tmp_path / "lake", "customer_curated").height == 464


@pytest.mark.parametrize(
    "field, value, accepted",
    [
        ("profile", "wrong", "one of stedi-reference, simulated, or empty for none"),
        ("ml_join", "wrong", "one of time, same_customer"),
        ("engine", "pandas", "one of polars, spark"),
        ("consent_scope", "sometimes", "one of any_time, from_consent_date"),
        ("namespace", "two words", "a namespace name of letters, digits and underscores, e.g. stedi"),
    ],
)
def test_bad_launchpad_config_fails_the_run_before_anything_is_published(stedi_landing, tmp_path, field, value, accepted):
    job = build_definitions().resolve_job_def("stedi_job")
    config = {"landing_uri": str(stedi_landing), "lakehouse_uri": str(tmp_path / "lake"), field: value}
    result = job.execute_in_process(run_config={"resources": {"lakehouse": {"config": config}}}, raise_on_error=False)

    assert not result.success
    assert not (tmp_path / "lake").exists()  # no table, not even a quarantine table
    assert result.get_asset_materialization_events() == []
    failure = next(e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE")
    error = failure.event_specific_data.error
    assert error.cls_name == "SettingsError"
    assert error.message.strip() == (
        f"stedi_assets.settings.SettingsError: lakehouse.config.{field}={value!r} is not valid: expected {accepted}"
    )
