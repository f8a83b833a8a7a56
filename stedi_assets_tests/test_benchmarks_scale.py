"""Tests of the benchmark tooling's answers: the DuckDB reference on the real data set,
scaling that data set three times, and the reference on simulated data.

They check row counts only, never timings. The real-data tests need the STEDI data
set in ``shared/stedi/landing`` beside the repository; outputs go to ``tmp_path``.
"""

from __future__ import annotations

import pathlib

import pytest

from benchmarks.duckdb_reference import run_reference
from benchmarks.scale_data import scale_landing
from stedi_assets.simulate import expected_counts, simulate_landing, write_landing

REAL_LANDING = pathlib.Path(__file__).resolve().parents[2] / "shared" / "stedi" / "landing"
# The known answer of the six rules on the real data set.
REAL_COUNTS = {
    "customer_landing": 956,
    "accelerometer_landing": 81_273,
    "step_trainer_landing": 28_680,
    "customer_trusted": 482,
    "accelerometer_trusted": 40_981,
    "customer_curated": 482,
    "step_trainer_trusted": 14_460,
    "machine_learning_curated": 43_681,
}
REAL_SAME_CUSTOMER_ROWS = 40_981

needs_real_data = pytest.mark.skipif(
    not REAL_LANDING.is_dir(), reason=f"the STEDI data set is not at {REAL_LANDING}"
)


@needs_real_data
@pytest.mark.parametrize("same_customer", [False, True])
def test_reference_gives_the_known_answer(tmp_path: pathlib.Path, same_customer: bool) -> None:
    expected = dict(REAL_COUNTS)
    if same_customer:
        expected["machine_learning_curated"] = REAL_SAME_CUSTOMER_ROWS
    assert run_reference(REAL_LANDING, tmp_path, same_customer) == expected
    assert (tmp_path / "curated" / "machine_learning_curated.parquet").is_file()


@needs_real_data
@pytest.mark.parametrize("same_customer", [False, True])
def test_three_copies_triple_every_count(tmp_path: pathlib.Path, same_customer: bool) -> None:
    landing = tmp_path / "landing"
    written = scale_landing(REAL_LANDING, 3, landing, files_per_feed=2)
    assert len(written) == 3 * 2  # three feeds, two files each
    counts = run_reference(landing, tmp_path / "lakehouse", same_customer)
    single = dict(REAL_COUNTS)
    if same_customer:
        single["machine_learning_curated"] = REAL_SAME_CUSTOMER_ROWS
    assert counts == {table: 3 * rows for table, rows in single.items()}


@pytest.mark.parametrize(("customers", "seed"), [(200, 20230806), (57, 3)])
def test_reference_agrees_with_the_simulator(tmp_path: pathlib.Path, customers: int, seed: int) -> None:
    write_landing(tmp_path / "landing", simulate_landing(customers, seed))
    expected = expected_counts(customers, seed)
    tables = run_reference(tmp_path / "landing", tmp_path / "time_only")
    same_customer = run_reference(tmp_path / "landing", tmp_path / "same_customer", same_customer=True)
    assert tables == {table: expected[table] for table in tables}
    assert same_customer["machine_learning_curated"] == expected["machine_learning_curated_same_customer"]
