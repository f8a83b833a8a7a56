"""Fixtures of the operations tests: a simulated landing zone and a lakehouse published from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stedi_assets.resources import StediLakehouse
from stedi_assets.simulate import simulate_landing, write_landing
from stedi_assets_tests.conftest import materialize_all


@pytest.fixture(scope="module")
def published_lakehouse(tmp_path_factory) -> StediLakehouse:
    """Every table published from the simulated landing zone, once per module; do not modify it."""
    root = tmp_path_factory.mktemp("published")
    write_landing(root / "landing", simulate_landing())
    lakehouse = StediLakehouse(landing_uri=str(root / "landing"), lakehouse_uri=str(root / "lakehouse"))
    assert materialize_all(lakehouse).success
    return lakehouse


@pytest.fixture
def lakehouse_copy(published_lakehouse: StediLakehouse, tmp_path: Path) -> StediLakehouse:
    """A copy of the published lakehouse that a test may overwrite tables of."""
    target = tmp_path / "lakehouse"
    shutil.copytree(published_lakehouse.lakehouse_uri, target)
    return StediLakehouse(landing_uri=published_lakehouse.landing_uri, lakehouse_uri=str(target))
