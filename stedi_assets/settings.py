"""Every setting of the pipeline, read from the environment in one place and validated.

:func:`read_settings` reads the environment once and returns a
:class:`Settings`, or raises :class:`SettingsError` whose message is one line
naming the variable, the value it holds and the values it accepts. It runs
before anything is read or published: ``build_resources`` calls it, and the
``stedi`` command turns the error into ``stedi: <message>`` and exit code 2.

The same checks apply to the ``lakehouse`` resource's fields when a run
starts (:func:`check_lakehouse_fields`), so launchpad configuration cannot
get past them either.

A variable that is set but empty counts as not set. This module imports
nothing heavy: the command reads the settings before it imports Dagster.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

DEFAULT_LANDING_URI = "data/landing"
DEFAULT_LAKEHOUSE_URI = "data/lakehouse"
DEFAULT_QUARANTINE_MAX_SHARE = 0.01
# Few retries: an unreachable S3 endpoint should fail a run in seconds.
DEFAULT_S3_MAX_ATTEMPTS = 3
DEFAULT_MAX_FILE_MB = 1024
# DuckDB's own default is 80% of the machine's memory; a query tool sharing a
# machine with the pipeline should ask for less. Raise it for large sorts and joins.
DEFAULT_QUERY_MEMORY_LIMIT = "2GB"
DEFAULT_NAMESPACE = "stedi"
# Maintenance: snapshots older than a week are expired, but the newest five of
# each table are always kept; unreferenced files younger than a day may belong
# to a write in flight and are never deleted.
DEFAULT_SNAPSHOT_MAX_AGE_HOURS = 168
DEFAULT_SNAPSHOTS_MIN_KEPT = 5
DEFAULT_ORPHAN_MIN_AGE_HOURS = 24

ENGINES = ("polars", "spark")
ML_JOINS = ("time", "same_customer")
PROFILES = ("stedi-reference", "simulated")
CONSENT_SCOPES = ("any_time", "from_consent_date")


class SettingsError(ValueError):
    """A setting holds a value the pipeline does not accept; the message is one line."""


class _Rejected(ValueError):
    """Raised by a parser: the value is not accepted. ``accepted`` describes what is."""

    def __init__(self, accepted: str, reason: str = ""):
        super().__init__(accepted)
        self.accepted = accepted
        self.reason = reason


def _error(name: str, text: Any, rejected: _Rejected) -> SettingsError:
    # repr() keeps the message on one line whatever the value holds.
    reason = f" ({rejected.reason})" if rejected.reason else ""
    return SettingsError(f"{name}={text!r} is not valid{reason}: expected {rejected.accepted}")


# -- parsers: text (or a configured value) in, validated value out ---------------


def _choice(choices: tuple[str, ...], allow_empty: bool = False) -> Callable[[str], str]:
    accepted = ", ".join(choices) + (", or empty for none" if allow_empty else "")

    def parse(text: str) -> str:
        if text in choices or (allow_empty and text == ""):
            return text
        raise _Rejected(f"one of {accepted}")

    return parse


_URI_ACCEPTED = "a local path, a file:// URI or s3://bucket[/prefix]"


def parse_uri(text: str) -> str:
    if not isinstance(text, str) or not text.strip() or text != text.strip() or "\n" in text:
        raise _Rejected(_URI_ACCEPTED)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise _Rejected(_URI_ACCEPTED, "no bucket")
    elif parsed.scheme not in ("", "file"):
        raise _Rejected(_URI_ACCEPTED, f"unsupported scheme {parsed.scheme!r}")
    return text


def parse_share(text: str | float) -> float:
    accepted = "a number between 0 and 1, e.g. 0.01"
    try:
        share = float(text)
    except (TypeError, ValueError):
        raise _Rejected(accepted) from None
    if math.isnan(share) or not 0.0 <= share <= 1.0:
        raise _Rejected(accepted)
    return share


def _positive_int(example: str) -> Callable[[str | int], int]:
    accepted = f"a whole number of at least 1, e.g. {example}"

    def parse(text: str | int) -> int:
        if isinstance(text, bool):
            raise _Rejected(accepted)
        if isinstance(text, int):
            number = text
        elif isinstance(text, str) and re.fullmatch(r"[0-9]{1,9}", text.strip()):
            number = int(text)
        else:
            raise _Rejected(accepted)
        if number < 1:
            raise _Rejected(accepted)
        return number

    return parse


parse_max_file_mb = _positive_int("1024")
parse_max_attempts = _positive_int("3")
parse_snapshots_min_kept = _positive_int("5")


def _hours(example: str) -> Callable[[str | int], int]:
    accepted = f"a whole number of hours, 0 or more, e.g. {example}"

    def parse(text: str | int) -> int:
        if isinstance(text, bool):
            raise _Rejected(accepted)
        if isinstance(text, int) and text >= 0:
            return text
        if isinstance(text, str) and re.fullmatch(r"[0-9]{1,9}", text.strip()):
            return int(text)
        raise _Rejected(accepted)

    return parse


parse_snapshot_max_age_hours = _hours("168")
parse_orphan_min_age_hours = _hours("24")


_CATALOG_URI_ACCEPTED = (
    "an SQLAlchemy URL whose driver is installed, such as sqlite:////path/catalog.db or "
    "postgresql+psycopg2://host/db (with psycopg2 installed), or empty"
)


def parse_catalog_uri(text: str) -> str:
    """An SQLAlchemy database URL (``dialect[+driver]://...``) whose driver imports, or empty for the default catalog.

    The driver is loaded the way SQLAlchemy loads it when it connects (its
    dialect, then the dialect's DBAPI module), without connecting: a URL whose
    driver is missing fails here rather than at each step of a run.
    """
    if not isinstance(text, str) or not (text == "" or re.fullmatch(r"[a-z][a-z0-9]*(\+[a-z0-9_]+)?://\S*", text)):
        raise _Rejected(_CATALOG_URI_ACCEPTED)
    if text:
        _check_catalog_driver(text)
    return text


def _check_catalog_driver(text: str) -> None:
    # Imported only when a catalog URL is set: the command reads the settings before anything heavy.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(text)
        dialect = url.get_dialect()
    except NoSuchModuleError:
        raise _Rejected(_CATALOG_URI_ACCEPTED, f"SQLAlchemy has no dialect {text.split(':', 1)[0]!r}") from None
    except (ArgumentError, ValueError) as error:
        raise _Rejected(_CATALOG_URI_ACCEPTED, str(error).splitlines()[0]) from None
    try:
        dialect.import_dbapi()
    except ImportError as error:
        missing = getattr(error, "name", None) or str(error)
        raise _Rejected(
            _CATALOG_URI_ACCEPTED,
            f"its driver {missing} is not installed; install it or name another with {url.get_backend_name()}+driver://",
        ) from None


def parse_namespace(text: str) -> str:
    if isinstance(text, str) and re.fullmatch(r"[A-Za-z0-9_]{1,255}", text):
        return text
    raise _Rejected("a namespace name of letters, digits and underscores, e.g. stedi")

_SPARK_MASTER = re.compile(
    r"local(\[(\*|[1-9][0-9]*)(,[0-9]+)?\])?"
    r"|local-cluster\[[1-9][0-9]*,[1-9][0-9]*,[1-9][0-9]*\]"
    r"|yarn"
    r"|(spark|k8s|mesos)://\S+"
)


def parse_spark_master(text: str) -> str:
    if isinstance(text, str) and _SPARK_MASTER.fullmatch(text):
        return text
    raise _Rejected("local, local[N], local[*], spark://host:port, yarn or k8s://host:port")


def _spark_conf(text: str | Mapping[str, str]) -> dict[str, str]:
    accepted = "spark.* settings as key=value,key=value, e.g. spark.sql.shuffle.partitions=4"
    if isinstance(text, Mapping):
        items = [f"{key}={value}" for key, value in text.items()]
    elif isinstance(text, str):
        items = [part.strip() for part in text.split(",") if part.strip()]
    else:
        raise _Rejected(accepted)
    conf = {}
    for item in items:
        key, equals, value = item.partition("=")
        key = key.strip()
        if not equals or not re.fullmatch(r"spark\.[A-Za-z0-9_.\-]+", key):
            raise _Rejected(accepted, f"{item!r} is not a spark.*=value setting")
        conf[key] = value.strip()
    return conf


def parse_spark_conf(text: str) -> dict[str, str]:
    """``spark.a=1,spark.b=2`` as a dict; every key must be a ``spark.*`` setting."""
    try:
        return _spark_conf(text)
    except _Rejected as rejected:
        raise _error("STEDI_SPARK_CONF", text, rejected) from None


def parse_glue_database(text: str) -> str:
    # Glue lower-cases names; Athena reads letters, digits and underscores unquoted.
    if isinstance(text, str) and (text == "" or re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_\-]{0,254}", text)):
        return text
    raise _Rejected("a Glue database name (letters, digits, _ or -, at most 255 characters), or empty for none")


_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_memory_limit(text: str) -> str:
    match = _SIZE.fullmatch(text.strip()) if isinstance(text, str) else None
    # Below about a megabyte DuckDB cannot even open its connection.
    if match is None or float(match.group(1)) * _UNITS[match.group(2).lower()] < 2**20:
        raise _Rejected("a size with its unit, at least 1MiB, e.g. 500MB, 2GB or 4GiB")
    return f"{match.group(1)}{match.group(2)}"


def parse_cron(text: str) -> str:
    accepted = "a cron expression of five fields, e.g. '0 * * * *'"
    if not isinstance(text, str) or not re.fullmatch(r"\S+( \S+){4}", text.strip()):
        raise _Rejected(accepted)
    # Dagster's own check, the one a ScheduleDefinition makes of its cron
    # string; imported only when a schedule is configured: the command reads
    # the settings before it imports Dagster.
    from dagster import DagsterInvalidDefinitionError, ScheduleDefinition

    try:
        with warnings.catch_warnings():
            # Its warning on steps beyond a field's range ('*/90') comes when
            # the real schedule is built; this probe only validates.
            warnings.simplefilter("ignore")
            ScheduleDefinition(name="cron_check", cron_schedule=text.strip(), job_name="cron_check")
    except DagsterInvalidDefinitionError:
        raise _Rejected(accepted) from None
    return text.strip()


parse_interval_seconds = _positive_int("15")
parse_minutes = _positive_int("1440")
parse_remind_hours = _hours("24")


def parse_seconds(text: str | float) -> float:
    """A duration in seconds above 0 and at most an hour; fractions allowed."""
    accepted = "a number of seconds above 0 and at most 3600, e.g. 10"
    if isinstance(text, bool):
        raise _Rejected(accepted)
    try:
        seconds = float(text)
    except (TypeError, ValueError):
        raise _Rejected(accepted) from None
    if math.isnan(seconds) or not 0.0 < seconds <= 3600.0:
        raise _Rejected(accepted)
    return seconds


def parse_http_url(text: str) -> str:
    parsed = urlparse(text) if isinstance(text, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname or any(c.isspace() for c in text):
        raise _Rejected("an http:// or https:// URL")
    return text


_EMAIL = re.compile(r"[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+|[^@\s,<>]+@localhost")


def parse_email(text: str) -> str:
    if isinstance(text, str) and _EMAIL.fullmatch(text.strip()):
        return text.strip()
    raise _Rejected("an email address, e.g. stedi@example.org")


def parse_email_list(text: str) -> str:
    addresses = [a.strip() for a in text.split(",")] if isinstance(text, str) else []
    if not addresses or not all(_EMAIL.fullmatch(a) for a in addresses):
        raise _Rejected("email addresses separated by commas, e.g. ops@example.org,oncall@example.org")
    return ",".join(addresses)


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    user: str | None
    password: str | None
    implicit_tls: bool


_SMTP_ACCEPTED = "smtp://user:password@host:port (or smtps:// for TLS from the start)"


def _smtp_server(text: str) -> SmtpServer:
    parsed = urlparse(text) if isinstance(text, str) else None
    if parsed is None or parsed.scheme not in ("smtp", "smtps") or not parsed.hostname:
        raise _Rejected(_SMTP_ACCEPTED)
    try:
        port = parsed.port
    except ValueError:
        raise _Rejected(_SMTP_ACCEPTED, "the port is not a number") from None
    implicit_tls = parsed.scheme == "smtps"
    return SmtpServer(
        host=parsed.hostname,
        port=port or (465 if implicit_tls else 25),
        user=unquote(parsed.username) if parsed.username else None,
        password=unquote(parsed.password) if parsed.password else None,
        implicit_tls=implicit_tls,
    )


def _parse_smtp_url(text: str) -> str:
    _smtp_server(text)
    return text


def smtp_server(text: str) -> SmtpServer:
    """The parts of an ``smtp://user:password@host:port`` URL; the error never shows the URL (it holds a password)."""
    try:
        return _smtp_server(text)
    except _Rejected as rejected:
        raise _error("STEDI_SMTP_URL", _HIDDEN, rejected) from None


class _Hidden:
    def __repr__(self) -> str:
        return "<hidden>"


_HIDDEN = _Hidden()
ALERT_SEVERITIES = ("WARN", "ERROR")
DEFAULT_UI_URL = "http://localhost:3000"
DEFAULT_EMAIL_FROM = "stedi-lakehouse@localhost"
# One delivery attempt (connect, send, read the answer) ends after this long,
# whatever the server does; see alerts.StediAlerts.longest_delivery_seconds.
DEFAULT_ALERT_TIMEOUT_SECONDS = 10.0


# -- the settings ------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    variable: str
    field: str
    parse: Callable[[Any], Any]
    default: Any
    secret: bool = False
    """A secret's value never appears in a message."""
    shown: Callable[[Any], Any] | None = None
    """The value as a message shows it (e.g. a URL without its password); default: as it is."""

    def display(self, value: Any) -> Any:
        if self.secret:
            return _HIDDEN
        return self.shown(value) if self.shown is not None and isinstance(value, str) else value


def _without_password(url: str) -> str:
    return re.sub(r"^([a-z][a-z0-9+]*://[^/:@]*:)[^/@]*@", r"\1***@", url)


SETTINGS: tuple[Setting, ...] = (
    Setting("STEDI_LANDING_URI", "landing_uri", parse_uri, DEFAULT_LANDING_URI),
    Setting("STEDI_LAKEHOUSE_URI", "lakehouse_uri", parse_uri, DEFAULT_LAKEHOUSE_URI),
    Setting("STEDI_PROFILE", "profile", _choice(PROFILES, allow_empty=True), ""),
    Setting("STEDI_ENGINE", "engine", _choice(ENGINES), "polars"),
    Setting("STEDI_ML_JOIN", "ml_join", _choice(ML_JOINS), "time"),
    Setting("STEDI_GLUE_DATABASE", "glue_database", parse_glue_database, ""),
    Setting("STEDI_CATALOG_URI", "catalog_uri", parse_catalog_uri, "", shown=_without_password),
    Setting("STEDI_NAMESPACE", "namespace", parse_namespace, DEFAULT_NAMESPACE),
    Setting("STEDI_SNAPSHOT_MAX_AGE_HOURS", "snapshot_max_age_hours", parse_snapshot_max_age_hours,
            DEFAULT_SNAPSHOT_MAX_AGE_HOURS),
    Setting("STEDI_SNAPSHOTS_MIN_KEPT", "snapshots_min_kept", parse_snapshots_min_kept, DEFAULT_SNAPSHOTS_MIN_KEPT),
    Setting("STEDI_ORPHAN_MIN_AGE_HOURS", "orphan_min_age_hours", parse_orphan_min_age_hours,
            DEFAULT_ORPHAN_MIN_AGE_HOURS),
    Setting("STEDI_SPARK_MASTER", "spark_master", parse_spark_master, "local[*]"),
    Setting("STEDI_SPARK_CONF", "spark_conf", _spark_conf, {}),
    Setting("STEDI_QUARANTINE_MAX_SHARE", "quarantine_max_share", parse_share, DEFAULT_QUARANTINE_MAX_SHARE),
    Setting("STEDI_CONSENT_SCOPE", "consent_scope", _choice(CONSENT_SCOPES), "any_time"),
    Setting("STEDI_MAX_FILE_MB", "max_file_mb", parse_max_file_mb, DEFAULT_MAX_FILE_MB),
    Setting("STEDI_QUERY_MEMORY_LIMIT", "query_memory_limit", parse_memory_limit, DEFAULT_QUERY_MEMORY_LIMIT),
    Setting("AWS_MAX_ATTEMPTS", "aws_max_attempts", parse_max_attempts, DEFAULT_S3_MAX_ATTEMPTS),
    # Operations: sensors, schedules, freshness (fixed when the code location loads) and alerts.
    Setting("STEDI_SENSOR_INTERVAL_SECONDS", "sensor_interval_seconds", parse_interval_seconds, 15),
    Setting("STEDI_AUDIT_CRON", "audit_cron", parse_cron, "0 * * * *"),
    Setting("STEDI_FULL_RUN_CRON", "full_run_cron", parse_cron, "0 3 * * *"),
    Setting("STEDI_FRESHNESS_WARN_MINUTES", "freshness_warn_minutes", parse_minutes, 12 * 60),
    Setting("STEDI_FRESHNESS_FAIL_MINUTES", "freshness_fail_minutes", parse_minutes, 24 * 60),
    Setting("STEDI_ALERT_WEBHOOK_URL", "alert_webhook_url", parse_http_url, ""),
    Setting("STEDI_ALERT_EMAIL_TO", "alert_email_to", parse_email_list, ""),
    Setting("STEDI_ALERT_EMAIL_FROM", "alert_email_from", parse_email, DEFAULT_EMAIL_FROM),
    Setting("STEDI_SMTP_URL", "smtp_url", _parse_smtp_url, "", secret=True),
    Setting("STEDI_ALERT_MIN_SEVERITY", "alert_min_severity", _choice(ALERT_SEVERITIES), "WARN"),
    Setting("STEDI_UI_URL", "ui_url", parse_http_url, DEFAULT_UI_URL),
    Setting("STEDI_ALERT_TIMEOUT_SECONDS", "alert_timeout_seconds", parse_seconds, DEFAULT_ALERT_TIMEOUT_SECONDS),
    Setting("STEDI_ALERT_REMIND_HOURS", "alert_remind_hours", parse_remind_hours, 0),
)
VARIABLES = tuple(s.variable for s in SETTINGS)


@dataclass(frozen=True)
class Settings:
    """The validated settings, and which variables were set (non-empty) in the environment."""

    landing_uri: str = DEFAULT_LANDING_URI
    lakehouse_uri: str = DEFAULT_LAKEHOUSE_URI
    profile: str = ""
    engine: str = "polars"
    ml_join: str = "time"
    glue_database: str = ""
    catalog_uri: str = ""
    namespace: str = DEFAULT_NAMESPACE
    snapshot_max_age_hours: int = DEFAULT_SNAPSHOT_MAX_AGE_HOURS
    snapshots_min_kept: int = DEFAULT_SNAPSHOTS_MIN_KEPT
    orphan_min_age_hours: int = DEFAULT_ORPHAN_MIN_AGE_HOURS
    spark_master: str = "local[*]"
    spark_conf: dict[str, str] = field(default_factory=dict)
    quarantine_max_share: float = DEFAULT_QUARANTINE_MAX_SHARE
    consent_scope: str = "any_time"
    max_file_mb: int = DEFAULT_MAX_FILE_MB
    query_memory_limit: str = DEFAULT_QUERY_MEMORY_LIMIT
    aws_max_attempts: int = DEFAULT_S3_MAX_ATTEMPTS
    sensor_interval_seconds: int = 15
    audit_cron: str = "0 * * * *"
    full_run_cron: str = "0 3 * * *"
    freshness_warn_minutes: int = 12 * 60
    freshness_fail_minutes: int = 24 * 60
    alert_webhook_url: str = ""
    alert_email_to: str = ""
    alert_email_from: str = DEFAULT_EMAIL_FROM
    smtp_url: str = field(default="", repr=False)
    alert_min_severity: str = "WARN"
    ui_url: str = DEFAULT_UI_URL
    alert_timeout_seconds: float = DEFAULT_ALERT_TIMEOUT_SECONDS
    alert_remind_hours: int = 0
    set_variables: frozenset[str] = frozenset()

    def is_set(self, variable: str) -> bool:
        return variable in self.set_variables

    @property
    def landing_configured(self) -> bool:
        """Whether a landing zone was configured at all (else the default folder is used)."""
        return self.is_set("STEDI_LANDING_URI")


def read_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Every setting from ``environ`` (default: the process environment), validated.

    Raises :class:`SettingsError` for the first variable, in the order of
    :data:`SETTINGS`, whose value is not accepted.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    set_variables = set()
    for setting in SETTINGS:
        text = environ.get(setting.variable)
        if not text:
            continue
        try:
            values[setting.field] = setting.parse(text)
        except _Rejected as rejected:
            raise _error(setting.variable, setting.display(text), rejected) from None
        set_variables.add(setting.variable)
    settings = Settings(**values, set_variables=frozenset(set_variables))
    if settings.freshness_warn_minutes >= settings.freshness_fail_minutes:
        raise SettingsError(
            f"STEDI_FRESHNESS_WARN_MINUTES={settings.freshness_warn_minutes} is not valid: expected fewer minutes "
            f"than STEDI_FRESHNESS_FAIL_MINUTES={settings.freshness_fail_minutes}"
        )
    if settings.alert_email_to and not settings.smtp_url:
        raise SettingsError("STEDI_ALERT_EMAIL_TO is set but STEDI_SMTP_URL is not: alert emails need an SMTP server")
    return settings


_LAKEHOUSE_FIELDS = (
    "landing_uri", "lakehouse_uri", "profile", "engine", "ml_join", "glue_database",
    "spark_master", "spark_conf", "quarantine_max_share", "consent_scope", "max_file_mb",
    "catalog_uri", "namespace", "snapshot_max_age_hours", "snapshots_min_kept", "orphan_min_age_hours",
)


def check_lakehouse_fields(values: Mapping[str, Any]) -> None:
    """Validate the ``lakehouse`` resource's configured fields as a run starts.

    The same rules as the environment's; the message names the field as it is
    written in the launchpad (``lakehouse.config.profile``).
    """
    for setting in SETTINGS:
        if setting.field not in _LAKEHOUSE_FIELDS or setting.field not in values:
            continue
        value = values[setting.field]
        try:
            setting.parse(value)
        except _Rejected as rejected:
            raise _error(f"lakehouse.config.{setting.field}", setting.display(value), rejected) from None


# The ``alerts`` resource's fields and the variables that set them.
_ALERT_FIELDS = {
    "webhook_url": "STEDI_ALERT_WEBHOOK_URL",
    "email_to": "STEDI_ALERT_EMAIL_TO",
    "email_from": "STEDI_ALERT_EMAIL_FROM",
    "smtp_url": "STEDI_SMTP_URL",
    "min_severity": "STEDI_ALERT_MIN_SEVERITY",
    "ui_url": "STEDI_UI_URL",
    "timeout_seconds": "STEDI_ALERT_TIMEOUT_SECONDS",
    "remind_hours": "STEDI_ALERT_REMIND_HOURS",
}


def check_alert_fields(values: Mapping[str, Any]) -> None:
    """Validate the ``alerts`` resource's configured fields: the environment's rules, for launchpad config too.

    An empty channel field means the channel is not used. The message names
    the field as it is written in the launchpad (``alerts.config.webhook_url``);
    the SMTP URL's value is never shown.
    """
    settings = {setting.variable: setting for setting in SETTINGS}
    for name, variable in _ALERT_FIELDS.items():
        if name not in values:
            continue
        setting, value = settings[variable], values[name]
        if value == "" and setting.default == "":
            continue
        try:
            setting.parse(value)
        except _Rejected as rejected:
            raise _error(f"alerts.config.{name}", _HIDDEN if setting.secret else value, rejected) from None
    if values.get("email_to") and not values.get("smtp_url"):
        raise SettingsError(
            "alerts.config.email_to is set but alerts.config.smtp_url is not: alert emails need an SMTP server"
        )
