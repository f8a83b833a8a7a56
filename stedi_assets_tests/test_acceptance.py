"""Acceptance: the whole graph over the real STEDI landing data with the stedi-reference profile.

Covers the eight reference row counts, every check's outcome and the
published layout. Does not cover the Spark engine or S3 (their own modules).
"""

from __future__ import annotations

import json

import polars as pl

from stedi_assets.profiles import STEDI_REFERENCE
from stedi_assets.schemas import FEEDS, TABLES, ZONE_TABLES
from stedi_assets_tests.conftest import check_outcomes, materialize_all, published_rows


def test_reference_counts_and_every_check(stedi_landing, make_lakehouse, tmp_path):
    result = materialize_all(make_lakehouse(stedi_landing, profile="stedi-reference"))

    assert result.success
    # The real data set is clean: every quarantine table is published, empty.
    assert published_rows(result) == {
        **{name: STEDI_REFERENCE[name] for name in ZONE_TABLES},
        **{f"{feed}_quarantine": 0 for feed in FEEDS},
    }
    outcomes = check_outcomes(result)
    failed = {key for key, passed in outcomes.items() if not passed}
    # The time-only join pairs 2,700 rows of different customers: reported, as a warning.
    assert failed == {("machine_learning_curated", "cross_customer_pairs")}
    assert len(outcomes) == 32

    for name, table in TABLES.items():
        manifest = json.loads((tmp_path / "lakehouse" / table.zone / name / "_manifest.json").read_text())
        stored = pl.read_parquet(manifest["files"])
        assert stored.height == STEDI_REFERENCE.get(name, 0)
        assert stored.schema == table.polars_schema


def test_same_customer_join(stedi_landing, make_lakehouse):
    result = materialize_all(make_lakehouse(stedi_landing, profile="stedi-reference", ml_join="same_customer"))

    assert result.success
    assert published_rows(result)["machine_learning_curated"] == 40_981
    assert all(check_outcomes(result).values())
