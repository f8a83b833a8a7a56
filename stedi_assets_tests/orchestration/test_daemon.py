"""The operations as a user runs them: `dagster dev` with its daemon, no click.

Starts `dagster dev` (webserver and daemon) on a free loopback port with a
temporary DAGSTER_HOME, a simulated landing zone and a lakehouse in tmp_path,
and a webhook receiver on loopback. Then drops files into the landing folder
and waits, each time with a deadline, for what the sensors must do: a run that
succeeds and changes machine_learning_curated, and the alert of a failed
check, and a stale table's alert when no delivery follows. Stops its own process group, SIGINT then SIGKILL (dagster dev can
linger after SIGINT). Does not drive a browser.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import narwhals as nw
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.instance.ref import InstanceRef

from stedi_assets.orchestration.sensors import CHANGES_TAG, TRIGGER_TAG
from stedi_assets.lakehouse.lakehouse import Lakehouse
from stedi_assets.domain.schemas import RESEARCH_CONSENT
from stedi_assets.domain.simulate import simulate_landing, write_landing
from stedi_assets_tests.conftest import REPOSITORY
from stedi_assets_tests.orchestration.conftest import WebhookReceiver
from stedi_assets_tests.test_webserver import free_port, wait_until_serving

pytestmark = pytest.mark.slow

DEADLINE_SECONDS = 240


@dataclass
class Deployment:
    landing: Path
    lakehouse: Lakehouse
    home: Path
    log: Path
    webhook: WebhookReceiver

    def instance(self) -> DagsterInstance:
        return DagsterInstance.from_ref(InstanceRef.from_dir(str(self.home)))

    def sensor_runs(self) -> list:
        with self.instance() as instance:
            return [r.dagster_run for r in instance.get_run_records(RunsFilter(tags={TRIGGER_TAG: "landing_sensor"}))]

    def ml_rows(self) -> int | None:
        try:
            frame = self.lakehouse.read_table(["machine_learning_curated"])
            return int(frame.select(nw.len()).collect().item())
        except Exception:  # not published yet
            return None

    def wait_for(self, what: str, condition: Callable[[], object], seconds: float = DEADLINE_SECONDS) -> object:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(1)
        raise AssertionError(f"no {what} within {seconds}s; log tail:\n{self.log.read_text()[-3000:]}")

    def wait_for_sensor_run(self, changes: str, not_before: set[str] = frozenset()):
        """The landing sensor's run for ``changes`` (other than the runs ``not_before``), once it has finished."""

        def finished():
            runs = [
                r for r in self.sensor_runs() if r.tags.get(CHANGES_TAG) == changes and r.run_id not in not_before
            ]
            return runs[0] if runs and runs[0].is_finished else None

        return self.wait_for(f"finished landing_sensor run for {changes!r}", finished)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("daemon")
    landing, home = root / "landing", root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    write_landing(landing, simulate_landing())
    webhook = WebhookReceiver()
    webhook.thread.start()
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "STEDI_LANDING_URI": str(landing),
        "STEDI_LAKEHOUSE_URI": str(root / "lakehouse"),
        "STEDI_SENSOR_INTERVAL_SECONDS": "5",
        # Short freshness windows, so that a table turns stale within the test.
        "STEDI_FRESHNESS_WARN_MINUTES": "1",
        "STEDI_FRESHNESS_FAIL_MINUTES": "2",
        # Readings of one customer only: the WARN cross_customer_pairs passes, so every alert is this test's.
        "STEDI_ML_JOIN": "same_customer",
        "STEDI_ALERT_WEBHOOK_URL": webhook.url,
        "STEDI_UI_URL": f"http://127.0.0.1:{port}",
    }
    log = root / "dagster_dev.log"
    dagster = Path(sys.executable).with_name("dagster")
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPOSITORY, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            wait_until_serving(f"http://127.0.0.1:{port}", process)
            lakehouse = Lakehouse(landing_uri=str(landing), lakehouse_uri=str(root / "lakehouse"))
            deployment = Deployment(landing, lakehouse, home, log, webhook)
            # The sensor's first tick brings in every feed already delivered.
            first = deployment.wait_for_sensor_run(
                "customer: not published yet; accelerometer: not published yet; step_trainer: not published yet"
            )
            assert first.status == DagsterRunStatus.SUCCESS, log.read_text()[-3000:]
            yield deployment
        finally:
            stop(process)
            webhook.server.shutdown()
            webhook.server.server_close()


def stop(process: subprocess.Popen) -> None:
    """SIGINT to the process group, then SIGKILL to what is left of it after a timeout."""
    try:
        os.killpg(process.pid, signal.SIGINT)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    # The webserver can outlive dagster dev's own exit: clear the whole group.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def test_a_dropped_withdrawal_reaches_machine_learning_curated_with_no_click(deployment):
    before = deployment.ml_rows()
    assert before
    customer = (
        deployment.lakehouse.read_table(["customer_curated"])
        .join(deployment.lakehouse.read_table(["machine_learning_curated"]).select("serialNumber").unique(),
              on="serialNumber", how="semi")
        .head(1).collect().to_native().to_dicts()[0]
    )
    withdrawal = {**customer, RESEARCH_CONSENT: None, "lastUpdateDate": customer["lastUpdateDate"] + 1}
    earlier = {r.run_id for r in deployment.sensor_runs()}
    dropped = time.monotonic()
    (deployment.landing / "customer" / "customer-withdrawal.json").write_text(json.dumps(withdrawal) + "\n")

    run = deployment.wait_for_sensor_run("customer: 1 new landing file(s)", earlier)
    assert run.status == DagsterRunStatus.SUCCESS, deployment.log.read_text()[-3000:]
    after = deployment.ml_rows()
    assert after < before
    ml = deployment.lakehouse.read_table(["machine_learning_curated"])
    assert ml.filter(nw.col("serialNumber") == customer["serialNumber"]).select(nw.len()).collect().item() == 0
    print(f"delivery to machine_learning_curated: {time.monotonic() - dropped:.0f} s")


def test_a_delivery_that_fails_a_check_alerts_once_through_the_webhook(deployment):
    good = sorted((deployment.landing / "accelerometer").iterdir())[0].read_text().splitlines()[0]
    # One reading that cannot be read: it goes to quarantine, and quarantined_records fails as a WARN
    # (below the allowed share), which leaves the run green.
    earlier = {r.run_id for r in deployment.sensor_runs()}
    (deployment.landing / "accelerometer" / "accelerometer-broken.json").write_text(good + "\n{not json\n")

    run = deployment.wait_for_sensor_run("accelerometer: 1 new landing file(s)", earlier)
    assert run.status == DagsterRunStatus.SUCCESS, deployment.log.read_text()[-3000:]
    subject = "[STEDI] check failed: accelerometer_landing quarantined_records (WARN)"
    text = deployment.wait_for(
        "alert", lambda: next((t for t in deployment.webhook.texts if t.startswith(subject)), None)
    )
    assert f"run_id: {run.run_id}" in text
    assert f"/runs/{run.run_id}" in text
    # Once per failure: later ticks of the alert sensor send nothing more for this run.
    time.sleep(12)
    assert [t for t in deployment.webhook.texts if run.run_id in t] == [text]


def test_a_table_without_a_new_delivery_turns_stale_and_alerts_once(deployment):
    # Nothing is delivered any more: two minutes after its last materialization,
    # machine_learning_curated fails its freshness policy (the daemon evaluates it).
    subject = "[STEDI] table stale: machine_learning_curated"
    text = deployment.wait_for(
        "stale-table alert",
        lambda: next((t for t in deployment.webhook.texts if t.startswith(subject)), None),
        seconds=360,
    )
    assert "/assets/machine_learning_curated" in text
    time.sleep(12)
    assert [t for t in deployment.webhook.texts if t.startswith(subject)] == [text]
