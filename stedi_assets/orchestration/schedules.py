"""Jobs and schedules of operations, and the freshness policies of the curated tables.

* ``stedi_audit_job`` runs the audit checks alone (no table is recomputed);
  ``stedi_audit_schedule`` runs it hourly by default (running by default).
* ``stedi_daily_schedule`` runs ``stedi_job`` once a day as a backstop; it is
  stopped by default (the landing sensor keeps the tables up to date) and is
  started from the UI's Automation page.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from dagster import (
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    DefaultScheduleStatus,
    FreshnessPolicy,
    ScheduleDefinition,
    define_asset_job,
)

from stedi_assets.orchestration.tags import TRIGGER_TAG
from stedi_assets.settings import Settings
from stedi_assets.domain.schemas import TABLES


def build_audit_job(audit_checks: Sequence):
    return define_asset_job(
        "stedi_audit_job",
        selection=AssetSelection.checks(*audit_checks),
        description="Re-verify the privacy invariants on the published tables, without recomputing any table.",
    )


def build_schedules(
    settings: Settings,
    audit_job,
    full_job,
) -> list[ScheduleDefinition]:
    return [
        ScheduleDefinition(
            name="stedi_audit_schedule",
            job=audit_job,
            cron_schedule=settings.audit_cron,
            default_status=DefaultScheduleStatus.RUNNING,
            tags={TRIGGER_TAG: "stedi_audit_schedule"},
            description="The audit checks on the published tables (STEDI_AUDIT_CRON).",
        ),
        ScheduleDefinition(
            name="stedi_daily_schedule",
            job=full_job,
            cron_schedule=settings.full_run_cron,
            default_status=DefaultScheduleStatus.STOPPED,
            tags={TRIGGER_TAG: "stedi_daily_schedule"},
            description="Backstop: every table and check, daily (STEDI_FULL_RUN_CRON); off by default.",
        ),
    ]


def curated_freshness(settings: Settings) -> FreshnessPolicy:
    return FreshnessPolicy.time_window(
        fail_window=timedelta(minutes=settings.freshness_fail_minutes),
        warn_window=timedelta(minutes=settings.freshness_warn_minutes),
    )


def with_curated_freshness(assets: Sequence[AssetsDefinition], settings: Settings) -> list[AssetsDefinition]:
    """``assets`` with the freshness policy on every curated-zone table."""
    policy = curated_freshness(settings)

    def apply(spec: AssetSpec) -> AssetSpec:
        table = TABLES.get(spec.key.path[-1])
        if table is not None and table.zone == "curated":
            return spec.replace_attributes(freshness_policy=policy)
        return spec

    return [asset.map_asset_specs(apply) for asset in assets]


def curated_keys(assets: Sequence[AssetsDefinition]) -> list:
    return sorted(
        (key for asset in assets for key in asset.keys if TABLES.get(key.path[-1]) and TABLES[key.path[-1]].zone == "curated"),
        key=lambda k: k.to_string(),
    )
