"""The package's use of Dagster's private modules: confined to one module, and each name in it still there.

One test per name in ``stedi_assets/orchestration/dagster_internals.py``, each
failing with the name when a Dagster upgrade moves or changes it; the list of
in-progress run statuses the landing sensor keeps from public names, held to
Dagster's own; and a scan of the package's sources for ``dagster._`` imports
anywhere else. Nothing here starts a run or an instance.
"""

from __future__ import annotations

import ast
import enum
from pathlib import Path

from dagster import AssetSelection, DagsterInstance, define_asset_job

import stedi_assets
from stedi_assets.orchestration import dagster_internals

PACKAGE = Path(stedi_assets.__file__).parent
ALLOWED = "dagster_internals.py"


def test_unresolved_asset_job_definition_is_what_define_asset_job_returns():
    job = define_asset_job("a_job", selection=AssetSelection.all())
    assert type(job) is dagster_internals.UnresolvedAssetJobDefinition, (
        f"define_asset_job now returns {type(job)!r}: update dagster_internals.UnresolvedAssetJobDefinition"
    )


def test_freshness_state_has_the_states_the_stale_table_sensor_reads():
    state = dagster_internals.FreshnessState
    assert issubclass(state, enum.Enum)
    assert {"PASS", "WARN", "FAIL", "UNKNOWN"} <= {member.name for member in state}
    # Cursors of earlier versions hold the state's value as a string.
    assert state.FAIL.value == "FAIL"
    # And it is the type the instance's freshness records hold.
    from dagster._core.definitions.freshness import FreshnessStateRecord

    assert FreshnessStateRecord.__annotations__["freshness_state"] in (state, "FreshnessState")


def test_instigator_type_is_what_all_instigator_state_filters_by(tmp_path):
    kind = dagster_internals.InstigatorType
    assert issubclass(kind, enum.Enum)
    assert kind.SENSOR.value == "SENSOR"
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        assert list(instance.all_instigator_state(instigator_type=kind.SENSOR)) == []


def test_tick_status_has_the_outcomes_the_tick_alert_sensor_reads(tmp_path):
    status = dagster_internals.TickStatus
    assert issubclass(status, enum.Enum)
    assert {"SUCCESS", "SKIPPED", "FAILURE"} <= {member.name for member in status}
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        assert list(instance.get_ticks("no-origin", "no-selector", statuses=[status.FAILURE])) == []


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
        "from .dagster_internals import TickStatus\n"
    )
    assert [line for line, _ in _private_dagster_uses(source)] == [1, 2, 4, 5]


def test_no_private_dagster_import_outside_dagster_internals():
    sources = [path for path in sorted(PACKAGE.rglob("*.py")) if path.name != ALLOWED]
    assert len(sources) > 10, "the scan found almost no sources: has the package moved?"
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
        for path in sources
        for line, what in _private_dagster_uses(path.read_text(encoding="utf-8"))
    ]
    assert found == [], f"private Dagster names used outside {ALLOWED} (move them there, with a test):\n" + "\n".join(
        found
    )

