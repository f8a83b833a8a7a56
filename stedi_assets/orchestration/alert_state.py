"""What an alert sensor has reported: which checks or tables fail, since when, and when they last alerted.

Alerts follow transitions: one when something goes from passing to failing,
one ("recovered: ...") when it passes again, none while it stays the same,
and, if reminders are on, one every ``remind_hours`` while it stays failing.

The state lives in the sensor's cursor (:meth:`Conditions.to_json`). The
daemon stores the cursor in the instance's database with every tick, so the
state survives restarts and moves with the sensor from process to process;
it is updated in the same step as the tick that sent the alerts, so it cannot
disagree with what was sent; and the UI shows it on the sensor's page (and can
reset it). It is small: one entry per check or table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Condition:
    failing: bool
    since: float
    """When it last changed between passing and failing (seconds since the epoch)."""
    alerted_at: float | None = None
    """When the failure was last alerted (None: not alerted, e.g. below the minimum severity)."""
    subject: str = ""
    details: dict[str, str] = field(default_factory=dict)
    link: str | None = None
    """What the failure alert said, to repeat in reminders."""


class Conditions:
    """The condition of every watched name (a check, a table), read from and written to a cursor."""

    def __init__(self, saved: dict[str, dict] | None = None):
        self.items = {name: Condition(**condition) for name, condition in (saved or {}).items()}

    def observe(self, name: str, failing: bool, now: float) -> str | None:
        """Record ``name``'s latest outcome: ``"failed"`` when it turns failing (or is first seen failing),
        ``"recovered"`` when a failure that was alerted ends, otherwise None."""
        previous = self.items.get(name)
        if previous is not None and previous.failing == failing:
            return None
        self.items[name] = Condition(failing=failing, since=now)
        if failing:
            return "failed"
        return "recovered" if previous is not None and previous.alerted_at is not None else None

    def alerted(self, name: str, now: float, subject: str, details: dict[str, str], link: str | None) -> None:
        condition = self.items[name]
        condition.alerted_at, condition.subject, condition.details, condition.link = now, subject, details, link

    def due_reminders(self, now: float, remind_hours: int) -> list[str]:
        """The alerted failures whose last alert is at least ``remind_hours`` old (none when it is 0)."""
        if remind_hours <= 0:
            return []
        return sorted(
            name for name, c in self.items.items()
            if c.failing and c.alerted_at is not None and now - c.alerted_at >= remind_hours * 3600
        )

    def to_json(self) -> dict[str, dict]:
        return {name: asdict(condition) for name, condition in sorted(self.items.items())}
