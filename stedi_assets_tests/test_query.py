"""SQL over the published tables: `stedi query` and `stedi_assets.query` on the real data set.

Covers the reference row counts through the command, the reference system's
documented queries verbatim, full SQL (join, window, CTE), output formats,
the read-only guarantee and one-line errors; and the same queries on a
lakehouse in S3 (a moto server on 127.0.0.1). Time travel (``--as-of``) is
covered in lakehouse/test_lineage.py.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from stedi_assets import cli
from stedi_assets.profiles import STEDI_REFERENCE
from stedi_assets.query import QueryError, connect, published_datasets, query
from stedi_assets.resources import StediLakehouse
from stedi_assets.schemas import TABLES
from stedi_assets.lakehouse.tables import data_file_paths
from stedi_assets_tests.conftest import materialize_all, stored_table


@pytest.fixture(scope="module")
def lakehouse(stedi_landing, tmp_path_factory) -> StediLakehouse:
    """Every table of the real data set, published once for the module."""
    lakehouse = StediLakehouse(
        landing_uri=str(stedi_landing), lakehouse_uri=str(tmp_path_factory.mktemp("query") / "lakehouse")
    )
    assert materialize_all(lakehouse).success
    return lakehouse


@pytest.fixture
def stedi(lakehouse, monkeypatch, capsys):
    """Run `stedi ...` against the module's lakehouse; return (exit code, stdout, stderr)."""
    monkeypatch.setenv("STEDI_LAKEHOUSE_URI", lakehouse.lakehouse_uri)

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def stored(lakehouse: StediLakehouse, table: str) -> pl.DataFrame:
    """The published table read by an independent pyiceberg client, without the query layer."""
    return stored_table(Path(lakehouse.lakehouse_uri), table)


def lakehouse_fingerprint(lakehouse: StediLakehouse) -> dict[str, str]:
    root = Path(lakehouse.lakehouse_uri)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("table", list(TABLES))
def test_reference_counts_through_the_command(stedi, table):
    code, out, err = stedi("query", f"SELECT COUNT(*) AS n FROM {table}", "--format", "json")

    assert (code, err) == (0, "")
    assert json.loads(out) == [{"n": STEDI_REFERENCE[table]}]


def test_reference_queries_verbatim(lakehouse):
    expected = STEDI_REFERENCE
    assert query("SELECT COUNT(*) FROM customer_landing", lakehouse).item() == expected["customer_landing"]
    assert query("SELECT COUNT(*) FROM machine_learning_curated", lakehouse).item() == expected["machine_learning_curated"]
    assert query("select count(*) from accelerometer_trusted", lakehouse).item() == expected["accelerometer_trusted"]
    # A bare URI will do for a local lakehouse.
    by_uri = query("SELECT COUNT(*) FROM step_trainer_trusted", lakehouse.lakehouse_uri)
    assert by_uri.item() == expected["step_trainer_trusted"]

    no_consent = query("SELECT * FROM customer_trusted WHERE shareWithResearchAsOfDate IS NULL", lakehouse)
    assert no_consent.height == 0
    assert no_consent.columns == TABLES["customer_trusted"].column_names


def test_column_names_are_case_insensitive(lakehouse):
    landing = stored(lakehouse, "customer_landing")
    without_consent = landing.filter(pl.col("shareWithResearchAsOfDate").is_null()).height
    assert without_consent > 0  # the landing zone does hold customers without consent

    for spelling in ("shareWithResearchAsOfDate", "sharewithresearchasofdate", "SHAREWITHRESEARCHASOFDATE"):
        sql = f"SELECT COUNT(*) FROM customer_landing WHERE {spelling} IS NULL"
        assert query(sql, lakehouse).item() == without_consent
        assert query(sql.replace("customer_landing", "customer_trusted"), lakehouse).item() == 0


def test_join_window_function_and_cte(lakehouse):
    sql = """
        WITH readings AS (
            SELECT c.email, COUNT(*) AS readings, MAX(a.timestamp) AS last_reading
            FROM customer_curated AS c
            JOIN accelerometer_trusted AS a ON a.user = c.email
            GROUP BY c.email
        )
        SELECT email, readings, last_reading,
               RANK() OVER (ORDER BY readings DESC) AS busiest,
               SUM(readings) OVER () AS all_readings
        FROM readings
        ORDER BY readings DESC, email
    """
    result = query(sql, lakehouse)

    readings = (
        stored(lakehouse, "customer_curated")
        .join(stored(lakehouse, "accelerometer_trusted"), left_on="email", right_on="user")
        .group_by("email")
        .agg(readings=pl.len(), last_reading=pl.col("timestamp").max())
    )
    expected = readings.with_columns(
        busiest=pl.col("readings").rank("min", descending=True),
        all_readings=pl.col("readings").sum(),
    ).sort(["readings", "email"], descending=[True, False])
    assert_frame_equal(result, expected, check_dtypes=False)
    assert result["all_readings"][0] == STEDI_REFERENCE["accelerometer_trusted"]


def test_output_formats(stedi, lakehouse):
    sql = "SELECT serialNumber, COUNT(*) AS readings FROM step_trainer_trusted GROUP BY 1 ORDER BY 2 DESC, 1"
    expected = query(sql, lakehouse)

    code, out, _ = stedi("query", sql, "--format", "csv")
    assert code == 0
    assert_frame_equal(pl.read_csv(io.StringIO(out)), expected, check_dtypes=False)

    code, out, _ = stedi("query", sql, "--format", "json")
    assert code == 0
    assert json.loads(out) == expected.to_dicts()

    code, out, _ = stedi("query", sql, "--max-rows", "-1")
    assert code == 0
    assert f"({expected.height:,} rows)" in out
    assert all(serial in out for serial in expected["serialNumber"])  # every row shown, none elided
    assert "serialNumber" in out and "readings" in out


def test_describe_show_and_explain(lakehouse):
    described = query("DESCRIBE machine_learning_curated", lakehouse)
    assert described["column_name"].to_list() == TABLES["machine_learning_curated"].column_names
    assert set(query("SHOW TABLES", lakehouse)["name"]) == set(TABLES)
    assert query("EXPLAIN SELECT COUNT(*) FROM customer_trusted", lakehouse).height > 0


def test_the_lakehouse_uri_option(lakehouse, capsys, monkeypatch):
    monkeypatch.delenv("STEDI_LAKEHOUSE_URI", raising=False)  # restored afterwards: the option sets it

    code = cli.main(["query", "SELECT COUNT(*) AS n FROM customer_trusted", "--format", "csv", "--lakehouse", lakehouse.lakehouse_uri])

    assert code == 0
    assert capsys.readouterr().out.splitlines() == ["n", str(STEDI_REFERENCE["customer_trusted"])]


WRITES = {
    "insert": "INSERT INTO customer_trusted SELECT * FROM customer_landing",
    "delete": "DELETE FROM customer_trusted",
    "update": "UPDATE customer_trusted SET email = NULL",
    "drop": "DROP VIEW customer_trusted",
    "create": "CREATE TABLE customer_trusted_copy AS SELECT * FROM customer_trusted",
    "copy_to": "COPY customer_trusted TO 'customer_trusted.csv'",
    "copy_select_to": "COPY (SELECT * FROM customer_landing) TO 'leak.parquet' (FORMAT parquet)",
    "attach": "ATTACH 'other.duckdb' AS other",
    "multiple_statements": "SELECT 1; DROP VIEW customer_trusted",
    "explain_analyze_write": "EXPLAIN ANALYZE DELETE FROM customer_trusted",
    "set": "SET enable_external_access = true",
    "load": "LOAD httpfs",
    "pragma": "PRAGMA database_list",
}


def test_write_statements_are_rejected(stedi, lakehouse, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a relative COPY/ATTACH target would land
    before = lakehouse_fingerprint(lakehouse)

    for name, sql in WRITES.items():
        code, out, err = stedi("query", sql)
        assert code == 2, name
        assert out == "", name
        assert err.startswith("error: ") and err.count("\n") == 1, (name, err)
        assert "Traceback" not in err

    assert lakehouse_fingerprint(lakehouse) == before
    assert list(tmp_path.iterdir()) == []
    assert query("SELECT COUNT(*) FROM customer_trusted", lakehouse).item() == STEDI_REFERENCE["customer_trusted"]


@pytest.mark.parametrize("name", ["insert", "delete", "drop", "copy_to", "attach"])
def test_rejection_names_the_statement(lakehouse, name):
    with pytest.raises(QueryError, match=r"not allowed|one statement"):
        query(WRITES[name], lakehouse)


def test_the_engine_cannot_write_even_past_the_check(lakehouse, tmp_path):
    # The statement check is the first line of defence; this is the second:
    # the connection itself refuses files, extensions and configuration changes.
    connection = connect(lakehouse)
    target = tmp_path / "copy.csv"
    with pytest.raises(duckdb.PermissionException):
        connection.execute(f"COPY customer_trusted TO '{target}'")
    with pytest.raises(duckdb.PermissionException):
        connection.execute(f"ATTACH '{tmp_path / 'db.duckdb'}'")
    with pytest.raises(duckdb.PermissionException):
        connection.execute(f"SELECT * FROM read_parquet('{stored_file(lakehouse)}')")
    with pytest.raises(duckdb.Error, match="locked"):
        connection.execute("SET enable_external_access = true")
    with pytest.raises(duckdb.Error):
        connection.execute("INSERT INTO customer_trusted SELECT * FROM customer_trusted")
    connection.close()
    assert list(tmp_path.iterdir()) == []


def stored_file(lakehouse: StediLakehouse) -> str:
    return data_file_paths(lakehouse.load_table("customer_trusted"))[0]


@pytest.mark.parametrize(
    "sql, message",
    [
        ("SELECT nosuchcolumn FROM customer_trusted", "nosuchcolumn"),
        ("SELEC 1", "syntax error"),
        ("SELECT * FROM customers", "customers"),
        ("", "no SQL statement"),
    ],
)
def test_a_bad_query_is_one_line_with_exit_code_2(stedi, sql, message):
    code, out, err = stedi("query", sql)

    assert (code, out) == (2, "")
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message in err


def test_only_the_tables_a_statement_names_are_read(lakehouse):
    assert set(published_datasets(lakehouse, "SELECT COUNT(*) FROM Customer_Trusted")) == {"customer_trusted"}
    joined = "SELECT * FROM step_trainer_trusted s JOIN customer_curated c USING (serialNumber)"
    assert set(published_datasets(lakehouse, joined)) == {"step_trainer_trusted", "customer_curated"}
    # A table whose name is part of another name is not mentioned by it.
    assert set(published_datasets(lakehouse, "SELECT 1 FROM customer_trusted_view_of_nothing")) == set(TABLES)
    assert set(published_datasets(lakehouse, "SHOW TABLES")) == set(TABLES)


def test_an_unpublished_table_says_so(tmp_path):
    empty = StediLakehouse(landing_uri=str(tmp_path / "landing"), lakehouse_uri=str(tmp_path / "lakehouse"))

    with pytest.raises(QueryError, match="customer_trusted has not been published yet"):
        query("SELECT COUNT(*) FROM customer_trusted", empty)
