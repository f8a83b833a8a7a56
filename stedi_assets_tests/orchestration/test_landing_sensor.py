"""The landing sensor: which changes of the landing zone request which runs, locally and on S3.

The sensor is evaluated directly against a persistent Dagster instance in
tmp_path, with the code location assembled by build_definitions() from the
STEDI_* variables; the runs it requests are executed in process as subsets of
stedi_job, with their tags (and an alert of such a run names its job and trigger). The daemon
driving it on its own is covered by test_daemon.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import boto3
import narwhals as nw
import pytest
from dagster import (
    AssetObservation,
    DagsterInstance,
    DagsterRunStatus,
    RunRequest,
    SensorResult,
    SkipReason,
    build_sensor_context,
)

from stedi_assets.definitions import build_definitions
from stedi_assets.orchestration.alerts import StediAlerts
from stedi_assets.orchestration.sensors import CHANGES_TAG, FEEDS_TAG, TRIGGER_TAG
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.domain.schemas import RESEARCH_CONSENT
from stedi_assets.domain.simulate import simulate_landing, write_landing
from stedi_assets.lakehouse.planning import out_of_date
from stedi_assets.orchestration.assets import ZONE_UPSTREAM
from stedi_assets_tests.orchestration.conftest import CheckAlerts, publish_tables

LANDING_OUTPUTS = {
    "customer": {"customer_feed", "customer_landing", "customer_quarantine"},
    "accelerometer": {"accelerometer_feed", "accelerometer_landing", "accelerometer_quarantine"},
    "step_trainer": {"step_trainer_feed", "step_trainer_landing", "step_trainer_quarantine"},
}
TRUSTED_AND_CURATED = {
    "customer_trusted", "accelerometer_trusted", "customer_curated", "step_trainer_trusted", "machine_learning_curated",
}


class SensorHarness:
    """Evaluates the landing sensor tick by tick, carrying its cursor as the daemon does."""

    def __init__(self, instance: DagsterInstance):
        self.defs = build_definitions()
        self.sensor = self.defs.resolve_sensor_def("landing_sensor")
        self.instance = instance
        self.cursor: str | None = None
        self.observed: list[AssetObservation] = []
        """The feed observations of the last tick."""

    def tick(self) -> RunRequest | SkipReason:
        """The tick's run request or skip reason; its observations of the feeds are recorded on the
        instance, as the daemon records them."""
        with build_sensor_context(
            instance=self.instance, cursor=self.cursor, definitions=self.defs, sensor_name="landing_sensor",
            resources=self.defs.resources,
        ) as context:
            result = self.sensor(context)
            self.cursor = context.cursor
        assert isinstance(result, SensorResult)
        self.observed = list(result.asset_events)
        for observation in self.observed:
            self.instance.report_runless_asset_event(observation)
        [outcome] = [*(result.run_requests or []), *([result.skip_reason] if result.skip_reason else [])]
        return outcome

    def execute(self, request: RunRequest):
        """Run what the request selects, in process, as the daemon's launched run would."""
        # The sensor's runs are subsets of stedi_job, as the daemon launches them.
        job = self.defs.resolve_job_def(self.sensor.job_name).get_subset(
            asset_selection=set(request.asset_selection), asset_check_selection=set(request.asset_check_keys)
        )
        return job.execute_in_process(instance=self.instance, tags=request.tags, raise_on_error=False)


def names(keys) -> set[str]:
    return {key.path[-1] for key in keys}


@pytest.fixture
def local_landing(tmp_path: Path, monkeypatch) -> Path:
    landing = tmp_path / "landing"
    write_landing(landing, simulate_landing())
    monkeypatch.setenv("STEDI_LANDING_URI", str(landing))
    monkeypatch.setenv("STEDI_LAKEHOUSE_URI", str(tmp_path / "lakehouse"))
    return landing


def test_first_tick_runs_every_delivered_feed_and_an_unchanged_zone_runs_nothing(local_landing, instance, webhook):
    harness = SensorHarness(instance)
    check_alerts = CheckAlerts(instance, StediAlerts(webhook_url=webhook.url))
    request = harness.tick()
    assert isinstance(request, RunRequest)
    assert names(request.asset_selection) == set().union(*LANDING_OUTPUTS.values()) | TRUSTED_AND_CURATED
    # In-step checks of every selected table; the audit checks are left to their own job.
    checks = {(k.asset_key.path[-1], k.name) for k in request.asset_check_keys}
    assert ("machine_learning_curated", "no_personal_identifiers") in checks
    assert not [name for _, name in checks if name.startswith("audit_")]
    assert request.tags[TRIGGER_TAG] == "landing_sensor"
    assert request.tags[FEEDS_TAG] == "customer,accelerometer,step_trainer"
    assert request.tags[CHANGES_TAG] == (
        "customer: not published yet; accelerometer: not published yet; step_trainer: not published yet"
    )
    # A run of stedi_job, listed on its page, not of Dagster's anonymous __ASSET_JOB.
    assert harness.sensor.job_name == "stedi_job"
    result = harness.execute(request)
    assert result.success
    assert instance.get_run_by_id(result.run_id).job_name == "stedi_job"
    # The alert of its failed WARN check (cross_customer_pairs, by design) names the job and the trigger.
    check_alerts.tick()
    [text] = webhook.texts
    assert "job: stedi_job" in text and "trigger: landing_sensor" in text

    assert isinstance(harness.tick(), SkipReason)
    assert isinstance(harness.tick(), SkipReason)


def test_a_new_file_runs_its_feed_and_everything_downstream_only(local_landing, instance):
    harness = SensorHarness(instance)
    assert harness.execute(harness.tick()).success
    source = next((local_landing / "accelerometer").iterdir())
    (local_landing / "accelerometer" / "accelerometer-extra.json").write_bytes(source.read_bytes()[:2000].rsplit(b"\n", 1)[0] + b"\n")

    request = harness.tick()
    assert isinstance(request, RunRequest)
    assert names(request.asset_selection) == LANDING_OUTPUTS["accelerometer"] | {
        "accelerometer_trusted", "customer_curated", "step_trainer_trusted", "machine_learning_curated",
    }
    assert request.tags["stedi/landing_changes"] == "accelerometer: 1 new landing file(s)"
    assert harness.execute(request).success
    assert isinstance(harness.tick(), SkipReason)


def test_a_changed_and_a_removed_file_each_trigger_a_run(local_landing, instance):
    harness = SensorHarness(instance)
    assert harness.execute(harness.tick()).success
    customer = next((local_landing / "customer").iterdir())
    content = customer.read_bytes()
    # Same size, rewritten at once: only the nanosecond mtime tells them apart.
    customer.write_bytes(content.replace(b"@", b"@", 1))
    os.utime(customer, ns=(time.time_ns(), customer.stat().st_mtime_ns + 1))
    changed = harness.tick()
    assert isinstance(changed, RunRequest) and changed.tags["stedi/landing_changes"] == "customer: 1 changed landing file(s)"
    assert harness.execute(changed).success

    removed_file = sorted((local_landing / "accelerometer").iterdir())[0]
    removed_file.unlink()
    removed = harness.tick()
    assert isinstance(removed, RunRequest) and removed.tags["stedi/landing_changes"] == "accelerometer: 1 removed landing file(s)"
    assert "customer_landing" not in names(removed.asset_selection)


def test_files_that_are_not_feed_files_are_ignored(local_landing, instance):
    harness = SensorHarness(instance)
    assert harness.execute(harness.tick()).success
    (local_landing / "customer" / ".customer-new.json.tmp").write_text("{}\n")
    (local_landing / "customer" / "_SUCCESS").write_text("")
    (local_landing / "customer" / "notes.txt").write_text("")
    assert isinstance(harness.tick(), SkipReason)


def test_the_sensor_runs_exactly_what_stedi_run_would(local_landing, instance, tmp_path):
    """One answer to "what changed": the sensor's selection is the tables planning.out_of_date names,
    which `stedi run` materializes, whatever changed (a landing file, a table published from elsewhere)."""
    harness = SensorHarness(instance)
    assert harness.execute(harness.tick()).success
    lakehouse = Lakehouse(landing_uri=str(local_landing), lakehouse_uri=str(tmp_path / "lakehouse"))
    assert not out_of_date(lakehouse, ZONE_UPSTREAM).tables
    source = next((local_landing / "step_trainer").iterdir())
    (local_landing / "step_trainer" / "step_trainer-extra.json").write_bytes(source.read_bytes()[:3000].rsplit(b"\n", 1)[0] + b"\n")
    # customer_curated published again from elsewhere: the tables computed from it are out of date too.
    frame = lakehouse.read_table(["customer_curated"]).collect().lazy()
    publish_tables(lakehouse, {"customer_curated": frame})

    stale = out_of_date(lakehouse, ZONE_UPSTREAM)
    request = harness.tick()
    # And the feed it ingests, observed first.
    assert names(request.asset_selection) == set(stale.tables) | {"step_trainer_feed"}
    assert set(stale.tables) == LANDING_OUTPUTS["step_trainer"] - {"step_trainer_feed"} | {
        "customer_curated", "step_trainer_trusted", "machine_learning_curated",
    }
    assert harness.execute(request).success
    assert not out_of_date(lakehouse, ZONE_UPSTREAM).tables
    assert isinstance(harness.tick(), SkipReason)


def test_a_rejected_delivery_is_run_once_and_its_removal_runs_again(local_landing, instance, tmp_path):
    """A delivery the landing step rejects leaves its feed out of date; the sensor does not request the
    same run every tick, and removing the file runs the feed again, which then recovers."""
    harness = SensorHarness(instance)
    assert harness.execute(harness.tick()).success
    bad = local_landing / "step_trainer" / "step_trainer-bad.json"
    bad.write_text("".join(f"not a reading {n}\n" for n in range(400)))
    rejected = harness.tick()
    assert isinstance(rejected, RunRequest)
    result = harness.execute(rejected)
    assert "step_trainer_landing" not in names(e.asset_key for e in result.get_asset_materialization_events())
    lakehouse = Lakehouse(landing_uri=str(local_landing), lakehouse_uri=str(tmp_path / "lakehouse"))
    assert "step_trainer_landing" in out_of_date(lakehouse, ZONE_UPSTREAM).tables
    for _ in range(2):
        waiting = harness.tick()
        assert isinstance(waiting, SkipReason) and "already" in waiting.skip_message

    bad.unlink()
    recovery = harness.tick()
    assert isinstance(recovery, RunRequest) and "1 rejected file(s) gone" in recovery.tags[CHANGES_TAG]
    assert harness.execute(recovery).success
    assert not out_of_date(lakehouse, ZONE_UPSTREAM).tables
    assert isinstance(harness.tick(), SkipReason)


def test_run_keys_never_repeat_along_the_sequence_but_a_retried_tick_reuses_its_key(local_landing, instance):
    harness = SensorHarness(instance)
    first = harness.tick()
    extra = local_landing / "customer" / "customer-extra.json"
    extra.write_bytes(next((local_landing / "customer").iterdir()).read_bytes())
    cursor_before = harness.cursor
    added = harness.tick()
    # The same tick again (a daemon that crashed before saving the cursor): same key, so Dagster runs it once.
    harness.cursor = cursor_before
    assert harness.tick().run_key == added.run_key
    extra.unlink()
    back = harness.tick()
    # Back to the first state of the landing zone: a new run all the same.
    assert len({first.run_key, added.run_key, back.run_key}) == 3


def test_no_new_run_while_the_previous_one_is_in_progress(local_landing, instance):
    harness = SensorHarness(instance)
    first = harness.tick()
    in_progress = instance.create_run_for_job(
        harness.defs.resolve_implicit_global_asset_job_def(), tags=first.tags, status=DagsterRunStatus.STARTED
    )
    (local_landing / "customer" / "customer-extra.json").write_bytes(b"")
    waiting = harness.tick()
    assert isinstance(waiting, SkipReason) and in_progress.run_id in waiting.skip_message
    instance.report_run_failed(in_progress)
    # The change was kept for the next tick.
    assert isinstance(harness.tick(), RunRequest)


def test_a_materialize_all_in_progress_holds_the_sensor_back_but_an_audit_does_not(local_landing, instance):
    harness = SensorHarness(instance)
    harness.tick()
    materialize_all = instance.create_run_for_job(
        harness.defs.resolve_job_def("stedi_job"), status=DagsterRunStatus.STARTED
    )
    instance.create_run_for_job(harness.defs.resolve_job_def("stedi_audit_job"), status=DagsterRunStatus.STARTED)
    (local_landing / "customer" / "customer-extra.json").write_bytes(b"")
    waiting = harness.tick()
    assert isinstance(waiting, SkipReason) and materialize_all.run_id in waiting.skip_message
    instance.report_run_failed(materialize_all)
    assert isinstance(harness.tick(), RunRequest)


def test_a_withdrawal_in_a_new_customer_file_leaves_every_trusted_and_curated_table_in_one_run(
    local_landing, instance, tmp_path
):
    harness = SensorHarness(instance)
    assert harness.execute(harness.tick()).success
    lakehouse = Lakehouse(landing_uri=str(local_landing), lakehouse_uri=str(tmp_path / "lakehouse"))
    ml_devices = lakehouse.read_table(["machine_learning_curated"]).select("serialNumber")
    # A customer with readings on both devices, so every table holds their data.
    customer = (
        lakehouse.read_table(["customer_curated"])
        .join(ml_devices.unique(), on="serialNumber", how="semi")
        .head(1)
        .collect()
        .to_native()
        .to_dicts()[0]
    )
    withdrawal = {**customer, RESEARCH_CONSENT: None, "lastUpdateDate": customer["lastUpdateDate"] + 1}
    (local_landing / "customer" / "customer-withdrawal.json").write_text(json.dumps(withdrawal) + "\n")

    request = harness.tick()
    assert isinstance(request, RunRequest)
    result = harness.execute(request)
    assert result.success
    email, serial = customer["email"], customer["serialNumber"]

    def rows(table: str, column: str, value: str) -> int:
        frame = lakehouse.read_table([table])
        return int(frame.filter(nw.col(column) == value).select(nw.len()).collect().item())

    assert rows("customer_trusted", "email", email) == 0
    assert rows("customer_curated", "email", email) == 0
    assert rows("accelerometer_trusted", "user", email) == 0
    assert rows("step_trainer_trusted", "serialNumber", serial) == 0
    assert rows("machine_learning_curated", "serialNumber", serial) == 0
    assert names(e.asset_key for e in result.get_asset_materialization_events()) >= TRUSTED_AND_CURATED


@pytest.mark.s3
def test_s3_new_changed_and_removed_objects(moto_server, monkeypatch, instance):
    for variable, value in {
        "AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1", "STEDI_LANDING_URI": "s3://sensor-landing/landing",
        "STEDI_LAKEHOUSE_URI": "s3://sensor-landing/lakehouse",
    }.items():
        monkeypatch.setenv(variable, value)
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="sensor-landing")
    files = simulate_landing()
    for relative, content in files.items():
        s3.put_object(Bucket="sensor-landing", Key=f"landing/{relative}", Body=content)

    harness = SensorHarness(instance)
    first = harness.tick()
    assert names(first.asset_selection) >= set().union(*LANDING_OUTPUTS.values())
    assert isinstance(harness.tick(), SkipReason)
    assert harness.execute(first).success
    assert isinstance(harness.tick(), SkipReason)
    # Two writes of one key within the same second: the ETag tells them apart where a timestamp would not.
    key = f"landing/{next(r for r in files if r.startswith('customer/'))}"
    s3.put_object(Bucket="sensor-landing", Key=key, Body=b'{"email": "a"}\n')
    assert harness.tick().tags["stedi/landing_changes"] == "customer: 1 changed landing file(s)"
    s3.put_object(Bucket="sensor-landing", Key=key, Body=b'{"email": "b"}\n')
    assert harness.tick().tags["stedi/landing_changes"] == "customer: 1 changed landing file(s)"
    s3.put_object(Bucket="sensor-landing", Key="landing/step_trainer/new.json", Body=b"{}\n")
    s3.delete_object(Bucket="sensor-landing", Key=key)
    request = harness.tick()
    assert request.tags["stedi/landing_changes"] == (
        "customer: 1 removed landing file(s); step_trainer: 1 new landing file(s)"
    )
    assert request.run_key.endswith(json.loads(harness.cursor)["requested"])
