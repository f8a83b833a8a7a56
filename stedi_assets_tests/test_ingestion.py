"""Whole pipelines over the real data set, updated incrementally, against full rebuilds.

A withdrawal delivered in a new customer file (a newer record of a consenting
customer without consent) is appended to customer_landing and removes that
customer from every trusted and curated table in the same run; a removed
step-trainer file takes its readings out. After each, every table equals a
full rebuild of a new lakehouse from the landing zone as it then is, and the
delivery ledger tells what arrived and what became of it. The hypothesis
property over any sequence of deliveries is in
``stedi_assets_tests/engines/test_ingestion.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl

from stedi_assets.domain.rules import identity_of
from stedi_assets.domain.schemas import FEEDS, TABLES
from stedi_assets_tests.conftest import materialize_all, stored_table


def build(make_lakehouse, landing: Path, name: str):
    lakehouse = make_lakehouse(landing, lakehouse_uri=str(landing.parent / name))
    result = materialize_all(lakehouse)
    assert result.success
    return lakehouse, result


def assert_equals_full_rebuild(make_lakehouse, landing: Path, root: Path, name: str) -> None:
    build(make_lakehouse, landing, name)
    for table in TABLES:
        assert stored_table(root, table).equals(stored_table(landing.parent / name, table)), table


def ledger(root: Path) -> pl.DataFrame:
    return stored_table(root, "delivery_ledger")


def test_a_withdrawal_and_a_removal_update_every_table_as_a_full_rebuild(tmp_path, stedi_landing, make_lakehouse):
    landing = tmp_path / "landing"
    shutil.copytree(stedi_landing, landing)
    root = tmp_path / "incremental"
    lakehouse, _ = build(make_lakehouse, landing, "incremental")
    first = ledger(root)
    assert set(first["status"]) == {"current"}
    assert first["records_read"].sum() == 956 + 81_273 + 28_680

    # A consenting customer with readings withdraws: a newer record without consent, in a new file.
    customer = stored_table(root, "customer_curated").row(0, named=True)
    withdrawal = {**customer, "shareWithResearchAsOfDate": None, "lastUpdateDate": customer["lastUpdateDate"] + 1}
    (landing / "customer" / "withdrawal.json").write_text(json.dumps(withdrawal) + "\n")
    result = materialize_all(lakehouse)

    assert result.success
    email = identity_of(customer["email"])
    for table in ("customer_trusted", "customer_curated"):
        assert email not in stored_table(root, table)["email"].to_list(), table
    assert email not in stored_table(root, "accelerometer_trusted")["user"].to_list()
    assert customer["serialNumber"] not in stored_table(root, "step_trainer_trusted")["serialNumber"].to_list()
    updates = {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert updates["customer_landing"]["update"].value == "append"
    assert updates["accelerometer_landing"]["update"].value == "unchanged"
    # The consenting customers changed: the tables of readings are recomputed whole, and say why.
    assert updates["accelerometer_trusted"]["update"].value == "replace"
    assert "customer_trusted changed" in updates["accelerometer_trusted"]["update_reason"].value
    assert_equals_full_rebuild(make_lakehouse, landing, root, "rebuild-1")

    # A step-trainer file is taken back.
    removed = sorted((landing / "step_trainer").iterdir())[0]
    removed.unlink()
    result = materialize_all(lakehouse)

    assert result.success
    assert_equals_full_rebuild(make_lakehouse, landing, root, "rebuild-2")
    rows = ledger(root)
    gone = rows.filter(pl.col("uri") == str(removed))
    assert gone["status"].to_list() == ["removed"] and gone["retired_at"].is_not_null().all()
    new = rows.filter(pl.col("uri") == str(landing / "customer" / "withdrawal.json")).row(0, named=True)
    assert (new["records_read"], new["records_kept"], new["records_quarantined"], new["status"]) == (1, 1, 0, "current")
    assert new["run_id"] and new["ingested_at"] > first["ingested_at"].max()


def run_stedi(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from stedi_assets import cli

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    for variable in ("STEDI_PROFILE", "STEDI_ENGINE", "STEDI_ML_JOIN", "STEDI_CONSENT_SCOPE"):
        monkeypatch.delenv(variable, raising=False)
    code = cli.main(["run", *args])
    return code, capsys.readouterr().out


def statuses(out: str) -> dict[str, str]:
    """Table -> its status in the summary (``up to date``, ``3/3 passed``, ...)."""
    return {line.split()[0]: line.split(None, 2)[2] for line in out.splitlines() if line.split()[:1] in ([t] for t in TABLES)}


def test_stedi_run_updates_only_the_tables_out_of_date(tmp_path, stedi_landing, monkeypatch, capsys):
    landing = tmp_path / "landing"
    shutil.copytree(stedi_landing, landing)
    where = ["--landing", str(landing), "--lakehouse", str(tmp_path / "lakehouse")]
    assert run_stedi(monkeypatch, capsys, *where)[0] == 0

    code, out = run_stedi(monkeypatch, capsys, *where)
    assert code == 0 and "nothing to run" in out
    assert set(statuses(out).values()) == {"up to date"}

    reading = {"user": "nobody@test.com", "timestamp": 1_655_564_444_000, "x": 1.0, "y": 0.0, "z": 0.0}
    (landing / "accelerometer" / "late.json").write_text(json.dumps(reading) + "\n")
    code, out = run_stedi(monkeypatch, capsys, *where)
    assert code == 0
    assert "out of date (1 new landing file(s)): accelerometer_landing" in out
    ran = {t for t, status in statuses(out).items() if status != "up to date"}
    assert ran == {"accelerometer_landing", "accelerometer_quarantine", "accelerometer_trusted", "customer_curated",
                   "step_trainer_trusted", "machine_learning_curated"}
    assert stored_table(tmp_path / "lakehouse", "accelerometer_landing").height == 81_274

    # Another consent scope changes what the derived tables hold: they are recomputed, the landing tables are not.
    monkeypatch.setenv("STEDI_CONSENT_SCOPE", "from_consent_date")
    from stedi_assets import cli

    assert cli.main(["run", *where]) == 0
    out = capsys.readouterr().out
    assert "computed under other settings: consent_scope" in out
    assert {t for t, s in statuses(out).items() if s == "up to date"} == {f"{f}_{z}" for f in FEEDS for z in ("landing", "quarantine")}

    code, out = run_stedi(monkeypatch, capsys, *where, "--full-refresh")
    assert code == 0 and "up to date" not in statuses(out).values()


def test_a_daily_delivery_of_readings_appends_to_the_derived_tables(tmp_path, stedi_landing, make_lakehouse):
    landing = tmp_path / "landing"
    shutil.copytree(stedi_landing, landing)
    root = tmp_path / "incremental"
    lakehouse, _ = build(make_lakehouse, landing, "incremental")
    before = {table: stored_table(root, table) for table in TABLES}

    # New readings of a curated customer, taken when their step trainer took readings: new pairs.
    owner = before["customer_curated"].row(0, named=True)
    times = before["step_trainer_trusted"].filter(pl.col("serialNumber") == owner["serialNumber"])["sensorReadingTime"]
    readings = [{"user": owner["email"], "timestamp": t, "x": 9.5, "y": 9.5, "z": 9.5} for t in times.head(20)]
    (landing / "accelerometer" / "daily.json").write_text("".join(json.dumps(r) + "\n" for r in readings))
    result = materialize_all(lakehouse)

    assert result.success
    updates = {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    derived = ("customer_trusted", "accelerometer_trusted", "customer_curated", "step_trainer_trusted", "machine_learning_curated")
    assert {t: updates[t]["update"].value for t in derived} == {
        "customer_trusted": "unchanged",
        "accelerometer_trusted": "append",
        "customer_curated": "unchanged",
        "step_trainer_trusted": "unchanged",
        "machine_learning_curated": "append",
    }
    after = {table: stored_table(root, table) for table in TABLES}
    assert after["accelerometer_trusted"].height == before["accelerometer_trusted"].height + len(readings)
    # Paired on time alone: each new reading pairs with every step-trainer reading taken at its time.
    pairs = before["step_trainer_trusted"].filter(pl.col("sensorReadingTime").is_in(times.head(20).implode())).height
    assert after["machine_learning_curated"].height == before["machine_learning_curated"].height + pairs
    # What committed nothing kept its snapshot: customer_trusted's rows are the same files.
    assert lakehouse.load_table("customer_trusted").metadata.current_snapshot_id == int(
        updates["customer_trusted"]["iceberg/snapshot_id"].value
    )
    assert_equals_full_rebuild(make_lakehouse, landing, root, "rebuild")
