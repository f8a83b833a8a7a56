"""Quarantine, duplicates and faults through Dagster: the landing multi-assets and the lakehouse.

Covers the quarantine tables and the quarantined_records check (WARN and a
blocking ERROR), idempotent re-runs, a missing landing zone (clear error, the
published tables untouched), the real data set delivered with a duplicate
file and a CRLF copy, and a process killed while it writes a table. Does not
cover parsing cases one by one (test_landing_quarantine.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest

from stedi_assets import cli
from stedi_assets.domain.profiles import STEDI_REFERENCE
from stedi_assets.orchestration.resources import build_resources
from stedi_assets.domain.schemas import FEEDS, TABLES, ZONE_TABLES
from stedi_assets_tests.conftest import (
    REPOSITORY,
    check_outcomes,
    independent_catalog,
    materialize_all,
    place_landing_file,
    published_rows,
    stored_table,
)

T0 = 1_655_564_444_103
SERIALS = {"ann@x.com": "serial-ann", "bob@x.com": "serial-bob"}


def customer(email: str, consent: int | None) -> dict:
    return {
        "customerName": email.split("@")[0], "email": email, "phone": "8015551212", "birthDay": "1990-01-01",
        "serialNumber": SERIALS[email], "registrationDate": T0, "lastUpdateDate": T0,
        "shareWithResearchAsOfDate": consent, "shareWithPublicAsOfDate": None, "shareWithFriendsAsOfDate": None,
    }


def write_landing(root: Path, readings: int = 50, bad_step_lines: int = 0) -> Path:
    """A small landing zone: Ann consents, Bob does not; both have readings and step-trainer records."""
    lines = {
        "customer": [customer("ann@x.com", T0), customer("bob@x.com", None)],
        "accelerometer": [
            {"user": email, "timestamp": T0 + i, "x": 1.0, "y": 0.0, "z": -1.0}
            for email in SERIALS for i in range(readings)
        ],
        "step_trainer": [
            {"sensorReadingTime": T0 + i, "serialNumber": serial, "distanceFromObject": 200 + i}
            for serial in SERIALS.values() for i in range(readings)
        ],
    }
    for feed, records in lines.items():
        (root / feed).mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(r) + "\n" for r in records)
        if feed == "step_trainer":
            text += "".join(f'{{"sensorReadingTime": {T0}, "serialNumber": "cut\n' for _ in range(bad_step_lines))
        (root / feed / f"{feed}-1.json").write_text(text)
    return root


def current_snapshot(lakehouse_root: Path, table: str) -> int:
    return independent_catalog(lakehouse_root).load_table(f"stedi.{table}").metadata.current_snapshot_id


def stored(lakehouse_root: Path, table: str) -> pl.DataFrame:
    return stored_table(lakehouse_root, table)


def check_evaluation(result, table: str, check: str):
    return next(
        e for e in result.get_asset_check_evaluations() if e.asset_key.path[-1] == table and e.check_name == check
    )


def test_a_few_quarantined_records_warn(tmp_path, make_lakehouse):
    landing = write_landing(tmp_path / "landing", readings=100, bad_step_lines=1)
    result = materialize_all(make_lakehouse(landing, quarantine_max_share=0.01))

    assert result.success
    evaluation = check_evaluation(result, "step_trainer_landing", "quarantined_records")
    assert not evaluation.passed
    assert evaluation.severity.value == "WARN"
    assert evaluation.metadata["samples"].value == "unparseable JSON at step_trainer-1.json:201"
    assert "cut" not in json.dumps({k: str(v.value) for k, v in evaluation.metadata.items()})
    rows = published_rows(result)
    assert rows["step_trainer_quarantine"] == 1
    assert rows["step_trainer_landing"] == 200
    assert "step_trainer_trusted" in rows
    quarantine = stored(tmp_path / "lakehouse", "step_trainer_quarantine")
    assert quarantine.select("line", "reason").rows() == [(201, "unparseable JSON")]
    assert quarantine["source_file"].to_list() == [str(landing / "step_trainer" / "step_trainer-1.json")]
    landing_event = next(
        e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "step_trainer_landing"
    )
    metadata = landing_event.materialization.metadata
    assert metadata["records_read"].value == 201
    assert metadata["records_quarantined"].value == 1
    assert metadata["duplicate_records_dropped"].value == 0
    assert metadata["reconciliation"].value == "201 read = 200 kept + 1 quarantined + 0 exact duplicates dropped"
    assert check_evaluation(result, "customer_landing", "quarantined_records").passed


def test_too_many_quarantined_records_block_the_landing_table(tmp_path, make_lakehouse):
    landing = write_landing(tmp_path / "landing", readings=10, bad_step_lines=3)
    result = materialize_all(make_lakehouse(landing, quarantine_max_share=0.05))

    evaluation = check_evaluation(result, "step_trainer_landing", "quarantined_records")
    assert not evaluation.passed
    assert evaluation.severity.value == "ERROR"
    assert "more than the allowed 5.00%" in evaluation.metadata["problem"].value
    rows = published_rows(result)
    # The quarantine is published so one can see why; the landing table and everything after it are not.
    assert rows["step_trainer_quarantine"] == 3
    assert "step_trainer_landing" not in rows
    assert "step_trainer_trusted" not in rows
    assert "machine_learning_curated" not in rows
    assert rows["customer_curated"] == 1


def test_the_threshold_is_read_from_the_environment():
    assert build_resources({"STEDI_QUARANTINE_MAX_SHARE": "0.2"})["lakehouse"].quarantine_max_share == 0.2
    assert build_resources({})["lakehouse"].quarantine_max_share == 0.01
    with pytest.raises(ValueError, match="STEDI_QUARANTINE_MAX_SHARE='lots'"):
        build_resources({"STEDI_QUARANTINE_MAX_SHARE": "lots"})


def test_rerunning_with_unchanged_input_gives_identical_tables(tmp_path, make_lakehouse):
    landing = write_landing(tmp_path / "landing", readings=30, bad_step_lines=1)
    lakehouse = make_lakehouse(landing, quarantine_max_share=0.5)
    root = tmp_path / "lakehouse"

    assert materialize_all(lakehouse).success
    first = {name: stored(root, name) for name in TABLES}
    first_snapshots = {name: current_snapshot(root, name) for name in TABLES}
    assert materialize_all(lakehouse).success

    catalog = independent_catalog(root)
    for name in TABLES:
        assert stored(root, name).equals(first[name]), name
        table = catalog.load_table(f"stedi.{name}")
        assert len(table.inspect.files()) == 1
        # No landing file changed: none was read again; no table's inputs changed: none was computed
        # again. No table was committed again.
        assert table.metadata.current_snapshot_id == first_snapshots[name], name
        assert len(table.snapshots()) == 1


def test_a_missing_landing_zone_fails_clearly_and_keeps_the_published_tables(tmp_path, make_lakehouse, monkeypatch,
                                                                              capsys):
    landing = write_landing(tmp_path / "landing")
    lakehouse = make_lakehouse(landing)
    root = tmp_path / "lakehouse"
    assert materialize_all(lakehouse).success
    before = {name: (current_snapshot(root, name), stored(root, name)) for name in TABLES}

    shutil.rmtree(landing / "accelerometer")
    for variable in ("STEDI_LANDING_URI", "STEDI_LAKEHOUSE_URI", "STEDI_PROFILE", "STEDI_ENGINE", "STEDI_ML_JOIN"):
        monkeypatch.setenv(variable, "")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    code = cli.main(["run", "--landing", str(landing), "--lakehouse", str(root)])

    assert code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    expected = landing / "accelerometer"
    assert errors == [
        f"error: accelerometer_landing: no landing files for feed 'accelerometer' at {expected}/ "
        f"(expected {expected}/*.json or *.json.gz)"
    ]
    # Nothing that needs the accelerometer feed was published again; every table still reads as before.
    untouched = ["accelerometer_landing", "accelerometer_quarantine", "accelerometer_trusted", "customer_curated",
                 "step_trainer_trusted", "machine_learning_curated"]
    for name in untouched:
        assert current_snapshot(root, name) == before[name][0]
    for name in TABLES:
        assert stored(root, name).equals(before[name][1])


def test_landing_errors_name_the_uri(tmp_path, make_lakehouse):
    landing = write_landing(tmp_path / "landing")
    shutil.rmtree(landing / "accelerometer")
    (landing / "customer" / "customer-1.json").write_text("\n")
    result = materialize_all(make_lakehouse(landing))

    failures = {e.step_key: cli._failure_message(e) for e in result.all_events if e.event_type_value == "STEP_FAILURE"}
    assert f"no landing files for feed 'accelerometer' at {landing / 'accelerometer'}/" in (
        failures["accelerometer_landing"]
    )
    assert f"no records for feed 'customer' at {landing / 'customer'}/" in failures["customer_landing"]


def test_real_data_delivered_twice_and_with_crlf_gives_the_reference_counts(stedi_landing, make_lakehouse, tmp_path):
    landing = tmp_path / "landing"
    for feed in FEEDS:
        (landing / feed).mkdir(parents=True)
        for source in sorted((stedi_landing / feed).glob("*.json")):
            place_landing_file(source, landing / feed / source.name)
    accelerometer = sorted((stedi_landing / "accelerometer").glob("*.json"))[0]
    shutil.copyfile(accelerometer, landing / "accelerometer" / "accelerometer-delivered-again.json")
    step_trainer = sorted((stedi_landing / "step_trainer").glob("*.json"))[0]
    crlf = step_trainer.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    (landing / "step_trainer" / "step_trainer-crlf.json").write_bytes(crlf)

    result = materialize_all(make_lakehouse(landing, profile="stedi-reference"))

    assert result.success
    rows = published_rows(result)
    assert {name: rows[name] for name in ZONE_TABLES} == {name: STEDI_REFERENCE[name] for name in ZONE_TABLES}
    assert all(rows[f"{feed}_quarantine"] == 0 for feed in FEEDS)
    events = {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    copied_lines = accelerometer.read_bytes().count(b"\n")
    assert events["accelerometer_landing"]["duplicate_records_dropped"].value == copied_lines
    assert events["step_trainer_landing"]["duplicate_records_dropped"].value == step_trainer.read_bytes().count(b"\n")
    assert all(check_outcomes(result)[(f"{feed}_landing", "quarantined_records")] for feed in FEEDS)


# The child commits customer_landing again and stops at the chosen moment of
# that write, telling the parent it is there; the parent kills it with SIGKILL.
_CHILD = textwrap.dedent(
    """
    import sys, time
    from pyiceberg.catalog.sql import SqlCatalog
    from stedi_assets.lakehouse import lakehouse as lakehouse_module
    from stedi_assets.lakehouse.engines.polars_engine import PolarsEngine
    from stedi_assets.lakehouse.lakehouse import Lakehouse
    from stedi_assets_tests.conftest import materialize_all

    landing, lakehouse_root, moment, ready = sys.argv[1:5]
    lakehouse = Lakehouse(landing_uri=landing, lakehouse_uri=lakehouse_root)

    def stop_here():
        open(ready, "w").close()
        time.sleep(600)

    if moment == "during the data write":
        write = PolarsEngine.write
        def write_part_then_stop(self, frame, schema, directory_uri, store):
            files = write(self, frame, schema, directory_uri, store)
            if "/customer_landing/" in directory_uri:
                stop_here()
            return files
        PolarsEngine.write = write_part_then_stop
    elif moment == "just before the commit":
        def stop_before_commit(identifier, files):
            if identifier.endswith(".customer_landing"):
                stop_here()
        lakehouse_module.before_commit = stop_before_commit
    else:  # the new metadata file is written, the catalog not yet updated
        write_metadata = SqlCatalog._write_metadata
        def write_metadata_then_stop(metadata, io, metadata_path):
            write_metadata(metadata, io, metadata_path)
            if "/customer_landing/" in metadata_path:
                stop_here()
        SqlCatalog._write_metadata = staticmethod(write_metadata_then_stop)
    materialize_all(lakehouse, selection=["customer_landing", "customer_quarantine"])
    """
)


@pytest.mark.parametrize(
    "moment", ["during the data write", "just before the commit", "metadata written, catalog not yet updated"]
)
def test_a_process_killed_while_writing_leaves_the_published_table_whole(tmp_path, make_lakehouse, moment):
    from stedi_assets.lakehouse.maintenance import maintain_table

    landing = write_landing(tmp_path / "landing")
    root = tmp_path / "lakehouse"
    lakehouse = make_lakehouse(landing)
    assert materialize_all(lakehouse).success
    before = current_snapshot(root, "customer_landing")
    before_rows = stored(root, "customer_landing")
    table_folder = root / "landing" / "customer_landing"
    files_before = {p for p in table_folder.rglob("*") if p.is_file()}
    # The next delivery changes the table, so a half-committed snapshot would show.
    (landing / "customer" / "customer-2.json").write_text(json.dumps(customer("bob@x.com", T0 + 1)) + "\n")

    ready = tmp_path / "ready"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(landing), str(root), moment, str(ready)],
        env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert child.poll() is None, "the child ended before reaching the write"
            assert time.monotonic() < deadline, "the child never reached the write"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    # The previous snapshot is current and complete.
    assert current_snapshot(root, "customer_landing") == before
    assert stored(root, "customer_landing").equals(before_rows)
    leftovers = {p for p in table_folder.rglob("*") if p.is_file()} - files_before
    assert leftovers, "the killed write left nothing behind: it was stopped too early to test anything"

    # Maintenance keeps leftovers younger than the safety age (a write may still be in flight) ...
    report = maintain_table(lakehouse, "customer_landing")
    assert report.files_deleted == 0 and report.unreferenced_files_too_young == len(leftovers)
    # ... and removes them once they are older.
    report = maintain_table(dataclasses.replace(lakehouse, orphan_min_age_hours=0), "customer_landing")
    assert report.files_deleted == len(leftovers)
    assert {p for p in table_folder.rglob("*") if p.is_file()} == files_before
    assert stored(root, "customer_landing").equals(before_rows)

    result = materialize_all(lakehouse)
    assert result.success
    assert published_rows(result)["customer_landing"] == 3
    assert stored(root, "customer_landing").height == 3


# -- the landing zone is read only from its own folder ----------------------------------------


def test_symbolic_links_and_fifos_are_refused_unread(tmp_path, make_lakehouse):
    landing = write_landing(tmp_path / "landing")
    secret = tmp_path / "outside" / "secret.json"
    secret.parent.mkdir()
    secret.write_text('{"user": "leak@x.com", "timestamp": 1, "x": 0, "y": 0, "z": 0}\nroot:x:0:0:root:/root:/bin/bash\n')
    (landing / "accelerometer" / "accelerometer-x.json").symlink_to(secret)
    (landing / "accelerometer" / "linked-folder").symlink_to(secret.parent, target_is_directory=True)
    os.mkfifo(landing / "customer" / "customer-pipe.json")
    root = tmp_path / "lakehouse"

    result = materialize_all(make_lakehouse(landing))

    assert result.success
    evaluation = check_evaluation(result, "accelerometer_landing", "files_within_landing_zone")
    assert not evaluation.passed and evaluation.severity.value == "WARN"
    assert evaluation.metadata["entries_refused"].value == 1
    assert "accelerometer-x.json: symbolic link" in evaluation.metadata["entries"].value
    fifo = check_evaluation(result, "customer_landing", "files_within_landing_zone")
    assert not fifo.passed and "customer-pipe.json: not a regular file" in fifo.metadata["entries"].value
    assert check_evaluation(result, "step_trainer_landing", "files_within_landing_zone").passed
    # Nothing of the linked file reached any table: not its records, not its text.
    for table in ("accelerometer_landing", "accelerometer_quarantine", "customer_quarantine"):
        assert "leak@x.com" not in stored(root, table).write_csv() and "root:x" not in stored(root, table).write_csv()
    assert stored(root, "accelerometer_landing").height == 100
    ledger = stored(root, "delivery_ledger").filter(pl.col("status") == "refused")
    assert sorted(Path(uri).name for uri in ledger["uri"]) == ["accelerometer-x.json", "customer-pipe.json"]
    assert set(ledger["records_read"]) == {0} and ledger["reason"].null_count() == 0

    # Recorded once: the next run finds nothing new to record, and the removal retires the entry.
    again = materialize_all(make_lakehouse(landing))
    assert stored(root, "delivery_ledger").filter(pl.col("status") == "refused").height == 2
    assert not check_evaluation(again, "accelerometer_landing", "files_within_landing_zone").passed
    (landing / "accelerometer" / "accelerometer-x.json").unlink()
    after = materialize_all(make_lakehouse(landing))
    assert check_evaluation(after, "accelerometer_landing", "files_within_landing_zone").passed
    statuses = stored(root, "delivery_ledger").filter(pl.col("uri").str.ends_with("accelerometer-x.json"))["status"]
    assert statuses.to_list() == ["removed"]


_SPARSE_RUN = """
import re, sys
from pathlib import Path
from dagster import materialize
from stedi_assets.definitions import zone_assets
from stedi_assets.orchestration.io_manager import lakehouse_io_manager
from stedi_assets.orchestration.resources import StediLakehouse
lakehouse = StediLakehouse(landing_uri=sys.argv[1], lakehouse_uri=sys.argv[2], max_file_mb=1)
result = materialize(
    zone_assets, resources={"lakehouse": lakehouse, "io_manager": lakehouse_io_manager},
    selection=["step_trainer_landing", "step_trainer_quarantine"], raise_on_error=False,
)
peak_kib = int(re.search(r"VmHWM:\\s*(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
print(result.success, peak_kib // 1024)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from Linux's /proc")
def test_a_sparse_file_far_over_the_bound_is_quarantined_from_its_size(tmp_path):
    landing = write_landing(tmp_path / "landing")
    sparse = landing / "step_trainer" / "step_trainer-huge.json"
    with open(sparse, "wb") as handle:
        handle.truncate(50 * 2**30)  # 50 GiB of nothing: its size alone says it is over the bound

    completed = subprocess.run(
        [sys.executable, "-c", _SPARSE_RUN, str(landing), str(tmp_path / "lakehouse")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    success, peak_mib = completed.stdout.strip().splitlines()[-1].split()
    print(f"peak memory {peak_mib} MiB")
    assert int(peak_mib) < 600, f"peak memory {peak_mib} MiB with a 50 GiB landing file"
    quarantine = stored(tmp_path / "lakehouse", "step_trainer_quarantine")
    assert quarantine.select("source_file", "line", "reason").rows() == [
        (str(sparse), 0, "file larger than 1 MiB after decompression (STEDI_MAX_FILE_MB)")
    ]
