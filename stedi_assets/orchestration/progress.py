"""What ``stedi run`` shows while it works: a line as each step starts and as it ends.

A Dagster logger (``stedi_progress``) that reads the run's events as they
happen: when a step starts, and when it ends with the rows it published, its
time and its checks. On a terminal the lines are drawn by rich, with a bar of
the steps done and the time elapsed; on a pipe (CI, a file) they are plain
lines without control characters. It writes to the terminal only: the run's
event log, which the UI shows, is untouched. Only ``stedi run`` configures it.

A landing step also reports the files and bytes it reads (``read_progress``),
not through Dagster's log but to the Python logger ``READS``, which the
``stedi_progress`` logger alone listens to while its run lasts: on a terminal
a bar of the bytes read with the files read and the time left, on a pipe one
line when the reading is done. No report ever reaches the run's event log.
"""

from __future__ import annotations

import atexit
import logging
import sys
import time
from dataclasses import dataclass, field

from dagster import Field, InitLoggerContext, logger
from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from stedi_assets.lakehouse.engines import ReadProgress

READS = logging.getLogger("stedi_progress.reads")
"""Where landing steps report what they have read. It hands its records to no other logger: the
handlers Dagster adds to the loggers it captures (the run's event log among them) never see them."""
READS.propagate = False
READS.setLevel(logging.DEBUG)

_READ = "stedi_read"
"""The attribute of a ``READS`` record that holds its ``FilesRead``."""


@dataclass(frozen=True)
class FilesRead:
    """How far a landing step's reading has come (bytes as the files were listed)."""

    step: str
    files_read: int
    files_total: int
    bytes_read: int
    bytes_total: int


def read_progress(step: str) -> ReadProgress | None:
    """A landing step's ``ReadProgress``, reported to ``stedi run``'s progress; None when nothing listens
    (a run launched from the UI, ``stedi run --quiet``)."""
    if not READS.handlers:
        return None

    def report(files_read: int, files_total: int, bytes_read: int, bytes_total: int) -> None:
        READS.debug(
            "%s: %d/%d files read", step, files_read, files_total,
            extra={_READ: FilesRead(step, files_read, files_total, bytes_read, bytes_total)},
        )

    return report


@dataclass
class _Step:
    started: float
    rows: list[tuple[str, int]] = field(default_factory=list)
    passed: int = 0
    failed: list[str] = field(default_factory=list)
    observed: list[str] = field(default_factory=list)


@dataclass
class _Reading:
    started: float
    last: FilesRead
    task: TaskID | None = None


class _ForTasks(ProgressColumn):
    """A column drawn for one kind of task (the steps, or a step's reading) and blank for the other."""

    def __init__(self, column: ProgressColumn, reading: bool) -> None:
        super().__init__()
        self.column, self.reading = column, reading

    def render(self, task: Task) -> Text:
        return self.column.render(task) if task.fields.get("reading", False) == self.reading else Text("")


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


class StepLines(logging.Handler):
    """Prints a line per step as it starts and ends; on a terminal, a bar of the steps done below them."""

    def __init__(self, steps: int, terminal: bool, stream=None) -> None:
        super().__init__(level=logging.DEBUG)
        self.stream = stream or sys.stdout
        self.console = Console(file=self.stream, force_terminal=terminal, highlight=False, soft_wrap=True)
        self.terminal = terminal
        self.running: dict[str, _Step] = {}
        self.done = 0
        self.reading: dict[str, _Reading] = {}
        self.finished = False
        self.progress: Progress | None = None
        if terminal:
            # One row for the steps (done of all, time elapsed), one per landing step reading its files
            # (files read, bytes read of all, time left).
            self.progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                _ForTasks(MofNCompleteColumn(), reading=False), _ForTasks(TimeElapsedColumn(), reading=False),
                _ForTasks(TextColumn("{task.fields[files]} files"), reading=True),
                _ForTasks(DownloadColumn(), reading=True),
                _ForTasks(TextColumn("eta"), reading=True), _ForTasks(TimeRemainingColumn(), reading=True),
                console=self.console, transient=True,
            )
            self.task = self.progress.add_task("steps", total=steps or None)
            self.progress.start()
            atexit.register(self.finish)  # the cursor comes back even if the run never ends
        READS.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        read = getattr(record, _READ, None)
        if isinstance(read, FilesRead):
            self._read(read)
            return
        meta = getattr(record, "dagster_meta", None)
        event = meta.get("dagster_event") if isinstance(meta, dict) else None
        if event is None:
            return
        step, kind = event.step_key, event.event_type_value
        if kind in ("PIPELINE_SUCCESS", "PIPELINE_FAILURE", "PIPELINE_CANCELED"):
            self.finish()  # the run is over: the bar goes, the summary follows
            return
        if step is None:
            return
        if kind == "STEP_START":
            self.running[step] = _Step(time.monotonic())
            self._line(f"start   {step}")
            if self.progress is not None:
                self.progress.update(self.task, description=", ".join(self.running))
        elif kind == "ASSET_MATERIALIZATION" and step in self.running:
            rows = event.event_specific_data.materialization.metadata.get("dagster/row_count")
            self.running[step].rows.append((event.asset_key.path[-1], int(rows.value) if rows is not None else -1))
        elif kind == "ASSET_OBSERVATION" and step in self.running:
            self.running[step].observed.append(event.asset_key.path[-1])
        elif kind == "ASSET_CHECK_EVALUATION" and step in self.running:
            evaluation = event.event_specific_data
            if evaluation.passed:
                self.running[step].passed += 1
            else:
                self.running[step].failed.append(f"{evaluation.check_name} ({evaluation.severity.value})")
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and step in self.running:
            self._finished(step, kind == "STEP_SUCCESS")

    def _read(self, read: FilesRead) -> None:
        reading = self.reading.get(read.step)
        if reading is None:
            reading = self.reading[read.step] = _Reading(time.monotonic(), read)
            if self.progress is not None:
                reading.task = self.progress.add_task(
                    f"  {read.step}", total=read.bytes_total, reading=True, files=f"0/{read.files_total}",
                )
                self.progress.refresh()  # drawn at once, however quickly the files are read
        reading.last = read
        if self.progress is not None and reading.task is not None:
            self.progress.update(reading.task, completed=read.bytes_read, files=f"{read.files_read}/{read.files_total}")
        if read.files_read >= read.files_total:
            self._read_done(read.step)

    def _read_done(self, step: str) -> None:
        """The step's reading is over (or the step is): its bar goes, a line says what was read."""
        reading = self.reading.pop(step, None)
        if reading is None:
            return
        if self.progress is not None and reading.task is not None:
            self.progress.refresh()
            self.progress.remove_task(reading.task)
        last, seconds = reading.last, time.monotonic() - reading.started
        if last.files_read >= last.files_total:
            text = f"read    {step}: {_files(last.files_total)}, {decimal(last.bytes_total)}, {seconds:.1f} s"
        else:
            text = (
                f"read    {step}: {last.files_read} of {_files(last.files_total)}, {decimal(last.bytes_read)} "
                f"of {decimal(last.bytes_total)}, when the step ended"
            )
        self._line(text)

    def _finished(self, step: str, succeeded: bool) -> None:
        self._read_done(step)
        state = self.running.pop(step)
        seconds = time.monotonic() - state.started
        published = ", ".join(f"{name} {rows:,} rows" for name, rows in state.rows) or (
            f"observed {', '.join(state.observed)}" if state.observed else "nothing published"
        )
        checks = state.passed + len(state.failed)
        text = f"{'done   ' if succeeded else 'FAILED '} {step}: {published}, {seconds:.1f} s"
        if checks:
            text += f", checks {state.passed}/{checks} passed"
        if state.failed:
            text += f" (failed: {', '.join(state.failed)})"
        self._line(text, style=None if succeeded and not state.failed else "yellow")
        self.done += 1
        if self.progress is not None:
            self.progress.update(self.task, completed=self.done, description=", ".join(self.running) or "steps")

    def _line(self, text: str, style: str | None = None) -> None:
        if self.terminal:
            self.console.print(text, style=style)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def finish(self) -> None:
        """The run is over: the bar goes and the reads are no longer listened to."""
        self.finished = True
        READS.removeHandler(self)
        for run_id in [run_id for run_id, lines in _RUNS.items() if lines is self]:
            del _RUNS[run_id]
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
            atexit.unregister(self.finish)

    # ``close`` is left as logging's: logging closes every handler whenever it is configured again (Dagster
    # does so for each log manager when the instance's dagster.yaml sets up Python log handlers), which
    # must not end the run's display. The run's end does (``finish``), or the process's.


@logger(
    config_schema={
        "steps": Field(int, default_value=0, description="How many steps the run has (for the bar)."),
        "terminal": Field(bool, default_value=False, description="Draw on a terminal (rich) rather than plain lines."),
    },
    description="stedi run's progress: a line per step as it starts and ends, and the files and bytes a landing "
    "step reads, on the terminal only.",
)
def stedi_progress(init_context: InitLoggerContext) -> logging.Logger:
    # Dagster builds a run's loggers twice in one process: for the run (its start and end) and for its
    # steps. Both get the run's one handler, so that one bar is drawn and one listens to the reads.
    lines = _RUNS.get(init_context.run_id)
    if lines is None or lines.finished:
        lines = StepLines(init_context.logger_config["steps"], init_context.logger_config["terminal"])
        _RUNS[init_context.run_id] = lines
    progress = logging.Logger("stedi_progress", level=logging.DEBUG)
    progress.addHandler(lines)
    return progress


_RUNS: dict[str | None, StepLines] = {}
"""The handler of each run in progress in this process (by run id)."""

