"""The lakehouse resource and the resources built from the settings.

The zone tables are Apache Iceberg tables in a catalog (see
``stedi_assets.lakehouse``); this resource holds the settings, the engine and
the storage clients, and reads and writes tables through the catalog.
"""


from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import narwhals as nw
from dagster import ConfigurableResource, EnvVar, InitResourceContext
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr

from stedi_assets.lakehouse.engines import ENGINE_NAMES, Engine, EngineError, LandingRead, RecordsFolder
from stedi_assets.domain.schemas import PUBLISHED, TABLES
from stedi_assets.lakehouse.catalog import (
    CatalogError,
    CatalogSettings,
    TableNotPublishedError,
    catalog_errors,
)
from stedi_assets.lakehouse.recovery import check_not_lost, open_catalog
from stedi_assets.orchestration.io_manager import lakehouse_io_manager
from stedi_assets.lakehouse.tables import (
    table_location,
    write_folder,
    Commit,
    TableUpdate,
    check_schema,
    commit_update,
    data_file_paths,
    open_or_create,
    replace_contents,
)
from stedi_assets.settings import (  # noqa: F401  (parse_spark_conf and the defaults are part of this module's interface)
    DEFAULT_LAKEHOUSE_URI,
    DEFAULT_LANDING_URI,
    DEFAULT_S3_MAX_ATTEMPTS,
    SETTINGS,
    ConsentScope,
    EngineName,
    MlJoin,
    Setting,
    Settings,
    SettingsError,
    check_lakehouse_fields,
    parse_spark_conf,
    read_settings,
    resource_field,
)
from stedi_assets.lakehouse.storage import LandingError, FileVersion, LocalStore, Store, is_s3_uri, join_uri, normalize_uri


RULES = "stedi.rules."
"""Snapshot property prefix: ``stedi.rules.<setting>`` = a rule setting the snapshot was computed with."""






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
    quarantine_max_share: float = resource_field("quarantine_max_share", ge=0.0, le=1.0)
    max_file_mb: int = resource_field("max_file_mb")
    spark_master: str = resource_field("spark_master")
    spark_conf: dict[str, str] = resource_field("spark_conf")

    _engine: Engine | None = PrivateAttr(default=None)
    _s3_store: Store | None = PrivateAttr(default=None)
    _catalog: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # Runs when a run initializes its resources, before any step reads or
        # publishes anything: launchpad config gets the same checks as the
        # environment (whose EnvVars are resolved by now).
        check_lakehouse_fields(dict(self))

    # -- engine and storage --------------------------------------------------

    def get_engine(self) -> Engine:
        if self._engine is None:
            if self.engine not in ENGINE_NAMES:  # a resource built without its setup (tests, query by URI)
                raise EngineError(f"unknown engine {self.engine!r}; choose one of: {', '.join(ENGINE_NAMES)}")
            if EngineName(self.engine) is EngineName.POLARS:
                from stedi_assets.lakehouse.engines.polars_engine import PolarsEngine

                self._engine = PolarsEngine(max_file_mb=self.max_file_mb)
            else:
                # Imported only when chosen: pyspark is an optional extra.
                from stedi_assets.lakehouse.engines.spark_engine import SparkEngine

                self._engine = SparkEngine(self.spark_master, self.spark_conf, max_file_mb=self.max_file_mb)
        return self._engine

    def store_for(self, uri: str) -> Store:
        if is_s3_uri(uri):
            if self._s3_store is None:
                from stedi_assets.lakehouse.storage_s3 import S3Store

                s3 = self.s3 or S3Resource(max_attempts=DEFAULT_S3_MAX_ATTEMPTS)
                # Resolves the EnvVars when called outside a run (the stedi command).
                self._s3_store = S3Store.from_resource(s3.process_config_and_initialize(), uri)
            return self._s3_store
        return LocalStore()

    @property
    def same_customer(self) -> bool:
        # The field's value was validated when the resource was set up (settings.check_lakehouse_fields).
        return self.ml_join == MlJoin.SAME_CUSTOMER

    @property
    def from_consent_date(self) -> bool:
        return self.consent_scope == ConsentScope.FROM_CONSENT_DATE

    def rule_properties(self) -> dict[str, str]:
        """The settings that change what a table holds, recorded on each of its snapshots."""
        return {f"{RULES}consent_scope": self.consent_scope, f"{RULES}ml_join": self.ml_join}

    # -- landing ---------------------------------------------------------------

    def feed_uri(self, feed: str) -> str:
        return join_uri(normalize_uri(self.landing_uri), feed)

    def landing_versions(self, feed: str) -> dict[str, FileVersion]:
        """Every landing file of ``feed`` -> its version (fingerprint and size), and every entry named like
        one that may not be read (``FileVersion.refused``: a symbolic link, a device...); one line naming the
        URI if no file can be read."""
        uri = self.feed_uri(feed)
        versions = {f: v for f, v in self.store_for(uri).versions(uri).items() if _is_feed_file(f)}
        if not any(not v.refused for v in versions.values()):
            refused = f" ({len(versions)} entry(ies) refused: not regular files)" if versions else ""
            raise LandingError(
                f"no landing files for feed {feed!r} at {uri}/ (expected {uri}/*.json or *.json.gz){refused}"
            )
        return dict(sorted(versions.items()))

    def landing_files(self, feed: str) -> list[str]:
        return [uri for uri, version in self.landing_versions(feed).items() if not version.refused]

    def read_landing(
        self, feed: str, files: list[str] | None = None, records_to: str | None = None,
        sizes: Mapping[str, int] | None = None,
    ) -> LandingRead:
        """The records of ``files`` (default: every file of the feed), read by the engine, which may store
        them in the folder ``records_to`` as it reads (``LandingRead.stored``); ``sizes``: the files' sizes
        as listed."""
        files = self.landing_files(feed) if files is None else files
        folder = RecordsFolder(records_to, self.store_for(records_to)) if records_to is not None else None
        return self.get_engine().read_landing(
            TABLES[f"{feed}_landing"], files, self.store_for(files[0]), folder, sizes=sizes
        )

    # -- tables ----------------------------------------------------------------

    def catalog_settings(self) -> CatalogSettings:
        root = normalize_uri(self.lakehouse_uri)
        return CatalogSettings(
            lakehouse_uri=root,
            catalog_uri=self.catalog_uri,
            namespace=self.namespace,
            glue_database=self.glue_database,
            storage_options=self.store_for(root).storage_options if is_s3_uri(root) else None,
        )

    def catalog(self, create: bool = True):
        """The Iceberg catalog (built once); ``create=False`` for readers, which never create one.

        A catalog that lacks tables stored under the lakehouse root (deleted,
        emptied, another one configured) is refused in one line naming the
        recovery command, rather than replaced by a new one.
        """
        if self._catalog is None:
            settings = self.catalog_settings()
            self._catalog = open_catalog(settings, self.store_for(settings.lakehouse_uri), create=create)
        return self._catalog

    def table_identifier(self, table: str) -> str:
        """``namespace.table``, e.g. ``stedi.customer_trusted``."""
        return self.catalog_settings().identifier(table)

    def table_location(self, asset_path: list[str]) -> str:
        return table_location(self.lakehouse_uri, asset_path)

    def load_table(self, table: str, create: bool = False):
        """The Iceberg table of ``table``: created with its declared schema if ``create``.

        Raises :class:`TableNotPublishedError` when it does not exist and
        :class:`CatalogError` (one line naming table and catalog) when the
        catalog or its metadata cannot be read, or when the table lives outside
        this lakehouse (a local lakehouse moved or copied with its catalog).
        """
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        settings = self.catalog_settings()
        identifier = settings.identifier(table)
        try:
            catalog = self.catalog(create=create)
        except CatalogError as error:
            raise CatalogError(f"table {identifier}: {error}") from None
        with catalog_errors(settings, table):
            try:
                if create:
                    iceberg_table = open_or_create(
                        catalog, identifier, PUBLISHED[table], self.table_location([table]),
                        # A table that committed before and is no longer in the catalog is never started afresh.
                        before_create=lambda: check_not_lost(settings, self.store_for(settings.lakehouse_uri), table),
                    )
                else:
                    iceberg_table = catalog.load_table(identifier)
            except (NoSuchTableError, NoSuchNamespaceError):
                raise TableNotPublishedError(
                    f"table {identifier} does not exist in catalog {settings.describe()}: materialize it first"
                ) from None
        root = settings.lakehouse_uri.rstrip("/") + "/"
        location = iceberg_table.location()
        if not normalize_uri(location).startswith(root) and not location.startswith(root):
            raise CatalogError(
                f"table {identifier} in catalog {settings.describe()} is stored at {location}, outside this "
                f"lakehouse {settings.lakehouse_uri}: the lakehouse or its catalog was moved or copied "
                "(Iceberg metadata holds absolute paths); use it at its original place or run `stedi run` into a new one"
            )
        return iceberg_table

    def read_table(self, asset_path: list[str], snapshot_id: int | None = None, iceberg_table=None) -> nw.LazyFrame:
        """The table at ``snapshot_id`` (default: its current snapshot) as a lazy frame of the engine."""
        table = asset_path[-1]
        iceberg_table = iceberg_table or self.load_table(table)
        settings = self.catalog_settings()
        with catalog_errors(settings, table):
            files = data_file_paths(iceberg_table, snapshot_id)
        store = self.store_for(self.table_location(asset_path))
        return self.get_engine().scan(files, TABLES[table], store)

    def write_table(
        self, asset_path: list[str], frame: nw.LazyFrame, properties: Mapping[str, str], run_id: str
    ) -> Commit:
        """Write ``frame`` as the table's new contents: Parquet files by the engine, then one Iceberg commit."""
        return self.apply_update(asset_path, TableUpdate(None, replace=frame), properties, run_id, planned=False)

    def current_snapshot(self, table: str) -> int | None:
        """The table's current snapshot id; None when it does not exist or has none yet."""
        try:
            return self.load_table(table).metadata.current_snapshot_id
        except TableNotPublishedError:
            return None

    def write_files(self, frame: nw.LazyFrame, schema, folder: str) -> list[str]:
        """``frame`` as Parquet files of ``schema`` in ``folder`` (a folder of its own), by the engine."""
        return self.get_engine().write(frame, schema, folder, self.store_for(folder))

    def apply_update(
        self, asset_path: list[str], update: TableUpdate, properties: Mapping[str, str], run_id: str,
        planned: bool = True,
    ) -> Commit:
        """Commit an update: new contents or rows added.

        A ``planned`` update is committed only onto the snapshot it was planned
        from (``tables.commit_update``); otherwise new contents replace
        whatever another writer committed meanwhile (``tables.replace_contents``).
        """
        table = asset_path[-1]
        settings = self.catalog_settings()
        identifier = settings.identifier(table)
        iceberg_table = self.load_table(table, create=True)
        check_schema(iceberg_table, TABLES[table], identifier)
        if update.kind == "unchanged":
            return Commit.of(iceberg_table, identifier, committed=False)
        frame = update.replace if update.replace is not None else update.append
        files = self.write_files(frame, TABLES[table], write_folder(iceberg_table, run_id))
        before_commit(identifier, files)
        load = lambda: self.load_table(table)  # noqa: E731
        with catalog_errors(settings, table):
            if not planned:
                return replace_contents(load, identifier, files, properties)
            return commit_update(
                load, identifier, files, properties, update.base_snapshot_id, replace=update.replace is not None
            )




def before_commit(identifier: str, files: list[str]) -> None:
    """Called between the data files being written and the commit; the fault tests stop a run here."""


def _is_feed_file(uri: str) -> bool:
    name = uri.rsplit("/", 1)[-1]
    return not name.startswith((".", "_")) and name.lower().endswith((".json", ".json.gz"))


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


