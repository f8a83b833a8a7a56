"""What `stedi run` shows while it works: a line per step, plain on a pipe, drawn with a bar on a terminal."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

from stedi_assets_tests.conftest import REPOSITORY

STEP_DONE = re.compile(r"done +customer_landing: customer_quarantine 0 rows, customer_landing 203 rows, \d+\.\d s, checks 4/4 passed")


def _stedi_run(tmp_path, *options: str, terminal: bool) -> str:
    command = [sys.executable, "-m", "stedi_assets.cli", "run", *options]
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY), "COLUMNS": "120"}
    environment.pop("STEDI_LANDING_URI", None)
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
    assert re.search(r"done +machine_learning_curated: machine_learning_curated 8,415 rows, .*\(failed: cross_customer_pairs \(WARN\)\)", output)
    assert "\x1b" not in output and "\r" not in output
    # The summary at the end stays as it was.
    assert output.rstrip().endswith("OK: every table published, no ERROR check failed.")


def test_on_a_terminal_the_steps_are_drawn_with_a_bar(tmp_path):
    output = _stedi_run(tmp_path, terminal=True)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output).replace("\r", "")
    assert "\x1b[" in output  # drawn: the bar and its updates
    assert STEP_DONE.search(plain), plain
    assert re.search(r"\d+/8", plain)  # the bar counts the steps done of eight
    assert "OK: every table published, no ERROR check failed." in plain


def test_quiet_prints_the_summary_only(tmp_path):
    output = _stedi_run(tmp_path, "--quiet", terminal=False)
    assert "start " not in output and "done " not in output
    assert "OK: every table published, no ERROR check failed." in output
