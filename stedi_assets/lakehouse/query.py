"""Read-only SQL over the published zone tables, with DuckDB as the engine.

Every published table is queryable by its asset name (``customer_trusted``,
``machine_learning_curated`` ...), as it is in Athena through the Glue Data
Catalog. Tables are read through the Iceberg catalog: the current snapshot,
or the one current at an earlier time (``as_of``).

pyiceberg plans each table's scan (which data files make up the snapshot);
pyarrow reads the files, not DuckDB: each table the statement names is a
pyarrow dataset over its snapshot's files, on a filesystem built from the
lakehouse store's settings (local files, or S3 from the store's
``storage_options``), registered in DuckDB as a view. That keeps S3 reachable
without DuckDB's ``iceberg`` and ``httpfs`` extensions, which are downloaded
at run time; only the tables a statement names are planned and read.

Results are streamed: the statement runs under DuckDB's ``memory_limit``
(``STEDI_QUERY_MEMORY_LIMIT``, nothing spilled to disk) and its rows are
fetched in record batches, so a caller that stops after N rows never holds
more than a batch beyond them, whatever the query would return.

A query can never change a table, for two independent reasons:

* only read statements are accepted (SELECT, WITH, VALUES, DESCRIBE, SHOW,
  SUMMARIZE, EXPLAIN of one of those), one statement at a time, checked with
  DuckDB's own parser so that what is checked is what would run;
* DuckDB runs in memory with file-system access and extension loading
  switched off and its configuration locked, so even a statement that got
  past the check could neither open nor write a file; the tables it sees are
  views over in-process datasets, which it cannot write to.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlparse

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from stedi_assets.lakehouse.tables import data_file_paths, snapshot_at
from stedi_assets.lakehouse.catalog import TableNotPublishedError
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.domain.schemas import PUBLISHED, TableSchema
from stedi_assets.settings import DEFAULT_QUERY_MEMORY_LIMIT
from stedi_assets.lakehouse.storage import Store, is_s3_uri

ARROW_TYPES: dict[str, pa.DataType] = {"string": pa.string(), "bigint": pa.int64(), "double": pa.float64()}

READ_STATEMENTS = "SELECT, WITH, VALUES, DESCRIBE, SHOW, SUMMARIZE or EXPLAIN"

# Leading "EXPLAIN", "EXPLAIN ANALYZE" or "EXPLAIN (options)" of a statement,
# after any leading comments: what follows is the statement that would run.
_EXPLAIN = re.compile(
    r"^(?:\s|--[^\n]*\n|/\*.*?\*/)*EXPLAIN\s+(?:\([^)]*\)\s*)?(?:ANALY[SZ]E\s+)?",
    re.IGNORECASE | re.DOTALL,
)


class QueryError(RuntimeError):
    """A query was refused or failed; the message is one line."""


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def check_read_only(sql: str) -> None:
    """Raise :class:`QueryError` unless ``sql`` is exactly one read statement."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as error:
        raise QueryError(_one_line(error)) from None
    if not statements:
        raise QueryError("no SQL statement given")
    if len(statements) > 1:
        raise QueryError(f"only one statement per query is allowed; got {len(statements)}")
    statement = statements[0]
    kind = statement.type
    if kind == duckdb.StatementType.EXPLAIN:
        # EXPLAIN ANALYZE executes the statement it explains: check that one.
        explained = _EXPLAIN.sub("", statement.query, count=1)
        if explained == statement.query:
            raise QueryError("cannot tell which statement this EXPLAIN explains; write EXPLAIN <SELECT ...>")
        check_read_only(explained)
        return
    if kind == duckdb.StatementType.MULTI:
        # DuckDB expands e.g. a PIVOT without an IN list into CREATE TYPE + SELECT.
        raise QueryError("this statement expands into several statements; for PIVOT, list the values: ON col IN (...)")
    if kind != duckdb.StatementType.SELECT:
        name = kind.name.replace("_", " ")
        raise QueryError(
            f"{name} statements are not allowed: the lakehouse is read-only here; use {READ_STATEMENTS}"
        )


def arrow_schema(table: TableSchema) -> pa.Schema:
    return pa.schema([pa.field(c.name, ARROW_TYPES[c.type]) for c in table.columns])


def arrow_filesystem(store: Store, uri: str) -> pafs.FileSystem:
    """A pyarrow filesystem that reads ``uri`` with the same settings as ``store``."""
    if not is_s3_uri(uri):
        return pafs.LocalFileSystem()
    return s3_filesystem(store.storage_options or {})


def s3_filesystem(storage_options: Mapping[str, str]) -> pafs.S3FileSystem:
    """pyarrow's S3 client configured from Polars-style ``storage_options``.

    Settings that are absent fall back to the usual AWS chain (environment,
    profile, instance role), as they do for Polars and boto3.
    """
    options = {key.lower(): value for key, value in storage_options.items()}

    def option(*names: str) -> str | None:
        return next((options[n] for n in names if options.get(n)), None)

    settings: dict[str, object] = {}
    if access_key := option("aws_access_key_id", "access_key_id"):
        settings["access_key"] = access_key
        settings["secret_key"] = option("aws_secret_access_key", "secret_access_key")
        if token := option("aws_session_token", "session_token", "aws_token", "token"):
            settings["session_token"] = token
    if region := option("aws_region", "region", "aws_default_region"):
        settings["region"] = region
    if endpoint := option("aws_endpoint_url", "aws_endpoint", "endpoint_url", "endpoint"):
        parsed = urlparse(endpoint)
        if parsed.scheme in ("http", "https"):
            settings["endpoint_override"] = parsed.netloc + parsed.path.rstrip("/")
            settings["scheme"] = parsed.scheme
        else:
            settings["endpoint_override"] = endpoint
            if str(option("aws_allow_http", "allow_http")).lower() == "true":
                settings["scheme"] = "http"
    if str(option("aws_skip_signature", "skip_signature")).lower() == "true":
        settings["anonymous"] = True
    if str(option("aws_virtual_hosted_style_request", "virtual_hosted_style_request")).lower() == "true":
        settings["force_virtual_addressing"] = True
    return pafs.S3FileSystem(**settings)


def _arrow_path(uri: str) -> str:
    """The path pyarrow's filesystems expect: ``bucket/key`` on S3, the file path locally."""
    if is_s3_uri(uri):
        return uri.split("://", 1)[1]
    parsed = urlparse(uri)
    return parsed.path if parsed.scheme == "file" else uri


@dataclass(frozen=True)
class AsOf:
    """A point in a lakehouse's history: a snapshot id of one table, or a time (epoch ms, UTC)."""

    snapshot_id: int | None = None
    timestamp_ms: int | None = None


def parse_as_of(text: str) -> AsOf:
    """``SNAPSHOT_ID`` (digits) or a time: ``2026-11-28T08:15:00Z``, ``2026-11-28 08:15``, ``2026-11-28`` (UTC)."""
    text = text.strip()
    if re.fullmatch(r"-?\d{6,}", text):
        return AsOf(snapshot_id=int(text))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(
            f"--as-of {text!r}: expected a snapshot id (see `stedi history TABLE`) or a time such as 2026-11-28T08:15:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return AsOf(timestamp_ms=int(moment.timestamp() * 1000))


def mentioned_tables(sql: str | None) -> list[str]:
    """The tables a statement names (as words, any case); every table when it names none (SHOW TABLES)."""
    if sql is None:
        return list(PUBLISHED)
    named = [name for name in PUBLISHED if re.search(rf"(?<!\w){name}(?!\w)", sql, re.IGNORECASE)]
    return named or list(PUBLISHED)


def _table_snapshots(lakehouse: Lakehouse, names: list[str], as_of: AsOf | None) -> tuple[dict, dict[str, str]]:
    """(table -> (iceberg table, snapshot id)) to read, and table -> why it is not there."""
    loaded = {}
    missing: dict[str, str] = {}
    for name in names:
        try:
            loaded[name] = lakehouse.load_table(name)
        except TableNotPublishedError:
            missing[name] = "has not been published yet: run `stedi run` first"
    if as_of is None:
        chosen = {}
        for name, table in loaded.items():
            if table.metadata.current_snapshot_id is None:  # created, but its first commit never happened
                missing[name] = "has not been published yet: run `stedi run` first"
            else:
                chosen[name] = (table, table.metadata.current_snapshot_id)
        return chosen, missing
    timestamp_ms = as_of.timestamp_ms
    owner = None
    if as_of.snapshot_id is not None:
        candidates = dict(loaded)
        for name in PUBLISHED:
            if name not in candidates:
                try:
                    candidates[name] = lakehouse.load_table(name)
                except TableNotPublishedError:
                    continue
        for name, table in candidates.items():
            snapshot = table.metadata.snapshot_by_id(as_of.snapshot_id)
            if snapshot is not None:
                owner, timestamp_ms = name, snapshot.timestamp_ms
                break
        if owner is None:
            raise QueryError(
                f"--as-of {as_of.snapshot_id}: no table has this snapshot (expired by maintenance, or of another "
                "lakehouse); `stedi history TABLE` lists the snapshots kept"
            )
    chosen = {}
    when = datetime.fromtimestamp(timestamp_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for name, table in loaded.items():
        snapshot_id = as_of.snapshot_id if name == owner else snapshot_at(table, timestamp_ms)
        if snapshot_id is None:
            missing[name] = f"had no snapshot at {when}"
            continue
        chosen[name] = (table, snapshot_id)
    return chosen, missing


def published_datasets(
    lakehouse: Lakehouse, sql: str | None = None, as_of: AsOf | None = None, missing: dict[str, str] | None = None
) -> dict[str, ds.Dataset]:
    """A pyarrow dataset over the snapshot of each table ``sql`` names (every table without ``sql``).

    The current snapshot, or the one current at ``as_of``; with a snapshot id,
    its table is read at that snapshot and every other table at the snapshot
    current when it was committed. Tables that are not there are left out and,
    with the reason, put into ``missing``.
    """
    chosen, not_there = _table_snapshots(lakehouse, mentioned_tables(sql), as_of)
    if missing is not None:
        missing.update(not_there)
    datasets = {}
    for name, (table, snapshot_id) in chosen.items():
        schema = arrow_schema(PUBLISHED[name])
        files = data_file_paths(table, snapshot_id) if snapshot_id is not None else []
        if files:
            filesystem = arrow_filesystem(lakehouse.store_for(files[0]), files[0])
            datasets[name] = ds.dataset(
                [_arrow_path(f) for f in files], schema=schema, format="parquet", filesystem=filesystem
            )
        else:
            datasets[name] = ds.dataset(schema.empty_table())
    return datasets


# Rows fetched from DuckDB at a time: large enough to keep the per-batch
# overhead small, small enough that a batch is a few MB.
BATCH_ROWS = 10_000


def connect(
    lakehouse: Lakehouse,
    memory_limit: str = DEFAULT_QUERY_MEMORY_LIMIT,
    sql: str | None = None,
    as_of: AsOf | None = None,
    missing: dict[str, str] | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that sees the tables ``sql`` names (default: all) as read-only views."""
    connection = duckdb.connect(
        ":memory:",
        config={
            # A query that needs more fails with an out-of-memory error rather
            # than taking the machine's memory. No temporary directory: nothing
            # is spilled to disk, so the connection writes no file at all.
            "memory_limit": memory_limit,
            "temp_directory": "",
            "autoload_known_extensions": False,
            "autoinstall_known_extensions": False,
            # Names in a query resolve to the registered tables only, never
            # to Python variables that happen to share a name.
            "python_enable_replacements": False,
        },
    )
    # No file can be opened, attached, copied to or loaded as an extension:
    # the only data reachable is the registered datasets. Set after connecting,
    # because with it DuckDB refuses to take the temp_directory setting above.
    connection.execute("SET enable_external_access = false")
    datasets = published_datasets(lakehouse, sql, as_of, missing)
    for name, dataset in datasets.items():
        connection.register(name, dataset)
    # The tables by their catalog identifier too, as Athena names them: stedi.customer_trusted.
    namespace = lakehouse.catalog_settings().database
    if namespace not in ("main", "temp", "system", "information_schema", "pg_catalog"):  # DuckDB's own
        connection.execute(f'CREATE SCHEMA "{namespace}"')
        for name in datasets:
            connection.execute(f'CREATE VIEW "{namespace}"."{name}" AS SELECT * FROM "{name}"')
    connection.execute("SET lock_configuration = true")
    return connection


def query(
    sql: str,
    lakehouse: Lakehouse | str,
    memory_limit: str = DEFAULT_QUERY_MEMORY_LIMIT,
    as_of: AsOf | str | None = None,
) -> pl.DataFrame:
    """Run one read-only SQL statement over the published tables of ``lakehouse``; every row.

    ``lakehouse`` is a :class:`Lakehouse`, or just the URI of a local
    lakehouse. Table names are the asset names; column names are
    case-insensitive, as in Athena. ``as_of`` (a snapshot id or a time, see
    :func:`parse_as_of`) runs it against an earlier state. Raises
    :class:`QueryError` with a one-line message when the statement is not a
    read, the engine rejects it, or it needs more than ``memory_limit``. To
    stop after some rows without holding the rest, use :func:`query_batches`.
    """
    return pl.concat(list(query_batches(sql, lakehouse, memory_limit, as_of=as_of)), how="vertical")


def query_batches(
    sql: str,
    lakehouse: Lakehouse | str,
    memory_limit: str = DEFAULT_QUERY_MEMORY_LIMIT,
    batch_rows: int = BATCH_ROWS,
    as_of: AsOf | str | None = None,
) -> Iterator[pl.DataFrame]:
    """The result of one read-only statement as frames of at most ``batch_rows`` rows.

    DuckDB produces the rows as they are fetched; closing the generator (or
    stopping the iteration) stops the query. At least one frame is yielded,
    so an empty result still has its columns.
    """
    check_read_only(sql)
    if isinstance(lakehouse, str):
        # A local lakehouse by its URI alone, every other setting at its default.
        lakehouse = Lakehouse(landing_uri=lakehouse, lakehouse_uri=lakehouse)
    if isinstance(as_of, str):
        as_of = parse_as_of(as_of)
    missing: dict[str, str] = {}
    try:
        connection = connect(lakehouse, memory_limit, sql, as_of, missing)
    except duckdb.Error as error:
        raise QueryError(_one_line(error)) from None
    try:
        try:
            relation = connection.sql(sql)
            if relation is None:
                yield pl.DataFrame()
                return
            reader = relation.to_arrow_reader(batch_rows)
        except duckdb.Error as error:
            raise QueryError(_explain_error(error, connection, memory_limit, missing)) from None
        yielded = False
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except duckdb.Error as error:
                raise QueryError(_explain_error(error, connection, memory_limit, missing)) from None
            yielded = True
            yield _frame(batch)
        if not yielded:
            yield _frame(reader.schema.empty_table())
    finally:
        connection.close()


def _frame(batch: pa.RecordBatch | pa.Table) -> pl.DataFrame:
    """``batch`` as a Polars frame; a repeated column name (``SELECT *`` of a self-join) gets a suffix, ``x_1``."""
    names, seen = [], set()
    for name in batch.schema.names:
        unique, n = name, 0
        while unique in seen:
            n += 1
            unique = f"{name}_{n}"
        seen.add(unique)
        names.append(unique)
    if names != batch.schema.names:
        batch = batch.rename_columns(names)
    return pl.from_arrow(batch)


def _explain_error(
    error: duckdb.Error, connection: duckdb.DuckDBPyConnection, memory_limit: str, missing: dict[str, str]
) -> str:
    if isinstance(error, duckdb.OutOfMemoryException):
        return (
            f"the query needs more memory than STEDI_QUERY_MEMORY_LIMIT={memory_limit} allows: "
            "raise STEDI_QUERY_MEMORY_LIMIT (e.g. 8GB) or narrow the query"
        )
    message = _one_line(error)
    if isinstance(error, duckdb.CatalogException):
        registered = {row[0] for row in connection.execute("SHOW TABLES").fetchall()}
        absent = [name for name in PUBLISHED if name not in registered and re.search(rf"\b{name}\b", message)]
        if absent:
            reason = missing.get(absent[0], "has not been published yet: run `stedi run` first")
            message += f" ({absent[0]} {reason})"
    return message
