"""Run tags that say what started a run, set by every automation of the project and read by the alerts."""

from __future__ import annotations

TRIGGER_TAG = "stedi/trigger"
"""What requested the run: ``landing_sensor`` or a schedule's name."""
FEEDS_TAG = "stedi/feeds"
"""The landing sensor's runs: the feeds whose files changed, e.g. ``customer,accelerometer``."""
CHANGES_TAG = "stedi/landing_changes"
"""The landing sensor's runs: what changed, e.g. ``accelerometer: 1 added; customer: 1 changed``."""

# Dagster's own: the job of a run of assets selected directly (no named job),
# and the tags it puts on runs of sensors, schedules and backfills.
ANONYMOUS_JOB = "__ASSET_JOB"
_DAGSTER_TRIGGERS = ("dagster/sensor_name", "dagster/schedule_name", "dagster/backfill")


def run_origin(job_name: str, tags: dict[str, str]) -> dict[str, str]:
    """``{"job": ..., "trigger": ...}`` naming a run for people: never Dagster's ``__ASSET_JOB``."""
    trigger = tags.get(TRIGGER_TAG) or next(
        (f"{tag.split('/')[1].replace('_name', '')} {tags[tag]}" for tag in _DAGSTER_TRIGGERS if tags.get(tag)),
        "manual",  # the UI, the command line or the API
    )
    job = "assets selected directly (no named job)" if job_name == ANONYMOUS_JOB else job_name
    return {"job": job, "trigger": trigger}
