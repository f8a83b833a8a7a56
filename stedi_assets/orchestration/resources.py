"""The lakehouse resource and the resources built from the settings.

The zone tables are Apache Iceberg tables in a catalog (see
``stedi_assets.lakehouse``); this resource holds the settings, the engine and
the storage clients, and reads and writes tables through the catalog.
"""


import os
import uuid
from collections.abc import Mapping
from typing import Any

import narwhals as nw
from dagster import ConfigurableResource, EnvVar, InitResourceContext
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr

from stedi_assets.lakehouse.engines import ENGINE_NAMES, Engine, EngineError, LandingRead, RecordsFolder
from stedi_assets.orchestration.landing import DEFAULT_QUARANTINE_MAX_SHARE
from stedi_assets.domain.profiles import PROFILE_NAMES
from stedi_assets.domain.schemas import PUBLISHED, TABLES
from stedi_assets.lakehouse.catalog import (
    DEFAULT_NAMESPACE,
    CatalogError,
    CatalogSettings,
    TableNotPublishedError,
    catalog_errors,
)
from stedi_assets.lakehouse.recovery import check_not_lost, open_catalog
from stedi_assets.orchestration.io_manager import lakehouse_io_manager
from stedi_assets.lakehouse.tables import (
    write_folder,
    Commit,
    TableUpdate,
    check_schema,
    commit_update,
    data_file_paths,
    open_or_create,
    replace_contents,
)
from stedi_assets.settings import (  # noqa: F401  (parse_spark_conf is part of this module's interface)
    DEFAULT_LAKEHOUSE_URI,
    DEFAULT_LANDING_URI,
    DEFAULT_MAX_FILE_MB,
    DEFAULT_ORPHAN_MIN_AGE_HOURS,
    DEFAULT_S3_MAX_ATTEMPTS,
    DEFAULT_SNAPSHOT_MAX_AGE_HOURS,
    DEFAULT_SNAPSHOTS_MIN_KEPT,
    Settings,
    check_lakehouse_fields,
    parse_spark_conf,
    read_settings,
)
from stedi_assets.lakehouse.storage import LandingError, FileVersion, LocalStore, Store, is_s3_uri, join_uri, normalize_uri


RULES = "stedi.rules."
"""Snapshot property prefix: ``stedi.rules.<setting>`` = a rule setting the snapshot was computed with."""






class StediLakehouse(ConfigurableResource):
    """Where the landing feeds are, where the zone tables go, and which engine computes them."""

    landing_uri: str = Field(description="Root of the raw feeds: {landing}/{feed}/*.json. Local path or s3://.")
    lakehouse_uri: str = Field(description="Root of the zone tables: {lakehouse}/{zone}/{table}/. Local path or s3://.")
    profile: str = Field(
        default="",
        description=f"Data-set profile for the row-count checks ({', '.join(PROFILE_NAMES)}); empty for none.",
    )
    engine: str = Field(default="polars", description=f"Engine that computes the tables: {' or '.join(ENGINE_NAMES)}.")
    ml_join: str = Field(
        default="time",
        description="machine_learning_curated pairing: 'time' (reference rule) or 'same_customer' (time and owner).",
    )
    consent_scope: str = Field(
        default="any_time",
        description="Readings a research consent covers: 'any_time' (reference rule) or 'from_consent_date' "
        "(only readings taken at or after shareWithResearchAsOfDate).",
    )
    catalog_uri: str = Field(
        default="",
        description="SQLAlchemy URL of the Iceberg SQL catalog; empty: {lakehouse}/catalog.db locally, Glue on s3://.",
    )
    namespace: str = Field(default=DEFAULT_NAMESPACE, description="Catalog namespace (database) holding every table.")
    glue_database: str = Field(
        default="",
        description="Glue Data Catalog database of an s3:// lakehouse's tables; empty: the namespace.",
    )
    snapshot_max_age_hours: int = Field(
        default=DEFAULT_SNAPSHOT_MAX_AGE_HOURS, description="Maintenance: snapshots older than this are expired."
    )
    snapshots_min_kept: int = Field(
        default=DEFAULT_SNAPSHOTS_MIN_KEPT, description="Maintenance: the newest snapshots of a table always kept."
    )
    orphan_min_age_hours: int = Field(
        default=DEFAULT_ORPHAN_MIN_AGE_HOURS,
        description="Maintenance: unreferenced files younger than this (a write in flight) are never deleted.",
    )
    s3: S3Resource | None = Field(
        default=None,
        description="S3 credentials, region and endpoint for s3:// URIs; unset fields resolve as in every AWS tool.",
    )
    quarantine_max_share: float = Field(
        default=DEFAULT_QUARANTINE_MAX_SHARE,
        ge=0.0,
        le=1.0,
        description="Share of a feed's records that may be quarantined; above it the landing table is not published.",
    )
    max_file_mb: int = Field(
        default=DEFAULT_MAX_FILE_MB,
        description="Largest landing file, in MiB after decompression; a larger file is quarantined unread.",
    )
    spark_master: str = Field(
        default="local[*]", description="Spark engine: the master URL (local[*], spark://host:7077, yarn, ...)."
    )
    spark_conf: dict[str, str] = Field(
        default_factory=dict, description="Spark engine: spark.* settings passed to the session as they are."
    )

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
            if self.engine == "polars":
                from stedi_assets.lakehouse.engines.polars_engine import PolarsEngine

                self._engine = PolarsEngine(max_file_mb=self.max_file_mb)
            elif self.engine == "spark":
                # Imported only when chosen: pyspark is an optional extra.
                from stedi_assets.lakehouse.engines.spark_engine import SparkEngine

                self._engine = SparkEngine(self.spark_master, self.spark_conf, max_file_mb=self.max_file_mb)
            else:
                raise EngineError(f"unknown engine {self.engine!r}; choose one of: {', '.join(ENGINE_NAMES)}")
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
        return self.ml_join == "same_customer"

    @property
    def from_consent_date(self) -> bool:
        return self.consent_scope == "from_consent_date"

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
        # The whole asset key goes into the path, so two tables never share a folder.
        table = PUBLISHED[asset_path[-1]]
        return join_uri(normalize_uri(self.lakehouse_uri), table.zone, *asset_path)

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


def build_resources(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The resources for this environment, from the validated settings (``settings.read_settings``).

    Raises ``SettingsError`` (one line) for a setting that is not valid. A
    variable that is set is passed as an EnvVar, so the UI shows its name
    rather than its value and it is resolved when a run starts; it has been
    validated here first.
    """
    settings = read_settings(environ)

    def setting(variable: str, default: str) -> str:
        return EnvVar(variable) if settings.is_set(variable) else default

    def integer(variable: str, default: int) -> int:
        return EnvVar.int(variable) if settings.is_set(variable) else default

    lakehouse = StediLakehouse(
        s3=s3_resource(os.environ if environ is None else environ, settings),
        landing_uri=setting("STEDI_LANDING_URI", normalize_uri(DEFAULT_LANDING_URI)),
        lakehouse_uri=setting("STEDI_LAKEHOUSE_URI", normalize_uri(DEFAULT_LAKEHOUSE_URI)),
        profile=setting("STEDI_PROFILE", ""),
        engine=setting("STEDI_ENGINE", "polars"),
        ml_join=setting("STEDI_ML_JOIN", "time"),
        consent_scope=setting("STEDI_CONSENT_SCOPE", "any_time"),
        catalog_uri=setting("STEDI_CATALOG_URI", ""),
        namespace=setting("STEDI_NAMESPACE", DEFAULT_NAMESPACE),
        glue_database=setting("STEDI_GLUE_DATABASE", ""),
        snapshot_max_age_hours=integer("STEDI_SNAPSHOT_MAX_AGE_HOURS", DEFAULT_SNAPSHOT_MAX_AGE_HOURS),
        snapshots_min_kept=integer("STEDI_SNAPSHOTS_MIN_KEPT", DEFAULT_SNAPSHOTS_MIN_KEPT),
        orphan_min_age_hours=integer("STEDI_ORPHAN_MIN_AGE_HOURS", DEFAULT_ORPHAN_MIN_AGE_HOURS),
        # Dagster's EnvVar resolves to text or integers only: these are passed as values.
        quarantine_max_share=settings.quarantine_max_share,
        spark_master=setting("STEDI_SPARK_MASTER", "local[*]"),
        spark_conf=settings.spark_conf,
        max_file_mb=EnvVar.int("STEDI_MAX_FILE_MB") if settings.is_set("STEDI_MAX_FILE_MB") else DEFAULT_MAX_FILE_MB,
    )
    # Imported here: the sensors and audit checks read tables through this module.
    from stedi_assets.orchestration.alerts import StediAlerts

    alerts = StediAlerts(
        webhook_url=setting("STEDI_ALERT_WEBHOOK_URL", ""),
        email_to=setting("STEDI_ALERT_EMAIL_TO", ""),
        email_from=setting("STEDI_ALERT_EMAIL_FROM", settings.alert_email_from),
        # A secret: always by name, never as a value the UI would show.
        smtp_url=setting("STEDI_SMTP_URL", ""),
        min_severity=setting("STEDI_ALERT_MIN_SEVERITY", settings.alert_min_severity),
        ui_url=setting("STEDI_UI_URL", settings.ui_url),
        # Seconds may have a fraction, which an EnvVar cannot carry: passed as a value.
        timeout_seconds=settings.alert_timeout_seconds,
        remind_hours=integer("STEDI_ALERT_REMIND_HOURS", settings.alert_remind_hours),
    )
    return {"lakehouse": lakehouse, "io_manager": lakehouse_io_manager, "alerts": alerts}


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


def s3_resource(environ: Mapping[str, str], settings: Settings | None = None) -> S3Resource:
    """The S3 connection configured from the standard AWS variables that are set."""
    settings = read_settings(environ) if settings is None else settings
    fields: dict[str, Any] = {}
    for name, variables in _AWS_SETTINGS.items():
        variable = next((v for v in variables if environ.get(v)), None)
        if variable is not None:
            fields[name] = EnvVar(variable)
    fields["max_attempts"] = EnvVar.int("AWS_MAX_ATTEMPTS") if settings.is_set("AWS_MAX_ATTEMPTS") else DEFAULT_S3_MAX_ATTEMPTS
    return S3Resource(**fields)
