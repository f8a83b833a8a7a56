"""The README and docs/ document what the code declares: every table, column, check and setting.

A guard against the documentation drifting from schemas.py, checks.py and
settings.py; it does not judge the prose. Each test reads the page where its
section lives. Every relative link and anchor of the README and docs/ leads
somewhere.
"""

from __future__ import annotations

import re

from dagster import ConfigurableResource, EnvVar

from stedi_assets.orchestration import resources
from stedi_assets.orchestration.checks import CHECKS, HISTORY_CHECKS
from stedi_assets.domain.schemas import PUBLISHED
from stedi_assets.settings import SETTINGS, VARIABLES
from stedi_assets_tests.conftest import REPOSITORY
from stedi_assets_tests.test_settings import GOOD

README = (REPOSITORY / "README.md").read_text()
DOCS = REPOSITORY / "docs"
PRIVACY = (DOCS / "privacy.md").read_text()
OPERATING = (DOCS / "operating.md").read_text()
# The settings of the pipeline, and those of operating it (sensors, schedules, alerts) beside their sections.
SETTINGS_PAGES = (DOCS / "settings.md").read_text() + OPERATING


def test_every_table_and_column_is_documented():
    for name, table in PUBLISHED.items():
        assert f"| {name} |" in PRIVACY, name
        # The delivery ledger's columns are described with the ledger, in operating.md.
        page = OPERATING if name == "delivery_ledger" else PRIVACY
        for column in table.columns:
            assert column.name in page, f"{name}.{column.name}"


def test_every_check_is_documented():
    for checks in (*CHECKS.values(), *HISTORY_CHECKS.values()):
        for check in checks:
            assert f"`{check.name}`" in PRIVACY, check.name


def _env_var_names(resource) -> set[str]:
    """The variables a resource (and the resources nested in it) is configured with, by name."""
    names = set()
    for value in dict(resource).values():
        if isinstance(value, EnvVar) or hasattr(value, "env_var_name"):  # EnvVar or EnvVar.int
            names.add(getattr(value, "env_var_name", None) or str(value))
        elif isinstance(value, ConfigurableResource):
            names |= _env_var_names(value)
    return names


def test_every_setting_is_documented():
    # With every variable set, build_resources passes each one it wires by name; every name is a validated setting.
    # (STEDI_SPARK_REMOTE excludes STEDI_SPARK_MASTER: the master is set.)
    environ = {variable: cases[0][0] for variable, cases in GOOD.items() if variable != "STEDI_SPARK_REMOTE"}
    built = resources.build_resources(environ)
    passed = _env_var_names(built["lakehouse"]) | _env_var_names(built["alerts"])
    assert passed and passed <= set(VARIABLES), "build_resources passes a variable the settings do not validate"
    for setting in SETTINGS:
        # One row of the settings table per variable.
        row = next((line for line in SETTINGS_PAGES.splitlines() if line.startswith(f"| `{setting.variable}` |")), None)
        assert row is not None, setting.variable
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        if len(cells) == 6:  # the main table: variable, option, launchpad field, accepted, default, meaning
            assert cells[1] == (f"`{setting.option}`" if setting.option else ""), setting.variable
            launchpad = {"lakehouse": setting.config_field, "s3": f"s3.{setting.config_field}"}.get(setting.resource)
            assert cells[2] == (f"`{launchpad}`" if launchpad else ""), setting.variable


def test_the_two_commands_are_in_the_readme_and_ci_runs_the_test_command():
    run = ".venv/bin/pip install -e . && .venv/bin/stedi run"
    test = ".venv/bin/pip install -e '.[spark,test]' && .venv/bin/pytest"
    assert run in README and test in README
    assert test in (REPOSITORY / ".ci" / "run").read_text()


def _anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a page: lower case, punctuation dropped, spaces as hyphens."""
    found: set[str] = set()
    for heading in re.findall(r"(?m)^#{1,6} (.+)$", re.sub(r"(?ms)^```.*?^```", "", markdown)):
        base = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchor, n = base, 0
        while anchor in found:
            n += 1
            anchor = f"{base}-{n}"
        found.add(anchor)
    return found


def test_every_relative_link_and_anchor_leads_somewhere():
    pages = [REPOSITORY / "README.md", *sorted(DOCS.glob("*.md"))]
    assert len(pages) > 5
    checked = 0
    for page in pages:
        text = re.sub(r"(?ms)^```.*?^```", "", page.read_text())
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: {target}"
            if anchor:
                assert anchor in _anchors(linked.read_text()), f"{page.name}: {target}"
            checked += 1
    assert checked > 50


def test_the_readme_is_a_front_door():
    """What it is, the two commands, the UI, and a map of docs/ with every page in it, on two screens."""
    assert len(README.splitlines()) <= 120
    for page in DOCS.glob("*.md"):
        assert f"(docs/{page.name})" in README, page.name
