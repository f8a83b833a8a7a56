"""What a ``stedi run`` with nothing to do imports: not Dagster, Spark or the AWS stack.

A run on an up-to-date local lakehouse plans from the catalog and the landing
listing alone; Dagster is imported only once a table is out of date. Nothing
here is timed (the machines are shared and noisy): the modules a process
imported are what is asserted, in a new process as a user runs the command.
Also covers the zone graph the plan uses, declared in the domain, against the
Dagster asset graph, and the plan's direct reading of the catalog
(``lakehouse.snapshots``) against pyiceberg's. Runs that do materialize are
covered by ``test_cli``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from stedi_assets.domain.zone_graph import ZONE_INPUTS
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.lakehouse.planning import _read_directly, _read_with_pyiceberg, out_of_date
from stedi_assets.lakehouse.snapshots import current_snapshots, holds_every_table
from stedi_assets.orchestration.assets import ZONE_UPSTREAM

HEAVY = ("dagster", "dagster_aws", "pyspark", "boto3", "botocore", "pyiceberg", "sqlalchemy")
"""Not imported by a local run with nothing to do (pyiceberg and SQLAlchemy: its plan reads the SQLite
catalog and the metadata files directly)."""

_PROBE = """
import json, sys
from stedi_assets.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(m for m in sys.modules)}))
"""


def _run_in_new_process(*args: str, cwd: Path) -> tuple[int, str, set[str]]:
    """``stedi`` with ``args`` in a new Python process: exit code, its output, the top-level modules it imported."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STEDI_", "DAGSTER_HOME", "AWS_"))}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], cwd=cwd, env=clean, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    *output, last = result.stdout.strip().splitlines()
    probe = json.loads(last)
    return probe["code"], "\n".join(output), {m.split(".")[0] for m in probe["modules"]}


def test_the_zone_graph_of_the_domain_is_the_asset_graph():
    assert {t: set(i) for t, i in ZONE_INPUTS.items()} == {t: set(i) for t, i in ZONE_UPSTREAM.items()}


@pytest.fixture(scope="module")
def up_to_date(tmp_path_factory) -> tuple[Path, list[str]]:
    """A simulated landing zone and a local lakehouse published from it: the options of a run on them."""
    root = tmp_path_factory.mktemp("startup")
    from stedi_assets.cli import main

    assert main(["simulate", "--out", str(root / "landing")]) == 0
    options = ["--landing", str(root / "landing"), "--lakehouse", str(root / "lakehouse")]
    assert main(["run", "-q", *options]) == 0
    return root, options


def test_a_run_with_nothing_to_do_imports_no_dagster_spark_or_aws(up_to_date):
    root, options = up_to_date
    code, output, modules = _run_in_new_process("run", *options, cwd=root)
    # The no-op path is the one that ran: otherwise the absence of Dagster would prove nothing.
    assert code == 0 and "nothing to run" in output, output
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def _lakehouse(root: Path) -> Lakehouse:
    return Lakehouse(landing_uri=str(root / "landing"), lakehouse_uri=str(root / "lakehouse"))


def test_the_catalog_read_directly_gives_pyiceberg_s_answer(up_to_date):
    root, _ = up_to_date
    lakehouse = _lakehouse(root)

    direct = _read_directly(lakehouse, ZONE_INPUTS)
    ledger, snapshots = _read_with_pyiceberg(lakehouse, ZONE_INPUTS)

    assert direct is not None  # the direct reading ran: the comparison below would prove nothing otherwise
    assert direct[1] == snapshots and set(snapshots) == set(ZONE_INPUTS)
    assert ledger.height and any(s.properties for s in snapshots.values())
    assert_frame_equal(direct[0], ledger)


def test_a_catalog_that_lacks_a_table_is_left_to_pyiceberg(up_to_date, tmp_path):
    root, _ = up_to_date
    copy = tmp_path / "catalog"
    (copy / "lakehouse").mkdir(parents=True)
    catalog = copy / "lakehouse" / "catalog.db"
    catalog.write_bytes((root / "lakehouse" / "catalog.db").read_bytes())
    with sqlite3.connect(catalog) as connection:
        connection.execute("DELETE FROM iceberg_tables WHERE table_name = 'customer_trusted'")
    # Same lakehouse root as the original would be needed for its tables; a missing table is enough here.
    settings = Lakehouse(landing_uri=str(root / "landing"), lakehouse_uri=str(copy / "lakehouse")).catalog_settings()

    assert current_snapshots(settings, ZONE_INPUTS) is None
    assert not holds_every_table(settings)
    assert holds_every_table(_lakehouse(root).catalog_settings())


def test_the_plan_is_the_same_either_way(up_to_date, monkeypatch):
    root, _ = up_to_date
    lakehouse = _lakehouse(root)
    direct = out_of_date(lakehouse, ZONE_INPUTS)
    monkeypatch.setattr("stedi_assets.lakehouse.planning._read_directly", lambda *args: None)

    assert out_of_date(lakehouse, ZONE_INPUTS) == direct
    assert not direct.tables and direct.rows


def test_a_run_with_something_to_do_still_runs_it(up_to_date):
    # Last in this module: the lakehouse is out of date afterwards (the file it read is gone).
    root, options = up_to_date
    landing = root / "landing" / "customer"
    extra = landing / "late.json"
    first = sorted(landing.glob("*.json"))[0]
    # One more customer file (a copy of a delivered one: its records are duplicates, dropped).
    extra.write_bytes(first.read_bytes())
    try:
        code, output, modules = _run_in_new_process("run", "-q", *options, cwd=root)
        assert code == 0, output
        assert "customer_landing" in output and "nothing to run" not in output
        assert "dagster" in modules
    finally:
        extra.unlink()
