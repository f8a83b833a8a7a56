"""Sensors: the landing sensor that keeps the tables up to date, and the alert sensors.

All of them run by default (``default_status=RUNNING``) under ``dagster dev``
or a deployed daemon.

* ``landing_sensor`` asks the lakehouse each tick which tables are out of
  date with the landing zone (``planning.out_of_date``, what ``stedi run``
  would run: files new, changed or removed since the delivery ledger recorded
  them, tables computed from older inputs) and requests one run of them, so a
  delivery reaches ``machine_learning_curated`` in one run (and a consent
  withdrawn in a new customer file leaves every trusted and curated table in
  that same run). It requests each state of the landing zone once. Its runs
  are runs of ``stedi_job`` (a subset of it), tagged with the feeds and the
  changes that started them.
* ``check_failure_alert_sensor`` reads the check evaluations of every run that
  finished (successful, failed or canceled): a failed check that does not
  block leaves the run green, so run failures alone would miss it. It alerts
  when a check goes from passing to failing and when it recovers, not on every
  run it stays failing (``alert_state``).
* ``run_failure_alert_sensor`` alerts on each failed run.
* ``sensor_tick_alert_sensor`` reads the tick history of the other sensors.
* ``stale_table_alert_sensor`` reads the freshness state the daemon keeps for
  every asset with a freshness policy; it alerts when a table turns stale and
  when it is fresh again.

Alerts name the run's job and what started it (``tags.run_origin``), never
Dagster's anonymous ``__ASSET_JOB``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence

from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AssetObservation,
    AssetSelection,
    AssetsDefinition,
    DagsterEventType,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    ResourceParam,
    RunFailureSensorContext,
    RunRequest,
    RunsFilter,
    RunStatusChangeRecordsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from stedi_assets.orchestration.alert_state import Conditions
from stedi_assets.orchestration.feeds import DATA_VERSION_TAG, USER_PROVIDED_TAG, feed_key
from stedi_assets.orchestration.alerts import Alert, StediAlerts
from stedi_assets.orchestration.tags import CHANGES_TAG, FEEDS_TAG, TRIGGER_TAG, run_origin
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.lakehouse.planning import out_of_date
from stedi_assets.orchestration.assets import ZONE_UPSTREAM
from stedi_assets.orchestration.masking import mask_emails

__all__ = ["CHANGES_TAG", "FEEDS_TAG", "TRIGGER_TAG"]

FEEDS = ("customer", "accelerometer", "step_trainer")
RUNNING = DefaultSensorStatus.RUNNING

# A run that has started and not finished: Dagster's IN_PROGRESS_RUN_STATUSES,
# which it does not export (test_dagster_internals holds the two equal).
IN_PROGRESS_RUN_STATUSES = (
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
    DagsterRunStatus.SUSPENDED,
)


# -- landing sensor ------------------------------------------------------------------


def build_landing_sensor(
    landing_assets: dict[str, AssetsDefinition],
    excluded_checks: AssetSelection,
    interval_seconds: int,
    job,
    read_only_jobs: frozenset[str] = frozenset(),
) -> SensorDefinition:
    """The sensor that keeps the tables up to date with the landing zone (``landing_assets``: each feed's
    landing multi-asset, for the definitions to name what it watches).

    Each tick asks the lakehouse which tables are out of date
    (``planning.out_of_date``: the answer ``stedi run`` acts on, from the
    delivery ledger and the tables' snapshots) and requests one run of them,
    once for each state of the landing zone: a run that leaves them out of
    date (a rejected delivery, a held-back table) is not requested again until
    the landing zone changes. Checks in ``excluded_checks`` (the audit checks)
    are left out. Its runs are subsets of ``job`` (which must select all of
    that), so they are listed on the job's page under its name. It waits while
    a run of any other job than ``read_only_jobs`` is in progress.
    """
    @sensor(
        name="landing_sensor",
        minimum_interval_seconds=interval_seconds,
        default_status=RUNNING,
        job=job,
        description=(
            "Watches the landing feeds; runs the tables that are out of date with them (as `stedi run` "
            "would): a feed's landing table and every table downstream after new, changed or removed files."
        ),
    )
    def landing_sensor(context: SensorEvaluationContext, lakehouse: ResourceParam[Lakehouse]):
        previous = json.loads(context.cursor) if context.cursor else {}
        generation = previous.get("generation", 0)
        stale = out_of_date(lakehouse, ZONE_UPSTREAM)
        # A feed whose files changed since this sensor last looked is observed: its new data version
        # makes its landing table stale in the UI at once, before the run that ingests it.
        observed = previous.get("observed", {})
        versions = stale.feed_versions()
        events = [
            AssetObservation(asset_key=feed_key(feed), tags={DATA_VERSION_TAG: version, USER_PROVIDED_TAG: "true"})
            for feed, version in sorted(versions.items()) if observed.get(feed) != version
        ]
        cursor = {"generation": generation, "requested": previous.get("requested"), "observed": {**observed, **versions}}

        def outcome(result: SkipReason | RunRequest) -> SensorResult:
            context.update_cursor(json.dumps(cursor))
            if isinstance(result, SkipReason):
                return SensorResult(skip_reason=result, asset_events=events)
            return SensorResult(run_requests=[result], asset_events=events)

        if not stale.tables:
            cursor["requested"] = None
            return outcome(SkipReason("every table is up to date with the landing zone"))
        state = stale.digest()
        if state == previous.get("requested"):
            return outcome(SkipReason(
                "the out-of-date tables were run for this state of the landing zone already; "
                "waiting for a landing file to be added, changed or removed"
            ))

        # One update at a time: a run still reading older files (this sensor's,
        # or a "Materialize all") must not publish after a newer one. The
        # changes stay for a later tick: the requested state does not move.
        in_progress = [
            record.dagster_run
            for record in context.instance.get_run_records(RunsFilter(statuses=list(IN_PROGRESS_RUN_STATUSES)))
            if record.dagster_run.job_name not in read_only_jobs
        ]
        if in_progress:
            return outcome(SkipReason(f"waiting for run {in_progress[0].run_id} to finish"))

        asset_graph = context.repository_def.asset_graph
        # The run observes the feeds it ingests first: each landing step records the version it read.
        feeds = [feed_key(feed) for feed in stale.feeds]
        selection = AssetSelection.assets(*sorted(stale.tables), *feeds) - excluded_checks
        summary = "; ".join(
            f"{feed}: {stale.reasons[f'{feed}_landing']}" for feed in stale.feeds if f"{feed}_landing" in stale.reasons
        ) or "; ".join(f"{table}: {reason}" for table, reason in sorted(stale.reasons.items()))
        context.log.info(mask_emails(f"out of date ({summary}); requesting a run"))
        cursor.update(generation=generation + 1, requested=state)
        # The run key names this state and its place in the sequence: a tick
        # retried after a crash never runs it twice, and a later return to an
        # earlier state still runs.
        return outcome(RunRequest(
            run_key=f"landing-{generation + 1}-{state}",
            asset_selection=sorted(selection.resolve(asset_graph), key=lambda k: k.to_string()),
            asset_check_keys=sorted(selection.resolve_checks(asset_graph), key=lambda k: k.to_user_string()),
            tags={TRIGGER_TAG: "landing_sensor", FEEDS_TAG: ",".join(stale.feeds), CHANGES_TAG: mask_emails(summary)},
        ))

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


def _check_name(asset: str, check: str) -> str:
    return f"{asset} {check}"


def check_alerts(instance, run: DagsterRun, alerts: StediAlerts, conditions: Conditions, now: float) -> list[Alert]:
    """The alerts of the run's check evaluations: a check that turns failing (at or above the minimum
    severity) or recovers from an alerted failure; ``conditions`` are updated."""
    found = []
    origin = run_origin(run.job_name, run.tags)
    for evaluation in _check_evaluations(instance, run.run_id):
        asset = evaluation.asset_key.to_user_string()
        name = _check_name(asset, evaluation.check_name)
        failing = not evaluation.passed
        if failing and not alerts.should_alert_check(evaluation.severity):
            # Below the minimum: not watched, so it never alerts nor recovers.
            conditions.items.pop(name, None)
            continue
        change = conditions.observe(name, failing, now)
        if change is None:
            continue
        what = f"{asset} {evaluation.check_name} ({evaluation.severity.value})"
        details = {
            "asset": asset, "check": evaluation.check_name, "severity": evaluation.severity.value,
            **origin, "run_id": run.run_id,
        }
        alert = Alert(
            subject=f"check failed: {what}" if change == "failed" else f"recovered: check passed: {what}",
            details=details,
            link=alerts.run_url(run.run_id),
        )
        if change == "failed":
            conditions.alerted(name, now, alert.subject, details, alert.link)
        found.append(alert)
    return found


def reminders(conditions: Conditions, alerts: StediAlerts, now: float) -> list[Alert]:
    """A reminder of each alerted failure still failing ``remind_hours`` after its last alert."""
    found = []
    for name in conditions.due_reminders(now, alerts.remind_hours):
        condition = conditions.items[name]
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(condition.since))
        alert = Alert(
            subject=f"still failing: {condition.subject}", details={**condition.details, "since": since},
            link=condition.link,
        )
        condition.alerted_at = now
        found.append(alert)
    return found


_FINISHED = (DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE, DagsterEventType.RUN_CANCELED)
_RUNS_PER_TICK = 50


def _finished_runs_after(instance, storage_id: int) -> tuple[list[str], int]:
    """The runs that finished after ``storage_id`` in the order they finished (at most a tick's worth each
    kind), and the storage id to continue from."""
    records, bound = [], None
    for event_type in _FINISHED:
        page = instance.fetch_run_status_changes(
            RunStatusChangeRecordsFilter(event_type, after_storage_id=storage_id), limit=_RUNS_PER_TICK, ascending=True
        ).records
        records += page
        if len(page) == _RUNS_PER_TICK:
            # More of this kind wait: do not go past its last one, or they would be skipped.
            bound = min(bound, page[-1].storage_id) if bound is not None else page[-1].storage_id
    records = sorted((r for r in records if bound is None or r.storage_id <= bound), key=lambda r: r.storage_id)
    last = records[-1].storage_id if records else storage_id
    return [r.event_log_entry.run_id for r in records], last


def _latest_finished(instance) -> int:
    ids = [
        page[0].storage_id
        for event_type in _FINISHED
        if (page := instance.fetch_run_status_changes(event_type, limit=1, ascending=False).records)
    ]
    return max(ids, default=0)


def run_failure_alert(context: RunFailureSensorContext, alerts: StediAlerts) -> Alert:
    run = context.dagster_run
    origin = run_origin(run.job_name, run.tags)
    steps = sorted({event.step_key for event in context.get_step_failure_events() if event.step_key})
    error = context.failure_event.event_specific_data
    details = {**origin, "run_id": run.run_id}
    if steps:
        details["failed_steps"] = ", ".join(steps)
    error_info = getattr(error, "error", None)
    if error_info is not None:
        # The exception class only: its message could quote a record.
        details["error"] = error_info.cls_name or "error"
    return Alert(
        subject=f"run failed: {origin['job']} ({origin['trigger']})",
        details=details,
        link=alerts.run_url(run.run_id),
    )


def build_run_alert_sensors(interval_seconds: int) -> list[SensorDefinition]:
    @sensor(
        name="check_failure_alert_sensor",
        minimum_interval_seconds=interval_seconds,
        default_status=RUNNING,
        description=(
            "Alerts when a check starts failing in a finished run (checks that do not block leave runs green), "
            "and when it passes again; not while it stays failing (STEDI_ALERT_REMIND_HOURS for reminders)."
        ),
    )
    def check_failure_alert_sensor(context: SensorEvaluationContext, alerts: StediAlerts):
        saved = json.loads(context.cursor) if context.cursor else None
        if saved is None:
            # First tick: runs that finished before the sensor existed are history, not news.
            context.update_cursor(json.dumps({"after": _latest_finished(context.instance), "checks": {}}))
            return SkipReason("watching the runs that finish from now on")
        conditions = Conditions(saved["checks"])
        now = time.time()
        run_ids, after = _finished_runs_after(context.instance, saved["after"])
        found = []
        for run_id in run_ids:
            run = context.instance.get_run_by_id(run_id)
            if run is not None:
                found += check_alerts(context.instance, run, alerts, conditions, now)
        found += reminders(conditions, alerts, now)
        alerts.send_all(found, context.log)
        # Saved whether or not delivery worked: a dead channel must not make every later tick resend
        # (and spend its time limit); failed deliveries are in the log.
        context.update_cursor(json.dumps({"after": after, "checks": conditions.to_json()}))
        return SkipReason(f"{len(run_ids)} finished run(s) read, {len(found)} alert(s)")

    @run_failure_sensor(
        name="run_failure_alert_sensor",
        minimum_interval_seconds=interval_seconds,
        default_status=RUNNING,
        description="Alerts on every failed run (its failed checks are check_failure_alert_sensor's).",
    )
    def run_failure_alert_sensor(context: RunFailureSensorContext, alerts: StediAlerts):
        alerts.send_all([run_failure_alert(context, alerts)], context.log)

    return [check_failure_alert_sensor, run_failure_alert_sensor]


# -- alerts from failed sensor ticks -----------------------------------------------------------

# The instance's instigator, tick and freshness records carry enums Dagster
# does not export; the sensors compare their string values, which
# test_dagster_internals holds equal to Dagster's.
SENSOR = "SENSOR"
"""The instigator type of a sensor (InstigatorType.SENSOR's value)."""
DONE_TICKS = frozenset({"SUCCESS", "SKIPPED", "FAILURE"})
"""The outcomes of a finished tick (TickStatus values)."""
FAILURE = "FAILURE"
FRESHNESS_FAIL, FRESHNESS_UNKNOWN = "FAIL", "UNKNOWN"
"""FreshnessState values."""
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
        states = [state for state in context.instance.all_instigator_state() if state.instigator_type.value == SENSOR]
        found: list[Alert] = []
        for state in states:
            name = state.instigator_name
            if name not in watched or state.origin.repository_origin.repository_name != context.repository_def.name:
                continue
            last = seen.get(name, {"timestamp": None, "failing": False})
            ticks = context.instance.get_ticks(
                state.instigator_origin_id, state.selector_id, after=last["timestamp"],
                limit=None if last["timestamp"] else _FIRST_LOOK_TICKS,
            )
            done = [tick for tick in ticks if tick.status.value in DONE_TICKS]
            for tick in sorted(done, key=lambda t: t.timestamp):
                failed = tick.status.value == FAILURE
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


def _freshness_conditions(saved: dict | None, now: float) -> Conditions:
    if saved is None:
        return Conditions()
    if "tables" in saved:
        return Conditions(saved["tables"])
    # A cursor of an earlier version, {table: state}: a FAIL in it was alerted then.
    conditions = Conditions()
    for name, state in saved.items():
        conditions.observe(name, state == FRESHNESS_FAIL, now)
        if state == FRESHNESS_FAIL:
            conditions.alerted(name, now, f"table stale: {name}", {"asset": name}, None)
    return conditions


def build_stale_table_alert_sensor(keys: Sequence[AssetKey], interval_seconds: int) -> SensorDefinition:
    """Alerts when one of ``keys`` (assets with a freshness policy) turns stale (FAIL) and when it is fresh again."""

    @sensor(
        name="stale_table_alert_sensor",
        minimum_interval_seconds=interval_seconds,
        default_status=RUNNING,
        description=(
            "Alerts when a table with a freshness policy becomes stale (FAIL) and when it is fresh again; "
            "not while it stays stale (STEDI_ALERT_REMIND_HOURS for reminders)."
        ),
    )
    def stale_table_alert_sensor(context: SensorEvaluationContext, alerts: StediAlerts):
        now = time.time()
        conditions = _freshness_conditions(json.loads(context.cursor) if context.cursor else None, now)
        records = context.instance.get_freshness_state_records(list(keys))
        found: list[Alert] = []
        for key in keys:
            record = records.get(key)
            # UNKNOWN (never materialized, no policy) says nothing either way.
            if record is None or record.freshness_state.value == FRESHNESS_UNKNOWN:
                continue
            name = key.to_user_string()
            state = record.freshness_state
            change = conditions.observe(name, state.value == FRESHNESS_FAIL, now)
            if change is None:
                continue
            details = {"asset": name, "freshness": state.value, "since": record.updated_at.isoformat()}
            link = alerts.ui_link(f"assets/{'/'.join(key.path)}")
            subject = f"table stale: {name}" if change == "failed" else f"recovered: table no longer stale: {name}"
            if change == "failed":
                conditions.alerted(name, now, subject, details, link)
            found.append(Alert(subject=subject, details=details, link=link))
        found += reminders(conditions, alerts, now)
        alerts.send_all(found, context.log)
        context.update_cursor(json.dumps({"tables": conditions.to_json()}))
        return SkipReason(f"{len(found)} freshness alert(s)")

    return stale_table_alert_sensor
