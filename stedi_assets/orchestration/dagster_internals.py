"""The few Dagster names the package needs that Dagster does not export publicly.

Everything else comes from ``dagster``'s public namespace. Each name here is
imported from a private module of Dagster 1.13, so an upgrade may move it;
``stedi_assets_tests/orchestration/test_dagster_internals.py`` holds one test per
name that fails, naming it, when it has moved or changed, and a test that
fails on any ``dagster._`` import in the package outside this module.
"""

from __future__ import annotations

# The type ``define_asset_job`` returns (a job resolved only once the
# Definitions are built). Dagster exports the function but not the type;
# used in annotations only.
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

# The freshness state the daemon records per asset; the values of
# ``DagsterInstance.get_freshness_state_records`` are records holding one.
# Not exported: Dagster's own alerting on it is a hosted-only feature.
from dagster._core.definitions.freshness import FreshnessState

# The kind of instigator whose states ``DagsterInstance.all_instigator_state``
# lists (sensor, schedule); that method takes only this enum as its filter.
from dagster._core.definitions.run_request import InstigatorType

# A tick's outcome, as ``DagsterInstance.get_ticks`` filters and returns it;
# no public API reads another sensor's tick history.
from dagster._core.scheduler.instigation import TickStatus

__all__ = ["FreshnessState", "InstigatorType", "TickStatus", "UnresolvedAssetJobDefinition"]
