"""The README documents what the code declares: every table, column, check and setting.

A guard against the README drifting from schemas.py, checks.py and
settings.py; it does not judge the prose.
"""

from __future__ import annotations

import inspect
import re

from stedi_assets.orchestration import resources
from stedi_assets.orchestration.checks import CHECKS
from stedi_assets.domain.schemas import PUBLISHED
from stedi_assets.settings import SETTINGS, VARIABLES
from stedi_assets_tests.conftest import REPOSITORY

README = (REPOSITORY / "README.md").read_text()


def test_every_table_and_column_is_documented():
    for name, table in PUBLISHED.items():
        assert f"| {name} |" in README, name
        for column in table.columns:
            assert column.name in README, f"{name}.{column.name}"


def test_every_check_is_documented():
    for checks in CHECKS.values():
        for check in checks:
            assert f"`{check.name}`" in README, check.name


def test_every_setting_is_documented():
    source = inspect.getsource(resources.build_resources)
    passed = set(re.findall(r'"(STEDI_[A-Z_]*[A-Z])"', source))
    assert passed and passed <= set(VARIABLES), "build_resources passes a variable the settings do not validate"
    for setting in SETTINGS:
        # One row of the settings table per variable.
        row = next((line for line in README.splitlines() if line.startswith(f"| `{setting.variable}` |")), None)
        assert row is not None, setting.variable


def test_the_two_commands_are_in_the_readme_and_ci_runs_the_test_command():
    run = ".venv/bin/pip install -e . && .venv/bin/stedi run"
    test = ".venv/bin/pip install -e '.[spark,test]' && .venv/bin/pytest"
    assert run in README and test in README
    assert test in (REPOSITORY / ".ci" / "run").read_text()
