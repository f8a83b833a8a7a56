"""Assembles the code location: assets grouped by zone, their checks, resources, jobs, sensors and schedules."""

from __future__ import annotations

from collections.abc import Mapping

from dagster import AssetSelection, Definitions, define_asset_job, in_process_executor, map_asset_specs

from stedi_assets.orchestration.assets import ZONE_ASSETS, accelerometer_landing, customer_landing, step_trainer_landing
from stedi_assets.orchestration.audit import AUDIT_CHECKS
from stedi_assets.orchestration.erasure_job import build_erase_run_cleanup_sensor, erase_job
from stedi_assets.orchestration.feeds import FEED_KEYS, landing_feeds
from stedi_assets.orchestration.maintenance_job import lakehouse_maintenance, lakehouse_maintenance_schedule
from stedi_assets.orchestration.schedules import build_audit_job, build_schedules, curated_keys, with_curated_freshness
from stedi_assets.orchestration.sensors import (
    build_landing_sensor,
    build_run_alert_sensors,
    build_stale_table_alert_sensor,
    build_tick_alert_sensor,
)
from stedi_assets.orchestration.resources import resources_for
from stedi_assets.domain.schemas import TABLES
from stedi_assets.orchestration.assets import ZONE_UPSTREAM
from stedi_assets.lakehouse.lakehouse import rule_version
from stedi_assets.settings import read_settings

# Group names come from the zone each table is declared in, applied here once.
zone_assets = [
    asset.with_attributes(group_names_by_key={key: TABLES[key.path[-1]].zone for key in asset.keys})
    for asset in ZONE_ASSETS
]

DERIVED = frozenset(table for table, inputs in ZONE_UPSTREAM.items() if inputs)

# The audit checks run in their own job and schedule (or from the UI), not in every update.
audit_checks = AssetSelection.checks(*AUDIT_CHECKS)

stedi_job = define_asset_job(
    "stedi_job",
    # The feeds are observed first: each landing step records the feed version it read.
    selection=(AssetSelection.all() | AssetSelection.assets(*FEED_KEYS)) - audit_checks,
    description="Observe the feeds, materialize every zone table and run every check evaluated with it.",
)
stedi_audit_job = build_audit_job(AUDIT_CHECKS)


def with_rule_versions(assets: list, settings) -> list:
    """Each derived table's code version: the rule settings it is computed under, so that Dagster marks
    it stale when they change, as ``stedi run`` does (``planning.out_of_date``)."""
    version = rule_version(settings.consent_scope, settings.ml_join)
    return map_asset_specs(
        lambda spec: spec if spec.key.path[-1] not in DERIVED else spec.replace_attributes(code_version=version),
        assets,
    )


def build_definitions(overrides: Mapping[str, str] | None = None) -> Definitions:
    """The code location, with resources and operations configured from the current environment
    and ``overrides`` of its settings (``settings.read_settings``)."""
    settings = read_settings(overrides=overrides)
    assets = with_curated_freshness(with_rule_versions(zone_assets, settings), settings)
    landing = {"customer": customer_landing, "accelerometer": accelerometer_landing, "step_trainer": step_trainer_landing}
    interval = settings.sensor_interval_seconds
    return Definitions(
        assets=[landing_feeds, *assets],
        asset_checks=AUDIT_CHECKS,
        jobs=[stedi_job, stedi_audit_job, lakehouse_maintenance, erase_job],
        schedules=[*build_schedules(settings, stedi_audit_job, stedi_job), lakehouse_maintenance_schedule],
        sensors=[
            build_landing_sensor(
                landing, audit_checks, interval, stedi_job, read_only_jobs=frozenset({stedi_audit_job.name})
            ),
            *build_run_alert_sensors(interval),
            build_tick_alert_sensor(interval),
            build_stale_table_alert_sensor(curated_keys(assets), interval),
            build_erase_run_cleanup_sensor(interval),
        ],
        resources=resources_for(settings),
        # One process for the whole run: a process per step pays Python and
        # Dagster start-up each time, more than the tables take to compute.
        executor=in_process_executor,
    )


defs = build_definitions()
