"""Erasure with the Spark engine: tables Spark built are erased, and Spark's landing steps drop a late
delivery of the erased person (counted in the ledger) as Polars' do.

On a small simulated landing zone; the byte-level scan of everything the
lakehouse holds is in ``lakehouse/test_erasure.py`` (Polars).
"""

from __future__ import annotations

import polars as pl
import pytest

from stedi_assets.domain.simulate import simulate_landing, write_landing
from stedi_assets.lakehouse.erasure import erase, traces
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.lakehouse.ledger import read_ledger
from stedi_assets_tests.conftest import materialize_all
from stedi_assets_tests.lakehouse.test_erasure import person_rows, traces_in_files

pytestmark = pytest.mark.spark


def test_spark_built_tables_are_erased_and_a_late_delivery_is_dropped(spark, tmp_path):
    landing, root = tmp_path / "landing", tmp_path / "lakehouse"
    write_landing(landing, simulate_landing(customers=30, seed=11))
    lakehouse = Lakehouse(landing_uri=str(landing), lakehouse_uri=str(root), engine="spark")
    assert materialize_all(lakehouse).success
    person = lakehouse.read_table(["customer_curated"], in_process=True).head(1).collect().to_native().row(0, named=True)
    email, device = person["email"], person["serialNumber"]
    late = b"".join(
        line for path in sorted((landing / "accelerometer").glob("*.json"))
        for line in path.read_bytes().splitlines(keepends=True) if email.lower().encode() in line.lower()
    )
    assert late and any(person_rows(lakehouse, email, device).values())

    result = erase(lakehouse, [email.upper()], "spark-erasure")
    assert result.found == {email: True}
    assert not any(person_rows(lakehouse, email, device).values())
    assert traces_in_files([root, landing], email, device if result.devices_erased else None) == []

    (landing / "accelerometer" / "accelerometer-late.json").write_bytes(late)
    assert materialize_all(lakehouse).success
    assert not any(person_rows(lakehouse, email, device).values())
    assert traces(lakehouse, "accelerometer_landing").rows == 0
    row = read_ledger(lakehouse)[0].filter(pl.col("uri").str.ends_with("accelerometer-late.json")).row(0, named=True)
    assert row["records_erased"] == late.count(b"\n") and row["records_read"] == 0
