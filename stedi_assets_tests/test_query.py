"""SQL over the published tables: `stedi query` and `stedi_assets.lakehouse.query` on the real data set.

Covers the reference row counts through the command, the reference system's
documented queries verbatim, full SQL (join, window, CTE), output formats,
the read-only guarantee and one-line errors, the bounds (--max-rows stops a
query without holding the rest: peak memory of the command measured; DuckDB's
memory limit); and the same queries on a lakehouse in S3 (a moto server on
127.0.0.1). Time travel (``--as-of``) is covered in lakehouse/test_lineage.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import psutil
import pytest
from polars.testing import assert_frame_equal

from stedi_assets import cli
from stedi_assets.domain.profiles import STEDI_REFERENCE
from stedi_assets.lakehouse.query import QueryError, connect, published_datasets, query
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.domain.schemas import PUBLISHED, TABLES
from stedi_assets.lakehouse.tables import data_file_paths
from stedi_assets_tests.conftest import materialize_all, stored_table


@pytest.fixture(scope="module")
def lakehouse(stedi_landing, tmp_path_factory) -> Lakehouse:
    """Every table of the real data set, published once for the module."""
    lakehouse = Lakehouse(
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


def stored(lakehouse: Lakehouse, table: str) -> pl.DataFrame:
    """The published table read by an independent pyiceberg client, without the query layer."""
    return stored_table(Path(lakehouse.lakehouse_uri), table)


def lakehouse_fingerprint(lakehouse: Lakehouse) -> dict[str, str]:
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
    assert set(query("SHOW TABLES", lakehouse)["name"]) == set(PUBLISHED)
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


def stored_file(lakehouse: Lakehouse) -> str:
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


def test_tables_by_their_catalog_identifier(lakehouse):
    # As Athena names them, with the namespace.
    assert query("SELECT COUNT(*) FROM stedi.customer_trusted", lakehouse).item() == STEDI_REFERENCE["customer_trusted"]
    joined = "SELECT COUNT(*) FROM stedi.customer_curated c JOIN customer_trusted t USING (email)"
    assert query(joined, lakehouse).item() == STEDI_REFERENCE["customer_curated"]


def test_only_the_tables_a_statement_names_are_read(lakehouse):
    assert set(published_datasets(lakehouse, "SELECT COUNT(*) FROM Customer_Trusted")) == {"customer_trusted"}
    joined = "SELECT * FROM step_trainer_trusted s JOIN customer_curated c USING (serialNumber)"
    assert set(published_datasets(lakehouse, joined)) == {"step_trainer_trusted", "customer_curated"}
    assert set(published_datasets(lakehouse, "SELECT COUNT(*) FROM stedi.customer_curated")) == {"customer_curated"}
    # A table whose name is part of another name is not mentioned by it.
    assert set(published_datasets(lakehouse, "SELECT 1 FROM customer_trusted_view_of_nothing")) == set(PUBLISHED)
    assert set(published_datasets(lakehouse, "SHOW TABLES")) == set(PUBLISHED)


def test_an_unpublished_table_says_so(tmp_path):
    empty = Lakehouse(landing_uri=str(tmp_path / "landing"), lakehouse_uri=str(tmp_path / "lakehouse"))

    with pytest.raises(QueryError, match="customer_trusted has not been published yet"):
        query("SELECT COUNT(*) FROM customer_trusted", empty)


# -- bounds ----------------------------------------------------------------------

MIB = 1024 * 1024
# The command with Dagster, Polars, DuckDB and pyarrow imported peaks at about
# 250 MiB on this query; holding range(200000000) took 1.8 GB.
BOUNDED_PEAK = 700 * MIB


def _peak_rss_of(argv: list[str], env: dict[str, str], limit: int) -> tuple[subprocess.CompletedProcess, int]:
    """Run ``argv``; return its result and its peak resident memory (killed, and reported, above ``limit``)."""
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss, _high_water_mark(process.pid))
        except (psutil.NoSuchProcess, FileNotFoundError, ProcessLookupError):
            break
        if peak > limit:  # already failed: no need to let it take the machine's memory
            process.kill()
            break
        time.sleep(0.01)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(argv, process.returncode, out, err), peak


def _high_water_mark(pid: int) -> int:
    # The kernel's record of the process's peak, so a peak between two polls is not missed.
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _clean_env(**settings: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("STEDI_")}, **settings}


@pytest.mark.parametrize("output_format", ["table", "csv"])
def test_max_rows_stops_a_huge_result_without_holding_it(tmp_path, output_format):
    stedi_bin = str(Path(sys.executable).parent / "stedi")
    argv = [stedi_bin, "query", "SELECT * FROM range(200000000)", "--max-rows", "10", "--format", output_format]
    result, peak = _peak_rss_of(argv, _clean_env(STEDI_LAKEHOUSE_URI=str(tmp_path)), BOUNDED_PEAK)

    assert peak < BOUNDED_PEAK, f"peak RSS {peak / MIB:.0f} MiB"
    assert result.returncode == 0, result.stderr
    assert "more rows exist" in (result.stdout if output_format == "table" else result.stderr)
    if output_format == "csv":
        assert result.stdout.splitlines() == ["range", *map(str, range(10))]
    else:
        assert "│ 9 " in result.stdout and "│ 10 " not in result.stdout


def test_max_rows_bounds_a_self_join_of_the_real_data(lakehouse):
    # About 14 million rows; the query stops after 10 of them.
    sql = "SELECT * FROM accelerometer_landing AS a JOIN accelerometer_landing AS b USING (user)"
    stedi_bin = str(Path(sys.executable).parent / "stedi")
    argv = [stedi_bin, "query", sql, "--max-rows", "10", "--format", "json"]
    result, peak = _peak_rss_of(argv, _clean_env(STEDI_LAKEHOUSE_URI=lakehouse.lakehouse_uri), BOUNDED_PEAK)

    assert peak < BOUNDED_PEAK, f"peak RSS {peak / MIB:.0f} MiB"
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 10
    # Columns both sides have are told apart as DuckDB does: x and x_1.
    assert set(rows[0]) == {"user", "timestamp", "x", "y", "z", "timestamp_1", "x_1", "y_1", "z_1"}
    assert "more rows exist" in result.stderr


@pytest.mark.parametrize("output_format", ["table", "csv", "json"])
def test_max_rows_in_every_format(stedi, output_format):
    sql = "SELECT email FROM customer_landing ORDER BY email"
    code, out, err = stedi("query", sql, "--max-rows", "3", "--format", output_format)

    assert code == 0
    note = out if output_format == "table" else err
    assert "(first 3 rows shown; more rows exist" in note
    if output_format == "csv":
        assert len(out.splitlines()) == 4
    elif output_format == "json":
        assert len(json.loads(out)) == 3


def test_a_result_that_fits_says_how_many_rows(stedi):
    code, out, err = stedi("query", "SELECT * FROM range(3)", "--max-rows", "3")
    assert (code, err) == (0, "")
    assert out.rstrip().endswith("(3 rows)") and "more rows" not in out


def test_a_query_over_the_memory_limit_is_one_line_naming_the_setting(stedi, monkeypatch):
    sql = "SELECT * FROM range(20000000) ORDER BY range DESC"  # a sort of 20 million rows, held whole
    assert stedi("query", sql, "--max-rows", "1")[0] == 0  # under the default limit it runs

    monkeypatch.setenv("STEDI_QUERY_MEMORY_LIMIT", "30MB")
    code, out, err = stedi("query", sql, "--max-rows", "1")

    assert (code, out) == (2, "")
    assert err == (
        "error: the query needs more memory than STEDI_QUERY_MEMORY_LIMIT=30MB allows: "
        "raise STEDI_QUERY_MEMORY_LIMIT (e.g. 8GB) or narrow the query\n"
    )


def test_the_connection_has_the_memory_limit_and_spills_nothing(tmp_path):
    connection = connect(Lakehouse(landing_uri=str(tmp_path), lakehouse_uri=str(tmp_path)), "100MB")
    limit, temp_directory = connection.execute(
        "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
    ).fetchone()
    connection.close()
    assert limit in ("95.3 MiB", "100.0 MB") and temp_directory == ""
