"""The catalog: where it is, and one clear line when it or a table's metadata is missing or broken.

Covers the SQLite catalog at {lakehouse}/catalog.db and STEDI_CATALOG_URI,
a missing, corrupt or foreign catalog file, missing and corrupt table
metadata, a lakehouse moved to another folder, a schema that is not the
declared one, and a commit that loses to another writer (retried, then one
line). Glue is covered in s3/test_lakehouse.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import narwhals as nw
import polars as pl
import pytest

from stedi_assets import cli
from stedi_assets.lakehouse.catalog import CatalogError
from stedi_assets.lakehouse.tables import replace_contents
from stedi_assets.lakehouse.query import QueryError, query
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.domain.schemas import PUBLISHED, TABLES
from stedi_assets_tests.conftest import materialize_all, published_rows, stored_table
from stedi_assets_tests.test_quarantine_assets import write_landing


@pytest.fixture
def published(tmp_path, make_lakehouse) -> Lakehouse:
    lakehouse = make_lakehouse(write_landing(tmp_path / "landing"))
    assert materialize_all(lakehouse).success
    return lakehouse


def run_query(lakehouse_uri: str, capsys, sql: str = "SELECT COUNT(*) FROM customer_trusted") -> tuple[int, str]:
    code = cli.main(["query", sql, "--lakehouse", lakehouse_uri])
    return code, capsys.readouterr().err


def test_catalog_uri_takes_any_sqlalchemy_url(tmp_path, make_lakehouse):
    catalog_file = tmp_path / "shared" / "team.db"
    catalog_file.parent.mkdir()
    lakehouse = make_lakehouse(write_landing(tmp_path / "landing"), catalog_uri=f"sqlite:///{catalog_file}")

    result = materialize_all(lakehouse)

    assert result.success
    assert catalog_file.exists() and not (tmp_path / "lakehouse" / "catalog.db").exists()
    assert query("SELECT COUNT(*) FROM customer_trusted", lakehouse).item() == published_rows(result)["customer_trusted"]


def test_namespace_is_configurable(tmp_path, make_lakehouse):
    lakehouse = make_lakehouse(write_landing(tmp_path / "landing"), namespace="lab")
    result = materialize_all(lakehouse)

    assert result.success
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "customer_trusted")
    assert event.materialization.metadata["dagster/table_name"].value == "lab.customer_trusted"
    assert query("SELECT COUNT(*) FROM customer_trusted", lakehouse).item() == 1


def test_a_corrupt_catalog_file_is_one_line(published, capsys):
    catalog = Path(published.lakehouse_uri) / "catalog.db"
    catalog.write_bytes(b"this is not a database")

    code, err = run_query(published.lakehouse_uri, capsys)

    assert code == 2
    assert err == (
        f"error: table stedi.customer_trusted: {catalog}: the catalog is not an SQLite database (corrupt or overwritten)\n"
    )


def test_an_empty_catalog_file_beside_published_tables_is_one_line_naming_the_recovery(published, capsys, tmp_path):
    # The tables' history is in their metadata files, not lost: the query says how to get the catalog back.
    catalog = Path(published.lakehouse_uri) / "catalog.db"
    catalog.unlink()
    catalog.write_bytes(b"")

    code, err = run_query(published.lakehouse_uri, capsys)

    assert code == 2
    assert err.count("\n") == 1 and f"holds none of the {len(PUBLISHED)} tables stored under" in err
    assert "run `stedi recover-catalog`" in err


def test_an_empty_catalog_file_of_a_new_lakehouse_says_the_table_is_not_there(tmp_path, capsys):
    lakehouse = tmp_path / "lakehouse"
    lakehouse.mkdir()
    (lakehouse / "catalog.db").write_bytes(b"")

    code, err = run_query(str(lakehouse), capsys)

    assert code == 2
    assert err.count("\n") == 1 and "customer_trusted has not been published yet" in err


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_broken_table_metadata_is_one_line_naming_table_and_catalog(published, capsys, damage):
    metadata_file = Path(published.load_table("customer_trusted").metadata_location)
    if damage == "missing":
        metadata_file.unlink()
    else:
        metadata_file.write_text('{"format-version": 2, "table-uuid": ')

    code, err = run_query(published.lakehouse_uri, capsys)

    assert code == 2 and err.count("\n") == 1
    catalog = f"sqlite:///{published.lakehouse_uri}/catalog.db"
    assert err.startswith(f"error: table stedi.customer_trusted in catalog {catalog}: ")
    assert ("metadata file missing" if damage == "missing" else "not valid Iceberg metadata") in err
    assert err.endswith("; `stedi recover-catalog` re-points it to its newest readable metadata file\n")
    # The other tables are still readable.
    assert query("SELECT COUNT(*) FROM customer_landing", published).item() == 2


def test_a_moved_lakehouse_fails_naming_both_places(published, capsys, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(published.lakehouse_uri, moved)

    code, err = run_query(str(moved), capsys)

    assert code == 2 and err.count("\n") == 1
    assert f"is stored at {published.lakehouse_uri}/trusted/customer_trusted, outside this lakehouse {moved}" in err
    # Writing into the copy is refused the same way, rather than writing into the original.
    result = materialize_all(Lakehouse(landing_uri=published.landing_uri, lakehouse_uri=str(moved)))
    assert not result.success
    failures = [cli._failure_message(e) for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures and all("outside this lakehouse" in message for message in failures), failures


def test_a_table_with_another_schema_is_not_overwritten(published):
    from pyiceberg.types import DateType

    # A declared column renamed: the table's schema no longer starts with the declared one.
    with published.load_table("customer_trusted").update_schema() as update:
        update.rename_column("phone", "telephone")
    frame = nw.from_native(pl.LazyFrame(schema=TABLES["customer_trusted"].polars_schema))
    with pytest.raises(CatalogError, match="schema .* is not the declared one"):
        published.write_table(["customer_trusted"], frame, {}, "run")
    # A column after the declared ones of a type no column of this project has.
    with published.load_table("customer_curated").update_schema() as update:
        update.add_column("since", DateType())
    frame = nw.from_native(pl.LazyFrame(schema=TABLES["customer_curated"].polars_schema))
    with pytest.raises(CatalogError, match="schema .* is not the declared one"):
        published.write_table(["customer_curated"], frame, {}, "run")


def test_a_column_added_to_a_table_is_kept_by_a_write_without_it(published):
    # Columns are only added, never dropped: a column the new contents lack is written as null.
    from pyiceberg.types import StringType

    with published.load_table("customer_trusted").update_schema() as update:
        update.add_column("nickname", StringType())
    frame = nw.from_native(pl.LazyFrame(schema=TABLES["customer_trusted"].polars_schema))
    published.write_table(["customer_trusted"], frame, {}, "run")
    schema = published.load_table("customer_trusted").schema()
    assert [f.name for f in schema.fields][-1] == "nickname"


def test_a_commit_conflict_is_retried_then_one_line(published):
    root = Path(published.lakehouse_uri)
    before = stored_table(root, "customer_landing")
    folder = root / "landing" / "customer_landing" / "data" / "conflict"
    folder.mkdir()
    part = folder / "part-00000.parquet"
    before.write_parquet(part)
    stale = published.load_table("customer_landing")
    # Another writer commits after this writer loaded the table.
    frame = nw.from_native(before.lazy())
    published.write_table(["customer_landing"], frame, {"stedi.run_id": "other"}, "other-run")
    loads = iter([stale])

    commit = replace_contents(lambda: next(loads, None) or published.load_table("customer_landing"),
                              "stedi.customer_landing", [str(part)], {"stedi.run_id": "mine"})

    assert commit.attempts == 2  # the first commit, on the stale table, was rejected and rebuilt
    assert stored_table(root, "customer_landing").equals(before)  # replaced, not appended

    def load_then_lose_to_another_writer():
        table = published.load_table("customer_landing")
        published.write_table(["customer_landing"], frame, {"stedi.run_id": "other"}, "other-run")
        return table

    with pytest.raises(CatalogError) as error:
        replace_contents(load_then_lose_to_another_writer, "stedi.customer_landing", [str(part)], {}, attempts=3)
    assert str(error.value).startswith("table stedi.customer_landing: commit conflict: other writers committed first")
    assert "\n" not in str(error.value)


def test_a_table_whose_first_commit_never_happened_is_not_published(tmp_path, make_lakehouse):
    # What a first run killed between creating the table and committing its data leaves.
    lakehouse = make_lakehouse(tmp_path / "landing")
    lakehouse.load_table("customer_trusted", create=True)

    with pytest.raises(QueryError, match=r"\(customer_trusted has not been published yet"):
        query("SELECT COUNT(*) FROM customer_trusted", lakehouse)
