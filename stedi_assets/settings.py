"""Every setting of the pipeline, declared once, read from the environment in one place and validated.

:class:`Settings` is the one declaration: each field holds its default and
description, and its :class:`Setting` (annotation metadata) names its
variable, its parser, the command-line option and the resource field it
sets. The choices (engine, ML join, consent scope, profile, alert severity)
are the enums below, which the engines, the profiles and the alerts use too.
The resources' fields, their ``EnvVar`` wiring (``defs.resources``), the
command's options and the settings table of docs/settings.md follow from it.

:func:`read_settings` reads the environment once (and takes the command's
options as overrides) and returns a :class:`Settings`, or raises
:class:`SettingsError` whose message is one line naming the variable, the
value it holds and the values it accepts. It runs before anything is read or
published: the code location calls it, and the ``stedi`` command turns the
error into ``stedi: <message>`` and exit code 2.

The same parsers apply to the resources' fields when a run starts
(:func:`check_resource_fields`), so launchpad configuration cannot get past
them either.

A variable that is set but empty counts as not set. This module imports
nothing heavy (pydantic only): the command reads the settings before it
imports Dagster.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo

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



# -- the choices: each list of accepted values is declared here, once ----------------


class EngineName(StrEnum):
    """The engine that computes the tables."""

    POLARS = "polars"
    SPARK = "spark"


class MlJoin(StrEnum):
    """How machine_learning_curated pairs accelerometer and step-trainer readings."""

    TIME = "time"
    """The reference rule: readings taken at the same time."""
    SAME_CUSTOMER = "same_customer"
    """Same time and the same owner."""


class ProfileName(StrEnum):
    """The data-set profiles with exact row counts (``domain.profiles``)."""

    STEDI_REFERENCE = "stedi-reference"
    SIMULATED = "simulated"


class ConsentScope(StrEnum):
    """Which readings a research consent covers."""

    ANY_TIME = "any_time"
    """The reference rule: every reading of a consenting customer."""
    FROM_CONSENT_DATE = "from_consent_date"
    """Only readings taken at or after shareWithResearchAsOfDate."""


class AlertSeverity(StrEnum):
    """The lowest severity of a failed check that alerts, in increasing order."""

    WARN = "WARN"
    ERROR = "ERROR"


ENGINES = tuple(EngineName)
ML_JOINS = tuple(MlJoin)
PROFILES = tuple(ProfileName)
CONSENT_SCOPES = tuple(ConsentScope)
ALERT_SEVERITIES = tuple(AlertSeverity)


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


def _choice(choices: type[StrEnum], allow_empty: bool = False) -> Callable[[str], StrEnum | str]:
    accepted = ", ".join(choices) + (", or empty for none" if allow_empty else "")

    def parse(text: str) -> StrEnum | str:
        if allow_empty and text == "":
            return text
        if isinstance(text, str) and text in tuple(choices):
            return choices(text)
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
parse_withdrawal_retention_hours = _hours("0")


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


_SPARK_REMOTE = re.compile(r"sc://[A-Za-z0-9.\-]+(:[0-9]{1,5})?(/[^\s]*)?")


def parse_spark_remote(text: str) -> str:
    if isinstance(text, str) and (text == "" or _SPARK_REMOTE.fullmatch(text)):
        return text
    raise _Rejected("a Spark Connect URL sc://host:port (optionally /;token=...), or empty for none")


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


def parse_flag(text: str | bool) -> bool:
    """``true``/``false`` (also 1/0, yes/no), or a boolean as configured."""
    if isinstance(text, bool):
        return text
    if isinstance(text, str) and text.strip().lower() in ("true", "1", "yes"):
        return True
    if isinstance(text, str) and text.strip().lower() in ("false", "0", "no"):
        return False
    raise _Rejected("true or false")


_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_column_list(text: str | Sequence[str]) -> list[str]:
    """Column names separated by commas (``gyroX,firmware``), or a list of them as configured."""
    accepted = "column names separated by commas, e.g. gyroX,firmware"
    if isinstance(text, str):
        names = [part.strip() for part in text.split(",") if part.strip()]
    elif isinstance(text, Sequence) and all(isinstance(name, str) for name in text):
        names = [name.strip() for name in text]
    else:
        raise _Rejected(accepted)
    for name in names:
        if not _COLUMN_NAME.fullmatch(name):
            raise _Rejected(accepted, f"{name!r} is not a column name")
    return names


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
DEFAULT_UI_URL = "http://localhost:3000"
DEFAULT_EMAIL_FROM = "stedi-lakehouse@localhost"
# One delivery attempt (connect, send, read the answer) ends after this long,
# whatever the server does; see alerts.StediAlerts.longest_delivery_seconds.
DEFAULT_ALERT_TIMEOUT_SECONDS = 10.0


# -- the settings ------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """How one field of :class:`Settings` is set: its variable, its parser, where else it appears.

    Declared as the field's annotation metadata; the field itself holds the
    default and the description. :data:`SETTINGS` lists them with ``field``,
    ``default`` and ``description`` filled in.
    """

    variable: str
    parse: Callable[[Any], Any]
    secret: bool = False
    """A secret's value never appears in a message."""
    shown: Callable[[Any], Any] | None = None
    """The value as a message shows it (e.g. a URL without its password); default: as it is."""
    option: str | None = None
    """The ``stedi`` command-line option that overrides it."""
    resource: str | None = None
    """The resource configured with it: ``lakehouse``, ``alerts`` or ``s3`` (the lakehouse's S3 connection)."""
    resource_field: str | None = None
    """The resource's field; default: the setting's own field name."""
    field: str = ""
    default: Any = None
    description: str = ""

    def display(self, value: Any) -> Any:
        if self.secret:
            return _HIDDEN
        return self.shown(value) if self.shown is not None and isinstance(value, str) else value

    @property
    def config_field(self) -> str | None:
        """The resource field it sets (``None`` if no resource has it)."""
        return (self.resource_field or self.field) if self.resource else None

    def check(self, name: str, value: Any) -> Any:
        """``value`` parsed, or :class:`SettingsError` naming it ``name``."""
        try:
            return self.parse(value)
        except _Rejected as rejected:
            raise _error(name, self.display(value), rejected) from None


def _without_password(url: str) -> str:
    return re.sub(r"^([a-z][a-z0-9+]*://[^/:@]*:)[^/@]*@", r"\1***@", url)


_LAKEHOUSE = "lakehouse"
_ALERTS = "alerts"


class Settings(BaseModel):
    """Every setting of the pipeline, validated; each field declares its variable, default, description and parser.

    Built by :func:`read_settings` from the environment (and the command's
    options); ``Settings()`` holds the defaults.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    landing_uri: Annotated[str, Setting("STEDI_LANDING_URI", parse_uri, option="--landing", resource=_LAKEHOUSE)] = Field(
        DEFAULT_LANDING_URI, description="Root of the raw feeds: {landing}/{feed}/*.json. Local path or s3://."
    )
    lakehouse_uri: Annotated[
        str, Setting("STEDI_LAKEHOUSE_URI", parse_uri, option="--lakehouse", resource=_LAKEHOUSE)
    ] = Field(DEFAULT_LAKEHOUSE_URI, description="Root of the zone tables: {lakehouse}/{zone}/{table}/. Local path or s3://.")
    profile: Annotated[
        ProfileName | Literal[""],
        Setting("STEDI_PROFILE", _choice(ProfileName, allow_empty=True), option="--profile", resource=_LAKEHOUSE),
    ] = Field("", description=f"Data-set profile for the row-count checks ({', '.join(ProfileName)}); empty for none.")
    engine: Annotated[
        EngineName, Setting("STEDI_ENGINE", _choice(EngineName), option="--engine", resource=_LAKEHOUSE)
    ] = Field(EngineName.POLARS, description=f"Engine that computes the tables: {' or '.join(EngineName)}.")
    ml_join: Annotated[MlJoin, Setting("STEDI_ML_JOIN", _choice(MlJoin), option="--ml-join", resource=_LAKEHOUSE)] = Field(
        MlJoin.TIME,
        description="machine_learning_curated pairing: 'time' (reference rule) or 'same_customer' (time and owner).",
    )
    glue_database: Annotated[
        str, Setting("STEDI_GLUE_DATABASE", parse_glue_database, option="--glue-database", resource=_LAKEHOUSE)
    ] = Field("", description="Glue Data Catalog database of an s3:// lakehouse's tables; empty: the namespace.")
    catalog_uri: Annotated[
        str, Setting("STEDI_CATALOG_URI", parse_catalog_uri, shown=_without_password, resource=_LAKEHOUSE)
    ] = Field(
        "", description="SQLAlchemy URL of the Iceberg SQL catalog; empty: {lakehouse}/catalog.db locally, Glue on s3://."
    )
    namespace: Annotated[str, Setting("STEDI_NAMESPACE", parse_namespace, resource=_LAKEHOUSE)] = Field(
        DEFAULT_NAMESPACE, description="Catalog namespace (database) holding every table."
    )
    snapshot_max_age_hours: Annotated[
        int, Setting("STEDI_SNAPSHOT_MAX_AGE_HOURS", parse_snapshot_max_age_hours, resource=_LAKEHOUSE)
    ] = Field(DEFAULT_SNAPSHOT_MAX_AGE_HOURS, description="Maintenance: snapshots older than this are expired.")
    snapshots_min_kept: Annotated[
        int, Setting("STEDI_SNAPSHOTS_MIN_KEPT", parse_snapshots_min_kept, resource=_LAKEHOUSE)
    ] = Field(DEFAULT_SNAPSHOTS_MIN_KEPT, description="Maintenance: the newest snapshots of a table always kept.")
    orphan_min_age_hours: Annotated[
        int, Setting("STEDI_ORPHAN_MIN_AGE_HOURS", parse_orphan_min_age_hours, resource=_LAKEHOUSE)
    ] = Field(
        DEFAULT_ORPHAN_MIN_AGE_HOURS,
        description="Maintenance: unreferenced files younger than this (a write in flight) are never deleted.",
    )
    withdrawal_retention_hours: Annotated[
        int, Setting("STEDI_WITHDRAWAL_RETENTION_HOURS", parse_withdrawal_retention_hours, resource=_LAKEHOUSE)
    ] = Field(
        0,
        description="How long a trusted or curated table's earlier snapshots that hold a person who has since "
        "withdrawn stay readable after the withdrawal is published (0: the run that publishes it expires them).",
    )
    spark_master: Annotated[str, Setting("STEDI_SPARK_MASTER", parse_spark_master, resource=_LAKEHOUSE)] = Field(
        "local[*]", description="Spark engine: the master URL (local[*], spark://host:7077, yarn, ...)."
    )
    spark_remote: Annotated[str, Setting("STEDI_SPARK_REMOTE", parse_spark_remote, resource=_LAKEHOUSE)] = Field(
        "", description="Spark engine: a Spark Connect server (sc://host:15002) to run on instead of a master."
    )
    spark_conf: Annotated[dict[str, str], Setting("STEDI_SPARK_CONF", _spark_conf, resource=_LAKEHOUSE)] = Field(
        default_factory=dict, description="Spark engine: spark.* settings passed to the session as they are."
    )
    quarantine_max_share: Annotated[
        float, Setting("STEDI_QUARANTINE_MAX_SHARE", parse_share, resource=_LAKEHOUSE)
    ] = Field(
        DEFAULT_QUARANTINE_MAX_SHARE,
        description="Share of a feed's records that may be quarantined; above it the landing table is not published.",
    )
    consent_scope: Annotated[
        ConsentScope, Setting("STEDI_CONSENT_SCOPE", _choice(ConsentScope), resource=_LAKEHOUSE)
    ] = Field(
        ConsentScope.ANY_TIME,
        description="Readings a research consent covers: 'any_time' (reference rule) or 'from_consent_date' "
        "(only readings taken at or after shareWithResearchAsOfDate).",
    )
    max_file_mb: Annotated[int, Setting("STEDI_MAX_FILE_MB", parse_max_file_mb, resource=_LAKEHOUSE)] = Field(
        DEFAULT_MAX_FILE_MB,
        description="Largest landing file, in MiB after decompression; a larger file is quarantined unread.",
    )
    schema_widen_to_string: Annotated[
        bool, Setting("STEDI_SCHEMA_WIDEN_TO_STRING", parse_flag, resource=_LAKEHOUSE)
    ] = Field(
        False,
        description="A new landing column whose first values disagree in kind (numbers and text...) becomes a "
        "string column; when false it takes the kind most values have, and values it cannot take are quarantined.",
    )
    curated_extra_columns: Annotated[
        list[str], Setting("STEDI_CURATED_EXTRA_COLUMNS", parse_column_list, resource=_LAKEHOUSE)
    ] = Field(
        default_factory=list,
        description="Columns added to a landing table from delivered records that the curated tables may carry "
        "(comma-separated); any other added column stays out of them (check columns_awaiting_decision).",
    )
    query_memory_limit: Annotated[str, Setting("STEDI_QUERY_MEMORY_LIMIT", parse_memory_limit)] = Field(
        DEFAULT_QUERY_MEMORY_LIMIT, description="DuckDB's memory limit for `stedi query`."
    )
    aws_max_attempts: Annotated[
        int, Setting("AWS_MAX_ATTEMPTS", parse_max_attempts, resource="s3", resource_field="max_attempts")
    ] = Field(DEFAULT_S3_MAX_ATTEMPTS, description="Attempts per S3 request.")
    # Operations: sensors, schedules, freshness (fixed when the code location loads) and alerts.
    sensor_interval_seconds: Annotated[int, Setting("STEDI_SENSOR_INTERVAL_SECONDS", parse_interval_seconds)] = Field(
        15, description="Minimum interval between ticks of every sensor."
    )
    audit_cron: Annotated[str, Setting("STEDI_AUDIT_CRON", parse_cron)] = Field(
        "0 * * * *", description="When the audit schedule runs the audit checks."
    )
    full_run_cron: Annotated[str, Setting("STEDI_FULL_RUN_CRON", parse_cron)] = Field(
        "0 3 * * *", description="When the daily schedule (stopped by default) runs every table and check."
    )
    freshness_warn_minutes: Annotated[int, Setting("STEDI_FRESHNESS_WARN_MINUTES", parse_minutes)] = Field(
        12 * 60, description="Curated tables: WARN after this long without a materialization."
    )
    freshness_fail_minutes: Annotated[int, Setting("STEDI_FRESHNESS_FAIL_MINUTES", parse_minutes)] = Field(
        24 * 60, description="Curated tables: FAIL (stale, alert) after this long; above the warn window."
    )
    alert_webhook_url: Annotated[
        str, Setting("STEDI_ALERT_WEBHOOK_URL", parse_http_url, resource=_ALERTS, resource_field="webhook_url")
    ] = Field("", description="HTTP(S) URL to POST each alert to as JSON ({'text': ...}).")
    alert_email_to: Annotated[
        str, Setting("STEDI_ALERT_EMAIL_TO", parse_email_list, resource=_ALERTS, resource_field="email_to")
    ] = Field("", description="Comma-separated addresses to email each alert to (needs smtp_url).")
    alert_email_from: Annotated[
        str, Setting("STEDI_ALERT_EMAIL_FROM", parse_email, resource=_ALERTS, resource_field="email_from")
    ] = Field(DEFAULT_EMAIL_FROM, description="Sender address of alert emails.")
    smtp_url: Annotated[str, Setting("STEDI_SMTP_URL", _parse_smtp_url, secret=True, resource=_ALERTS)] = Field(
        "", repr=False, description="smtp://user:password@host:port (secret: set as an EnvVar)."
    )
    alert_min_severity: Annotated[
        AlertSeverity,
        Setting("STEDI_ALERT_MIN_SEVERITY", _choice(AlertSeverity), resource=_ALERTS, resource_field="min_severity"),
    ] = Field(AlertSeverity.WARN, description="Failed checks of this severity or higher alert: WARN or ERROR.")
    ui_url: Annotated[str, Setting("STEDI_UI_URL", parse_http_url, resource=_ALERTS)] = Field(
        DEFAULT_UI_URL, description="Base URL of the Dagster UI, for links to runs."
    )
    alert_timeout_seconds: Annotated[
        float, Setting("STEDI_ALERT_TIMEOUT_SECONDS", parse_seconds, resource=_ALERTS, resource_field="timeout_seconds")
    ] = Field(
        DEFAULT_ALERT_TIMEOUT_SECONDS,
        description="Deadline of one delivery attempt (connect, send, answer), whatever the server does.",
    )
    alert_remind_hours: Annotated[
        int, Setting("STEDI_ALERT_REMIND_HOURS", parse_remind_hours, resource=_ALERTS, resource_field="remind_hours")
    ] = Field(0, description="Alert again while a check or table stays failing, this often; 0: never.")

    # The variables (settings and AWS_VARIABLES) set in the environment, and the fields given as overrides.
    _environment: frozenset[str] = PrivateAttr(default=frozenset())
    _overridden: frozenset[str] = PrivateAttr(default=frozenset())

    @field_validator("*", mode="before")
    @classmethod
    def _parse(cls, value: Any, info: ValidationInfo) -> Any:
        # Each field's own parser; a value it refuses is reported by read_settings, naming the variable.
        return _setting_of(cls.model_fields[info.field_name]).parse(value)

    def in_environment(self, variable: str) -> bool:
        """Whether ``variable`` is set (non-empty) in the environment the settings were read from."""
        return variable in self._environment

    def is_set(self, variable: str) -> bool:
        """Whether ``variable``'s setting was given, in the environment or as an override (a command option)."""
        return variable in self._environment or SETTING_OF_VARIABLE[variable].field in self._overridden

    def overridden(self, field: str) -> bool:
        return field in self._overridden

    @property
    def landing_configured(self) -> bool:
        """Whether a landing zone was configured at all (else the default folder is used)."""
        return self.is_set("STEDI_LANDING_URI")


def _setting_of(info: FieldInfo) -> Setting:
    return next(m for m in info.metadata if isinstance(m, Setting))


SETTINGS: tuple[Setting, ...] = tuple(
    replace(
        _setting_of(info), field=name, default=info.get_default(call_default_factory=True), description=info.description
    )
    for name, info in Settings.model_fields.items()
)
"""Every setting, in the order they are validated (the order of the fields)."""
SETTING_OF_FIELD = {s.field: s for s in SETTINGS}
SETTING_OF_VARIABLE = {s.variable: s for s in SETTINGS}
VARIABLES = tuple(SETTING_OF_VARIABLE)

AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL",
)
"""The standard AWS variables boto3 reads itself; :func:`read_settings` records which are set, never their values."""


def read_settings(environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Every setting from ``environ`` (default: the process environment) and ``overrides``, validated.

    The one place the environment is read. ``overrides`` maps field names to
    values that take the place of the variables (the command's options); an
    override of ``None`` or ``""`` is no override, as an empty variable is
    not set. Raises :class:`SettingsError` for the first setting, in the
    order of :data:`SETTINGS`, whose value is not accepted; the message names
    the variable (an option is reported as the variable it overrides).
    """
    environ = os.environ if environ is None else environ
    environment = frozenset(v for v in (*VARIABLES, *AWS_VARIABLES) if environ.get(v))
    values = {s.field: environ[s.variable] for s in SETTINGS if s.variable in environment}
    given = {field: value for field, value in (overrides or {}).items() if value is not None and value != ""}
    unknown = set(given) - set(SETTING_OF_FIELD)
    if unknown:
        raise SettingsError(f"no such setting: {', '.join(sorted(unknown))}")
    values.update(given)
    try:
        settings = Settings.model_validate(values)
    except ValidationError as invalid:
        raise _first_error(invalid) from None
    settings._environment = environment
    settings._overridden = frozenset(given)
    if settings.freshness_warn_minutes >= settings.freshness_fail_minutes:
        raise SettingsError(
            f"STEDI_FRESHNESS_WARN_MINUTES={settings.freshness_warn_minutes} is not valid: expected fewer minutes "
            f"than STEDI_FRESHNESS_FAIL_MINUTES={settings.freshness_fail_minutes}"
        )
    if settings.spark_remote and settings.is_set("STEDI_SPARK_MASTER"):
        raise SettingsError(_BOTH_SPARK_TARGETS.format(master="STEDI_SPARK_MASTER", remote="STEDI_SPARK_REMOTE"))
    if settings.alert_email_to and not settings.smtp_url:
        raise SettingsError("STEDI_ALERT_EMAIL_TO is set but STEDI_SMTP_URL is not: alert emails need an SMTP server")
    return settings


_BOTH_SPARK_TARGETS = (
    "{master} and {remote} are both set: the Spark engine runs either on a master or on a Spark Connect server; "
    "unset one"
)


def _first_error(invalid: ValidationError) -> SettingsError:
    error = invalid.errors()[0]
    setting = SETTING_OF_FIELD[error["loc"][0]]
    rejected = error.get("ctx", {}).get("error")
    if not isinstance(rejected, _Rejected):  # a parser's value the field's type refuses: a bug, still one line
        rejected = _Rejected(error["msg"])
    return _error(setting.variable, setting.display(error["input"]), rejected)


def check_resource_fields(resource: str, values: Mapping[str, Any]) -> None:
    """Validate a resource's configured fields (``values``) as a run starts: the environment's rules.

    An empty value of a setting whose default is empty means none. The
    message names the field as it is written in the launchpad
    (``lakehouse.config.profile``); a secret's value is never shown.
    """
    for setting in SETTINGS:
        if setting.resource != resource or setting.config_field not in values:
            continue
        value = values[setting.config_field]
        if value == "" and setting.default == "":
            continue
        setting.check(f"{resource}.config.{setting.config_field}", value)


def check_lakehouse_fields(values: Mapping[str, Any]) -> None:
    """Validate the ``lakehouse`` resource's configured fields as a run starts (see :func:`check_resource_fields`)."""
    check_resource_fields(_LAKEHOUSE, values)
    default_master = Settings.model_fields["spark_master"].default
    if values.get("spark_remote") and values.get("spark_master", default_master) != default_master:
        raise SettingsError(_BOTH_SPARK_TARGETS.format(
            master="lakehouse.config.spark_master", remote="lakehouse.config.spark_remote"
        ))


def check_alert_fields(values: Mapping[str, Any]) -> None:
    """Validate the ``alerts`` resource's configured fields: the environment's rules, for launchpad config too.

    An empty channel field means the channel is not used.
    """
    check_resource_fields(_ALERTS, values)
    if values.get("email_to") and not values.get("smtp_url"):
        raise SettingsError(
            "alerts.config.email_to is set but alerts.config.smtp_url is not: alert emails need an SMTP server"
        )


def resource_field(name: str, **constraints: Any) -> Any:
    """A resource's config field for setting ``name``: the setting's default and description (a pydantic ``Field``).

    A choice's default is its plain text: Dagster's config schema holds text,
    and a run's config is checked against the choices as the run starts.
    """
    setting = SETTING_OF_FIELD[name]
    info = Settings.model_fields[name]
    if info.default_factory is not None:
        return Field(default_factory=info.default_factory, description=setting.description, **constraints)
    default = setting.default.value if isinstance(setting.default, StrEnum) else setting.default
    return Field(default=default, description=setting.description, **constraints)
