"""The zone tables in a Hive-style catalog: Athena DDL and the Glue Data Catalog.

Both are generated from the table declarations in ``schemas.py``:

* :func:`athena_ddl` prints ``CREATE EXTERNAL TABLE`` statements for every
  published zone table (Parquet, located at its published version folder) and
  for the raw landing feeds (newline-delimited JSON read with the OpenX JSON
  SerDe), so a user on AWS can register everything in one step;
* :func:`publish_to_glue` creates or updates one table in a Glue database;
  the IO manager calls it after each publish when a Glue database is set, so
  the catalog always points at the version just published.
"""

from __future__ import annotations

import re
from typing import Any

from stedi_assets.resources import PublishedTable, StediLakehouse
from stedi_assets.schemas import FEED_SCHEMAS, TABLES, TableSchema
from stedi_assets.storage import is_s3_uri, join_uri

PARQUET_INPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
JSON_SERDE = "org.openx.data.jsonserde.JsonSerDe"
TEXT_INPUT_FORMAT = "org.apache.hadoop.mapred.TextInputFormat"
TEXT_OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
RAW_SUFFIX = "_raw"
"""Raw landing tables are named ``{feed}_landing_raw``: ``{feed}_landing`` is the typed, distinct Parquet table."""

_DATABASE_NAME = re.compile(r"^[A-Za-z0-9_]{1,255}$")


class CatalogError(RuntimeError):
    """The catalog could not be updated; the message names the database and table."""


def database_name(name: str) -> str:
    """``name`` as Glue and Athena store it (lowercase), after checking it is a valid name."""
    if not _DATABASE_NAME.match(name):
        raise CatalogError(f"invalid database name {name!r}: use letters, digits and underscores only")
    return name.lower()


def catalog_uri(uri: str) -> str:
    """A folder URI as Athena and Glue expect it: ``s3://`` scheme, trailing slash."""
    if uri.startswith("s3a://"):
        uri = "s3://" + uri[len("s3a://"):]
    return uri.rstrip("/") + "/"


def published_location(lakehouse: StediLakehouse, table: str) -> tuple[str, str] | None:
    """(version, folder URI) of the published version of ``table``, or None if it has none."""
    manifest = lakehouse.read_manifest([table])
    if manifest is None:
        return None
    return manifest["version"], catalog_uri(join_uri(lakehouse.table_uri([table]), manifest["version"]))


# -- Athena DDL ------------------------------------------------------------------


def _quote(text: str) -> str:
    # Hive string literals escape with a backslash.
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _columns(table: TableSchema) -> str:
    return ",\n".join(f"  `{c.name}` {c.type} COMMENT {_quote(c.description)}" for c in table.columns)


def parquet_table_ddl(database: str, table: TableSchema, location: str, version: str) -> str:
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{table.name}` (\n{_columns(table)}\n)\n"
        f"COMMENT {_quote(f'{table.zone} zone: {table.grain}')}\n"
        "STORED AS PARQUET\n"
        f"LOCATION {_quote(location)}\n"
        f"TBLPROPERTIES ('classification'='parquet', 'stedi.version'={_quote(version)});"
    )


def landing_json_ddl(database: str, feed: str, location: str) -> str:
    table = FEED_SCHEMAS[feed]
    # Feeds have spelt one field in several cases (timeStamp, timestamp):
    # the SerDe matches JSON keys to columns without case, as the pipeline does.
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{feed}_landing{RAW_SUFFIX}` (\n{_columns(table)}\n)\n"
        f"COMMENT {_quote(f'raw {feed} feed as delivered to the landing zone, one row per JSON record')}\n"
        f"ROW FORMAT SERDE {_quote(JSON_SERDE)}\n"
        "WITH SERDEPROPERTIES ('case.insensitive'='true', 'ignore.malformed.json'='false')\n"
        f"STORED AS INPUTFORMAT {_quote(TEXT_INPUT_FORMAT)}\n"
        f"OUTPUTFORMAT {_quote(TEXT_OUTPUT_FORMAT)}\n"
        f"LOCATION {_quote(location)}\n"
        "TBLPROPERTIES ('classification'='json');"
    )


def athena_ddl(lakehouse: StediLakehouse, database: str = "stedi") -> str:
    """Statements that register the raw landing feeds and every published zone table."""
    database = database_name(database)
    notes = []  # leading comments: what the statements below leave out, and why
    if not is_s3_uri(lakehouse.table_uri([next(iter(TABLES))])):
        notes.append("-- Athena reads only s3:// locations: generate this DDL for a lakehouse on S3.")
    statements = [f"CREATE DATABASE IF NOT EXISTS `{database}`;"]
    for feed in FEED_SCHEMAS:
        statements.append(landing_json_ddl(database, feed, catalog_uri(lakehouse.feed_uri(feed))))
    for name, table in TABLES.items():
        location = published_location(lakehouse, name)
        if location is None:
            notes.append(f"-- {name}: not published yet at {lakehouse.table_uri([name])}; run `stedi run` first.")
            continue
        version, folder = location
        statements.append(parquet_table_ddl(database, table, folder, version))
    return "\n\n".join(["\n".join(notes), *statements] if notes else statements)


# -- Glue Data Catalog -------------------------------------------------------------


def glue_table_input(table: TableSchema, location: str, version: str) -> dict[str, Any]:
    """The Glue ``TableInput`` of a published Parquet table."""
    return {
        "Name": table.name,
        "Description": f"{table.zone} zone: {table.grain}",
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE", "stedi.version": version},
        "StorageDescriptor": {
            # The metastore keeps column names in lowercase (Athena's DDL
            # lowercases them too); Parquet columns are matched without case.
            "Columns": [{"Name": c.name.lower(), "Type": c.type, "Comment": c.description} for c in table.columns],
            "Location": location,
            "InputFormat": PARQUET_INPUT_FORMAT,
            "OutputFormat": PARQUET_OUTPUT_FORMAT,
            "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE, "Parameters": {"serialization.format": "1"}},
        },
    }


def glue_client(lakehouse: StediLakehouse):
    """A Glue client with the lakehouse store's AWS region and credentials where it has them.

    The endpoint, and any setting the store does not carry, come from the
    usual AWS chain (``AWS_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL_GLUE``,
    ``AWS_REGION``, profile, role), as for any boto3 client. The store's S3
    endpoint is not reused: an S3-compatible server is not a Glue catalog.
    """
    import boto3

    options = lakehouse.store_for(lakehouse.lakehouse_uri).storage_options or {}
    settings = {
        "region_name": options.get("aws_region"),
        "aws_access_key_id": options.get("aws_access_key_id"),
        "aws_secret_access_key": options.get("aws_secret_access_key"),
        "aws_session_token": options.get("aws_session_token"),
    }
    return boto3.client("glue", **{key: value for key, value in settings.items() if value})


def publish_to_glue(lakehouse: StediLakehouse, table: str, published: PublishedTable, client=None) -> str:
    """Create or update ``table`` in the lakehouse's Glue database to point at ``published``.

    Returns ``database.table``. The database is created if missing; an existing
    table is replaced as a whole (columns, location, format), so a schema
    change leaves one table with the new columns.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    database = database_name(lakehouse.glue_database)
    client = client or glue_client(lakehouse)
    table_input = glue_table_input(
        TABLES[table], catalog_uri(join_uri(published.uri, published.version)), published.version
    )
    # Create first and fall back on "already exists": no window between a
    # look-up and a create in which another run could slip in.
    try:
        try:
            client.create_database(DatabaseInput={"Name": database, "Description": "STEDI lakehouse zone tables"})
        except client.exceptions.AlreadyExistsException:
            pass
        try:
            client.create_table(DatabaseName=database, TableInput=table_input)
        except client.exceptions.AlreadyExistsException:
            client.update_table(DatabaseName=database, TableInput=table_input)
    except (BotoCoreError, ClientError) as error:
        raise CatalogError(f"Glue database {database}: cannot register table {table} ({error})") from None
    return f"{database}.{table}"
