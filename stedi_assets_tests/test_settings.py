"""Every setting: accepted values, defaults, and the one-line error for a bad value.

Covers settings.read_settings (every STEDI_* variable and AWS_MAX_ATTEMPTS),
build_resources refusing a bad environment, and the launchpad fields' checks.
The command's handling of a bad setting is in test_cli.py; a run refusing a
bad launchpad config is in test_definitions.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stedi_assets import settings as settings_module
from stedi_assets.lakehouse.engines import ENGINE_NAMES
from stedi_assets.domain.profiles import PROFILE_NAMES
from stedi_assets.orchestration.resources import build_resources
from stedi_assets.settings import (
    VARIABLES,
    Settings,
    SettingsError,
    check_lakehouse_fields,
    read_settings,
)

# Values each variable must refuse; one or more per variable, every variable listed.
BAD = {
    "STEDI_LANDING_URI": ["http://example.com/landing", "s3://", " data/landing", "s3a://bucket/landing"],
    "STEDI_LAKEHOUSE_URI": ["ftp://host/lake", "s3:///prefix", "gs://bucket/lake"],
    "STEDI_PROFILE": ["unknown", "Simulated", "stedi_reference"],
    "STEDI_ENGINE": ["pandas", "Polars", "duckdb"],
    "STEDI_ML_JOIN": ["wrong", "customer", "TIME"],
    "STEDI_GLUE_DATABASE": ["has space", "semi;colon", "x" * 256, "-leading"],
    "STEDI_SPARK_MASTER": ["localhost", "local[0]", "local[two]", "spark:/head", "cluster"],
    "STEDI_SPARK_REMOTE": ["localhost:15002", "spark://head:7077", "sc://", "sc://head:port", "sc://head :15002"],
    "STEDI_SPARK_CONF": ["foo", "driver.memory=2g", "spark.a=1,foo", "=1"],
    "STEDI_QUARANTINE_MAX_SHARE": ["abc", "2", "nan", "-0.1", "inf", "1%"],
    "STEDI_CONSENT_SCOPE": ["always", "from-consent-date", "ANY_TIME"],
    "STEDI_MAX_FILE_MB": ["0", "-5", "1.5", "abc", "1GB", "10000000000"],
    "STEDI_SCHEMA_WIDEN_TO_STRING": ["maybe", "2", "on"],
    "STEDI_CURATED_EXTRA_COLUMNS": ["gyro-x", "a,b c", "1abc", "a@b.com"],
    "STEDI_QUERY_MEMORY_LIMIT": ["abc", "2", "0GB", "-1GB", "2 parsecs", "80%", "10KB", "1000000B"],
    "STEDI_CATALOG_URI": ["catalog.db", "/srv/catalog.db", "sqlite:catalog", "postgres ql://host/db",
                          "mysql://user@host/catalog", "nosuchdb://host/catalog"],
    "STEDI_NAMESPACE": ["two words", "stedi.prod", "stedi-prod", "x" * 256],
    "STEDI_SNAPSHOT_MAX_AGE_HOURS": ["-1", "1.5", "a week", "7d"],
    "STEDI_SNAPSHOTS_MIN_KEPT": ["0", "-1", "all", "2.5"],
    "STEDI_ORPHAN_MIN_AGE_HOURS": ["-1", "0.5", "a day"],
    "STEDI_WITHDRAWAL_RETENTION_HOURS": ["-1", "1.5", "forever"],
    "AWS_MAX_ATTEMPTS": ["abc", "0", "-1", "2.5", "three"],
    "STEDI_SENSOR_INTERVAL_SECONDS": ["0", "soon", "1.5", "-15"],
    "STEDI_AUDIT_CRON": ["hourly", "0 * * *", "61 * * * *", "0 0 31 2 *", "* * * * * *"],
    "STEDI_FULL_RUN_CRON": ["daily", "0 3 * * * *"],
    "STEDI_FRESHNESS_WARN_MINUTES": ["0", "12h", "-1"],
    "STEDI_FRESHNESS_FAIL_MINUTES": ["0", "1 day"],
    "STEDI_ALERT_WEBHOOK_URL": ["hooks.slack.com/services/x", "ftp://host/hook", "http://", "https://host/a b"],
    "STEDI_ALERT_EMAIL_TO": ["ops", "ops@example.org;oncall@example.org", "ops@example.org,", "a@b@c.org"],
    "STEDI_ALERT_EMAIL_FROM": ["stedi", "a@b@c.org", "x@y.org,z@w.org"],
    "STEDI_SMTP_URL": ["mail.example.org:25", "http://user:pw@mail.example.org", "smtp://user:pw@mail.example.org:port"],
    "STEDI_ALERT_MIN_SEVERITY": ["INFO", "warn", "error"],
    "STEDI_UI_URL": ["localhost:3000", "dagster.example.org"],
    "STEDI_ALERT_TIMEOUT_SECONDS": ["0", "-1", "soon", "nan", "inf", "3601", "10s"],
    "STEDI_ALERT_REMIND_HOURS": ["-1", "1.5", "daily"],
}

# Accepted values and what they become.
GOOD = {
    "STEDI_LANDING_URI": [("data/landing", "data/landing"), ("s3://raw/landing", "s3://raw/landing"),
                          ("file:///srv/landing", "file:///srv/landing"), ("/srv/landing", "/srv/landing")],
    "STEDI_LAKEHOUSE_URI": [("s3://lake", "s3://lake"), ("./lake", "./lake")],
    "STEDI_PROFILE": [("stedi-reference", "stedi-reference"), ("simulated", "simulated")],
    "STEDI_ENGINE": [("polars", "polars"), ("spark", "spark")],
    "STEDI_ML_JOIN": [("time", "time"), ("same_customer", "same_customer")],
    "STEDI_GLUE_DATABASE": [("stedi", "stedi"), ("Research_2", "Research_2"), ("stedi-prod", "stedi-prod")],
    "STEDI_SPARK_MASTER": [("local", "local"), ("local[*]", "local[*]"), ("local[4]", "local[4]"),
                           ("local[2,3]", "local[2,3]"), ("spark://head:7077", "spark://head:7077"),
                           ("yarn", "yarn"), ("k8s://https://host:443", "k8s://https://host:443")],
    "STEDI_SPARK_REMOTE": [("sc://127.0.0.1:15002", "sc://127.0.0.1:15002"), ("sc://spark-connect", "sc://spark-connect"),
                           ("sc://host:443/;use_ssl=true;token=x", "sc://host:443/;use_ssl=true;token=x")],
    "STEDI_SPARK_CONF": [("spark.a=1, spark.b.c=x=y", {"spark.a": "1", "spark.b.c": "x=y"})],
    "STEDI_QUARANTINE_MAX_SHARE": [("0", 0.0), ("0.25", 0.25), ("1", 1.0), ("1e-3", 0.001)],
    "STEDI_CONSENT_SCOPE": [("any_time", "any_time"), ("from_consent_date", "from_consent_date")],
    "STEDI_MAX_FILE_MB": [("1", 1), ("2048", 2048)],
    "STEDI_SCHEMA_WIDEN_TO_STRING": [("true", True), ("false", False), ("1", True)],
    "STEDI_CURATED_EXTRA_COLUMNS": [("gyroX", ["gyroX"]), (" gyroX , firmware ", ["gyroX", "firmware"])],
    "STEDI_QUERY_MEMORY_LIMIT": [("2GB", "2GB"), ("500MB", "500MB"), ("4GiB", "4GiB"), ("1.5 GB", "1.5GB"),
                                 ("1MiB", "1MiB")],
    "STEDI_CATALOG_URI": [("sqlite:////srv/lake/catalog.db", "sqlite:////srv/lake/catalog.db"),
                          ("sqlite+pysqlite:///lake/catalog.db", "sqlite+pysqlite:///lake/catalog.db")],
    "STEDI_NAMESPACE": [("stedi", "stedi"), ("Research_2", "Research_2")],
    "STEDI_SNAPSHOT_MAX_AGE_HOURS": [("0", 0), ("168", 168)],
    "STEDI_SNAPSHOTS_MIN_KEPT": [("1", 1), ("5", 5)],
    "STEDI_ORPHAN_MIN_AGE_HOURS": [("0", 0), ("24", 24)],
    "STEDI_WITHDRAWAL_RETENTION_HOURS": [("0", 0), ("720", 720)],
    "AWS_MAX_ATTEMPTS": [("1", 1), ("10", 10)],
    "STEDI_SENSOR_INTERVAL_SECONDS": [("5", 5), ("15", 15)],
    "STEDI_AUDIT_CRON": [("0 * * * *", "0 * * * *"), ("*/10 * * * *", "*/10 * * * *")],
    "STEDI_FULL_RUN_CRON": [("30 2 * * *", "30 2 * * *"), ("0 3 * * MON", "0 3 * * MON")],
    "STEDI_FRESHNESS_WARN_MINUTES": [("60", 60)],
    "STEDI_FRESHNESS_FAIL_MINUTES": [("2880", 2880)],
    "STEDI_ALERT_WEBHOOK_URL": [("https://hooks.slack.com/services/T0/B0/X", "https://hooks.slack.com/services/T0/B0/X"),
                                ("http://127.0.0.1:8080/hook", "http://127.0.0.1:8080/hook")],
    "STEDI_ALERT_EMAIL_TO": [("ops@example.org", "ops@example.org"),
                             ("ops@example.org, oncall@example.org", "ops@example.org,oncall@example.org")],
    "STEDI_ALERT_EMAIL_FROM": [("stedi@example.org", "stedi@example.org")],
    "STEDI_SMTP_URL": [("smtp://user:pw@mail.example.org:587", "smtp://user:pw@mail.example.org:587"),
                       ("smtps://mail.example.org", "smtps://mail.example.org")],
    "STEDI_ALERT_MIN_SEVERITY": [("WARN", "WARN"), ("ERROR", "ERROR")],
    "STEDI_UI_URL": [("https://dagster.example.org", "https://dagster.example.org")],
    "STEDI_ALERT_TIMEOUT_SECONDS": [("10", 10.0), ("2.5", 2.5), ("3600", 3600.0)],
    "STEDI_ALERT_REMIND_HOURS": [("0", 0), ("24", 24)],
}
# Settings that need another to be set too.
COMPANIONS = {"STEDI_ALERT_EMAIL_TO": {"STEDI_SMTP_URL": "smtp://mail.example.org"}}
# Variables whose value never appears in a message.
SECRETS = {"STEDI_SMTP_URL"}


def test_every_variable_is_tested_and_validated():
    assert set(BAD) == set(GOOD) == set(VARIABLES)


def test_every_stedi_variable_the_package_names_is_a_validated_setting():
    package = Path(settings_module.__file__).parent
    named = {v for path in package.rglob("*.py") for v in re.findall(r'"(STEDI_[A-Z_]*[A-Z])"', path.read_text())}
    assert named and named <= set(VARIABLES)


def test_choices_match_the_profiles_and_engines_they_stand_for():
    assert settings_module.PROFILES == PROFILE_NAMES
    assert settings_module.ENGINES == ENGINE_NAMES


def test_defaults_without_environment():
    settings = read_settings({})
    assert settings == Settings()
    assert (settings.profile, settings.engine, settings.ml_join, settings.consent_scope) == ("", "polars", "time", "any_time")
    assert (settings.quarantine_max_share, settings.max_file_mb, settings.aws_max_attempts) == (0.01, 1024, 3)
    assert settings.query_memory_limit == "2GB"
    assert not settings.landing_configured


def test_an_empty_variable_counts_as_not_set():
    settings = read_settings({variable: "" for variable in VARIABLES})
    assert settings == Settings()


@pytest.mark.parametrize("variable, text, value", [(v, t, x) for v, cases in GOOD.items() for t, x in cases])
def test_accepted_values(variable, text, value):
    settings = read_settings({variable: text, **COMPANIONS.get(variable, {})})
    field = next(s.field for s in settings_module.SETTINGS if s.variable == variable)
    assert getattr(settings, field) == value
    assert settings.is_set(variable)


@pytest.mark.parametrize("variable, text", [(v, t) for v, texts in BAD.items() for t in texts])
def test_a_bad_value_is_one_line_naming_variable_value_and_accepted_values(variable, text):
    with pytest.raises(SettingsError) as raised:
        read_settings({variable: text})
    message = str(raised.value)
    assert "\n" not in message
    shown = "<hidden>" if variable in SECRETS else repr(text)
    assert message.startswith(f"{variable}={shown} is not valid")
    assert "expected " in message
    # The resources are never built from a bad environment.
    with pytest.raises(SettingsError, match=re.escape(variable)):
        build_resources({variable: text})


def test_the_message_lists_the_accepted_values():
    with pytest.raises(SettingsError, match=r"expected one of stedi-reference, simulated, or empty for none$"):
        read_settings({"STEDI_PROFILE": "unknown"})
    with pytest.raises(SettingsError, match=r"expected one of time, same_customer$"):
        read_settings({"STEDI_ML_JOIN": "wrong"})
    with pytest.raises(SettingsError, match=r"expected a number between 0 and 1"):
        read_settings({"STEDI_QUARANTINE_MAX_SHARE": "nan"})


def test_a_value_with_a_line_break_stays_on_one_line():
    with pytest.raises(SettingsError) as raised:
        read_settings({"STEDI_ENGINE": "polars\nspark"})
    assert "\n" not in str(raised.value) and r"'polars\nspark'" in str(raised.value)


@pytest.mark.parametrize(
    "field, value",
    [("profile", "wrong"), ("ml_join", "wrong"), ("engine", "pandas"), ("landing_uri", ""),
     ("lakehouse_uri", "http://x/y"), ("spark_master", "nowhere"), ("spark_conf", {"driver.memory": "2g"}),
     ("glue_database", "a b"), ("quarantine_max_share", 2.0)],
)
def test_launchpad_fields_get_the_same_checks(field, value):
    with pytest.raises(SettingsError, match=rf"^lakehouse\.config\.{field}=.* is not valid"):
        check_lakehouse_fields({"landing_uri": "data/landing", "lakehouse_uri": "data/lakehouse", field: value})
    check_lakehouse_fields({"landing_uri": "data/landing", "lakehouse_uri": "s3://lake", "profile": "", "spark_conf": {}})


def test_a_spark_master_and_a_spark_connect_server_exclude_each_other():
    both = {"STEDI_SPARK_MASTER": "spark://head:7077", "STEDI_SPARK_REMOTE": "sc://head:15002"}
    with pytest.raises(SettingsError, match=r"^STEDI_SPARK_MASTER and STEDI_SPARK_REMOTE are both set: .*unset one$"):
        read_settings(both)
    assert read_settings({"STEDI_SPARK_REMOTE": "sc://head:15002"}).spark_master == "local[*]"  # the default is no choice
    with pytest.raises(SettingsError, match=r"^lakehouse\.config\.spark_master and lakehouse\.config\.spark_remote are both set"):
        check_lakehouse_fields({"spark_master": "yarn", "spark_remote": "sc://head:15002"})
    check_lakehouse_fields({"spark_master": "local[*]", "spark_remote": "sc://head:15002"})


def test_a_secret_is_never_in_the_message():
    with pytest.raises(SettingsError) as raised:
        read_settings({"STEDI_SMTP_URL": "http://user:hunter2@mail.example.org"})
    assert "hunter2" not in str(raised.value)
    assert str(raised.value).startswith("STEDI_SMTP_URL=<hidden> is not valid: expected smtp://user:password@host:port")


def test_the_freshness_warn_window_must_be_shorter_than_the_fail_window():
    with pytest.raises(SettingsError, match=r"^STEDI_FRESHNESS_WARN_MINUTES=1440 is not valid: expected fewer minutes than STEDI_FRESHNESS_FAIL_MINUTES=1440$"):
        read_settings({"STEDI_FRESHNESS_WARN_MINUTES": "1440"})
    assert read_settings({"STEDI_FRESHNESS_WARN_MINUTES": "1", "STEDI_FRESHNESS_FAIL_MINUTES": "2"}).freshness_fail_minutes == 2


def test_alert_emails_need_an_smtp_server():
    with pytest.raises(SettingsError, match="^STEDI_ALERT_EMAIL_TO is set but STEDI_SMTP_URL is not"):
        read_settings({"STEDI_ALERT_EMAIL_TO": "ops@example.org"})


def test_a_catalog_url_whose_driver_is_not_installed_is_refused_naming_the_driver():
    # SQLAlchemy loads the dialect and its driver module; nothing connects.
    with pytest.raises(SettingsError) as raised:
        read_settings({"STEDI_CATALOG_URI": "mysql://stedi:hunter2@db.example.org/catalog"})
    message = str(raised.value)
    assert message.startswith(
        "STEDI_CATALOG_URI='mysql://stedi:***@db.example.org/catalog' is not valid "
        "(its driver MySQLdb is not installed; install it or name another with mysql+driver://)"
    )
    assert "\n" not in message and "hunter2" not in message
    with pytest.raises(SettingsError, match=r"^lakehouse\.config\.catalog_uri='mysql://db/catalog' is not valid \(its driver MySQLdb"):
        check_lakehouse_fields({"catalog_uri": "mysql://db/catalog"})


@pytest.mark.parametrize("driver, url", [("psycopg2", "postgresql+psycopg2://user@host/catalog"),
                                         ("psycopg", "postgresql://user@host/catalog")])
def test_a_postgresql_catalog_url_is_accepted_exactly_when_its_driver_imports(driver, url):
    import importlib.util

    if importlib.util.find_spec(driver) is not None:
        assert read_settings({"STEDI_CATALOG_URI": url}).catalog_uri == url
    else:
        with pytest.raises(SettingsError, match=rf"\(its driver {driver} is not installed"):
            read_settings({"STEDI_CATALOG_URI": url})


@pytest.mark.parametrize("resource", ["lakehouse", "alerts", "s3"])
def test_the_resource_fields_are_the_settings_fields(resource):
    # The resources' config schema is Dagster's and stays plain fields; they must match the model exactly.
    from dagster_aws.s3 import S3Resource

    from stedi_assets.orchestration.alerts import StediAlerts
    from stedi_assets.orchestration.resources import StediLakehouse

    cls = {"lakehouse": StediLakehouse, "alerts": StediAlerts, "s3": S3Resource}[resource]
    own = {"lakehouse": {"s3"}, "alerts": {"attempts", "retry_delay_seconds"}}.get(resource)
    settings = {s.config_field: s for s in settings_module.SETTINGS if s.resource == resource}
    if own is not None:  # every field is a setting, but the resource's own
        assert set(cls.model_fields) - own == set(settings)
    for name, setting in settings.items():
        field = cls.model_fields[name]
        if resource == "s3":  # dagster-aws's own field: build_resources always passes the setting's value
            assert build_resources({})["lakehouse"].s3.max_attempts == setting.default
            continue
        assert field.get_default(call_default_factory=True) == setting.default, name
        assert field.description == setting.description, name
    assert StediLakehouse.model_fields["engine"].default == "polars" and type(StediLakehouse.model_fields["engine"].default) is str


def test_a_setting_declares_its_variable_default_description_and_choices_once():
    setting = settings_module.SETTING_OF_VARIABLE["STEDI_ENGINE"]
    assert (setting.field, setting.default, setting.option) == ("engine", "polars", "--engine")
    assert tuple(settings_module.EngineName) == ENGINE_NAMES
    assert all(s.description for s in settings_module.SETTINGS)


def test_overrides_take_the_place_of_the_variables_and_are_validated_the_same():
    settings = read_settings({"STEDI_ENGINE": "spark", "STEDI_PROFILE": "simulated"}, {"engine": "polars", "profile": None})
    assert (settings.engine, settings.profile) == ("polars", "simulated")
    assert settings.overridden("engine") and settings.is_set("STEDI_ENGINE") and not settings.overridden("profile")
    with pytest.raises(SettingsError, match=r"^STEDI_PROFILE='nope' is not valid: expected one of"):
        read_settings({}, {"profile": "nope"})
    # An override is passed to the resource as its value, not as the variable's EnvVar.
    assert build_resources({"STEDI_ENGINE": "spark"}, {"engine": "polars"})["lakehouse"].engine == "polars"
