"""The `stedi` command and `dagster asset materialize`, as a user runs them in a shell.

Covers the embedded default (an empty landing zone is filled with simulated
data only when no landing zone is configured), the per-table summary, exit
codes and one-line errors, bad settings (every command refuses them before
reading or writing anything; --help always works).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from stedi_assets import cli
from stedi_assets.domain.profiles import STEDI_REFERENCE, expected_rows
from stedi_assets.domain.schemas import TABLES
from stedi_assets_tests.conftest import stored_table
from stedi_assets_tests.test_settings import BAD, SECRETS

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


def test_unknown_profile_is_refused_before_anything_is_published(stedi_landing, tmp_path):
    result = stedi("run", "--landing", str(stedi_landing), "--lakehouse", str(tmp_path / "lake"), "--profile", "nope", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "stedi: STEDI_PROFILE='nope' is not valid: expected one of stedi-reference, simulated, or empty for none\n"
    )
    assert not (tmp_path / "lake").exists()  # not even the quarantine tables


@pytest.mark.parametrize("variable, value", [(variable, values[0]) for variable, values in BAD.items()])
def test_a_bad_setting_stops_every_command_before_it_reads_or_writes(variable, value, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # where the default landing zone and lakehouse would be
    monkeypatch.setenv(variable, value)
    for argv in (["run"], ["query", "SELECT 1"], ["history", "customer_trusted"], ["simulate"], ["recover-catalog"]):
        assert cli.main(argv) == 2, argv
        out, err = capsys.readouterr()
        assert out == ""
        shown = "<hidden>" if variable in SECRETS else repr(value)
        assert err.startswith(f"stedi: {variable}={shown} is not valid") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_a_bad_setting_in_a_shell_is_one_line_and_exit_code_2(tmp_path):
    result = stedi("run", cwd=tmp_path, STEDI_QUARANTINE_MAX_SHARE="abc", AWS_MAX_ATTEMPTS="abc")
    assert result.returncode == 2
    assert result.stderr == (
        "stedi: STEDI_QUARANTINE_MAX_SHARE='abc' is not valid: expected a number between 0 and 1, e.g. 0.01\n"
    )
    assert result.stdout == "" and list(tmp_path.iterdir()) == []


def test_a_catalog_url_without_its_driver_stops_the_command_in_one_line(tmp_path, monkeypatch, capsys):
    # Before: the setting passed, and each step of the run failed on ModuleNotFoundError.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STEDI_CATALOG_URI", "mysql://stedi@db.example.org/catalog")
    for argv in (["run"], ["query", "SELECT 1"], ["recover-catalog"]):
        assert cli.main(argv) == 2, argv
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1, err
        assert err.startswith(
            "stedi: STEDI_CATALOG_URI='mysql://stedi@db.example.org/catalog' is not valid (its driver MySQLdb is not installed"
        )
    assert list(tmp_path.iterdir()) == []


def test_help_works_whatever_the_settings_hold(tmp_path):
    bad = {variable: values[0] for variable, values in BAD.items()}
    for argv in (["--help"], ["run", "--help"], ["query", "--help"], ["simulate", "--help"], ["history", "--help"],
                 ["recover-catalog", "--help"]):
        result = stedi(*argv, cwd=tmp_path, **bad)
        assert result.returncode == 0, (argv, result.stderr)
        assert result.stdout.startswith("usage: stedi") and result.stderr == ""


def test_loading_the_code_location_with_a_bad_setting_shows_the_one_line_error(tmp_path):
    # What `dagster dev` shows when it loads the code location.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STEDI_", "DAGSTER_HOME"))}
    result = subprocess.run(
        [sys.executable, "-c", "import stedi_assets.definitions"], cwd=tmp_path, capture_output=True, text=True,
        env={**clean, "STEDI_SPARK_CONF": "foo"}, timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.splitlines()[-1] == (
        "stedi_assets.settings.SettingsError: STEDI_SPARK_CONF='foo' is not valid ('foo' is not a spark.*=value "
        "setting): expected spark.* settings as key=value,key=value, e.g. spark.sql.shuffle.partitions=4"
    )
    assert "During handling" not in result.stderr  # no chained error from the parsing


@pytest.mark.parametrize("how", ["variable", "option", "relative variable"])
def test_a_configured_empty_landing_zone_gets_no_simulated_data(how, tmp_path):
    # The configured folder is where the default would be: configured is what counts, not where.
    landing = tmp_path / "data" / "landing"
    landing.mkdir(parents=True)
    if how == "option":
        result = stedi("run", "--landing", str(landing), cwd=tmp_path)
    else:
        result = stedi("run", cwd=tmp_path, STEDI_LANDING_URI="data/landing" if how.startswith("relative") else str(landing))

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"error: customer_landing: no landing files for feed 'customer' at {landing}/customer/" in result.stderr
    assert "simulated" not in result.stdout
    assert list(landing.iterdir()) == []
    assert not (tmp_path / "data" / "lakehouse").exists()


def test_simulate_writes_the_landing_zone(tmp_path):
    result = stedi("simulate", "--out", str(tmp_path / "landing"), cwd=tmp_path)
    assert result.returncode == 0
    assert sorted(p.name for p in (tmp_path / "landing").iterdir()) == ["accelerometer", "customer", "step_trainer"]


def test_simulate_writes_the_default_folder_only_when_no_landing_zone_is_configured(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STEDI_LANDING_URI", raising=False)
    assert cli.main(["simulate"]) == 0
    landing = tmp_path / "data" / "landing"
    assert capsys.readouterr().out == f"wrote 5 files of simulated STEDI data to {landing}\n"
    # Written once: a second time would add a second data set to the first.
    before = {p: p.read_bytes() for p in landing.rglob("*") if p.is_file()}
    assert cli.main(["simulate", "--seed", "7"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (
        f"stedi: simulate: the default landing zone {landing} already holds 5 file(s): simulated data is written "
        "only into an empty folder\n"
    )
    assert {p: p.read_bytes() for p in landing.rglob("*") if p.is_file()} == before


def test_simulate_never_writes_into_a_folder_that_holds_files(tmp_path, capsys):
    real = tmp_path / "real"
    (real / "customer").mkdir(parents=True)
    (real / "customer" / "customer-1.json").write_text('{"email": "a@example.com"}\n')

    assert cli.main(["simulate", "--out", str(real)]) == 2

    out, err = capsys.readouterr()
    assert out == "" and err == (
        f"stedi: simulate: --out {real} already holds 1 file(s): simulated data is written only into an empty folder\n"
    )
    assert [p.name for p in real.rglob("*")] == ["customer", "customer-1.json"]


def test_simulate_never_writes_into_a_configured_landing_zone(tmp_path, monkeypatch, capsys):
    # Even an empty one: a configured landing zone is where real deliveries arrive.
    landing = tmp_path / "landing"
    landing.mkdir()
    monkeypatch.setenv("STEDI_LANDING_URI", str(landing))

    assert cli.main(["simulate"]) == 2

    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"stedi: simulate: STEDI_LANDING_URI is set ({landing}): simulated data is never written")
    assert err.endswith("give an empty folder with --out\n")
    assert list(landing.iterdir()) == []
    # An empty folder of its own is fine.
    assert cli.main(["simulate", "--out", str(tmp_path / "elsewhere")]) == 0


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


def test_run_lets_go_of_each_table_once_its_step_is_done(stedi_landing, tmp_path, monkeypatch):
    # A table is held in memory for its checks and its commit, then released:
    # the run does not keep every table until it ends (which doubled the peak
    # memory of a large run). Counted at each hold: earlier held tables still alive.
    from stedi_assets.lakehouse.engines.polars_engine import PolarsEngine

    held: list[weakref.ref] = []
    alive: list[int] = []
    hold = PolarsEngine.hold

    def counting_hold(self, frame):
        gc.collect()
        alive.append(sum(ref() is not None for ref in held))
        result = hold(self, frame)
        held.append(weakref.ref(result))
        return result

    monkeypatch.setattr(PolarsEngine, "hold", counting_hold)
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "STEDI_LANDING_URI": str(stedi_landing), "STEDI_LAKEHOUSE_URI": str(tmp_path / "lake"),
        "STEDI_PROFILE": "stedi-reference", "STEDI_ENGINE": "polars",
    }.items():
        monkeypatch.setenv(name, value)

    assert cli.main(["run"]) == 0
    assert len(held) == 11  # eight zone tables and three quarantine tables
    assert max(alive) <= 1, alive


def test_run_keeps_a_secret_setting_out_of_dagster_storage(stedi_landing, tmp_path, monkeypatch):
    # The run is stored in a persistent Dagster instance with how to rebuild
    # its job: that record holds no setting's value.
    password = "hunter2-secret-pw"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dagster_home").mkdir()
    for name, value in {
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "STEDI_LANDING_URI": str(stedi_landing), "STEDI_LAKEHOUSE_URI": str(tmp_path / "lake"),
        "STEDI_PROFILE": "stedi-reference", "STEDI_ENGINE": "polars",
        "STEDI_SMTP_URL": f"smtp://alerts:{password}@mail.example.org:587",
    }.items():
        monkeypatch.setenv(name, value)

    assert cli.main(["run"]) == 0

    written = [path for path in (tmp_path / "dagster_home").rglob("*") if path.is_file()]
    assert any(path.suffix == ".db" for path in written)
    assert not [path for path in written if password.encode() in path.read_bytes()]


def test_options_are_the_settings_models_and_are_passed_as_values(tmp_path, monkeypatch, capsys):
    from stedi_assets.settings import SETTING_OF_FIELD

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STEDI_PROFILE", raising=False)
    assert cli.main(["run", "--profile", "nope"]) == 2
    assert capsys.readouterr().err == (
        "stedi: STEDI_PROFILE='nope' is not valid: expected one of stedi-reference, simulated, or empty for none\n"
    )
    assert "STEDI_PROFILE" not in os.environ  # the option was a value, the environment untouched
    assert {SETTING_OF_FIELD[name].option for name in cli._RUN_OPTIONS} == {
        "--landing", "--lakehouse", "--profile", "--engine", "--ml-join", "--glue-database"
    }
    assert list(tmp_path.iterdir()) == []
