"""Lineage and time travel: upstream snapshots, pinned inputs, `stedi history`, `stedi query --as-of`.

Covers the snapshot properties and materialization metadata of each table,
rebuilding machine_learning_curated exactly from the upstream snapshots it
records, inputs pinned to the run's own snapshots while another writer
commits, the warning for inputs of mixed versions in a partial run, the
history command and time travel by snapshot id and by time. Uses a small
hand-made landing zone; concurrency of whole runs is in test_concurrency.py.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import narwhals as nw
import polars as pl
import pytest
from dagster import AssetKey
from polars.testing import assert_frame_equal

from stedi_assets import cli
from stedi_assets.domain import rules
from stedi_assets.definitions import defs
from stedi_assets.orchestration.io_manager import LakehouseIOManager
from stedi_assets.lakehouse.tables import history
from stedi_assets.lakehouse.query import QueryError, query
from stedi_assets.domain.schemas import TABLES
from stedi_assets_tests.conftest import materialize_all, published_rows, stored_table
from stedi_assets_tests.test_quarantine_assets import T0, customer, write_landing

def materialization_metadata(result, table: str) -> dict:
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == table)
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.fixture
def two_runs(tmp_path, make_lakehouse):
    """Two runs on one lakehouse; the second sees more readings, so every derived table changes."""
    landing = write_landing(tmp_path / "landing", readings=20)
    lakehouse = make_lakehouse(landing)
    first = materialize_all(lakehouse)
    assert first.success
    time.sleep(0.05)  # the two runs' commits are told apart by time too
    write_landing(landing, readings=30)
    second = materialize_all(lakehouse)
    assert second.success
    return lakehouse, first, second


def test_each_snapshot_records_the_run_and_the_upstream_snapshots(two_runs):
    lakehouse, first, second = two_runs
    for result in (first, second):
        snapshots = {
            name: int(materialization_metadata(result, name)["iceberg/snapshot_id"]) for name in TABLES
        }
        for name in TABLES:
            info = next(i for i in history(lakehouse.load_table(name)) if i.snapshot_id == snapshots[name])
            assert info.run_id == result.run_id
            parents = _parents(name)
            # Each derived table was computed from the snapshots its upstream tables got in the same run.
            assert info.upstream == {p: snapshots[p] for p in parents}
            metadata = materialization_metadata(result, name)
            if parents:
                assert metadata["upstream_snapshots"] == {p: str(snapshots[p]) for p in parents}
                assert metadata["upstream_consistent"] is True


def _parents(table: str) -> set[str]:
    # The tables it is computed from (a landing table's feed is not a table).
    return {p.path[-1] for p in defs.resolve_asset_graph().get(AssetKey(table)).parent_keys} & set(TABLES)


def test_the_training_table_can_be_rebuilt_from_its_upstream_snapshots(two_runs):
    lakehouse, first, second = two_runs
    trained_on = int(materialization_metadata(first, "machine_learning_curated")["iceberg/snapshot_id"])
    upstream = next(i for i in history(lakehouse.load_table("machine_learning_curated")) if i.snapshot_id == trained_on).upstream

    inputs = {name: lakehouse.read_table([name], snapshot_id) for name, snapshot_id in upstream.items()}
    rebuilt = rules.machine_learning_curated(**inputs).collect().to_native()

    stored = stored_table(Path(lakehouse.lakehouse_uri), "machine_learning_curated", trained_on)
    assert_frame_equal(rebuilt.sort(rebuilt.columns), stored)
    # The current table is another one: the rebuild is of the first run's, not of the latest.
    assert stored.height != published_rows(second)["machine_learning_curated"]


def test_inputs_are_pinned_to_the_runs_own_snapshots(tmp_path, make_lakehouse, monkeypatch):
    lakehouse = make_lakehouse(write_landing(tmp_path / "landing"))
    handle_output = LakehouseIOManager.handle_output

    def another_writer_commits_right_after(self, context, obj):
        handle_output(self, context, obj)
        if context.asset_key.path[-1] == "customer_trusted":
            # Another run commits an empty customer_trusted before accelerometer_trusted reads it.
            empty = nw.from_native(pl.LazyFrame(schema=TABLES["customer_trusted"].polars_schema))
            lakehouse.write_table(["customer_trusted"], empty, {"stedi.run_id": "another-run"}, "another-run")

    monkeypatch.setattr(LakehouseIOManager, "handle_output", another_writer_commits_right_after)
    result = materialize_all(lakehouse)

    assert result.success
    own = materialization_metadata(result, "customer_trusted")["iceberg/snapshot_id"]
    accelerometer = materialization_metadata(result, "accelerometer_trusted")
    assert accelerometer["upstream_snapshots"]["customer_trusted"] == own
    # Computed from this run's customer_trusted (Ann consents), not from the other run's empty one.
    assert published_rows(result)["accelerometer_trusted"] > 0
    assert lakehouse.load_table("customer_trusted").metadata.current_snapshot_id != int(own)


def test_a_partial_run_over_mixed_versions_says_so(tmp_path, make_lakehouse):
    landing = write_landing(tmp_path / "landing")
    lakehouse = make_lakehouse(landing)
    assert materialize_all(lakehouse).success
    # A new consenting customer, ingested and taken into customer_trusted only.
    (landing / "customer" / "customer-2.json").write_text(json.dumps({**customer("ann@x.com", T0), "email": "cy@x.com", "serialNumber": "serial-cy"}) + "\n")
    assert materialize_all(lakehouse, selection=["customer_landing", "customer_quarantine", "customer_trusted"]).success

    # customer_trusted is now newer than the one accelerometer_trusted was computed from.
    result = materialize_all(lakehouse, selection=["customer_curated"])

    assert result.success
    metadata = materialization_metadata(result, "customer_curated")
    assert metadata["upstream_consistent"] is False
    assert "accelerometer_trusted was computed from customer_trusted snapshot" in metadata["upstream_mismatches"]
    # A full run reads its own snapshots only: consistent again.
    assert materialization_metadata(materialize_all(lakehouse), "customer_curated")["upstream_consistent"] is True


def test_history_lists_the_snapshots(two_runs, capsys, monkeypatch):
    lakehouse, first, second = two_runs
    monkeypatch.setenv("STEDI_LAKEHOUSE_URI", lakehouse.lakehouse_uri)

    assert cli.main(["history", "machine_learning_curated", "--upstream"]) == 0
    out = capsys.readouterr().out.splitlines()

    assert out[0] == f"stedi.machine_learning_curated in sqlite:///{lakehouse.lakehouse_uri}/catalog.db"
    rows = [line for line in out[2:] if line[:1].isdigit()]
    assert [line.split()[0] for line in rows] == [
        materialization_metadata(r, "machine_learning_curated")["iceberg/snapshot_id"] for r in (first, second)
    ]
    assert first.run_id in rows[0] and second.run_id in rows[1] and rows[1].endswith("(current)")
    assert f"{published_rows(first)['machine_learning_curated']:,}" in rows[0]
    assert any("computed from step_trainer_trusted snapshot" in line for line in out)

    assert cli.main(["history", "no_such_table"]) == 2
    assert "unknown table 'no_such_table'" in capsys.readouterr().err


def test_query_as_of_a_snapshot_or_a_time(two_runs, capsys, monkeypatch):
    lakehouse, first, second = two_runs
    ml_then = materialization_metadata(first, "machine_learning_curated")["iceberg/snapshot_id"]
    counts = " UNION ALL ".join(f"SELECT '{t}' AS t, COUNT(*) AS n FROM {t}" for t in TABLES)

    # The snapshot of one table: that table at it, every other table as it was when it was committed.
    assert dict(query(counts, lakehouse, as_of=ml_then).iter_rows()) == published_rows(first)
    assert dict(query(counts, lakehouse).iter_rows()) == published_rows(second)

    # A time between the two runs gives the first run's state.
    first_done = max(i.committed_at for name in TABLES for i in history(lakehouse.load_table(name))[:1])
    moment = datetime.fromtimestamp(first_done.timestamp() + 0.001, tz=timezone.utc).isoformat()
    assert dict(query(counts, lakehouse, as_of=moment).iter_rows()) == published_rows(first)

    # Through the command, and its one-line errors.
    monkeypatch.setenv("STEDI_LAKEHOUSE_URI", lakehouse.lakehouse_uri)
    assert cli.main(["query", "SELECT COUNT(*) AS n FROM machine_learning_curated", "--format", "json", "--as-of", ml_then]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": published_rows(first)["machine_learning_curated"]}]
    assert cli.main(["query", "SELECT COUNT(*) FROM customer_trusted", "--as-of", "2001-01-01"]) == 2
    assert capsys.readouterr().err.strip().endswith("(customer_trusted had no snapshot at 2001-01-01T00:00:00.000000Z)")
    assert cli.main(["query", "SELECT 1", "--as-of", "123456789"]) == 2
    assert "no table has this snapshot" in capsys.readouterr().err
    with pytest.raises(QueryError, match="expected a snapshot id"):
        query("SELECT 1", lakehouse, as_of="yesterday")
