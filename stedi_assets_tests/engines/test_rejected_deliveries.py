"""A rejected delivery never blocks its feed: removing or correcting it recovers on the next ordinary run.

Over the real data set, a step-trainer file of 400 unreadable lines (1.4% of
the feed, over the 1% allowed) holds ``step_trainer_landing`` back, as it
should; the delivery ledger records what was read as ``rejected``, with the
reason. When the operator removes the file, or replaces it with a corrected
one, the next run (no full refresh) publishes the feed, its quarantine no
longer holds the file's records, and every table equals a full rebuild of a
new lakehouse from the landing zone as it then is. Both engines.

Not covered here: the sensor that requests the run (``operations/test_landing_sensor.py``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from stedi_assets.domain.schemas import TABLES
from stedi_assets_tests.conftest import check_outcomes, materialize_all, stored_table

UNREADABLE_LINES = 400


def _copy(stedi_landing: Path, tmp_path: Path) -> Path:
    landing = tmp_path / "landing"
    shutil.copytree(stedi_landing, landing)
    return landing


def _ledger_rows(root: Path, uri: Path) -> list[dict]:
    rows = stored_table(root, "delivery_ledger").filter(pl.col("uri") == str(uri)).sort("ingested_at")
    return rows.to_dicts()


def _reject(make_lakehouse, landing: Path, root: Path, engine: str):
    lakehouse = make_lakehouse(landing, lakehouse_uri=str(root), engine=engine)
    assert materialize_all(lakehouse).success
    before = stored_table(root, "step_trainer_landing")

    bad = landing / "step_trainer" / "step_trainer-bad.json"
    bad.write_text("".join(f"not a reading {n}\n" for n in range(UNREADABLE_LINES)))
    result = materialize_all(lakehouse)

    outcomes = check_outcomes(result)
    assert outcomes[("step_trainer_landing", "quarantined_records")] is False
    assert "step_trainer_landing" not in {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert stored_table(root, "step_trainer_landing").equals(before)
    assert stored_table(root, "step_trainer_quarantine").height == UNREADABLE_LINES
    (row,) = _ledger_rows(root, bad)
    assert row["status"] == "rejected"
    assert (row["records_read"], row["records_kept"], row["records_quarantined"]) == (UNREADABLE_LINES, 0, UNREADABLE_LINES)
    assert "quarantined_records" in row["reason"] and "more than the allowed" in row["reason"]
    return lakehouse, bad


def _assert_recovered(make_lakehouse, result, landing: Path, root: Path, engine: str) -> None:
    assert result.success
    outcomes = check_outcomes(result)
    assert outcomes[("step_trainer_landing", "quarantined_records")] is True
    rebuilt = landing.parent / "rebuilt"
    assert materialize_all(make_lakehouse(landing, lakehouse_uri=str(rebuilt), engine=engine)).success
    for table in TABLES:
        assert stored_table(root, table).equals(stored_table(rebuilt, table)), table


@pytest.fixture(params=["polars", pytest.param("spark", marks=pytest.mark.spark)])
def engine(request) -> str:
    if request.param == "spark":
        request.getfixturevalue("spark")  # the test session's Spark, started once
    return request.param


@pytest.mark.slow
def test_removing_a_rejected_file_recovers_the_feed(tmp_path, stedi_landing, make_lakehouse, engine):
    landing, root = _copy(stedi_landing, tmp_path), tmp_path / "lakehouse"
    lakehouse, bad = _reject(make_lakehouse, landing, root, engine)

    # Nothing else changed: the same run again is refused again, and says so.
    again = materialize_all(lakehouse)
    assert check_outcomes(again)[("step_trainer_landing", "quarantined_records")] is False
    assert [r["status"] for r in _ledger_rows(root, bad)] == ["replaced", "rejected"]

    bad.unlink()
    result = materialize_all(lakehouse)

    _assert_recovered(make_lakehouse, result, landing, root, engine)
    assert stored_table(root, "step_trainer_quarantine").height == 0
    assert [r["status"] for r in _ledger_rows(root, bad)] == ["replaced", "removed"]


@pytest.mark.slow
def test_replacing_a_rejected_file_recovers_the_feed(tmp_path, stedi_landing, make_lakehouse, engine):
    landing, root = _copy(stedi_landing, tmp_path), tmp_path / "lakehouse"
    lakehouse, bad = _reject(make_lakehouse, landing, root, engine)

    reading = {"sensorReadingTime": 1_655_564_444_000, "serialNumber": "corrected-device", "distanceFromObject": 230}
    bad.write_text(json.dumps(reading) + "\n")
    result = materialize_all(lakehouse)

    _assert_recovered(make_lakehouse, result, landing, root, engine)
    assert stored_table(root, "step_trainer_quarantine").height == 0
    rows = _ledger_rows(root, bad)
    assert [r["status"] for r in rows] == ["replaced", "current"]
    assert (rows[-1]["records_read"], rows[-1]["records_kept"], rows[-1]["reason"]) == (1, 1, None)
    assert "corrected-device" in stored_table(root, "step_trainer_landing")["serialNumber"].to_list()


def test_stedi_run_recovers_a_feed_after_a_rejected_file_is_removed(tmp_path, stedi_landing, monkeypatch, capsys):
    from stedi_assets import cli

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    for variable in ("STEDI_PROFILE", "STEDI_ENGINE", "STEDI_ML_JOIN", "STEDI_CONSENT_SCOPE"):
        monkeypatch.delenv(variable, raising=False)
    landing = _copy(stedi_landing, tmp_path)
    where = ["run", "--landing", str(landing), "--lakehouse", str(tmp_path / "lakehouse")]
    assert cli.main(where) == 0
    capsys.readouterr()

    bad = landing / "step_trainer" / "step_trainer-bad.json"
    bad.write_text("".join(f"not a reading {n}\n" for n in range(UNREADABLE_LINES)))
    assert cli.main(where) != 0
    refused = capsys.readouterr().out
    assert "quarantined_records" in refused

    # Still there: still out of date, read again and refused again.
    assert cli.main(where) != 0
    assert "1 of them rejected before and read again" in capsys.readouterr().out

    bad.unlink()
    code = cli.main(where)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "1 rejected file(s) gone" in out
    assert stored_table(tmp_path / "lakehouse", "step_trainer_quarantine").height == 0
    assert cli.main(where) == 0 and "nothing to run" in capsys.readouterr().out
