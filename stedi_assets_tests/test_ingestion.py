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

from stedi_assets.rules import identity_of
from stedi_assets.schemas import TABLES
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
