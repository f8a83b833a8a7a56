"""The ``lakehouse_maintenance`` job and its daily schedule (off until switched on in the UI)."""

from dagster import DefaultScheduleStatus, MetadataValue, OpExecutionContext, Output, ResourceParam, ScheduleDefinition, job, op

from stedi_assets.lakehouse.history import describe as describe_forgotten
from stedi_assets.lakehouse.history import forget_withdrawn_everywhere
from stedi_assets.lakehouse.maintenance import describe, maintain_lakehouse
from stedi_assets.orchestration.tags import TRIGGER_TAG
from stedi_assets.lakehouse.lakehouse import Lakehouse


@op(
    description="Expire the snapshots that hold customers who withdrew (past their retention) and old snapshots "
    "of every table, and delete the files no kept snapshot needs."
)
def maintain_tables(context: OpExecutionContext, lakehouse: ResourceParam[Lakehouse]) -> Output[None]:
    # First the snapshots that hold customers who withdrew, once past STEDI_WITHDRAWAL_RETENTION_HOURS.
    forgotten = [f for f in forget_withdrawn_everywhere(lakehouse) if f.snapshots_expired]
    for item in forgotten:
        context.log.info(describe_forgotten(item))
    reports = maintain_lakehouse(lakehouse, on_table=lambda report: context.log.info(describe(report)))
    return Output(
        None,
        metadata={
            "tables": len(reports),
            "snapshots_expired": sum(r.snapshots_expired for r in reports),
            "snapshots_expired_after_withdrawals": sum(len(f.snapshots_expired) for f in forgotten),
            "files_deleted": sum(r.files_deleted for r in reports),
            "report": MetadataValue.md("\n".join(f"- {describe(r)}" for r in reports) or "no tables yet"),
        },
    )


@job(description="Expire snapshots beyond the retention and delete unreferenced files of every lakehouse table.")
def lakehouse_maintenance():
    maintain_tables()


lakehouse_maintenance_schedule = ScheduleDefinition(
    name="lakehouse_maintenance_daily",
    job=lakehouse_maintenance,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    # Off by default: a deployment switches it on in the UI once the retention settings suit it.
    default_status=DefaultScheduleStatus.STOPPED,
    tags={TRIGGER_TAG: "lakehouse_maintenance_daily"},
    description="Runs lakehouse_maintenance every day at 03:00 UTC.",
)
