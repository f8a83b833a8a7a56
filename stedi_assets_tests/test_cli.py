"""The `stedi` command and `dagster asset materialize`, as a user runs them in a shell.

Covers the embedded default (an empty landing zone is filled with simulated
data), the per-table summary, exit codes and one-line errors.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stedi_assets.profiles import STEDI_REFERENCE, expected_rows
from stedi_assets.schemas import TABLES
from stedi_assets_tests.conftest import stored_table

BIN = Path(sys.executable).parent


def stedi(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STEDI_", "DAGSTER_HOME"))}
    return subprocess.run(
        [str(BIN / "stedi"), *args], cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=300
    )


def test_run_on_an_empty_landing_zone_uses_simulated_data(tmp_path):
    result = stedi("run", cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"The landing zone {tmp_path / 'data' / 'landing'} is empty" in result.stdout
    for name in TABLES:
        assert f"{expected_rows('simulated', name, same_customer=False):,}" in next(line for line in result.stdout.splitlines() if line.startswith(name))
    # An independent pyiceberg client reads every table from {lakehouse}/catalog.db.
    for name in TABLES:
        assert stored_table(tmp_path / "data/lakehouse", name).height == expected_rows("simulated", name, same_customer=False)

    # A second run finds the simulated landing zone and does not write it again.
    again = stedi("run", cwd=tmp_path)
    assert again.returncode == 0 and "is empty" not in again.stdout


def test_run_on_the_real_data_prints_the_reference_counts(stedi_landing, tmp_path):
    result = stedi(
        "run", cwd=tmp_path, STEDI_LANDING_URI=str(stedi_landing), STEDI_LAKEHOUSE_URI=str(tmp_path / "lake"),
        STEDI_PROFILE="stedi-reference",
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines() if line.split(None, 1)[0] in TABLES)
    assert lines["machine_learning_curated"].split()[0] == "43,681"
    assert "WARN cross_customer_pairs: cross_customer_rows=2700" in result.stdout


def test_run_exits_non_zero_when_an_error_check_fails(stedi_landing, tmp_path):
    # The simulated profile's counts do not fit the real data.
    result = stedi("run", "--landing", str(stedi_landing), "--lakehouse", str(tmp_path / "lake"), "--profile", "simulated", cwd=tmp_path)
    assert result.returncode == 1
    assert "ERROR row_count" in result.stdout
    assert "FAILED" in result.stderr


def test_missing_landing_zone_is_one_line_naming_the_uri(tmp_path):
    missing = tmp_path / "nowhere"
    result = stedi("run", "--landing", str(missing), "--lakehouse", str(tmp_path / "lake"), cwd=tmp_path)
    assert result.returncode == 1
    assert f"error: customer_landing: no landing files for feed 'customer' at {missing}/customer/" in result.stderr
    assert "Traceback" not in result.stderr and "Stack Trace" not in result.stderr
    assert not (tmp_path / "lake").exists()


def test_unknown_profile_is_reported(stedi_landing, tmp_path):
    result = stedi("run", "--landing", str(stedi_landing), "--lakehouse", str(tmp_path / "lake"), "--profile", "nope", cwd=tmp_path)
    assert result.returncode == 1
    assert "unknown data-set profile 'nope'" in result.stderr


def test_simulate_writes_the_landing_zone(tmp_path):
    result = stedi("simulate", "--out", str(tmp_path / "landing"), cwd=tmp_path)
    assert result.returncode == 0
    assert sorted(p.name for p in (tmp_path / "landing").iterdir()) == ["accelerometer", "customer", "step_trainer"]


@pytest.mark.slow
def test_dagster_asset_materialize_works_too(stedi_landing, tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("STEDI_")},
        "STEDI_LANDING_URI": str(stedi_landing),
        "STEDI_LAKEHOUSE_URI": str(tmp_path / "lake"),
        "STEDI_PROFILE": "stedi-reference",
        "DAGSTER_HOME": str(tmp_path),
    }
    (tmp_path / "dagster.yaml").write_text("")
    result = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "stedi_assets", "--select", "*"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for name in TABLES:
        assert stored_table(tmp_path / "lake", name).height == STEDI_REFERENCE.get(name, 0)
