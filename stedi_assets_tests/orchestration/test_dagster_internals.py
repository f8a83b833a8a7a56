"""The Dagster values the package relies on without a public name, held equal to Dagster's own.

The sensors compare the instance's tick, instigator and freshness records by
their enums' string values (Dagster does not export those enums), and keep the
list of in-progress run statuses from public names: one test for each, failing
with the name when a Dagster upgrade changes it, and a scan of the package's
sources that fails on any ``dagster._`` import. Nothing here starts a run.
"""

from __future__ import annotations

import ast
import enum
from pathlib import Path

from dagster import DagsterInstance

import stedi_assets
from stedi_assets.orchestration import sensors

PACKAGE = Path(stedi_assets.__file__).parent


def test_freshness_values_are_dagsters_freshness_states():
    from dagster._core.definitions.freshness import FreshnessState, FreshnessStateRecord

    assert issubclass(FreshnessState, enum.Enum)
    assert FreshnessState.FAIL.value == sensors.FRESHNESS_FAIL
    assert FreshnessState.UNKNOWN.value == sensors.FRESHNESS_UNKNOWN
    # And it is the type the instance's freshness records hold.
    assert FreshnessStateRecord.__annotations__["freshness_state"] in (FreshnessState, "FreshnessState")


def test_sensor_value_is_dagsters_instigator_type(tmp_path):
    from dagster._core.definitions.run_request import InstigatorType

    assert InstigatorType.SENSOR.value == sensors.SENSOR
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        assert list(instance.all_instigator_state()) == []


def test_done_tick_values_are_dagsters_tick_statuses(tmp_path):
    from dagster._core.scheduler.instigation import TickStatus

    values = {member.value for member in TickStatus}
    assert sensors.DONE_TICKS <= values
    assert sensors.FAILURE == TickStatus.FAILURE.value
    # Every other status is a tick still under way.
    assert values - sensors.DONE_TICKS == {TickStatus.STARTED.value}
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        assert list(instance.get_ticks("no-origin", "no-selector")) == []


def test_data_version_tags_are_dagsters():
    from dagster._core.definitions.data_version import DATA_VERSION_IS_USER_PROVIDED_TAG, DATA_VERSION_TAG

    from stedi_assets.orchestration import feeds

    assert feeds.DATA_VERSION_TAG == DATA_VERSION_TAG
    assert feeds.USER_PROVIDED_TAG == DATA_VERSION_IS_USER_PROVIDED_TAG


def test_in_progress_run_statuses_are_dagsters():
    from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES as dagsters

    from stedi_assets.orchestration.sensors import IN_PROGRESS_RUN_STATUSES

    assert set(IN_PROGRESS_RUN_STATUSES) == set(dagsters), (
        "Dagster's in-progress run statuses changed: update stedi_assets.orchestration.sensors.IN_PROGRESS_RUN_STATUSES"
    )


def _private_dagster_uses(source: str) -> list[tuple[int, str]]:
    """``(line, what)`` for each import of a ``dagster._`` module or ``dagster._`` attribute in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("dagster._")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("dagster._"):
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "dagster"
            and node.attr.startswith("_")
        ):
            found.append((node.lineno, f"dagster.{node.attr}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("dagster._"):
            found.append((node.lineno, node.value))  # importlib.import_module("dagster._...")
    return found


def test_the_scan_finds_each_kind_of_private_use():
    source = (
        "import dagster._core.events\n"
        "from dagster._utils import schedules\n"
        "import dagster\n"
        "x = dagster._check\n"
        "importlib.import_module('dagster._config')\n"
        "from dagster import asset\n"
    )
    assert [line for line, _ in _private_dagster_uses(source)] == [1, 2, 4, 5]


def test_no_private_dagster_import_in_the_package():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 10, "the scan found almost no sources: has the package moved?"
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
        for path in sources
        for line, what in _private_dagster_uses(path.read_text(encoding="utf-8"))
    ]
    assert found == [], "private Dagster names used in the package:\n" + "\n".join(found)

