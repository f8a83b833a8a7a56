"""What ``stedi run`` shows while it works: a line as each step starts and as it ends.

A Dagster logger (``stedi_progress``) that reads the run's events as they
happen: when a step starts, and when it ends with the rows it published, its
time and its checks. On a terminal the lines are drawn by rich, with a bar of
the steps done and the time elapsed; on a pipe (CI, a file) they are plain
lines without control characters. It writes to the terminal only: the run's
event log, which the UI shows, is untouched. Only ``stedi run`` configures it.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field

from dagster import Field, InitLoggerContext, logger
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


@dataclass
class _Step:
    started: float
    rows: list[tuple[str, int]] = field(default_factory=list)
    passed: int = 0
    failed: list[str] = field(default_factory=list)


class StepLines(logging.Handler):
    """Prints a line per step as it starts and ends; on a terminal, a bar of the steps done below them."""

    def __init__(self, steps: int, terminal: bool, stream=None) -> None:
        super().__init__(level=logging.DEBUG)
        self.stream = stream or sys.stdout
        self.console = Console(file=self.stream, force_terminal=terminal, highlight=False, soft_wrap=True)
        self.terminal = terminal
        self.running: dict[str, _Step] = {}
        self.done = 0
        self.progress: Progress | None = None
        if terminal:
            self.progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=self.console, transient=True,
            )
            self.task = self.progress.add_task("steps", total=steps or None)
            self.progress.start()

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None)
        event = meta.get("dagster_event") if isinstance(meta, dict) else None
        if event is None:
            return
        step, kind = event.step_key, event.event_type_value
        if kind in ("PIPELINE_SUCCESS", "PIPELINE_FAILURE", "PIPELINE_CANCELED"):
            self.close()  # the run is over: the bar goes, the summary follows
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
        elif kind == "ASSET_CHECK_EVALUATION" and step in self.running:
            evaluation = event.event_specific_data
            if evaluation.passed:
                self.running[step].passed += 1
            else:
                self.running[step].failed.append(f"{evaluation.check_name} ({evaluation.severity.value})")
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and step in self.running:
            self._finished(step, kind == "STEP_SUCCESS")

    def _finished(self, step: str, succeeded: bool) -> None:
        state = self.running.pop(step)
        seconds = time.monotonic() - state.started
        published = ", ".join(f"{name} {rows:,} rows" for name, rows in state.rows) or "nothing published"
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

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        super().close()


@logger(
    config_schema={
        "steps": Field(int, default_value=0, description="How many steps the run has (for the bar)."),
        "terminal": Field(bool, default_value=False, description="Draw on a terminal (rich) rather than plain lines."),
    },
    description="stedi run's progress: a line per step as it starts and ends, on the terminal only.",
)
def stedi_progress(init_context: InitLoggerContext) -> logging.Logger:
    progress = logging.Logger("stedi_progress", level=logging.DEBUG)
    progress.addHandler(StepLines(init_context.logger_config["steps"], init_context.logger_config["terminal"]))
    return progress

