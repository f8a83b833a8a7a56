"""A lost catalog is refused, never replaced, and `stedi recover-catalog` brings it back.

Covers a local lakehouse (SQLite catalog): a missing, emptied or partly lost
catalog stopping `stedi run`, `stedi query` and the Dagster assets in one line
before anything is written; `stedi recover-catalog` registering every table
again at its newest readable metadata file with its snapshot history (history,
time travel, and a following `stedi run` with nothing to do); a deleted or
corrupt current metadata file re-pointed to the last readable snapshot
without deleting any file. Glue is covered in s3/test_lakehouse.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stedi_assets import cli
from stedi_assets.domain.schemas import PUBLISHED
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets_tests.conftest import independent_catalog, materialize_all, stored_table
from stedi_assets_tests.test_quarantine_assets import T0, customer, write_landing

RECOVERY = "run `stedi recover-catalog` to register the tables again from their metadata files, with their snapshots"


@pytest.fixture
def published(tmp_path, make_lakehouse, monkeypatch) -> Lakehouse:
    """A lakehouse materialized twice: every derived table has an earlier snapshot to travel to."""
    for variable in ("STEDI_LANDING_URI", "STEDI_LAKEHOUSE_URI", "STEDI_PROFILE", "STEDI_CATALOG_URI", "STEDI_NAMESPACE"):
        monkeypatch.delenv(variable, raising=False)
    landing = write_landing(tmp_path / "landing")
    lakehouse = make_lakehouse(landing)
    assert materialize_all(lakehouse).success
    # A new consenting customer: customer_trusted, hence every derived table, is computed again.
    (landing / "customer" / "customer-2.json").write_text(
        json.dumps({**customer("ann@x.com", T0), "email": "cy@x.com", "serialNumber": "serial-cy"}) + "\n"
    )
    assert materialize_all(lakehouse).success
    return lakehouse


def stedi(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run(lakehouse: Lakehouse, capsys) -> tuple[int, str, str]:
    return stedi(capsys, "run", "--landing", lakehouse.landing_uri, "--lakehouse", lakehouse.lakehouse_uri)


def files_under(root: str) -> set[Path]:
    return {p for p in Path(root).rglob("*") if p.is_file() and p.name != "catalog.db"}


def lose_catalog(lakehouse: Lakehouse, how: str) -> None:
    catalog = Path(lakehouse.lakehouse_uri) / "catalog.db"
    catalog.unlink()
    if how == "empty":
        catalog.write_bytes(b"")


@pytest.mark.parametrize("how", ["missing", "empty"])
def test_a_lost_catalog_stops_run_and_query_in_one_line(published, capsys, how):
    before = {p: p.stat().st_mtime_ns for p in files_under(published.lakehouse_uri)}
    lose_catalog(published, how)
    catalog = Path(published.lakehouse_uri) / "catalog.db"
    expected = (
        f"the catalog sqlite:///{catalog} holds none of the {len(PUBLISHED)} tables stored under {published.lakehouse_uri} "
        f"(it is missing, empty or another catalog): nothing was read or written; {RECOVERY}\n"
    )

    code, out, err = run(published, capsys)
    assert (code, out, err) == (2, "", f"error: {expected}")

    code, out, err = stedi(capsys, "query", "SELECT COUNT(*) FROM customer_trusted", "--lakehouse", published.lakehouse_uri)
    assert (code, out, err) == (2, "", f"error: table stedi.customer_trusted: {expected}")

    # Nothing was written: no new catalog, no file touched.
    assert catalog.exists() == (how == "empty")
    assert {p: p.stat().st_mtime_ns for p in files_under(published.lakehouse_uri)} == before


def test_a_lost_catalog_stops_the_dagster_assets_too(published):
    before = files_under(published.lakehouse_uri)
    lose_catalog(published, "missing")

    result = materialize_all(Lakehouse(landing_uri=published.landing_uri, lakehouse_uri=published.lakehouse_uri))

    assert not result.success
    failures = [cli._failure_message(e) for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures and all("`stedi recover-catalog`" in message for message in failures), failures
    assert not (Path(published.lakehouse_uri) / "catalog.db").exists()
    assert files_under(published.lakehouse_uri) == before


def test_a_table_lost_from_the_catalog_is_never_created_afresh(published, capsys):
    independent_catalog(Path(published.lakehouse_uri)).drop_table("stedi.customer_trusted")

    code, out, err = run(published, capsys)

    assert code == 2 and out == ""
    assert err == (
        f"error: the catalog sqlite:///{published.lakehouse_uri}/catalog.db does not hold customer_trusted, stored "
        f"under {published.lakehouse_uri}: nothing was read or written; {RECOVERY}\n"
    )


@pytest.mark.parametrize("how", ["missing", "empty"])
def test_recover_catalog_restores_every_table_with_its_history(published, capsys, how):
    tables = ("customer_trusted", "machine_learning_curated", "delivery_ledger")
    histories = {t: stedi(capsys, "history", t, "--upstream", "--lakehouse", published.lakehouse_uri) for t in tables}
    assert all(code == 0 for code, _, _ in histories.values())
    first = independent_catalog(Path(published.lakehouse_uri)).load_table("stedi.customer_trusted").metadata.snapshots[0]
    old_rows = stored_table(Path(published.lakehouse_uri), "customer_trusted", first.snapshot_id)
    files = files_under(published.lakehouse_uri)
    lose_catalog(published, how)

    code, out, err = stedi(capsys, "recover-catalog", "--lakehouse", published.lakehouse_uri)

    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == len(PUBLISHED) + 1 and all(": registered at " in line for line in lines[:-1]), out
    assert lines[-1] == (
        f"OK: catalog sqlite:///{published.lakehouse_uri}/catalog.db holds every table stored under "
        f"{published.lakehouse_uri} ({len(PUBLISHED)} registered or re-pointed, 0 kept)"
    )
    # The same snapshots, lineage and run ids as before.
    for table, before in histories.items():
        assert stedi(capsys, "history", table, "--upstream", "--lakehouse", published.lakehouse_uri) == before
    # Time travel to the first snapshot reads what it held.
    code, out, err = stedi(
        capsys, "query", "SELECT COUNT(*) AS n FROM customer_trusted", "--as-of", str(first.snapshot_id),
        "--format", "csv", "--lakehouse", published.lakehouse_uri,
    )
    assert (code, out) == (0, f"n\n{old_rows.height}\n"), err
    # Every table is up to date with its landing zone, as before the catalog was lost.
    code, out, err = run(published, capsys)
    assert code == 0 and "nothing to run" in out, out + err
    assert files_under(published.lakehouse_uri) == files
    # Run again, it keeps what reads.
    code, out, _ = stedi(capsys, "recover-catalog", "--lakehouse", published.lakehouse_uri)
    assert code == 0 and out.count(": in the catalog, its metadata reads: kept") == len(PUBLISHED)


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_broken_current_metadata_file_is_re_pointed_to_the_last_readable_snapshot(published, capsys, damage):
    root = Path(published.lakehouse_uri)
    table = published.load_table("customer_trusted")
    current = Path(table.metadata_location)
    previous = table.metadata.snapshots[-2]
    rows_then = stored_table(root, "customer_trusted", previous.snapshot_id)
    if damage == "missing":
        current.unlink()
    else:
        current.write_text('{"format-version": 2, "table-uuid": ')
    files = files_under(published.lakehouse_uri)

    code, _, err = stedi(capsys, "query", "SELECT COUNT(*) FROM customer_trusted", "--lakehouse", published.lakehouse_uri)
    assert code == 2 and err.endswith("; `stedi recover-catalog` re-points it to its newest readable metadata file\n")

    code, out, err = stedi(capsys, "recover-catalog", "--lakehouse", published.lakehouse_uri)

    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("stedi.customer_trusted: "))
    readable = Path(table.metadata.metadata_log[-1].metadata_file).name
    assert line.startswith(f"stedi.customer_trusted: re-pointed to {readable} ("), line
    assert f"current {previous.snapshot_id}); the catalog's metadata could not be read: " in line
    if damage == "corrupt":
        assert line.endswith(f"; skipped newer {current.name} (table metadata is not valid Iceberg metadata (ValidationError))")
    assert out.count("its metadata reads: kept") == len(PUBLISHED) - 1
    # Back at the last readable snapshot, its rows and its history before it intact.
    recovered = independent_catalog(root).load_table("stedi.customer_trusted")
    assert recovered.metadata.current_snapshot_id == previous.snapshot_id
    assert [s.snapshot_id for s in recovered.metadata.snapshots] == [s.snapshot_id for s in table.metadata.snapshots[:-1]]
    assert stored_table(root, "customer_trusted").equals(rows_then)
    # Only the catalog's entry changed: no data or metadata file was deleted.
    assert files_under(published.lakehouse_uri) == files
    # The next run computes the table again from its inputs.
    code, out, err = run(published, capsys)
    assert code == 0, out + err
    assert "computed from an earlier snapshot" in out and "OK: every table published" in out


def test_recover_catalog_on_a_new_lakehouse_has_nothing_to_do(tmp_path, capsys):
    code, out, err = stedi(capsys, "recover-catalog", "--lakehouse", str(tmp_path / "lake"))
    assert code == 0, err
    assert out.startswith(f"no tables stored under {tmp_path / 'lake'}: nothing to recover\n")
