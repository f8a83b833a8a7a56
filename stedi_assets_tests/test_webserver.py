"""The way users use it: `dagster dev` on the code location, a run launched through GraphQL.

Starts the webserver and daemon exactly as a user would (workspace.yaml, a
free loopback port, settings from STEDI_* variables), launches stedi_job
through the GraphQL API, waits for it and reads back every check result.
Does not drive a browser.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from dagster_graphql import DagsterGraphQLClient

from stedi_assets.orchestration.checks import CHECKS, check_specs
from stedi_assets_tests.conftest import REPOSITORY, stored_table

pytestmark = pytest.mark.slow

CHECK_RESULTS = """
query ($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run {
      eventConnection(afterCursor: null) {
        events {
          __typename
          ... on AssetCheckEvaluationEvent {
            evaluation { checkName success severity assetKey { path } }
          }
        }
      }
    }
  }
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {process.returncode}")
        try:
            if requests.get(f"{url}/server_info", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"dagster dev did not serve {url} within {timeout}s")


def wait_for_landing_sensor_run(home: Path, timeout: float = 180) -> None:
    from dagster import DagsterInstance, RunsFilter
    from dagster._core.instance.ref import InstanceRef

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
            runs = instance.get_run_records(RunsFilter(tags={"stedi/trigger": "landing_sensor"}))
            if runs and runs[0].dagster_run.is_finished:
                return
        time.sleep(1)
    raise TimeoutError(f"the landing sensor's first run did not finish within {timeout}s")


@pytest.fixture
def dagster_dev(stedi_landing: Path, tmp_path: Path):
    port = free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "STEDI_LANDING_URI": str(stedi_landing),
        "STEDI_LAKEHOUSE_URI": str(tmp_path / "lakehouse"),
        "STEDI_PROFILE": "stedi-reference",
    }
    dagster = Path(sys.executable).with_name("dagster")
    log = (tmp_path / "dagster_dev.log").open("w")
    process = subprocess.Popen(
        [str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPOSITORY, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_until_serving(f"http://127.0.0.1:{port}", process)
        # The landing sensor runs by default and brings the delivered feeds in
        # first; a run launched meanwhile would write the same tables.
        wait_for_landing_sensor_run(home)
        yield port, tmp_path
    finally:
        # dagster dev shuts its children down cleanly on SIGINT; SIGTERM can leave them behind.
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def test_materialize_all_through_graphql(dagster_dev):
    port, tmp_path = dagster_dev
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    run_id = client.submit_job_execution("stedi_job", repository_location_name="stedi_assets")

    deadline = time.monotonic() + 300
    status = client.get_run_status(run_id).value
    while status not in ("SUCCESS", "FAILURE", "CANCELED") and time.monotonic() < deadline:
        time.sleep(1)
        status = client.get_run_status(run_id).value
    assert status == "SUCCESS", (tmp_path / "dagster_dev.log").read_text()[-3000:]

    events = client._execute(CHECK_RESULTS, {"runId": run_id})["runOrError"]["eventConnection"]["events"]
    results = {
        (e["evaluation"]["assetKey"]["path"][-1], e["evaluation"]["checkName"]): e["evaluation"]["success"]
        for e in events
        if e["__typename"] == "AssetCheckEvaluationEvent"
    }
    assert set(results) == {(table, spec.name) for table in CHECKS for spec in check_specs(table)}
    assert {key for key, passed in results.items() if not passed} == {("machine_learning_curated", "cross_customer_pairs")}
    assert stored_table(tmp_path / "lakehouse", "machine_learning_curated").height == 43_681
