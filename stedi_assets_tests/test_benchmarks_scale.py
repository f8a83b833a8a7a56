"""Tests of the benchmark tooling's answers: the DuckDB reference on the real data set,
scaling that data set three times, and the reference on simulated data.

They check row counts only, never timings. The real-data tests read the STEDI data
set through the ``stedi_landing`` fixture; outputs go to ``tmp_path``.
"""

from __future__ import annotations

import pathlib

import pytest

from benchmarks.duckdb_reference import run_reference
from benchmarks.scale_data import scale_landing
from stedi_assets.profiles import expected_rows
from stedi_assets.schemas import ZONE_TABLES
from stedi_assets.simulate import expected_counts, simulate_landing, write_landing



def reference_counts(same_customer: bool) -> dict[str, int]:
    """The known answer of the six rules on the real data set."""
    return {table: expected_rows("stedi-reference", table, same_customer) for table in ZONE_TABLES}


@pytest.mark.parametrize("same_customer", [False, True])
def test_reference_gives_the_known_answer(stedi_landing, tmp_path: pathlib.Path, same_customer: bool) -> None:
    assert run_reference(stedi_landing, tmp_path, same_customer) == reference_counts(same_customer)
    assert (tmp_path / "curated" / "machine_learning_curated.parquet").is_file()


@pytest.mark.parametrize("same_customer", [False, True])
def test_three_copies_triple_every_count(stedi_landing, tmp_path: pathlib.Path, same_customer: bool) -> None:
    landing = tmp_path / "landing"
    written = scale_landing(stedi_landing, 3, landing, files_per_feed=2)
    assert len(written) == 3 * 2  # three feeds, two files each
    counts = run_reference(landing, tmp_path / "lakehouse", same_customer)
    assert counts == {table: 3 * rows for table, rows in reference_counts(same_customer).items()}


@pytest.mark.parametrize(("customers", "seed"), [(200, 20230806), (57, 3)])
def test_reference_agrees_with_the_simulator(tmp_path: pathlib.Path, customers: int, seed: int) -> None:
    write_landing(tmp_path / "landing", simulate_landing(customers, seed))
    expected = expected_counts(customers, seed)
    tables = run_reference(tmp_path / "landing", tmp_path / "time_only")
    same_customer = run_reference(tmp_path / "landing", tmp_path / "same_customer", same_customer=True)
    assert tables == {table: expected[table] for table in tables}
    assert same_customer["machine_learning_curated"] == expected["machine_learning_curated_same_customer"]
