"""The ``erase_job``: erase people on request, from the launchpad (``stedi erase`` does the same).

The library does the work (``stedi_assets.lakehouse.erasure``); this op only
takes the emails from its config and reports what changed, masked. The run's
config holds the emails as typed, so ``erase_run_cleanup_sensor`` deletes each
finished run of the job from the Dagster instance (its config and its event
log); the erasure register keeps the record, with no personal data.
"""

from dagster import (
    Config,
    DagsterRunStatus,
    DefaultSensorStatus,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Output,
    ResourceParam,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    job,
    op,
    sensor,
)
from pydantic import Field

from stedi_assets.lakehouse.erasure import ErasureError, describe, erase
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.orchestration.masking import mask_email, mask_emails


class EraseConfig(Config):
    """Whom to erase."""

    emails: list[str] = Field(
        description="Email addresses of the people to erase (compared as the rules compare them: "
        "case, surrounding spaces and full-width letters do not matter).",
    )


@op(
    description="Erase people everywhere the lakehouse holds them (tables, snapshots, delivery records, landing "
    "files) and register them, so that a later delivery of theirs is dropped."
)
def erase_people(context: OpExecutionContext, config: EraseConfig, lakehouse: ResourceParam[Lakehouse]) -> Output[None]:
    try:
        erasure = erase(
            lakehouse, config.emails, context.run_id, progress=lambda result: context.log.info(describe(result))
        )
    except ErasureError as error:
        raise Failure(description=mask_emails(str(error))) from None
    not_found = [mask_email(identity) for identity, found in erasure.found.items() if not found]
    for identity in not_found:
        context.log.warning(f"not found: {identity} (registered all the same: a later delivery of theirs is dropped)")
    touched = [t for t in erasure.tables if t.touched]
    return Output(
        None,
        metadata={
            "people": len(erasure.identities),
            "not_found": ", ".join(not_found) or "none",
            "devices_erased": erasure.devices_erased,
            "rows_removed": erasure.rows_removed,
            "files_rewritten": erasure.files_rewritten,
            "snapshots_expired": erasure.snapshots_expired,
            "report": MetadataValue.md("\n".join(f"- {describe(t)}" for t in touched) or "nothing held them"),
        },
    )


@job(description="Erase people on request (op config: emails) and keep them out of later deliveries.")
def erase_job():
    erase_people()


FINISHED = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]


def build_erase_run_cleanup_sensor(interval_seconds: int) -> SensorDefinition:
    """The sensor that deletes each finished run of ``erase_job`` from the instance: its config names the
    people erased."""

    @sensor(
        name="erase_run_cleanup_sensor",
        minimum_interval_seconds=interval_seconds,
        default_status=DefaultSensorStatus.RUNNING,
        description="Deletes each finished run of erase_job (its config holds the emails erased); "
        "the erasure register keeps what was done, with one-way hashes only.",
    )
    def erase_run_cleanup_sensor(context: SensorEvaluationContext):
        records = context.instance.get_run_records(RunsFilter(job_name=erase_job.name, statuses=FINISHED))
        for record in records:
            context.instance.delete_run(record.dagster_run.run_id)
            context.log.info(
                f"erase_job run {record.dagster_run.run_id} ({record.dagster_run.status.value}) deleted: "
                "its config named the people erased"
            )
        return SkipReason(f"{len(records)} finished erase_job run(s) deleted")

    return erase_run_cleanup_sensor
