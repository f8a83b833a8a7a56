"""The lakehouse: where the landing feeds are, where the zone tables go, and which engine computes them.

:class:`Lakehouse` is the library's one object: it holds the settings that say
where and how (the ``lakehouse`` fields of :class:`stedi_assets.settings.Settings`)
and the clients built from them (the engine, the stores, the Iceberg catalog),
and reads and writes tables through the catalog. It knows nothing of Dagster:
the Dagster layer's ``lakehouse`` resource builds one for each run and closes
it when the run ends; the ``stedi`` command builds one from the settings.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import narwhals as nw

from stedi_assets.domain.evolution import ADDED_DESCRIPTION
from stedi_assets.domain.schemas import NARWHALS_TYPES, PUBLISHED, TABLES, Column, TableSchema
from stedi_assets.lakehouse.catalog import CatalogError, CatalogSettings, TableNotPublishedError, catalog_errors
from stedi_assets.lakehouse.engines import ENGINE_NAMES, Engine, EngineError, LandingRead, ReadProgress, RecordsFolder
from stedi_assets.lakehouse.recovery import check_not_lost, open_catalog
from stedi_assets.lakehouse.storage import FileVersion, LandingError, LocalStore, Store, is_s3_uri, join_uri, normalize_uri
from stedi_assets.lakehouse.tables import (
    Commit,
    TableRead,
    TableUpdate,
    check_schema,
    commit_update,
    data_file_paths,
    effective_schema,
    open_or_create,
    replace_contents,
    table_location,
    write_folder,
)
from stedi_assets.settings import DEFAULT_S3_MAX_ATTEMPTS, ConsentScope, EngineName, MlJoin, Settings

RULES = "stedi.rules."
"""Snapshot property prefix: ``stedi.rules.<setting>`` = a rule setting the snapshot was computed with."""


_RULE_SOURCES = ("rules.py", "invariants.py")


@functools.cache
def rules_code() -> str:
    """A digest of the source of the rules and of the privacy invariants the checks judge with.

    Recorded on each derived snapshot (``stedi.rules.code``): a table computed,
    and judged, by other code is recomputed whole and judged whole, rather than
    updated incrementally beside rows the current code never judged.
    """
    domain = Path(__file__).resolve().parent.parent / "domain"
    digest = hashlib.sha256()
    for name in _RULE_SOURCES:
        digest.update((domain / name).read_bytes())
    return digest.hexdigest()[:16]


def _settings(consent_scope, ml_join) -> dict[str, str]:
    return {f"{RULES}consent_scope": str(consent_scope), f"{RULES}ml_join": str(ml_join)}


def rule_properties(consent_scope, ml_join) -> dict[str, str]:
    """The settings and the code that change what a derived table holds, as its snapshots record them."""
    return {**_settings(consent_scope, ml_join), f"{RULES}code": rules_code()}


def rule_version(consent_scope, ml_join) -> str:
    """The settings as one value: a derived table's code version in Dagster."""
    return ";".join(f"{k.removeprefix(RULES)}={v}" for k, v in sorted(_settings(consent_scope, ml_join).items()))


def _default(name: str) -> Any:
    """The default of setting ``name``, as the plain value a field holds (a choice's text)."""
    info = Settings.model_fields[name]
    if info.default_factory is not None:
        return field(default_factory=info.default_factory)
    return info.default.value if hasattr(info.default, "value") else info.default


@dataclass
class S3Connection:
    """How to reach S3 when no connection is given: boto3's usual resolution (variables, profiles, roles)."""

    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    profile_name: str | None = None
    region_name: str | None = None
    endpoint_url: str | None = None
    use_ssl: bool = True
    verify: bool | str | None = None
    max_attempts: int = DEFAULT_S3_MAX_ATTEMPTS
    use_unsigned_session: bool = False


@dataclass
class Lakehouse:
    """The settings of one lakehouse and the clients built from them (once, on first use)."""

    landing_uri: str = _default("landing_uri")
    lakehouse_uri: str = _default("lakehouse_uri")
    profile: str = _default("profile")
    engine: str = _default("engine")
    ml_join: str = _default("ml_join")
    consent_scope: str = _default("consent_scope")
    catalog_uri: str = _default("catalog_uri")
    namespace: str = _default("namespace")
    glue_database: str = _default("glue_database")
    snapshot_max_age_hours: int = _default("snapshot_max_age_hours")
    snapshots_min_kept: int = _default("snapshots_min_kept")
    orphan_min_age_hours: int = _default("orphan_min_age_hours")
    withdrawal_retention_hours: int = _default("withdrawal_retention_hours")
    quarantine_max_share: float = _default("quarantine_max_share")
    max_file_mb: int = _default("max_file_mb")
    schema_widen_to_string: bool = _default("schema_widen_to_string")
    curated_extra_columns: list[str] = _default("curated_extra_columns")
    spark_master: str = _default("spark_master")
    spark_remote: str = _default("spark_remote")
    spark_conf: dict[str, str] = _default("spark_conf")
    s3: Any = None
    """S3 credentials, region and endpoint (an ``S3Settings``, e.g. dagster-aws's ``S3Resource``); default: :class:`S3Connection`."""

    _engine: Engine | None = field(default=None, init=False, repr=False, compare=False)
    _s3_store: Store | None = field(default=None, init=False, repr=False, compare=False)
    _catalog: Any = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings, s3: Any = None) -> Lakehouse:
        """The lakehouse of validated ``settings``."""
        values = {name: getattr(settings, name) for name in cls.setting_names()}
        return cls(**{k: v.value if hasattr(v, "value") else v for k, v in values.items()}, s3=s3)

    @classmethod
    def setting_names(cls) -> list[str]:
        """The settings a lakehouse is made of (its fields but ``s3``)."""
        return [f for f in cls.__dataclass_fields__ if not f.startswith("_") and f != "s3"]

    def close(self) -> None:
        """Release what the lakehouse started (the engine's session); it can be used again afterwards."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    # -- engine and storage --------------------------------------------------

    def get_engine(self) -> Engine:
        if self._engine is None:
            if self.engine not in ENGINE_NAMES:
                raise EngineError(f"unknown engine {self.engine!r}; choose one of: {', '.join(ENGINE_NAMES)}")
            if EngineName(self.engine) is EngineName.POLARS:
                from stedi_assets.lakehouse.engines.polars_engine import PolarsEngine

                self._engine = PolarsEngine(max_file_mb=self.max_file_mb)
            else:
                # Imported only when chosen: pyspark is an optional extra.
                from stedi_assets.lakehouse.engines.spark_engine import SparkEngine

                self._engine = SparkEngine(
                    self.spark_master, self.spark_conf, max_file_mb=self.max_file_mb, remote=self.spark_remote
                )
        return self._engine

    def store_for(self, uri: str) -> Store:
        if is_s3_uri(uri):
            if self._s3_store is None:
                from stedi_assets.lakehouse.storage_s3 import S3Store

                self._s3_store = S3Store.from_resource(self.s3 or S3Connection(), uri)
            return self._s3_store
        return LocalStore()

    @property
    def same_customer(self) -> bool:
        return self.ml_join == MlJoin.SAME_CUSTOMER

    @property
    def from_consent_date(self) -> bool:
        return self.consent_scope == ConsentScope.FROM_CONSENT_DATE

    def rule_properties(self) -> dict[str, str]:
        """The settings that change what a table holds, recorded on each of its snapshots."""
        return rule_properties(self.consent_scope, self.ml_join)

    # -- landing ---------------------------------------------------------------

    def feed_uri(self, feed: str) -> str:
        return join_uri(normalize_uri(self.landing_uri), feed)

    def landing_versions(self, feed: str) -> dict[str, FileVersion]:
        """Every landing file of ``feed`` -> its version (fingerprint and size), and every entry named like
        one that may not be read (``FileVersion.refused``: a symbolic link, a device...); one line naming the
        URI if no file can be read."""
        uri = self.feed_uri(feed)
        versions = {f: v for f, v in self.store_for(uri).versions(uri).items() if is_feed_file(f)}
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
        sizes: Mapping[str, int] | None = None, schema: TableSchema | None = None,
        progress: ReadProgress | None = None,
    ) -> LandingRead:
        """The records of ``files`` (default: every file of the feed), read by the engine, which may store
        them in the folder ``records_to`` as it reads (``LandingRead.stored``); ``sizes``: the files' sizes
        as listed; ``schema``: the landing table's columns (default: the declared ones); ``progress``: told
        the files and bytes read as the engine reads them."""
        files = self.landing_files(feed) if files is None else files
        folder = RecordsFolder(records_to, self.store_for(records_to)) if records_to is not None else None
        return self.get_engine().read_landing(
            schema or TABLES[f"{feed}_landing"], files, self.store_for(files[0]), folder, sizes=sizes,
            progress=progress,
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

    def table_schema(self, table: str, iceberg_table=None) -> TableSchema:
        """The table's columns: the declared ones, then those added from delivered records (from its
        Iceberg schema); the declared ones alone while the table does not exist."""
        if iceberg_table is None:
            try:
                iceberg_table = self.load_table(table)
            except TableNotPublishedError:
                return PUBLISHED[table]
        return effective_schema(iceberg_table, PUBLISHED[table])

    def read_table(
        self, asset_path: list[str], snapshot_id: int | None = None, iceberg_table=None, in_process: bool = False,
        schema: TableSchema | None = None,
    ) -> nw.LazyFrame:
        """The table at ``snapshot_id`` (default: its current snapshot) as a lazy frame (``read_snapshot``)."""
        return self.read_snapshot(asset_path[-1], snapshot_id, iceberg_table, in_process, schema).frame

    def read_snapshot(
        self, table: str, snapshot_id: int | None = None, iceberg_table=None, in_process: bool = False,
        schema: TableSchema | None = None,
    ) -> TableRead:
        """The table at ``snapshot_id`` (default: its current snapshot), with the data files holding it, as a
        lazy frame of the engine, or of Polars in this process (``in_process``: for a few columns read to
        judge, never to compute a table).

        Its columns are the table's current ones (``table_schema``), or ``schema``'s: a column a data file
        lacks (added after it was written) reads as null."""
        iceberg_table = iceberg_table or self.load_table(table)
        schema = schema or effective_schema(iceberg_table, TABLES[table])
        files = self.snapshot_files(table, iceberg_table, snapshot_id)
        frame = self._scan(table, files, schema, in_process)
        snapshot_id = iceberg_table.metadata.current_snapshot_id if snapshot_id is None else snapshot_id
        return TableRead(table, frame, snapshot_id, files, schema, iceberg_table)

    def snapshot_files(self, table: str, iceberg_table, snapshot_id: int | None = None) -> tuple[str, ...]:
        """The data files holding the table at ``snapshot_id`` (default: its current snapshot)."""
        with catalog_errors(self.catalog_settings(), table):
            return tuple(data_file_paths(iceberg_table, snapshot_id))

    def read_files(self, read: TableRead, files: Sequence[str], in_process: bool = False) -> nw.LazyFrame:
        """Some data files of a table, read as ``read`` was (its columns), by the engine (or by Polars in this
        process: ``read_snapshot``'s ``in_process``)."""
        return self._scan(read.table, files, read.schema, in_process)

    def _scan(self, table: str, files: Sequence[str], schema: TableSchema, in_process: bool) -> nw.LazyFrame:
        store = self.store_for(self.table_location([table]))
        if in_process:
            from stedi_assets.lakehouse.engines.polars_engine import PolarsEngine

            return PolarsEngine(max_file_mb=self.max_file_mb).scan(list(files), schema, store)
        return self.get_engine().scan(list(files), schema, store)

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
            if not update.record:
                return Commit.of(iceberg_table, identifier, committed=False)
            with catalog_errors(settings, table):
                return commit_update(
                    lambda: self.load_table(table), identifier, [], properties, update.base_snapshot_id, replace=False
                )
        frame = update.replace if update.replace is not None else update.append
        # The table keeps every column it has; the frame's columns beyond them are added by the commit.
        schema = effective_schema(iceberg_table, TABLES[table])
        schema = schema.with_columns(frame_columns(frame, schema, identifier))
        found = frame.collect_schema()
        missing = [c for c in schema.columns if c.name not in found]
        if missing:
            frame = frame.with_columns(
                [nw.lit(None, dtype=NARWHALS_TYPES[c.type]).alias(c.name) for c in missing]
            )
        files = self.write_files(frame, schema, write_folder(iceberg_table, run_id))
        before_commit(identifier, files)
        load = lambda: self.load_table(table)  # noqa: E731
        columns = schema.extra_columns()
        with catalog_errors(settings, table):
            if not planned:
                return replace_contents(load, identifier, files, properties, columns=columns)
            return commit_update(
                load, identifier, files, properties, update.base_snapshot_id, replace=update.replace is not None,
                columns=columns,
            )


def frame_columns(frame: nw.LazyFrame, schema: TableSchema, identifier: str) -> list[Column]:
    """The columns of ``frame`` that ``schema`` lacks (added from delivered records), typed from the frame.

    A column added before must come with its type: a column keeps its type once added. (The
    declared columns are cast to their declared types by the engine's writer.)
    """
    types = {dtype: name for name, dtype in NARWHALS_TYPES.items()}
    have = {c.name: c for c in schema.columns}
    declared = {c.name for c in TABLES[schema.name].columns}
    added = []
    for name, dtype in frame.collect_schema().items():
        column_type = next((t for d, t in types.items() if dtype == d), None)
        if name in have:
            if name not in declared and column_type != have[name].type:
                raise CatalogError(
                    f"table {identifier}: column {name} is {have[name].type}, the new rows hold {column_type}: "
                    "a column keeps its type once added"
                )
            continue
        if column_type is None:
            raise CatalogError(f"table {identifier}: column {name} has type {dtype}, which no column may have")
        added.append(Column(name, column_type, ADDED_DESCRIPTION))
    return added


def before_commit(identifier: str, files: list[str]) -> None:
    """Called between the data files being written and the commit; the fault tests stop a run here."""


def is_feed_file(uri: str) -> bool:
    """Whether ``uri`` is named like a landing file: ``*.json`` or ``*.json.gz``, not hidden."""
    name = uri.rsplit("/", 1)[-1]
    return not name.startswith((".", "_")) and name.lower().endswith((".json", ".json.gz"))
