"""What `stedi run` shows while it works: a line per step, plain on a pipe, drawn with a bar on a terminal;
inside a landing step, the files and bytes read. Runs the command on the simulated landing zone; does not
cover the Spark engine (its reads are reported once, when done)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from collections import Counter

from dagster import DagsterInstance

from stedi_assets_tests.conftest import REPOSITORY

STEP_DONE = re.compile(r"done +customer_landing: customer_quarantine 0 rows, customer_landing 203 rows, \d+\.\d s, checks 5/5 passed")
# The line a landing step prints once its files are read: files, bytes as listed, seconds.
FEED_READ = re.compile(r"read +(\w+_landing): (\d+) files?, [\d.]+ (?:bytes|kB|MB|GB), \d+\.\d s$", re.MULTILINE)
# The bar of a landing step's reading: files read, bytes read of all, time left.
READ_BAR = re.compile(r"\d+/\d+ files [\d.]+/[\d.]+ (?:bytes|kB|MB|GB) eta (?:-:--:--|\d+:\d\d:\d\d)")


def _stedi_run(tmp_path, *options: str, terminal: bool, dagster_home=None) -> str:
    command = [sys.executable, "-m", "stedi_assets.cli", "run", *options]
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY), "COLUMNS": "120"}
    environment.pop("STEDI_LANDING_URI", None)
    environment.pop("DAGSTER_HOME", None)
    if dagster_home is not None:
        dagster_home.mkdir()
        (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        environment["DAGSTER_HOME"] = str(dagster_home)
    if not terminal:
        completed = subprocess.run(command, capture_output=True, cwd=tmp_path, env=environment, timeout=600)
        assert completed.returncode == 0, completed.stderr.decode()[-2000:]
        return completed.stdout.decode()
    controller, terminal_end = pty.openpty()
    process = subprocess.Popen(command, stdout=terminal_end, stderr=subprocess.DEVNULL, cwd=tmp_path, env=environment)
    os.close(terminal_end)
    output = bytearray()
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(timeout=600) == 0
    return output.decode(errors="replace")


def test_on_a_pipe_each_step_is_a_plain_line_with_rows_time_and_checks(tmp_path):
    output = _stedi_run(tmp_path, terminal=False)
    assert "start   customer_landing" in output
    assert STEP_DONE.search(output), output
    # The feeds' observation, before the landing steps, says what it observed.
    assert "done    landing_feeds: observed accelerometer_feed, customer_feed, step_trainer_feed" in output
    assert re.search(r"done +machine_learning_curated: machine_learning_curated 8,415 rows, .*\(failed: cross_customer_pairs \(WARN\)\)", output)
    assert "\x1b" not in output and "\r" not in output
    # One line per landing step for its reading, after its start and before its end; no bar.
    assert {feed: int(files) for feed, files in FEED_READ.findall(output)} == {
        "customer_landing": 1, "accelerometer_landing": 3, "step_trainer_landing": 1,
    }, output
    assert len(re.findall(r"^read ", output, re.MULTILINE)) == 3
    for feed in ("customer_landing", "accelerometer_landing", "step_trainer_landing"):
        assert output.index(f"start   {feed}") < output.index(f"read    {feed}") < output.index(f"done    {feed}")
    assert not READ_BAR.search(output)
    # The summary at the end stays as it was.
    assert output.rstrip().endswith("OK: every table published, no ERROR check failed.")


def test_on_a_terminal_the_steps_are_drawn_with_a_bar(tmp_path):
    output = _stedi_run(tmp_path, terminal=True)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output).replace("\r", "")
    assert "\x1b[" in output  # drawn: the bar and its updates
    assert STEP_DONE.search(plain), plain
    assert re.search(r"\d+/8", plain)  # the bar counts the steps done of eight
    # Each landing step's reading drawn as a bar of files and bytes with the time left, then a line.
    assert len(READ_BAR.findall(plain)) >= 3, plain
    assert re.search(r"accelerometer_landing +━+ +\d/3 files", plain), plain
    assert len(FEED_READ.findall(plain)) == 3, plain
    assert "OK: every table published, no ERROR check failed." in plain


def test_quiet_prints_the_summary_only(tmp_path):
    output = _stedi_run(tmp_path, "--quiet", terminal=False)
    assert "start " not in output and "done " not in output and "read " not in output
    assert "OK: every table published, no ERROR check failed." in output


def _event_log(dagster_home) -> list:
    instance = DagsterInstance.from_config(str(dagster_home))
    try:
        (run,) = instance.get_runs()
        return instance.all_logs(run.run_id)
    finally:
        instance.dispose()


def test_the_reading_bar_never_reaches_the_runs_event_log(tmp_path):
    """The run drawn with its bars records in the event log exactly what a --quiet run records."""
    (tmp_path / "drawn").mkdir()
    (tmp_path / "quiet").mkdir()
    drawn = _stedi_run(tmp_path / "drawn", terminal=True, dagster_home=tmp_path / "drawn_home")
    quiet = _stedi_run(tmp_path / "quiet", "--quiet", terminal=False, dagster_home=tmp_path / "quiet_home")
    # The reading was reported (so the comparison below can fail), and only on the terminal.
    assert READ_BAR.search(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn))
    assert "read " not in quiet

    def kinds(entries) -> Counter:
        return Counter(e.dagster_event.event_type_value if e.dagster_event else f"log {e.level}" for e in entries)

    with_bars, without = _event_log(tmp_path / "drawn_home"), _event_log(tmp_path / "quiet_home")
    assert kinds(with_bars) == kinds(without)
    assert kinds(with_bars)["ASSET_MATERIALIZATION"] == 11
    messages = [e.user_message for e in with_bars]
    assert not [m for m in messages if re.search(r"files read|\d+/\d+ files|\b(?:kB|MB)\b", m)]
