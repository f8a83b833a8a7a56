"""Several `stedi run` at once on one lakehouse, with readers querying all the while.

Three `stedi run` processes start together on a new lakehouse (all of them
create the catalog and the tables at once); then three `stedi run
--full-refresh` on one local lakehouse (SQLite catalog) over the real data,
twice; meanwhile one thread reads every table
through an independent pyiceberg client and another runs `stedi query` in a
loop. Afterwards every table is readable with its reference count, no reader
ever failed or saw another count, and each run's derived tables were computed
from that run's own upstream snapshots. Marked slow: about a minute on 2 cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from stedi_assets.lakehouse.tables import history
from stedi_assets.domain.profiles import STEDI_REFERENCE
from stedi_assets.domain.schemas import TABLES
from stedi_assets_tests.conftest import independent_catalog, stored_table

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
RUNS = 3
ROUNDS = 2


def environment(landing: Path, lakehouse: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STEDI_", "DAGSTER_HOME"))}
    return {**clean, "STEDI_LANDING_URI": str(landing), "STEDI_LAKEHOUSE_URI": str(lakehouse),
            "STEDI_PROFILE": "stedi-reference"}


def start_runs(env: dict[str, str], *options: str) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [str(BIN / "stedi"), "run", *options], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(RUNS)
    ]


def is_landing(name: str) -> bool:
    return TABLES[name].zone in ("landing", "quarantine")


def test_concurrent_runs_on_a_new_lakehouse(stedi_landing, tmp_path):
    lakehouse = tmp_path / "lakehouse"
    runs = start_runs(environment(stedi_landing, lakehouse))
    for run in runs:
        out, err = run.communicate(timeout=900)
        assert run.returncode == 0, out + err

    catalog = independent_catalog(lakehouse)
    for name in TABLES:
        assert stored_table(lakehouse, name).height == STEDI_REFERENCE[name]
        # The landing steps ingest a feed one run at a time: the first reads the files, the
        # others find them ingested and commit nothing. A derived table is computed by each run
        # that finds it missing or computed from other inputs; a run that finds it computed from
        # the inputs it reads commits nothing.
        snapshots = len(catalog.load_table(f"stedi.{name}").snapshots())
        assert snapshots == 1 if is_landing(name) else 1 <= snapshots <= RUNS, (name, snapshots)
    ledger = stored_table(lakehouse, "delivery_ledger")
    assert ledger.height == 13 and set(ledger["status"]) == {"current"}


def test_concurrent_runs_and_readers(stedi_landing, tmp_path):
    lakehouse = tmp_path / "lakehouse"
    env = environment(stedi_landing, lakehouse)
    first = subprocess.run([str(BIN / "stedi"), "run"], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr

    stop = threading.Event()
    failures: list[str] = []
    reads = {"pyiceberg": 0, "stedi query": 0}

    def read_with_pyiceberg() -> None:
        while not stop.is_set():
            for name in TABLES:
                try:
                    rows = stored_table(lakehouse, name).height
                    if rows != STEDI_REFERENCE[name]:
                        failures.append(f"pyiceberg read {rows} rows of {name}")
                except Exception as error:  # noqa: BLE001 - every failure of a reader is what is counted
                    failures.append(f"pyiceberg read of {name} failed: {type(error).__name__}: {error}")
            reads["pyiceberg"] += 1

    def read_with_stedi_query() -> None:
        sql = "SELECT (SELECT COUNT(*) FROM customer_trusted) AS c, (SELECT COUNT(*) FROM machine_learning_curated) AS m"
        while not stop.is_set():
            done = subprocess.run([str(BIN / "stedi"), "query", sql, "--format", "csv"], env=env,
                                  capture_output=True, text=True, timeout=120)
            expected = f"c,m\n{STEDI_REFERENCE['customer_trusted']},{STEDI_REFERENCE['machine_learning_curated']}\n"
            if done.returncode != 0 or done.stdout != expected:
                failures.append(f"stedi query: exit {done.returncode}: {done.stdout!r} {done.stderr.strip()}")
            reads["stedi query"] += 1

    readers = [threading.Thread(target=read_with_pyiceberg), threading.Thread(target=read_with_stedi_query)]
    for reader in readers:
        reader.start()
    try:
        for _ in range(ROUNDS):
            # A full refresh: every run reads every file again and rewrites every table.
            for run in start_runs(env, "--full-refresh"):
                out, err = run.communicate(timeout=900)
                assert run.returncode == 0, out + err
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=300)

    assert failures == []
    assert reads["pyiceberg"] > 0 and reads["stedi query"] > 0
    catalog = independent_catalog(lakehouse)
    for name in TABLES:
        assert stored_table(lakehouse, name).height == STEDI_REFERENCE[name]
        iceberg_table = catalog.load_table(f"stedi.{name}")
        # One snapshot per materialization: the first run's and each concurrent run's, none lost.
        snapshots = history(iceberg_table)
        assert len(snapshots) == 1 + RUNS * ROUNDS
        # Every referenced data file exists.
        for task in iceberg_table.scan().plan_files():
            assert Path(task.file.file_path).exists()
    # Each derived snapshot was computed from upstream snapshots of its own run.
    run_of = {
        (name, info.snapshot_id): info.run_id for name in TABLES for info in history(catalog.load_table(f"stedi.{name}"))
    }
    for name in TABLES:
        for info in history(catalog.load_table(f"stedi.{name}")):
            for upstream, snapshot_id in info.upstream.items():
                assert run_of[(upstream, snapshot_id)] == info.run_id, (name, upstream)
