"""Assembles the code location: assets grouped by zone, their checks, resources, the jobs and the schedule."""

from __future__ import annotations

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor

from stedi_assets.assets import ZONE_ASSETS
from stedi_assets.operations.maintenance import lakehouse_maintenance, lakehouse_maintenance_schedule
from stedi_assets.resources import build_resources
from stedi_assets.schemas import TABLES

# Group names come from the zone each table is declared in, applied here once.
zone_assets = [
    asset.with_attributes(group_names_by_key={key: TABLES[key.path[-1]].zone for key in asset.keys})
    for asset in ZONE_ASSETS
]

stedi_job = define_asset_job(
    "stedi_job",
    selection=AssetSelection.all(),
    description="Materialize every zone table and run every check.",
)


def build_definitions() -> Definitions:
    """The code location, with resources configured from the current environment."""
    return Definitions(
        assets=zone_assets,
        jobs=[stedi_job, lakehouse_maintenance],
        schedules=[lakehouse_maintenance_schedule],
        resources=build_resources(),
        # One process for the whole run: a process per step pays Python and
        # Dagster start-up each time, more than the tables take to compute.
        executor=in_process_executor,
    )


defs = build_definitions()
