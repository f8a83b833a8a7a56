"""Spark servers on loopback for the engine tests: a standalone cluster (a master and workers,
each its own JVM) and a Spark Connect server, started from pyspark's own scripts and stopped
by their process groups; and ``stedi run`` driven against them in a process of its own.

Every process is started in a new session (its own process group): stopping kills the group,
so the executors and Python workers a worker started go with it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from polars.testing import assert_frame_equal

from stedi_assets.domain.profiles import STEDI_REFERENCE
from stedi_assets.domain.schemas import TABLES
from stedi_assets_tests.conftest import stored_table

START_TIMEOUT_SECONDS = 180.0
STOP_TIMEOUT_SECONDS = 30.0
BIN = Path(sys.executable).parent


def spark_home() -> Path:
    """The pyspark package's folder: its wheel ships Spark's bin/, sbin/ and jars/."""
    import pyspark

    return Path(pyspark.__file__).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(logs: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEDI_", "SPARK_", "PYSPARK_"))}
    env.update(
        SPARK_HOME=str(spark_home()), SPARK_LOCAL_IP="127.0.0.1", SPARK_LOG_DIR=str(logs), SPARK_PID_DIR=str(logs),
        PYSPARK_PYTHON=sys.executable,
    )
    env.update(extra)
    return env


@dataclass
class Processes:
    """Processes started here, each the leader of its own process group."""

    started: list[subprocess.Popen] = field(default_factory=list)

    def start(self, command: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen:
        with log.open("ab") as out:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=dict(env),
                start_new_session=True,
            )
        self.started.append(process)
        return process

    def stop(self) -> list[int]:
        """Stop every group (TERM, then KILL after a timeout); the ids of groups that still had processes after KILL."""
        for process in reversed(self.started):
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for process in self.started:
            while _group_alive(process.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            process.poll()
        for process in self.started:
            if _group_alive(process.pid):
                _signal_group(process.pid, signal.SIGKILL)
        time.sleep(0.5)
        for process in self.started:
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                pass
        return [process.pid for process in self.started if _group_alive(process.pid)]


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` is still running (zombies of this process do not count)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command's ")": state, ppid, pgrp.
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _wait_for(what: str, ready, processes: list[subprocess.Popen], logs: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if ready():
            return
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{what}: a process exited with {process.returncode}; see {logs}")
        time.sleep(0.5)
    raise RuntimeError(f"{what} not ready after {START_TIMEOUT_SECONDS:.0f} s; see {logs}")


@dataclass
class StandaloneCluster:
    """A Spark master and its workers on 127.0.0.1."""

    master_url: str
    status_url: str
    processes: Processes
    logs: Path

    def status(self) -> dict:
        """The master's status page as JSON: workers, active and completed applications."""
        with urllib.request.urlopen(self.status_url, timeout=10) as answer:
            return json.load(answer)


def start_cluster(workdir: Path, workers: int = 2, worker_memory: str = "1g") -> StandaloneCluster:
    """A master and ``workers`` workers of one core each, registered with the master; stop with ``.processes.stop()``."""
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # The daemons (master, workers) only keep books: the executors get the memory.
    env = _environment(logs, SPARK_DAEMON_MEMORY="256m")
    spark_class = str(spark_home() / "bin" / "spark-class")
    port, webui = free_port(), free_port()
    processes = Processes()
    cluster = StandaloneCluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{webui}/json/", processes, logs)
    try:
        processes.start(
            [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
             "--webui-port", str(webui)],
            logs / "master.log", env,
        )
        _wait_for("the Spark master", lambda: _answers(cluster), processes.started, logs)
        for number in range(workers):
            work = workdir / f"worker-{number}"
            work.mkdir()
            processes.start(
                [spark_class, "org.apache.spark.deploy.worker.Worker", cluster.master_url, "--host", "127.0.0.1",
                 "--cores", "1", "--memory", worker_memory, "--webui-port", str(free_port()), "--work-dir", str(work)],
                logs / f"worker-{number}.log", env,
            )
        _wait_for(
            f"{workers} Spark workers", lambda: cluster.status().get("aliveworkers") == workers, processes.started, logs
        )
    except BaseException:
        processes.stop()
        raise
    return cluster


def _answers(cluster: StandaloneCluster) -> bool:
    try:
        cluster.status()
    except OSError:
        return False
    return True


@dataclass
class ConnectServer:
    """A Spark Connect server on 127.0.0.1 (its own driver, ``local[2]``), writing an event log."""

    url: str
    event_logs: Path
    processes: Processes
    logs: Path


def start_connect_server(workdir: Path, master: str = "local[2]") -> ConnectServer:
    logs, events = workdir / "logs", workdir / "events"
    logs.mkdir(parents=True, exist_ok=True)
    events.mkdir()
    port = free_port()
    # --wait: the script runs the server in the foreground (no pid file, no daemon), in this group.
    command = [
        str(spark_home() / "sbin" / "start-connect-server.sh"), "--wait", "--master", master, "--driver-memory", "2g",
        "--conf", f"spark.connect.grpc.binding.port={port}", "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
        "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.ui.enabled=false",
        "--conf", "spark.eventLog.enabled=true", "--conf", f"spark.eventLog.dir={events.as_uri()}",
        "--conf", "spark.eventLog.compress=false",
    ]
    processes = Processes()
    try:
        processes.start(command, logs / "connect-server.log", _environment(logs))
        _wait_for("the Spark Connect server", lambda: _port_open(port), processes.started, logs)
    except BaseException:
        processes.stop()
        raise
    return ConnectServer(f"sc://127.0.0.1:{port}", events, processes, logs)


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


# -- stedi run against them ------------------------------------------------------------


def stedi_run(landing: Path, lakehouse: Path, **env: str) -> subprocess.CompletedProcess:
    """``stedi run -q`` in a process of its own (its own Spark driver or Connect client), with ``env`` set.

    No data-set profile: the runs before a delivery hold fewer rows than the reference counts.
    """
    process = stedi_run_started(landing, lakehouse, **env)
    try:
        out, err = process.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def stedi_run_started(landing: Path, lakehouse: Path, **env: str) -> subprocess.Popen:
    """``stedi run -q`` as ``stedi_run`` runs it, started and not waited for (text pipes for its output)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STEDI_", "DAGSTER_HOME", "SPARK_", "PYSPARK_"))}
    return subprocess.Popen(
        [str(BIN / "stedi"), "run", "-q"], cwd=lakehouse.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**clean, "STEDI_LANDING_URI": str(landing), "STEDI_LAKEHOUSE_URI": str(lakehouse),
                        "SPARK_LOCAL_IP": "127.0.0.1", **env},
    )


def spark_conf(**settings: str) -> str:
    """``STEDI_SPARK_CONF``'s text for ``settings`` (``spark_driver_host`` -> ``spark.driver.host``)."""
    return ",".join(f"{key.replace('_', '.')}={value}" for key, value in settings.items())


def tasks_by_executor(event_logs: Path) -> Counter:
    """Tasks that ended successfully in the applications of an event-log folder, by the executor that ran them."""
    ran: Counter = Counter()
    for log in event_logs.iterdir():
        for line in _lines(log):
            event = json.loads(line)
            if event.get("Event") == "SparkListenerTaskEnd" and event["Task End Reason"]["Reason"] == "Success":
                ran[event["Task Info"]["Executor ID"]] += 1
    return ran


def executors_removed(event_logs: Path) -> list[str]:
    """The ids of the executors the applications of an event-log folder lost, in the order they were lost."""
    return [
        event["Executor ID"]
        for log in sorted(event_logs.iterdir())
        for event in map(json.loads, _lines(log))
        if event.get("Event") == "SparkListenerExecutorRemoved"
    ]


def _lines(log: Path) -> Iterator[str]:
    files = sorted(log.iterdir()) if log.is_dir() else [log]  # rolling event logs are folders
    for part in files:
        if part.name.startswith(("appstatus", ".")):  # the status marker, checksum files
            continue
        with part.open(encoding="utf-8") as text:
            yield from (line for line in text if line.strip())


# -- the same deliveries through both engines ------------------------------------------

HELD_BACK = ("accelerometer/accelerometer-1691348232031.json", "step_trainer/step_trainer-1691348232132.json")
"""Files of the real data set delivered only after the first run: the second run reads them incrementally."""


@dataclass
class Step:
    """One ``stedi run`` of each engine over the same landing folder."""

    polars: subprocess.CompletedProcess
    spark: subprocess.CompletedProcess


@dataclass
class Deliveries:
    """The real data set less ``HELD_BACK`` (first run), then with them delivered (second run), on both engines."""

    landing: Path
    polars_lakehouse: Path
    spark_lakehouse: Path
    steps: list[Step]
    tables_after_first: dict[str, tuple]


def run_deliveries(workdir: Path, reference_landing: Path, **spark_env: str) -> Deliveries:
    """``stedi run`` twice on each engine (Spark with ``spark_env``): before and after a delivery of the held-back files.

    The first run's tables are read back (an independent pyiceberg read) before the second run.
    """
    from stedi_assets.domain.schemas import TABLES
    from stedi_assets_tests.conftest import place_landing_file, stored_table

    landing = workdir / "landing"
    for source in sorted(reference_landing.glob("*/*")):
        relative = source.relative_to(reference_landing)
        if str(relative) not in HELD_BACK:
            (landing / relative.parent).mkdir(parents=True, exist_ok=True)
            place_landing_file(source, landing / relative)
    polars_lakehouse, spark_lakehouse = workdir / "polars" / "lakehouse", workdir / "spark" / "lakehouse"
    polars_lakehouse.parent.mkdir()
    spark_lakehouse.parent.mkdir()

    def step() -> Step:
        return Step(
            polars=stedi_run(landing, polars_lakehouse, STEDI_ENGINE="polars"),
            spark=stedi_run(landing, spark_lakehouse, STEDI_ENGINE="spark", **spark_env),
        )

    first = step()
    tables_after_first = {
        table: (stored_table(polars_lakehouse, table), stored_table(spark_lakehouse, table))
        for table in TABLES
    }
    for name in HELD_BACK:
        place_landing_file(reference_landing / name, landing / name)
    return Deliveries(landing, polars_lakehouse, spark_lakehouse, [first, step()], tables_after_first)


def assert_runs_print_what_polars_prints(deliveries: Deliveries) -> None:
    """Each ``stedi run`` on Spark printed what the same run on Polars printed (rows and check outcomes),
    and the second read the delivered files only."""
    for step in deliveries.steps:
        assert step.spark.returncode == 0, step.spark.stdout + step.spark.stderr
        assert step.spark.stdout == step.polars.stdout
    second = deliveries.steps[1].spark.stdout
    assert "WARN cross_customer_pairs" in second and "OK: every table published" in second
    # The customer feed had nothing new.
    assert next(line for line in second.splitlines() if line.startswith("customer_landing ")).endswith("up to date")


def assert_tables_equal_polars(deliveries: Deliveries) -> None:
    """Every table Spark stored equals Polars', after the first run and after the delivery."""
    assert set(deliveries.tables_after_first) == set(TABLES)
    for polars_table, spark_table in deliveries.tables_after_first.values():
        assert_frame_equal(spark_table, polars_table)
    for table in TABLES:
        spark_table = stored_table(deliveries.spark_lakehouse, table)
        assert spark_table.height == STEDI_REFERENCE.get(table, 0), table
        assert_frame_equal(spark_table, stored_table(deliveries.polars_lakehouse, table))
