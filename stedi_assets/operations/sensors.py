"""Sensors: the landing sensor that keeps the tables up to date, and the alert sensors.

All of them run by default (``default_status=RUNNING``) under ``dagster dev``
or a deployed daemon.

* ``landing_sensor`` fingerprints every landing file (local: name, size and
  mtime in nanoseconds; S3: key and ETag) and compares them with its cursor.
  When a feed's files were added, changed or removed it requests one run of
  that feed's landing table and everything downstream of it, so a delivery
  reaches ``machine_learning_curated`` in one run (and a consent withdrawn in a
  new customer file leaves every trusted and curated table in that same run).
* ``check_failure_alert_sensor`` and ``run_failure_alert_sensor`` read each
  finished run's check evaluations: a failed check that does not block leaves
  the run green, so run failures alone would miss it.
* ``sensor_tick_alert_sensor`` reads the tick history of the other sensors.
* ``stale_table_alert_sensor`` reads the freshness state the daemon keeps for
  every asset with a freshness policy.

Each failure alerts once: runs are visited once by the run-status sensors'
own cursors, and the other two keep in their cursors what they reported.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
from collections.abc import Iterator, Sequence

from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetSelection,
    AssetsDefinition,
    DagsterEventType,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunRequest,
    RunsFilter,
    RunStatusSensorContext,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.scheduler.instigation import InstigatorType, TickStatus
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES, DagsterRun

from stedi_assets.operations.alerts import Alert, StediAlerts
from stedi_assets.resources import StediLakehouse, _is_feed_file

FEEDS = ("customer", "accelerometer", "step_trainer")
TRIGGER_TAG = "stedi/trigger"
FEEDS_TAG = "stedi/feeds"
CHANGES_TAG = "stedi/landing_changes"
RUNNING = DefaultSensorStatus.RUNNING


# -- landing sensor ------------------------------------------------------------------


def landing_fingerprints(lakehouse: StediLakehouse) -> dict[str, dict[str, str]]:
    """``{feed: {file name relative to the feed: fingerprint}}`` for the feed files of every feed."""
    found = {}
    for feed in FEEDS:
        feed_uri = lakehouse.feed_uri(feed)
        prefix = feed_uri.rstrip("/") + "/"
        found[feed] = {
            uri[len(prefix):] if uri.startswith(prefix) else uri: fingerprint
            for uri, fingerprint in lakehouse.store_for(feed_uri).fingerprints(feed_uri).items()
            if _is_feed_file(uri)
        }
    return found


def _changes(before: dict[str, str], after: dict[str, str]) -> dict[str, int]:
    return {
        "added": len(after.keys() - before.keys()),
        "changed": sum(1 for name in after.keys() & before.keys() if after[name] != before[name]),
        "removed": len(before.keys() - after.keys()),
    }


def _digest(fingerprints: dict[str, dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(fingerprints, sort_keys=True).encode()).hexdigest()[:16]


def build_landing_sensor(
    landing_assets: dict[str, AssetsDefinition],
    excluded_checks: AssetSelection,
    interval_seconds: int,
    read_only_jobs: frozenset[str] = frozenset(),
) -> SensorDefinition:
    """The sensor that runs a feed's landing table and everything downstream when its files change.

    ``landing_assets`` maps each feed to its landing multi-asset; checks in
    ``excluded_checks`` (the audit checks) are left out of the runs it requests.
    It waits while a run of any other job than ``read_only_jobs`` is in progress.
    """
    selections = {
        feed: AssetSelection.assets(*asset.keys).downstream() - excluded_checks
        for feed, asset in landing_assets.items()
    }
    everything = AssetSelection.assets(*[k for a in landing_assets.values() for k in a.keys]).downstream()

    @sensor(
        name="landing_sensor",
        minimum_interval_seconds=interval_seconds,
        default_status=RUNNING,
        asset_selection=everything - excluded_checks,
        description=(
            "Watches the landing feeds; new, changed or removed files run the feed's landing table "
            "and every table downstream."
        ),
    )
    def landing_sensor(context: SensorEvaluationContext, lakehouse: StediLakehouse):
        previous = json.loads(context.cursor) if context.cursor else None
        current = landing_fingerprints(lakehouse)
        if previous is None:
            # First tick: nothing is known about the tables, so bring every delivered feed in.
            changes = {feed: _changes({}, files) for feed, files in current.items() if files}
        else:
            changes = {
                feed: _changes(previous["feeds"].get(feed, {}), files)
                for feed, files in current.items()
                if files != previous["feeds"].get(feed, {})
            }
        generation = previous["generation"] if previous else 0
        if not changes:
            if previous is None:
                context.update_cursor(json.dumps({"generation": 0, "feeds": current}))
            return SkipReason("no landing file added, changed or removed")

        # One update at a time: a run still reading older files (this sensor's,
        # or a "Materialize all") must not publish after a newer one. The
        # changes stay for a later tick: the cursor does not move.
        in_progress = [
            record.dagster_run
            for record in context.instance.get_run_records(RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES)))
            if record.dagster_run.job_name not in read_only_jobs
        ]
        if in_progress:
            return SkipReason(f"waiting for run {in_progress[0].run_id} to finish")

        asset_graph = context.repository_def.asset_graph
        selection = functools.reduce(operator.or_, (selections[feed] for feed in changes))
        summary = "; ".join(
            f"{feed}: " + ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) for feed, counts in changes.items()
        )
        context.log.info(f"landing changed ({summary}); requesting a run")
        context.update_cursor(json.dumps({"generation": generation + 1, "feeds": current}))
        # The run key names this state of the landing zone and its place in the
        # sequence: a tick retried after a crash never runs it twice, and a later
        # return to an earlier state still runs.
        return RunRequest(
            run_key=f"landing-{generation + 1}-{_digest(current)}",
            asset_selection=sorted(selection.resolve(asset_graph), key=lambda k: k.to_string()),
            asset_check_keys=sorted(selection.resolve_checks(asset_graph), key=lambda k: k.to_user_string()),
            tags={TRIGGER_TAG: "landing_sensor", FEEDS_TAG: ",".join(changes), CHANGES_TAG: summary},
        )

    return landing_sensor


# -- alerts from runs ----------------------------------------------------------------------


def _check_evaluations(instance, run_id: str) -> Iterator[AssetCheckEvaluation]:
    cursor = None
    while True:
        connection = instance.get_records_for_run(
            run_id, cursor=cursor, of_type=DagsterEventType.ASSET_CHECK_EVALUATION, limit=500
        )
        for record in connection.records:
            yield record.event_log_entry.dagster_event.event_specific_data
        if not connection.has_more:
            return
        cursor = connection.cursor


def check_failure_alerts(instance, run: DagsterRun, alerts: StediAlerts) -> list[Alert]:
    """One alert per failed check of the run at or above the minimum severity."""
    found: dict[tuple[str, str], Alert] = {}
    for evaluation in _check_evaluations(instance, run.run_id):
        if evaluation.passed or not alerts.should_alert_check(evaluation.severity):
            continue
        asset = evaluation.asset_key.to_user_string()
        found[(asset, evaluation.check_name)] = Alert(
            subject=f"check failed: {asset} {evaluation.check_name} ({evaluation.severity.value})",
            details={
                "asset": asset,
                "check": evaluation.check_name,
                "severity": evaluation.severity.value,
                "job": run.job_name,
                "run_id": run.run_id,
            },
            link=alerts.run_url(run.run_id),
        )
    return list(found.values())


def run_failure_alert(context: RunFailureSensorContext, alerts: StediAlerts) -> Alert:
    steps = sorted({event.step_key for event in context.get_step_failure_events() if event.step_key})
    error = context.failure_event.event_specific_data
    details = {"job": context.dagster_run.job_name, "run_id": context.dagster_run.run_id}
    if steps:
        details["failed_steps"] = ", ".join(steps)
    error_info = getattr(error, "error", None)
    if error_info is not None:
        # The exception class only: its message could quote a record.
        details["error"] = error_info.cls_name or "error"
    return Alert(
        subject=f"run failed: {context.dagster_run.job_name}",
        details=details,
        link=alerts.run_url(context.dagster_run.run_id),
    )


def build_run_alert_sensors(interval_seconds: int) -> list[SensorDefinition]:
    @run_status_sensor(
        name="check_failure_alert_sensor",
        run_status=DagsterRunStatus.SUCCESS,
        minimum_interval_seconds=interval_seconds,
        default_status=RUNNING,
        description="Alerts on every failed check of a successful run (checks that do not block leave runs green).",
    )
    def check_failure_alert_sensor(context: RunStatusSensorContext, alerts: StediAlerts):
        alerts.send_all(check_failure_alerts(context.instance, context.dagster_run, alerts), context.log)

    @run_failure_sensor(
        name="run_failure_alert_sensor",
        minimum_interval_seconds=interval_seconds,
        default_status=RUNNING,
        description="Alerts on every failed run, and on each failed check in it.",
    )
    def run_failure_alert_sensor(context: RunFailureSensorContext, alerts: StediAlerts):
        found = [run_failure_alert(context, alerts), *check_failure_alerts(context.instance, context.dagster_run, alerts)]
        alerts.send_all(found, context.log)

    return [check_failure_alert_sensor, run_failure_alert_sensor]


# -- alerts from failed sensor ticks -----------------------------------------------------------

_DONE = (TickStatus.SUCCESS, TickStatus.SKIPPED, TickStatus.FAILURE)
_FIRST_LOOK_TICKS = 20


def build_tick_alert_sensor(interval_seconds: int) -> SensorDefinition:
    @sensor(
        name="sensor_tick_alert_sensor",
        minimum_interval_seconds=interval_seconds,
        default_status=RUNNING,
        description="Alerts when another sensor's ticks start failing (once per failure, not per failed tick).",
    )
    def sensor_tick_alert_sensor(context: SensorEvaluationContext, alerts: StediAlerts):
        # Per sensor: the newest tick looked at, and whether it was failing then.
        seen: dict[str, dict] = json.loads(context.cursor) if context.cursor else {}
        watched = {s.name for s in context.repository_def.sensor_defs} - {context.sensor_name}
        states = context.instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
        found: list[Alert] = []
        for state in states:
            name = state.instigator_name
            if name not in watched or state.origin.repository_origin.repository_name != context.repository_def.name:
                continue
            last = seen.get(name, {"timestamp": None, "failing": False})
            ticks = context.instance.get_ticks(
                state.instigator_origin_id, state.selector_id, after=last["timestamp"], statuses=list(_DONE),
                limit=None if last["timestamp"] else _FIRST_LOOK_TICKS,
            )
            for tick in sorted(ticks, key=lambda t: t.timestamp):
                failed = tick.status == TickStatus.FAILURE
                if failed and not last["failing"]:
                    details = {"sensor": name, "tick_id": str(tick.tick_id)}
                    if tick.error is not None:
                        details["error"] = tick.error.cls_name or "error"
                    found.append(
                        Alert(
                            subject=f"sensor tick failed: {name}",
                            details=details,
                            link=alerts.ui_link(f"automation/{name}"),
                        )
                    )
                last = {"timestamp": tick.timestamp, "failing": failed}
            seen[name] = last
        alerts.send_all(found, context.log)
        context.update_cursor(json.dumps(seen))
        return SkipReason(f"{len(found)} sensor failure(s) reported")

    return sensor_tick_alert_sensor


# -- alerts from stale tables ------------------------------------------------------------------


def build_stale_table_alert_sensor(keys: Sequence[AssetKey], interval_seconds: int) -> SensorDefinition:
    """Alerts once each time one of ``keys`` (assets with a freshness policy) turns stale (FAIL)."""

    @sensor(
        name="stale_table_alert_sensor",
        minimum_interval_seconds=interval_seconds,
        default_status=RUNNING,
        description="Alerts when a table with a freshness policy becomes stale (once per transition to FAIL).",
    )
    def stale_table_alert_sensor(context: SensorEvaluationContext, alerts: StediAlerts):
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        records = context.instance.get_freshness_state_records(list(keys))
        found: list[Alert] = []
        for key in keys:
            record = records.get(key)
            if record is None:
                continue
            name = key.to_user_string()
            state = record.freshness_state
            if state == FreshnessState.FAIL and seen.get(name) != FreshnessState.FAIL.value:
                found.append(
                    Alert(
                        subject=f"table stale: {name}",
                        details={"asset": name, "freshness": state.value, "since": record.updated_at.isoformat()},
                        link=alerts.ui_link(f"assets/{'/'.join(key.path)}"),
                    )
                )
            seen[name] = state.value
        alerts.send_all(found, context.log)
        context.update_cursor(json.dumps(seen))
        return SkipReason(f"{len(found)} stale table(s) reported")

    return stale_table_alert_sensor
