"""Data-set profiles: the exact row counts a known data set must give.

With a profile, the row-count checks compare every table with its expected
count. Without one they assert only what holds for any data (see checks.py).
"""

from __future__ import annotations

from collections.abc import Mapping

# Both known data sets are clean: nothing of them belongs in quarantine.
NOTHING_QUARANTINED = {f"{feed}_quarantine": 0 for feed in ("customer", "accelerometer", "step_trainer")}

# The real STEDI landing data set (956 customers, 81,273 accelerometer and
# 28,680 step-trainer readings): the counts the reference system was accepted on.
STEDI_REFERENCE = {
    "customer_landing": 956,
    "accelerometer_landing": 81_273,
    "step_trainer_landing": 28_680,
    "customer_trusted": 482,
    "accelerometer_trusted": 40_981,
    "customer_curated": 482,
    "step_trainer_trusted": 14_460,
    "machine_learning_curated": 43_681,
    "machine_learning_curated_same_customer": 40_981,
    **NOTHING_QUARANTINED,
}


def _profiles() -> dict[str, Mapping[str, int]]:
    from stedi_assets.simulate import DEFAULT_COUNTS

    return {"stedi-reference": STEDI_REFERENCE, "simulated": {**DEFAULT_COUNTS, **NOTHING_QUARANTINED}}


PROFILE_NAMES = ("stedi-reference", "simulated")


class UnknownProfileError(ValueError):
    pass


def expected_rows(profile: str, table: str, same_customer: bool) -> int | None:
    """The count ``table`` must have under ``profile``; None without a profile."""
    if not profile:
        return None
    profiles = _profiles()
    if profile not in profiles:
        raise UnknownProfileError(
            f"unknown data-set profile {profile!r}; known profiles: {', '.join(sorted(profiles))}"
        )
    counts = profiles[profile]
    if table == "machine_learning_curated" and same_customer:
        return counts["machine_learning_curated_same_customer"]
    return counts[table]
