"""The resources built from the settings: the lakehouse, its IO manager and the alerts.

The ``lakehouse`` resource is the lakehouse library's :class:`Lakehouse`
(``stedi_assets.lakehouse.lakehouse``) as Dagster configures it: its fields
are the settings (shown and set in the launchpad), it checks them as a run
starts, hands the run one ``Lakehouse`` and closes it when the run ends (a
Spark session the run started is stopped).
"""


import contextlib
from collections.abc import Generator, Mapping
from enum import StrEnum
from typing import Any

from dagster import ConfigurableResource, EnvVar, InitResourceContext
from dagster_aws.s3 import S3Resource
from pydantic import Field

from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.lakehouse.storage import normalize_uri
from stedi_assets.orchestration.io_manager import lakehouse_io_manager
from stedi_assets.settings import (
    DEFAULT_S3_MAX_ATTEMPTS,
    SETTINGS,
    Setting,
    Settings,
    SettingsError,
    check_lakehouse_fields,
    read_settings,
    resource_field,
)


class StediLakehouse(ConfigurableResource):
    """Where the landing feeds are, where the zone tables go, and which engine computes them."""

    # Every field but s3 is a setting: its default and description come from settings.Settings, and
    # test_settings checks that the names match. The types stay plain (text for a choice): they are
    # Dagster's config schema, and a run's config is checked against the choices as it starts.
    landing_uri: str = resource_field("landing_uri")
    lakehouse_uri: str = resource_field("lakehouse_uri")
    profile: str = resource_field("profile")
    engine: str = resource_field("engine")
    ml_join: str = resource_field("ml_join")
    consent_scope: str = resource_field("consent_scope")
    catalog_uri: str = resource_field("catalog_uri")
    namespace: str = resource_field("namespace")
    glue_database: str = resource_field("glue_database")
    snapshot_max_age_hours: int = resource_field("snapshot_max_age_hours")
    snapshots_min_kept: int = resource_field("snapshots_min_kept")
    orphan_min_age_hours: int = resource_field("orphan_min_age_hours")
    s3: S3Resource | None = Field(
        default=None,
        description="S3 credentials, region and endpoint for s3:// URIs; unset fields resolve as in every AWS tool.",
    )
    withdrawal_retention_hours: int = resource_field("withdrawal_retention_hours")
    quarantine_max_share: float = resource_field("quarantine_max_share", ge=0.0, le=1.0)
    max_file_mb: int = resource_field("max_file_mb")
    schema_widen_to_string: bool = resource_field("schema_widen_to_string")
    curated_extra_columns: list[str] = resource_field("curated_extra_columns")
    spark_master: str = resource_field("spark_master")
    spark_remote: str = resource_field("spark_remote")
    spark_conf: dict[str, str] = resource_field("spark_conf")

    @classmethod
    def configured_as(cls, lakehouse: Lakehouse) -> "StediLakehouse":
        """The resource whose runs use a lakehouse of the same settings as ``lakehouse``."""
        s3 = lakehouse.s3
        if s3 is not None and not isinstance(s3, S3Resource):
            s3 = S3Resource(**{name: getattr(s3, name) for name in S3Resource.model_fields if hasattr(s3, name)})
        return cls(**{name: getattr(lakehouse, name) for name in Lakehouse.setting_names()}, s3=s3)

    def library(self) -> Lakehouse:
        """The lakehouse these fields configure (their values as given: EnvVars are resolved by a run)."""
        values = {name: getattr(self, name) for name in Lakehouse.setting_names()}
        return Lakehouse(**values, s3=self.s3 or S3Resource(max_attempts=DEFAULT_S3_MAX_ATTEMPTS))

    def create_resource(self, context: InitResourceContext) -> Lakehouse:
        # Runs when a run initializes its resources, before any step reads or
        # publishes anything: launchpad config gets the same checks as the
        # environment (whose EnvVars are resolved by now).
        check_lakehouse_fields(dict(self))
        return self.library()

    @contextlib.contextmanager
    def yield_for_execution(self, context: InitResourceContext) -> Generator[Lakehouse, None, None]:
        lakehouse = self.create_resource(context)
        try:
            yield lakehouse
        finally:
            lakehouse.close()


def build_resources(environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The resources for this environment (default: the process's) and ``overrides`` (see ``settings.read_settings``).

    Raises ``SettingsError`` (one line) for a setting that is not valid.
    """
    return resources_for(read_settings(environ, overrides))


def resources_for(settings: Settings) -> dict[str, Any]:
    """The resources configured from validated ``settings``, each field from the setting that declares it.

    A setting taken from a variable is passed as an EnvVar, so the UI shows its
    name rather than its value (a secret is never passed as a value) and it is
    resolved when a run starts; it has been validated here first. An override
    (a command option) and a default are passed as values.
    """
    # Imported here: the sensors and audit checks read tables through this module.
    from stedi_assets.orchestration.alerts import StediAlerts

    fields: dict[str, dict[str, Any]] = {"lakehouse": {}, "alerts": {}, "s3": {}}
    for setting in SETTINGS:
        if setting.resource is not None:
            fields[setting.resource][setting.config_field] = _configured(setting, settings)
    fields["s3"].update(
        {name: EnvVar(variable) for name, variable in _aws_variables(settings).items()}
    )
    lakehouse = StediLakehouse(s3=S3Resource(**fields["s3"]), **fields["lakehouse"])
    return {"lakehouse": lakehouse, "io_manager": lakehouse_io_manager, "alerts": StediAlerts(**fields["alerts"])}


# Relative default paths are made absolute where the code location loads, so a run started from
# another folder (the daemon's) reads and writes the same one.
_DEFAULT_PATHS = ("landing_uri", "lakehouse_uri")


def _configured(setting: Setting, settings: Settings) -> Any:
    value = getattr(settings, setting.field)
    if settings.in_environment(setting.variable) and not settings.overridden(setting.field):
        # Dagster's EnvVar resolves to text or whole numbers only: fractions and mappings go as values.
        if isinstance(value, str):
            return EnvVar(setting.variable)
        if isinstance(value, int) and not isinstance(value, bool):
            return EnvVar.int(setting.variable)
    elif setting.secret and value != setting.default:
        # The UI would show it: a secret is set by its variable only.
        raise SettingsError(f"{setting.variable} is a secret: set it in the environment, not as an option")
    elif setting.field in _DEFAULT_PATHS and not settings.overridden(setting.field):
        return normalize_uri(value)
    return value.value if isinstance(value, StrEnum) else value


# The standard AWS variables, as the S3Resource fields they configure. boto3
# reads them itself too; passing them as EnvVars shows in the UI which ones a
# deployment sets, never their values.
_AWS_SETTINGS = {
    "aws_access_key_id": ("AWS_ACCESS_KEY_ID",),
    "aws_secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "aws_session_token": ("AWS_SESSION_TOKEN",),
    "profile_name": ("AWS_PROFILE",),
    # boto3 reads only AWS_DEFAULT_REGION; AWS_REGION is what the SDKs of other languages read.
    "region_name": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "endpoint_url": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
}


def _aws_variables(settings: Settings) -> dict[str, str]:
    """The S3Resource fields the environment sets -> the variable each is read from."""
    found = {name: next((v for v in variables if settings.in_environment(v)), None) for name, variables in _AWS_SETTINGS.items()}
    return {name: variable for name, variable in found.items() if variable is not None}


def lakehouse_for(settings: Settings) -> Lakehouse:
    """The lakehouse validated ``settings`` configure, as a run gets it (EnvVars resolved): for the stedi command."""
    return _resolved(resources_for(settings)["lakehouse"]).library()


def _resolved(resource):
    """A copy of ``resource`` with every EnvVar setting (nested resources too) replaced by its value.

    Dagster's own ``process_config_and_initialize`` does this too, but it
    creates an ephemeral Dagster instance first, which more than doubles the
    time a one-line query takes.
    """
    # The class of EnvVar.int's variables, which Dagster does not export by name.
    int_env_var = type(EnvVar.int("ANY_NAME"))
    values = {}
    for name, value in dict(resource).items():
        if isinstance(value, (EnvVar, int_env_var)):
            value = value.get_value()
        elif isinstance(value, ConfigurableResource):
            value = _resolved(value)
        values[name] = value
    return type(resource)(**values)
