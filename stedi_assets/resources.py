"""The lakehouse resource, its IO manager, and the resources built from the settings.

Layout under the lakehouse root (a local folder or ``s3://bucket/prefix``)::

    {lakehouse}/{zone}/{table}/_manifest.json       the published version
    {lakehouse}/{zone}/{table}/{version}/part-*.parquet

A table is written into a new version folder and published by replacing its
manifest in one atomic operation (a rename locally, a single PUT on S3), so
a reader sees the old or the new version, never a half-written one. The
previous version is kept for readers still scanning it; older ones are deleted.
"""


import contextlib
import json
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import narwhals as nw
from dagster import (
    ConfigurableResource,
    EnvVar,
    InitResourceContext,
    InputContext,
    IOManager,
    OutputContext,
    io_manager,
)
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr

from stedi_assets.engines import ENGINE_NAMES, Engine, EngineError, LandingRead
from stedi_assets.landing import DEFAULT_QUARANTINE_MAX_SHARE
from stedi_assets.masking import mask_metadata
from stedi_assets.profiles import PROFILE_NAMES
from stedi_assets.schemas import TABLES
from stedi_assets.settings import (  # noqa: F401  (parse_spark_conf is part of this module's interface)
    DEFAULT_LAKEHOUSE_URI,
    DEFAULT_LANDING_URI,
    DEFAULT_S3_MAX_ATTEMPTS,
    ML_JOINS,
    Settings,
    check_lakehouse_fields,
    parse_spark_conf,
    read_settings,
)
from stedi_assets.storage import LocalStore, Store, is_s3_uri, join_uri, normalize_uri
from stedi_assets.validation import DEFAULT_MAX_FILE_MB

MANIFEST = "_manifest.json"


class LandingError(RuntimeError):
    """The landing zone cannot be read; the message names the URI."""


class TableNotPublishedError(RuntimeError):
    """A table was read before any version of it was published."""


@dataclass(frozen=True)
class PublishedTable:
    uri: str
    version: str
    files: list[str]
    rows: int
    columns: dict[str, str]


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
    glue_database: str = Field(
        default="",
        description="Glue Data Catalog database to register every published table in; empty for none.",
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

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # Runs when a run initializes its resources, before any step reads or
        # publishes anything: launchpad config gets the same checks as the
        # environment (whose EnvVars are resolved by now).
        check_lakehouse_fields(dict(self))

    # -- engine and storage --------------------------------------------------

    def get_engine(self) -> Engine:
        if self._engine is None:
            if self.engine == "polars":
                from stedi_assets.engines.polars_engine import PolarsEngine

                self._engine = PolarsEngine(max_file_mb=self.max_file_mb)
            elif self.engine == "spark":
                # Imported only when chosen: pyspark is an optional extra.
                from stedi_assets.engines.spark_engine import SparkEngine

                self._engine = SparkEngine(self.spark_master, self.spark_conf, max_file_mb=self.max_file_mb)
            else:
                raise EngineError(f"unknown engine {self.engine!r}; choose one of: {', '.join(ENGINE_NAMES)}")
        return self._engine

    def store_for(self, uri: str) -> Store:
        if is_s3_uri(uri):
            if self._s3_store is None:
                from stedi_assets.storage_s3 import S3Store

                s3 = self.s3 or S3Resource(max_attempts=DEFAULT_S3_MAX_ATTEMPTS)
                # Resolves the EnvVars when called outside a run (the stedi command).
                self._s3_store = S3Store.from_resource(s3.process_config_and_initialize(), uri)
            return self._s3_store
        return LocalStore()

    @property
    def same_customer(self) -> bool:
        if self.ml_join not in ML_JOINS:
            raise ValueError(f"unknown ml_join {self.ml_join!r}; choose one of: {', '.join(ML_JOINS)}")
        return self.ml_join == "same_customer"

    # -- landing ---------------------------------------------------------------

    def feed_uri(self, feed: str) -> str:
        return join_uri(normalize_uri(self.landing_uri), feed)

    def landing_files(self, feed: str) -> list[str]:
        uri = self.feed_uri(feed)
        files = [f for f in self.store_for(uri).list_files(uri) if _is_feed_file(f)]
        if not files:
            raise LandingError(f"no landing files for feed {feed!r} at {uri}/ (expected {uri}/*.json or *.json.gz)")
        return files

    def read_landing(self, feed: str) -> LandingRead:
        files = self.landing_files(feed)
        read = self.get_engine().read_landing(TABLES[f"{feed}_landing"], files, self.store_for(files[0]))
        if read.records_read == 0:
            # Publishing an empty table over a good one is never what a delivery of empty files means.
            raise LandingError(
                f"no records for feed {feed!r} at {self.feed_uri(feed)}/: all {len(files)} landing file(s) are empty"
            )
        return read

    # -- tables ----------------------------------------------------------------

    def table_uri(self, asset_path: list[str]) -> str:
        # The whole asset key goes into the path, so two tables never share a folder.
        table = TABLES[asset_path[-1]]
        return join_uri(normalize_uri(self.lakehouse_uri), table.zone, *asset_path)

    def read_manifest(self, asset_path: list[str]) -> dict[str, Any] | None:
        uri = join_uri(self.table_uri(asset_path), MANIFEST)
        store = self.store_for(uri)
        if not store.exists(uri):
            return None
        return json.loads(store.read_bytes(uri))

    def read_table(self, asset_path: list[str]) -> nw.LazyFrame:
        manifest = self.read_manifest(asset_path)
        if manifest is None:
            raise TableNotPublishedError(
                f"{self.table_uri(asset_path)}: table {asset_path[-1]} has not been published yet; materialize it first"
            )
        return self.get_engine().scan(manifest["files"], TABLES[asset_path[-1]], self.store_for(manifest["files"][0]))

    def publish(self, asset_path: list[str], frame: nw.LazyFrame, run_id: str, rows: int | None = None) -> PublishedTable:
        """Write ``frame`` as a new version of the table, then make it the published one.

        ``rows`` is the frame's row count when the caller has counted it already.
        """
        table_uri = self.table_uri(asset_path)
        store = self.store_for(table_uri)
        version = f"v{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{run_id[:8]}-{uuid.uuid4().hex[:6]}"
        version_uri = join_uri(table_uri, version)
        previous = self.read_manifest(asset_path)
        try:
            files = self.get_engine().write(frame, version_uri, store)
        except BaseException:
            # Best effort: the write's own error is the one to report (the store
            # may be unreachable), and an unreferenced version left behind is
            # deleted by the table's next publish.
            with contextlib.suppress(Exception):
                store.delete_prefix(version_uri)
            raise
        if rows is None:
            rows = int(frame.select(nw.len()).collect().item())
        columns = {name: str(dtype) for name, dtype in frame.collect_schema().items()}
        manifest = {
            "table": asset_path[-1],
            "version": version,
            "files": files,
            "rows": rows,
            "columns": columns,
            "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "run_id": run_id,
        }
        store.write_bytes(join_uri(table_uri, MANIFEST), json.dumps(manifest, indent=2).encode())
        self._delete_old_versions(store, table_uri, keep={version, previous["version"] if previous else ""})
        return PublishedTable(table_uri, version, files, rows, columns)

    def _delete_old_versions(self, store: Store, table_uri: str, keep: set[str]) -> None:
        prefix = table_uri.rstrip("/") + "/"
        versions = {
            f[len(prefix):].split("/", 1)[0] for f in store.list_files(table_uri) if f.startswith(prefix)
        }
        for version in versions - keep:
            if version.startswith("v"):
                store.delete_prefix(join_uri(table_uri, version))


def _is_feed_file(uri: str) -> bool:
    name = uri.rsplit("/", 1)[-1]
    return not name.startswith((".", "_")) and name.lower().endswith((".json", ".json.gz"))


class LakehouseIOManager(IOManager):
    """Stores each zone table as Parquet in the lakehouse and hands it downstream as a lazy frame."""

    def __init__(self, lakehouse: StediLakehouse):
        self.lakehouse = lakehouse

    def handle_output(self, context: OutputContext, obj: nw.LazyFrame) -> None:
        # The asset counted the rows for its checks and metadata; no need to count again.
        counted = (context.output_metadata or {}).get("dagster/row_count")
        rows = getattr(counted, "value", counted)
        published = self.lakehouse.publish(list(context.asset_key.path), obj, context.run_id, rows=rows)
        context.add_output_metadata(mask_metadata({"uri": published.uri, "version": published.version}))
        if self.lakehouse.glue_database:
            from stedi_assets.catalog import publish_to_glue

            glue_table = publish_to_glue(self.lakehouse, context.asset_key.path[-1], published)
            context.add_output_metadata(mask_metadata({"glue_table": glue_table}))

    def load_input(self, context: InputContext) -> nw.LazyFrame:
        return self.lakehouse.read_table(list(context.asset_key.path))


@io_manager(required_resource_keys={"lakehouse"})
def lakehouse_io_manager(init_context: InitResourceContext) -> LakehouseIOManager:
    """The IO manager on the run's ``lakehouse`` resource.

    It takes the lakehouse as a resource key rather than a nested resource, so
    that configuring ``lakehouse`` in the launchpad configures storage too.
    """
    return LakehouseIOManager(init_context.resources.lakehouse)


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

    lakehouse = StediLakehouse(
        s3=s3_resource(os.environ if environ is None else environ, settings),
        landing_uri=setting("STEDI_LANDING_URI", normalize_uri(DEFAULT_LANDING_URI)),
        lakehouse_uri=setting("STEDI_LAKEHOUSE_URI", normalize_uri(DEFAULT_LAKEHOUSE_URI)),
        profile=setting("STEDI_PROFILE", ""),
        engine=setting("STEDI_ENGINE", "polars"),
        ml_join=setting("STEDI_ML_JOIN", "time"),
        consent_scope=setting("STEDI_CONSENT_SCOPE", "any_time"),
        glue_database=setting("STEDI_GLUE_DATABASE", ""),
        # Dagster's EnvVar resolves to text or integers only: these are passed as values.
        quarantine_max_share=settings.quarantine_max_share,
        spark_master=setting("STEDI_SPARK_MASTER", "local[*]"),
        spark_conf=settings.spark_conf,
        max_file_mb=EnvVar.int("STEDI_MAX_FILE_MB") if settings.is_set("STEDI_MAX_FILE_MB") else DEFAULT_MAX_FILE_MB,
    )
    # Imported here: the operations package reads tables through this module.
    from stedi_assets.operations.alerts import StediAlerts

    alerts = StediAlerts(
        webhook_url=setting("STEDI_ALERT_WEBHOOK_URL", ""),
        email_to=setting("STEDI_ALERT_EMAIL_TO", ""),
        email_from=setting("STEDI_ALERT_EMAIL_FROM", settings.alert_email_from),
        # A secret: always by name, never as a value the UI would show.
        smtp_url=setting("STEDI_SMTP_URL", ""),
        min_severity=setting("STEDI_ALERT_MIN_SEVERITY", settings.alert_min_severity),
        ui_url=setting("STEDI_UI_URL", settings.ui_url),
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
