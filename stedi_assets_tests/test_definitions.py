"""The code location as Dagster loads it: assets, groups, lineage, checks, settings.

Covers build_resources (the STEDI_* variables) and launchpad configuration of
the lakehouse resource, including a bad launchpad value failing the run before
anything is published. Running the tables is covered elsewhere; each
setting's accepted values are in test_settings.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from dagster import AssetKey, DefaultScheduleStatus, DefaultSensorStatus, EnvVar

from stedi_assets.orchestration.checks import CHECKS, HISTORY_CHECKS
from stedi_assets.definitions import build_definitions, defs, zone_assets
from stedi_assets.orchestration.audit import AUDIT_CHECKS
from stedi_assets.orchestration.resources import build_resources
from stedi_assets.settings import DEFAULT_LAKEHOUSE_URI
from stedi_assets.domain.schemas import TABLES
from stedi_assets.lakehouse.storage import normalize_uri
from stedi_assets_tests.conftest import stored_table

# Node names of stedi_job are the zone assets' op names (a landing multi-asset is one op).
ZONE_KEYS = [AssetKey(asset.op.name) for asset in zone_assets]


def test_assets_groups_and_lineage():
    graph = defs.resolve_asset_graph()
    keys = {key.path[-1] for key in graph.get_all_asset_keys()}
    feeds = {"customer_feed", "accelerometer_feed", "step_trainer_feed"}
    assert keys == set(TABLES) | feeds
    for name, table in TABLES.items():
        assert graph.get(AssetKey(name)).group_name == table.zone
    # The feeds are observable source assets in the landing group, with no code version; each
    # derived table's code version is its rule settings.
    for name in feeds:
        node = graph.get(AssetKey(name))
        assert node.is_observable and not node.is_materializable and node.group_name == "landing"
    for name in TABLES:
        derived = TABLES[name].zone in ("trusted", "curated")
        assert graph.get(AssetKey(name)).code_version == ("consent_scope=any_time;ml_join=time" if derived else None)
    parents = {name: {p.path[-1] for p in graph.get(AssetKey(name)).parent_keys} for name in TABLES}
    assert parents == {
        "customer_landing": {"customer_feed"},
        "accelerometer_landing": {"accelerometer_feed"},
        "step_trainer_landing": {"step_trainer_feed"},
        "customer_trusted": {"customer_landing", "customer_quarantine"},
        "accelerometer_trusted": {"accelerometer_landing", "customer_trusted"},
        "customer_curated": {"customer_trusted", "accelerometer_trusted"},
        "step_trainer_trusted": {
            "step_trainer_landing", "customer_curated", "customer_landing", "customer_trusted", "customer_quarantine",
        },
        "machine_learning_curated": {"step_trainer_trusted", "accelerometer_trusted", "customer_curated"},
        "customer_quarantine": {"customer_feed"},
        "accelerometer_quarantine": {"accelerometer_feed"},
        "step_trainer_quarantine": {"step_trainer_feed"},
    }


def test_every_asset_is_in_the_lakehouse_pool():
    # One pool for every write: a deployment's pool limit queues overlapping runs' writes.
    from stedi_assets.definitions import zone_assets

    assert {asset.op.pool for asset in zone_assets} == {"stedi_lakehouse"}


def test_catalog_and_maintenance_settings_come_from_the_environment():
    lakehouse = build_resources({
        "STEDI_CATALOG_URI": "sqlite:////srv/stedi/catalog.db", "STEDI_NAMESPACE": "lab",
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
    in_step = {(table, check.name) for table, checks in (*CHECKS.items(), *HISTORY_CHECKS.items()) for check in checks}
    audits = {(key.asset_key.path[-1], key.name) for check in AUDIT_CHECKS for key in check.check_keys}
    assert declared == in_step | audits
    assert all(name.startswith("audit_") for _, name in audits)


def test_stedi_job_runs_the_in_step_checks_and_the_audit_job_only_the_audits():
    stedi_job = defs.resolve_job_def("stedi_job")
    # The feeds' observation first, then a step per zone table (a landing step per feed).
    assert {n for n in stedi_job.graph.node_names()} == {k.path[-1] for k in ZONE_KEYS} | {"landing_feeds"}
    audit_job = defs.resolve_job_def("stedi_audit_job")
    assert all("_audit_" in n for n in audit_job.graph.node_names())
    assert len(audit_job.graph.node_names()) == len(AUDIT_CHECKS)


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


# -- operations: sensors, schedules, freshness, alert settings ------------------------------------


def test_sensors_and_the_audit_schedule_run_by_default_and_the_daily_run_does_not():
    sensors = {s.name: s for s in defs.sensors}
    assert set(sensors) == {
        "landing_sensor", "check_failure_alert_sensor", "run_failure_alert_sensor",
        "sensor_tick_alert_sensor", "stale_table_alert_sensor", "erase_run_cleanup_sensor",
    }
    assert all(s.default_status == DefaultSensorStatus.RUNNING for s in sensors.values())
    assert sensors["landing_sensor"].minimum_interval_seconds == 15
    schedules = {s.name: s for s in defs.schedules}
    assert schedules["stedi_audit_schedule"].cron_schedule == "0 * * * *"
    assert schedules["stedi_audit_schedule"].default_status == DefaultScheduleStatus.RUNNING
    assert schedules["stedi_audit_schedule"].job_name == "stedi_audit_job"
    assert schedules["stedi_daily_schedule"].default_status == DefaultScheduleStatus.STOPPED
    assert schedules["stedi_daily_schedule"].job_name == "stedi_job"


def test_operations_settings_reach_sensors_schedules_and_freshness_policies(monkeypatch):
    for variable, value in {
        "STEDI_SENSOR_INTERVAL_SECONDS": "5", "STEDI_AUDIT_CRON": "*/10 * * * *", "STEDI_FULL_RUN_CRON": "30 2 * * *",
        "STEDI_FRESHNESS_WARN_MINUTES": "30", "STEDI_FRESHNESS_FAIL_MINUTES": "90",
    }.items():
        monkeypatch.setenv(variable, value)
    built = build_definitions()
    assert {s.minimum_interval_seconds for s in built.sensors} == {5}
    assert {s.name: s.cron_schedule for s in built.schedules} == {
        "stedi_audit_schedule": "*/10 * * * *", "stedi_daily_schedule": "30 2 * * *",
        "lakehouse_maintenance_daily": "0 3 * * *",
    }
    graph = built.resolve_asset_graph()
    policies = {key.path[-1]: graph.get(key).freshness_policy for key in graph.get_all_asset_keys()}
    curated = {name for name, table in TABLES.items() if table.zone == "curated"}
    assert {name for name, policy in policies.items() if policy} == curated == {"customer_curated", "machine_learning_curated"}
    policy = policies["machine_learning_curated"]
    assert (policy.fail_window.to_timedelta(), policy.warn_window.to_timedelta()) == (
        timedelta(minutes=90), timedelta(minutes=30),
    )


def test_alert_settings_are_env_vars_and_the_smtp_url_never_a_value():
    environ = {
        "STEDI_ALERT_WEBHOOK_URL": "https://hooks.example.org/T/B/X",
        "STEDI_ALERT_EMAIL_TO": "ops@example.org",
        "STEDI_SMTP_URL": "smtp://u:secret@mail.example.org:587",
        "STEDI_ALERT_MIN_SEVERITY": "ERROR",
        "STEDI_UI_URL": "https://dagster.example.org",
    }
    alerts = build_resources(environ)["alerts"]
    assert alerts.smtp_url == EnvVar("STEDI_SMTP_URL")
    assert alerts.webhook_url == EnvVar("STEDI_ALERT_WEBHOOK_URL")
    assert alerts.min_severity == EnvVar("STEDI_ALERT_MIN_SEVERITY")
    assert "secret" not in repr(alerts)
    defaults = build_resources({})["alerts"]
    assert (defaults.webhook_url, defaults.email_to, defaults.min_severity, defaults.ui_url) == (
        "", "", "WARN", "http://localhost:3000",
    )
    assert (defaults.timeout_seconds, defaults.remind_hours) == (10.0, 0)
    bounded = build_resources({"STEDI_ALERT_TIMEOUT_SECONDS": "4", "STEDI_ALERT_REMIND_HOURS": "24"})["alerts"]
    assert (bounded.timeout_seconds, bounded.remind_hours) == (4.0, EnvVar.int("STEDI_ALERT_REMIND_HOURS"))
