"""Maintenance: snapshots expired beyond the retention, unreferenced files deleted, never young ones.

Covers the retention rules (age, a minimum kept, the current snapshot), that
every kept snapshot still reads completely and expired data files are gone,
the safety age for files of a write in flight, and the Dagster job and its
schedule (off by default). The files a killed write leaves are covered with
the kill tests (test_quarantine_assets.py); S3 with test_lakehouse.py.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from dagster import DefaultScheduleStatus

from stedi_assets import cli
from stedi_assets.lakehouse import maintenance
from stedi_assets.definitions import defs
from stedi_assets.lakehouse.maintenance import (
    current_records_folders,
    maintain_table,
    referenced_files,
    snapshots_to_expire,
)
from stedi_assets.lakehouse.tables import current_data_files, history
from stedi_assets_tests.conftest import materialize_all, stored_table
from stedi_assets_tests.test_quarantine_assets import write_landing


def data_files_on_disk(root: Path, table: str) -> set[str]:
    return {str(p) for p in (root / "landing" / table / "data").rglob("*.parquet")}


@pytest.fixture
def four_runs(tmp_path, make_lakehouse):
    """Four snapshots of every table, each run with more readings than the one before."""
    landing = tmp_path / "landing"
    lakehouse = make_lakehouse(landing)
    for readings in (10, 20, 30, 40):
        write_landing(landing, readings=readings)
        assert materialize_all(lakehouse, selection=["accelerometer_landing", "accelerometer_quarantine"]).success
    return lakehouse


def test_snapshots_beyond_the_retention_are_expired_and_their_files_deleted(four_runs):
    lakehouse = dataclasses.replace(four_runs, snapshot_max_age_hours=0, snapshots_min_kept=2, orphan_min_age_hours=0)
    root = Path(lakehouse.lakehouse_uri)
    snapshots = [i.snapshot_id for i in history(lakehouse.load_table("accelerometer_landing"))]
    rows = {s: stored_table(root, "accelerometer_landing", s) for s in snapshots}
    assert [frame.height for frame in rows.values()] == [20, 40, 60, 80]
    files_before = data_files_on_disk(root, "accelerometer_landing")
    assert len(files_before) == 4

    report = maintain_table(lakehouse, "accelerometer_landing")

    assert (report.snapshots_expired, report.snapshots_kept) == (2, 2)
    iceberg_table = lakehouse.load_table("accelerometer_landing")
    assert [i.snapshot_id for i in history(iceberg_table)] == snapshots[2:]
    # The kept snapshots read completely, from files that are all still there.
    for snapshot_id in snapshots[2:]:
        assert stored_table(root, "accelerometer_landing", snapshot_id).equals(rows[snapshot_id])
    kept_files = {f.file_path for s in snapshots[2:] for f in current_data_files(iceberg_table, s)}
    assert data_files_on_disk(root, "accelerometer_landing") == kept_files
    # The expired snapshots' data files are gone, and so is every other file no metadata refers to.
    assert len(files_before - kept_files) == 2
    on_disk = {str(p) for p in (root / "landing" / "accelerometer_landing").rglob("*") if p.is_file()}
    # The records of the file versions the ledger holds as current stay; those of the replaced versions went.
    (records_folder,) = current_records_folders(lakehouse, "accelerometer_landing")
    records = {f for f in on_disk if f.startswith(records_folder)}
    assert records and {str(p) for p in (root / "landing" / "accelerometer_landing" / "deliveries").rglob("*.parquet")} == records
    assert on_disk - records <= referenced_files(iceberg_table)


def test_age_and_minimum_decide_together(four_runs):
    iceberg_table = four_runs.load_table("accelerometer_landing")
    now_ms = int(time.time() * 1000)
    all_ids = [i.snapshot_id for i in history(iceberg_table)]
    # Young snapshots are kept whatever the minimum.
    assert snapshots_to_expire(iceberg_table, max_age_hours=1, min_kept=1, now_ms=now_ms) == []
    # Old ones beyond the minimum go, oldest included.
    assert sorted(snapshots_to_expire(iceberg_table, max_age_hours=0, min_kept=3, now_ms=now_ms)) == sorted(all_ids[:1])
    # The current snapshot is never expired.
    assert iceberg_table.metadata.current_snapshot_id not in snapshots_to_expire(iceberg_table, 0, 1, now_ms + 10**9)


def test_files_younger_than_the_safety_age_are_kept(four_runs):
    root = Path(four_runs.lakehouse_uri)
    # A write in flight: its data file is there, its commit is not yet.
    in_flight = root / "landing" / "accelerometer_landing" / "data" / "in-flight" / "part-00000.parquet"
    in_flight.parent.mkdir(parents=True)
    in_flight.write_bytes(b"PAR1")

    report = maintain_table(dataclasses.replace(four_runs, snapshot_max_age_hours=0, snapshots_min_kept=1),
                            "accelerometer_landing")

    assert in_flight.exists() and report.unreferenced_files_too_young >= 1
    # Snapshots were expired, but their files are young too: kept until they are older than the safety age.
    assert report.snapshots_expired == 3 and report.files_deleted == 0
    report = maintain_table(dataclasses.replace(four_runs, orphan_min_age_hours=0), "accelerometer_landing")
    # Now the stray file and the expired snapshots' data files, manifests and manifest lists go.
    assert not in_flight.exists() and report.files_deleted >= 4
    iceberg_table = four_runs.load_table("accelerometer_landing")
    assert data_files_on_disk(root, "accelerometer_landing") == {f.file_path for f in current_data_files(iceberg_table)}
    assert stored_table(root, "accelerometer_landing").height == 80


def test_the_maintenance_job_and_its_schedule(four_runs):
    job = defs.resolve_job_def("lakehouse_maintenance")
    settings = {"lakehouse_uri": four_runs.lakehouse_uri, "landing_uri": four_runs.landing_uri,
                "snapshot_max_age_hours": 0, "snapshots_min_kept": 1, "orphan_min_age_hours": 0}

    result = job.execute_in_process(run_config={"resources": {"lakehouse": {"config": settings}}})

    assert result.success
    assert len(four_runs.load_table("accelerometer_landing").snapshots()) == 1
    output = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT")
    metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    # accelerometer_landing, accelerometer_quarantine and the delivery ledger (the erasure register has one)
    assert metadata["snapshots_expired"] == 3 * 3
    assert metadata["tables"] == 4
    schedule = defs.resolve_schedule_def("lakehouse_maintenance_daily")
    assert schedule.default_status == DefaultScheduleStatus.STOPPED
    assert schedule.job_name == "lakehouse_maintenance"


def test_the_maintain_command(four_runs, monkeypatch, capsys):
    monkeypatch.setenv("STEDI_SNAPSHOT_MAX_AGE_HOURS", "0")
    monkeypatch.setenv("STEDI_SNAPSHOTS_MIN_KEPT", "2")
    monkeypatch.setenv("STEDI_ORPHAN_MIN_AGE_HOURS", "0")

    # What the command has printed when each table's maintenance starts: a line per table done before.
    printed_before: list[list[str]] = []
    original = maintenance.maintain_table

    def maintain_table(*args, **kwargs):
        out = capsys.readouterr().out
        printed_before.append(out.splitlines())
        print(out, end="")  # put back for the assertions below
        return original(*args, **kwargs)

    monkeypatch.setattr(maintenance, "maintain_table", maintain_table)

    assert cli.main(["maintain", "--lakehouse", four_runs.lakehouse_uri]) == 0

    out = capsys.readouterr().out.splitlines()
    assert "accelerometer_landing: 2 snapshot(s) expired, 2 kept; " in out[0]
    # One line per table (the accelerometer landing and quarantine tables, the ledger and the erasure
    # register); every table's line but perhaps the last was out before the command went on to the next.
    assert len(out) == 4 and max(len(lines) for lines in printed_before) >= len(out) - 1
    assert [lines for lines in printed_before if lines][0][0] == out[0]
    assert len(four_runs.load_table("accelerometer_landing").snapshots()) == 2
    assert stored_table(Path(four_runs.lakehouse_uri), "accelerometer_landing").height == 80
