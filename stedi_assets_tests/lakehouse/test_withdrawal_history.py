"""A withdrawal reaches history: no earlier snapshot of a trusted or curated table keeps the person.

On the simulated landing zone: the tables are published, a consenting customer
with readings on a device in machine_learning_curated withdraws in a new
customer file, and the next run publishes the withdrawal. Every snapshot left
of the five trusted and curated tables is then read by an independent
pyiceberg client; time travel to the first run's snapshot finds nothing; the
data files only the expired snapshots referenced are gone; the landing
tables keep their history. With a retention, the snapshots stay readable until
it has passed. The check that guards it fails when the expiry does not happen.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import narwhals as nw
import polars as pl
import pytest

from stedi_assets.domain.schemas import RESEARCH_CONSENT
from stedi_assets.domain.simulate import simulate_landing, write_landing
from stedi_assets.lakehouse.history import HISTORY_KEYS, forget_withdrawn_everywhere
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.lakehouse.query import QueryError, query
from stedi_assets.lakehouse.maintenance import plain_uri
from stedi_assets_tests.conftest import check_outcomes, independent_catalog, materialize_all


@dataclasses.dataclass
class Withdrawal:
    lakehouse: Lakehouse
    email: str
    devices: set[str]
    first_snapshots: dict[str, int]
    first_files: dict[str, set[str]]
    result: object


def _data_files(root: Path, table: str, snapshot_id: int) -> set[str]:
    iceberg_table = independent_catalog(root).load_table(f"stedi.{table}")
    return {plain_uri(task.file.file_path) for task in iceberg_table.scan(snapshot_id=snapshot_id).plan_files()}


def _withdraw(tmp_path: Path, **settings) -> Withdrawal:
    landing, root = tmp_path / "landing", tmp_path / "lakehouse"
    write_landing(landing, simulate_landing())
    lakehouse = Lakehouse(landing_uri=str(landing), lakehouse_uri=str(root), **settings)
    assert materialize_all(lakehouse).success
    catalog = independent_catalog(root)
    first = {t: catalog.load_table(f"stedi.{t}").metadata.current_snapshot_id for t in HISTORY_KEYS}
    first_files = {t: _data_files(root, t, s) for t, s in first.items()}
    ml_devices = lakehouse.read_table(["machine_learning_curated"]).select("serialNumber").unique()
    customer = (
        lakehouse.read_table(["customer_curated"]).join(ml_devices, on="serialNumber", how="semi")
        .head(1).collect().to_native().to_dicts()[0]
    )
    withdrawal = {**customer, RESEARCH_CONSENT: None, "lastUpdateDate": customer["lastUpdateDate"] + 1}
    (landing / "customer" / "customer-withdrawal.json").write_text(json.dumps(withdrawal) + "\n")
    result = materialize_all(lakehouse)
    assert result.success
    return Withdrawal(lakehouse, customer["email"], {customer["serialNumber"]}, first, first_files, result)


def _rows_of(root: Path, table: str, snapshot_id: int, email: str, devices: set[str]) -> int:
    frame = pl.from_arrow(independent_catalog(root).load_table(f"stedi.{table}").scan(snapshot_id=snapshot_id).to_arrow())
    column, kind = HISTORY_KEYS[table]
    if kind == "people":
        return frame.filter(pl.col(column).str.to_lowercase() == email.lower()).height
    return frame.filter(pl.col(column).is_in(sorted(devices))).height


def test_a_published_withdrawal_leaves_every_snapshot_and_its_files(tmp_path):
    withdrawal = _withdraw(tmp_path)
    root = Path(withdrawal.lakehouse.lakehouse_uri)
    catalog = independent_catalog(root)
    for table in HISTORY_KEYS:
        iceberg_table = catalog.load_table(f"stedi.{table}")
        kept = [s.snapshot_id for s in iceberg_table.snapshots()]
        # The first run's snapshot held the customer: it is gone, the one after the withdrawal is kept.
        assert withdrawal.first_snapshots[table] not in kept, table
        assert kept == [iceberg_table.metadata.current_snapshot_id], table
        for snapshot_id in kept:
            assert _rows_of(root, table, snapshot_id, withdrawal.email, withdrawal.devices) == 0, table
        # The data files only the expired snapshot referenced are deleted.
        left = {f for f in withdrawal.first_files[table] if Path(f).exists()}
        assert not left - _data_files(root, table, iceberg_table.metadata.current_snapshot_id), table
    assert all(passed for (table, check), passed in check_outcomes(withdrawal.result).items()
               if check == "withdrawn_out_of_history")
    # Time travel to before the withdrawal no longer returns the customer.
    try:
        earlier = query(
            f"SELECT COUNT(*) AS n FROM customer_trusted WHERE lower(email) = '{withdrawal.email.lower()}'",
            withdrawal.lakehouse, as_of=str(withdrawal.first_snapshots["customer_trusted"]),
        )
    except QueryError as error:
        assert "snapshot" in str(error)
    else:
        assert earlier["n"].item() == 0
    # The landing tables keep their history: the first run's snapshot and the new one.
    assert len(catalog.load_table("stedi.customer_landing").snapshots()) == 2


def test_with_a_retention_the_earlier_snapshots_stay_until_it_has_passed(tmp_path):
    withdrawal = _withdraw(tmp_path, withdrawal_retention_hours=24)
    root = Path(withdrawal.lakehouse.lakehouse_uri)
    catalog = independent_catalog(root)
    for table, first in withdrawal.first_snapshots.items():
        assert first in [s.snapshot_id for s in catalog.load_table(f"stedi.{table}").snapshots()], table
    assert _rows_of(root, "customer_trusted", withdrawal.first_snapshots["customer_trusted"], withdrawal.email, set()) == 1

    # A day later, the maintenance job's part expires them.
    forgotten = forget_withdrawn_everywhere(withdrawal.lakehouse, now=time.time() + 25 * 3600)
    assert {f.table for f in forgotten if f.snapshots_expired} == set(HISTORY_KEYS)
    for table, first in withdrawal.first_snapshots.items():
        assert first not in [s.snapshot_id for s in catalog.load_table(f"stedi.{table}").snapshots()], table


def test_the_history_check_fails_when_the_snapshots_are_not_expired(tmp_path, monkeypatch):
    from stedi_assets.lakehouse.history import Forgotten
    from stedi_assets.orchestration import assets

    monkeypatch.setattr(assets, "forget_withdrawn", lambda lakehouse, table, withdrawn: Forgotten(table))
    withdrawal = _withdraw(tmp_path)
    outcomes = check_outcomes(withdrawal.result)
    failed = {table for (table, check), passed in outcomes.items() if check == "withdrawn_out_of_history" and not passed}
    assert failed == set(HISTORY_KEYS)
    [evaluation] = [
        e for e in withdrawal.result.get_asset_check_evaluations()
        if e.check_name == "withdrawn_out_of_history" and e.asset_key.path[-1] == "customer_trusted"
    ]
    assert "time travel returns them" in evaluation.metadata["problem"].value
    assert withdrawal.email not in str(evaluation.metadata)


@pytest.mark.parametrize("kind", ["people", "devices"])
def test_the_history_invariant_finds_the_rows_of_a_withdrawn_customer(kind):
    from stedi_assets.domain.invariants import rows_of_withdrawn

    landing = nw.from_native(pl.DataFrame({
        "email": ["Gone@x.com ", "gone@x.com", "stays@x.com"],
        "lastUpdateDate": [1, 2, 1],
        RESEARCH_CONSENT: [5, None, 5],
        "serialNumber": ["old-device", "device-g", "device-s"],
    }).lazy())
    if kind == "people":
        rows = nw.from_native(pl.DataFrame({"user": ["GONE@x.com", "stays@x.com"]}).lazy())
        found = rows_of_withdrawn(rows, "user", kind, landing).collect().to_native()["user"].to_list()
        assert found == ["GONE@x.com"]
    else:
        rows = nw.from_native(pl.DataFrame({"serialNumber": ["old-device", "device-g", "device-s"]}).lazy())
        found = rows_of_withdrawn(rows, "serialNumber", kind, landing).collect().to_native()["serialNumber"].to_list()
        assert sorted(found) == ["device-g", "old-device"]


def test_a_table_held_back_for_an_unattributable_line_still_publishes_the_withdrawal(tmp_path):
    """A delivery with a valid withdrawal and one customer line whose email cannot be read: customer_trusted is
    held back (its check fails and says why), yet the customer who withdrew leaves it and every table downstream,
    and no row is added to any of them."""
    landing, root = tmp_path / "landing", tmp_path / "lakehouse"
    write_landing(landing, simulate_landing())
    lakehouse = Lakehouse(landing_uri=str(landing), lakehouse_uri=str(root))
    assert materialize_all(lakehouse).success
    before = {t: pl.from_arrow(independent_catalog(root).load_table(f"stedi.{t}").scan().to_arrow()) for t in HISTORY_KEYS}
    ml_devices = lakehouse.read_table(["machine_learning_curated"]).select("serialNumber").unique()
    customer = (
        lakehouse.read_table(["customer_curated"]).join(ml_devices, on="serialNumber", how="semi")
        .head(1).collect().to_native().to_dicts()[0]
    )
    withdrawal = {**customer, RESEARCH_CONSENT: None, "lastUpdateDate": customer["lastUpdateDate"] + 1}
    (landing / "customer" / "customer-withdrawal.json").write_text(
        json.dumps(withdrawal) + "\n" + '{"customerName": "Someone", "phone": \n'
    )
    result = materialize_all(lakehouse)

    assert not result.success
    outcomes = check_outcomes(result)
    assert outcomes[("customer_trusted", "quarantined_records_attributed")] is False
    [held] = [e for e in result.get_asset_check_evaluations() if e.check_name == "quarantined_records_attributed"]
    removed = held.metadata["removals_published"].value
    assert set(removed) == set(HISTORY_KEYS) and all(rows > 0 for rows in removed.values())
    for table, earlier in before.items():
        after = pl.from_arrow(independent_catalog(root).load_table(f"stedi.{table}").scan().to_arrow())
        column, kind = HISTORY_KEYS[table]
        gone = (
            pl.col(column).str.to_lowercase() == customer["email"].lower() if kind == "people"
            else pl.col(column) == customer["serialNumber"]
        )
        # Exactly the rows of the customer who withdrew are gone; nothing else changed, nothing was added.
        assert after.sort(after.columns).equals(earlier.filter(~gone).sort(earlier.columns)), table
        assert earlier.filter(gone).height == removed[table], table
        # Their earlier snapshot is expired as well (retention 0).
        assert _rows_of(root, table, independent_catalog(root).load_table(f"stedi.{table}").snapshots()[0].snapshot_id,
                        customer["email"], {customer["serialNumber"]}) == 0, table
