"""The catalog: `stedi ddl` (Athena DDL) and Glue Data Catalog publishing.

Covers the generated DDL (parsed with sqlglot's Hive dialect and compared with
schemas.py), the database option, and Glue publishing from the IO manager
against a moto server on 127.0.0.1: tables created on materialization, the
location following the published version, one table after a schema change.
Does not cover SQL queries (test_query.py).
"""

from __future__ import annotations

import dataclasses

import boto3
import pytest
import sqlglot
from sqlglot import exp

from stedi_assets import cli
from stedi_assets.catalog import CatalogError, athena_ddl, catalog_uri, publish_to_glue
from stedi_assets.resources import PublishedTable, StediLakehouse
from stedi_assets.schemas import FEED_SCHEMAS, TABLES, Column
from stedi_assets_tests.conftest import materialize_all


@pytest.fixture
def aws(moto_server, monkeypatch) -> str:
    """Point every boto3 client of the test at the moto server, with test credentials."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_server


@pytest.fixture(scope="module")
def glue_lakehouse(stedi_landing, tmp_path_factory, moto_server) -> StediLakehouse:
    """Every table of the real data set, published once with Glue registration into database `stedi_test`."""
    patch = pytest.MonkeyPatch()
    for variable, value in {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        patch.setenv(variable, value)
    try:
        lakehouse = StediLakehouse(
            landing_uri=str(stedi_landing),
            lakehouse_uri=str(tmp_path_factory.mktemp("catalog") / "lakehouse"),
            glue_database="stedi_test",
        )
        result = materialize_all(lakehouse)
        assert result.success
        assert {
            e.materialization.metadata["glue_table"].value for e in result.get_asset_materialization_events()
        } == {f"stedi_test.{name}" for name in TABLES}
    finally:
        patch.undo()
    return lakehouse


def glue(endpoint: str):
    return boto3.client(
        "glue", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )


def glue_tables(endpoint: str, database: str) -> dict[str, dict]:
    return {t["Name"]: t for t in glue(endpoint).get_tables(DatabaseName=database)["TableList"]}


def version_folder(lakehouse: StediLakehouse, table: str) -> str:
    manifest = lakehouse.read_manifest([table])
    return f"{lakehouse.table_uri([table])}/{manifest['version']}/"


# -- DDL -----------------------------------------------------------------------------


def parse_ddl(ddl: str) -> dict[str, exp.Create]:
    statements = [s for s in sqlglot.parse(ddl, read="hive") if s is not None]
    assert all(isinstance(s, exp.Create) for s in statements)
    return {s.this.name if s.kind == "DATABASE" else s.find(exp.Table).name: s for s in statements}


def columns_of(statement: exp.Create) -> list[tuple[str, str]]:
    return [(c.name, c.args["kind"].sql("hive").lower()) for c in statement.find_all(exp.ColumnDef)]


def properties_of(statement: exp.Create) -> dict[type, exp.Expression]:
    return {type(p): p for p in statement.args["properties"].expressions}


def test_ddl_declares_every_table_from_the_schemas(glue_lakehouse, capsys, monkeypatch):
    monkeypatch.setenv("STEDI_LAKEHOUSE_URI", glue_lakehouse.lakehouse_uri)
    monkeypatch.setenv("STEDI_LANDING_URI", glue_lakehouse.landing_uri)

    assert cli.main(["ddl", "--database", "analytics"]) == 0
    statements = parse_ddl(capsys.readouterr().out)

    assert set(statements) == {"analytics"} | set(TABLES) | {f"{feed}_landing_raw" for feed in FEED_SCHEMAS}
    for name, table in TABLES.items():
        statement = statements[name]
        assert statement.find(exp.Table).db == "analytics"
        assert columns_of(statement) == [(c.name, c.type) for c in table.columns]
        properties = properties_of(statement)
        assert exp.ExternalProperty in properties
        assert properties[exp.FileFormatProperty].name.upper() == "PARQUET"
        assert properties[exp.LocationProperty].this.name == version_folder(glue_lakehouse, name)
    for feed, table in FEED_SCHEMAS.items():
        statement = statements[f"{feed}_landing_raw"]
        assert columns_of(statement) == [(c.name, c.type) for c in table.columns]
        properties = properties_of(statement)
        assert properties[exp.RowFormatSerdeProperty].this.name == "org.openx.data.jsonserde.JsonSerDe"
        serde_properties = properties[exp.RowFormatSerdeProperty].args["serde_properties"].expressions
        serde = {p.this.name: p.args["value"].name for p in serde_properties}
        assert serde["case.insensitive"] == "true"
        assert properties[exp.LocationProperty].this.name == f"{glue_lakehouse.landing_uri}/{feed}/"


def test_ddl_database_defaults_to_the_glue_database(glue_lakehouse, capsys, monkeypatch):
    monkeypatch.setenv("STEDI_LAKEHOUSE_URI", glue_lakehouse.lakehouse_uri)
    monkeypatch.setenv("STEDI_GLUE_DATABASE", "Research")

    assert cli.main(["ddl"]) == 0
    statements = parse_ddl(capsys.readouterr().out)

    assert "research" in statements
    assert {s.find(exp.Table).db for name, s in statements.items() if name != "research"} == {"research"}


def test_ddl_of_an_unpublished_table_is_a_comment(tmp_path):
    empty = StediLakehouse(landing_uri=str(tmp_path / "landing"), lakehouse_uri=str(tmp_path / "lakehouse"))
    ddl = athena_ddl(empty)

    assert set(parse_ddl(ddl)) == {"stedi"} | {f"{feed}_landing_raw" for feed in FEED_SCHEMAS}
    for name in TABLES:
        assert f"-- {name}: not published yet at {empty.table_uri([name])}" in ddl


def test_ddl_rejects_an_invalid_database_name(glue_lakehouse, capsys, monkeypatch):
    monkeypatch.setenv("STEDI_LAKEHOUSE_URI", glue_lakehouse.lakehouse_uri)

    assert cli.main(["ddl", "--database", "stedi; DROP DATABASE x"]) == 2
    assert "invalid database name" in capsys.readouterr().err


def test_catalog_uris_use_the_s3_scheme():
    assert catalog_uri("s3a://bucket/lakehouse/trusted/t/v1") == "s3://bucket/lakehouse/trusted/t/v1/"
    assert catalog_uri("s3://bucket/landing/customer/") == "s3://bucket/landing/customer/"


# -- Glue ----------------------------------------------------------------------------


@pytest.mark.s3
def test_materializing_registers_every_table_in_glue(glue_lakehouse, moto_server):
    tables = glue_tables(moto_server, "stedi_test")

    assert set(tables) == set(TABLES)
    for name, table in TABLES.items():
        descriptor = tables[name]["StorageDescriptor"]
        assert [(c["Name"], c["Type"]) for c in descriptor["Columns"]] == [(c.name.lower(), c.type) for c in table.columns]
        assert descriptor["Location"] == version_folder(glue_lakehouse, name)
        assert descriptor["SerdeInfo"]["SerializationLibrary"] == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
        assert descriptor["InputFormat"] == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
        assert tables[name]["TableType"] == "EXTERNAL_TABLE"


@pytest.mark.s3
def test_a_new_version_moves_the_glue_location(glue_lakehouse, moto_server, aws):
    before = glue_tables(moto_server, "stedi_test")["customer_landing"]["StorageDescriptor"]["Location"]

    assert materialize_all(glue_lakehouse, selection=["customer_landing", "customer_quarantine"]).success

    after = glue_tables(moto_server, "stedi_test")["customer_landing"]["StorageDescriptor"]["Location"]
    assert after != before
    assert after == version_folder(glue_lakehouse, "customer_landing")


@pytest.mark.s3
def test_a_schema_change_updates_the_one_glue_table(glue_lakehouse, moto_server, aws, monkeypatch):
    manifest = glue_lakehouse.read_manifest(["customer_trusted"])
    published = PublishedTable(
        glue_lakehouse.table_uri(["customer_trusted"]), manifest["version"], manifest["files"], manifest["rows"], {}
    )
    database = "schema_change"
    lakehouse = StediLakehouse(
        landing_uri=glue_lakehouse.landing_uri, lakehouse_uri=glue_lakehouse.lakehouse_uri, glue_database=database
    )
    publish_to_glue(lakehouse, "customer_trusted", published)
    original = TABLES["customer_trusted"]
    changed = dataclasses.replace(
        original,
        columns=tuple(c for c in original.columns if c.name != "phone") + (Column("ageGroup", "string", "Age band."),),
    )
    monkeypatch.setitem(TABLES, "customer_trusted", changed)

    publish_to_glue(lakehouse, "customer_trusted", published)

    tables = glue_tables(moto_server, database)
    assert list(tables) == ["customer_trusted"]
    columns = [c["Name"] for c in tables["customer_trusted"]["StorageDescriptor"]["Columns"]]
    assert columns == [c.name.lower() for c in changed.columns]
    assert "phone" not in columns and columns[-1] == "agegroup"


@pytest.mark.s3
def test_an_unreachable_catalog_is_a_one_line_error(glue_lakehouse, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    manifest = glue_lakehouse.read_manifest(["customer_trusted"])
    published = PublishedTable(glue_lakehouse.table_uri(["customer_trusted"]), manifest["version"], [], 0, {})

    with pytest.raises(CatalogError, match=r"^Glue database stedi_test: cannot register table customer_trusted \(") as error:
        publish_to_glue(glue_lakehouse, "customer_trusted", published)
    assert "\n" not in str(error.value)
