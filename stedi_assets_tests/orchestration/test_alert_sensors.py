"""The alert sensors that watch the instance: failed sensor ticks and stale tables.

Ticks and freshness states are recorded in a persistent Dagster instance in
tmp_path the way the daemon records them; the sensors are evaluated tick by
tick with their cursors and deliver to a real webhook on loopback. The daemon
itself is covered by test_daemon.py.
"""

from __future__ import annotations

import json
import time

import pytest
from dagster import AssetKey, DagsterInstance, build_sensor_context
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteInstigatorOrigin, RemoteRepositoryOrigin
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    TickData,
    TickStatus,
)
from dagster._utils.error import SerializableErrorInfo

from stedi_assets.definitions import build_definitions
from stedi_assets.orchestration.alerts import StediAlerts

UI = "http://ui.example.internal"


class Harness:
    def __init__(self, name: str, instance: DagsterInstance, webhook_url: str):
        self.defs = build_definitions()
        self.name = name
        self.sensor = self.defs.resolve_sensor_def(name)
        self.instance = instance
        self.resources = {**self.defs.resources, "alerts": StediAlerts(webhook_url=webhook_url, ui_url=UI)}
        self.cursor: str | None = None

    def tick(self):
        with build_sensor_context(
            instance=self.instance, cursor=self.cursor, definitions=self.defs, sensor_name=self.name,
            resources=self.resources,
        ) as context:
            result = self.sensor(context)
            self.cursor = context.cursor
        return result


# -- failed sensor ticks -------------------------------------------------------------------------


class LandingSensorTicks:
    """Ticks of landing_sensor, recorded as the daemon records them."""

    def __init__(self, instance: DagsterInstance, repository_name: str):
        origin = RemoteInstigatorOrigin(
            RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("stedi_assets"), repository_name), "landing_sensor"
        )
        self.state = instance.add_instigator_state(
            InstigatorState(origin, InstigatorType.SENSOR, InstigatorStatus.DECLARED_IN_CODE)
        )
        self.instance = instance

    def record(self, status: TickStatus) -> None:
        error = None
        if status == TickStatus.FAILURE:
            error = SerializableErrorInfo("s3://landing: cannot connect", [], "StorageError")
        self.instance.create_tick(
            TickData(
                instigator_origin_id=self.state.instigator_origin_id,
                instigator_name="landing_sensor",
                instigator_type=InstigatorType.SENSOR,
                status=status,
                timestamp=time.time(),
                selector_id=self.state.selector_id,
                error=error,
                skip_reason="no change" if status == TickStatus.SKIPPED else None,
            )
        )
        time.sleep(0.01)


def test_a_failing_sensor_alerts_once_per_failure_not_per_failed_tick(instance, webhook):
    harness = Harness("sensor_tick_alert_sensor", instance, webhook.url)
    ticks = LandingSensorTicks(instance, harness.defs.get_repository_def().name)
    ticks.record(TickStatus.SKIPPED)
    harness.tick()
    assert webhook.texts == []

    ticks.record(TickStatus.FAILURE)
    ticks.record(TickStatus.FAILURE)
    harness.tick()
    ticks.record(TickStatus.FAILURE)
    harness.tick()
    [text] = webhook.texts
    assert text.startswith("[STEDI] sensor tick failed: landing_sensor")
    # The error's class, never its message (which could name data).
    assert "error: StorageError" in text and "cannot connect" not in text
    assert f"link: {UI}/automation/landing_sensor" in text

    # Recovered, then failing again: a new failure, a new alert.
    ticks.record(TickStatus.SKIPPED)
    ticks.record(TickStatus.FAILURE)
    harness.tick()
    harness.tick()
    assert len(webhook.texts) == 2


def test_the_tick_alert_sensor_does_not_watch_itself_or_other_code_locations(instance, webhook):
    harness = Harness("sensor_tick_alert_sensor", instance, webhook.url)
    LandingSensorTicks(instance, "another_repository").record(TickStatus.FAILURE)
    harness.tick()
    assert webhook.texts == []


# -- stale tables ----------------------------------------------------------------------------------


def record_freshness(instance: DagsterInstance, table: str, previous: FreshnessState, new: FreshnessState) -> None:
    # What the daemon's freshness evaluation reports on a change of state.
    instance._report_runless_asset_event(  # noqa: SLF001
        FreshnessStateChange(
            key=AssetKey(table), previous_state=previous, new_state=new, state_change_timestamp=time.time()
        )
    )


def test_a_stale_table_alerts_once_when_it_turns_stale_and_once_when_it_recovers(instance, webhook):
    harness = Harness("stale_table_alert_sensor", instance, webhook.url)
    record_freshness(instance, "machine_learning_curated", FreshnessState.UNKNOWN, FreshnessState.PASS)
    harness.tick()
    record_freshness(instance, "machine_learning_curated", FreshnessState.PASS, FreshnessState.WARN)
    harness.tick()
    assert webhook.texts == []

    record_freshness(instance, "machine_learning_curated", FreshnessState.WARN, FreshnessState.FAIL)
    harness.tick()
    harness.tick()
    [text] = webhook.texts
    assert text.startswith("[STEDI] table stale: machine_learning_curated")
    assert f"link: {UI}/assets/machine_learning_curated" in text

    # Fresh again: one "recovered" alert, then nothing while it stays fresh.
    record_freshness(instance, "machine_learning_curated", FreshnessState.FAIL, FreshnessState.PASS)
    harness.tick()
    harness.tick()
    assert len(webhook.texts) == 2
    assert webhook.texts[1].startswith("[STEDI] recovered: table no longer stale: machine_learning_curated")
    record_freshness(instance, "machine_learning_curated", FreshnessState.PASS, FreshnessState.FAIL)
    record_freshness(instance, "customer_curated", FreshnessState.PASS, FreshnessState.FAIL)
    harness.tick()
    assert len(webhook.texts) == 4
    assert any("table stale: customer_curated" in t for t in webhook.texts)


def test_a_stale_table_is_reminded_every_remind_hours_and_an_older_cursor_is_read(instance, webhook):
    harness = Harness("stale_table_alert_sensor", instance, webhook.url)
    harness.resources["alerts"] = StediAlerts(webhook_url=webhook.url, ui_url=UI, remind_hours=3)
    record_freshness(instance, "machine_learning_curated", FreshnessState.PASS, FreshnessState.FAIL)
    # The cursor of the sensor's earlier version, {table: state}, whose FAIL was alerted then.
    harness.cursor = json.dumps({"machine_learning_curated": "FAIL"})
    harness.tick()
    assert webhook.texts == []
    state = json.loads(harness.cursor)
    state["tables"]["machine_learning_curated"]["alerted_at"] -= 3 * 3600
    harness.cursor = json.dumps(state)
    harness.tick()
    harness.tick()
    [reminder] = webhook.texts
    assert reminder.startswith("[STEDI] still failing: table stale: machine_learning_curated")
